//! Raw deflate decoding with hard output limits, shared by the zip (npz) and gzip (idx.gz)
//! readers. Leaves out the container formats, their checksums and compression (callers use
//! miniz_oxide's `compress_to_vec` directly).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::error::{Error, Result};

/// Deflate's best case is 258 bytes from a 1-bit code plus block overheads: about 1032:1.
/// A declared size beyond this compared with the compressed size is a lie (or a bomb).
pub(crate) const MAX_DEFLATE_RATIO: u64 = 1032;

/// The most a deflate stream of `compressed_len` bytes can inflate to.
pub(crate) fn max_inflated_len(compressed_len: u64) -> u64 {
    compressed_len.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024)
}

/// Inflates the raw deflate stream at the start of `input`, returning the output and the
/// number of input bytes the stream used (anything after it belongs to the caller).
/// `size_hint` (already capped by the caller) sizes the first buffer so the common case is
/// one allocation and no copies; output beyond `limit` is an error, not an allocation.
pub(crate) fn inflate_raw(input: &[u8], size_hint: usize, limit: usize, what: &str) -> Result<(Vec<u8>, usize)> {
    let mut inflater = Inflater::new(size_hint, limit);
    let used = inflater.inflate(input, what)?;
    Ok((inflater.into_output(), used))
}

/// The output of one or more deflate streams inflated one after the other into one buffer
/// (gzip's concatenated members), with one decompressor: each further stream costs only its
/// own bytes, never a fresh buffer or state (thousands of empty members stay cheap).
pub(crate) struct Inflater {
    decompressor: Box<DecompressorOxide>,
    /// `buf[..filled]` is the output so far; the rest is zeroed room for more.
    buf: Vec<u8>,
    filled: usize,
    limit: usize,
}

impl Inflater {
    /// Room for `size_hint` bytes first (at most `limit`); all output together may not pass `limit`.
    pub(crate) fn new(size_hint: usize, limit: usize) -> Self {
        let buf = vec![0u8; size_hint.min(limit)];
        Inflater { decompressor: Box::default(), buf, filled: 0, limit }
    }

    /// The output so far.
    pub(crate) fn output(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    pub(crate) fn into_output(mut self) -> Vec<u8> {
        self.buf.truncate(self.filled);
        self.buf
    }

    /// Inflates the raw deflate stream at the start of `input`, appending its output, and
    /// returns how many input bytes the stream used. Back-references cannot reach the output
    /// of earlier streams: each stream sees only its own output.
    pub(crate) fn inflate(&mut self, input: &[u8], what: &str) -> Result<usize> {
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        self.decompressor.init();
        let start = self.filled;
        let mut in_pos = 0;
        loop {
            let rest = input.get(in_pos..).unwrap_or(&[]);
            let out = &mut self.buf[start..];
            let (status, consumed, written) = decompress(&mut self.decompressor, rest, out, self.filled - start, flags);
            in_pos += consumed;
            self.filled += written;
            match status {
                TINFLStatus::Done => return Ok(in_pos),
                TINFLStatus::HasMoreOutput => {
                    if self.buf.len() >= self.limit {
                        // The real size is unknown (we stop here): report "at least limit + 1".
                        return Err(Error::TooLarge {
                            what: alloc::format!("{what} (inflated)"),
                            size: self.limit as u64 + 1,
                            limit: self.limit as u64,
                        });
                    }
                    let grown = self.buf.len().saturating_mul(2).max(64 * 1024).min(self.limit);
                    self.buf.resize(grown, 0);
                }
                TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                    return Err(Error::malformed(what, "the deflate stream ends before its final block"));
                }
                _ => return Err(Error::malformed(what, "invalid deflate data")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::deflate::compress_to_vec;

    #[test]
    fn round_trips_and_reports_consumed_length() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
        let mut stream = compress_to_vec(&data, 6);
        let stream_len = stream.len();
        stream.extend_from_slice(b"trailer");
        for hint in [0, 10, data.len(), data.len() + 5] {
            let (out, used) = inflate_raw(&stream, hint, usize::MAX, "test").unwrap();
            assert_eq!(out, data);
            assert_eq!(used, stream_len);
        }
    }

    #[test]
    fn empty_stream_and_empty_buffer() {
        let stream = compress_to_vec(&[], 6);
        let (out, used) = inflate_raw(&stream, 0, 0, "test").unwrap();
        assert!(out.is_empty());
        assert_eq!(used, stream.len());
    }

    #[test]
    fn streams_append_and_cannot_reach_back_into_earlier_ones() {
        let (a, b) = (b"first stream, ".repeat(50), b"second".repeat(3000));
        let mut inflater = Inflater::new(0, 1 << 20);
        assert_eq!(inflater.inflate(&compress_to_vec(&a, 6), "t").unwrap(), compress_to_vec(&a, 6).len());
        inflater.inflate(&compress_to_vec(&b, 6), "t").unwrap();
        assert_eq!(inflater.output(), [&a[..], &b[..]].concat());
        // A fixed-Huffman block whose first code copies 3 bytes from distance 1: valid only
        // after output exists, so a second stream must not read the first one's.
        let back_reference = [0x03, 0x02, 0x00, 0x00];
        let err = inflater.inflate(&back_reference, "t").unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        // The limit covers all streams together.
        let mut small = Inflater::new(0, a.len() + 10);
        small.inflate(&compress_to_vec(&a, 6), "t").unwrap();
        assert!(matches!(small.inflate(&compress_to_vec(&b, 6), "t"), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn limit_and_corruption_are_errors() {
        let data = vec![7u8; 10_000];
        let stream = compress_to_vec(&data, 6);
        assert!(matches!(inflate_raw(&stream, 100, 9_999, "t"), Err(Error::TooLarge { .. })));
        assert!(inflate_raw(&stream, 0, 10_000, "t").is_ok());
        for cut in 0..stream.len() {
            assert!(inflate_raw(&stream[..cut], 0, 10_000, "t").is_err(), "cut {cut}");
        }
        assert!(inflate_raw(&[0xff; 16], 0, 10_000, "t").is_err());
    }
}
