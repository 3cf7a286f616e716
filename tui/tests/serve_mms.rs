//! `mnist serve` against what the real MXNet Model Server 1.1.11 answered, recorded by
//! fixtures/serve/make_mms_answers.sh for the same model (fixtures/model, the shipped one) and
//! the same 47 images: the same classes and probabilities (to 1e-6 relative) for every image MMS
//! could read, and MMS's exact bytes for /ping and its error bodies.
//! Leaves out running MMS itself (the script does; too heavy for every test run).

mod serve_support;

use serve_support::{fixture, get, parse_answer, post, request, Server};

fn recorded(file: &str) -> Vec<(String, Vec<String>)> {
    let text = String::from_utf8(fixture(&format!("serve/{file}"))).unwrap();
    text.lines().map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>()).map(|mut f| (f.remove(0), f)).collect()
}

fn json_string(text: &str) -> String {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn answers_match_real_mms_on_every_image_it_reads() {
    let server = Server::start(&["--quiet"]);
    let answers = recorded("mms_answers.tsv");
    assert!(answers.len() >= 30);
    let (mut compared, mut identical, mut worst) = (0, 0, 0.0f64);
    let mut mismatches = Vec::new();
    for (name, fields) in &answers {
        let (status, body) = (fields[0].as_str(), json_string(&fields[1]));
        let ours = post(&server.inference, "/predictions/mnist", &fixture(&format!("serve/images/{name}")));
        if status != "200" {
            // MXNet's OpenCV cannot read PNM (it answers 503 "Prediction failed"); we can.
            assert!(name.ends_with(".pgm") || name.ends_with(".ppm"), "MMS failed on {name}: {body}");
            assert_eq!(ours.status, 200, "{name}: {}", ours.text());
            continue;
        }
        assert_eq!(ours.status, 200, "{name}: {}", ours.text());
        assert_eq!(ours.header("content-type"), None, "MMS sends the sentence without a Content-Type");
        compared += 1;
        let (text, mms) = (ours.text(), body.as_str());
        if text == mms {
            identical += 1;
            continue;
        }
        let ((our_classes, our_p), (mms_classes, mms_p)) = (parse_answer(&text), parse_answer(mms));
        let relative = (our_p - mms_p).abs() / mms_p;
        worst = worst.max(relative);
        if our_classes != mms_classes || relative > 1e-6 {
            mismatches.push(format!("{name}: ours {text:?}, MMS {mms:?}"));
        }
    }
    println!(
        "{compared} images compared with MMS: {identical} bodies byte for byte identical, the others the same classes \
         with probabilities at most {worst:.2e} apart (relative)"
    );
    assert!(compared >= 30);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn ping_and_error_bodies_are_mms_bytes() {
    let server = Server::start(&["--quiet"]);
    let contract: std::collections::HashMap<String, String> =
        recorded("mms_contract.txt").into_iter().map(|(k, v)| (k, json_string(&v[0]))).collect();
    let seven = fixture("serve/images/7.png");
    let ping = get(&server.inference, "/ping");
    assert_eq!((ping.status, ping.text()), (200, contract["ping"].clone()));
    let missing = post(&server.inference, "/predictions/nope", &seven);
    assert_eq!((missing.status, missing.text()), (404, contract["unknown_model"].clone()));
    let unknown = get(&server.inference, "/nothere");
    assert_eq!((unknown.status, unknown.text()), (404, contract["unknown_path"].clone()));
    let no_url = request(&server.management, "POST", "/models", &[], b"");
    assert_eq!((no_url.status, no_url.text()), (400, contract["register_without_url"].clone()));
    // Same layout; our model's URL is where it came from ("shipped"), MMS's its archive.
    let models = get(&server.management, "/models");
    assert_eq!(models.text(), contract["list_models"].replace("mnist_cnn.mar", "shipped"));
    // Where MMS answers 503 "Prediction failed" for bytes that are not an image, we answer
    // 400 in MMS's shape, naming the problem: it is the client's error, and retrying won't help.
    let hello = post(&server.inference, "/predictions/mnist", b"hello");
    let mms: serde_json::Value = serde_json::from_str(&contract["not_an_image"]).unwrap();
    assert_eq!(mms["code"], 503);
    assert_eq!(hello.status, 400);
    let ours = hello.json();
    assert_eq!(ours["type"], "BadRequestException");
    assert!(ours["message"].as_str().unwrap().contains("not a PNG, JPEG or PNM"), "{ours}");
}
