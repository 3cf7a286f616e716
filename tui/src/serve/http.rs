//! What every route shares: reading a request body within the size and time limits (raw, or
//! a multipart field as MMS takes it), MMS-shaped and compact JSON answers, and the middleware
//! that counts, times and logs each request (one line, or none with --quiet).
//! Leaves out the routes themselves (mms.rs, kserve.rs).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::metrics::Metrics;
use crate::cli::LogFormat;

/// A request that gets an error answer instead: its status, a sentence saying why and, for an
/// overloaded server, when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Rejection {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Rejection {
        Rejection { status, message: message.into(), retry_after: None }
    }

    /// 503 with Retry-After: the server is busy, not broken.
    pub fn overloaded(message: impl Into<String>) -> Rejection {
        Rejection { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into(), retry_after: Some(1) }
    }
}

/// How much of a body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// Reads the whole body: 413 past `max_bytes` (told by Content-Length before anything is read,
/// so a `curl -T` of a huge file gets no `100 Continue`), 408 when it takes longer than
/// `timeout` (a slow client), 400 when the connection breaks.
pub async fn read_body(body: Body, content_length: Option<u64>, limits: BodyLimits) -> Result<Bytes, Rejection> {
    let too_large =
        || Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {} bytes", limits.max_bytes));
    if content_length.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(limits.timeout, Limited::new(body, limits.max_bytes).collect()).await {
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", limits.timeout.as_secs_f64()),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Rejection::new(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The multipart fields MMS hands the sample's handler, in the order it looks for them.
const IMAGE_FIELDS: [&str; 3] = ["/conv2d_1_input1", "body", "data"];

/// The image of an MMS request: the raw body, or of a multipart/form-data body the field
/// `data` (or `body`, or the model's input name).
pub async fn image_of(request: Request, limits: BodyLimits) -> Result<Bytes, Rejection> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    let length = content_length(&request);
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, length, limits).await?;
    if !is_multipart {
        if bytes.is_empty() {
            return Err(Rejection::new(StatusCode::BAD_REQUEST, "the request has no body: send the image as the body"));
        }
        return Ok(bytes);
    }
    let bad = |e: axum::extract::multipart::MultipartError| {
        Rejection::new(StatusCode::BAD_REQUEST, format!("cannot read the multipart body: {}", e.body_text()))
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    let mut form = axum::extract::Multipart::from_request(request, &()).await.map_err(|e| {
        Rejection::new(StatusCode::BAD_REQUEST, format!("cannot read the multipart body: {}", e.body_text()))
    })?;
    let mut found: Vec<(usize, Bytes)> = Vec::new();
    let mut names = Vec::new();
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        let rank = IMAGE_FIELDS.iter().position(|f| *f == name);
        let data = field.bytes().await.map_err(bad)?;
        match rank {
            Some(rank) => found.push((rank, data)),
            None => names.push(name),
        }
    }
    found.sort_by_key(|(rank, _)| *rank);
    match found.into_iter().next() {
        Some((_, data)) if !data.is_empty() => Ok(data),
        Some(_) => Err(Rejection::new(StatusCode::BAD_REQUEST, "the multipart field with the image is empty")),
        None => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("the multipart body has no field named data (it has: {})", names.join(", ")),
        )),
    }
}

pub fn content_length(request: &Request) -> Option<u64> {
    request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// MMS's JSON: pretty-printed with two spaces, a newline at the end.
pub fn pretty_json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    with_type(status, text.into_bytes(), "application/json")
}

/// Compact JSON (KServe v2 and the convenience routes).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    with_type(status, value.to_string().into_bytes(), "application/json")
}

pub fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// MMS's error body, field order kept: `{"code": 404, "type": "ModelNotFoundException",
/// "message": "Model not found: x"}`, pretty-printed.
pub fn mms_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let text = format!(
        "{{\n  \"code\": {},\n  \"type\": {},\n  \"message\": {}\n}}\n",
        status.as_u16(),
        serde_json::Value::from(kind),
        serde_json::Value::from(message)
    );
    with_type(status, text.into_bytes(), "application/json")
}

/// The MMS exception name for a status.
pub fn mms_kind(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "ModelNotFoundException",
        StatusCode::CONFLICT => "ConflictStatusException",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLargeException",
        StatusCode::REQUEST_TIMEOUT => "RequestTimeoutException",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailableException",
        StatusCode::INTERNAL_SERVER_ERROR => "InternalServerException",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowedException",
        _ => "BadRequestException",
    }
}

/// A 503 that tells the client when to come back.
pub fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// What the tracking middleware needs: which port it watches, the metrics, the log settings.
pub struct Tracking {
    pub port: &'static str,
    pub metrics: Arc<Metrics>,
    pub log: Option<LogFormat>,
}

/// Counts and times every request by its route (the matched path, e.g.
/// `/predictions/{model}`) and writes one log line for it unless logging is off.
pub async fn track(State(tracking): State<Arc<Tracking>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracking.metrics.observe_request(tracking.port, &route, status, elapsed);
    if let Some(format) = tracking.log {
        let ms = elapsed.as_secs_f64() * 1e3;
        let line = match format {
            LogFormat::Text => format!("{method} {path} {status} {ms:.2}ms"),
            LogFormat::Json => {
                let time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
                serde_json::json!({
                    "event": "request", "time": (time * 1e3).round() / 1e3, "port": tracking.port,
                    "method": method.as_str(), "path": path, "route": route, "status": status,
                    "ms": (ms * 1e3).round() / 1e3,
                })
                .to_string()
            }
        };
        // One write per line, so lines from concurrent requests never interleave.
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(format!("{line}\n").as_bytes());
    }
    response
}
