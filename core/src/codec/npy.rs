//! The .npy array format written by numpy's `np.save`: header versions 1.0, 2.0 and 3.0, C order,
//! the dtypes u1, i1, <u4, <i4, <i8, <f4, <f8. Leaves out (rejecting each with a clear error)
//! Fortran order, big-endian data, structured and object dtypes, and memory mapping.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::codec::hex_prefix;
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// The most bytes before the data: a version 1 header at its longest (a 16-bit length; 12
/// bytes of preamble allowed). numpy writes longer headers (version 2) only for structured
/// dtypes, which are not read; a reader would otherwise inflate a gigabyte of "header".
pub const MAX_HEADER_LEN: usize = 12 + u16::MAX as usize;
/// numpy's own limit on dimensions (NPY_MAXDIMS is 32 in numpy 1, 64 in numpy 2).
const MAX_DIMS: usize = 64;

/// The element types we read and write, named by numpy's `descr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    U8,
    I8,
    U32,
    I32,
    I64,
    F32,
    F64,
}

impl DType {
    /// numpy's `descr` string, as written in headers.
    pub fn descr(self) -> &'static str {
        match self {
            DType::U8 => "|u1",
            DType::I8 => "|i1",
            DType::U32 => "<u4",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    fn parse(descr: &str) -> Result<DType> {
        let unsupported = |why: &str| Err(Error::unsupported("npy header", format!("dtype {descr:?} ({why})")));
        let (order, kind) = match descr.as_bytes().first() {
            Some(b'<' | b'>' | b'|' | b'=') => descr.split_at(1),
            _ => ("", descr),
        };
        let dtype = match kind {
            "u1" | "B" => DType::U8,
            "i1" | "b" => DType::I8,
            "u4" => DType::U32,
            "i4" => DType::I32,
            "i8" => DType::I64,
            "f4" => DType::F32,
            "f8" => DType::F64,
            "O" => return unsupported("Python objects, which need pickle"),
            _ => return unsupported("only u1, i1, u4, i4, i8, f4 and f8 are read"),
        };
        // A byte order only matters for multi-byte types; numpy always writes '<' or '|'.
        if dtype.size() > 1 && order != "<" {
            return unsupported("only little-endian multi-byte data is read");
        }
        Ok(dtype)
    }
}

/// The elements of an array, in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl NpyData {
    pub fn dtype(&self) -> DType {
        match self {
            NpyData::U8(_) => DType::U8,
            NpyData::I8(_) => DType::I8,
            NpyData::U32(_) => DType::U32,
            NpyData::I32(_) => DType::I32,
            NpyData::I64(_) => DType::I64,
            NpyData::F32(_) => DType::F32,
            NpyData::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            NpyData::U8(v) => v.len(),
            NpyData::I8(v) => v.len(),
            NpyData::U32(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An n-dimensional array: `shape` in C order and its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl NpyArray {
    /// Checks that `data` has exactly as many elements as `shape` says.
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<Self> {
        let count = element_count(&shape, "npy array")?;
        if count != data.len() {
            return Err(Error::invalid(
                "npy array",
                format!("shape {shape:?} has {count} elements but the data has {}", data.len()),
            ));
        }
        Ok(NpyArray { shape, data })
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
}

/// What a header says about the array after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Where the elements start; they run to the end of the input.
    pub data_offset: usize,
}

/// Product of the dimensions, or an error if it does not fit in a `usize`.
fn element_count(shape: &[usize], what: &str) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::malformed(what, format!("shape {shape:?} has more elements than a usize can count")))
}

/// Parses and checks the header: the shape must account for exactly the bytes after it.
pub fn read_header(bytes: &[u8]) -> Result<Header> {
    read_header_of(bytes, bytes.len() as u64)
}

/// Like `read_header` for a file of `file_len` bytes given only its first `bytes` (its first
/// `MAX_HEADER_LEN` bytes, or all of it, always suffice): the shape must account for exactly
/// the `file_len` bytes after the header. So a compressed member's claims are checked before
/// the rest of it is inflated.
pub fn read_header_of(bytes: &[u8], file_len: u64) -> Result<Header> {
    if !bytes.starts_with(MAGIC) {
        if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            return Err(Error::truncated("npy magic", MAGIC.len() as u64, file_len));
        }
        return Err(Error::BadMagic {
            what: "npy file".into(),
            expected: "93 'NUMPY'".into(),
            found: hex_prefix(bytes, 6),
        });
    }
    let field = |start: usize, len: usize| {
        bytes.get(start..start + len).ok_or_else(|| Error::truncated("npy header", (start + len) as u64, file_len))
    };
    let version = field(6, 2)?;
    let (header_start, header_len) = match (version[0], version[1]) {
        (1, 0) => {
            let len = field(8, 2)?;
            (10, u16::from_le_bytes([len[0], len[1]]) as usize)
        }
        (2 | 3, 0) => {
            let len = field(8, 4)?;
            (12, u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize)
        }
        (major, minor) => return Err(Error::unsupported("npy header", format!("format version {major}.{minor}"))),
    };
    // header_len is at most 2^32 and header_start small, so this cannot overflow a u64.
    let data_offset = header_start as u64 + header_len as u64;
    if data_offset > file_len {
        return Err(Error::truncated("npy header", data_offset, file_len));
    }
    if data_offset > MAX_HEADER_LEN as u64 {
        return Err(Error::TooLarge { what: "npy header".into(), size: data_offset, limit: MAX_HEADER_LEN as u64 });
    }
    let data_offset = data_offset as usize;
    let dict = bytes.get(header_start..data_offset).ok_or_else(|| {
        Error::invalid("npy header", format!("{} bytes of a {data_offset}-byte header were given", bytes.len()))
    })?;
    let (dtype, fortran_order, shape) = parse_dict(dict)?;
    if fortran_order {
        return Err(Error::unsupported("npy header", "fortran_order=True (column-major data)"));
    }
    let count = element_count(&shape, "npy header")?;
    let available = file_len - data_offset as u64;
    let needed = (count as u64).checked_mul(dtype.size() as u64).ok_or_else(|| {
        Error::malformed("npy header", format!("shape {shape:?} has more bytes than a u64 can count"))
    })?;
    if needed > available {
        return Err(Error::truncated("npy data", needed, available));
    }
    if needed < available {
        return Err(Error::malformed(
            "npy data",
            format!("shape {shape:?} of {} needs {needed} bytes but {available} follow the header", dtype.descr()),
        ));
    }
    Ok(Header { dtype, shape, data_offset })
}

/// Decodes a whole .npy file.
pub fn read(bytes: &[u8]) -> Result<NpyArray> {
    let header = read_header(bytes)?;
    let data = decode(header.dtype, &bytes[header.data_offset..]);
    Ok(NpyArray { shape: header.shape, data })
}

/// Like `read`, but u8 arrays reuse the input's buffer instead of copying it.
pub fn read_vec(mut bytes: Vec<u8>) -> Result<NpyArray> {
    let header = read_header(&bytes)?;
    let data = if header.dtype == DType::U8 {
        bytes.drain(..header.data_offset);
        NpyData::U8(bytes)
    } else {
        decode(header.dtype, &bytes[header.data_offset..])
    };
    Ok(NpyArray { shape: header.shape, data })
}

/// Little-endian fixed-size elements; `payload.len()` is a multiple of N (checked by the header).
fn le<T, const N: usize>(payload: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    payload
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        })
        .collect()
}

fn decode(dtype: DType, payload: &[u8]) -> NpyData {
    match dtype {
        DType::U8 => NpyData::U8(payload.to_vec()),
        DType::I8 => NpyData::I8(payload.iter().map(|&b| b as i8).collect()),
        DType::U32 => NpyData::U32(le(payload, u32::from_le_bytes)),
        DType::I32 => NpyData::I32(le(payload, i32::from_le_bytes)),
        DType::I64 => NpyData::I64(le(payload, i64::from_le_bytes)),
        DType::F32 => NpyData::F32(le(payload, f32::from_le_bytes)),
        DType::F64 => NpyData::F64(le(payload, f64::from_le_bytes)),
    }
}

/// A cursor over the header's Python dict literal, e.g.
/// `{'descr': '|u1', 'fortran_order': False, 'shape': (60000, 28, 28), }`.
struct DictParser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> DictParser<'a> {
    fn error(&self, reason: &str) -> Error {
        Error::malformed("npy header", format!("{reason} at byte {} of the header dict", self.pos))
    }

    fn skip_space(&mut self) {
        while self.text.get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Consumes `byte` (after any whitespace) if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.text.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", byte as char)))
        }
    }

    /// A quoted string without escapes (numpy never writes any in these fields).
    fn string(&mut self) -> Result<&'a str> {
        self.skip_space();
        let quote = match self.text.get(self.pos) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(self.error("expected a string")),
        };
        let start = self.pos + 1;
        let len =
            self.text[start..].iter().position(|&b| b == quote).ok_or_else(|| self.error("unterminated string"))?;
        let raw = &self.text[start..start + len];
        if raw.contains(&b'\\') {
            return Err(self.error("escaped string"));
        }
        self.pos = start + len + 1;
        core::str::from_utf8(raw).map_err(|_| self.error("non-UTF-8 string"))
    }

    fn boolean(&mut self) -> Result<bool> {
        self.skip_space();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.text[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(self.error("expected True or False"))
    }

    /// A non-negative integer; Python 2 era files write longs as `60000L`.
    fn integer(&mut self) -> Result<usize> {
        self.skip_space();
        let digits = self.text[self.pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(self.error("expected a dimension"));
        }
        let mut value: usize = 0;
        for &b in &self.text[self.pos..self.pos + digits] {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add((b - b'0') as usize))
                .ok_or_else(|| self.error("dimension does not fit in a usize"))?;
        }
        self.pos += digits;
        if self.text.get(self.pos) == Some(&b'L') {
            self.pos += 1;
        }
        Ok(value)
    }

    /// `()`, `(5,)`, `(2, 3)`; a trailing comma is allowed.
    fn shape(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut shape = Vec::new();
        while !self.eat(b')') {
            if shape.len() == MAX_DIMS {
                return Err(self.error("more than 64 dimensions"));
            }
            shape.push(self.integer()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(shape)
    }
}

fn parse_dict(text: &[u8]) -> Result<(DType, bool, Vec<usize>)> {
    let mut p = DictParser { text, pos: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    p.expect(b'{')?;
    while !p.eat(b'}') {
        let key = p.string()?;
        p.expect(b':')?;
        match key {
            "descr" => {
                p.skip_space();
                if p.text.get(p.pos) == Some(&b'[') {
                    return Err(Error::unsupported("npy header", "structured dtype (a list of fields)"));
                }
                descr = Some(DType::parse(p.string()?)?);
            }
            "fortran_order" => fortran_order = Some(p.boolean()?),
            "shape" => shape = Some(p.shape()?),
            other => return Err(Error::malformed("npy header", format!("unexpected key {other:?}"))),
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_space();
    if p.pos != text.len() {
        return Err(p.error("unexpected text after the dict"));
    }
    let missing = |key: &str| Error::Missing { what: "npy header".into(), name: key.into() };
    Ok((
        descr.ok_or_else(|| missing("descr"))?,
        fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape.ok_or_else(|| missing("shape"))?,
    ))
}

/// Python's repr of a shape tuple: `()`, `(5,)`, `(2, 3)`.
fn shape_repr(shape: &[usize]) -> String {
    let mut s = String::from("(");
    for (i, d) in shape.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{d}"));
    }
    if shape.len() == 1 {
        s.push(',');
    }
    s.push(')');
    s
}

/// Magic, version and header, padded like numpy does so the data starts 64-byte aligned.
fn header_bytes(dtype: DType, shape: &[usize], data_len: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", dtype.descr(), shape_repr(shape));
    // Version 1.0 unless the header is too long for its u16 length (only with many dimensions).
    let (version, prefix_len) = if dict.len() + 1 + 64 <= u16::MAX as usize { (1u8, 10) } else { (2u8, 12) };
    let total = (prefix_len + dict.len() + 1).div_ceil(64) * 64;
    let header_len = total - prefix_len;
    let mut out = Vec::with_capacity(total + data_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    let count = element_count(shape, "npy array")?;
    if count != len {
        return Err(Error::invalid(
            "npy array",
            format!("shape {shape:?} has {count} elements but the data has {len}"),
        ));
    }
    Ok(())
}

/// Encodes an array as a .npy file that `np.load` reads.
pub fn write(array: &NpyArray) -> Result<Vec<u8>> {
    check_len(&array.shape, array.data.len())?;
    let dtype = array.dtype();
    let mut out = header_bytes(dtype, &array.shape, array.data.len() * dtype.size());
    match &array.data {
        NpyData::U8(v) => out.extend_from_slice(v),
        NpyData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        NpyData::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    Ok(out)
}

/// Encodes u8 elements without first copying them into an `NpyArray`.
pub fn write_u8(shape: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    check_len(shape, data.len())?;
    let mut out = header_bytes(DType::U8, shape, data.len());
    out.extend_from_slice(data);
    Ok(out)
}

/// Encodes f32 elements without first copying them into an `NpyArray`.
pub fn write_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    check_len(shape, data.len())?;
    let mut out = header_bytes(DType::F32, shape, data.len() * 4);
    data.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A hand-built file with the given header dict and payload.
    fn npy_with(version: u8, dict: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn all_dtypes() -> Vec<NpyArray> {
        vec![
            NpyArray::new(vec![2, 3], NpyData::U8(vec![0, 1, 2, 253, 254, 255])).unwrap(),
            NpyArray::new(vec![3], NpyData::I8(vec![-128, 0, 127])).unwrap(),
            NpyArray::new(vec![2], NpyData::U32(vec![0, u32::MAX])).unwrap(),
            NpyArray::new(vec![2, 1], NpyData::I32(vec![i32::MIN, 7])).unwrap(),
            NpyArray::new(vec![1, 1, 2], NpyData::I64(vec![i64::MIN, i64::MAX])).unwrap(),
            NpyArray::new(vec![4], NpyData::F32(vec![0.0, -1.5, f32::INFINITY, 1e-30])).unwrap(),
            NpyArray::new(vec![], NpyData::F64(vec![core::f64::consts::PI])).unwrap(),
            NpyArray::new(vec![0, 5], NpyData::F32(vec![])).unwrap(),
        ]
    }

    #[test]
    fn round_trips_every_dtype() {
        for array in all_dtypes() {
            let bytes = write(&array).unwrap();
            assert_eq!(read_header(&bytes).unwrap().data_offset % 64, 0);
            assert_eq!(read(&bytes).unwrap(), array);
            assert_eq!(read_vec(bytes).unwrap(), array);
        }
        let f = write_f32(&[2], &[1.0, 2.0]).unwrap();
        assert_eq!(read(&f).unwrap().data, NpyData::F32(vec![1.0, 2.0]));
        let u = write_u8(&[1, 2], &[9, 8]).unwrap();
        assert_eq!(read(&u).unwrap(), NpyArray { shape: vec![1, 2], data: NpyData::U8(vec![9, 8]) });
    }

    #[test]
    fn header_matches_numpy_text() {
        let err = write_u8(&[60000, 28, 28], &[]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }));
        let bytes = write_u8(&[3], &[1, 2, 3]).unwrap();
        let text = core::str::from_utf8(&bytes[10..bytes.len() - 3]).unwrap();
        assert!(text.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }"), "{text}");
        assert!(text.ends_with(" \n"));
    }

    #[test]
    fn reads_other_header_spellings() {
        // Version 2 and 3, double quotes, no trailing comma, Python 2 longs, '<u1'.
        for (version, dict) in [
            (2, "{\"descr\": \"<u1\", \"fortran_order\": False, \"shape\": (2L, 2L)}\n"),
            (3, "{'shape':(2,2),'fortran_order':False,'descr':'|u1'}"),
            (1, "  { 'descr' : 'B' , 'fortran_order' : False , 'shape' : ( 4 , ) , }   \n"),
        ] {
            let array = read(&npy_with(version, dict, &[1, 2, 3, 4])).unwrap();
            assert_eq!(array.data, NpyData::U8(vec![1, 2, 3, 4]), "{dict}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = write(&NpyArray::new(vec![2, 2], NpyData::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap()).unwrap();
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "prefix of {cut} bytes was accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(read(&longer), Err(Error::Malformed { .. })));
    }

    #[test]
    fn rejects_bad_headers() {
        let dict = |descr: &str, fortran: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n")
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\x93NUMPX\x01\x00".to_vec(), "bad signature"),
            (b"PK\x03\x04".to_vec(), "bad signature"),
            (npy_with(4, &dict("|u1", "False", "(1,)"), &[0]), "version 4.0"),
            (npy_with(1, &dict("|u1", "True", "(1,)"), &[0]), "fortran_order"),
            (npy_with(1, &dict(">f4", "False", "(1,)"), &[0; 4]), "little-endian"),
            (npy_with(1, &dict("|O", "False", "(1,)"), &[0; 8]), "objects"),
            (npy_with(1, &dict("<c8", "False", "(1,)"), &[0; 8]), "dtype"),
            (npy_with(1, &dict("<U3", "False", "(1,)"), &[0; 12]), "dtype"),
            (npy_with(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", &[0; 4]), "structured"),
            (npy_with(1, &dict("|u1", "False", "(2,)"), &[0]), "truncated"),
            (npy_with(1, &dict("|u1", "False", "(1,)"), &[0, 0]), "follow the header"),
            (npy_with(1, &dict("|u1", "False", "(-1,)"), &[0]), "dimension"),
            (npy_with(1, &dict("|u1", "Maybe", "(1,)"), &[0]), "True or False"),
            (npy_with(1, "{'descr': '|u1', 'shape': (1,), }", &[0]), "fortran_order"),
            (npy_with(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'x': 1}", &[0]), "unexpected key"),
            (npy_with(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), } x", &[0]), "after the dict"),
            (npy_with(1, "{'descr': '|u1, 'fortran_order': False, 'shape': (1,)}", &[0]), "unsupported"),
            (npy_with(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,)", &[0]), "expected"),
            (npy_with(1, &dict("|u1", "False", "(99999999999999999999999,)"), &[0]), "usize"),
            (npy_with(1, &dict("|u1", "False", &format!("({})", "1,".repeat(65))), &[0]), "64 dimensions"),
        ];
        for (bytes, needle) in cases {
            let err = read(&bytes).unwrap_err();
            let text = format!("{err}");
            assert!(text.contains(needle), "expected {needle:?} in {text:?}");
        }
    }

    #[test]
    fn absurd_shapes_fail_without_allocating() {
        // 2^60 elements: fits a u64 but there are no bytes for it.
        let bytes =
            npy_with(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1073741824, 1073741824), }", &[0; 8]);
        assert!(matches!(read(&bytes), Err(Error::Truncated { .. })));
        // Overflowing products of dimensions and of bytes.
        let bytes = npy_with(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
            &[],
        );
        assert!(matches!(read(&bytes), Err(Error::Malformed { .. })));
        let bytes = npy_with(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952, 4), }", &[]);
        assert!(read(&bytes).is_err());
        // A zero dimension makes an empty array whatever the others claim.
        let bytes = npy_with(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 18446744073709551615), }", &[]);
        assert_eq!(read(&bytes).unwrap().data, NpyData::F64(vec![]));
        // A header length pointing past the end.
        let mut bytes = npy_with(2, "{}", &[]);
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read(&bytes), Err(Error::Truncated { .. })));
    }

    #[test]
    fn headers_are_read_from_the_first_bytes_and_bounded() {
        let array = NpyArray::new(vec![300, 4], NpyData::F32(vec![0.5; 1200])).unwrap();
        let bytes = write(&array).unwrap();
        let header = read_header(&bytes).unwrap();
        for len in [header.data_offset, header.data_offset + 1, MAX_HEADER_LEN, bytes.len()] {
            let prefix = &bytes[..len.min(bytes.len())];
            assert_eq!(read_header_of(prefix, bytes.len() as u64).unwrap(), header, "{len}");
        }
        // The file's length, not the prefix's, is what the shape must account for.
        let err = format!("{}", read_header_of(&bytes[..200], bytes.len() as u64 + 4).unwrap_err());
        assert!(err.contains("needs 4800 bytes but 4804 follow the header"), "{err}");
        assert!(matches!(read_header_of(&bytes[..200], 100), Err(Error::Truncated { .. })));
        // Too little of the header given is an error, not a panic.
        assert!(matches!(read_header_of(&bytes[..20], bytes.len() as u64), Err(Error::InvalidArgument { .. })));
        // Version 1's longest header is read; a longer one (version 2) is refused unread.
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (0,), }";
        let longest = format!("{dict}{}", " ".repeat(65535 - dict.len()));
        assert_eq!(read(&npy_with(1, &longest, &[])).unwrap().data, NpyData::U8(vec![]));
        assert_eq!(read(&npy_with(2, &longest, &[])).unwrap().data, NpyData::U8(vec![]));
        let longer = format!("{longest} ");
        let err = read(&npy_with(2, &longer, &[])).unwrap_err();
        assert!(matches!(err, Error::TooLarge { size: 65548, limit: 65547, .. }), "{err}");
    }
}
