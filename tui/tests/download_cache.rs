//! End-to-end: the real binary downloading through a scripted local server
//! (tui/src/download/test_server.rs): two trainers filling one cache at once share one
//! download through the cache entry's lock (also when the first one fails), and a host name
//! that does not resolve fails at once, without back-off. Leaves out the fetch's own cases
//! (tui/src/download/tests.rs).

mod common;
#[allow(dead_code)] // the binary's tests use other parts of it
#[path = "../src/download/test_server.rs"]
mod test_server;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{synthetic_npz, temp_dir};
use sha2::Digest;
use test_server::{Reply, TestServer};

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `mnist train` on a 64-sample slice of what `url` serves, into `cache`, started, not waited for.
fn start_train(url: &str, sha: &str, cache: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(["train", "--data-url", url, "--sha256", sha, "--cache-dir", cache.to_str().unwrap()])
        .args(["--limit", "64", "--epochs", "1", "--backend", "cpu", "--out-dir", out.to_str().unwrap()])
        .env_remove("MNIST_DATA_URL")
        .env("MNIST_TERMINATION_LOG", "/nonexistent/termination-log")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `n` trainers started together; returns their outputs.
fn train_at_once(n: usize, url: &str, sha: &str, cache: &Path, dir: &Path) -> Vec<Output> {
    let children: Vec<Child> = (0..n).map(|i| start_train(url, sha, cache, &dir.join(format!("out{i}")))).collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// k8s/sweep.yaml's `parallelism`: that many pods share its cache volume at once.
fn sweep_parallelism() -> usize {
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/sweep.yaml")).unwrap();
    let line = yaml.lines().find_map(|l| l.trim().strip_prefix("parallelism:")).expect("sweep.yaml sets parallelism");
    line.trim().parse().unwrap()
}

#[test]
fn trainers_filling_one_cache_at_once_download_once() {
    let dir = temp_dir("lock-e2e");
    let body = synthetic_npz(256, 64);
    let sha = sha256_hex(&body);
    // About 2 s for the body, so the second process comes while the first downloads.
    let chunk = body.len() / 40 + 1;
    let server = TestServer::start(body.clone(), move |_, _| Reply::Slow { chunk, pause: Duration::from_millis(50) });
    let cache = dir.join("cache");

    // As many as the sweep runs at once on its shared volume (at least two).
    let n = sweep_parallelism().max(2);
    let outputs = train_at_once(n, &server.url("/mnist.npz"), &sha, &cache, &dir);

    for o in &outputs {
        assert!(o.status.success(), "{}", describe(o));
    }
    assert_eq!(server.requests().len(), 1, "one download for all {n}: {:?}", server.requests());
    let downloaded = outputs.iter().filter(|o| text(&o.stdout).contains("(downloaded from")).count();
    let waited: Vec<&Output> = outputs.iter().filter(|o| text(&o.stdout).contains("(cached)")).collect();
    let all: Vec<String> = outputs.iter().map(describe).collect();
    assert_eq!((downloaded, waited.len()), (1, n - 1), "{}", all.join("\n"));
    for o in waited {
        assert!(text(&o.stderr).contains("Waiting for another process downloading into the cache"), "{}", describe(o));
    }
    let file = format!("mnist-{}.npz", &sha[..12]);
    assert_eq!(listing(&cache), [file.clone(), format!("{file}.lock")]);
    assert_eq!(std::fs::read(cache.join(&file)).unwrap(), body);
    for i in 0..n {
        assert!(dir.join(format!("out{i}/mnist_cnn-0000.params")).is_file(), "trainer {i} wrote its model");
    }
}

#[test]
fn a_waiting_trainer_downloads_itself_when_the_first_one_fails() {
    let dir = temp_dir("lock-e2e-fail");
    let body = synthetic_npz(256, 64);
    let sha = sha256_hex(&body);
    // The lock holder's request gets a 404 after a second (retrying will not help); the next
    // request, the waiting trainer's own, gets the file.
    let server = TestServer::start(body.clone(), |n, _| {
        if n == 0 {
            Reply::After(Duration::from_secs(1), Box::new(Reply::Status(404)))
        } else {
            Reply::File
        }
    });
    let cache = dir.join("cache");

    let outputs = train_at_once(2, &server.url("/mnist.npz"), &sha, &cache, &dir);

    let codes: Vec<Option<i32>> = outputs.iter().map(|o| o.status.code()).collect();
    assert!(
        codes.contains(&Some(2)) && codes.contains(&Some(0)),
        "{}\n{}",
        describe(&outputs[0]),
        describe(&outputs[1])
    );
    let failed = outputs.iter().find(|o| o.status.code() == Some(2)).unwrap();
    let second = outputs.iter().find(|o| o.status.success()).unwrap();
    assert!(text(&failed.stderr).contains("HTTP 404"), "{}", describe(failed));
    assert!(text(&second.stderr).contains("Waiting for another process"), "{}", describe(second));
    assert!(text(&second.stdout).contains("(downloaded from"), "{}", describe(second));
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
}

#[test]
fn an_unresolvable_host_fails_at_once_with_a_clear_sentence() {
    // Retried as a network error, this took 1 + 2 + 4 + 8 s of back-off (4 retries) per URL.
    let dir = temp_dir("dns-e2e");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(["train", "--data-url", "http://nonexistent.invalid/mnist.npz"])
        .args(["--cache-dir", dir.join("cache").to_str().unwrap(), "--out-dir", dir.to_str().unwrap()])
        .env_remove("MNIST_DATA_URL")
        .env("MNIST_TERMINATION_LOG", "/nonexistent/termination-log")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(stderr.contains("the host name nonexistent.invalid does not resolve"), "{stderr}");
    assert!(!stderr.contains("Retrying"), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}
