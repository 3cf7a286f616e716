//! The MXNet Model Server (MMS 1.1) contract of the sample: on the inference port `GET /ping`
//! and `POST /predictions/{model}` answering the sample handler's exact sentence, plus a JSON
//! convenience route `POST /classify/{model}`; on the management port `GET /models`,
//! `GET /models/{m}`, `POST /models?url=PREFIX` and `DELETE /models/{m}`.
//! Leaves out KServe v2 (kserve.rs) and the plumbing (mod.rs, http.rs).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::batcher::{Input, Preparation};
use super::http::{self, mms_error, mms_kind, pretty_json, Rejection};
use super::{LoadRequest, Server};

/// Routes of the inference port that MMS has (KServe's are added in mod.rs).
pub fn inference_routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/ping", get(ping).post(ping))
        .route("/predictions/{model}", post(predictions).put(predictions).get(predictions))
        .route("/classify/{model}", post(classify).put(classify))
}

pub fn management_routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/models", get(list_models).post(register))
        .route("/models/{model}", get(describe).delete(unregister))
        .fallback(not_found)
}

/// MMS's answer to a path it has no route for.
pub async fn not_found() -> Response {
    mms_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        "Requested resource is not found, please refer to API document.",
    )
}

async fn ping() -> Response {
    pretty_json(StatusCode::OK, &json!({ "status": "Healthy" }))
}

fn rejected(rejection: Rejection) -> Response {
    let response = mms_error(rejection.status, mms_kind(rejection.status), &rejection.message);
    match rejection.retry_after {
        Some(seconds) => http::with_retry_after(response, seconds),
        None => response,
    }
}

/// The sample's route: the image as the body (`curl -T`) or as the multipart field `data`;
/// the answer is the handler's sentence as the body, with no Content-Type, as MMS sends it.
async fn predictions(State(server): State<Arc<Server>>, Path(model): Path<String>, request: Request) -> Response {
    match classify_image(&server, &model, request, Preparation::Handler).await {
        Ok(probs) => Response::new(Body::from(handler_answer(&probs))),
        Err(rejection) => rejected(rejection),
    }
}

#[derive(serde::Deserialize)]
struct ClassifyQuery {
    mnist_style: Option<bool>,
}

/// The convenience route: `{"model", "class", "probability", "probabilities"}` (the class and
/// probabilities `mnist predict --json` gives); `?mnist_style=true` prepares photos and
/// dark-on-light drawings as `mnist predict --mnist-style` does.
async fn classify(
    State(server): State<Arc<Server>>,
    Path(model): Path<String>,
    Query(query): Query<ClassifyQuery>,
    request: Request,
) -> Response {
    let preparation = if query.mnist_style.unwrap_or(false) { Preparation::MnistStyle } else { Preparation::Handler };
    match classify_image(&server, &model, request, preparation).await {
        Ok(probs) => {
            let best = (0..probs.len()).fold(0, |best, c| if probs[c] > probs[best] { c } else { best });
            let all: Vec<f64> = probs.iter().map(|&p| super::short(p)).collect();
            http::json(
                StatusCode::OK,
                &json!({ "model": model, "class": best, "probability": super::short(probs[best]), "probabilities": all }),
            )
        }
        Err(rejection) => {
            let response = http::json(rejection.status, &json!({ "error": rejection.message }));
            match rejection.retry_after {
                Some(seconds) => http::with_retry_after(response, seconds),
                None => response,
            }
        }
    }
}

/// Admission, the body, then the model's queue.
async fn classify_image(
    server: &Server,
    model: &str,
    request: Request,
    preparation: Preparation,
) -> Result<Vec<f32>, Rejection> {
    let entry = server.model(model)?;
    let _admitted = server.admit()?;
    let bytes = http::image_of(request, server.body_limits()).await?;
    server.infer(&entry, Input::Image { bytes, preparation }).await
}

/// `Prediction is [7] with probability of 99.84009861946106%`: every class tied for the most
/// probable, and that probability (the f32 widened to f64) times 100 as Python's `repr` prints
/// it, as the sample's handler formats `m.asscalar() * 100`.
pub fn handler_answer(probs: &[f32]) -> String {
    let best = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let tied: Vec<String> = (0..probs.len()).filter(|&c| probs[c] == best).map(|c| c.to_string()).collect();
    format!("Prediction is [{}] with probability of {}%", tied.join(", "), python_repr(f64::from(best) * 100.0))
}

/// Python's `repr(float)`: the shortest digits that round-trip (as Rust's `{:e}` gives them),
/// positional from 1e-4 up to below 1e16 with at least one digit after the point (`100.0`),
/// else scientific with a signed exponent of at least two digits (`1e-05`, `1e+16`).
pub fn python_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    if !(-4..16).contains(&exponent) {
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.abs());
    }
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let point = exponent + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        format!("{whole}.{fraction}")
    };
    format!("{sign}{body}")
}

async fn list_models(State(server): State<Arc<Server>>) -> Response {
    let models: Vec<_> = server.models().iter().map(|m| json!({ "modelName": m.name, "modelUrl": m.url })).collect();
    pretty_json(StatusCode::OK, &json!({ "models": models }))
}

async fn describe(State(server): State<Arc<Server>>, Path(model): Path<String>) -> Response {
    let entry = match server.model(&model) {
        Ok(entry) => entry,
        Err(rejection) => return rejected(rejection),
    };
    let settings = &entry.batcher.settings;
    let workers: Vec<_> = entry
        .batcher
        .workers
        .iter()
        .map(|w| json!({ "id": w.id, "startTime": iso_time(w.started), "status": "READY", "gpu": w.gpu, "memoryUsage": 0 }))
        .collect();
    pretty_json(
        StatusCode::OK,
        &json!({
            "modelName": entry.name,
            "modelUrl": entry.url,
            "runtime": "rust",
            "minWorkers": workers.len(),
            "maxWorkers": workers.len(),
            "batchSize": settings.batch_size,
            "maxBatchDelay": settings.max_batch_delay.as_millis() as u64,
            "loadedAtStartup": entry.loaded_at_startup,
            "queueDepth": entry.batcher.depth(),
            "workers": workers,
        }),
    )
}

#[derive(serde::Deserialize)]
struct RegisterQuery {
    url: Option<String>,
    model_name: Option<String>,
    epoch: Option<u32>,
    batch_size: Option<usize>,
    max_batch_delay: Option<u64>,
    initial_workers: Option<usize>,
}

/// `POST /models?url=PREFIX[&model_name=NAME&epoch=N&batch_size=N&max_batch_delay=MS&initial_workers=N]`:
/// loads the checkpoint PREFIX-symbol.json + PREFIX-NNNN.params (or whatever model_file reads)
/// and serves it as NAME (default: the prefix's file name).
async fn register(
    State(server): State<Arc<Server>>,
    query: Result<Query<RegisterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(e) => return mms_error(StatusCode::BAD_REQUEST, "BadRequestException", &e.body_text()),
    };
    let Some(url) = query.url.filter(|u| !u.trim().is_empty()) else {
        return mms_error(StatusCode::BAD_REQUEST, "BadRequestException", "Parameter url is required.");
    };
    let request = LoadRequest {
        name: query.model_name,
        url,
        epoch: query.epoch.unwrap_or(0),
        batch_size: query.batch_size,
        max_batch_delay_ms: query.max_batch_delay,
        workers: query.initial_workers,
    };
    let loader = server.clone();
    match tokio::task::spawn_blocking(move || loader.load(request, false)).await {
        Ok(Ok(name)) => pretty_json(StatusCode::OK, &json!({ "status": format!("Model \"{name}\" registered") })),
        Ok(Err(rejection)) => rejected(rejection),
        Err(e) => {
            mms_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException", &format!("loading failed: {e}"))
        }
    }
}

async fn unregister(State(server): State<Arc<Server>>, Path(model): Path<String>) -> Response {
    match server.unload(&model) {
        Ok(()) => pretty_json(StatusCode::OK, &json!({ "status": format!("Model \"{model}\" unregistered") })),
        Err(rejection) => rejected(rejection),
    }
}

/// `2026-12-02T13:44:55.587Z`, as MMS writes worker start times.
pub fn iso_time(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, seconds) = ((since.as_secs() / 86_400) as i64, since.as_secs() % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_pythons_repr() {
        // (value, repr(value)) pairs printed by CPython 3.11.
        for repr in [
            "99.84009861946106",
            "100.0",
            "10.0",
            "1e-05",
            "1.5e-07",
            "0.0001",
            "0.00012345",
            "1e+16",
            "1000000000000000.0",
            "123456789012345.6",
            "2.5e-300",
            "5e-324",
            "1.7976931348623157e+308",
            "0.1",
            "-0.0",
            "0.0",
            "33.33333432674408",
            "12.5",
            "99.99982118606567",
            "1e+22",
            "1.0000000000000002",
            "-2.5",
            "9.999999999999999e-05",
            "99.99999403953552",
            "10.000000149011612",
            "50.0",
            "1234567890123456.0",
            "1.2345678901234568e+16",
        ] {
            let value: f64 = repr.parse().unwrap();
            assert_eq!(python_repr(value), repr, "{value:e}");
        }
        assert_eq!(python_repr(f64::NAN), "nan");
        assert_eq!(python_repr(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn the_answer_is_the_handlers_sentence() {
        let mut probs = [0.0f32; 10];
        probs[7] = f32::from_bits(0x3f7f_fff4); // 0.99999928...
        probs[1] = 1.0 - probs[7];
        assert_eq!(handler_answer(&probs), "Prediction is [7] with probability of 99.99992847442627%");
        assert_eq!(handler_answer(&[0.5, 0.5, 0.0]), "Prediction is [0, 1] with probability of 50.0%");
        assert_eq!(handler_answer(&[0.0, 1.0]), "Prediction is [1] with probability of 100.0%");
    }

    #[test]
    fn worker_start_times_read_like_mms() {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(1_796_219_095_587);
        assert_eq!(iso_time(time), "2026-12-02T13:44:55.587Z");
        assert_eq!(iso_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
