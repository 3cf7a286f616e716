//! The npy/npz readers against files numpy itself wrote (tests/tests/fixtures/numpy, made by
//! make.py there): savez (stored, ZIP64 local headers) and savez_compressed, every dtype we read,
//! and valid numpy files we reject on purpose. Leaves out running numpy on our writer's output
//! (checked by hand when this was written) so that no test needs Python.

use mnist_core::codec::npy::{self, NpyArray, NpyData};
use mnist_core::codec::{npz, zip};
use mnist_core::Error;

const SAVEZ: &[u8] = include_bytes!("fixtures/numpy/savez.npz");
const SAVEZ_COMPRESSED: &[u8] = include_bytes!("fixtures/numpy/savez_compressed.npz");

fn expected() -> Vec<(&'static str, NpyArray)> {
    let a = |shape: &[usize], data| NpyArray::new(shape.to_vec(), data).unwrap();
    vec![
        ("u1", a(&[2, 3, 4], NpyData::U8((0..24).collect()))),
        ("i1", a(&[10], NpyData::I8((-5..5).collect()))),
        ("u4", a(&[2], NpyData::U32(vec![0, u32::MAX]))),
        ("i4", a(&[3, 2], NpyData::I32((-3..3).collect()))),
        ("i8", a(&[2], NpyData::I64(vec![i64::MIN, i64::MAX]))),
        ("f4", a(&[1, 2], NpyData::F32(vec![1.5, -2.25]))),
        ("f8", a(&[], NpyData::F64(vec![3.25]))),
        ("empty", a(&[0, 3], NpyData::F32(vec![]))),
    ]
}

#[test]
fn reads_numpy_savez_and_savez_compressed() {
    for (bytes, method) in [(SAVEZ, zip::Method::Stored), (SAVEZ_COMPRESSED, zip::Method::Deflated)] {
        assert!(zip::entries(bytes).unwrap().iter().all(|e| e.method == method));
        let arrays = npz::read(bytes).unwrap();
        let expected: Vec<(String, NpyArray)> = expected().into_iter().map(|(n, a)| (n.to_string(), a)).collect();
        assert_eq!(arrays, expected);
        assert_eq!(npz::read_member(bytes, "f4").unwrap(), expected[5].1);
    }
}

#[test]
fn our_rewrite_of_numpy_files_reads_back_the_same() {
    let arrays = npz::read(SAVEZ_COMPRESSED).unwrap();
    let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    for method in [zip::Method::Stored, zip::Method::Deflated] {
        assert_eq!(npz::read(&npz::write(&refs, method).unwrap()).unwrap(), arrays);
    }
}

#[test]
fn rejects_numpy_files_we_do_not_support() {
    for (bytes, needle) in [
        (&include_bytes!("fixtures/numpy/fortran_order.npy")[..], "fortran_order=True"),
        (include_bytes!("fixtures/numpy/big_endian.npy"), "little-endian"),
        (include_bytes!("fixtures/numpy/object.npy"), "pickle"),
    ] {
        let err = npy::read(bytes).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn every_truncation_of_numpy_files_is_an_error() {
    for bytes in [SAVEZ, SAVEZ_COMPRESSED] {
        for cut in 0..bytes.len() {
            assert!(npz::read(&bytes[..cut]).is_err(), "prefix of {cut} bytes was accepted");
        }
    }
}
