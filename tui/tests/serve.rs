//! `mnist serve` end to end on the real binary over loopback: every route, hostile inputs
//! (not images, decompression bombs, oversized and slow bodies, bad JSON and tensors),
//! overload (503 + Retry-After), the SIGTERM drain with requests in flight, and a bounded load
//! test. Leaves out the comparison with real MMS (serve_mms.rs) and throughput (serve_bench.sh).

mod serve_support;

use std::io::Write;
use std::time::{Duration, Instant};

use serve_support::{connect, fixture, get, multipart, parse_answer, post, read_reply, request, Server};

fn seven() -> Vec<u8> {
    fixture("serve/images/7.jpg")
}

/// A KServe v2 request with `count` copies of x_test[0]-like values.
fn tensor_request(datatype: &str, count: usize) -> Vec<u8> {
    let values: Vec<String> = (0..784 * count)
        .map(|i| {
            let v = ((i % 784) * 7 % 256) as u8;
            if datatype == "UINT8" {
                v.to_string()
            } else {
                (v as f32 / 255.0).to_string()
            }
        })
        .collect();
    format!(
        r#"{{"id": "req-1", "inputs": [{{"name": "input", "shape": [{count}, 28, 28, 1], "datatype": "{datatype}", "data": [{}]}}]}}"#,
        values.join(",")
    )
    .into_bytes()
}

#[test]
fn every_route_answers() {
    let server = Server::start(&[]);
    let (inference, management) = (server.inference.clone(), server.management.clone());

    // MMS: the sample's two curl commands, raw body (with curl's Expect: 100-continue) and multipart.
    let raw = request(&inference, "POST", "/predictions/mnist", &[("Expect", "100-continue")], &seven());
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(parse_answer(&raw.text()).0, "[7]");
    let put = request(&inference, "PUT", "/predictions/mnist", &[], &seven());
    assert_eq!(put.text(), raw.text(), "curl -T without -X POST sends PUT");
    let (content_type, body) = multipart("data", &fixture("serve/images/7.png"));
    let form = request(&inference, "POST", "/predictions/mnist", &[("Content-Type", &content_type)], &body);
    assert_eq!(form.status, 200, "{}", form.text());
    assert_eq!(parse_answer(&form.text()).0, "[7]");
    assert_eq!(get(&inference, "/ping").json()["status"], "Healthy");

    // The JSON convenience route, plain and MNIST-style (a dark-on-light drawing).
    let json = post(&inference, "/classify/mnist", &seven()).json();
    assert_eq!(json["class"], 7);
    assert_eq!(json["probabilities"].as_array().unwrap().len(), 10);
    let sum: f64 = json["probabilities"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    let drawing = fixture("serve/images/dark_on_light_120x120.png");
    let styled = post(&inference, "/classify/mnist?mnist_style=true", &drawing).json();
    assert_eq!(styled["class"], 6, "{styled}"); // make_fixtures.py: x_test[11] is a 6
    assert_ne!(post(&inference, "/classify/mnist", &drawing).json()["probabilities"], styled["probabilities"]);

    // KServe v2.
    assert_eq!(get(&inference, "/v2/health/live").json()["live"], true);
    let ready = get(&inference, "/v2/health/ready");
    assert_eq!((ready.status, ready.json()["ready"].clone()), (200, true.into()));
    assert_eq!(get(&inference, "/v2").json()["name"], "mnist");
    let meta = get(&inference, "/v2/models/mnist").json();
    assert_eq!(meta["inputs"][0]["shape"], serde_json::json!([-1, 28, 28, 1]));
    assert_eq!(meta["outputs"][0]["shape"], serde_json::json!([-1, 10]));
    assert_eq!(get(&inference, "/v2/models/mnist/ready").json()["ready"], true);
    assert_eq!(get(&inference, "/v2/models/nope/ready").status, 404);
    for datatype in ["FP32", "UINT8"] {
        let reply = post(&inference, "/v2/models/mnist/infer", &tensor_request(datatype, 3));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let out = reply.json();
        assert_eq!(out["id"], "req-1");
        assert_eq!(out["outputs"][0]["datatype"], "FP32");
        assert_eq!(out["outputs"][0]["shape"], serde_json::json!([3, 10]));
        let data = out["outputs"][0]["data"].as_array().unwrap();
        assert_eq!(data.len(), 30);
        assert_eq!(data[..10], data[20..], "the same image gives the same probabilities in any batch slot");
    }
    let fp32 = post(&inference, "/v2/models/mnist/infer", &tensor_request("FP32", 1)).json();
    let uint8 = post(&inference, "/v2/models/mnist/infer", &tensor_request("UINT8", 1)).json();
    assert_eq!(fp32["outputs"], uint8["outputs"], "UINT8 v is FP32 v/255");

    // Management: list, describe, load another checkpoint from a path, use it, unload it.
    let models = get(&management, "/models").json();
    assert_eq!(models["models"][0]["modelName"], "mnist");
    let described = get(&management, "/models/mnist").json();
    assert_eq!(described["workers"].as_array().unwrap().len() as u64, described["minWorkers"].as_u64().unwrap());
    assert!(described["workers"][0]["startTime"].as_str().unwrap().ends_with('Z'));
    let prefix = format!("{}/model/mnist_cnn", serve_support::FIXTURES);
    let load = request(&management, "POST", &format!("/models?url={prefix}&model_name=second&batch_size=4"), &[], b"");
    assert_eq!(
        (load.status, load.json()["status"].clone()),
        (200, "Model \"second\" registered".into()),
        "{}",
        load.text()
    );
    assert_eq!(get(&management, "/models/second").json()["batchSize"], 4);
    assert_eq!(post(&inference, "/predictions/second", &seven()).text(), raw.text(), "the same model, the same answer");
    let again = request(&management, "POST", &format!("/models?url={prefix}&model_name=second"), &[], b"");
    assert_eq!(again.status, 409);
    let missing = request(&management, "POST", "/models?url=/no/such/model", &[], b"");
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(missing.json()["message"].as_str().unwrap().contains("/no/such/model-symbol.json"));
    let bad_name = request(&management, "POST", &format!("/models?url={prefix}&model_name=a%20b"), &[], b"");
    assert_eq!(bad_name.status, 400);
    let unload = request(&management, "DELETE", "/models/second", &[], b"");
    assert_eq!(unload.json()["status"], "Model \"second\" unregistered");
    assert_eq!(post(&inference, "/predictions/second", &seven()).status, 404);
    assert_eq!(request(&management, "DELETE", "/models/second", &[], b"").status, 404);
    assert_eq!(get(&management, "/nothing").status, 404);

    // Metrics: the requests above by route and code, latency, batch sizes, queue, the model.
    let metrics = get(&server.metrics, "/metrics");
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for needle in [
        r#"mnist_requests_total{code="200",port="inference",route="/predictions/{model}"} 4"#,
        r#"mnist_requests_total{code="404",port="inference",route="/predictions/{model}"} 1"#,
        r#"mnist_requests_total{code="409",port="management",route="/models"} 1"#,
        r#"mnist_request_duration_seconds_count{port="inference",route="/v2/models/{model}/infer"} 4"#,
        r#"mnist_batch_size_bucket{model="mnist",le="4"}"#,
        r#"mnist_forward_duration_seconds_count{model="mnist"}"#,
        r#"mnist_queue_depth{model="mnist"} 0"#,
        r#"mnist_model_info{batch_size="32",device="cpu",model="mnist",origin="shipped""#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains(r#"model="second""#), "an unloaded model leaves the metrics");

    // One log line per request, on stdout.
    std::thread::sleep(Duration::from_millis(100));
    let log = server.stdout.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l == "POST /predictions/mnist 200" || l.starts_with("POST /predictions/mnist 200 ")),
        "{log:?}"
    );
    assert!(server.stop().success());
}

#[test]
fn request_logs_are_json_lines_or_nothing() {
    let json = Server::start(&["--log-format", "json"]);
    post(&json.inference, "/predictions/mnist", &seven());
    get(&json.inference, "/ping");
    std::thread::sleep(Duration::from_millis(100));
    let lines = json.stdout.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!((first["route"].as_str(), first["status"].as_u64()), (Some("/predictions/{model}"), Some(200)));
    assert!(first["ms"].as_f64().unwrap() > 0.0);
    assert!(json.stop().success());
    let quiet = Server::start(&["--quiet"]);
    post(&quiet.inference, "/predictions/mnist", &seven());
    std::thread::sleep(Duration::from_millis(100));
    assert!(quiet.stdout.lock().unwrap().is_empty());
    assert!(quiet.stop().success());
}

/// A PNG whose header claims `width` x `height` pixels, with a tiny (invalid) image stream.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A JPEG whose frame header claims 65500 x 65500 pixels, a scan header and no image data.
fn jpeg_header() -> Vec<u8> {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xDC, 0xFF, 0xDC, 0x01, 0x01, 0x11, 0x00];
    jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x12, 0x34, 0xFF, 0xD9]);
    jpeg
}

#[test]
fn hostile_inputs_get_a_clear_4xx_and_the_server_lives_on() {
    let server = Server::start(&["--timeout", "1", "--max-body-bytes", "100000", "--max-tensor-images", "4"]);
    let inference = server.inference.clone();
    let message = |reply: &serve_support::Reply| reply.json()["message"].as_str().unwrap_or("").to_string();

    let text = post(&inference, "/predictions/mnist", b"hello, world");
    assert_eq!(text.status, 400);
    assert!(message(&text).contains("not a PNG, JPEG or PNM"), "{}", text.text());
    let truncated = seven()[..200].to_vec();
    let cut = post(&inference, "/predictions/mnist", &truncated);
    assert_eq!(cut.status, 400, "{}", cut.text());
    assert!(message(&cut).contains("JPEG"), "{}", cut.text());
    let empty = post(&inference, "/predictions/mnist", b"");
    assert_eq!(empty.status, 400);
    assert!(message(&empty).contains("no body"));

    // Decompression bombs: refused from the header, before anything is decoded.
    for (bomb, what) in [(png_header(100_000, 100_000), "PNG"), (jpeg_header(), "JPEG")] {
        let started = Instant::now();
        let reply = post(&inference, "/predictions/mnist", &bomb);
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert!(message(&reply).contains("more than the limit"), "{what}: {}", reply.text());
        assert!(started.elapsed() < Duration::from_secs(2), "{what} took {:?}", started.elapsed());
    }

    // Too large: by Content-Length at once (no 100 Continue), or by counting a chunked body.
    let mut stream = connect(&inference);
    stream
        .write_all(
            b"POST /predictions/mnist HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10000000\r\n\r\n",
        )
        .unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 413, "{}", reply.text());
    let chunked: Vec<u8> = {
        let mut body = Vec::new();
        for _ in 0..20 {
            body.extend_from_slice(format!("{:x}\r\n", 10_000).as_bytes());
            body.extend_from_slice(&[0u8; 10_000]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body
    };
    let reply = request(&inference, "POST", "/predictions/mnist", &[("Transfer-Encoding", "chunked")], &chunked);
    assert_eq!(reply.status, 413, "{}", reply.text());

    // Slow clients: a body that stops coming gets 408; headers that stop coming, a closed connection.
    let mut stream = connect(&inference);
    stream.write_all(b"POST /predictions/mnist HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n0123456789").unwrap();
    let started = Instant::now();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut stream = connect(&inference);
    stream.write_all(b"POST /predictions/mnist HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut rest = Vec::new();
    let started = Instant::now();
    let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    assert!(started.elapsed() < Duration::from_secs(10), "the server closes a connection whose headers stall");

    // Multipart without the image field.
    let (content_type, body) = multipart("file", &seven());
    let reply = request(&inference, "POST", "/predictions/mnist", &[("Content-Type", &content_type)], &body);
    assert_eq!(reply.status, 400);
    assert!(message(&reply).contains("no field named data (it has: file)"), "{}", reply.text());
    let reply = request(
        &inference,
        "POST",
        "/predictions/mnist",
        &[("Content-Type", "multipart/form-data; boundary=x")],
        b"junk",
    );
    assert_eq!(reply.status, 400, "{}", reply.text());

    // KServe v2: malformed JSON, wrong shapes, datatypes and sizes (the parser's own unit tests
    // cover every case; these prove the route answers them with 400 and the reason).
    let infer = |body: &[u8]| post(&inference, "/v2/models/mnist/infer", body);
    for (body, expected) in [
        (b"{\"inputs\": [".to_vec(), "not valid JSON"),
        (
            String::from_utf8(tensor_request("FP32", 1)).unwrap().replace("[1, 28, 28, 1]", "[1, 784]").into_bytes(),
            "does not match",
        ),
        (String::from_utf8(tensor_request("FP32", 1)).unwrap().replace("FP32", "FP64").into_bytes(), "FP64"),
        (tensor_request("UINT8", 5), "at most 4"),
    ] {
        let reply = infer(&body);
        assert_eq!(reply.status, 400, "{}", reply.text());
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
    assert_eq!(request(&inference, "GET", "/v2/models/mnist/infer", &[], b"").status, 405);
    assert_eq!(infer(&tensor_request("FP32", 1)).status, 200, "still serving");
    assert_eq!(post(&inference, "/predictions/mnist", &seven()).status, 200, "still serving");
    assert!(server.stop().success());
}

/// Opens a request whose body is held back: the server holds its place until `finish`.
struct Stalled {
    stream: std::net::TcpStream,
    rest: Vec<u8>,
}

fn stalled(address: &str, path: &str, body: &[u8]) -> Stalled {
    let mut stream = connect(address);
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..10]).unwrap();
    Stalled { stream, rest: body[10..].to_vec() }
}

impl Stalled {
    fn finish(mut self) -> serve_support::Reply {
        self.stream.write_all(&self.rest).unwrap();
        read_reply(&mut self.stream)
    }
}

#[test]
fn overload_gets_503_with_retry_after_and_recovers() {
    let server = Server::start(&["--queue-size", "2"]);
    let first = stalled(&server.inference, "/predictions/mnist", &seven());
    let second = stalled(&server.inference, "/predictions/mnist", &seven());
    std::thread::sleep(Duration::from_millis(200));
    let refused = post(&server.inference, "/predictions/mnist", &seven());
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.json()["message"].as_str().unwrap().contains("busy"), "{}", refused.text());
    let v2 = post(&server.inference, "/v2/models/mnist/infer", &tensor_request("FP32", 1));
    assert_eq!((v2.status, v2.header("retry-after")), (503, Some("1")));
    assert_eq!(first.finish().status, 200);
    assert_eq!(second.finish().status, 200);
    assert_eq!(post(&server.inference, "/predictions/mnist", &seven()).status, 200, "room again");
    assert!(server.stop().success());
}

#[test]
fn sigterm_finishes_the_requests_in_flight_and_exits_0() {
    let mut server = Server::start(&["--shutdown-delay", "1", "--drain-timeout", "20"]);
    let expected = post(&server.inference, "/predictions/mnist", &seven()).text();
    let in_flight: Vec<Stalled> = (0..6).map(|_| stalled(&server.inference, "/predictions/mnist", &seven())).collect();
    std::thread::sleep(Duration::from_millis(200));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // During the shutdown delay: not ready, but still answering.
    let ready = get(&server.inference, "/v2/health/ready");
    assert_eq!((ready.status, ready.json()["ready"].clone()), (503, false.into()));
    assert_eq!(get(&server.inference, "/v2/models/mnist/ready").status, 503);
    // After it the listener is closed and the stalled requests are still waited for.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(std::net::TcpStream::connect(&server.inference).is_err(), "no new connections while draining");
    assert!(server.wait(Duration::from_millis(300)).is_none(), "it waits for the requests in flight");
    for request in in_flight {
        let reply = request.finish();
        assert_eq!((reply.status, reply.text()), (200, expected.clone()));
    }
    let status = server.wait(Duration::from_secs(10)).expect("exits once drained");
    assert_eq!(status.code(), Some(0));
    let log = server.stderr.lock().unwrap().join("\n");
    assert!(log.contains("SIGTERM: drained"), "{log}");
}

#[test]
fn a_drain_that_times_out_still_exits_0() {
    let mut server = Server::start(&["--drain-timeout", "1"]);
    let _never_finished = stalled(&server.inference, "/predictions/mnist", &seven());
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(10)).expect("exits after the drain timeout");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(server.stderr.lock().unwrap().join("\n").contains("drain timed out"));
}

#[test]
fn bad_arguments_and_models_exit_2_with_a_reason() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mnist")).arg("serve").args(args).output().unwrap()
    };
    for (args, expected) in [
        (&["--model", "/no/such/prefix"][..], "/no/such/prefix-symbol.json"),
        (&["--batch-size", "0"][..], "--batch-size must be at least 1"),
        (&["--timeout", "0"][..], "--timeout must be more than 0"),
        (&["--model-name", "a/b"][..], "model name \"a/b\""),
        (&["--max-batch-delay", "10001"][..], "10001 is not in 0..=10000"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&["--host", "127.0.0.1", "--port", &port, "--management-port", "0", "--metrics-port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on 127.0.0.1:{port}")));
}

/// A bounded load test: 8 clients x 50 requests each of two kinds; every answer right, every
/// request counted, batches formed. (Throughput is measured by serve_bench.sh, not here.)
#[test]
fn concurrent_requests_are_batched_and_all_answered_right() {
    let server = Server::start(&["--quiet", "--workers", "1"]);
    let images = [seven(), fixture("serve/images/d00_label2_28x28_grey.png")];
    let expected: Vec<String> =
        images.iter().map(|i| post(&server.inference, "/predictions/mnist", i).text()).collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..8 {
            let (inference, images, expected) = (&server.inference, &images, &expected);
            scope.spawn(move || {
                for i in 0..50 {
                    let which = (client + i) % 2;
                    let reply = post(inference, "/predictions/mnist", &images[which]);
                    assert_eq!((reply.status, reply.text()), (200, expected[which].clone()));
                }
            });
        }
    });
    assert!(started.elapsed() < Duration::from_secs(120), "400 requests took {:?}", started.elapsed());
    let metrics = get(&server.metrics, "/metrics").text();
    let value = |name: &str| -> f64 {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
    };
    assert_eq!(value(r#"mnist_requests_total{code="200",port="inference",route="/predictions/{model}"}"#), 402.0);
    let (batches, images_sum) =
        (value(r#"mnist_batch_size_count{model="mnist"}"#), value(r#"mnist_batch_size_sum{model="mnist"}"#));
    assert_eq!(images_sum, 402.0);
    assert!(
        batches < images_sum,
        "with one worker and 8 clients some requests share a forward pass ({batches} batches)"
    );
    assert!(server.stop().success());
}

/// k8s/serve.yaml's container run for real: its args start the server, its probes answer 200,
/// its ports are the binary's defaults, the Service, PDB and HPA point at the Deployment, and
/// SIGTERM ends it with 0 within the grace period.
#[test]
fn the_kubernetes_deployment_runs_as_written() {
    use yaml_rust2::{Yaml, YamlLoader};
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/serve.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let kind = |k: &str| docs.iter().find(|d| d["kind"].as_str() == Some(k)).unwrap_or_else(|| panic!("no {k}"));
    let deployment = kind("Deployment");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_vec().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "serve");
    assert!(!args.iter().any(|a| a.starts_with("--port") || a.starts_with("--host")), "the test sets these");
    let port = |name: &str| {
        let ports = container["ports"].as_vec().unwrap();
        ports.iter().find(|p| p["name"].as_str() == Some(name)).unwrap()["containerPort"].as_i64().unwrap()
    };
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_mnist")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    for (flag, name) in [("--port", "inference"), ("--metrics-port", "metrics")] {
        let at = help.find(&format!("{flag} <")).unwrap();
        let default = format!("[default: {}]", port(name));
        assert!(help[at..].find(&default).is_some_and(|d| d < 400), "{flag} default is not {default}");
    }
    for service_port in kind("Service")["spec"]["ports"].as_vec().unwrap() {
        port(service_port["targetPort"].as_str().unwrap());
    }
    assert_eq!(kind("Service")["spec"]["selector"], *labels);
    assert_eq!(kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], *labels);
    assert_eq!(kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"], *labels);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], Yaml::Boolean(true));
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], Yaml::Boolean(true));

    let mut server = Server::start_args(&args);
    for probe in ["readinessProbe", "livenessProbe"] {
        let http = &container[probe]["httpGet"];
        assert_eq!(http["port"].as_str(), Some("inference"));
        let reply = get(&server.inference, http["path"].as_str().unwrap());
        assert_eq!(reply.status, 200, "{probe}: {}", reply.text());
    }
    assert_eq!(post(&server.inference, "/predictions/mnist", &seven()).status, 200);
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(grace)).expect("exits within the grace period");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() >= Duration::from_secs(4), "--shutdown-delay keeps it serving for a while");
}

/// keras-mxnet's and Gluon's checkpoints (f16) loaded through `POST /models` answer as MXNet
/// 1.9.1 did for the same 8 images (fixtures/mxnet, 1e-5), through KServe v2 in one batch.
#[test]
fn keras_mxnet_and_gluon_checkpoints_are_served_as_mxnet_computes_them() {
    use mnist_core::codec::npy::{self, NpyData};
    let read = |name: &str| npy::read(&fixture(&format!("mxnet/{name}.npy"))).unwrap().data;
    let NpyData::U8(images) = read("images") else { panic!("images.npy is uint8") };
    let server = Server::start(&["--quiet"]);
    let data: Vec<String> = images.iter().map(u8::to_string).collect();
    let body = format!(
        r#"{{"inputs": [{{"name": "x", "shape": [8, 28, 28, 1], "datatype": "UINT8", "data": [{}]}}]}}"#,
        data.join(",")
    );
    for flavour in ["keras", "gluon"] {
        let prefix = format!("{}/mxnet/{flavour}_mnist_cnn", serve_support::FIXTURES);
        let load = request(&server.management, "POST", &format!("/models?url={prefix}&model_name={flavour}"), &[], b"");
        assert_eq!(load.status, 200, "{}", load.text());
        let reply = post(&server.inference, &format!("/v2/models/{flavour}/infer"), body.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.text());
        let ours: Vec<f64> =
            reply.json()["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let NpyData::F32(mxnet) = read(&format!("{flavour}_probs")) else { panic!("probs are float32") };
        assert_eq!(ours.len(), mxnet.len());
        for (i, (a, b)) in ours.iter().zip(&mxnet).enumerate() {
            assert!((a - f64::from(*b)).abs() <= 1e-5, "{flavour} [{i}]: ours {a}, MXNet {b}");
        }
    }
    assert!(server.stop().success());
}
