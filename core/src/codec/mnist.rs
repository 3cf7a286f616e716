//! MNIST-style train/test splits from their two usual forms: Keras's mnist.npz and LeCun's four
//! idx files (plain or .gz); with feature "std", also loaded from a path. Leaves out
//! downloading and any normalisation: images stay u8 (N, H, W, C), labels u8 class indices.

use alloc::format;
use alloc::vec::Vec;

use crate::codec::npy::{NpyArray, NpyData};
use crate::codec::{idx, npz, with_context};
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};

/// LeCun's file names, in the order train images, train labels, test images, test labels.
pub const IDX_FILE_NAMES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// The largest data file `load` reads (2 GiB): far above any MNIST-style dataset (mnist.npz is
/// 11 MB, MNIST's idx files 55 MB unpacked, EMNIST's largest 0.7 GB), far below a bomb.
#[cfg(feature = "std")]
pub const MAX_DATA_FILE_SIZE: u64 = 1 << 31;

/// Images shaped (N, H, W) or (N, H, W, C) and labels shaped (N) or (N, 1), checked against
/// each other; `images_name` and `labels_name` say where they came from in errors.
fn dataset(
    images: (Vec<usize>, Vec<u8>),
    labels: (Vec<usize>, Vec<u8>),
    images_name: &str,
    labels_name: &str,
) -> Result<Dataset> {
    let (image_shape, pixels) = images;
    let (label_shape, labels) = labels;
    let (n, height, width, channels) = match image_shape[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c] => (n, h, w, c),
        _ => {
            return Err(Error::malformed(
                images_name,
                format!("images have shape {image_shape:?}; (N, H, W) or (N, H, W, C) is required"),
            ))
        }
    };
    let sample_len = height.checked_mul(width).and_then(|hw| hw.checked_mul(channels));
    if sample_len.is_none_or(|len| len == 0) {
        return Err(Error::malformed(images_name, format!("images of shape {image_shape:?} have no usable pixels")));
    }
    if !matches!(label_shape[..], [_] | [_, 1]) {
        return Err(Error::malformed(
            labels_name,
            format!("labels have shape {label_shape:?}; (N,) or (N, 1) is required"),
        ));
    }
    if labels.len() != n {
        return Err(Error::malformed(
            labels_name,
            format!("{} labels for the {n} images of {images_name}", labels.len()),
        ));
    }
    Dataset::new(pixels, labels, height, width, channels)
}

/// u8 labels as they are; other integer labels if every one is a class index below 256.
fn labels_u8(array: NpyArray, name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    fn narrow<T: Copy + TryInto<u8> + core::fmt::Display>(values: &[T], name: &str) -> Result<Vec<u8>> {
        values
            .iter()
            .map(|&v| v.try_into().map_err(|_| Error::malformed(name, format!("label {v} is outside 0..=255"))))
            .collect()
    }
    let labels = match array.data {
        NpyData::U8(v) => v,
        NpyData::I8(v) => narrow(&v, name)?,
        NpyData::U32(v) => narrow(&v, name)?,
        NpyData::I32(v) => narrow(&v, name)?,
        NpyData::I64(v) => narrow(&v, name)?,
        other => return Err(Error::unsupported(name, format!("labels of dtype {}", other.dtype().descr()))),
    };
    Ok((array.shape, labels))
}

fn images_u8(array: NpyArray, name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    match array.data {
        NpyData::U8(v) => Ok((array.shape, v)),
        other => Err(Error::unsupported(name, format!("images of dtype {} (u8 is required)", other.dtype().descr()))),
    }
}

/// Train and test must hold images of one size.
fn split(train: Dataset, test: Dataset, test_images_name: &str) -> Result<Split> {
    let (a, b) = (&train, &test);
    if (a.height, a.width, a.channels) != (b.height, b.width, b.channels) {
        return Err(Error::ShapeMismatch {
            what: format!("{test_images_name} (one test image)"),
            expected: Vec::from([a.height, a.width, a.channels]),
            actual: Vec::from([b.height, b.width, b.channels]),
        });
    }
    Ok(Split { train, test })
}

/// Reads Keras's mnist.npz: x_train, y_train, x_test, y_test. Only those members are inflated.
pub fn from_npz(bytes: &[u8]) -> Result<Split> {
    let train = split_from_npz(bytes, "x_train", Some("y_train"))?;
    let test = split_from_npz(bytes, "x_test", Some("y_test"))?;
    split(train, test, "x_test")
}

/// One split of a Keras-style npz, e.g. x_test and y_test; only those members are inflated.
/// Without `labels_name` the labels are unknown and every one reads as class 0 (for prediction).
pub fn split_from_npz(bytes: &[u8], images_name: &str, labels_name: Option<&str>) -> Result<Dataset> {
    let images = images_u8(npz::read_member(bytes, images_name)?, images_name)?;
    let labels = match labels_name {
        Some(name) => labels_u8(npz::read_member(bytes, name)?, name)?,
        None => {
            // As many labels as images actually stored (`dataset` then checks the shape).
            let per_image = images.0.iter().skip(1).try_fold(1usize, |a, &d| a.checked_mul(d));
            let n = per_image.filter(|&p| p > 0).map_or(0, |p| images.1.len() / p);
            (Vec::from([n]), alloc::vec![0; n])
        }
    };
    dataset(images, labels, images_name, labels_name.unwrap_or("(no labels)"))
}

/// Decodes four idx files, each plain or gzipped, named in errors by `names`.
fn from_named_idx(files: [(&str, &[u8]); 4]) -> Result<Split> {
    let [train_images, train_labels, test_images, test_labels] = files
        .map(|(name, bytes)| idx::read_maybe_gzip(bytes).map(|a| (a.shape, a.data)).map_err(|e| with_context(e, name)));
    let [n0, n1, n2, n3] = files.map(|(name, _)| name);
    let train = dataset(train_images?, train_labels?, n0, n1)?;
    let test = dataset(test_images?, test_labels?, n2, n3)?;
    split(train, test, n2)
}

/// Reads LeCun's four idx files (train-images-idx3-ubyte and so on), each plain or gzipped.
pub fn from_idx(train_images: &[u8], train_labels: &[u8], test_images: &[u8], test_labels: &[u8]) -> Result<Split> {
    from_named_idx([
        ("train images", train_images),
        ("train labels", train_labels),
        ("test images", test_images),
        ("test labels", test_labels),
    ])
}

#[cfg(feature = "std")]
mod path {
    use super::*;
    use alloc::string::{String, ToString};
    use std::path::{Path, PathBuf};

    /// Reads a whole data file, refusing devices (`/dev/zero` would fill memory) and anything
    /// over `MAX_DATA_FILE_SIZE` before reading it (or, for a pipe, once that much came).
    pub fn read_data_file(path: &Path) -> Result<Vec<u8>> {
        use std::io::Read;
        let what = || format!("data file {}", path.display());
        let io_error = |e: std::io::Error| Error::invalid(what(), e.to_string());
        let file = std::fs::File::open(path).map_err(io_error)?;
        let meta = file.metadata().map_err(io_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_char_device() || meta.file_type().is_block_device() {
                return Err(Error::invalid(what(), "it is a device, not a file"));
            }
        }
        let too_large = |size: u64| Error::TooLarge { what: what(), size, limit: MAX_DATA_FILE_SIZE };
        if meta.is_file() && meta.len() > MAX_DATA_FILE_SIZE {
            return Err(too_large(meta.len()));
        }
        let mut bytes = Vec::with_capacity(if meta.is_file() { meta.len() as usize } else { 0 });
        file.take(MAX_DATA_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(io_error)?;
        if bytes.len() as u64 > MAX_DATA_FILE_SIZE {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// The first of NAME, NAME.gz and the dotted spellings (train-images.idx3-ubyte) that exists.
    fn find_idx(dir: &Path, name: &str) -> Option<PathBuf> {
        let dotted = name.replacen("-idx", ".idx", 1);
        [String::from(name), format!("{name}.gz"), dotted.clone(), format!("{dotted}.gz")]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
    }

    /// Loads a split from an .npz file, or from a directory holding the four idx files
    /// (any of NAME, NAME.gz, or the dotted spellings) or else an mnist.npz.
    pub fn load(path: &Path) -> Result<Split> {
        if !path.is_dir() {
            let bytes = read_data_file(path)?;
            return from_npz(&bytes).map_err(|e| with_context(e, &path.display().to_string()));
        }
        let found = IDX_FILE_NAMES.map(|name| find_idx(path, name));
        let npz = path.join("mnist.npz");
        if found.iter().all(Option::is_none) && npz.is_file() {
            return load(&npz);
        }
        let mut files = Vec::with_capacity(4);
        for (name, found) in IDX_FILE_NAMES.iter().zip(found) {
            let file = found.ok_or_else(|| Error::Missing {
                what: format!("data directory {}", path.display()),
                name: format!("{name}[.gz]"),
            })?;
            files.push((file.display().to_string(), read_data_file(&file)?));
        }
        let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        from_named_idx([named[0], named[1], named[2], named[3]])
    }
}

#[cfg(feature = "std")]
pub use path::{load, read_data_file};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::zip::Method;
    use alloc::string::ToString;
    use alloc::vec;

    /// A tiny MNIST: 3 train and 2 test images of 2x3.
    fn tiny() -> [(Vec<usize>, Vec<u8>); 4] {
        [
            (vec![3, 2, 3], (0..18).collect()),
            (vec![3], vec![0, 9, 4]),
            (vec![2, 2, 3], (100..112).collect()),
            (vec![2], vec![7, 1]),
        ]
    }

    fn tiny_npz(modify: impl Fn(usize, NpyArray) -> NpyArray) -> Vec<u8> {
        let names = ["x_train", "y_train", "x_test", "y_test"];
        let arrays: Vec<NpyArray> = tiny()
            .into_iter()
            .enumerate()
            .map(|(i, (shape, data))| modify(i, NpyArray::new(shape, NpyData::U8(data)).unwrap()))
            .collect();
        let refs: Vec<(&str, &NpyArray)> = names.iter().copied().zip(&arrays).collect();
        npz::write(&refs, Method::Deflated).unwrap()
    }

    fn check_tiny(split: &Split) {
        let [x_train, y_train, x_test, y_test] = tiny();
        assert_eq!(split.train.images, x_train.1);
        assert_eq!(split.train.labels, y_train.1);
        assert_eq!(split.test.images, x_test.1);
        assert_eq!(split.test.labels, y_test.1);
        assert_eq!((split.train.height, split.train.width, split.train.channels), (2, 3, 1));
    }

    #[test]
    fn reads_npz() {
        check_tiny(&from_npz(&tiny_npz(|_, a| a)).unwrap());
        // (N, H, W, 1) images, (N, 1) int64 labels.
        let split = from_npz(&tiny_npz(|i, a| match (i, a.data) {
            (0 | 2, data) => NpyArray::new([&a.shape[..], &[1]].concat(), data).unwrap(),
            (_, NpyData::U8(v)) => {
                NpyArray::new(vec![v.len(), 1], NpyData::I64(v.iter().map(|&x| x as i64).collect())).unwrap()
            }
            _ => unreachable!(),
        }))
        .unwrap();
        check_tiny(&split);
    }

    #[test]
    fn reads_one_split_with_or_without_labels() {
        let bytes = tiny_npz(|_, a| a);
        let test = split_from_npz(&bytes, "x_test", Some("y_test")).unwrap();
        assert_eq!((test.len(), test.labels.as_slice()), (2, &[7, 1][..]));
        let unlabelled = split_from_npz(&bytes, "x_train", None).unwrap();
        assert_eq!(unlabelled.images, (0..18).collect::<Vec<u8>>());
        assert_eq!(unlabelled.labels, [0, 0, 0]);
        assert!(matches!(split_from_npz(&bytes, "x_valid", None), Err(Error::Missing { .. })));
        let empty = NpyArray::new(vec![3, 0, 5], NpyData::U8(vec![])).unwrap();
        let bytes = npz::write(&[("x", &empty)], Method::Stored).unwrap();
        assert!(split_from_npz(&bytes, "x", None).unwrap_err().to_string().contains("no usable pixels"));
    }

    fn npz_error(modify: impl Fn(usize, NpyArray) -> NpyArray) -> alloc::string::String {
        from_npz(&tiny_npz(modify)).unwrap_err().to_string()
    }

    #[test]
    fn rejects_inconsistent_npz() {
        let labels = |i: usize, values: Vec<i64>, a: NpyArray| {
            if i == 1 {
                NpyArray::new(vec![values.len()], NpyData::I64(values)).unwrap()
            } else {
                a
            }
        };
        assert!(npz_error(|i, a| labels(i, vec![0, 256, 1], a)).contains("label 256"));
        assert!(npz_error(|i, a| labels(i, vec![0, -1, 1], a)).contains("label -1"));
        assert!(npz_error(|i, a| labels(i, vec![0, 1], a)).contains("2 labels for the 3 images"));
        let err = npz_error(|i, a| if i == 2 { NpyArray::new(vec![2, 3, 2], a.data).unwrap() } else { a });
        assert!(err.contains("x_test (one test image) has shape (3, 2, 1)"), "{err}");
        let err = npz_error(|i, a| if i == 0 { NpyArray::new(vec![18], a.data).unwrap() } else { a });
        assert!(err.contains("(N, H, W)"), "{err}");
        let err = npz_error(|i, a| if i == 1 { NpyArray::new(vec![1, 3], a.data).unwrap() } else { a });
        assert!(err.contains("(N,) or (N, 1)"), "{err}");
        let err =
            npz_error(|i, a| if i == 0 { NpyArray::new(a.shape, NpyData::F32(vec![0.0; 18])).unwrap() } else { a });
        assert!(err.contains("<f4"), "{err}");
        let err = npz_error(|i, a| if i == 0 { NpyArray::new(vec![0, 0, 5], NpyData::U8(vec![])).unwrap() } else { a });
        assert!(err.contains("no usable pixels"), "{err}");
        let one = NpyArray::new(vec![1, 1, 1], NpyData::U8(vec![0])).unwrap();
        let only_train = npz::write(&[("x_train", &one)], Method::Stored).unwrap();
        assert!(matches!(from_npz(&only_train), Err(Error::Missing { .. })));
    }

    fn tiny_idx(gzipped: bool) -> Vec<Vec<u8>> {
        tiny()
            .iter()
            .map(|(shape, data)| {
                let plain = idx::write_u8(shape, data).unwrap();
                if gzipped {
                    idx::gzip(&plain)
                } else {
                    plain
                }
            })
            .collect()
    }

    #[test]
    fn reads_idx_plain_and_gzipped() {
        for gzipped in [false, true] {
            let f = tiny_idx(gzipped);
            check_tiny(&from_idx(&f[0], &f[1], &f[2], &f[3]).unwrap());
        }
        let (plain, gz) = (tiny_idx(false), tiny_idx(true));
        check_tiny(&from_idx(&gz[0], &plain[1], &plain[2], &gz[3]).unwrap());
        let err = from_idx(&plain[0], &plain[1], &plain[2][..20], &plain[3]).unwrap_err().to_string();
        assert!(err.starts_with("test images: idx data is truncated"), "{err}");
        let err = from_idx(&plain[0], &plain[3], &plain[2], &plain[3]).unwrap_err().to_string();
        assert!(err.contains("train labels") && err.contains("2 labels for the 3 images"), "{err}");
    }

    #[cfg(feature = "std")]
    #[test]
    fn loads_paths() {
        let dir = std::env::temp_dir().join(format!("mnist-codec-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let npz_path = dir.join("tiny.npz");
        std::fs::write(&npz_path, tiny_npz(|_, a| a)).unwrap();
        check_tiny(&load(&npz_path).unwrap());

        // Mixed spellings: plain, .gz, dotted, dotted .gz.
        let idx_dir = dir.join("idx");
        std::fs::create_dir_all(&idx_dir).unwrap();
        let (plain, gz) = (tiny_idx(false), tiny_idx(true));
        std::fs::write(idx_dir.join("train-images-idx3-ubyte"), &plain[0]).unwrap();
        std::fs::write(idx_dir.join("train-labels-idx1-ubyte.gz"), &gz[1]).unwrap();
        std::fs::write(idx_dir.join("t10k-images.idx3-ubyte"), &plain[2]).unwrap();
        let err = load(&idx_dir).unwrap_err().to_string();
        assert!(err.contains("t10k-labels-idx1-ubyte[.gz]"), "{err}");
        std::fs::write(idx_dir.join("t10k-labels.idx1-ubyte.gz"), &gz[3]).unwrap();
        check_tiny(&load(&idx_dir).unwrap());
        std::fs::write(idx_dir.join("t10k-images.idx3-ubyte"), &plain[2][..20]).unwrap();
        let err = load(&idx_dir).unwrap_err().to_string();
        assert!(err.contains("t10k-images.idx3-ubyte: idx data is truncated"), "{err}");

        // A directory with only mnist.npz; a missing file; a file that is not an npz.
        let npz_dir = dir.join("npz");
        std::fs::create_dir_all(&npz_dir).unwrap();
        std::fs::write(npz_dir.join("mnist.npz"), tiny_npz(|_, a| a)).unwrap();
        check_tiny(&load(&npz_dir).unwrap());
        let err = load(&dir.join("absent.npz")).unwrap_err().to_string();
        assert!(err.contains("absent.npz"), "{err}");
        let err = load(&idx_dir.join("train-images-idx3-ubyte")).unwrap_err().to_string();
        assert!(err.contains("train-images-idx3-ubyte: zip archive has a bad signature"), "{err}");

        // Endless or huge inputs are refused before they are read: /dev/zero used to be read
        // until memory ran out; a (sparse) file over the limit is judged by its size.
        #[cfg(unix)]
        {
            let err = load(std::path::Path::new("/dev/zero")).unwrap_err().to_string();
            assert!(err.contains("/dev/zero: it is a device"), "{err}");
        }
        let huge = dir.join("huge.npz");
        std::fs::File::create(&huge).unwrap().set_len(MAX_DATA_FILE_SIZE + 1).unwrap();
        let err = load(&huge).unwrap_err();
        assert!(matches!(err, Error::TooLarge { size, .. } if size == MAX_DATA_FILE_SIZE + 1), "{err}");
        std::fs::File::create(&huge).unwrap().set_len(1 << 20).unwrap();
        assert!(load(&huge).unwrap_err().to_string().contains("bad signature"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
