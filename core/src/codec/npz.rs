//! .npz archives as numpy's `savez` and `savez_compressed` write them: a zip of `NAME.npy`
//! members, read eagerly or one member at a time (each inflated only once its header agrees
//! with its size), and written stored or deflated.
//! Leaves out members that are not .npy (skipped, as they carry no array) and pickled objects.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::codec::npy::{self, Header, NpyArray};
use crate::codec::with_context;
use crate::codec::zip::{self, Entry, Method};
use crate::error::{Error, Result};

/// numpy's keys are the member names without ".npy".
fn key(member: &str) -> Option<&str> {
    member.strip_suffix(".npy")
}

/// An archive's directory, read once; its arrays are found by name and each is inflated only
/// once its header agrees with the member's size (see `Archive::header`).
pub struct Archive<'a> {
    bytes: &'a [u8],
    entries: Vec<Entry>,
}

impl<'a> Archive<'a> {
    /// Reads and checks the zip directory (nothing is inflated yet).
    pub fn open(bytes: &'a [u8]) -> Result<Self> {
        Ok(Archive { bytes, entries: zip::entries(bytes)? })
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .iter()
            .find(|e| e.name == name || key(&e.name) == Some(name))
            .ok_or_else(|| Error::Missing { what: "npz archive".into(), name: name.into() })
    }

    /// One array's header (named with or without ".npy"), from at most the member's first
    /// `npy::MAX_HEADER_LEN` inflated bytes: its shape and dtype must account for exactly the
    /// size the zip directory declares, so a caller can judge the array before inflating it.
    pub fn header(&self, name: &str) -> Result<Header> {
        header(self.bytes, self.entry(name)?)
    }

    /// One array, inflating nothing else: the member is inflated only once its header agrees
    /// with its size, and then to exactly that size.
    pub fn array(&self, name: &str) -> Result<NpyArray> {
        decode(self.bytes, self.entry(name)?)
    }
}

fn header(bytes: &[u8], entry: &Entry) -> Result<Header> {
    let start = zip::read_entry_prefix(bytes, entry, npy::MAX_HEADER_LEN)?;
    npy::read_header_of(&start, entry.uncompressed_size)
        .map_err(|e| with_context(e, &format!("npz member {}", entry.name)))
}

fn decode(bytes: &[u8], entry: &Entry) -> Result<NpyArray> {
    header(bytes, entry)?;
    let member = zip::read_entry(bytes, entry)?;
    // Inflated bytes are ours: the u8 case keeps that buffer instead of copying it.
    npy::read_vec(member).map_err(|e| with_context(e, &format!("npz member {}", entry.name)))
}

/// The array names in the archive (as `np.load(...).files` lists them), in archive order.
pub fn names(bytes: &[u8]) -> Result<Vec<String>> {
    Ok(zip::entries(bytes)?.iter().filter_map(|e| key(&e.name)).map(String::from).collect())
}

/// Decodes every array in the archive, in archive order, keyed like numpy ("x_train").
pub fn read(bytes: &[u8]) -> Result<Vec<(String, NpyArray)>> {
    let mut arrays = Vec::new();
    for entry in zip::entries(bytes)? {
        if let Some(name) = key(&entry.name) {
            arrays.push((String::from(name), decode(bytes, &entry)?));
        }
    }
    Ok(arrays)
}

/// Decodes one array, named with or without ".npy", inflating nothing else.
pub fn read_member(bytes: &[u8], name: &str) -> Result<NpyArray> {
    Archive::open(bytes)?.array(name)
}

/// Writes arrays as `np.savez` (`Method::Stored`) or `np.savez_compressed` (`Method::Deflated`).
pub fn write(arrays: &[(&str, &NpyArray)], method: Method) -> Result<Vec<u8>> {
    let mut members = Vec::with_capacity(arrays.len());
    for (name, array) in arrays {
        members.push((format!("{name}.npy"), npy::write(array)?));
    }
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    zip::write(&refs, method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::npy::NpyData;
    use alloc::vec;

    fn arrays() -> Vec<(&'static str, NpyArray)> {
        vec![
            ("x_train", NpyArray::new(vec![2, 2, 2], NpyData::U8((0..8).collect())).unwrap()),
            ("y_train", NpyArray::new(vec![2], NpyData::I64(vec![3, 9])).unwrap()),
            ("w", NpyArray::new(vec![3], NpyData::F32(vec![0.5, -1.0, 2.0])).unwrap()),
        ]
    }

    fn archive(method: Method) -> Vec<u8> {
        let a = arrays();
        let refs: Vec<(&str, &NpyArray)> = a.iter().map(|(n, x)| (*n, x)).collect();
        write(&refs, method).unwrap()
    }

    #[test]
    fn round_trips() {
        for method in [Method::Stored, Method::Deflated] {
            let bytes = archive(method);
            assert_eq!(names(&bytes).unwrap(), ["x_train", "y_train", "w"]);
            let read_back = read(&bytes).unwrap();
            for ((name, array), (read_name, read_array)) in arrays().iter().zip(&read_back) {
                assert_eq!(name, read_name);
                assert_eq!(array, read_array);
                assert_eq!(read_member(&bytes, name).unwrap(), *array);
                assert_eq!(read_member(&bytes, &format!("{name}.npy")).unwrap(), *array);
            }
            assert!(matches!(read_member(&bytes, "x_test"), Err(Error::Missing { .. })));
        }
    }

    #[test]
    fn skips_members_that_are_not_arrays() {
        let npy = npy::write_u8(&[1], &[7]).unwrap();
        let bytes = zip::write(&[("notes.txt", b"hi"), ("a.npy", &npy)], Method::Deflated).unwrap();
        assert_eq!(names(&bytes).unwrap(), ["a"]);
        assert_eq!(read(&bytes).unwrap().len(), 1);
    }

    #[test]
    fn member_errors_name_the_member() {
        let bytes = zip::write(&[("bad.npy", b"\x93NUMPY\x09\x00")], Method::Stored).unwrap();
        let err = format!("{}", read(&bytes).unwrap_err());
        assert!(err.contains("npz member bad.npy") && err.contains("version 9.0"), "{err}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = archive(Method::Deflated);
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "prefix of {cut} bytes was accepted");
        }
    }
}
