//! Tests of the fetch against a real HTTP server on 127.0.0.1 (test_server.rs), and of the
//! helpers and the renderer. Never contacts any other address; leaves out TLS.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::http::ContentRange;
use super::test_server::{Reply, Request, TestServer};
use super::*;

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mnist-download-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// 300 KB of deterministic bytes, different for each seed.
fn payload(seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Short time-outs and backoff so the whole module runs in a few seconds.
fn options(dir: &Path, urls: Vec<String>, payload: &[u8]) -> FetchOptions {
    FetchOptions {
        urls,
        expected: Expected { size: Some(payload.len() as u64), sha256: Some(sha256(payload)), md5: None },
        cache_dir: dir.join("cache"),
        file_name: "data.npz".to_string(),
        reuse: None,
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_millis(500),
        max_retries: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        use_env_proxy: false,
    }
}

fn run(opts: &FetchOptions) -> (Result<Fetched, FetchError>, Vec<ProgressEvent>) {
    let mut events = Vec::new();
    let result = fetch(opts, &mut |e| events.push(e));
    (result, events)
}

fn final_path(opts: &FetchOptions) -> PathBuf {
    opts.cache_dir.join(&opts.file_name)
}

fn part_path(opts: &FetchOptions) -> PathBuf {
    opts.cache_dir.join(format!("{}.part", opts.file_name))
}

fn plain_get(path: &str) -> Request {
    Request { path: path.to_string(), range: None }
}

#[test]
fn downloads_verifies_and_installs() {
    let dir = TempDir::new("success");
    let data = payload(1);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let (result, events) = run(&opts);
    let fetched = result.expect("download succeeds");

    assert_eq!(fetched.path, final_path(&opts));
    assert_eq!(fetched.source, Source::Downloaded { url: server.url("/data.npz") });
    assert_eq!(fetched.bytes, data.len() as u64);
    assert_eq!(fs::read(&fetched.path).expect("read result"), data);
    assert!(!part_path(&opts).exists(), "the .part file is renamed away");
    assert_eq!(server.requests(), vec![plain_get("/data.npz")]);
    assert_eq!(
        events.first(),
        Some(&ProgressEvent::Started { url: server.url("/data.npz"), total: Some(data.len() as u64) })
    );
    assert!(events.contains(&ProgressEvent::Bytes { done: data.len() as u64, total: Some(data.len() as u64) }));
    assert!(events.contains(&ProgressEvent::Verified { path: part_path(&opts) }));
    assert!(matches!(events.last(), Some(ProgressEvent::Done { source: Source::Downloaded { .. }, .. })));
}

#[test]
fn cache_hit_makes_no_request() {
    let dir = TempDir::new("cache-hit");
    let data = payload(2);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    run(&opts).0.expect("first fetch downloads");
    assert_eq!(server.requests().len(), 1);

    let (result, events) = run(&opts);
    let fetched = result.expect("second fetch uses the cache");

    assert_eq!(fetched.source, Source::Cache);
    assert_eq!(fetched.path, final_path(&opts));
    assert_eq!(server.requests().len(), 1, "a cache hit makes no request");
    assert_eq!(
        events,
        vec![
            ProgressEvent::Verified { path: final_path(&opts) },
            ProgressEvent::Done { path: final_path(&opts), source: Source::Cache, bytes: data.len() as u64 },
        ]
    );
}

#[test]
fn corrupt_cached_file_is_fetched_again() {
    let dir = TempDir::new("corrupt-cache");
    let data = payload(3);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    fs::create_dir_all(&opts.cache_dir).expect("mkdir");
    // Right size, wrong bytes: only the digest can tell.
    let mut corrupt = data.clone();
    corrupt[1000] ^= 0xff;
    fs::write(final_path(&opts), &corrupt).expect("write corrupt file");

    let (result, events) = run(&opts);

    assert!(matches!(result.expect("refetched").source, Source::Downloaded { .. }));
    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
    assert_eq!(server.requests().len(), 1);
    assert!(matches!(&events[0], ProgressEvent::Discarded { reason, .. } if reason.contains("sha256")));
}

#[test]
fn not_found_is_permanent_and_not_retried() {
    let dir = TempDir::new("404");
    let data = payload(4);
    let server = TestServer::start(data.clone(), |_, _| Reply::Status(404));
    let opts = options(&dir.0, vec![server.url("/missing.npz")], &data);

    let (result, events) = run(&opts);
    let error = result.expect_err("404 fails");

    assert!(matches!(error, FetchError::HttpStatus { status: 404, .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Permanent);
    assert_eq!(
        error.to_string(),
        format!("downloading {} failed: the server answered HTTP 404 Not Found", server.url("/missing.npz"))
    );
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");
    assert!(!events.iter().any(|e| matches!(e, ProgressEvent::Retrying { .. })));
    assert!(!final_path(&opts).exists());
    assert!(!part_path(&opts).exists());
}

#[test]
fn server_error_then_success_retries() {
    let dir = TempDir::new("500-then-ok");
    let data = payload(5);
    let server = TestServer::start(data.clone(), |n, _| if n == 0 { Reply::Status(500) } else { Reply::File });
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let (result, events) = run(&opts);

    assert!(matches!(result.expect("second attempt succeeds").source, Source::Downloaded { .. }));
    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
    assert_eq!(server.requests(), vec![plain_get("/data.npz"), plain_get("/data.npz")]);
    let retries: Vec<_> = events.iter().filter(|e| matches!(e, ProgressEvent::Retrying { .. })).collect();
    assert_eq!(retries.len(), 1);
    assert!(matches!(
        retries[0],
        ProgressEvent::Retrying { attempt: 2, attempts: 3, delay, reason, .. }
            if *delay == Duration::from_millis(10) && reason.contains("HTTP 500")
    ));
}

#[test]
fn server_errors_use_up_retries_and_are_transient() {
    let dir = TempDir::new("503");
    let data = payload(6);
    let server = TestServer::start(data.clone(), |_, _| Reply::Status(503));
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let (result, events) = run(&opts);
    let error = result.expect_err("always 503");

    assert!(matches!(error, FetchError::HttpStatus { status: 503, .. }));
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(server.requests().len(), 3, "1 attempt + 2 retries");
    let delays: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![Duration::from_millis(10), Duration::from_millis(20)], "doubling backoff");
    assert!(!final_path(&opts).exists());
}

#[test]
fn cut_mid_body_resumes_with_range() {
    let dir = TempDir::new("resume");
    let data = payload(7);
    let half = data.len() / 2;
    let server = TestServer::start(data.clone(), move |n, _| if n == 0 { Reply::Cut(half) } else { Reply::File });
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let (result, events) = run(&opts);

    assert!(matches!(result.expect("resumed").source, Source::Downloaded { .. }));
    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
    assert_eq!(
        server.requests(),
        vec![plain_get("/data.npz"), Request { path: "/data.npz".into(), range: Some(format!("bytes={half}-")) },]
    );
    assert!(events.contains(&ProgressEvent::Resumed {
        url: server.url("/data.npz"),
        offset: half as u64,
        total: Some(data.len() as u64),
    }));
    assert!(!part_path(&opts).exists());
}

#[test]
fn cut_then_range_ignored_starts_over() {
    let dir = TempDir::new("range-ignored");
    let data = payload(8);
    let server =
        TestServer::start(data.clone(), |n, _| if n == 0 { Reply::Cut(1000) } else { Reply::FileIgnoringRange });
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let (result, events) = run(&opts);

    result.expect("full restart succeeds");
    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
    assert_eq!(server.requests()[1].range.as_deref(), Some("bytes=1000-"));
    let starts = events.iter().filter(|e| matches!(e, ProgressEvent::Started { .. })).count();
    assert_eq!(starts, 2, "the 200 answer restarts from byte 0");
}

#[test]
fn cut_every_time_keeps_part_for_a_later_run() {
    let dir = TempDir::new("cut-always");
    let data = payload(9);
    let server = TestServer::start(data.clone(), |_, _| Reply::Cut(1000));
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let error = run(&opts).0.expect_err("never completes");

    assert!(matches!(error, FetchError::Network { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(
        error.to_string(),
        format!("downloading {} failed: the connection closed before the whole file arrived", server.url("/data.npz"))
    );
    assert_eq!(server.requests().len(), 3);
    assert!(!final_path(&opts).exists(), "nothing partial at the final path");
    // Each attempt resumed and added 1000 bytes; they wait in the .part for the next run.
    assert_eq!(fs::metadata(part_path(&opts)).expect("part kept").len(), 3000);
}

#[test]
fn leftover_part_from_an_earlier_run_is_resumed() {
    let dir = TempDir::new("leftover-part");
    let data = payload(10);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    fs::create_dir_all(&opts.cache_dir).expect("mkdir");
    fs::write(part_path(&opts), &data[..12_345]).expect("write part");

    run(&opts).0.expect("resumed");

    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
    assert_eq!(server.requests()[0].range.as_deref(), Some("bytes=12345-"));
}

#[test]
fn wrong_bytes_fail_after_retries_and_leave_nothing() {
    let dir = TempDir::new("wrong-hash");
    let data = payload(11);
    let wrong = payload(12);
    let server = TestServer::start(data.clone(), move |_, _| Reply::Bytes(wrong.clone()));
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let (result, _) = run(&opts);
    let error = result.expect_err("wrong file");

    assert!(matches!(error, FetchError::WrongFile { mismatch: Mismatch::Sha256 { .. }, .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Permanent);
    assert!(error
        .to_string()
        .starts_with(&format!("the file from {} is not the expected one", server.url("/data.npz"))));
    assert_eq!(server.requests().len(), 3, "retried: the bytes may have been mangled on the way");
    assert!(!final_path(&opts).exists());
    assert!(!part_path(&opts).exists());
    let leftovers: Vec<_> =
        fs::read_dir(&opts.cache_dir).expect("list cache").map(|e| e.unwrap().file_name()).collect();
    // The empty lock file stays, so that every process locks the same file.
    assert_eq!(leftovers, ["data.npz.lock"], "nothing else is left in the cache directory");
}

#[test]
fn stalled_server_times_out() {
    let dir = TempDir::new("stall");
    let data = payload(13);
    let server = TestServer::start(data.clone(), |_, _| Reply::Stall);
    let mut opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    opts.max_retries = 1;

    let started = Instant::now();
    let error = run(&opts).0.expect_err("stalls");
    let elapsed = started.elapsed();

    assert!(matches!(error, FetchError::TimedOut { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(
        error.to_string(),
        format!("downloading {} timed out: the server sent nothing for 500ms", server.url("/data.npz"))
    );
    assert_eq!(server.requests().len(), 2);
    // Two 0.5 s stalls plus a 10 ms backoff, well before the server's own 20 s.
    assert!(elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(!final_path(&opts).exists());
    assert!(!part_path(&opts).exists(), "no body byte arrived, so no part file");
}

#[test]
fn stall_mid_body_times_out_and_keeps_part() {
    // Headers and some bytes, then silence: the read time-out must fire mid-body too.
    let dir = TempDir::new("stall-body");
    let data = payload(14);
    let server = TestServer::start(data.clone(), |n, _| if n == 0 { Reply::Cut(5000) } else { Reply::Stall });
    let mut opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    opts.max_retries = 1;

    let error = run(&opts).0.expect_err("stalls on the retry");

    assert!(matches!(error, FetchError::TimedOut { .. }), "{error:?}");
    assert_eq!(server.requests()[1].range.as_deref(), Some("bytes=5000-"));
    assert_eq!(fs::metadata(part_path(&opts)).expect("part kept").len(), 5000);
    assert!(!final_path(&opts).exists());
}

#[test]
fn connection_refused_is_transient() {
    let dir = TempDir::new("refused");
    let data = payload(15);
    // A port that was just free: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}/data.npz");
    let mut opts = options(&dir.0, vec![url.clone()], &data);
    opts.max_retries = 0;

    let error = run(&opts).0.expect_err("refused");

    assert!(matches!(error, FetchError::Network { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert!(error.to_string().contains(&url));
}

#[test]
fn an_unresolvable_host_is_said_at_once_and_the_next_url_tried() {
    // The .invalid TLD never resolves (RFC 6761). Retried like a network error, this URL
    // used to cost 1 + 2 + 4 + 8 s of back-off here (4 retries, 30 s with the real settings).
    let dir = TempDir::new("dns");
    let data = payload(30);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let unresolvable = "http://nonexistent.invalid/data.npz".to_string();
    let mut opts = options(&dir.0, vec![unresolvable.clone(), server.url("/data.npz")], &data);
    (opts.max_retries, opts.backoff_base, opts.backoff_max) = (4, Duration::from_secs(1), Duration::from_secs(30));

    let started = Instant::now();
    let (result, events) = run(&opts);

    assert_eq!(result.expect("the second URL works").source, Source::Downloaded { url: server.url("/data.npz") });
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(!events.iter().any(|e| matches!(e, ProgressEvent::Retrying { .. })), "{events:?}");
    let said = events.iter().find_map(|e| match e {
        ProgressEvent::NextUrl { reason, next } => Some((reason.clone(), next.clone())),
        _ => None,
    });
    let (reason, next) = said.expect("a NextUrl event");
    assert!(reason.contains("the host name nonexistent.invalid does not resolve"), "{reason}");
    assert_eq!(next, server.url("/data.npz"));

    // Alone, it fails at once; a later run may find the network back, so it is transient.
    opts.urls = vec![unresolvable];
    opts.cache_dir = dir.0.join("cache2");
    let started = Instant::now();
    let error = fetch(&opts, &mut |_| {}).expect_err("cannot resolve");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(matches!(&error, FetchError::HostNotFound { host, .. } if host == "nonexistent.invalid"), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Transient);
}

/// Two fetches of one cache entry at once, each on its own thread (flock locks conflict
/// between separately opened files, within a process too), with their events.
fn fetch_twice_at_once(opts: &FetchOptions) -> Vec<(Result<Fetched, FetchError>, Vec<ProgressEvent>)> {
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let opts = opts.clone();
            std::thread::spawn(move || run(&opts))
        })
        .collect();
    runs.into_iter().map(|t| t.join().expect("no panic")).collect()
}

#[test]
fn two_fetches_into_one_cache_download_once_and_share_the_file() {
    let dir = TempDir::new("lock");
    let data = payload(31);
    // About a second for the body: the second fetch arrives while the first downloads.
    let slow = Reply::Slow { chunk: 16 * 1024, pause: Duration::from_millis(50) };
    let server = TestServer::start(data.clone(), move |_, _| slow.clone());
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let results = fetch_twice_at_once(&opts);

    assert_eq!(server.requests(), vec![plain_get("/data.npz")], "one download for both");
    let sources: Vec<Source> = results.iter().map(|(r, _)| r.as_ref().expect("both succeed").source.clone()).collect();
    assert!(sources.contains(&Source::Downloaded { url: server.url("/data.npz") }), "{sources:?}");
    assert!(sources.contains(&Source::Cache), "{sources:?}");
    let waited = results.iter().find(|(r, _)| r.as_ref().unwrap().source == Source::Cache).unwrap();
    assert!(waited.1.iter().any(|e| matches!(e, ProgressEvent::Waiting { .. })), "{:?}", waited.1);
    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
    assert!(!part_path(&opts).exists());
}

#[test]
fn a_waiting_fetch_downloads_itself_when_the_first_one_fails() {
    let dir = TempDir::new("lock-fail");
    let data = payload(32);
    // The first request (the lock holder's) gets a 404 after a while (within the read
    // time-out); later ones the file.
    let server = TestServer::start(data.clone(), |n, _| {
        if n == 0 {
            Reply::After(Duration::from_millis(300), Box::new(Reply::Status(404)))
        } else {
            Reply::File
        }
    });
    let opts = options(&dir.0, vec![server.url("/data.npz")], &data);

    let results = fetch_twice_at_once(&opts);

    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
    let failed = results.iter().filter(|(r, _)| matches!(r, Err(FetchError::HttpStatus { status: 404, .. }))).count();
    let (second, events) = results.iter().find(|(r, _)| r.is_ok()).expect("one succeeds");
    assert_eq!(failed, 1);
    assert_eq!(second.as_ref().unwrap().source, Source::Downloaded { url: server.url("/data.npz") });
    assert!(events.iter().any(|e| matches!(e, ProgressEvent::Waiting { .. })), "{events:?}");
    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
}

#[test]
fn second_url_is_used_when_the_first_fails() {
    let dir = TempDir::new("fallback");
    let data = payload(16);
    let server =
        TestServer::start(data.clone(), |_, r| if r.path == "/gone" { Reply::Status(404) } else { Reply::File });
    let opts = options(&dir.0, vec![server.url("/gone"), server.url("/mirror")], &data);

    let fetched = run(&opts).0.expect("mirror works");

    assert_eq!(fetched.source, Source::Downloaded { url: server.url("/mirror") });
    assert_eq!(server.requests(), vec![plain_get("/gone"), plain_get("/mirror")]);
}

#[test]
fn all_urls_failing_reports_each() {
    let dir = TempDir::new("all-fail");
    let data = payload(17);
    let server =
        TestServer::start(data.clone(), |_, r| if r.path == "/a" { Reply::Status(404) } else { Reply::Status(502) });
    let mut opts = options(&dir.0, vec![server.url("/a"), server.url("/b")], &data);
    opts.max_retries = 0;

    let error = run(&opts).0.expect_err("both fail");

    assert!(matches!(&error, FetchError::AllUrlsFailed { errors } if errors.len() == 2));
    // The mirror's 502 may pass, so another run later may succeed.
    assert_eq!(error.kind(), ErrorKind::Transient);
    let text = error.to_string();
    assert!(
        text.contains("/a failed: the server answered HTTP 404")
            && text.contains("/b failed: the server answered HTTP 502"),
        "{text}"
    );
}

#[test]
fn valid_keras_copy_is_used_in_place() {
    let dir = TempDir::new("keras-valid");
    let data = payload(18);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let mut opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    let keras = dir.0.join("keras-mnist.npz");
    fs::write(&keras, &data).expect("write keras copy");
    opts.reuse = Some(keras.clone());

    let fetched = run(&opts).0.expect("reused");

    assert_eq!(fetched, Fetched { path: keras, source: Source::Reused, bytes: data.len() as u64 });
    assert_eq!(server.requests().len(), 0);
    assert!(!opts.cache_dir.exists(), "nothing written to the cache");
}

#[test]
fn invalid_keras_copy_is_ignored_and_kept() {
    let dir = TempDir::new("keras-invalid");
    let data = payload(19);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let mut opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    let keras = dir.0.join("keras-mnist.npz");
    fs::write(&keras, b"not the file").expect("write keras copy");
    opts.reuse = Some(keras.clone());

    let fetched = run(&opts).0.expect("downloaded");

    assert!(matches!(fetched.source, Source::Downloaded { .. }));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(fs::read(&keras).expect("keras copy untouched"), b"not the file");
}

#[test]
fn without_a_digest_only_the_length_is_checked() {
    let dir = TempDir::new("no-digest");
    let data = payload(20);
    let server = TestServer::start(data.clone(), |_, _| Reply::File);
    let mut opts = options(&dir.0, vec![server.url("/data.npz")], &data);
    opts.expected = Expected::default();

    let (result, events) = run(&opts);

    result.expect("downloaded");
    assert_eq!(fs::read(final_path(&opts)).expect("read"), data);
    assert!(!events.iter().any(|e| matches!(e, ProgressEvent::Verified { .. })));
    // Without a digest the cached file is trusted, as Keras does without a hash.
    assert_eq!(run(&opts).0.expect("cached").source, Source::Cache);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn bad_options_are_permanent_and_make_no_request() {
    let dir = TempDir::new("bad-options");
    let data = payload(21);
    let mut opts = options(&dir.0, vec![], &data);
    assert!(matches!(run(&opts).0, Err(FetchError::BadArgument { .. })));
    opts.urls = vec!["http://127.0.0.1:1/x".into()];
    opts.file_name = "../escape.npz".into();
    let error = run(&opts).0.expect_err("bad file name");
    assert!(matches!(error, FetchError::BadArgument { .. }));
    assert_eq!(error.kind(), ErrorKind::Permanent);
    opts.file_name = "data.npz".into();
    opts.urls = vec!["not a url".into()];
    let error = run(&opts).0.expect_err("bad url");
    assert_eq!(error.kind(), ErrorKind::Permanent, "{error:?}");
}

#[test]
fn mnist_options_follow_the_flags() {
    let cache = PathBuf::from("/cache");
    let default = FetchOptions::mnist(cache.clone(), None, None);
    assert_eq!(default.urls, MNIST_URLS.to_vec());
    assert_eq!(default.expected, MNIST_EXPECTED);
    assert_eq!(default.file_name, "mnist.npz");

    // A mirror is expected to serve the same file.
    let mirror = FetchOptions::mnist(cache.clone(), Some("http://127.0.0.1:9/m.npz".into()), None);
    assert_eq!(mirror.urls, vec!["http://127.0.0.1:9/m.npz".to_string()]);
    assert_eq!(mirror.expected, MNIST_EXPECTED);

    // The known sha256 passed explicitly changes nothing; another one gets its own name.
    let same = FetchOptions::mnist(cache.clone(), None, MNIST_EXPECTED.sha256);
    assert_eq!((same.expected, same.file_name), (MNIST_EXPECTED, "mnist.npz".to_string()));
    let other = FetchOptions::mnist(cache, None, Some([0xab; 32]));
    assert_eq!(other.expected, Expected { size: None, sha256: Some([0xab; 32]), md5: None });
    assert_eq!(other.file_name, "mnist-abababababab.npz");
}

#[test]
fn known_digests_decode() {
    assert_eq!(
        to_hex(&MNIST_EXPECTED.sha256.expect("sha")),
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    );
    assert_eq!(to_hex(&MNIST_EXPECTED.md5.expect("md5")), "8a61469f7ea1b51cbae51d4f78837e45");
}

#[test]
fn md5_is_checked_too() {
    let dir = TempDir::new("md5");
    let path = dir.0.join("f");
    fs::write(&path, b"abc").expect("write");
    let md5_abc = verify::hex_digest::<16>("900150983cd24fb0d6963f7d28e17f72");
    let good = Expected { size: Some(3), sha256: None, md5: Some(md5_abc) };
    assert_eq!(verify::check_file(&path, &good).expect("read"), None);
    let bad = Expected { md5: Some([0; 16]), ..good.clone() };
    assert!(matches!(verify::check_file(&path, &bad).expect("read"), Some(Mismatch::Md5 { .. })));
    let short = Expected { size: Some(4), ..good };
    assert_eq!(verify::check_file(&path, &short).expect("read"), Some(Mismatch::Size { expected: 4, actual: 3 }));
}

#[test]
fn sha256_argument_parses() {
    let text = "731C5AC602752760C8E48FBFFCF8C3B850D9DC2A2AEDCF2CC48468FC17B673D1";
    assert_eq!(parse_sha256(&format!(" {text}\n")).ok(), MNIST_EXPECTED.sha256);
    assert!(parse_sha256("731c").is_err());
    assert!(parse_sha256(&"g".repeat(64)).is_err());
}

#[test]
fn content_range_parses() {
    assert_eq!(
        ContentRange::parse("bytes 100-999/1000"),
        Some(ContentRange { start: 100, end: 999, total: Some(1000) })
    );
    assert_eq!(ContentRange::parse("bytes 0-9/*"), Some(ContentRange { start: 0, end: 9, total: None }));
    assert_eq!(ContentRange::parse("bytes */1000"), Some(ContentRange { start: 0, end: 0, total: Some(1000) }));
    assert_eq!(ContentRange::parse("bytes 9-0/10"), None);
    assert_eq!(ContentRange::parse("items 0-9/10"), None);
    assert_eq!(ContentRange::parse("bytes x-9/10"), None);
}

#[test]
fn cache_dir_precedence() {
    let platform = Some(PathBuf::from("/home/u/.cache"));
    let flag = Path::new("/flag");
    assert_eq!(choose_cache_dir(Some(flag), Some("/env".into()), platform.clone()).ok(), Some(PathBuf::from("/flag")));
    assert_eq!(choose_cache_dir(None, Some("/env".into()), platform.clone()).ok(), Some(PathBuf::from("/env")));
    assert_eq!(
        choose_cache_dir(None, Some("".into()), platform.clone()).ok(),
        Some(PathBuf::from("/home/u/.cache/mnist"))
    );
    assert_eq!(choose_cache_dir(None, None, platform).ok(), Some(PathBuf::from("/home/u/.cache/mnist")));
    assert!(matches!(choose_cache_dir(None, None, None), Err(FetchError::BadArgument { .. })));
}

#[test]
fn plain_progress_is_a_few_lines_without_control_characters() {
    let mut renderer = ProgressRenderer::new(Vec::new(), false);
    let total = 1_000_000;
    renderer.handle(&ProgressEvent::Started { url: "http://127.0.0.1/m.npz".into(), total: Some(total) });
    for done in (0..=total).step_by(10_000) {
        renderer.handle(&ProgressEvent::Bytes { done, total: Some(total) });
    }
    renderer.handle(&ProgressEvent::Verified { path: "/c/m.npz".into() });
    renderer.handle(&ProgressEvent::Done {
        path: "/c/m.npz".into(),
        source: Source::Downloaded { url: "http://127.0.0.1/m.npz".into() },
        bytes: total,
    });
    let text = String::from_utf8(renderer.into_inner()).expect("utf-8");

    assert_eq!(
        text,
        "Downloading data from http://127.0.0.1/m.npz (1.0 MB)\n\
         Downloaded 25% (0.2 MB of 1.0 MB)\n\
         Downloaded 50% (0.5 MB of 1.0 MB)\n\
         Downloaded 75% (0.8 MB of 1.0 MB)\n\
         Saved /c/m.npz (1.0 MB)\n"
    );
}

#[test]
fn plain_progress_after_resume_skips_quarters_already_done() {
    let mut renderer = ProgressRenderer::new(Vec::new(), false);
    renderer.handle(&ProgressEvent::Resumed { url: "u".into(), offset: 600, total: Some(1000) });
    renderer.handle(&ProgressEvent::Bytes { done: 700, total: Some(1000) });
    renderer.handle(&ProgressEvent::Bytes { done: 800, total: Some(1000) });
    let text = String::from_utf8(renderer.into_inner()).expect("utf-8");
    assert_eq!(text, "Resuming u at 0.0 MB of 0.0 MB\nDownloaded 75% (0.0 MB of 0.0 MB)\n");
}

#[test]
fn bar_progress_redraws_at_most_ten_times_a_second() {
    let mut renderer = ProgressRenderer::new(Vec::new(), true);
    let total = 1_000_000;
    renderer.handle(&ProgressEvent::Started { url: "u".into(), total: Some(total) });
    for done in (1..=total).step_by(1000) {
        renderer.handle(&ProgressEvent::Bytes { done, total: Some(total) });
    }
    renderer.handle(&ProgressEvent::Bytes { done: total, total: Some(total) });
    renderer.handle(&ProgressEvent::Retrying {
        url: "u".into(),
        attempt: 2,
        attempts: 3,
        delay: Duration::from_millis(1500),
        reason: "cut".into(),
    });
    let text = String::from_utf8(renderer.into_inner()).expect("utf-8");

    // A thousand updates in well under 100 ms: the first draw and the final one.
    assert_eq!(text.matches('\r').count(), 2, "{text:?}");
    assert!(text.contains("100% 1.0 MB of 1.0 MB"), "{text:?}");
    // The bar line is ended before the next plain line.
    assert!(text.ends_with("\x1b[K\nRetrying u in 1.5s (attempt 2 of 3) after: cut\n"), "{text:?}");
}
