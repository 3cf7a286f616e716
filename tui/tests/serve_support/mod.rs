#![allow(dead_code)] // each test binary uses a different subset of these helpers
//! Helpers for the tests of `mnist serve` (serve.rs, serve_mms.rs): start the real binary on
//! loopback ports chosen by the OS, and a plain HTTP/1.1 client on TcpStream so the tests
//! control every byte (Expect: 100-continue, stalled bodies, lying headers).
//! Leaves out the assertions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A running `mnist serve` and the addresses it printed.
pub struct Server {
    child: Child,
    pub inference: String,
    pub management: String,
    pub metrics: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    ready: Option<std::sync::mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(ready) = &ready {
                if line.contains("listening:") {
                    let _ = ready.send(line.clone());
                }
            }
            lines.lock().unwrap().push(line);
        }
    });
}

impl Server {
    /// `mnist serve` on 127.0.0.1 with OS-chosen ports, plus `args`; waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        Server::start_args(&all)
    }

    /// `mnist ARGS` (starting with `serve`) plus loopback and OS-chosen ports.
    pub fn start_args(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mnist"))
            .args(args)
            .args(["--host", "127.0.0.1", "--port", "0", "--management-port", "0", "--metrics-port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mnist serve");
        let (stderr, stdout) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        collect(child.stderr.take().unwrap(), stderr.clone(), Some(ready_tx));
        collect(child.stdout.take().unwrap(), stdout.clone(), None);
        let Ok(line) = ready_rx.recv_timeout(Duration::from_secs(120)) else {
            let _ = child.kill();
            panic!("mnist serve did not start: {:?}", stderr.lock().unwrap());
        };
        let address = |what: &str| {
            let start = line.find(&format!("{what} http://"))? + what.len() + 8;
            line[start..].split([',', '/']).next().map(str::to_string)
        };
        let (Some(inference), Some(management), Some(metrics)) =
            (address("inference"), address("management"), address("metrics"))
        else {
            let _ = child.kill();
            panic!("no addresses in {line}");
        };
        Server { inference, management, metrics, child, stderr, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, and the exit status (the test fails if it takes more than 30 s).
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(30));
        status.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("mnist serve did not exit within 30 s of SIGTERM")
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

pub fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream
}

/// Reads one response (after any `100 Continue`) from a connection the server closes or that
/// carries a Content-Length.
pub fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // Skip interim 1xx responses.
        while data.starts_with(b"HTTP/1.1 1") {
            match find(&data, b"\r\n\r\n") {
                Some(end) => {
                    data.drain(..end + 4);
                }
                None => break,
            }
        }
        if let Some(end) = find(&data, b"\r\n\r\n").filter(|_| !data.starts_with(b"HTTP/1.1 1")) {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
                .collect();
            let length = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse::<usize>().unwrap());
            if let Some(length) = length {
                if data.len() >= end + 4 + length {
                    return Reply { status, headers, body: data[end + 4..end + 4 + length].to_vec() };
                }
            }
            let n = stream.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return Reply { status, headers, body: data[end + 4..].to_vec() };
            }
            data.extend_from_slice(&buf[..n]);
            continue;
        }
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading the reply: {e}; so far {:?}", String::from_utf8_lossy(&data)));
        assert!(n > 0, "the connection closed before a reply: {:?}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    }
}

fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    data.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request on a new connection (`Connection: close`) and reads the reply.
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = connect(address);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_reply(&mut stream)
}

pub fn get(address: &str, path: &str) -> Reply {
    request(address, "GET", path, &[], b"")
}

pub fn post(address: &str, path: &str, body: &[u8]) -> Reply {
    request(address, "POST", path, &[], body)
}

/// A multipart/form-data body with one file field.
pub fn multipart(field: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "mnist-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"x.png\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `Prediction is [7] with probability of 99.99%` -> ("[7]", 99.99).
pub fn parse_answer(text: &str) -> (String, f64) {
    let rest = text.strip_prefix("Prediction is ").unwrap_or_else(|| panic!("not a handler answer: {text:?}"));
    let (classes, rest) = rest.split_once(" with probability of ").unwrap();
    (classes.to_string(), rest.strip_suffix('%').unwrap().parse().unwrap())
}
