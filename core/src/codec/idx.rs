//! LeCun's idx format (MNIST, Fashion-MNIST): a magic with the element type and rank, big-endian
//! u32 dimensions, then the data; plain or gzip-wrapped (.gz, every CRC and length checked).
//! Leaves out element types other than u8 (0x08), which no MNIST-style file uses.

use alloc::format;
use alloc::vec::Vec;

use crate::codec::hex_prefix;
use crate::codec::inflate::{max_inflated_len, Inflater};
use crate::error::{Error, Result};

/// Magic of an image file: u8 elements, 3 dimensions (N, rows, cols).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of a label file: u8 elements, 1 dimension (N).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The most a gzip file may inflate to (Fashion-MNIST's largest file inflates to 47 MB).
pub const MAX_GUNZIPPED_SIZE: usize = 1 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const U8_TYPE: u8 = 0x08;
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;

/// A decoded idx file: `shape` in C order and the u8 elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl IdxArray {
    /// The four magic bytes' value, e.g. `IMAGES_MAGIC` for a rank-3 array.
    pub fn magic(&self) -> u32 {
        (U8_TYPE as u32) << 8 | self.shape.len() as u32
    }
}

/// Parses and checks the header: the dimensions must account for exactly the bytes after it.
/// Returns the shape and where the data starts.
pub fn read_header(bytes: &[u8]) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 {
        return Err(Error::truncated("idx header", 4, bytes.len() as u64));
    }
    let (zeros, element_type, rank) = (&bytes[..2], bytes[2], bytes[3] as usize);
    let type_name = match element_type {
        U8_TYPE => None,
        0x09 => Some("i8"),
        0x0B => Some("i16"),
        0x0C => Some("i32"),
        0x0D => Some("f32"),
        0x0E => Some("f64"),
        _ => Some(""),
    };
    if zeros != [0, 0] || type_name == Some("") || rank == 0 {
        return Err(Error::BadMagic {
            what: "idx file".into(),
            expected: "00 00 08 (u8 elements) and a rank of at least 1".into(),
            found: hex_prefix(bytes, 4),
        });
    }
    if let Some(name) = type_name {
        return Err(Error::unsupported("idx file", format!("element type {name} (only u8 is read)")));
    }
    let data_offset = 4 + 4 * rank;
    let dims = bytes
        .get(4..data_offset)
        .ok_or_else(|| Error::truncated("idx header", data_offset as u64, bytes.len() as u64))?;
    let mut shape = Vec::with_capacity(rank);
    let mut count: u64 = 1;
    for d in dims.chunks_exact(4) {
        let dim = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        // Check the product before trusting any dimension: its bytes must all be there.
        count = count.saturating_mul(dim as u64);
        shape.push(dim as usize);
    }
    let available = (bytes.len() - data_offset) as u64;
    if count > available {
        return Err(Error::truncated("idx data", count, available));
    }
    if count < available {
        return Err(Error::malformed(
            "idx data",
            format!("dimensions {shape:?} need {count} bytes but {available} follow the header"),
        ));
    }
    Ok((shape, data_offset))
}

/// Decodes a plain (not gzipped) idx file.
pub fn read(bytes: &[u8]) -> Result<IdxArray> {
    let (shape, offset) = read_header(bytes)?;
    Ok(IdxArray { shape, data: bytes[offset..].to_vec() })
}

/// Like `read`, reusing the input's buffer for the data.
pub fn read_vec(mut bytes: Vec<u8>) -> Result<IdxArray> {
    let (shape, offset) = read_header(&bytes)?;
    bytes.drain(..offset);
    Ok(IdxArray { shape, data: bytes })
}

/// Decodes an idx file, gunzipping it first if it starts with the gzip magic.
pub fn read_maybe_gzip(bytes: &[u8]) -> Result<IdxArray> {
    if is_gzip(bytes) {
        read_vec(gunzip(bytes)?)
    } else {
        read(bytes)
    }
}

/// Encodes u8 elements as an idx file.
pub fn write_u8(shape: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let rank = u8::try_from(shape.len()).ok().filter(|&r| r > 0);
    let rank = rank.ok_or_else(|| Error::invalid("idx shape", format!("rank {} is not in 1..=255", shape.len())))?;
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if shape.iter().any(|&d| u32::try_from(d).is_err()) || count != Some(data.len()) {
        return Err(Error::invalid(
            "idx shape",
            format!("{shape:?} does not describe {} elements with u32 dimensions", data.len()),
        ));
    }
    let mut out = Vec::with_capacity(4 + 4 * shape.len() + data.len());
    out.extend_from_slice(&[0, 0, U8_TYPE, rank]);
    for &d in shape {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Whether `bytes` starts like a gzip file.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Length of the gzip member header at the start of `bytes` (RFC 1952), checking its CRC-16.
fn gzip_header_len(bytes: &[u8]) -> Result<usize> {
    let truncated = |needed: usize| Error::truncated("gzip header", needed as u64, bytes.len() as u64);
    if !is_gzip(bytes) {
        if bytes.len() < 2 && GZIP_MAGIC.starts_with(bytes) {
            return Err(truncated(2));
        }
        return Err(Error::BadMagic { what: "gzip file".into(), expected: "1f8b".into(), found: hex_prefix(bytes, 2) });
    }
    let fixed = bytes.get(..10).ok_or_else(|| truncated(10))?;
    if fixed[2] != 8 {
        return Err(Error::unsupported("gzip file", format!("compression method {}", fixed[2])));
    }
    let flags = fixed[3];
    if flags & 0xE0 != 0 {
        return Err(Error::malformed("gzip header", format!("reserved flag bits are set ({flags:#04x})")));
    }
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let len = bytes.get(pos..pos + 2).ok_or_else(|| truncated(pos + 2))?;
        pos += 2 + u16::from_le_bytes([len[0], len[1]]) as usize;
    }
    // The file name and comment are zero-terminated.
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let field = bytes.get(pos..).unwrap_or(&[]);
            let len = field.iter().position(|&b| b == 0).ok_or_else(|| truncated(bytes.len() + 1))?;
            pos += len + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = bytes.get(pos..pos + 2).ok_or_else(|| truncated(pos + 2))?;
        let expected = u16::from_le_bytes([stored[0], stored[1]]) as u32;
        let actual = crc32fast::hash(&bytes[..pos]) & 0xffff;
        if expected != actual {
            return Err(Error::ChecksumMismatch { what: "gzip header".into(), expected, actual });
        }
        pos += 2;
    }
    if pos > bytes.len() {
        return Err(truncated(pos));
    }
    Ok(pos)
}

/// Decompresses a gzip file: one member or several concatenated (as `cat a.gz b.gz` makes),
/// checking each member's CRC-32 and length. Output beyond `MAX_GUNZIPPED_SIZE` is an error.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>> {
    // The last member's ISIZE sizes the first buffer (exact for the usual single member),
    // unless deflate could not possibly produce that much from this input.
    let isize_hint = match bytes.len().checked_sub(4).and_then(|p| bytes.get(p..)) {
        Some(t) => u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as u64,
        None => 0,
    };
    let hint = if isize_hint <= max_inflated_len(bytes.len() as u64) { isize_hint as usize } else { 0 };
    // One buffer and one decompressor for all members, so a file of many tiny members costs
    // time in proportion to its bytes.
    let mut inflater = Inflater::new(hint, MAX_GUNZIPPED_SIZE);
    let mut pos = 0;
    loop {
        let member = &bytes[pos..];
        let header_len = gzip_header_len(member)?;
        let start = inflater.output().len();
        let used = inflater.inflate(&member[header_len..], "gzip data")?;
        let data = &inflater.output()[start..];
        let trailer_start = header_len + used;
        let trailer = member
            .get(trailer_start..trailer_start + 8)
            .ok_or_else(|| Error::truncated("gzip trailer", (pos + trailer_start + 8) as u64, bytes.len() as u64))?;
        let expected = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let actual = crc32fast::hash(data);
        if expected != actual {
            return Err(Error::ChecksumMismatch { what: "gzip data".into(), expected, actual });
        }
        // ISIZE is the length modulo 2^32.
        let length = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if length != data.len() as u32 {
            return Err(Error::malformed(
                "gzip trailer",
                format!("it records {length} bytes but the data inflated to {}", data.len()),
            ));
        }
        pos += trailer_start + 8;
        if pos == bytes.len() {
            return Ok(inflater.into_output());
        }
    }
}

/// Compresses `data` as a single-member gzip file with no name and a zero time stamp.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn images() -> IdxArray {
        IdxArray { shape: vec![3, 2, 4], data: (0..24).map(|i| i * 10).collect() }
    }

    #[test]
    fn round_trips_plain_and_gzipped() {
        let array = images();
        let bytes = write_u8(&array.shape, &array.data).unwrap();
        assert_eq!(&bytes[..4], &IMAGES_MAGIC.to_be_bytes());
        assert_eq!(array.magic(), IMAGES_MAGIC);
        assert_eq!(read(&bytes).unwrap(), array);
        assert_eq!(read_vec(bytes.clone()).unwrap(), array);
        assert_eq!(read_maybe_gzip(&bytes).unwrap(), array);
        let gz = gzip(&bytes);
        assert!(is_gzip(&gz));
        assert_eq!(gunzip(&gz).unwrap(), bytes);
        assert_eq!(read_maybe_gzip(&gz).unwrap(), array);
        let labels = write_u8(&[5], &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(&labels[..4], &LABELS_MAGIC.to_be_bytes());
        let empty = write_u8(&[0, 28, 28], &[]).unwrap();
        assert_eq!(read(&empty).unwrap().shape, [0, 28, 28]);
        assert_eq!(gunzip(&gzip(&[])).unwrap(), b"");
    }

    /// A member with every optional header field, its header CRC right.
    fn fancy_gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, FHCRC | FEXTRA | FNAME | FCOMMENT, 1, 2, 3, 4, 2, 3];
        out.extend_from_slice(&[6, 0, b'A', b'B', 2, 0, 9, 9]);
        out.extend_from_slice(b"train-images-idx3-ubyte\0a comment\0");
        let crc = crc32fast::hash(&out) as u16;
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&gzip(data)[10..]);
        out
    }

    #[test]
    fn reads_optional_header_fields_and_concatenated_members() {
        let data = b"hello, gzip header fields".repeat(20);
        assert_eq!(gunzip(&fancy_gzip(&data)).unwrap(), data);
        let mut two = gzip(b"first part, ");
        two.extend_from_slice(&fancy_gzip(b"second part"));
        assert_eq!(gunzip(&two).unwrap(), b"first part, second part");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let array = images();
        let bytes = write_u8(&array.shape, &array.data).unwrap();
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "prefix of {cut} bytes was accepted");
        }
        for gz in [gzip(&bytes), fancy_gzip(&bytes)] {
            for cut in 0..gz.len() {
                assert!(read_maybe_gzip(&gz[..cut]).is_err(), "gzip prefix of {cut} bytes was accepted");
            }
        }
    }

    #[test]
    fn rejects_bad_files() {
        let bytes = write_u8(&[4], &[1, 2, 3, 4]).unwrap();
        let message = |result: Result<IdxArray>| format!("{}", result.unwrap_err());
        assert!(message(read(&[1, 0, 8, 1, 0, 0, 0, 0])).contains("bad signature"));
        assert!(message(read(&[0, 0, 7, 1, 0, 0, 0, 0])).contains("bad signature"));
        assert!(message(read(&[0, 0, 8, 0])).contains("bad signature"));
        assert!(message(read(&[0, 0, 0x0D, 1, 0, 0, 0, 0])).contains("f32"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(message(read(&longer)).contains("follow the header"));

        let gz = gzip(&bytes);
        let n = gz.len();
        let patched = |pos: usize, value: u8| {
            let mut bad = gz.clone();
            bad[pos] = value;
            message(read_maybe_gzip(&bad))
        };
        assert!(patched(2, 9).contains("compression method 9"));
        assert!(patched(3, 0x20).contains("reserved"));
        assert!(patched(n - 8, gz[n - 8] ^ 1).contains("checksum"));
        assert!(patched(n - 4, gz[n - 4] ^ 1).contains("records"));
        let mut bad_header_crc = fancy_gzip(&bytes);
        let crc_pos = 10 + 8 + 34;
        bad_header_crc[crc_pos] ^= 1;
        assert!(message(read_maybe_gzip(&bad_header_crc)).contains("checksum"));
        let mut trailing = gz.clone();
        trailing.push(0);
        assert!(read_maybe_gzip(&trailing).is_err());
    }

    #[test]
    fn many_members_share_one_buffer() {
        // One byte per member, in order (that each member no longer allocates its own buffer
        // and decompressor is checked by counting allocations in tests/tests/codecs_prop.rs).
        let bytes = gzip(b"x").repeat(1000);
        assert_eq!(gunzip(&bytes).unwrap(), b"x".repeat(1000));
        let mut mixed = gzip(b"");
        mixed.extend_from_slice(&fancy_gzip(b"abc"));
        mixed.extend_from_slice(&gzip(b""));
        assert_eq!(gunzip(&mixed).unwrap(), b"abc");
    }

    #[test]
    fn absurd_sizes_fail_fast() {
        // Three dimensions of 2^32-1: a product beyond u64, and no data.
        let bytes = [0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read(&bytes), Err(Error::Truncated { .. })));
        // 2^60 bytes claimed, 4 present.
        let bytes = [0, 0, 8, 2, 0x40, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4];
        assert!(matches!(read(&bytes), Err(Error::Truncated { .. })));
        // A gzip trailer claiming 4 GiB for a few bytes: the hint is ignored, the length checked.
        let mut gz = gzip(b"tiny");
        let n = gz.len();
        gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(gunzip(&gz).is_err());
        assert!(write_u8(&[1 << 33], &[]).is_err());
        assert!(write_u8(&[], &[]).is_err());
    }
}
