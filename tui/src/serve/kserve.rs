//! KServe's Open Inference Protocol v2 (REST): health, server and model metadata, readiness,
//! and `POST /v2/models/{m}/infer` taking FP32 (values in [0, 1]) or UINT8 (0-255) tensors of
//! shape [N, 28, 28, 1] and answering FP32 probabilities [N, 10]. Errors are `{"error": ...}`.
//! Leaves out the binary tensor extension, model versions and the gRPC protocol.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::batcher::Input;
use super::http::{self, Rejection};
use super::Server;

/// The input tensor's name in the metadata (any name is accepted).
const INPUT_NAME: &str = "input";
const OUTPUT_NAME: &str = "probabilities";

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/infer", post(infer))
}

fn error(rejection: Rejection) -> Response {
    let response = http::json(rejection.status, &json!({ "error": rejection.message }));
    match rejection.retry_after {
        Some(seconds) => http::with_retry_after(response, seconds),
        None => response,
    }
}

async fn server_metadata() -> Response {
    http::json(StatusCode::OK, &json!({ "name": "mnist", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }))
}

async fn live() -> Response {
    http::json(StatusCode::OK, &json!({ "live": true }))
}

/// Ready while a model is loaded and the server is not draining.
async fn ready(State(server): State<Arc<Server>>) -> Response {
    let ready = server.is_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    http::json(status, &json!({ "ready": ready }))
}

async fn model_metadata(State(server): State<Arc<Server>>, Path(model): Path<String>) -> Response {
    let entry = match server.model(&model) {
        Ok(entry) => entry,
        Err(rejection) => return error(rejection),
    };
    let c = entry.config;
    http::json(
        StatusCode::OK,
        &json!({
            "name": entry.name,
            "versions": ["1"],
            "platform": "mnist_cnn",
            "inputs": [{ "name": INPUT_NAME, "datatype": "FP32", "shape": [-1, c.height, c.width, c.channels] }],
            "outputs": [{ "name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, c.classes] }],
        }),
    )
}

async fn model_ready(State(server): State<Arc<Server>>, Path(model): Path<String>) -> Response {
    match server.model(&model) {
        Ok(entry) => {
            let ready = !server.is_draining();
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            http::json(status, &json!({ "name": entry.name, "ready": ready }))
        }
        Err(rejection) => error(rejection),
    }
}

async fn infer(State(server): State<Arc<Server>>, Path(model): Path<String>, request: Request) -> Response {
    let answer = async {
        let entry = server.model(&model)?;
        let _admitted = server.admit()?;
        if request.headers().contains_key("inference-header-content-length") {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "the binary tensor extension is not supported: send the tensor as JSON data",
            ));
        }
        let length = http::content_length(&request);
        let body = http::read_body(request.into_body(), length, server.body_limits()).await?;
        let (id, values, count) = parse_request(&body, &entry.config, server.settings.max_tensor_images)?;
        let probs = server.infer(&entry, Input::Tensor { values, count }).await?;
        Ok((entry, id, probs, count))
    };
    match answer.await {
        Ok((entry, id, probs, count)) => {
            let data: Vec<f64> = probs.iter().map(|&p| super::short(p)).collect();
            let mut body = json!({
                "model_name": entry.name,
                "model_version": "1",
                "outputs": [{ "name": OUTPUT_NAME, "datatype": "FP32", "shape": [count, entry.config.classes], "data": data }],
            });
            if let Some(id) = id {
                body["id"] = Value::String(id);
            }
            http::json(StatusCode::OK, &body)
        }
        Err(rejection) => error(rejection),
    }
}

fn bad(message: String) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, message)
}

/// The request's id, its one input as model values (UINT8 divided by 255) and its image count.
pub fn parse_request(
    body: &[u8],
    config: &mnist_core::Config,
    max_images: usize,
) -> Result<(Option<String>, Vec<f32>, usize), Rejection> {
    let request: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    let id = match request.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(other) => return Err(bad(format!("\"id\" must be a string, not {other}"))),
    };
    let inputs = request
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the request needs \"inputs\": an array of one tensor".into()))?;
    let [input] = inputs.as_slice() else {
        return Err(bad(format!("the model takes one input tensor; the request has {}", inputs.len())));
    };
    let datatype = input.get("datatype").and_then(Value::as_str).unwrap_or("");
    let uint8 = match datatype {
        "FP32" => false,
        "UINT8" => true,
        other => {
            return Err(bad(format!(
                "datatype \"{other}\" is not supported: send FP32 (values in [0, 1]) or UINT8 (0-255)"
            )))
        }
    };
    let expected = [config.height, config.width, config.channels];
    let shape: Option<Vec<u64>> =
        input.get("shape").and_then(Value::as_array).and_then(|s| s.iter().map(Value::as_u64).collect());
    let count = match shape.as_deref() {
        Some([n, rest @ ..]) if rest.iter().map(|&d| d as usize).eq(expected) && *n >= 1 => *n as usize,
        _ => {
            return Err(bad(format!(
                "shape {} does not match [N, {}, {}, {}]",
                input.get("shape").map_or("(missing)".into(), Value::to_string),
                expected[0],
                expected[1],
                expected[2]
            )))
        }
    };
    if count > max_images {
        return Err(bad(format!("{count} images in one request; at most {max_images} are taken")));
    }
    let want = count * config.input_len();
    let mut values = Vec::with_capacity(want);
    flatten(input.get("data").ok_or_else(|| bad("the input has no \"data\"".into()))?, &mut values, want, uint8)?;
    if values.len() != want {
        return Err(bad(format!("shape {shape:?} holds {want} values but \"data\" has {}", values.len())));
    }
    Ok((id, values, count))
}

/// Appends the numbers of `data` (flat or nested arrays, row-major), at most `limit` of them.
fn flatten(data: &Value, out: &mut Vec<f32>, limit: usize, uint8: bool) -> Result<(), Rejection> {
    match data {
        Value::Array(items) => {
            for item in items {
                flatten(item, out, limit, uint8)?;
                if out.len() > limit {
                    return Err(bad(format!("\"data\" has more than the {limit} values the shape holds")));
                }
            }
            Ok(())
        }
        Value::Number(n) if uint8 => match n.as_u64() {
            Some(v) if v <= 255 => {
                out.push(v as f32 / 255.0);
                Ok(())
            }
            _ => Err(bad(format!("UINT8 data must be integers from 0 to 255, not {n}"))),
        },
        Value::Number(n) => match n.as_f64() {
            Some(v) if v.is_finite() && (v as f32).is_finite() => {
                out.push(v as f32);
                Ok(())
            }
            _ => Err(bad(format!("FP32 data must be finite numbers, not {n}"))),
        },
        other => Err(bad(format!("\"data\" must hold numbers, not {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(datatype: &str, shape: &str, data: &str) -> String {
        format!(
            r#"{{"id": "r1", "inputs": [{{"name": "x", "datatype": "{datatype}", "shape": {shape}, "data": {data}}}]}}"#
        )
    }

    #[test]
    fn fp32_and_uint8_tensors_flat_or_nested_are_read() {
        let config = mnist_core::Config::default();
        let flat: Vec<String> = (0..784 * 2).map(|i| ((i % 256) as f32 / 255.0).to_string()).collect();
        let (id, values, count) =
            parse_request(tensor("FP32", "[2, 28, 28, 1]", &format!("[{}]", flat.join(","))).as_bytes(), &config, 8)
                .unwrap();
        assert_eq!((id.as_deref(), count, values.len()), (Some("r1"), 2, 1568));
        let rows: Vec<String> = (0..28)
            .map(|r| format!("[{}]", (0..28).map(|c| ((r * 28 + c) % 256).to_string()).collect::<Vec<_>>().join(",")))
            .collect();
        let (_, values, count) =
            parse_request(tensor("UINT8", "[1, 28, 28, 1]", &format!("[[{}]]", rows.join(","))).as_bytes(), &config, 8)
                .unwrap();
        assert_eq!(count, 1);
        assert_eq!(values[29], 29.0 / 255.0);
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let config = mnist_core::Config::default();
        let zeros = |n: usize| format!("[{}]", vec!["0"; n].join(","));
        for (body, expected) in [
            ("{not json".to_string(), "not valid JSON"),
            ("{}".to_string(), "needs \"inputs\""),
            (r#"{"inputs": []}"#.to_string(), "one input tensor"),
            (tensor("INT64", "[1, 28, 28, 1]", &zeros(784)), "datatype \"INT64\""),
            (tensor("FP32", "[1, 784]", &zeros(784)), "does not match [N, 28, 28, 1]"),
            (tensor("FP32", "[0, 28, 28, 1]", "[]"), "does not match"),
            (tensor("FP32", "[1, 28, 28, 1]", &zeros(783)), "holds 784 values"),
            (tensor("FP32", "[1, 28, 28, 1]", &zeros(785)), "more than the 784"),
            (tensor("UINT8", "[1, 28, 28, 1]", &format!("[256{}]", ",0".repeat(783))), "0 to 255"),
            (tensor("UINT8", "[1, 28, 28, 1]", &format!("[0.5{}]", ",0".repeat(783))), "0 to 255"),
            (tensor("FP32", "[1, 28, 28, 1]", &format!("[\"a\"{}]", ",0".repeat(783))), "must hold numbers"),
            (tensor("FP32", "[1, 28, 28, 1]", &format!("[1e39{}]", ",0".repeat(783))), "finite"),
            (tensor("FP32", "[9, 28, 28, 1]", &zeros(9 * 784)), "at most 8"),
            (r#"{"id": 5, "inputs": []}"#.to_string(), "\"id\" must be a string"),
        ] {
            let e = parse_request(body.as_bytes(), &config, 8).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(expected), "{expected:?} not in {:?}", e.message);
        }
    }
}
