//! `mnist serve` with ONNX files: a model trained in PyTorch and exported by torch.onnx.export
//! (fixtures/onnx), served from `--model FILE.onnx` and registered through `POST /models`,
//! answers KServe v2 requests with PyTorch's own probabilities for the same 8 real test images.

mod serve_support;

use mnist_core::codec::npy::{self, NpyData};
use serve_support::{fixture, post, request, Server, FIXTURES};

#[test]
fn a_pytorch_onnx_file_is_served_as_pytorch_computes_it() {
    let NpyData::U8(images) = npy::read(&fixture("mxnet/images.npy")).unwrap().data else { panic!("uint8") };
    // fixtures/mxnet/images.npy holds x_test[0..8]; pytorch_probs.npy PyTorch's for all of x_test.
    let NpyData::F32(pytorch) = npy::read(&fixture("onnx/pytorch_probs.npy")).unwrap().data else { panic!("f32") };
    let data: Vec<String> = images.iter().map(u8::to_string).collect();
    let body = format!(
        r#"{{"inputs": [{{"name": "x", "shape": [8, 28, 28, 1], "datatype": "UINT8", "data": [{}]}}]}}"#,
        data.join(",")
    );
    let file = format!("{FIXTURES}/onnx/pytorch_mnist_cnn.onnx");
    let server = Server::start(&["--quiet", "--model", &file, "--model-name", "torch"]);
    let load = request(&server.management, "POST", &format!("/models?url={file}&model_name=again"), &[], b"");
    assert_eq!(load.status, 200, "{}", load.text());
    for name in ["torch", "again"] {
        let reply = post(&server.inference, &format!("/v2/models/{name}/infer"), body.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.text());
        let ours: Vec<f64> =
            reply.json()["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ours.len(), 80);
        for (i, (a, b)) in ours.iter().zip(&pytorch[..80]).enumerate() {
            assert!((a - f64::from(*b)).abs() <= 1e-5, "{name} [{i}]: ours {a}, PyTorch {b}");
        }
    }
    // A damaged ONNX file is refused with the reader's reason; the server lives on.
    let bad = std::env::temp_dir().join(format!("mnist-onnx-serve-{}.onnx", std::process::id()));
    std::fs::write(&bad, &fixture("onnx/pytorch_mnist_cnn.onnx")[..1000]).unwrap();
    let load = request(&server.management, "POST", &format!("/models?url={}&model_name=bad", bad.display()), &[], b"");
    assert_eq!(load.status, 400, "{}", load.text());
    assert!(load.text().contains("ONNX model is malformed"), "{}", load.text());
    let _ = std::fs::remove_file(&bad);
    assert!(server.stop().success());
}
