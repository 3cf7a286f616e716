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
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let mut out = vec![0u8; size_hint.min(limit)];
    let mut decompressor = Box::<DecompressorOxide>::default();
    let mut in_pos = 0;
    let mut out_pos = 0;
    loop {
        let rest = input.get(in_pos..).unwrap_or(&[]);
        let (status, consumed, written) = decompress(&mut decompressor, rest, &mut out, out_pos, flags);
        in_pos += consumed;
        out_pos += written;
        match status {
            TINFLStatus::Done => {
                out.truncate(out_pos);
                return Ok((out, in_pos));
            }
            TINFLStatus::HasMoreOutput => {
                if out.len() >= limit {
                    // The real size is unknown (we stop here): report "at least limit + 1".
                    return Err(Error::TooLarge {
                        what: alloc::format!("{what} (inflated)"),
                        size: limit as u64 + 1,
                        limit: limit as u64,
                    });
                }
                let grown = out.len().saturating_mul(2).max(64 * 1024).min(limit);
                out.resize(grown, 0);
            }
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                return Err(Error::malformed(what, "the deflate stream ends before its final block"));
            }
            _ => return Err(Error::malformed(what, "invalid deflate data")),
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
