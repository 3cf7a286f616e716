//! One HTTP attempt: GET the URL into the partial file, resuming with `Range` when part of it
//! is already there. Leaves out retries, verification and installing the file (download.rs).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use ureq::http::header::{ACCEPT_ENCODING, CONTENT_RANGE, RANGE};
use ureq::{Agent, Proxy};

use super::{FetchError, FetchOptions, ProgressEvent};

/// An agent with the fetch's time-outs. Statuses are read, not turned into errors, so that
/// 404 and 503 can be told apart.
pub(super) fn agent(opts: &FetchOptions) -> Agent {
    let proxy = if opts.use_env_proxy { Proxy::try_from_env() } else { None };
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(opts.connect_timeout))
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_send_request(Some(opts.read_timeout))
        // Per read, so a slow but moving download is fine and a stalled one is not.
        .timeout_per_read(Some(opts.read_timeout))
        .user_agent(concat!("mnist/", env!("CARGO_PKG_VERSION")))
        .proxy(proxy)
        .build()
        .new_agent()
}

/// Brings `part` up to the whole file from `url` and returns its length. On a cut or
/// time-out mid-body the bytes received stay in `part` for the next attempt to resume.
pub(super) fn receive(
    agent: &Agent,
    url: &str,
    part: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<u64, FetchError> {
    let mut offset = match fs::metadata(part) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(FetchError::local("read", part, e)),
    };
    if let Some(size) = opts.expected.size {
        if offset == size {
            // Complete but not installed (an earlier run stopped before the rename).
            return Ok(offset);
        }
        if offset > size {
            remove_if_present(part)?;
            offset = 0;
        }
    }

    // Identity encoding: byte offsets must be offsets into the file itself.
    let mut request = agent.get(url).header(ACCEPT_ENCODING, "identity");
    if offset > 0 {
        request = request.header(RANGE, format!("bytes={offset}-"));
    }
    let response = request.call().map_err(|e| FetchError::from_ureq(url, e, opts))?;
    let status = response.status().as_u16();
    let content_range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).map(ContentRange::parse);

    let (mut file, start, total) = match status {
        200 => {
            // A full body, also when the server ignored our Range: start over.
            let total = response.body().content_length();
            let file = File::create(part).map_err(|e| FetchError::local("create", part, e))?;
            progress(ProgressEvent::Started { url: url.to_string(), total });
            (file, 0, total)
        }
        206 if offset > 0 => match content_range {
            Some(Some(range)) if range.start == offset && range.fits() => {
                let file =
                    OpenOptions::new().append(true).open(part).map_err(|e| FetchError::local("open", part, e))?;
                progress(ProgressEvent::Resumed { url: url.to_string(), offset, total: range.total });
                (file, offset, range.total)
            }
            _ => {
                remove_if_present(part)?;
                return Err(FetchError::BadResponse {
                    url: url.to_string(),
                    reason: format!("a 206 answer to bytes={offset}- came with an unusable Content-Range"),
                });
            }
        },
        416 if offset > 0 => {
            // `bytes */N` with N == offset: the part is already whole.
            if let Some(Some(ContentRange { total: Some(total), .. })) = content_range {
                if total == offset {
                    return Ok(offset);
                }
            }
            remove_if_present(part)?;
            return Err(FetchError::BadResponse {
                url: url.to_string(),
                reason: format!("the server refused to resume at byte {offset}"),
            });
        }
        _ => return Err(FetchError::HttpStatus { url: url.to_string(), status }),
    };

    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = start;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FetchError::from_ureq(url, ureq::Error::from(e), opts)),
        };
        file.write_all(&buf[..n]).map_err(|e| FetchError::local("write", part, e))?;
        done += n as u64;
        progress(ProgressEvent::Bytes { done, total });
    }
    // ureq already fails a body shorter than its Content-Length; this covers a 206 whose
    // Content-Range promised more than the body held.
    if let Some(total) = total {
        if done < total {
            return Err(FetchError::Network {
                url: url.to_string(),
                reason: format!("the connection ended after {done} of {total} bytes"),
            });
        }
    }
    file.sync_all().map_err(|e| FetchError::local("sync", part, e))?;
    Ok(done)
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), FetchError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FetchError::local("delete", path, e)),
    }
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`), or `bytes */TOTAL` on a 416.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

impl ContentRange {
    /// `None` when the header is not of that form. For `bytes */N`, start and end are 0.
    pub fn parse(text: &str) -> Option<ContentRange> {
        let rest = text.trim().strip_prefix("bytes")?.trim_start();
        let (range, total) = rest.split_once('/')?;
        let total = match total.trim() {
            "*" => None,
            n => Some(n.parse().ok()?),
        };
        if range.trim() == "*" {
            return total.map(|total| ContentRange { start: 0, end: 0, total: Some(total) });
        }
        let (start, end) = range.split_once('-')?;
        let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
        (start <= end).then_some(ContentRange { start, end, total })
    }

    /// A range we can append: it runs to the end of the file.
    fn fits(&self) -> bool {
        self.total.is_none_or(|total| self.end + 1 == total)
    }
}
