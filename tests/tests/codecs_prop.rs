//! Property tests for the dataset codecs: random arrays round-trip through every writer and
//! reader, and random or randomly mutated bytes never make a decoder panic (only return Err).
//! Leaves out real files (codecs_real.rs) and hand-picked malformed cases (the unit tests).

use mnist_core::codec::npy::{NpyArray, NpyData};
use mnist_core::codec::{idx, mnist, npy, npz, zip};
use proptest::prelude::*;

/// Runs every decoder on `bytes`; they may fail but must not panic.
fn decode_everything(bytes: &[u8]) {
    let _ = npy::read(bytes);
    let _ = npy::read_vec(bytes.to_vec());
    let _ = npz::names(bytes);
    let _ = npz::read(bytes);
    let _ = npz::read_member(bytes, "x_train");
    if let Ok(entries) = zip::entries(bytes) {
        for entry in &entries {
            let _ = zip::read_entry(bytes, entry);
        }
    }
    let _ = idx::read(bytes);
    let _ = idx::gunzip(bytes);
    let _ = idx::read_maybe_gzip(bytes);
    let _ = mnist::from_npz(bytes);
    let _ = mnist::from_idx(bytes, bytes, bytes, bytes);
}

/// Small arrays of every dtype, with shapes of rank 0 to 3.
fn array() -> impl Strategy<Value = NpyArray> {
    prop::collection::vec(0usize..5, 0..4).prop_flat_map(|shape| {
        let n: usize = shape.iter().product();
        let data = prop_oneof![
            prop::collection::vec(any::<u8>(), n).prop_map(NpyData::U8),
            prop::collection::vec(any::<i8>(), n).prop_map(NpyData::I8),
            prop::collection::vec(any::<u32>(), n).prop_map(NpyData::U32),
            prop::collection::vec(any::<i32>(), n).prop_map(NpyData::I32),
            prop::collection::vec(any::<i64>(), n).prop_map(NpyData::I64),
            // Finite floats so that equality is meaningful (NaN != NaN).
            prop::collection::vec(-1e30f32..1e30, n).prop_map(NpyData::F32),
            prop::collection::vec(-1e300f64..1e300, n).prop_map(NpyData::F64),
        ];
        data.prop_map(move |data| NpyArray::new(shape.clone(), data).unwrap())
    })
}

fn method() -> impl Strategy<Value = zip::Method> {
    prop_oneof![Just(zip::Method::Stored), Just(zip::Method::Deflated)]
}

/// A small valid file of each format, to mutate.
fn valid_files() -> Vec<Vec<u8>> {
    let images: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 37 % 256) as u8).collect();
    let x = NpyArray::new(vec![2, 4, 4], NpyData::U8(images.clone())).unwrap();
    let y = NpyArray::new(vec![2], NpyData::U8(vec![3, 7])).unwrap();
    let arrays = [("x_train", &x), ("y_train", &y), ("x_test", &x), ("y_test", &y)];
    let idx_images = idx::write_u8(&[2, 4, 4], &images).unwrap();
    let stored = npz::write(&arrays, zip::Method::Stored).unwrap();
    let deflated = npz::write(&arrays, zip::Method::Deflated).unwrap();
    vec![
        npy::write(&x).unwrap(),
        npy::write_f32(&[3], &[1.0, 2.0, 3.0]).unwrap(),
        stored.clone(),
        deflated.clone(),
        idx_images.clone(),
        idx::gzip(&idx_images),
        // numpy's own output: ZIP64 extra fields in the local headers.
        include_bytes!("fixtures/numpy/savez.npz").to_vec(),
        include_bytes!("fixtures/numpy/savez_compressed.npz").to_vec(),
        to_zip64(&stored),
        to_zip64(&deflated),
    ]
}

/// Rewrites one of our archives (no extra fields) with every size and offset in ZIP64 extra
/// fields and ZIP64 end records, as writers do for archives over 4 GiB, so mutations reach
/// those paths too.
fn to_zip64(archive: &[u8]) -> Vec<u8> {
    let entries = zip::entries(archive).unwrap();
    let directory = entries.last().unwrap().data.end;
    let mut out = archive[..directory].to_vec();
    for e in &entries {
        let local_offset = (e.data.start - 30 - e.name.len()) as u64;
        // Like Python's zipfile with force_zip64, the local header defers its sizes too.
        let sizes = local_offset as usize + 18;
        out[sizes..sizes + 8].copy_from_slice(&[0xff; 8]);
        let method: u16 = if e.method == zip::Method::Stored { 0 } else { 8 };
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&[45, 0, 45, 0, 0, 0]);
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&e.crc32.to_le_bytes());
        out.extend_from_slice(&[0xff; 8]);
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&28u16.to_le_bytes()); // extra field length
        out.extend_from_slice(&[0; 10]); // comment length, disk, attributes
        out.extend_from_slice(&[0xff; 4]); // local header offset
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&[1, 0, 24, 0]);
        for v in [e.uncompressed_size, e.compressed_size, local_offset] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let (record, count) = (out.len() as u64, entries.len() as u64);
    out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for v in [count, count, record - directory as u64, directory as u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&record.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&[0xff; 12]);
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn zip64_seed_is_valid() {
    for bytes in &valid_files()[2..4] {
        let zip64 = to_zip64(bytes);
        assert_ne!(&zip64, bytes);
        assert_eq!(npz::read(&zip64).unwrap(), npz::read(bytes).unwrap());
    }
}

/// Edits to apply to a valid file: bytes overwritten, a size-like field overwritten with an
/// extreme value (to reach ZIP64 and size checks), a truncation, bytes inserted.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    SetU32(usize, u32),
    SetU64(usize, u64),
    Xor(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Edit::Xor(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(0u32), Just(1), Just(0xffff), Just(u32::MAX), Just(u32::MAX - 1), any::<u32>()]
        )
            .prop_map(|(i, v)| Edit::SetU32(i, v)),
        (any::<usize>(), prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 40), Just(1 << 62), any::<u64>()])
            .prop_map(|(i, v)| Edit::SetU64(i, v)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Edit::Insert(i, b)),
    ]
}

fn overwrite(bytes: &mut [u8], at: usize, value: &[u8]) {
    for (b, v) in bytes.iter_mut().skip(at).zip(value) {
        *b = *v;
    }
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let len = bytes.len().max(1);
    match edit {
        Edit::Set(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x = *b;
            }
        }
        Edit::Xor(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x ^= *b;
            }
        }
        Edit::SetU32(i, v) => overwrite(bytes, i % len, &v.to_le_bytes()),
        Edit::SetU64(i, v) => overwrite(bytes, i % len, &v.to_le_bytes()),
        Edit::Truncate(i) => bytes.truncate(i % len),
        Edit::Insert(i, b) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
    }
}

proptest! {
    // Decoding small inputs is cheap: run more cases than the default 256. No failure
    // persistence: this crate has no src/lib.rs-relative place proptest could keep them.
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn npy_round_trips(array in array()) {
        let bytes = npy::write(&array).unwrap();
        prop_assert_eq!(npy::read(&bytes).unwrap(), array.clone());
        prop_assert_eq!(npy::read_vec(bytes).unwrap(), array);
    }

    #[test]
    fn npz_round_trips(a in array(), b in array(), method in method()) {
        let bytes = npz::write(&[("a", &a), ("b", &b)], method).unwrap();
        let read = npz::read(&bytes).unwrap();
        prop_assert_eq!(read, vec![("a".to_string(), a), ("b".to_string(), b.clone())]);
        prop_assert_eq!(npz::read_member(&bytes, "b").unwrap(), b);
    }

    #[test]
    fn idx_round_trips(shape in prop::collection::vec(0usize..6, 1..4), seed in any::<u8>(), gzipped in any::<bool>()) {
        let n: usize = shape.iter().product();
        let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let mut bytes = idx::write_u8(&shape, &data).unwrap();
        if gzipped {
            bytes = idx::gzip(&bytes);
        }
        let array = idx::read_maybe_gzip(&bytes).unwrap();
        prop_assert_eq!(array.shape, shape);
        prop_assert_eq!(array.data, data);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    /// Random bytes behind each format's magic, so decoding gets past the first check.
    #[test]
    fn random_bytes_behind_a_magic_never_panic(
        magic in prop::sample::select(vec![
            &b"\x93NUMPY\x01\x00"[..], b"\x93NUMPY\x02\x00", b"PK\x03\x04", b"PK\x05\x06",
            b"\x00\x00\x08\x03", b"\x00\x00\x08\x01", b"\x1f\x8b\x08\x00", b"\x1f\x8b\x08\x1e",
        ]),
        rest in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&rest);
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_valid_files_never_panic(which in 0usize..10, edits in prop::collection::vec(edit(), 1..6)) {
        let mut bytes = valid_files().swap_remove(which);
        for e in &edits {
            apply(&mut bytes, e);
        }
        decode_everything(&bytes);
    }
}
