//! MXNet 1.x NDArray list files (`prefix-0000.params`, what `mx.nd.save` writes): dense arrays
//! of float32, float16 or float64 with their names, read and written byte for byte.
//! Leaves out sparse storage types, other dtypes and the pre-1.0 layout without a magic number.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use half::f16;

use crate::error::{Error, Result};

/// `kMXAPINDArrayListMagic`: the file starts with it as a u64, then a reserved u64.
const LIST_MAGIC: u64 = 0x112;
/// Per-array magics: V1 has no storage type, V2 adds it, V3 (numpy shape semantics) keeps V2's bytes.
const ARRAY_V1_MAGIC: u32 = 0xF993_FAC8;
const ARRAY_V2_MAGIC: u32 = 0xF993_FAC9;
const ARRAY_V3_MAGIC: u32 = 0xF993_FACA;
/// MXNet's own limit on dimensions; anything above is garbage.
const MAX_DIMS: u32 = 32;
const DEV_TYPE_CPU: i32 = 1;

/// An element type MXNet stores (its `type_flag`); we read these three and write the first two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    F64,
}

impl Dtype {
    pub const fn flag(self) -> i32 {
        match self {
            Dtype::F32 => 0,
            Dtype::F64 => 1,
            Dtype::F16 => 2,
        }
    }
    pub const fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::F16 => 2,
        }
    }
    fn from_flag(flag: i32) -> Option<Dtype> {
        match flag {
            0 => Some(Dtype::F32),
            1 => Some(Dtype::F64),
            2 => Some(Dtype::F16),
            _ => None,
        }
    }
}

/// mshadow's names for the flags we do not read, so the error says what the file holds.
fn flag_name(flag: i32) -> &'static str {
    match flag {
        3 => "uint8",
        4 => "int32",
        5 => "int8",
        6 => "int64",
        7 => "bool",
        8 => "int16",
        9 => "uint16",
        10 => "uint32",
        11 => "uint64",
        12 => "bfloat16",
        _ => "unknown",
    }
}

/// One decoded array: values widened to f32, shape as stored, name as stored (`arg:...`).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub data: Vec<f32>,
}

/// Writes `(name, shape, values)` entries as an NDArray list on the CPU context, every value
/// converted to `dtype`. Names are written as given (MXNet checkpoints prefix them `arg:`).
pub fn write_ndarray_list(entries: &[(&str, &[usize], &[f32])], dtype: Dtype) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&LIST_MAGIC.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (name, shape, values) in entries {
        if shape.iter().product::<usize>() != values.len() || shape.is_empty() {
            return Err(Error::invalid(
                "NDArray entry",
                format!("{name} has {} values, which does not fit shape {shape:?}", values.len()),
            ));
        }
        out.extend_from_slice(&ARRAY_V2_MAGIC.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes()); // dense storage
        out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for &d in shape.iter() {
            out.extend_from_slice(&(d as i64).to_le_bytes());
        }
        out.extend_from_slice(&DEV_TYPE_CPU.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes()); // device id
        out.extend_from_slice(&dtype.flag().to_le_bytes());
        for &v in values.iter() {
            match dtype {
                Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
                Dtype::F16 => out.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
                Dtype::F64 => out.extend_from_slice(&(v as f64).to_le_bytes()),
            }
        }
    }
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (name, _, _) in entries {
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    Ok(out)
}

/// A cursor over untrusted bytes: every read checks the remaining length first.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(Error::truncated(what, n, self.remaining() as u64));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
}

/// Reads an NDArray list. Every array must be dense, non-empty and float32/16/64, and there
/// must be one name per array; anything else is an `Error` saying which array and why.
pub fn read_ndarray_list(bytes: &[u8]) -> Result<Vec<NdArray>> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.u64("MXNet params header")?;
    if magic != LIST_MAGIC {
        return Err(Error::BadMagic {
            what: String::from("MXNet params file"),
            expected: format!("{LIST_MAGIC:#x}"),
            found: format!("{magic:#x}"),
        });
    }
    r.u64("MXNet params header")?; // reserved
    let count = r.u64("MXNet params array count")?;
    // No allocation by `count`: each array consumes input, so a lying count fails as truncation.
    let mut arrays = Vec::new();
    for index in 0..count {
        arrays.push(read_array(&mut r, index)?);
    }
    let name_count = r.u64("MXNet params name count")?;
    if name_count != count {
        return Err(Error::malformed("MXNet params file", format!("it holds {count} arrays but {name_count} names")));
    }
    for array in arrays.iter_mut() {
        let what = "MXNet params name";
        let len = r.u64(what)?;
        let raw = r.take(len, what)?;
        array.name = String::from(core::str::from_utf8(raw).map_err(|_| Error::malformed(what, "not UTF-8"))?);
    }
    if r.remaining() != 0 {
        return Err(Error::malformed(
            "MXNet params file",
            format!("{} unexpected bytes after the last name", r.remaining()),
        ));
    }
    Ok(arrays)
}

fn read_array(r: &mut Reader<'_>, index: u64) -> Result<NdArray> {
    let what = format!("MXNet params array #{index}");
    let magic = r.u32(&what)?;
    match magic {
        ARRAY_V1_MAGIC => {}
        ARRAY_V2_MAGIC | ARRAY_V3_MAGIC => {
            let storage = r.i32(&what)?;
            if storage != 0 {
                return Err(Error::unsupported(what, format!("storage type {storage} (only dense, 0, is read)")));
            }
        }
        other => {
            return Err(Error::BadMagic {
                what,
                expected: format!("{ARRAY_V2_MAGIC:#x}"),
                found: format!("{other:#x}"),
            })
        }
    }
    let ndim = r.u32(&what)?;
    if ndim == 0 || ndim > MAX_DIMS {
        return Err(Error::malformed(what, format!("{} dimensions (1 to {MAX_DIMS} are read)", ndim as i32)));
    }
    let mut shape = Vec::new();
    let mut elements: u64 = 1;
    for _ in 0..ndim {
        let d = r.i64(&what)?;
        if d < 0 {
            return Err(Error::malformed(what, format!("negative dimension {d}")));
        }
        // A 32-bit target cannot address more; `as` would wrap it into a wrong small shape.
        shape.push(
            usize::try_from(d).map_err(|_| Error::malformed(what.clone(), format!("dimension {d} is too large")))?,
        );
        elements = elements
            .checked_mul(d as u64)
            .ok_or_else(|| Error::malformed(what.clone(), "the element count overflows"))?;
    }
    r.i32(&what)?; // device type: arrays saved from a GPU are still plain bytes here
    r.i32(&what)?; // device id
    let flag = r.i32(&what)?;
    let dtype = Dtype::from_flag(flag).ok_or_else(|| {
        Error::unsupported(
            what.clone(),
            format!("dtype flag {flag} ({}); float32, float16 and float64 are read", flag_name(flag)),
        )
    })?;
    let len = elements
        .checked_mul(dtype.size() as u64)
        .ok_or_else(|| Error::malformed(what.clone(), "the byte size overflows"))?;
    // `take` checks `len` against the input before anything is allocated.
    let raw = r.take(len, &what)?;
    let data = match dtype {
        Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
    };
    Ok(NdArray { name: String::new(), shape, dtype, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes MXNet 1.9.1 wrote for `mx.nd.save(f, {'arg:a': arange(6).reshape(2, 3) f32,
    /// 'arg:b': [1.5, 2] f16})`.
    const MXNET_BYTES: &str = "120100000000000000000000000000000200000000000000c9fa93f9000000000200000002000000000000000300000000000000010000000000000000000000000000000000803f0000004000004040000080400000a040c9fa93f900000000010000000200000000000000010000000000000002000000003e0040020000000000000005000000000000006172673a6105000000000000006172673a62";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn reads_and_writes_mxnets_exact_bytes() {
        let bytes = unhex(MXNET_BYTES);
        let arrays = read_ndarray_list(&bytes).unwrap();
        assert_eq!(arrays.len(), 2);
        assert_eq!(arrays[0].name, "arg:a");
        assert_eq!(arrays[0].shape, [2, 3]);
        assert_eq!(arrays[0].dtype, Dtype::F32);
        assert_eq!(arrays[0].data, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(arrays[1].name, "arg:b");
        assert_eq!(arrays[1].dtype, Dtype::F16);
        assert_eq!(arrays[1].data, [1.5, 2.0]);

        // We write one dtype per file, so compare each array's bytes at its offset in MXNet's:
        // header 24, array a 64 bytes, array b 36 bytes, then the names.
        let a = write_ndarray_list(&[("arg:a", &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])], Dtype::F32).unwrap();
        let b = write_ndarray_list(&[("arg:b", &[2], &[1.5, 2.0])], Dtype::F16).unwrap();
        assert_eq!(a[..16], bytes[..16]);
        assert_eq!(a[24..88], bytes[24..88]);
        assert_eq!(b[24..60], bytes[88..124]);
        assert_eq!(a[96..], bytes[132..145]); // u64 length + "arg:a"
        assert_eq!(b[68..], bytes[145..]);
    }

    #[test]
    fn round_trips_f64_and_f16() {
        let values = [0.1f32, -2.5, 1e-3];
        for dtype in [Dtype::F32, Dtype::F16, Dtype::F64] {
            let bytes = write_ndarray_list(&[("x", &[3], &values)], dtype).unwrap();
            let back = read_ndarray_list(&bytes).unwrap();
            assert_eq!(back[0].dtype, dtype);
            for (a, b) in back[0].data.iter().zip(values) {
                let tolerance = if dtype == Dtype::F16 { 1e-3 } else { 0.0 };
                assert!((a - b).abs() <= tolerance * b.abs(), "{dtype:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn rejects_bad_input_with_clear_errors() {
        let good = write_ndarray_list(&[("arg:w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])], Dtype::F32).unwrap();
        // Truncation anywhere is an error, never a panic.
        for cut in 0..good.len() {
            assert!(read_ndarray_list(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[0] = 0x13;
        assert!(matches!(read_ndarray_list(&bad), Err(Error::BadMagic { .. })));
        // The dtype flag sits after magic(4) storage(4) ndim(4) dims(16) ctx(8).
        let flag_at = 24 + 4 + 4 + 4 + 16 + 8;
        let mut bad = good.clone();
        bad[flag_at] = 12;
        let err = read_ndarray_list(&bad).unwrap_err();
        assert!(format!("{err}").contains("bfloat16"), "{err}");
        let mut bad = good.clone();
        bad[24 + 4] = 1; // row_sparse
        assert!(matches!(read_ndarray_list(&bad), Err(Error::Unsupported { .. })));
        // A huge dimension must fail on length, not try to allocate.
        let mut bad = good.clone();
        bad[24 + 12..24 + 20].copy_from_slice(&(1i64 << 40).to_le_bytes());
        assert!(matches!(read_ndarray_list(&bad), Err(Error::Truncated { .. })));
        // A huge array count likewise.
        let mut bad = good.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_ndarray_list(&bad).is_err());
        let mut bad = good.clone();
        bad.push(0);
        assert!(matches!(read_ndarray_list(&bad), Err(Error::Malformed { .. })));
        assert!(write_ndarray_list(&[("x", &[3], &[1.0])], Dtype::F32).is_err());
    }
}
