//! Gets the MNIST npz like Keras's `get_file`: a verified cached copy, else a valid Keras copy,
//! else a download (retries with backoff for what may pass, resume by Range, verify, atomic
//! rename), one process at a time per cache entry (a lock file beside it).
//! Leaves out reading the npz (core's codec) and the CLI flags (main.rs maps them here).

mod http;
mod progress;
mod verify;

#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

pub use progress::{ProgressEvent, ProgressRenderer};
pub use verify::{parse_sha256, to_hex, Expected, Mismatch};

/// The file Keras's `mnist.load_data()` reads, under its usual name.
pub const MNIST_FILE_NAME: &str = "mnist.npz";
/// Keras's origin first, then the mirror tf.keras uses; both serve the same file.
pub const MNIST_URLS: [&str; 2] = [
    "https://s3.amazonaws.com/img-datasets/mnist.npz",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
];
pub const MNIST_EXPECTED: Expected = Expected {
    size: Some(11_490_434),
    sha256: Some(verify::hex_digest("731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")),
    md5: Some(verify::hex_digest("8a61469f7ea1b51cbae51d4f78837e45")),
};
pub const CACHE_DIR_ENV: &str = "MNIST_CACHE_DIR";
/// How std's resolver errors begin.
const LOOKUP_FAILED: &str = "failed to lookup address information";
pub const DATA_URL_ENV: &str = "MNIST_DATA_URL";

/// What to fetch and how hard to try.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Tried in order; the next one is used when one fails for good or runs out of retries.
    pub urls: Vec<String>,
    /// What the file must be. Without a digest a cached file is trusted as it is (as Keras
    /// does without a hash) and a download is only checked against its announced length.
    pub expected: Expected,
    pub cache_dir: PathBuf,
    /// Name of the finished file in `cache_dir`; the partial one is `<file_name>.part`.
    pub file_name: String,
    /// A copy kept elsewhere (Keras's cache) that is used in place when it matches a digest
    /// of `expected`; never used without one, never deleted.
    pub reuse: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Longest wait for any bytes from the server: a stalled transfer fails after this.
    pub read_timeout: Duration,
    /// Extra attempts per URL after the first.
    pub max_retries: u32,
    /// Delay before the first retry; it doubles for each later one, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Honour `HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` (tests turn it off to stay on loopback).
    pub use_env_proxy: bool,
}

impl FetchOptions {
    /// The Keras MNIST file. `data_url` (`--data-url`) replaces the default URLs with a
    /// mirror expected to serve the same file; `sha256` (`--sha256`) replaces the known
    /// digest, and a file with another digest gets its own name so the two never clash.
    pub fn mnist(cache_dir: PathBuf, data_url: Option<String>, sha256: Option<[u8; 32]>) -> Self {
        let urls = match data_url {
            Some(url) => vec![url],
            None => MNIST_URLS.iter().map(|u| u.to_string()).collect(),
        };
        let (expected, file_name) = match sha256 {
            Some(sha256) if Some(sha256) != MNIST_EXPECTED.sha256 => (
                Expected { size: None, sha256: Some(sha256), md5: None },
                format!("mnist-{}.npz", &to_hex(&sha256)[..12]),
            ),
            _ => (MNIST_EXPECTED, MNIST_FILE_NAME.to_string()),
        };
        FetchOptions {
            urls,
            expected,
            cache_dir,
            file_name,
            reuse: keras_dataset_path(MNIST_FILE_NAME),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            max_retries: 4,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            use_env_proxy: true,
        }
    }
}

/// Where the file came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Already in the cache directory.
    Cache,
    /// The `reuse` copy (Keras's cache), used where it lies.
    Reused,
    Downloaded {
        url: String,
    },
}

/// A finished, checked file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub source: Source,
    pub bytes: u64,
}

/// Whether trying again later may help; the CLI maps the two to different exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retrying will not help: bad arguments, 404, a wrong file, a local disk problem.
    Permanent,
    /// The network or the server may recover: time-outs, cut connections, 5xx.
    Transient,
}

#[derive(Debug)]
pub enum FetchError {
    BadArgument {
        reason: String,
    },
    BadUrl {
        url: String,
        reason: String,
    },
    /// A status other than 200, or 206/416 to a Range request.
    HttpStatus {
        url: String,
        status: u16,
    },
    Network {
        url: String,
        reason: String,
    },
    /// The URL's host name does not resolve: asking again at once gives the same answer, so
    /// the next URL is tried without retries (a later run may find the network back).
    HostNotFound {
        url: String,
        host: String,
        reason: String,
    },
    TimedOut {
        url: String,
        reason: String,
    },
    /// An answer we cannot use, such as a 206 for the wrong range.
    BadResponse {
        url: String,
        reason: String,
    },
    /// The whole body arrived but it is not the expected file.
    WrongFile {
        url: String,
        mismatch: Mismatch,
    },
    /// A problem with the local file system (permissions, full disk).
    Local {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// More than one URL was tried; each one's error, in order.
    AllUrlsFailed {
        errors: Vec<FetchError>,
    },
}

impl FetchError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            FetchError::BadArgument { .. }
            | FetchError::BadUrl { .. }
            | FetchError::WrongFile { .. }
            | FetchError::Local { .. } => ErrorKind::Permanent,
            FetchError::Network { .. }
            | FetchError::HostNotFound { .. }
            | FetchError::TimedOut { .. }
            | FetchError::BadResponse { .. } => ErrorKind::Transient,
            FetchError::HttpStatus { status, .. } => {
                // Request timeout, too early, too many requests and server errors pass.
                if matches!(status, 408 | 425 | 429 | 500..=599) {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Permanent
                }
            }
            // Worth another go later if any URL might recover.
            FetchError::AllUrlsFailed { errors } => {
                if errors.iter().any(|e| e.kind() == ErrorKind::Transient) {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Permanent
                }
            }
        }
    }

    /// Whether another attempt at the same URL may succeed now. A wrong file is retried (it
    /// may have been mangled on the way) although it counts as permanent in the end.
    fn worth_retrying(&self) -> bool {
        match self {
            FetchError::WrongFile { .. } => true,
            // The resolver has already asked (and retried) itself: its answer stands for now.
            FetchError::HostNotFound { .. } => false,
            other => other.kind() == ErrorKind::Transient,
        }
    }

    fn local(action: &'static str, path: &Path, source: io::Error) -> FetchError {
        FetchError::Local { action, path: path.to_path_buf(), source }
    }

    /// Names the time-out that fired with its length, so a log says what to raise.
    fn from_ureq(url: &str, error: ureq::Error, opts: &FetchOptions) -> FetchError {
        let url = url.to_string();
        let stalled = || format!("the server sent nothing for {:?}", opts.read_timeout);
        let host = || url.parse::<ureq::http::Uri>().ok().and_then(|u| u.host().map(String::from)).unwrap_or_default();
        match error {
            ureq::Error::Timeout(ureq::Timeout::Resolve) => FetchError::TimedOut {
                reason: format!("the host name {} did not resolve within {:?}", host(), opts.connect_timeout),
                url,
            },
            ureq::Error::Timeout(ureq::Timeout::Connect) => {
                FetchError::TimedOut { url, reason: format!("no connection within {:?}", opts.connect_timeout) }
            }
            ureq::Error::Timeout(_) => FetchError::TimedOut { url, reason: stalled() },
            ureq::Error::Io(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                FetchError::TimedOut { url, reason: stalled() }
            }
            ureq::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                FetchError::Network { url, reason: "the connection closed before the whole file arrived".into() }
            }
            // std's wording for a getaddrinfo failure ("Name or service not known", "Temporary
            // failure in name resolution"); ureq passes it on as an I/O error.
            ureq::Error::Io(e) if e.to_string().starts_with(LOOKUP_FAILED) => {
                let reason = e.to_string()[LOOKUP_FAILED.len()..].trim_start_matches([':', ' ']).to_string();
                FetchError::HostNotFound { host: host(), url, reason }
            }
            ureq::Error::Io(e) => FetchError::Network { url, reason: e.to_string() },
            ureq::Error::BadUri(reason) => FetchError::BadUrl { url, reason },
            ureq::Error::Http(e) => FetchError::BadUrl { url, reason: e.to_string() },
            ureq::Error::TooManyRedirects => FetchError::BadUrl { url, reason: "too many redirects".into() },
            ureq::Error::Protocol(e) => FetchError::BadResponse { url, reason: e.to_string() },
            ureq::Error::HostNotFound => {
                FetchError::HostNotFound { host: host(), url, reason: "it has no address".into() }
            }
            e => FetchError::Network { url, reason: e.to_string() },
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadArgument { reason } => write!(f, "bad download setting: {reason}"),
            FetchError::BadUrl { url, reason } => write!(f, "cannot download {url}: {reason}"),
            FetchError::HttpStatus { url, status } => {
                let phrase = ureq::http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("unexpected status");
                write!(f, "downloading {url} failed: the server answered HTTP {status} {phrase}")
            }
            FetchError::Network { url, reason } => write!(f, "downloading {url} failed: {reason}"),
            FetchError::HostNotFound { url, host, reason } => {
                write!(f, "cannot download {url}: the host name {host} does not resolve ({reason})")
            }
            FetchError::TimedOut { url, reason } => {
                write!(f, "downloading {url} timed out: {reason}")
            }
            FetchError::BadResponse { url, reason } => {
                write!(f, "downloading {url} failed: {reason}")
            }
            FetchError::WrongFile { url, mismatch } => {
                write!(f, "the file from {url} is not the expected one: {mismatch}")
            }
            FetchError::Local { action, path, source } => {
                write!(f, "could not {action} {}: {source}", path.display())
            }
            FetchError::AllUrlsFailed { errors } => {
                write!(f, "every download URL failed: ")?;
                for (i, e) in errors.iter().enumerate() {
                    write!(f, "{}{e}", if i == 0 { "" } else { "; then " })?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Local { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The cache directory: `flag` (`--cache-dir`), else `$MNIST_CACHE_DIR`, else the platform's
/// cache directory plus `mnist` (`$XDG_CACHE_HOME/mnist` or `~/.cache/mnist` on Linux,
/// `~/Library/Caches/mnist` on macOS).
pub fn resolve_cache_dir(flag: Option<&Path>) -> Result<PathBuf, FetchError> {
    choose_cache_dir(flag, std::env::var_os(CACHE_DIR_ENV), dirs::cache_dir())
}

fn choose_cache_dir(
    flag: Option<&Path>,
    env: Option<OsString>,
    platform: Option<PathBuf>,
) -> Result<PathBuf, FetchError> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    // An empty variable counts as unset, as shells often leave it.
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    platform.map(|d| d.join("mnist")).ok_or_else(|| FetchError::BadArgument {
        reason: format!("no cache directory is known here; pass --cache-dir or set {CACHE_DIR_ENV}"),
    })
}

/// `--data-url` if given, else `$MNIST_DATA_URL` if set and not empty.
pub fn resolve_data_url(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var(DATA_URL_ENV).ok()).filter(|u| !u.is_empty())
}

/// Where Keras keeps a dataset: `$KERAS_HOME/datasets/<name>`, else `~/.keras/datasets/<name>`.
pub fn keras_dataset_path(file_name: &str) -> Option<PathBuf> {
    let home = match std::env::var_os("KERAS_HOME").filter(|h| !h.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::home_dir()?.join(".keras"),
    };
    Some(home.join("datasets").join(file_name))
}

/// Returns a checked file: from the cache, from `reuse`, or downloaded into the cache.
/// Nothing but a finished, checked file is ever put at the cache path.
pub fn fetch(opts: &FetchOptions, progress: &mut dyn FnMut(ProgressEvent)) -> Result<Fetched, FetchError> {
    check_options(opts)?;
    let final_path = opts.cache_dir.join(&opts.file_name);
    let part = opts.cache_dir.join(format!("{}.part", opts.file_name));

    // Without the lock: a finished file appears only by an atomic rename, so one that checks
    // out is complete. One that does not is left for the locked check below.
    if let Some(bytes) = use_cached(&final_path, &opts.expected, progress, false)? {
        return Ok(done(progress, final_path, Source::Cache, bytes));
    }
    if let Some(reuse) = opts.reuse.as_deref().filter(|_| opts.expected.has_digest()) {
        // Someone else's file: any problem with it just means we do not use it.
        if let Ok(None) = verify::check_file(reuse, &opts.expected) {
            progress(ProgressEvent::Verified { path: reuse.to_path_buf() });
            let bytes = fs::metadata(reuse).map(|m| m.len()).unwrap_or(0);
            return Ok(done(progress, reuse.to_path_buf(), Source::Reused, bytes));
        }
    }

    fs::create_dir_all(&opts.cache_dir).map_err(|e| FetchError::local("create", &opts.cache_dir, e))?;
    let _lock = lock_entry(opts, progress)?;
    // Another process may have installed the file while this one waited for the lock.
    if let Some(bytes) = use_cached(&final_path, &opts.expected, progress, true)? {
        return Ok(done(progress, final_path, Source::Cache, bytes));
    }
    // Without a digest, bytes kept from another run or URL could belong to another file.
    if !opts.expected.has_digest() {
        http::remove_if_present(&part)?;
    }
    let agent = http::agent(opts);
    let mut errors = Vec::new();
    for (i, url) in opts.urls.iter().enumerate() {
        match download(&agent, url, &part, opts, progress) {
            Ok(bytes) => {
                install(&part, &final_path, &opts.cache_dir)?;
                let source = Source::Downloaded { url: url.clone() };
                return Ok(done(progress, final_path, source, bytes));
            }
            // Another URL cannot fix the local disk.
            Err(e @ FetchError::Local { .. }) => return Err(e),
            Err(e) => {
                if let Some(next) = opts.urls.get(i + 1) {
                    progress(ProgressEvent::NextUrl { reason: e.to_string(), next: next.clone() });
                }
                errors.push(e);
            }
        }
        if !opts.expected.has_digest() {
            http::remove_if_present(&part)?;
        }
    }
    match errors.len() {
        1 => Err(errors.remove(0)),
        _ => Err(FetchError::AllUrlsFailed { errors }),
    }
}

fn check_options(opts: &FetchOptions) -> Result<(), FetchError> {
    let bad = |reason: String| Err(FetchError::BadArgument { reason });
    if opts.urls.is_empty() {
        return bad("no download URL was given".into());
    }
    // A bare name, so that the file and its .part stay inside the cache directory.
    let name = Path::new(&opts.file_name);
    if opts.file_name.is_empty() || name.file_name() != Some(name.as_os_str()) {
        return bad(format!("the cache file name {:?} must be a plain file name", opts.file_name));
    }
    Ok(())
}

/// Takes the cache entry's lock, `<file_name>.lock` beside it, waiting (and saying so) while
/// another process holds it: one process at a time checks, deletes, downloads and installs the
/// entry, so two never write one `.part` and a waiting one finds the other's finished file.
/// The OS drops the lock when its holder exits, even killed; the empty file stays (deleting it
/// would let two processes lock two different files). A file system without locks (some NFS
/// setups) just runs unlocked, as before there was a lock.
fn lock_entry(opts: &FetchOptions, progress: &mut dyn FnMut(ProgressEvent)) -> Result<Option<fs::File>, FetchError> {
    let path = opts.cache_dir.join(format!("{}.lock", opts.file_name));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| FetchError::local("create", &path, e))?;
    match file.try_lock() {
        Ok(()) => return Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(_)) => return Ok(None),
    }
    progress(ProgressEvent::Waiting { lock: path.clone() });
    match file.lock() {
        Ok(()) => Ok(Some(file)),
        Err(e) => Err(FetchError::local("lock", &path, e)),
    }
}

/// The length of a usable file at `path`, or `None`. A file failing its check is deleted
/// (and reported) only by the holder of the entry's lock; otherwise it is just not used.
fn use_cached(
    path: &Path,
    expected: &Expected,
    progress: &mut dyn FnMut(ProgressEvent),
    locked: bool,
) -> Result<Option<u64>, FetchError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FetchError::local("read", path, e)),
    };
    match verify::check_file(path, expected).map_err(|e| FetchError::local("read", path, e))? {
        None => {
            if expected.has_digest() {
                progress(ProgressEvent::Verified { path: path.to_path_buf() });
            }
            Ok(Some(meta.len()))
        }
        Some(mismatch) => {
            if locked {
                progress(ProgressEvent::Discarded { path: path.to_path_buf(), reason: mismatch.to_string() });
                http::remove_if_present(path)?;
            }
            Ok(None)
        }
    }
}

/// All attempts at one URL; returns the length of the checked `part`.
fn download(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<u64, FetchError> {
    let attempts = opts.max_retries.saturating_add(1);
    let mut attempt = 1;
    loop {
        match attempt_once(agent, url, part, opts, progress) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if attempt >= attempts || !e.worth_retrying() => return Err(e),
            Err(e) => {
                let delay = backoff(opts, attempt);
                attempt += 1;
                progress(ProgressEvent::Retrying {
                    url: url.to_string(),
                    attempt,
                    attempts,
                    delay,
                    reason: e.to_string(),
                });
                thread::sleep(delay);
            }
        }
    }
}

fn attempt_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<u64, FetchError> {
    let expected = &opts.expected;
    let bytes = http::receive(agent, url, part, opts, progress)?;
    match verify::check_file(part, expected).map_err(|e| FetchError::local("read", part, e))? {
        None => {
            if expected.has_digest() {
                progress(ProgressEvent::Verified { path: part.to_path_buf() });
            }
            Ok(bytes)
        }
        Some(mismatch) => {
            // Complete and wrong: resuming it could never help.
            http::remove_if_present(part)?;
            Err(FetchError::WrongFile { url: url.to_string(), mismatch })
        }
    }
}

/// `backoff_base * 2^(attempt - 1)`, at most `backoff_max`.
fn backoff(opts: &FetchOptions, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    opts.backoff_base.saturating_mul(factor).min(opts.backoff_max)
}

/// Moves the checked part into place: the rename is atomic, and the directory is synced so
/// the new name survives a crash.
fn install(part: &Path, final_path: &Path, dir: &Path) -> Result<(), FetchError> {
    fs::rename(part, final_path).map_err(|e| FetchError::local("rename into place", part, e))?;
    // The file itself was synced before its check; a failed directory sync only weakens
    // crash safety, so it is not an error (and directories cannot be opened on Windows).
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn done(progress: &mut dyn FnMut(ProgressEvent), path: PathBuf, source: Source, bytes: u64) -> Fetched {
    progress(ProgressEvent::Done { path: path.clone(), source: source.clone(), bytes });
    Fetched { path, source, bytes }
}
