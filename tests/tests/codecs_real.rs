//! The dataset codecs against real files: MNIST's mnist.npz ($MNIST_DATA) and Fashion-MNIST's
//! gzipped idx files from Debian's dataset-fashion-mnist package. Each test prints a loud
//! SKIPPED line and passes when its file is absent; CI provides both and requires them
//! ($MNIST_DATA, $MNIST_REQUIRE_FASHION).

use std::time::Instant;

use mnist_core::codec::{idx, mnist, npy, npz, zip};
use mnist_core::{Dataset, Error, Split};

fn class_counts(labels: &[u8]) -> Vec<usize> {
    let mut counts = vec![0; 10];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts
}

fn pixel_sum(d: &Dataset) -> u64 {
    d.images.iter().map(|&p| p as u64).sum()
}

#[test]
fn mnist_npz_has_the_published_facts() {
    let Some(path) = mnist_tests::mnist_data() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let start = Instant::now();
    let split = mnist::from_npz(&bytes).unwrap();
    eprintln!("decoded {} ({} bytes) in {:?}", path.display(), bytes.len(), start.elapsed());

    let Split { train, test } = &split;
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!((train.height, train.width, train.channels), (28, 28, 1));
    assert_eq!((test.height, test.width, test.channels), (28, 28, 1));
    assert_eq!(class_counts(&train.labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(class_counts(&test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert_eq!(pixel_sum(train), 1_567_298_545);
    assert_eq!(pixel_sum(test), 264_923_200);
    let mean = pixel_sum(train) as f64 / train.images.len() as f64 / 255.0;
    assert!((mean - 0.13066).abs() < 1e-5, "train pixel mean/255 {mean}");

    // The std loader gives the same.
    assert_eq!(mnist::load(&path).unwrap(), split);
}

#[test]
fn mnist_npz_members_and_arrays() {
    let Some(path) = mnist_tests::mnist_data() else { return };
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(npz::names(&bytes).unwrap(), ["x_train", "y_train", "x_test", "y_test"]);
    let entries = zip::entries(&bytes).unwrap();
    assert!(entries.iter().all(|e| e.method == zip::Method::Deflated));
    let x_test = npz::read_member(&bytes, "x_test").unwrap();
    assert_eq!(x_test.shape, [10_000, 28, 28]);
    assert_eq!(x_test.dtype(), npy::DType::U8);
    let all = npz::read(&bytes).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[2].1, x_test);
}

#[test]
fn mnist_npz_rewrites_and_converts_losslessly() {
    let Some(path) = mnist_tests::mnist_data() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let split = mnist::from_npz(&bytes).unwrap();
    let arrays = npz::read(&bytes).unwrap();
    let refs: Vec<(&str, &npy::NpyArray)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();

    // Our own npz, stored and deflated, reads back as the same split.
    for method in [zip::Method::Stored, zip::Method::Deflated] {
        let start = Instant::now();
        let rewritten = npz::write(&refs, method).unwrap();
        eprintln!("wrote {method:?} npz of {} bytes in {:?}", rewritten.len(), start.elapsed());
        assert_eq!(mnist::from_npz(&rewritten).unwrap(), split);
    }

    // The same data as idx files (images plain, labels gzipped) gives the same split.
    let (train, test) = (&split.train, &split.test);
    let x_train = idx::write_u8(&[60_000, 28, 28], &train.images).unwrap();
    let y_train = idx::gzip(&idx::write_u8(&[60_000], &train.labels).unwrap());
    let x_test = idx::gzip(&idx::write_u8(&[10_000, 28, 28], &test.images).unwrap());
    let y_test = idx::write_u8(&[10_000], &test.labels).unwrap();
    assert_eq!(mnist::from_idx(&x_train, &y_train, &x_test, &y_test).unwrap(), split);
}

#[test]
fn mnist_npz_corruption_is_detected() {
    let Some(path) = mnist_tests::mnist_data() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let entries = zip::entries(&bytes).unwrap();
    // Flip one bit in the middle of each member's compressed data.
    for entry in &entries {
        let mut bad = bytes.clone();
        bad[(entry.data.start + entry.data.end) / 2] ^= 0x04;
        let err = mnist::from_npz(&bad).unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. } | Error::Malformed { .. }), "{}: {err}", entry.name);
    }
    // Truncations anywhere: always an error, never a panic.
    for cut in [0, 1, 100, bytes.len() / 2, bytes.len() - 23, bytes.len() - 1] {
        assert!(mnist::from_npz(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn fashion_mnist_idx_gz_has_the_published_facts() {
    let Some(dir) = mnist_tests::fashion_dir() else { return };
    let start = Instant::now();
    let split = mnist::load(dir).unwrap();
    eprintln!("decoded Fashion-MNIST from {} in {:?}", dir.display(), start.elapsed());
    let Split { train, test } = &split;
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!((train.height, train.width, train.channels), (28, 28, 1));
    assert_eq!(class_counts(&train.labels), [6000; 10]);
    assert_eq!(class_counts(&test.labels), [1000; 10]);
    assert_eq!(train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(pixel_sum(train), 3_431_114_169);
    assert_eq!(pixel_sum(test), 573_469_082);

    // from_idx on the raw .gz bytes agrees, and our idx writer reproduces the files exactly.
    let read = |name: &str| std::fs::read(dir.join(format!("{name}.gz"))).unwrap();
    let files = mnist::IDX_FILE_NAMES.map(read);
    assert_eq!(mnist::from_idx(&files[0], &files[1], &files[2], &files[3]).unwrap(), split);
    let plain = idx::gunzip(&files[0]).unwrap();
    let decoded = idx::read(&plain).unwrap();
    assert_eq!(decoded.magic(), idx::IMAGES_MAGIC);
    assert_eq!(idx::write_u8(&decoded.shape, &decoded.data).unwrap(), plain);
    let labels = idx::read_maybe_gzip(&files[1]).unwrap();
    assert_eq!(labels.magic(), idx::LABELS_MAGIC);
    assert_eq!(labels.shape, [60_000]);
}

#[test]
fn fashion_mnist_corruption_is_detected() {
    let Some(dir) = mnist_tests::fashion_dir() else { return };
    let labels = std::fs::read(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    let n = labels.len();
    for pos in [2, n / 2, n - 8, n - 4] {
        let mut bad = labels.clone();
        bad[pos] ^= 0x10;
        assert!(idx::read_maybe_gzip(&bad).is_err(), "flip at {pos}");
    }
    for cut in [1, 10, n / 2, n - 1] {
        assert!(idx::read_maybe_gzip(&labels[..cut]).is_err(), "cut at {cut}");
    }
}
