//! `mnist serve`: a drop-in for the sample's MXNet Model Server plus KServe v2, on axum/hyper
//! with tokio doing I/O only. Three ports (inference, management, metrics), the model registry,
//! admission control (503 + Retry-After when the queue is full), timeouts, and the SIGTERM drain
//! (readiness false, stop accepting, finish what is in flight, exit 0).
//! Leaves out the routes (mms.rs, kserve.rs), batching (batcher.rs) and metrics (metrics.rs).

pub mod batcher;
pub mod http;
pub mod kserve;
pub mod metrics;
pub mod mms;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use mnist_core::Config;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use batcher::{Answer, BatchSettings, Batcher, Input, JobError};
use http::{BodyLimits, Rejection, Tracking};
use metrics::Metrics;

use crate::cli::LogFormat;

/// Everything `mnist serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    pub management_host: IpAddr,
    pub management_port: u16,
    pub metrics_port: u16,
    pub batch: BatchSettings,
    pub max_body_bytes: usize,
    /// For reading a request's headers and body, and for its answer.
    pub timeout: Duration,
    /// How long SIGTERM waits for requests in flight.
    pub drain_timeout: Duration,
    /// How long after SIGTERM new requests are still taken (readiness already false), so load
    /// balancers stop sending before the listeners close.
    pub shutdown_delay: Duration,
    pub max_connections: usize,
    pub max_tensor_images: usize,
    pub io_threads: usize,
    /// None: no request lines (--quiet).
    pub log: Option<LogFormat>,
}

/// A model being served.
pub struct Model {
    pub name: String,
    /// Where it came from: the checkpoint prefix, or "shipped".
    pub url: String,
    pub config: Config,
    pub batcher: Batcher,
    pub loaded_at_startup: bool,
    labels: [String; 5],
}

/// What `POST /models` (or the command line) asks to load.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub name: Option<String>,
    pub url: String,
    pub epoch: u32,
    pub batch_size: Option<usize>,
    pub max_batch_delay_ms: Option<u64>,
    pub workers: Option<usize>,
}

/// The state every route shares.
pub struct Server {
    models: RwLock<BTreeMap<String, Arc<Model>>>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// One permit per request between its arrival and its answer: bounds the bodies held in
    /// memory and the queue together.
    admission: Arc<Semaphore>,
}

/// The f32's shortest decimal as an f64, so JSON shows 0.9252162 rather than 0.925216197967529.
pub fn short(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(value as f64)
}

impl Server {
    pub fn new(settings: Settings) -> Result<Server, String> {
        Ok(Server {
            models: RwLock::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::new()?),
            draining: AtomicBool::new(false),
            admission: Arc::new(Semaphore::new(settings.batch.queue_size.max(1))),
            settings,
        })
    }

    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits { max_bytes: self.settings.max_body_bytes, timeout: self.settings.timeout }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        !self.is_draining() && !self.models.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    pub fn models(&self) -> Vec<Arc<Model>> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// The model named `name`, or MMS's 404.
    pub fn model(&self, name: &str) -> Result<Arc<Model>, Rejection> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        models
            .get(name)
            .cloned()
            .ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, format!("Model not found: {name}")))
    }

    /// A place for one more request, or 503 + Retry-After when `queue_size` are already taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Rejection> {
        self.admission.clone().try_acquire_owned().map_err(|_| {
            Rejection::overloaded(format!(
                "the server is busy: {} requests are already waiting; retry later",
                self.settings.batch.queue_size
            ))
        })
    }

    /// Queues `input` for `model` and waits for its probabilities.
    pub async fn infer(&self, model: &Model, input: Input) -> Result<Vec<f32>, Rejection> {
        let answer = model
            .batcher
            .submit(input)
            .map_err(|_| Rejection::overloaded(format!("the queue of model {} is full; retry later", model.name)))?;
        self.metrics.set_queue_depth(&model.name, model.batcher.depth());
        let answer: Answer = match tokio::time::timeout(self.settings.timeout, answer).await {
            Err(_) => {
                return Err(Rejection::overloaded(format!(
                    "no answer within {} s; retry later",
                    self.settings.timeout.as_secs_f64()
                )))
            }
            Ok(Err(_)) => return Err(Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "Prediction failed")),
            Ok(Ok(answer)) => answer,
        };
        answer.map_err(|e| match e {
            JobError::BadImage(message) => Rejection::new(StatusCode::BAD_REQUEST, message),
            JobError::Failed(message) => {
                eprintln!("error: model {}: {message}", model.name);
                Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "Prediction failed")
            }
        })
    }

    /// Reads a checkpoint through model_file and starts serving it; returns its name.
    pub fn load(&self, request: LoadRequest, at_startup: bool) -> Result<String, Rejection> {
        let prefix = request.url.strip_suffix("-symbol.json").unwrap_or(&request.url).to_string();
        let name = request.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&prefix).file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned())
        });
        check_name(&name)?;
        if self.model(&name).is_ok() {
            return Err(Rejection::new(StatusCode::CONFLICT, format!("Model {name} is already registered.")));
        }
        let imported = crate::model_file::load(&prefix, request.epoch).map_err(|e| {
            let status = if e.missing { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
            Rejection::new(status, e.message)
        })?;
        self.start(name, prefix, imported.config, imported.params, &request, at_startup)
    }

    /// Starts the workers for a model already in memory and registers it.
    pub fn start(
        &self,
        name: String,
        url: String,
        config: Config,
        params: Vec<f32>,
        request: &LoadRequest,
        at_startup: bool,
    ) -> Result<String, Rejection> {
        check_name(&name)?;
        if config.channels != 1 {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                format!("the model takes {}-channel images; served models must take greyscale ones", config.channels),
            ));
        }
        let mut settings = self.settings.batch.clone();
        settings.batch_size = request.batch_size.unwrap_or(settings.batch_size).clamp(1, 1024);
        settings.workers = request.workers.unwrap_or(settings.workers).clamp(1, 64);
        if let Some(ms) = request.max_batch_delay_ms {
            settings.max_batch_delay = Duration::from_millis(ms.min(10_000));
        }
        let device = match settings.device {
            batcher::Device::Cpu => "cpu",
            batcher::Device::Cuda => "cuda",
        };
        let batcher = Batcher::start(&name, config, Arc::new(params), settings, self.metrics.clone())
            .map_err(|e| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let labels = [
            name.clone(),
            url.clone(),
            device.to_string(),
            batcher.workers.len().to_string(),
            batcher.settings.batch_size.to_string(),
        ];
        let model = Arc::new(Model { name: name.clone(), url, config, batcher, loaded_at_startup: at_startup, labels });
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        if models.contains_key(&name) {
            return Err(Rejection::new(StatusCode::CONFLICT, format!("Model {name} is already registered.")));
        }
        self.metrics.model_loaded(&model.labels.each_ref().map(String::as_str));
        models.insert(name.clone(), model);
        Ok(name)
    }

    /// Stops serving `name`: requests in flight finish, then its workers exit.
    pub fn unload(&self, name: &str) -> Result<(), Rejection> {
        let removed = self.models.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        let model = removed.ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, format!("Model not found: {name}")))?;
        self.metrics.model_unloaded(&model.labels.each_ref().map(String::as_str));
        Ok(())
    }
}

/// Model names go into URLs and metric labels: letters, digits, '-', '_' and '.'.
fn check_name(name: &str) -> Result<(), Rejection> {
    let ok =
        !name.is_empty() && name.len() <= 100 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("model name {name:?} must be letters, digits, '-', '_' or '.'"),
        ))
    }
}

fn tracked(router: Router<Arc<Server>>, server: &Arc<Server>, port: &'static str) -> Router {
    let tracking = Arc::new(Tracking { port, metrics: server.metrics.clone(), log: server.settings.log });
    router.layer(axum::middleware::from_fn_with_state(tracking, http::track)).with_state(server.clone())
}

async fn metrics_route(axum::extract::State(server): axum::extract::State<Arc<Server>>) -> axum::response::Response {
    match server.metrics.render() {
        Ok(text) => http::with_type(StatusCode::OK, text.into_bytes(), "text/plain; version=0.0.4; charset=utf-8"),
        Err(e) => http::with_type(StatusCode::INTERNAL_SERVER_ERROR, e.into_bytes(), "text/plain"),
    }
}

/// A model read before the server starts.
pub struct StartupModel {
    pub name: String,
    pub url: String,
    pub config: Config,
    pub params: Vec<f32>,
}

/// Serves until SIGTERM or SIGINT, then drains. The models in `startup` are served first.
pub fn run(settings: Settings, startup: Vec<StartupModel>) -> Result<String, String> {
    let server = Arc::new(Server::new(settings.clone())?);
    for model in startup {
        let request = LoadRequest {
            name: Some(model.name.clone()),
            url: model.url.clone(),
            epoch: 0,
            batch_size: None,
            max_batch_delay_ms: None,
            workers: None,
        };
        server.start(model.name, model.url, model.config, model.params, &request, true).map_err(|r| r.message)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.io_threads.max(1))
        .thread_name("serve-io")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
    runtime.block_on(serve(server))
}

async fn bind(host: IpAddr, port: u16, what: &str) -> Result<tokio::net::TcpListener, String> {
    let address = SocketAddr::new(host, port);
    tokio::net::TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address} for {what}: {e}"))
}

async fn serve(server: Arc<Server>) -> Result<String, String> {
    let s = &server.settings;
    let inference =
        tracked(mms::inference_routes().merge(kserve::routes()).fallback(mms::not_found), &server, "inference");
    let management = tracked(mms::management_routes(), &server, "management");
    let metrics = tracked(Router::new().route("/metrics", get(metrics_route)), &server, "metrics");
    let listeners = vec![
        (bind(s.host, s.port, "inference").await?, inference, "inference"),
        (bind(s.management_host, s.management_port, "management").await?, management, "management"),
        (bind(s.host, s.metrics_port, "metrics").await?, metrics, "metrics"),
    ];
    let addresses: Vec<String> = listeners
        .iter()
        .map(|(l, _, what)| {
            let path = if *what == "metrics" { "/metrics" } else { "" };
            format!("{what} http://{}{path}", l.local_addr().map_or("?".into(), |a| a.to_string()))
        })
        .collect();
    for model in server.models() {
        let b = &model.batcher;
        eprintln!(
            "mnist serve: model {} from {} on {} with {} worker{}, batches of up to {} (max_batch_delay {} ms), queue {}",
            model.name,
            model.url,
            model.labels[2],
            b.workers.len(),
            if b.workers.len() == 1 { "" } else { "s" },
            b.settings.batch_size,
            b.settings.max_batch_delay.as_millis(),
            b.settings.queue_size
        );
    }
    eprintln!("mnist serve: listening: {}", addresses.join(", "));

    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(s.max_connections.max(1)));
    let mut loops = Vec::new();
    for (listener, router, _) in listeners {
        loops.push(tokio::spawn(accept_loop(listener, router, stop_rx.clone(), connections.clone(), server.clone())));
    }

    let signal = wait_for_signal().await?;
    server.draining.store(true, Ordering::SeqCst);
    let delay = s.shutdown_delay;
    eprintln!(
        "mnist serve: {signal}: readiness is false; {}finishing the requests in flight (up to {} s)",
        if delay.is_zero() {
            String::new()
        } else {
            format!("taking new requests for {} s more, then ", delay.as_secs_f64())
        },
        s.drain_timeout.as_secs_f64()
    );
    tokio::time::sleep(delay).await;
    let _ = stop_tx.send(true);
    let mut drained = true;
    for handle in loops {
        drained &= handle.await.unwrap_or(false);
    }
    let summary = if drained {
        format!("{signal}: drained, every request in flight answered")
    } else {
        format!(
            "{signal}: the drain timed out after {} s; connections still open were closed",
            s.drain_timeout.as_secs_f64()
        )
    };
    eprintln!("mnist serve: {summary}");
    Ok(summary)
}

async fn wait_for_signal() -> Result<&'static str, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Accepts connections until told to stop, then lets each finish its request in flight (up to
/// the drain timeout). True when every connection finished in time.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
    connections: Arc<Semaphore>,
    server: Arc<Server>,
) -> bool {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(server.settings.timeout).keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    eprintln!("warning: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = watched.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::time::timeout(server.settings.drain_timeout, graceful.shutdown()).await.is_ok()
}
