//! Unit tests of the MXNet checkpoint codec on tiny configs: round trips, the layout
//! conversions, clear errors and proptests. Real-MXNet checks live in tests/tests/mxnet_*.rs.

use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::data::Rng;

fn tiny() -> Config {
    Config {
        height: 9,
        width: 8,
        channels: 2,
        conv1_filters: 3,
        conv2_filters: 4,
        kernel: 3,
        pool: 2,
        dropout1: 0.25,
        hidden: 5,
        dropout2: 0.5,
        classes: 3,
    }
}

fn random_params(config: &Config, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..config.param_count()).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

fn text(e: &Error) -> String {
    alloc::format!("{e}")
}

#[test]
fn export_then_import_round_trips_exactly() {
    let config = tiny();
    let params = random_params(&config, 1);
    let checkpoint = export(&config, &params, Dtype::F32).unwrap();
    let back = import(checkpoint.symbol.as_bytes(), &checkpoint.params).unwrap();
    assert_eq!(back.flavour, Flavour::Ours);
    assert_eq!(back.config, config);
    assert_eq!(back.params, params);
    assert_eq!(back.dtype, Dtype::F32);
    assert!(back.softmax_output);
    assert!(back.image_size_from_symbol);
}

#[test]
fn float16_export_rounds_to_nearest_half() {
    let config = tiny();
    let params = random_params(&config, 2);
    let checkpoint = export(&config, &params, Dtype::F16).unwrap();
    let back = import(checkpoint.symbol.as_bytes(), &checkpoint.params).unwrap();
    assert_eq!(back.dtype, Dtype::F16);
    for (a, b) in back.params.iter().zip(&params) {
        assert_eq!(*a, half::f16::from_f32(*b).to_f32());
    }
    let mut too_big = params.clone();
    too_big[0] = 1e5;
    assert!(export(&config, &too_big, Dtype::F16).is_err());
    assert!(export(&config, &too_big, Dtype::F32).is_ok());
}

#[test]
fn symbol_has_keras_mxnet_interface() {
    let json = export_symbol(&Config::default()).unwrap();
    let graph: serde_json::Value = serde_json::from_str(&json).unwrap();
    let nodes = graph["nodes"].as_array().unwrap();
    let variables: Vec<(&str, &str)> = nodes
        .iter()
        .filter(|n| n["op"] == "null")
        .map(|n| (n["name"].as_str().unwrap(), n["attrs"]["__shape__"].as_str().unwrap()))
        .collect();
    // Names and shapes as in keras-mxnet's mnist_cnn-symbol.json (without Python 2's "L").
    assert_eq!(
        variables,
        [
            ("/conv2d_1_input1", "(0, 28, 28, 1)"),
            ("conv2d_1/kernel1", "(3, 3, 1, 32)"),
            ("conv2d_1/bias1", "(32,)"),
            ("conv2d_2/kernel1", "(3, 3, 32, 64)"),
            ("conv2d_2/bias1", "(64,)"),
            ("dense_1/kernel1", "(9216, 128)"),
            ("dense_1/bias1", "(128,)"),
            ("dense_2/kernel1", "(128, 10)"),
            ("dense_2/bias1", "(10,)"),
        ]
    );
    assert_eq!(nodes.last().unwrap()["name"], "softmax1");
    let facts = symbol::read_symbol(json.as_bytes()).unwrap();
    assert_eq!(facts.pool, 2);
    assert_eq!((facts.dropout1, facts.dropout2), (Some(0.25), Some(0.5)));
    assert!(facts.ours && facts.softmax);
}

#[test]
fn tuples_parse_like_mxnet() {
    assert_eq!(symbol::parse_tuple("(3L, 3L, 1L, 32L)"), Some(alloc::vec![3, 3, 1, 32]));
    assert_eq!(symbol::parse_tuple("[0, 3, 1, 2]"), Some(alloc::vec![0, 3, 1, 2]));
    assert_eq!(symbol::parse_tuple("(32,)"), Some(alloc::vec![32]));
    assert_eq!(symbol::parse_tuple("()"), Some(alloc::vec![]));
    assert_eq!(symbol::parse_tuple("3, 3"), None);
    assert_eq!(symbol::parse_tuple("(3, x)"), None);
}

/// Gluon's layouts, the inverse of import's conversion, to prove the conversion round-trips.
fn hwio_to_oihw(w: &[f32], shape: &[usize]) -> Vec<f32> {
    let (kh_n, kw_n, i_n, o_n) = (shape[0], shape[1], shape[2], shape[3]);
    let mut out = alloc::vec![0.0; w.len()];
    for kh in 0..kh_n {
        for kw in 0..kw_n {
            for i in 0..i_n {
                for o in 0..o_n {
                    out[((o * i_n + i) * kh_n + kh) * kw_n + kw] = w[((kh * kw_n + kw) * i_n + i) * o_n + o];
                }
            }
        }
    }
    out
}

fn keras_dense_to_gluon(w: &[f32], outputs: usize, channels: usize, spatial: usize) -> Vec<f32> {
    let mut out = alloc::vec![0.0; w.len()];
    for s in 0..spatial {
        for c in 0..channels {
            for j in 0..outputs {
                out[j * channels * spatial + c * spatial + s] = w[(s * channels + c) * outputs + j];
            }
        }
    }
    out
}

#[test]
fn gluon_layout_conversions_round_trip() {
    let mut rng = Rng::new(3);
    let shape = [3, 2, 4, 5]; // (KH, KW, I, O), deliberately not square
    let hwio: Vec<f32> = (0..120).map(|_| rng.next_f32()).collect();
    let oihw = hwio_to_oihw(&hwio, &shape);
    let mut back = alloc::vec![0.0; 120];
    oihw_to_hwio(&mut back, &oihw, &[5, 4, 3, 2]);
    assert_eq!(back, hwio);

    // (S * C, OUT) with S = 6, C = 4, OUT = 5, and the transpose case S = 1.
    let keras: Vec<f32> = (0..120).map(|_| rng.next_f32()).collect();
    for (channels, spatial) in [(4, 6), (24, 1)] {
        let gluon = keras_dense_to_gluon(&keras, 5, channels, spatial);
        let mut back = alloc::vec![0.0; 120];
        gluon_dense_to_keras(&mut back, &gluon, 5, channels, spatial);
        assert_eq!(back, keras);
    }
    // One element by hand: keras row (s=1, c=2) = 1*4+2 = 6, column 3 <- gluon [3][2*6+1].
    let gluon = keras_dense_to_gluon(&keras, 5, 4, 6);
    assert_eq!(gluon[3 * 24 + 2 * 6 + 1], keras[6 * 5 + 3]);
}

/// A Gluon-style checkpoint of `config`, written from the parameters in our layout.
fn gluon_checkpoint(config: &Config, params: &[f32]) -> (String, Vec<u8>) {
    let layout = config.layout();
    let names = [
        "conv0_weight",
        "conv0_bias",
        "conv1_weight",
        "conv1_bias",
        "dense0_weight",
        "dense0_bias",
        "dense1_weight",
        "dense1_bias",
    ];
    let (hp, wp, c2) = config.pool_out();
    let mut stored = Vec::new();
    for (i, slot) in layout.slots.iter().enumerate() {
        let w = &params[slot.span().range()];
        let (shape, data) = match i {
            0 | 2 => (stored_shape(Flavour::Gluon, &slot.shape), hwio_to_oihw(w, &slot.shape)),
            4 => (stored_shape(Flavour::Gluon, &slot.shape), keras_dense_to_gluon(w, config.hidden, c2, hp * wp)),
            6 => (stored_shape(Flavour::Gluon, &slot.shape), keras_dense_to_gluon(w, config.classes, config.hidden, 1)),
            _ => (slot.shape.clone(), w.to_vec()),
        };
        stored.push((alloc::format!("arg:net0_{}", names[i]), shape, data));
    }
    let entries: Vec<(&str, &[usize], &[f32])> =
        stored.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
    let params = write_ndarray_list(&entries, Dtype::F32).unwrap();
    let var = |name: &str| alloc::format!(r#"{{"op": "null", "name": "net0_{name}", "inputs": []}}"#);
    let symbol = alloc::format!(
        r#"{{"nodes": [
        {{"op": "null", "name": "data", "inputs": []}},
        {}, {},
        {{"op": "Convolution", "name": "c0", "attrs": {{"kernel": "(3, 3)", "num_filter": "3"}}, "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]}},
        {{"op": "Activation", "name": "r0", "attrs": {{"act_type": "relu"}}, "inputs": [[3, 0, 0]]}},
        {}, {},
        {{"op": "Convolution", "name": "c1", "attrs": {{"kernel": "(3, 3)", "num_filter": "4"}}, "inputs": [[4, 0, 0], [5, 0, 0], [6, 0, 0]]}},
        {{"op": "Activation", "name": "r1", "attrs": {{"act_type": "relu"}}, "inputs": [[7, 0, 0]]}},
        {{"op": "Pooling", "name": "p", "attrs": {{"kernel": "(2, 2)", "stride": "(2, 2)", "pool_type": "max"}}, "inputs": [[8, 0, 0]]}},
        {{"op": "Flatten", "name": "f", "inputs": [[9, 0, 0]]}},
        {}, {},
        {{"op": "FullyConnected", "name": "d0", "attrs": {{"num_hidden": "5"}}, "inputs": [[10, 0, 0], [11, 0, 0], [12, 0, 0]]}},
        {{"op": "Activation", "name": "r2", "attrs": {{"act_type": "relu"}}, "inputs": [[13, 0, 0]]}},
        {}, {},
        {{"op": "FullyConnected", "name": "d1", "attrs": {{"num_hidden": "3"}}, "inputs": [[14, 0, 0], [15, 0, 0], [16, 0, 0]]}}
        ], "arg_nodes": [0, 1, 2, 5, 6, 11, 12, 15, 16], "heads": [[17, 0, 0]]}}"#,
        var(names[0]),
        var(names[1]),
        var(names[2]),
        var(names[3]),
        var(names[4]),
        var(names[5]),
        var(names[6]),
        var(names[7]),
    );
    (symbol, params)
}

#[test]
fn gluon_checkpoint_imports_into_our_layout() {
    // Square image: Gluon graphs do not store the input shape, so import assumes a square one.
    let config = Config { height: 8, width: 8, ..tiny() };
    let params = random_params(&config, 4);
    let (symbol, bytes) = gluon_checkpoint(&config, &params);
    let back = import(symbol.as_bytes(), &bytes).unwrap();
    assert_eq!(back.flavour, Flavour::Gluon);
    assert!(!back.softmax_output && !back.image_size_from_symbol);
    assert_eq!(back.config, config);
    assert_eq!(back.params, params);
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let config = tiny();
    let params = random_params(&config, 5);
    let good = export(&config, &params, Dtype::F32).unwrap();
    let symbol = good.symbol.as_bytes();

    let err = import(b"{\"hello\": 1}", &good.params).unwrap_err();
    assert!(text(&err).contains("not an MXNet graph JSON"), "{err}");
    assert!(import(b"[1, 2", &good.params).is_err());
    assert!(import(b"", &good.params).is_err());

    // A parameter renamed in the params file.
    let mut renamed = good.params.clone();
    let at = renamed.windows(16).position(|w| w == b"conv2d_2/kernel1").unwrap();
    renamed[at] = b'x';
    let err = import(symbol, &renamed).unwrap_err();
    assert!(matches!(&err, Error::Missing { name, .. } if name == "conv2d_2/kernel1"), "{err}");

    // The params of another architecture under this symbol.
    let other = Config { hidden: 6, ..config };
    let wrong = export(&other, &random_params(&other, 6), Dtype::F32).unwrap();
    let err = import(symbol, &wrong.params).unwrap_err();
    assert!(
        text(&err).contains("dense_1/kernel1 has shape [16, 6] in the params file but [16, 5] in the symbol"),
        "{err}"
    );
    // And a graph whose parameter is rank 3 where a kernel must be rank 4.
    let reshaped = good.symbol.replacen("(3, 3, 2, 3)", "(3, 3, 6)", 1);
    assert!(import(reshaped.as_bytes(), &good.params).is_err());

    // An input whose channels disagree with the first kernel.
    let channels = good.symbol.replacen("(0, 9, 8, 2)", "(0, 9, 8, 3)", 1);
    let err = import(channels.as_bytes(), &good.params).unwrap_err();
    assert!(text(&err).contains("3 channels"), "{err}");

    // An operator we do not read.
    let tanh = good.symbol.replacen("\"relu\"", "\"tanh\"", 1);
    let err = import(tanh.as_bytes(), &good.params).unwrap_err();
    assert!(text(&err).contains("tanh"), "{err}");
    let sigmoid = good.symbol.replacen("\"Pooling\"", "\"Sigmoid\"", 1);
    assert!(text(&import(sigmoid.as_bytes(), &good.params).unwrap_err()).contains("Sigmoid"));

    // An unknown dtype flag: the first array's flag sits after magic, storage, ndim, 4 dims, ctx.
    let mut int8 = good.params.clone();
    int8[24 + 4 + 4 + 4 + 32 + 8] = 5;
    let err = import(symbol, &int8).unwrap_err();
    assert!(text(&err).contains("int8"), "{err}");

    // Non-finite weights.
    let mut nan = params.clone();
    nan[7] = f32::NAN;
    assert!(export(&config, &nan, Dtype::F32).is_err());
    assert!(export(&config, &params[1..], Dtype::F32).is_err());
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let config = tiny();
    let good = export(&config, &random_params(&config, 8), Dtype::F32).unwrap();
    // 100,000 levels in a graph attribute (kept as free JSON) and in place of the node list.
    let deep = |open: &str, close: &str| alloc::format!("{}{}", open.repeat(100_000), close.repeat(100_000));
    let graph_attrs = good.symbol.rfind("\"attrs\": {").unwrap() + "\"attrs\": {".len();
    let mut in_attrs = good.symbol.clone();
    in_attrs.insert_str(graph_attrs, &alloc::format!("\"deep\": {},", deep("[", "]")));
    let in_nodes = alloc::format!("{{\"nodes\": {}}}", deep("[", "]"));
    let objects =
        alloc::format!("{{\"nodes\": [], \"attrs\": {}1{}}}", "{\"a\": ".repeat(100_000), "}".repeat(100_000));
    // Free JSON stops at serde_json's recursion limit; typed fields fail on the first wrong type.
    for (symbol, why) in [(in_attrs, "recursion limit"), (objects, "recursion limit"), (in_nodes, "invalid type")] {
        let err = import(symbol.as_bytes(), &good.params).unwrap_err();
        assert!(text(&err).contains("not an MXNet graph JSON") && text(&err).contains(why), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::codec::proptest_cases()))]

    #[test]
    fn params_decoder_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_ndarray_list(&bytes);
        let _ = import(&bytes, &bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_files(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        target_symbol in any::<bool>(),
    ) {
        let config = tiny();
        let good = export(&config, &random_params(&config, 7), Dtype::F16).unwrap();
        let mut symbol = good.symbol.clone().into_bytes();
        let mut params = good.params.clone();
        let bytes = if target_symbol { &mut symbol } else { &mut params };
        for (index, value) in &edits {
            let i = index.index(bytes.len());
            bytes[i] = *value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(imported) = import(&symbol, &params) {
            // Whatever decodes must be self-consistent.
            prop_assert_eq!(imported.params.len(), imported.config.param_count());
        }
    }
}
