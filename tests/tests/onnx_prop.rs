//! Hostile input for the ONNX reader (`onnx::import`): random bytes, our exports truncated,
//! bit-flipped, overwritten or spliced, and models edited field by field (huge, negative and
//! absurd dims, wrong data and attribute types, wrong operators, lying input shapes) must give
//! Err, never a panic, and never allocate more than a fixed multiple of the input's length.
//! Cases per test: $MNIST_PROPTEST_CASES (default 256); tests/bench/fuzz_decoders.sh runs
//! 100,000 (its `onnx` line).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

use mnist_core::codec::onnx::proto::{tensor_shape_proto, type_proto, ModelProto, NodeProto};
use mnist_core::codec::onnx::{self, Dtype, ExportOptions, InputLayout};
use mnist_core::{Config, Rng};
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;

// ---- Memory: a global allocator counting, per thread, the bytes live and their peak.

struct Tracking;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(size: usize) {
    // try_with: a thread being torn down has no counters left and is not being measured.
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + size);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
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

/// The most bytes `f` had allocated at once beyond what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let value = f();
    (value, PEAK.with(Cell::get) - base)
}

/// prost turns each 2-byte empty message into a struct of up to 336 bytes (a TensorProto on
/// x86-64; the large optional fields are boxed, see proto/generate.sh) and a Vec may double
/// once: the worst measured is 220x (empty initializers, the test at the end). Everything the
/// importer then allocates is bounded by data actually present.
const AMPLIFICATION: usize = 256;
const SLACK: usize = 1 << 16;

/// Imports `bytes`; an Ok must be self-consistent, an Err one sentence, the allocation bounded.
fn import_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (result, peak) = peak_of(|| onnx::import(bytes));
    prop_assert!(
        peak <= AMPLIFICATION * bytes.len() + SLACK,
        "import of {} bytes allocated {peak} at its peak",
        bytes.len()
    );
    match result {
        Ok(imported) => {
            prop_assert_eq!(imported.params.len(), imported.config.param_count());
            prop_assert!(imported.params.iter().all(|v| v.is_finite()));
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!message.is_empty() && !message.contains('\n'), "{:?}", message);
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    // No regression file: integration tests have no lib.rs for proptest to place it beside.
    ProptestConfig { cases: mnist_tests::proptest_cases(), failure_persistence: None, ..ProptestConfig::default() }
}

// ---- Seeds: small valid models in every form our reader accepts.

fn tiny() -> Config {
    Config {
        height: 9,
        width: 10,
        channels: 2,
        conv1_filters: 3,
        conv2_filters: 2,
        hidden: 4,
        classes: 3,
        ..Config::default()
    }
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let config = tiny();
        let mut rng = Rng::new(11);
        let params: Vec<f32> = (0..config.param_count()).map(|_| rng.next_f32() - 0.5).collect();
        let mut seeds = Vec::new();
        for dtype in [Dtype::F32, Dtype::F16] {
            for input_layout in [InputLayout::Nhwc, InputLayout::Nchw] {
                seeds.push(onnx::export(&config, &params, ExportOptions { dtype, input_layout }).unwrap());
            }
        }
        for seed in &seeds {
            assert!(onnx::import(seed).is_ok());
        }
        seeds
    })
}

fn seed_model(index: Index) -> ModelProto {
    ModelProto::decode(seeds()[index.index(seeds().len())].as_slice()).unwrap()
}

// ---- Byte-level damage.

#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    FlipBits(Vec<(Index, u8)>),
    Overwrite(Index, Vec<u8>),
    Insert(Index, Vec<u8>),
    /// Copies a chunk of the file over another place: repeated fields, nested messages.
    Splice(Index, Index, Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        prop::collection::vec((any::<Index>(), 0u8..8), 1..8).prop_map(Damage::FlipBits),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..12)).prop_map(|(i, b)| Damage::Overwrite(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..12)).prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(a, b, c)| Damage::Splice(a, b, c)),
    ]
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
    let len = bytes.len();
    if len == 0 {
        return; // an earlier truncation left nothing to damage
    }
    match damage {
        Damage::Truncate(at) => bytes.truncate(at.index(len)),
        Damage::FlipBits(flips) => {
            for (at, bit) in flips {
                bytes[at.index(len)] ^= 1 << bit;
            }
        }
        Damage::Overwrite(at, new) => {
            let at = at.index(len);
            for (i, b) in new.iter().enumerate().take(len - at) {
                bytes[at + i] = *b;
            }
        }
        Damage::Insert(at, new) => {
            let at = at.index(len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Damage::Splice(from, size, to) => {
            let from = from.index(len);
            let size = size.index(len - from) + 1;
            let chunk = bytes[from..from + size].to_vec();
            let to = to.index(len + 1);
            bytes.splice(to..to, chunk);
        }
    }
}

// ---- Field-level lies, applied to a decoded model and re-encoded.

#[derive(Debug, Clone)]
enum Lie {
    /// A tensor's dims replaced (huge, negative, zero, many).
    Dims(Index, Vec<i64>),
    DataType(Index, i32),
    /// raw_data cut or grown.
    RawLength(Index, Index),
    AttributeType(Index, Index, i32),
    AttributeInts(Index, Index, Vec<i64>),
    OpType(Index, &'static str),
    /// The graph input's shape replaced.
    InputDims(Vec<i64>),
    DropNode(Index),
    DuplicateNode(Index),
    SwapNodes(Index, Index),
    RenameInput(Index, Index),
    Opset(i64),
}

fn interesting_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        -2i64..70,
        Just(i64::MAX),
        Just(i64::MIN),
        Just(1 << 31),
        Just(1 << 32),
        Just(1 << 40),
        Just((1 << 62) + 1),
        any::<i64>(),
    ]
}

const OPS: [&str; 14] = [
    "Conv",
    "Relu",
    "MaxPool",
    "Gemm",
    "MatMul",
    "Add",
    "Softmax",
    "Flatten",
    "Reshape",
    "Transpose",
    "Cast",
    "Identity",
    "Dropout",
    "Constant",
];

fn lie() -> impl Strategy<Value = Lie> {
    let dims = || prop::collection::vec(interesting_i64(), 0..6);
    prop_oneof![
        (any::<Index>(), dims()).prop_map(|(i, d)| Lie::Dims(i, d)),
        (any::<Index>(), -1i32..30).prop_map(|(i, t)| Lie::DataType(i, t)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Lie::RawLength(i, n)),
        (any::<Index>(), any::<Index>(), -1i32..16).prop_map(|(n, a, t)| Lie::AttributeType(n, a, t)),
        (any::<Index>(), any::<Index>(), prop::collection::vec(interesting_i64(), 0..6))
            .prop_map(|(n, a, v)| Lie::AttributeInts(n, a, v)),
        (any::<Index>(), prop::sample::select(&OPS[..])).prop_map(|(n, op)| Lie::OpType(n, op)),
        dims().prop_map(Lie::InputDims),
        any::<Index>().prop_map(Lie::DropNode),
        any::<Index>().prop_map(Lie::DuplicateNode),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Lie::SwapNodes(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Lie::RenameInput(a, b)),
        interesting_i64().prop_map(Lie::Opset),
    ]
}

fn tell(model: &mut ModelProto, lie: &Lie) {
    let graph = model.graph.as_mut().unwrap();
    let (nodes, tensors) = (graph.node.len(), graph.initializer.len());
    if nodes == 0 {
        return; // earlier lies dropped every node
    }
    let node =
        |graph: &mut mnist_core::codec::onnx::proto::GraphProto, i: &Index| -> usize { i.index(graph.node.len()) };
    match lie {
        Lie::Dims(i, dims) => graph.initializer[i.index(tensors)].dims = dims.clone(),
        Lie::DataType(i, t) => graph.initializer[i.index(tensors)].data_type = Some(*t),
        Lie::RawLength(i, n) => {
            let t = &mut graph.initializer[i.index(tensors)];
            let raw = t.raw_data.get_or_insert_with(Vec::new);
            let len = n.index(2 * raw.len() + 2);
            raw.resize(len, 0x3c);
        }
        Lie::AttributeType(n, a, t) => {
            let at = node(graph, n);
            let attributes = &mut graph.node[at].attribute;
            if !attributes.is_empty() {
                let len = attributes.len();
                attributes[a.index(len)].r#type = Some(*t);
            }
        }
        Lie::AttributeInts(n, a, v) => {
            let at = node(graph, n);
            let attributes = &mut graph.node[at].attribute;
            if !attributes.is_empty() {
                let len = attributes.len();
                attributes[a.index(len)].ints = v.clone();
            }
        }
        Lie::OpType(n, op) => {
            let at = node(graph, n);
            graph.node[at].op_type = Some(op.to_string());
        }
        Lie::InputDims(dims) => {
            if let Some(type_proto::Value::TensorType(t)) =
                graph.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                let shape = t.shape.get_or_insert_with(Default::default);
                shape.dim = dims
                    .iter()
                    .map(|&d| tensor_shape_proto::Dimension {
                        value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                        denotation: None,
                    })
                    .collect();
            }
        }
        Lie::DropNode(n) => {
            graph.node.remove(n.index(nodes));
        }
        Lie::DuplicateNode(n) => {
            let copy: NodeProto = graph.node[n.index(nodes)].clone();
            graph.node.insert(n.index(nodes), copy);
        }
        Lie::SwapNodes(a, b) => graph.node.swap(a.index(nodes), b.index(nodes)),
        Lie::RenameInput(n, i) => {
            let at = node(graph, n);
            let inputs = &mut graph.node[at].input;
            if !inputs.is_empty() {
                let len = inputs.len();
                inputs[i.index(len)] = String::from("nowhere");
            }
        }
        Lie::Opset(v) => model.opset_import[0].version = Some(*v),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn onnx_random_bytes_are_errors(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        import_checked(&bytes)?;
    }

    #[test]
    fn onnx_damaged_exports_are_errors_or_consistent(
        seed in any::<Index>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let mut bytes = seeds()[seed.index(seeds().len())].clone();
        for d in &damages {
            apply(&mut bytes, d);
        }
        import_checked(&bytes)?;
    }

    #[test]
    fn onnx_lying_fields_are_errors_or_consistent(seed in any::<Index>(), lies in prop::collection::vec(lie(), 1..4)) {
        let mut model = seed_model(seed);
        for l in &lies {
            tell(&mut model, l);
        }
        import_checked(&model.encode_to_vec())?;
    }
}

/// `tag` as a length-delimited field holding `payload`.
fn field(tag: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for mut value in [(tag << 3) | 2, payload.len() as u64] {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    out.extend_from_slice(payload);
    out
}

#[test]
fn empty_messages_stay_within_the_amplification_bound() {
    // The worst case of any protobuf decoder: 100,000 empty elements (2 bytes each) of each
    // repeated message field on the way to the weights.
    let empties = |tag: u64| field(tag, &[]).repeat(100_000);
    let cases = [
        ("graph nodes", field(7, &empties(1))),
        ("initializers", field(7, &empties(5))),
        ("sparse initializers", field(7, &empties(15))),
        ("graph inputs", field(7, &empties(11))),
        ("attributes of one node", field(7, &field(1, &empties(5)))),
        ("tensors of one attribute", field(7, &field(1, &field(5, &empties(10))))),
        ("graphs of one attribute", field(7, &field(1, &field(5, &empties(11))))),
        ("opset imports", empties(8)),
        ("functions", empties(25)),
        ("training infos", empties(20)),
        ("metadata", empties(14)),
    ];
    let mut worst = 0.0f64;
    for (what, bytes) in &cases {
        let (result, peak) = peak_of(|| onnx::import(bytes));
        let ratio = peak as f64 / bytes.len() as f64;
        eprintln!("{} bytes of empty {what}: peak {peak} bytes ({ratio:.0}x the input)", bytes.len());
        worst = worst.max(ratio);
        assert!(result.is_err(), "{what}");
        assert!(peak <= AMPLIFICATION * bytes.len() + SLACK, "{what}: peak {peak}");
    }
    eprintln!("worst: {worst:.0}x");
}
