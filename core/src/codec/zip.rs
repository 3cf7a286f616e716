//! The zip container, as far as .npz needs it: read stored and deflated members (ZIP64 sizes
//! and offsets included) checking every CRC-32, and write simple archives. Leaves out
//! encryption, multi-disk archives, other compression methods and writing ZIP64 (>4 GiB).

use alloc::borrow::Cow;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use crate::codec::hex_prefix;
use crate::codec::inflate::{inflate_raw, max_inflated_len};
use crate::error::{Error, Result};

/// The largest member we inflate: far above MNIST's 47 MB, far below a bomb's terabytes.
pub const MAX_MEMBER_SIZE: u64 = 1 << 30;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_LEN: u64 = 56;
const CENTRAL_LEN: u64 = 46;
/// In a 32-bit size or offset field: "the real value is in the ZIP64 extra field".
const ZIP64_MARK: u32 = u32::MAX;
const FLAG_ENCRYPTED: u16 = 1;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;
const FLAG_UTF8: u16 = 1 << 11;
/// 1980-01-01 00:00, the earliest DOS date: written archives do not depend on the clock.
const DOS_DATE: u16 = (1 << 5) | 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
}

/// One member, as the central directory describes it, checked against its local header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub method: Method,
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    /// Where the member's stored (possibly compressed) bytes lie in the archive.
    pub data: Range<usize>,
}

/// Little-endian fields read with bounds checks; `what` names the structure in errors.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn at(bytes: &'a [u8], pos: u64, what: &'static str) -> Result<Self> {
        match usize::try_from(pos) {
            Ok(pos) if pos <= bytes.len() => Ok(Reader { bytes, pos, what }),
            _ => Err(Error::truncated(what, pos, bytes.len() as u64)),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end =
            end.ok_or_else(|| Error::truncated(self.what, self.pos as u64 + n as u64, self.bytes.len() as u64))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(self.u32()? as u64 | (self.u32()? as u64) << 32)
    }
    fn signature(&mut self, expected: u32) -> Result<()> {
        let found = self.u32()?;
        if found != expected {
            return Err(Error::BadMagic {
                what: self.what.into(),
                expected: hex_prefix(&expected.to_le_bytes(), 4),
                found: hex_prefix(&found.to_le_bytes(), 4),
            });
        }
        Ok(())
    }
}

fn read_u32_at(bytes: &[u8], pos: usize) -> Option<u32> {
    let b = bytes.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Finds the End Of Central Directory record: the last 22 bytes, or further back over a
/// comment of at most 65535 bytes whose length the record itself must account for.
fn find_eocd(bytes: &[u8]) -> Result<usize> {
    let looks_like_zip = (bytes.len() < 4 && b"PK\x03\x04".starts_with(bytes)) || bytes.starts_with(b"PK");
    if !looks_like_zip {
        return Err(Error::BadMagic {
            what: "zip archive".into(),
            expected: "504b (\"PK\")".into(),
            found: hex_prefix(bytes, 4),
        });
    }
    if bytes.len() < EOCD_LEN {
        return Err(Error::truncated("zip end of central directory", EOCD_LEN as u64, bytes.len() as u64));
    }
    let last = bytes.len() - EOCD_LEN;
    for pos in (last.saturating_sub(u16::MAX as usize)..=last).rev() {
        if read_u32_at(bytes, pos) == Some(EOCD_SIG) {
            let comment_len = u16::from_le_bytes([bytes[pos + 20], bytes[pos + 21]]) as usize;
            if pos + EOCD_LEN + comment_len == bytes.len() {
                return Ok(pos);
            }
        }
    }
    Err(Error::malformed("zip archive", "no end of central directory record (truncated?)"))
}

/// Where the central directory is and how many entries it holds.
struct Directory {
    entries: u64,
    offset: u64,
    size: u64,
    /// The directory must end by here (the start of the EOCD records).
    limit: u64,
}

fn read_directory_location(bytes: &[u8]) -> Result<Directory> {
    let eocd = find_eocd(bytes)?;
    let mut r = Reader::at(bytes, eocd as u64, "zip end of central directory")?;
    r.signature(EOCD_SIG)?;
    let disk = r.u16()?;
    let directory_disk = r.u16()?;
    let entries_here = r.u16()? as u64;
    let entries = r.u16()? as u64;
    let size = r.u32()? as u64;
    let offset = r.u32()? as u64;
    if disk != 0 || directory_disk != 0 || entries_here != entries {
        return Err(Error::unsupported("zip archive", "multi-disk archives"));
    }
    let mut directory = Directory { entries, offset, size, limit: eocd as u64 };

    // ZIP64: a locator right before the EOCD points at a record with 64-bit counts.
    let has_locator =
        eocd >= ZIP64_LOCATOR_LEN && read_u32_at(bytes, eocd - ZIP64_LOCATOR_LEN) == Some(ZIP64_LOCATOR_SIG);
    if has_locator {
        let locator_pos = (eocd - ZIP64_LOCATOR_LEN) as u64;
        let mut r = Reader::at(bytes, locator_pos, "zip64 end of central directory locator")?;
        r.signature(ZIP64_LOCATOR_SIG)?;
        let record_disk = r.u32()?;
        let record_pos = r.u64()?;
        let disks = r.u32()?;
        if record_disk != 0 || disks > 1 {
            return Err(Error::unsupported("zip archive", "multi-disk archives"));
        }
        if record_pos.checked_add(ZIP64_EOCD_LEN).is_none_or(|end| end > locator_pos) {
            return Err(Error::malformed(
                "zip64 end of central directory locator",
                "the record it points at overlaps it",
            ));
        }
        let mut r = Reader::at(bytes, record_pos, "zip64 end of central directory")?;
        r.signature(ZIP64_EOCD_SIG)?;
        let _record_size = r.u64()?;
        let _versions = r.u32()?;
        let disk = r.u32()?;
        let directory_disk = r.u32()?;
        let entries_here = r.u64()?;
        let entries = r.u64()?;
        if disk != 0 || directory_disk != 0 || entries_here != entries {
            return Err(Error::unsupported("zip archive", "multi-disk archives"));
        }
        directory = Directory { entries, size: r.u64()?, offset: r.u64()?, limit: record_pos };
    }
    if directory.offset.checked_add(directory.size).is_none_or(|end| end > directory.limit) {
        return Err(Error::malformed(
            "zip central directory",
            format!(
                "{} bytes at offset {} run past its end record at {}",
                directory.size, directory.offset, directory.limit
            ),
        ));
    }
    // Each entry takes at least 46 bytes: this bounds the allocation below by the input size.
    if directory.entries.saturating_mul(CENTRAL_LEN) > directory.size {
        return Err(Error::malformed(
            "zip central directory",
            format!("{} entries cannot fit in {} bytes", directory.entries, directory.size),
        ));
    }
    Ok(directory)
}

/// Replaces 0xFFFFFFFF sizes and offset with the 64-bit values from a ZIP64 extra field,
/// which holds exactly those that were marked, in this order.
fn apply_zip64_extra(extra: &[u8], fields: &mut [&mut u64; 3]) -> Result<()> {
    if fields.iter().all(|f| **f != ZIP64_MARK as u64) {
        return Ok(());
    }
    let mut r = Reader { bytes: extra, pos: 0, what: "zip64 extra field" };
    while r.pos < extra.len() {
        let id = r.u16()?;
        let len = r.u16()? as usize;
        let block = r.take(len)?;
        if id == 0x0001 {
            let mut values = Reader { bytes: block, pos: 0, what: "zip64 extra field" };
            for field in fields.iter_mut() {
                if **field == ZIP64_MARK as u64 {
                    **field = values.u64()?;
                }
            }
            return Ok(());
        }
    }
    Err(Error::malformed("zip central directory", "a size or offset is marked ZIP64 but there is no ZIP64 extra field"))
}

/// Reads and checks the central directory and every member's local header. Offsets, sizes,
/// names and methods are all cross-checked; members may not overlap or exceed `MAX_MEMBER_SIZE`.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry>> {
    let directory = read_directory_location(bytes)?;
    let mut r = Reader::at(bytes, directory.offset, "zip central directory")?;
    let directory_end = directory.offset + directory.size;
    // (local header offset, end of data) of each entry, to check for overlaps.
    let mut spans: Vec<(u64, u64)> = Vec::with_capacity(directory.entries as usize);
    let mut entries: Vec<Entry> = Vec::with_capacity(directory.entries as usize);
    // A set, not a scan of the entries so far: 65,534 members took 10 s that way.
    let mut names: BTreeSet<&[u8]> = BTreeSet::new();
    for _ in 0..directory.entries {
        r.signature(CENTRAL_SIG)?;
        let _versions = r.u32()?;
        let flags = r.u16()?;
        let method = r.u16()?;
        let _time_and_date = r.u32()?;
        let crc32 = r.u32()?;
        let mut compressed_size = r.u32()? as u64;
        let mut uncompressed_size = r.u32()? as u64;
        let name_len = r.u16()? as usize;
        let extra_len = r.u16()? as usize;
        let comment_len = r.u16()? as usize;
        let _disk = r.u16()?;
        let _attributes = r.take(6)?;
        let mut header_offset = r.u32()? as u64;
        let name_bytes = r.take(name_len)?;
        let extra = r.take(extra_len)?;
        r.take(comment_len)?;
        if r.pos as u64 > directory_end {
            return Err(Error::malformed("zip central directory", "an entry runs past the directory's declared size"));
        }

        let name = core::str::from_utf8(name_bytes)
            .map_err(|_| Error::malformed("zip central directory", "a member name is not UTF-8"))?;
        let what = format!("zip member {name}");
        if flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0 || method == 99 {
            return Err(Error::unsupported(what, "encryption"));
        }
        let method = match method {
            0 => Method::Stored,
            8 => Method::Deflated,
            other => return Err(Error::unsupported(what, format!("compression method {other}"))),
        };
        apply_zip64_extra(extra, &mut [&mut uncompressed_size, &mut compressed_size, &mut header_offset])?;
        if uncompressed_size > MAX_MEMBER_SIZE {
            return Err(Error::TooLarge { what, size: uncompressed_size, limit: MAX_MEMBER_SIZE });
        }
        let plausible = match method {
            Method::Stored => compressed_size == uncompressed_size,
            Method::Deflated => uncompressed_size <= max_inflated_len(compressed_size),
        };
        if !plausible {
            return Err(Error::malformed(
                what,
                format!("{uncompressed_size} bytes cannot come from {compressed_size} stored bytes with this method"),
            ));
        }
        if !names.insert(name_bytes) {
            return Err(Error::malformed("zip central directory", format!("member name {name:?} appears twice")));
        }

        // The local header repeats the name and method; the data follows it.
        let mut local = Reader::at(bytes, header_offset, "zip local header")?;
        local.signature(LOCAL_SIG)?;
        let _version = local.u16()?;
        let local_flags = local.u16()?;
        let local_method = local.u16()?;
        let _time_and_date = local.u32()?;
        let local_crc32 = local.u32()?;
        let local_compressed = local.u32()?;
        let local_uncompressed = local.u32()?;
        let local_name_len = local.u16()? as usize;
        let local_extra_len = local.u16()? as usize;
        let local_name = local.take(local_name_len)?;
        local.take(local_extra_len)?;
        if local_name != name_bytes {
            return Err(Error::malformed(what, "the local header names a different member"));
        }
        let method_code = if method == Method::Stored { 0 } else { 8 };
        if local_method != method_code {
            return Err(Error::malformed(what, "the local header gives a different compression method"));
        }
        // Without a data descriptor the local header holds the real CRC and (unless ZIP64) sizes.
        if local_flags & FLAG_DATA_DESCRIPTOR == 0 {
            let differs = |local: u32, central: u64| local != ZIP64_MARK && local as u64 != central;
            if local_crc32 != crc32
                || differs(local_compressed, compressed_size)
                || differs(local_uncompressed, uncompressed_size)
            {
                return Err(Error::malformed(what, "the local header disagrees with the central directory"));
            }
        }
        let data_start = local.pos as u64;
        // compressed_size may be any u64 (ZIP64): saturate, and the check below rejects it.
        let data_end = data_start.saturating_add(compressed_size);
        if data_end > directory.offset {
            return Err(Error::malformed(
                what,
                format!("its data ({compressed_size} bytes at {data_start}) runs into the central directory"),
            ));
        }
        spans.push((header_offset, data_end));
        entries.push(Entry {
            name: name.into(),
            method,
            crc32,
            compressed_size,
            uncompressed_size,
            // Both are below directory.offset, itself within `bytes`: they fit a usize.
            data: data_start as usize..data_end as usize,
        });
    }
    if r.pos as u64 != directory_end {
        return Err(Error::malformed(
            "zip central directory",
            format!(
                "{} entries fill {} bytes, not the declared {}",
                directory.entries,
                r.pos as u64 - directory.offset,
                directory.size
            ),
        ));
    }
    // Overlapping members are how "zip bombs" reuse one compressed stream many times.
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(Error::malformed("zip archive", "members overlap"));
    }
    Ok(entries)
}

/// Decompresses one member (from `entries` on the same bytes) and checks its CRC-32.
pub fn read_entry(bytes: &[u8], entry: &Entry) -> Result<Vec<u8>> {
    let what = format!("zip member {}", entry.name);
    let data = bytes
        .get(entry.data.clone())
        .ok_or_else(|| Error::truncated(what.clone(), entry.data.end as u64, bytes.len() as u64))?;
    let out = match entry.method {
        Method::Stored => data.to_vec(),
        Method::Deflated => {
            // entries() capped the size at MAX_MEMBER_SIZE; a usize may still be 32 bits.
            let size = usize::try_from(entry.uncompressed_size).map_err(|_| Error::TooLarge {
                what: what.clone(),
                size: entry.uncompressed_size,
                limit: usize::MAX as u64,
            })?;
            let (out, _) = inflate_raw(data, size, size, &what).map_err(|e| match e {
                Error::TooLarge { .. } => Error::malformed(
                    what.clone(),
                    format!("inflates to more than the {size} bytes the directory declares"),
                ),
                other => other,
            })?;
            if out.len() != size {
                return Err(Error::malformed(
                    what,
                    format!("inflates to {} bytes but the directory declares {size}", out.len()),
                ));
            }
            out
        }
    };
    let actual = crc32fast::hash(&out);
    if actual != entry.crc32 {
        return Err(Error::ChecksumMismatch { what, expected: entry.crc32, actual });
    }
    Ok(out)
}

/// Finds a member by exact name and decompresses it.
pub fn read_member(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let entries = entries(bytes)?;
    let entry = entries
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::Missing { what: "zip archive".into(), name: name.into() })?;
    read_entry(bytes, entry)
}

/// A size or offset for a 32-bit field (we do not write ZIP64).
fn field32(value: usize, what: &str) -> Result<u32> {
    u32::try_from(value).ok().filter(|&v| v != ZIP64_MARK).ok_or_else(|| Error::TooLarge {
        what: what.into(),
        size: value as u64,
        limit: ZIP64_MARK as u64 - 1,
    })
}

/// Writes an archive of the given members, in order, with one method for all of them.
/// Deterministic: fixed dates, no extra fields.
pub fn write(members: &[(&str, &[u8])], method: Method) -> Result<Vec<u8>> {
    if members.len() >= u16::MAX as usize {
        return Err(Error::TooLarge {
            what: "zip archive".into(),
            size: members.len() as u64,
            limit: u16::MAX as u64 - 1,
        });
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut names = BTreeSet::new();
    for (name, data) in members {
        if name.is_empty() || name.len() > u16::MAX as usize || !names.insert(*name) {
            return Err(Error::invalid("zip member name", format!("{name:?} is empty, too long or repeated")));
        }
        let stored: Cow<[u8]> = match method {
            Method::Stored => Cow::Borrowed(data),
            Method::Deflated => Cow::Owned(miniz_oxide::deflate::compress_to_vec(data, 6)),
        };
        let what = format!("zip member {name}");
        let crc32 = crc32fast::hash(data);
        let flags = if name.is_ascii() { 0 } else { FLAG_UTF8 };
        let method_code: u16 = if method == Method::Stored { 0 } else { 8 };
        let compressed = field32(stored.len(), &what)?;
        let uncompressed = field32(data.len(), &what)?;
        let offset = field32(out.len(), "zip archive")?;
        // The fields shared by the local header and the central directory entry.
        let mut common = Vec::with_capacity(26);
        common.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0 (deflate)
        common.extend_from_slice(&flags.to_le_bytes());
        common.extend_from_slice(&method_code.to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes()); // time
        common.extend_from_slice(&DOS_DATE.to_le_bytes());
        common.extend_from_slice(&crc32.to_le_bytes());
        common.extend_from_slice(&compressed.to_le_bytes());
        common.extend_from_slice(&uncompressed.to_le_bytes());
        common.extend_from_slice(&(name.len() as u16).to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes()); // extra field length

        out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        out.extend_from_slice(&common);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&stored);

        central.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&common);
        central.extend_from_slice(&[0; 10]); // comment length, disk, internal and external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let directory_offset = field32(out.len(), "zip archive")?;
    let directory_size = field32(central.len(), "zip central directory")?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&EOCD_SIG.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&directory_size.to_le_bytes());
    out.extend_from_slice(&directory_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("a.npy", (0..3000u32).map(|i| (i % 7) as u8).collect()),
            ("empty", vec![]),
            ("b/c.txt", b"hello zip".to_vec()),
        ]
    }

    fn archive(method: Method) -> Vec<u8> {
        let members = sample();
        let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        write(&refs, method).unwrap()
    }

    fn set_u32(bytes: &mut [u8], pos: usize, value: u32) {
        bytes[pos..pos + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn round_trips_stored_and_deflated() {
        for method in [Method::Stored, Method::Deflated] {
            let bytes = archive(method);
            let entries = entries(&bytes).unwrap();
            assert_eq!(entries.len(), 3);
            for ((name, data), entry) in sample().iter().zip(&entries) {
                assert_eq!(entry.name, *name);
                assert_eq!(entry.method, method);
                assert_eq!(read_entry(&bytes, entry).unwrap(), *data);
                assert_eq!(read_member(&bytes, name).unwrap(), *data);
            }
            assert!(matches!(read_member(&bytes, "nope"), Err(Error::Missing { .. })));
        }
        assert!(archive(Method::Deflated).len() < archive(Method::Stored).len());
    }

    #[test]
    fn accepts_a_comment_and_rejects_a_wrong_comment_length() {
        let mut bytes = archive(Method::Deflated);
        let eocd = bytes.len() - EOCD_LEN;
        bytes[eocd + 20..eocd + 22].copy_from_slice(&5u16.to_le_bytes());
        bytes.extend_from_slice(b"PK\x05\x06"); // a fake signature inside the comment
        bytes.push(b'!');
        assert_eq!(entries(&bytes).unwrap().len(), 3);
        bytes.push(b'!');
        assert!(entries(&bytes).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for method in [Method::Stored, Method::Deflated] {
            let bytes = archive(method);
            for cut in 0..bytes.len() {
                assert!(entries(&bytes[..cut]).is_err(), "prefix of {cut} bytes was accepted");
            }
        }
    }

    #[test]
    fn detects_corruption() {
        let bytes = archive(Method::Deflated);
        let entries = entries(&bytes).unwrap();
        let data = entries[0].data.clone();
        // A flipped bit in the compressed data: bad deflate or a CRC mismatch, never wrong
        // data (a flip in the final byte's padding bits changes nothing, and is fine).
        let original = read_entry(&bytes, &entries[0]).unwrap();
        let mut errors = 0;
        for i in data.clone() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                match read_entry(&bad, &entries[0]) {
                    Ok(out) => assert_eq!(out, original, "flip at {i}"),
                    Err(_) => errors += 1,
                }
            }
        }
        assert!(errors > data.len() * 7, "{errors}");
        // A wrong CRC in both headers.
        let mut bad = bytes.clone();
        set_u32(&mut bad, 14, 0x1234_5678);
        let central = bad.len() - EOCD_LEN - (3 * 46 + 5 + 5 + 7);
        set_u32(&mut bad, central + 16, 0x1234_5678);
        let e = super::entries(&bad).unwrap();
        assert!(matches!(read_entry(&bad, &e[0]), Err(Error::ChecksumMismatch { .. })));
        // A declared size one too small or too large (in both headers).
        for (size, needle) in [(2999, "more than the 2999 bytes"), (3001, "inflates to 3000 bytes")] {
            let mut bad = bytes.clone();
            set_u32(&mut bad, 22, size);
            set_u32(&mut bad, central + 24, size);
            let e = super::entries(&bad).unwrap();
            let err = format!("{}", read_entry(&bad, &e[0]).unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
        // Only the local CRC wrong: the headers disagree.
        let mut bad = bytes.clone();
        set_u32(&mut bad, 14, 0x1234_5678);
        assert!(super::entries(&bad).is_err());
    }

    #[test]
    fn rejects_bad_directories() {
        let bytes = archive(Method::Stored);
        let central = bytes.len() - EOCD_LEN - (3 * 46 + 5 + 5 + 7);
        let patch = |pos: usize, value: &[u8]| {
            let mut bad = bytes.clone();
            bad[pos..pos + value.len()].copy_from_slice(value);
            format!("{}", super::entries(&bad).unwrap_err())
        };
        assert!(patch(central + 8, &1u16.to_le_bytes()).contains("encryption"));
        assert!(patch(central + 10, &12u16.to_le_bytes()).contains("compression method 12"));
        assert!(patch(central + 46, b"x").contains("different member"));
        assert!(patch(central + 46, &[0xff]).contains("UTF-8"));
        assert!(patch(central + 42, &1u32.to_le_bytes()).contains("signature"));
        assert!(patch(central + 20, &100u32.to_le_bytes()).contains("cannot come from"));
        assert!(patch(central + 24, &(MAX_MEMBER_SIZE as u32 + 1).to_le_bytes()).contains("too large"));
        // The second member pointing at the first one's header: overlap (and a name mismatch).
        assert!(patch(central + 46 + 5 + 42, &0u32.to_le_bytes()).contains("different member"));
        // Entry counts and sizes in the end record.
        let eocd = bytes.len() - EOCD_LEN;
        assert!(patch(eocd + 10, &1000u16.to_le_bytes()).contains("multi-disk"));
        assert!(patch(eocd + 8, &1000u16.to_le_bytes()).contains("multi-disk"));
        let mut counts = 1000u16.to_le_bytes().to_vec();
        counts.extend_from_slice(&1000u16.to_le_bytes());
        assert!(patch(eocd + 8, &counts).contains("cannot fit"));
        assert!(patch(eocd + 12, &u32::MAX.to_le_bytes()).contains("run past"));
        assert!(patch(eocd + 16, &(central as u32 + 1).to_le_bytes()).contains("run past"));
        assert!(patch(eocd + 16, &(central as u32 - 1).to_le_bytes()).contains("signature"));
        assert!(patch(0, b"XX").contains("signature"));
    }

    #[test]
    fn overlapping_members_are_rejected() {
        let bytes = archive(Method::Stored);
        let entries = entries(&bytes).unwrap();
        let mut bad = bytes.clone();
        // Make the first member claim more data than it has, running over the second's header.
        let central = bytes.len() - EOCD_LEN - (3 * 46 + 5 + 5 + 7);
        let bigger = (entries[0].compressed_size + 10) as u32;
        set_u32(&mut bad, central + 20, bigger);
        set_u32(&mut bad, central + 24, bigger);
        set_u32(&mut bad, 18, bigger);
        set_u32(&mut bad, 22, bigger);
        let err = super::entries(&bad).unwrap_err();
        assert!(format!("{err}").contains("overlap"), "{err}");
    }

    #[test]
    fn reads_zip64_records_and_extra_fields() {
        // Rebuild the stored archive with ZIP64 markers, like Python's zipfile does for
        // large archives: sizes and offset in an extra field, and ZIP64 end records.
        let plain = archive(Method::Stored);
        let entries = entries(&plain).unwrap();
        let central = plain.len() - EOCD_LEN - (3 * 46 + 5 + 5 + 7);
        let mut out = plain[..central].to_vec();
        let mut r = central;
        for entry in &entries {
            let name_len = entry.name.len();
            let mut header = plain[r..r + 46].to_vec();
            let offset = u32::from_le_bytes(plain[r + 42..r + 46].try_into().unwrap()) as u64;
            set_u32(&mut header, 20, ZIP64_MARK);
            set_u32(&mut header, 24, ZIP64_MARK);
            set_u32(&mut header, 42, ZIP64_MARK);
            header[30..32].copy_from_slice(&(4u16 + 24 + 4).to_le_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(entry.name.as_bytes());
            // An unrelated extra block first, then the ZIP64 one.
            out.extend_from_slice(&[0x55, 0x54, 0, 0]);
            out.extend_from_slice(&[1, 0, 24, 0]);
            out.extend_from_slice(&entry.uncompressed_size.to_le_bytes());
            out.extend_from_slice(&entry.compressed_size.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            r += 46 + name_len;
        }
        let directory_size = (out.len() - central) as u64;
        let record = out.len() as u64;
        out.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&3u64.to_le_bytes());
        out.extend_from_slice(&3u64.to_le_bytes());
        out.extend_from_slice(&directory_size.to_le_bytes());
        out.extend_from_slice(&(central as u64).to_le_bytes());
        out.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&record.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        out.extend_from_slice(&[0xff; 8]);
        out.extend_from_slice(&[0, 0]);
        let zip64 = super::entries(&out).unwrap();
        assert_eq!(zip64, entries);
        for (name, data) in sample() {
            assert_eq!(read_member(&out, name).unwrap(), data);
        }
        // A marked field without the extra block is an error.
        let mut bad = out.clone();
        bad[central + 30..central + 32].copy_from_slice(&0u16.to_le_bytes());
        assert!(super::entries(&bad).is_err());
        for cut in 0..out.len() {
            assert!(super::entries(&out[..cut]).is_err(), "prefix of {cut} bytes was accepted");
        }
    }

    #[test]
    fn absurd_sizes_fail_fast() {
        // The first deflated member alone, one of its sizes moved to a ZIP64 extra field.
        let one_member_with_zip64 = |field: usize, value: u64| {
            let bytes = archive(Method::Deflated);
            let central = bytes.len() - EOCD_LEN - (3 * 46 + 5 + 5 + 7);
            let mut bad = bytes[..central].to_vec();
            set_u32(&mut bad, field - 2, ZIP64_MARK); // the same field in the local header
            let mut header = bytes[central..central + 46].to_vec();
            set_u32(&mut header, field, ZIP64_MARK);
            header[30..32].copy_from_slice(&12u16.to_le_bytes());
            bad.extend_from_slice(&header);
            bad.extend_from_slice(b"a.npy");
            bad.extend_from_slice(&[1, 0, 8, 0]);
            bad.extend_from_slice(&value.to_le_bytes());
            let size = (bad.len() - central) as u32;
            bad.extend_from_slice(&EOCD_SIG.to_le_bytes());
            bad.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
            bad.extend_from_slice(&size.to_le_bytes());
            bad.extend_from_slice(&(central as u32).to_le_bytes());
            bad.extend_from_slice(&[0, 0]);
            super::entries(&bad)
        };
        // Uncompressed 2^60 bytes; compressed sizes that overflow or run past the directory.
        assert!(matches!(one_member_with_zip64(24, 1 << 60), Err(Error::TooLarge { .. })));
        for value in [u64::MAX, u64::MAX - 40, 1 << 40] {
            let err = one_member_with_zip64(20, value).unwrap_err();
            assert!(format!("{err}").contains("runs into the central directory"), "{err}");
        }
        // The unchanged value through the same path is fine.
        let plain = super::entries(&archive(Method::Deflated)).unwrap();
        assert_eq!(one_member_with_zip64(24, plain[0].uncompressed_size).unwrap()[0], plain[0]);
    }

    #[test]
    fn many_members_are_read_and_written_in_n_log_n() {
        extern crate std;
        // The most members a plain end record can count. Checking each name against all
        // earlier ones took 10.6 s to read this 5.7 MB archive and 12.6 s to write it.
        let names: Vec<String> = (0..u16::MAX as usize - 1).map(|i| format!("m{i}")).collect();
        let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let started = std::time::Instant::now();
        let bytes = write(&members, Method::Stored).unwrap();
        assert_eq!(entries(&bytes).unwrap().len(), members.len());
        let elapsed = started.elapsed();
        assert!(elapsed.as_secs_f64() < 2.0, "{} members took {elapsed:?}", members.len());
        // The set still finds a repeated name: the last member renamed to the first's.
        let mut repeated = write(&[("m0", b"x"), ("m1", b"y"), ("m2", b"z")], Method::Stored).unwrap();
        let (local, central) = (2 * (30 + 2 + 1), repeated.len() - EOCD_LEN - 2);
        repeated[local + 31] = b'0';
        repeated[central + 1] = b'0';
        let err = entries(&repeated).unwrap_err();
        assert!(format!("{err}").contains("\"m0\" appears twice"), "{err}");
    }

    #[test]
    fn writer_rejects_bad_names() {
        assert!(write(&[("", b"x")], Method::Stored).is_err());
        assert!(write(&[("a", b"x"), ("a", b"y")], Method::Stored).is_err());
        let bytes = write(&[("ünïcode", b"x")], Method::Stored).unwrap();
        assert_eq!(read_member(&bytes, "ünïcode").unwrap(), b"x");
    }
}
