//! A scripted HTTP/1.1 server on 127.0.0.1 for the download tests (also the binary's, in
//! tui/tests/download_cache.rs): a thread per connection, one GET per connection, every request
//! recorded. Leaves out keep-alive and chunked bodies.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The payload; a `Range: bytes=N-` gets 206 (or 416 past the end).
    File,
    /// The whole payload with 200, whatever the Range.
    FileIgnoringRange,
    /// This status with a short text body.
    Status(u16),
    /// Headers as for `File`, then only this many body bytes, then the socket is closed.
    Cut(usize),
    /// These bytes with 200 instead of the payload.
    Bytes(Vec<u8>),
    /// Reads the request and sends nothing until the server is dropped.
    Stall,
    /// As `File`, but the body in pieces of `chunk` bytes with `pause` after each: a slow link.
    Slow { chunk: usize, pause: Duration },
    /// Waits, then replies as the inner reply does (a slow server's headers).
    After(Duration, Box<Reply>),
}

type Script = dyn Fn(usize, &Request) -> Reply + Send + Sync;

pub struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves `payload`; `script(n, request)` picks the reply to the n-th request (from 0).
    pub fn start(payload: Vec<u8>, script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let payload: Arc<[u8]> = payload.into();
        let script: Arc<Script> = Arc::new(script);
        let accept_thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, stop, payload, script) =
                        (requests.clone(), stop.clone(), payload.clone(), script.clone());
                    thread::spawn(move || serve(stream, &requests, &stop, &payload, &*script));
                }
            })
        };
        TestServer { addr, requests, stop, accept_thread: Some(accept_thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, requests: &Mutex<Vec<Request>>, stop: &AtomicBool, payload: &[u8], script: &Script) {
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let index = {
        let mut seen = requests.lock().expect("requests lock");
        seen.push(request.clone());
        seen.len() - 1
    };
    let reply = script(index, &request);
    let start = request
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let _ = send(&mut stream, reply, stop, payload, start);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn send(
    stream: &mut TcpStream,
    reply: Reply,
    stop: &AtomicBool,
    payload: &[u8],
    start: Option<usize>,
) -> std::io::Result<()> {
    match reply {
        Reply::File => send_file(stream, payload, start, None),
        Reply::Cut(n) => send_file(stream, payload, start, Some(n)),
        Reply::FileIgnoringRange => send_file(stream, payload, None, None),
        Reply::Bytes(bytes) => send_file(stream, &bytes, None, None),
        Reply::Slow { chunk, pause } => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", payload.len())?;
            for piece in payload.chunks(chunk.max(1)) {
                stream.write_all(piece)?;
                stream.flush()?;
                thread::sleep(pause);
            }
            Ok(())
        }
        Reply::After(wait, then) => {
            thread::sleep(wait);
            send(stream, *then, stop, payload, start)
        }
        Reply::Status(status) => {
            let body = format!("status {status}\n");
            write!(
                stream,
                "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Reply::Stall => {
            let until = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        }
    }
}

/// Sends `payload` from `start` (206 when a range was asked); with `cut`, only that many
/// body bytes follow the headers.
fn send_file(stream: &mut TcpStream, payload: &[u8], start: Option<usize>, cut: Option<usize>) -> std::io::Result<()> {
    let len = payload.len();
    let body = match start {
        Some(s) if s >= len => {
            return write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Some(s) => {
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            )?;
            &payload[s..]
        }
        None => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
            payload
        }
    };
    let body = &body[..cut.unwrap_or(body.len()).min(body.len())];
    stream.write_all(body)
}

/// Reads up to the blank line; `None` for anything that is not a GET.
fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    if first.next()? != "GET" {
        return None;
    }
    let path = first.next()?.to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("range"))
        .map(|(_, value)| value.trim().to_string());
    Some(Request { path, range })
}
