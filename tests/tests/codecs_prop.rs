//! Property tests for the data decoders, one group per decoder (npy_, npz_, idx_, mxnet_): random
//! arrays round-trip through every writer and reader, and random bytes or mutated real files
//! (truncated, bit-flipped, length fields lied about, chunks copied or inserted) never make a
//! decoder panic or allocate more than a fixed multiple of its input, and whatever decodes is
//! self-consistent. Seeds: our writers' output, numpy's (fixtures/numpy), MXNet's (fixtures/),
//! real digits from $MNIST_DATA and Debian's Fashion-MNIST .gz files when present.
//! Cases per test: $MNIST_PROPTEST_CASES (default 256); tests/bench/fuzz_decoders.sh runs
//! 100,000. Leaves out hand-picked malformed cases (the codecs' unit tests).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::OnceLock;

use mnist_core::codec::npy::{NpyArray, NpyData};
use mnist_core::codec::{idx, mnist, mxnet, npy, npz, zip};
use mnist_core::Split;
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Memory: a global allocator that tracks, per thread, the bytes live and their peak, so each
// decode can be held to a bound set by its input's length (tests run on several threads).

struct Tracking;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn grew(size: usize) {
    // try_with: a thread being torn down has no counters left, and is not being measured.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    let _ = COUNT.try_with(|count| count.set(count.get() + 1));
}

fn shrank(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: forwards every call to the system allocator; only counts.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrank(layout.size());
        grew(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f` and returns the most bytes it had allocated at once (beyond what was live before)
/// and how many allocations it made.
fn measured(f: impl FnOnce()) -> (usize, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    COUNT.with(|c| c.set(0));
    f();
    (PEAK.with(Cell::get) - base, COUNT.with(Cell::get))
}

/// Deflate's most compact output is about 1032:1; buffers may double once past the real size.
const DEFLATE_FACTOR: usize = 2 * 1032 + 8;
const SLACK: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// The decoders, each run every way it can be called; Err is fine, a panic fails the test.

fn decode_npy(bytes: &[u8]) {
    if let Ok(array) = npy::read(bytes) {
        let count: usize = array.shape.iter().product();
        assert_eq!(count, array.data.len(), "{:?}", array.shape);
    }
    let _ = npy::read_vec(bytes.to_vec());
}

fn check_split(split: &Split) {
    for d in [&split.train, &split.test] {
        assert_eq!(d.images.len(), d.len() * d.sample_len());
    }
}

fn decode_npz(bytes: &[u8]) {
    let _ = npz::names(bytes);
    if let Ok(entries) = zip::entries(bytes) {
        for entry in &entries {
            if let Ok(data) = zip::read_entry(bytes, entry) {
                assert_eq!(data.len() as u64, entry.uncompressed_size);
            }
        }
    }
    let _ = npz::read(bytes);
    let _ = npz::read_member(bytes, "x_train");
    if let Ok(split) = mnist::from_npz(bytes) {
        check_split(&split);
    }
    let _ = mnist::split_from_npz(bytes, "x_test", None);
}

fn decode_idx(bytes: &[u8], labels: &[u8]) {
    for array in [idx::read(bytes), idx::read_maybe_gzip(bytes)].into_iter().flatten() {
        let count: usize = array.shape.iter().product();
        assert_eq!(count, array.data.len(), "{:?}", array.shape);
    }
    let _ = idx::gunzip(bytes);
    // As images with real labels, and as every one of the four files.
    if let Ok(split) = mnist::from_idx(bytes, labels, bytes, labels) {
        check_split(&split);
    }
    let _ = mnist::from_idx(bytes, bytes, bytes, bytes);
}

fn decode_mxnet(symbol: &[u8], params: &[u8]) {
    let _ = mxnet::read_ndarray_list(params);
    if let Ok(imported) = mxnet::import(symbol, params) {
        assert_eq!(imported.params.len(), imported.config.param_count());
        assert!(imported.params.iter().all(|v| v.is_finite()));
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds: valid files to mutate, with the positions of their length-like fields.

/// A field that may hold a length, count, offset or dimension.
#[derive(Clone, Copy, Debug)]
struct Field {
    pos: usize,
    width: usize,
    big_endian: bool,
}

struct Seed {
    name: String,
    bytes: Vec<u8>,
    fields: Vec<Field>,
}

fn read_field(bytes: &[u8], f: Field) -> u64 {
    let mut v = 0u64;
    for i in 0..f.width {
        let b = bytes[f.pos + i] as u64;
        if f.big_endian {
            v = v << 8 | b;
        } else {
            v |= b << (8 * i);
        }
    }
    v
}

fn write_field(bytes: &mut [u8], f: Field, v: u64) {
    for i in 0..f.width {
        let shift = if f.big_endian { 8 * (f.width - 1 - i) } else { 8 * i };
        bytes[f.pos + i] = (v >> shift) as u8;
    }
}

/// Every position whose little-endian u16/u32/u64 or big-endian u32 (idx) reads as a plausible
/// length or offset of this file (1 ..= twice its size): headers are made of such fields.
fn length_fields(bytes: &[u8]) -> Vec<Field> {
    let plausible = 1..=2 * bytes.len() as u64;
    let mut fields = Vec::new();
    for (width, big_endian) in [(2, false), (4, false), (8, false), (4, true)] {
        for pos in 0..bytes.len().saturating_sub(width - 1) {
            let f = Field { pos, width, big_endian };
            if plausible.contains(&read_field(bytes, f)) {
                fields.push(f);
            }
        }
    }
    fields
}

fn seed(name: impl Into<String>, bytes: Vec<u8>) -> Seed {
    let fields = length_fields(&bytes);
    Seed { name: name.into(), bytes, fields }
}

fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The first `n` train and `m` test samples of the real MNIST, if $MNIST_DATA is set.
fn real_mnist(n: usize, m: usize) -> Option<Split> {
    static SPLIT: OnceLock<Option<Split>> = OnceLock::new();
    let split = SPLIT.get_or_init(|| mnist_tests::mnist_data().map(|p| mnist::load(&p).unwrap())).as_ref()?;
    Some(Split { train: split.train.take(n), test: split.test.take(m) })
}

fn small_arrays() -> Vec<(&'static str, NpyArray)> {
    let images: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 37 % 256) as u8).collect();
    vec![
        ("x_train", NpyArray::new(vec![2, 4, 4], NpyData::U8(images.clone())).unwrap()),
        ("y_train", NpyArray::new(vec![2], NpyData::U8(vec![3, 7])).unwrap()),
        ("x_test", NpyArray::new(vec![2, 4, 4], NpyData::U8(images)).unwrap()),
        ("y_test", NpyArray::new(vec![2], NpyData::I64(vec![1, 9])).unwrap()),
    ]
}

/// Keras's four arrays for a split, as mnist.npz holds them.
fn split_arrays(split: &Split) -> Vec<(&'static str, NpyArray)> {
    let images = |d: &mnist_core::Dataset| {
        NpyArray::new(vec![d.len(), d.height, d.width], NpyData::U8(d.images.clone())).unwrap()
    };
    let labels = |d: &mnist_core::Dataset| NpyArray::new(vec![d.len()], NpyData::U8(d.labels.clone())).unwrap();
    vec![
        ("x_train", images(&split.train)),
        ("y_train", labels(&split.train)),
        ("x_test", images(&split.test)),
        ("y_test", labels(&split.test)),
    ]
}

fn write_npz(arrays: &[(&str, NpyArray)], method: zip::Method) -> Vec<u8> {
    let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
    npz::write(&refs, method).unwrap()
}

fn npy_seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<Seed> =
            small_arrays().iter().map(|(n, a)| seed(format!("ours {n}"), npy::write(a).unwrap())).collect();
        seeds.push(seed("ours f32", npy::write_f32(&[3], &[1.0, 2.0, 3.0]).unwrap()));
        seeds.push(seed("ours empty", npy::write_u8(&[0, 28, 28], &[]).unwrap()));
        // numpy's own files: every member of savez.npz, and files we refuse on purpose.
        let savez = fixture("tests/tests/fixtures/numpy/savez.npz");
        for entry in zip::entries(&savez).unwrap() {
            seeds.push(seed(format!("numpy {}", entry.name), zip::read_entry(&savez, &entry).unwrap()));
        }
        for name in ["big_endian", "fortran_order", "object"] {
            seeds.push(seed(format!("numpy {name}"), fixture(&format!("tests/tests/fixtures/numpy/{name}.npy"))));
        }
        if let Some(split) = real_mnist(4, 4) {
            for (name, array) in split_arrays(&split) {
                seeds.push(seed(format!("real MNIST {name}"), npy::write(&array).unwrap()));
            }
        }
        seeds
    })
}

fn npz_seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let stored = write_npz(&small_arrays(), zip::Method::Stored);
        let deflated = write_npz(&small_arrays(), zip::Method::Deflated);
        let mut seeds = vec![
            seed("numpy savez", fixture("tests/tests/fixtures/numpy/savez.npz")),
            seed("numpy savez_compressed", fixture("tests/tests/fixtures/numpy/savez_compressed.npz")),
            seed("ours zip64 stored", to_zip64(&stored)),
            seed("ours zip64 deflated", to_zip64(&deflated)),
            seed("ours stored", stored),
            seed("ours deflated", deflated),
        ];
        if let Some(split) = real_mnist(6, 3) {
            let arrays = split_arrays(&split);
            seeds.push(seed("real MNIST deflated", write_npz(&arrays, zip::Method::Deflated)));
            seeds.push(seed("real MNIST stored", write_npz(&arrays, zip::Method::Stored)));
        }
        seeds
    })
}

/// Idx seeds, and the labels file that goes with the images when assembling a dataset.
fn idx_seeds() -> &'static (Vec<Seed>, Vec<u8>) {
    static SEEDS: OnceLock<(Vec<Seed>, Vec<u8>)> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let images: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 37 % 256) as u8).collect();
        let plain = idx::write_u8(&[2, 4, 4], &images).unwrap();
        let labels = idx::write_u8(&[2], &[3, 7]).unwrap();
        let mut seeds = vec![
            seed("ours images.gz", idx::gzip(&plain)),
            seed("ours labels.gz", idx::gzip(&labels)),
            seed("ours images", plain),
            seed("ours labels", labels.clone()),
        ];
        if let Some(dir) = mnist_tests::fashion_dir() {
            // Debian's .gz files as they are (gzip's own header), the small ones whole; the
            // images' real header with their first 3 images.
            for name in ["t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
                let bytes = std::fs::read(dir.join(name)).unwrap();
                seeds.push(seed(format!("Fashion-MNIST {name} (plain)"), idx::gunzip(&bytes).unwrap()));
                seeds.push(seed(format!("Fashion-MNIST {name}"), bytes));
            }
            let real = idx::gunzip(&std::fs::read(dir.join("t10k-images-idx3-ubyte.gz")).unwrap()).unwrap();
            let head = idx::read(&real).unwrap();
            let three = idx::write_u8(&[3, head.shape[1], head.shape[2]], &head.data[..3 * 784]).unwrap();
            seeds.push(seed("Fashion-MNIST t10k-images (3 images).gz", idx::gzip(&three)));
            seeds.push(seed("Fashion-MNIST t10k-images (3 images)", three));
        }
        (seeds, labels)
    })
}

/// The positions of an NDArray list's structure: counts, magics, ranks, dimensions, dtype flags
/// and name lengths (walking the valid file; its 2.4 MB of weights are left to random edits).
fn params_fields(b: &[u8]) -> Vec<Field> {
    let le = |pos, width| Field { pos, width, big_endian: false };
    let u = |f: Field| read_field(b, f);
    let mut fields = vec![le(0, 8), le(8, 8), le(16, 8)];
    let mut p = 24;
    for _ in 0..u(le(16, 8)) {
        fields.push(le(p, 4));
        if u(le(p, 4)) != 0xF993_FAC8 {
            fields.push(le(p + 4, 4)); // storage type
            p += 4;
        }
        let ndim = u(le(p + 4, 4)) as usize;
        fields.push(le(p + 4, 4));
        let mut elements = 1;
        for d in 0..ndim {
            fields.push(le(p + 8 + 8 * d, 8));
            elements *= u(le(p + 8 + 8 * d, 8)) as usize;
        }
        p += 8 + 8 * ndim;
        let flag = le(p + 8, 4);
        fields.extend([le(p, 4), le(p + 4, 4), flag]);
        p += 12 + elements * [4, 8, 2][u(flag) as usize];
    }
    fields.push(le(p, 8));
    p += 8;
    while p < b.len() {
        fields.push(le(p, 8));
        p += 8 + u(le(p, 8)) as usize;
    }
    fields
}

struct Checkpoint {
    name: &'static str,
    symbol: Seed,
    params: Seed,
}

/// The shipped model (ours, float16) and MXNet's own keras-mxnet and Gluon exports.
fn mxnet_seeds() -> &'static [Checkpoint] {
    static SEEDS: OnceLock<Vec<Checkpoint>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            ("shipped", "fixtures/model/mnist_cnn"),
            ("keras-mxnet", "fixtures/mxnet/keras_mnist_cnn"),
            ("gluon", "fixtures/mxnet/gluon_mnist_cnn"),
        ]
        .into_iter()
        .map(|(name, prefix)| {
            let symbol = fixture(&format!("{prefix}-symbol.json"));
            let params = fixture(&format!("{prefix}-0000.params"));
            assert!(mxnet::import(&symbol, &params).is_ok(), "{name} must be valid to start from");
            let fields = params_fields(&params);
            Checkpoint {
                name,
                symbol: seed(format!("{name} symbol"), symbol),
                params: Seed { name: format!("{name} params"), bytes: params, fields },
            }
        })
        .collect()
    })
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

// ---------------------------------------------------------------------------------------------
// Mutations.

/// What a lie about a length-like field says instead of the truth.
#[derive(Debug, Clone)]
enum Lie {
    /// Off by a little: one too many, one too few.
    Nudge(i8),
    Zero,
    /// All ones: u16/u32/u64::MAX, also ZIP64's "look in the extra field".
    AllOnes,
    Double,
    /// A power of two, e.g. 2^40 elements from a few bytes.
    Power(u8),
    Any(u64),
}

#[derive(Debug, Clone)]
enum Edit {
    Set(Index, u8),
    Xor(Index, u8),
    /// A length-like field (or, for a file without one, any position) made to lie.
    Lie(Index, Lie),
    /// A byte next to a length-like field: the rest of a header.
    Near(Index, i8, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    /// `len` bytes from one place copied over another: repeated headers and signatures.
    Copy(Index, Index, u8),
}

fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        (-4i8..=4).prop_map(Lie::Nudge),
        Just(Lie::Zero),
        Just(Lie::AllOnes),
        Just(Lie::Double),
        (8u8..64).prop_map(Lie::Power),
        any::<u64>().prop_map(Lie::Any),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<Index>(), 1u8..).prop_map(|(i, b)| Edit::Xor(i, b)),
        3 => (any::<Index>(), lie()).prop_map(|(i, l)| Edit::Lie(i, l)),
        2 => (any::<Index>(), -16i8..16, any::<u8>()).prop_map(|(i, o, b)| Edit::Near(i, o, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<Index>(), any::<Index>(), 1u8..64).prop_map(|(a, b, n)| Edit::Copy(a, b, n)),
    ]
}

/// Applies `edit` to `bytes`, whose length-like fields (found in the seed) are `fields`.
fn apply(bytes: &mut Vec<u8>, fields: &[Field], edit: &Edit) {
    let len = bytes.len();
    let field_at = |i: &Index| {
        if fields.is_empty() {
            Field { pos: i.index(len.max(1)), width: 4, big_endian: false }
        } else {
            fields[i.index(fields.len())]
        }
    };
    match edit {
        Edit::Set(i, b) if len > 0 => bytes[i.index(len)] = *b,
        Edit::Xor(i, b) if len > 0 => bytes[i.index(len)] ^= *b,
        Edit::Lie(i, lie) => {
            let f = field_at(i);
            if f.pos + f.width > len {
                return; // an earlier edit cut the file short
            }
            let truth = read_field(bytes, f);
            let lie = match lie {
                Lie::Nudge(d) => truth.wrapping_add_signed(*d as i64),
                Lie::Zero => 0,
                Lie::AllOnes => u64::MAX,
                Lie::Double => truth.wrapping_mul(2),
                Lie::Power(p) => 1 << p,
                Lie::Any(v) => *v,
            };
            write_field(bytes, f, lie);
        }
        Edit::Near(i, offset, b) => {
            let pos = field_at(i).pos as i64 + *offset as i64;
            if (0..len as i64).contains(&pos) {
                bytes[pos as usize] = *b;
            }
        }
        Edit::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Edit::Insert(i, b) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Edit::Copy(from, to, n) if len > 0 => {
            let (from, to) = (from.index(len), to.index(len));
            let n = (*n as usize).min(len - from).min(len - to);
            bytes.copy_within(from..from + n, to);
        }
        _ => {}
    }
}

/// Text edits for the symbol JSON: shapes and kernels lied about, nesting too deep to follow,
/// numbers too large, strings cut open.
#[derive(Debug, Clone)]
enum JsonEdit {
    /// The k-th `(...)` tuple replaced.
    Tuple(Index, &'static str),
    Insert(Index, &'static str),
    /// `[` repeated, at a position: nesting past serde_json's recursion limit.
    Nest(Index, u16),
}

const TUPLES: &[&str] = &[
    "(0, 65536, 65536, 1)",
    "(0, 28, 28, 65536)",
    "(65536, 65536)",
    "(4294967296,)",
    "(18446744073709551616,)",
    "(-1, 3)",
    "(1, 1)",
    "(3L, 3L)",
    "()",
    "(0, 0, 0, 0)",
    "(2, 2)",
    "(9216, 0)",
    "(1e9,)",
];
const SNIPPETS: &[&str] =
    &["\"", "{", "}", "[", "]", ",", "null", "1e999999", "-", "\\u0000", "\"__shape__\": \"(1,)\", ", "0"];

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        (any::<Index>(), prop::sample::select(TUPLES)).prop_map(|(i, t)| JsonEdit::Tuple(i, t)),
        (any::<Index>(), prop::sample::select(SNIPPETS)).prop_map(|(i, s)| JsonEdit::Insert(i, s)),
        (any::<Index>(), 1u16..5000).prop_map(|(i, n)| JsonEdit::Nest(i, n)),
    ]
}

fn apply_json(text: &mut Vec<u8>, edit: &JsonEdit) {
    match edit {
        JsonEdit::Tuple(k, with) => {
            let opens: Vec<usize> = text.iter().enumerate().filter(|(_, &b)| b == b'(').map(|(i, _)| i).collect();
            if opens.is_empty() {
                return;
            }
            let start = opens[k.index(opens.len())];
            if let Some(len) = text[start..].iter().position(|&b| b == b')') {
                text.splice(start..=start + len, with.bytes());
            }
        }
        JsonEdit::Insert(i, s) => {
            let at = i.index(text.len() + 1);
            text.splice(at..at, s.bytes());
        }
        JsonEdit::Nest(i, n) => {
            let at = i.index(text.len() + 1);
            text.splice(at..at, std::iter::repeat_n(b'[', *n as usize));
        }
    }
}

fn config() -> ProptestConfig {
    // No failure persistence: this crate has no src/lib.rs-relative place proptest could keep them.
    ProptestConfig { cases: mnist_tests::proptest_cases(), failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------
// The tests, named by decoder so tests/bench/fuzz_decoders.sh can run each group.

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

/// Random bytes, alone or behind one of the formats' magics so decoding gets past the first check.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let magic = prop::sample::select(vec![
        &b""[..],
        b"\x93NUMPY\x01\x00",
        b"\x93NUMPY\x02\x00",
        b"PK\x03\x04",
        b"PK\x05\x06",
        b"\x00\x00\x08\x03",
        b"\x00\x00\x08\x01",
        b"\x1f\x8b\x08\x00",
        b"\x1f\x8b\x08\x1e",
        b"\x12\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    ]);
    (magic, prop::collection::vec(any::<u8>(), 0..512)).prop_map(|(m, rest)| [m, &rest].concat())
}

#[test]
fn npz_zip64_seeds_are_valid() {
    let arrays = small_arrays();
    for method in [zip::Method::Stored, zip::Method::Deflated] {
        let plain = write_npz(&arrays, method);
        let zip64 = to_zip64(&plain);
        assert_ne!(zip64, plain);
        assert_eq!(npz::read(&zip64).unwrap(), npz::read(&plain).unwrap());
    }
    for seeds in [npy_seeds(), npz_seeds(), &idx_seeds().0] {
        assert!(seeds.iter().all(|s| !s.fields.is_empty()), "every seed has length-like fields");
    }
}

#[test]
fn mxnet_params_fields_are_the_structure() {
    for c in mxnet_seeds() {
        let arrays = mxnet::read_ndarray_list(&c.params.bytes).unwrap();
        // Count, magic, (storage), rank, dims, context (2), flag per array; count and lengths of names.
        let per_array: usize = arrays.iter().map(|a| 5 + a.shape.len() + 1).sum();
        assert!(c.params.fields.len() >= 3 + per_array + 1 + arrays.len(), "{}", c.name);
        let last = c.params.fields.last().unwrap();
        let name_len = read_field(&c.params.bytes, *last) as usize;
        assert_eq!(
            last.pos + 8 + name_len,
            c.params.bytes.len(),
            "{}: the last field is the last name's length",
            c.name
        );
    }
}

#[test]
fn idx_many_gzip_members_share_one_buffer() {
    // Each member used to get its own 64 KiB buffer and decompressor: 2 allocations a member,
    // 6.6 s for 10 MB of empty members. Now the allocations do not grow with the members.
    let bytes = idx::gzip(b"x").repeat(2000);
    let (peak, count) = measured(|| assert_eq!(idx::gunzip(&bytes).unwrap(), b"x".repeat(2000)));
    assert!(count < 40, "{count} allocations for 2000 members");
    assert!(peak < 200 * 1024, "{peak} bytes at once");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn npy_round_trips(array in array()) {
        let bytes = npy::write(&array).unwrap();
        prop_assert_eq!(npy::read(&bytes).unwrap(), array.clone());
        prop_assert_eq!(npy::read_vec(bytes).unwrap(), array);
    }

    #[test]
    fn npy_hostile_bytes_fail_cleanly(bytes in hostile_bytes()) {
        let (peak, _) = measured(|| decode_npy(&bytes));
        prop_assert!(peak <= 3 * bytes.len() + SLACK, "{peak} bytes for {}", bytes.len());
    }

    #[test]
    fn npy_mutated_files_fail_cleanly(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..6)) {
        let seed = &npy_seeds()[which.index(npy_seeds().len())];
        let mut bytes = seed.bytes.clone();
        edits.iter().for_each(|e| apply(&mut bytes, &seed.fields, e));
        let (peak, _) = measured(|| decode_npy(&bytes));
        prop_assert!(peak <= 3 * bytes.len() + SLACK, "{}: {peak} bytes for {}", seed.name, bytes.len());
    }

    #[test]
    fn npz_round_trips(a in array(), b in array(), method in method()) {
        let bytes = npz::write(&[("a", &a), ("b", &b)], method).unwrap();
        let read = npz::read(&bytes).unwrap();
        prop_assert_eq!(read, vec![("a".to_string(), a), ("b".to_string(), b.clone())]);
        prop_assert_eq!(npz::read_member(&bytes, "b").unwrap(), b);
    }

    #[test]
    fn npz_hostile_bytes_fail_cleanly(bytes in hostile_bytes()) {
        let (peak, _) = measured(|| decode_npz(&bytes));
        prop_assert!(peak <= DEFLATE_FACTOR * bytes.len() + SLACK, "{peak} bytes for {}", bytes.len());
    }

    #[test]
    fn npz_mutated_files_fail_cleanly(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..6)) {
        let seed = &npz_seeds()[which.index(npz_seeds().len())];
        let mut bytes = seed.bytes.clone();
        edits.iter().for_each(|e| apply(&mut bytes, &seed.fields, e));
        let (peak, _) = measured(|| decode_npz(&bytes));
        prop_assert!(peak <= DEFLATE_FACTOR * bytes.len() + SLACK, "{}: {peak} bytes for {}", seed.name, bytes.len());
    }

    /// Mutated .npy members in an archive with the right CRCs, so the mutations reach the
    /// member's npy header and the dataset assembly instead of stopping at the checksum.
    #[test]
    fn npz_of_mutated_members_fails_cleanly(
        members in prop::collection::vec((any::<Index>(), prop::collection::vec(edit(), 0..4)), 4),
        method in method(),
    ) {
        let names = ["x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"];
        let seeds = npy_seeds();
        let mutated: Vec<Vec<u8>> = members
            .iter()
            .map(|(which, edits)| {
                let seed = &seeds[which.index(seeds.len())];
                let mut bytes = seed.bytes.clone();
                edits.iter().for_each(|e| apply(&mut bytes, &seed.fields, e));
                bytes
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = names.iter().copied().zip(mutated.iter().map(Vec::as_slice)).collect();
        let bytes = zip::write(&refs, method).unwrap();
        let (peak, _) = measured(|| decode_npz(&bytes));
        let inflated: usize = mutated.iter().map(Vec::len).sum();
        prop_assert!(peak <= DEFLATE_FACTOR * bytes.len() + 4 * inflated + SLACK, "{peak} bytes for {}", bytes.len());
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
    fn idx_hostile_bytes_fail_cleanly(bytes in hostile_bytes()) {
        let labels = &idx_seeds().1;
        let (peak, _) = measured(|| decode_idx(&bytes, labels));
        prop_assert!(peak <= DEFLATE_FACTOR * bytes.len() + SLACK, "{peak} bytes for {}", bytes.len());
    }

    #[test]
    fn idx_mutated_files_fail_cleanly(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..6)) {
        let (seeds, labels) = idx_seeds();
        let seed = &seeds[which.index(seeds.len())];
        let mut bytes = seed.bytes.clone();
        edits.iter().for_each(|e| apply(&mut bytes, &seed.fields, e));
        let (peak, _) = measured(|| decode_idx(&bytes, labels));
        prop_assert!(peak <= DEFLATE_FACTOR * bytes.len() + SLACK, "{}: {peak} bytes for {}", seed.name, bytes.len());
    }

    /// Mutated idx files gzipped with the right CRC and length, so the mutations reach the idx
    /// header and the dataset assembly through gunzip.
    #[test]
    fn idx_gzipped_mutations_fail_cleanly(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..6)) {
        let (seeds, labels) = idx_seeds();
        let plain: Vec<&Seed> = seeds.iter().filter(|s| !idx::is_gzip(&s.bytes)).collect();
        let seed = plain[which.index(plain.len())];
        let mut bytes = seed.bytes.clone();
        edits.iter().for_each(|e| apply(&mut bytes, &seed.fields, e));
        let gz = idx::gzip(&bytes);
        let (peak, _) = measured(|| decode_idx(&gz, labels));
        prop_assert!(peak <= DEFLATE_FACTOR * gz.len() + 4 * bytes.len() + SLACK, "{}: {peak} bytes", seed.name);
    }

    #[test]
    fn mxnet_hostile_bytes_fail_cleanly(symbol in hostile_bytes(), params in hostile_bytes()) {
        let (peak, _) = measured(|| decode_mxnet(&symbol, &params));
        prop_assert!(peak <= 64 * symbol.len() + 8 * params.len() + SLACK, "{peak} bytes");
    }

    /// Real checkpoints with their params edited (structure fields lied about, weights hit at
    /// random) and their symbol JSON edited as text, one or both.
    #[test]
    fn mxnet_mutated_checkpoints_fail_cleanly(
        which in any::<Index>(),
        params_edits in prop::collection::vec(edit(), 0..4),
        symbol_edits in prop::collection::vec(edit(), 0..3),
        json_edits in prop::collection::vec(json_edit(), 0..3),
    ) {
        let c = &mxnet_seeds()[which.index(mxnet_seeds().len())];
        let (mut symbol, mut params) = (c.symbol.bytes.clone(), c.params.bytes.clone());
        params_edits.iter().for_each(|e| apply(&mut params, &c.params.fields, e));
        symbol_edits.iter().for_each(|e| apply(&mut symbol, &c.symbol.fields, e));
        json_edits.iter().for_each(|e| apply_json(&mut symbol, e));
        let (peak, _) = measured(|| decode_mxnet(&symbol, &params));
        prop_assert!(peak <= 64 * symbol.len() + 8 * params.len() + SLACK, "{}: {peak} bytes", c.name);
    }
}
