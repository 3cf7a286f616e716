//! Checks a finished file against what it must be (size, sha256, md5, in one pass) and the
//! hex helpers for digests. Leaves out where the expected values come from (the caller's).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256};

/// What a finished file must be; a field left `None` is not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub size: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    pub md5: Option<[u8; 16]>,
}

impl Expected {
    /// Whether a file can be told apart from a wrong one with the same size.
    pub fn has_digest(&self) -> bool {
        self.sha256.is_some() || self.md5.is_some()
    }
}

/// How a file differs from what it must be (the first difference found).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Size { expected: u64, actual: u64 },
    Sha256 { expected: [u8; 32], actual: [u8; 32] },
    Md5 { expected: [u8; 16], actual: [u8; 16] },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Size { expected, actual } => {
                write!(f, "it has {actual} bytes where {expected} were expected")
            }
            Mismatch::Sha256 { expected, actual } => {
                write!(f, "its sha256 is {} where {} was expected", to_hex(actual), to_hex(expected))
            }
            Mismatch::Md5 { expected, actual } => {
                write!(f, "its md5 is {} where {} was expected", to_hex(actual), to_hex(expected))
            }
        }
    }
}

/// Checks the file at `path`: `Ok(None)` when it matches, `Ok(Some(_))` when it does not.
/// The size is checked first, so a short file costs no hashing.
pub fn check_file(path: &Path, expected: &Expected) -> io::Result<Option<Mismatch>> {
    let mut file = File::open(path)?;
    let actual_size = file.metadata()?.len();
    if let Some(size) = expected.size {
        if size != actual_size {
            return Ok(Some(Mismatch::Size { expected: size, actual: actual_size }));
        }
    }
    if !expected.has_digest() {
        return Ok(None);
    }
    let mut sha256 = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Only the digests we will compare are computed.
        if expected.sha256.is_some() {
            sha256.update(&buf[..n]);
        }
        if expected.md5.is_some() {
            md5.update(&buf[..n]);
        }
    }
    if let Some(expected) = expected.sha256 {
        let actual: [u8; 32] = sha256.finalize().into();
        if actual != expected {
            return Ok(Some(Mismatch::Sha256 { expected, actual }));
        }
    }
    if let Some(expected) = expected.md5 {
        let actual: [u8; 16] = md5.finalize().into();
        if actual != expected {
            return Ok(Some(Mismatch::Md5 { expected, actual }));
        }
    }
    Ok(None)
}

/// Lower-case hex, as `sha256sum` prints it.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Parses a 64-digit hex sha256 (either case; surrounding spaces ignored), as given to `--sha256`.
pub fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(format!("a sha256 has 64 hex digits, {:?} has {}", text, digits.len()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
            _ => return Err(format!("{text:?} is not hexadecimal")),
        }
    }
    Ok(out)
}

/// Decodes a digest written as hex in the source (the known MNIST digests); a bad literal
/// fails the build, since this only runs in constants.
pub const fn hex_digest<const N: usize>(text: &str) -> [u8; N] {
    let digits = text.as_bytes();
    assert!(digits.len() == 2 * N, "wrong number of hex digits");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        match (hex_value(digits[2 * i]), hex_value(digits[2 * i + 1])) {
            (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
            _ => panic!("not a hex digit"),
        }
        i += 1;
    }
    out
}

const fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}
