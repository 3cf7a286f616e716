//! The bounded queue between the HTTP handlers and the model, with dynamic batching: worker
//! threads (never the async ones) take every waiting request up to `batch_size` images (waiting
//! up to `max_batch_delay` for more, MMS's two settings), decode and prepare the images, run one
//! forward pass for all of them and answer each request. Leaves out HTTP.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mnist_core::model::Network;
use mnist_core::{Backend, Config, CpuBackend};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::preprocess;

/// Where the forward passes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

/// How a model's requests are batched and where they run.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub device: Device,
    /// Worker threads, each with its own copy of the model (1 on CUDA).
    pub workers: usize,
    /// Most images in one forward pass.
    pub batch_size: usize,
    /// How long a worker holding fewer than `batch_size` images waits for more (0: it takes what
    /// is waiting and goes).
    pub max_batch_delay: Duration,
    /// Most requests waiting at once; more are refused (503).
    pub queue_size: usize,
    /// Images whose header claims more pixels are refused before decoding.
    pub max_pixels: u64,
}

/// How an image is turned into the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    /// The sample's MMS handler: OpenCV greyscale decode, bilinear resize, / 255 (exact).
    Handler,
    /// `mnist predict --mnist-style`: inverted if dark on light, cropped, fitted and centred.
    MnistStyle,
}

/// What a request asks the model about.
pub enum Input {
    /// An encoded image file.
    Image { bytes: axum::body::Bytes, preparation: Preparation },
    /// Ready model inputs, `count` images of `config.input_len()` values each.
    Tensor { values: Vec<f32>, count: usize },
}

impl Input {
    fn images(&self) -> usize {
        match self {
            Input::Image { .. } => 1,
            Input::Tensor { count, .. } => *count,
        }
    }
}

/// Why a request got no probabilities.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// The image could not be read (the client's fault).
    BadImage(String),
    /// The forward pass failed (ours).
    Failed(String),
}

/// Probabilities (N, classes), or why not.
pub type Answer = Result<Vec<f32>, JobError>;

struct Job {
    input: Input,
    reply: oneshot::Sender<Answer>,
}

/// The queue is full: the request was not taken.
#[derive(Debug)]
pub struct Full;

/// One worker thread, for the management API.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub id: String,
    pub started: SystemTime,
    pub gpu: bool,
}

/// A model's queue and its workers. Dropping it closes the queue: the workers finish what is
/// queued and exit.
pub struct Batcher {
    sender: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    pub settings: BatchSettings,
    pub workers: Vec<WorkerInfo>,
}

/// Runs forward passes; implemented by the network on every backend.
trait Engine {
    fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>, String>;
}

impl<B: Backend> Engine for Network<B> {
    fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>, String> {
        Network::predict(self, images).map_err(|e| e.to_string())
    }
}

fn engine(device: Device, config: Config, params: &[f32], batch_size: usize) -> Result<Box<dyn Engine>, String> {
    fn ready<B: Backend + 'static>(
        backend: B,
        config: Config,
        params: &[f32],
        batch: usize,
    ) -> Result<Box<dyn Engine>, String> {
        let mut network = Network::new(backend, config, batch).map_err(|e| format!("cannot set up the model: {e}"))?;
        network.set_params(params).map_err(|e| format!("cannot set up the model: {e}"))?;
        Ok(Box::new(network))
    }
    match device {
        // One thread per worker: workers run side by side, each on a core of its own.
        Device::Cpu => ready(CpuBackend::new(1), config, params, batch_size),
        Device::Cuda => {
            let gpu = mnist_cuda::CudaBackend::new(0).map_err(|e| format!("--backend cuda: {e}"))?;
            ready(gpu, config, params, batch_size)
        }
    }
}

impl Batcher {
    /// Starts the workers, each with its own copy of the model, and waits until all are ready.
    pub fn start(
        name: &str,
        config: Config,
        params: Arc<Vec<f32>>,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Batcher, String> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(settings.queue_size.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let depth = Arc::new(AtomicUsize::new(0));
        let workers = if settings.device == Device::Cuda { 1 } else { settings.workers.max(1) };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let mut infos = Vec::with_capacity(workers);
        for index in 0..workers {
            let worker = Worker {
                model: name.to_string(),
                config,
                settings: settings.clone(),
                receiver: receiver.clone(),
                depth: depth.clone(),
                metrics: metrics.clone(),
            };
            let (params, ready_tx) = (params.clone(), ready_tx.clone());
            std::thread::Builder::new()
                .name(format!("serve-{name}-{index}"))
                .spawn(move || {
                    let engine = engine(worker.settings.device, worker.config, &params, worker.settings.batch_size);
                    drop(params);
                    match engine {
                        Ok(engine) => {
                            let _ = ready_tx.send(Ok(()));
                            worker.run(engine);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            infos.push(WorkerInfo {
                id: format!("{name}-{index}"),
                started: SystemTime::now(),
                gpu: settings.device == Device::Cuda,
            });
        }
        drop(ready_tx);
        for _ in 0..workers {
            ready_rx.recv().map_err(|_| "a worker thread stopped while starting".to_string())??;
        }
        Ok(Batcher { sender, depth, settings, workers: infos })
    }

    /// Queues `input`; the receiver gets the answer. Full when `queue_size` requests wait.
    pub fn submit(&self, input: Input) -> Result<oneshot::Receiver<Answer>, Full> {
        let (reply, answer) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::SeqCst);
        match self.sender.try_send(Job { input, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(Full)
            }
        }
    }

    /// Requests waiting for a worker.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

struct Worker {
    model: String,
    config: Config,
    settings: BatchSettings,
    receiver: Arc<Mutex<Receiver<Job>>>,
    depth: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(self, mut engine: Box<dyn Engine>) {
        while let Some(batch) = self.take_batch() {
            self.depth.fetch_sub(batch.len(), Ordering::SeqCst);
            self.metrics.set_queue_depth(&self.model, self.depth.load(Ordering::SeqCst));
            self.answer(engine.as_mut(), batch);
        }
    }

    /// Blocks for one request, then takes what else is waiting up to `batch_size` images. None
    /// once the queue is closed and empty.
    fn take_batch(&self) -> Option<Vec<Job>> {
        let receiver = self.receiver.lock().unwrap_or_else(|e| e.into_inner());
        let first = receiver.recv().ok()?;
        let mut images = first.input.images();
        let mut batch = vec![first];
        let deadline = Instant::now() + self.settings.max_batch_delay;
        while images < self.settings.batch_size {
            let next = match receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match receiver.recv_timeout(left) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            images += next.input.images();
            batch.push(next);
        }
        Some(batch)
    }

    /// Prepares every image, runs one forward pass for the batch and answers each request.
    fn answer(&self, engine: &mut dyn Engine, batch: Vec<Job>) {
        let input_len = self.config.input_len();
        let mut inputs: Vec<f32> = Vec::with_capacity(batch.len() * input_len);
        let mut waiting = Vec::with_capacity(batch.len());
        for job in batch {
            // A client that gave up (timeout, closed connection) costs no more work.
            if job.reply.is_closed() {
                continue;
            }
            let count = job.input.images();
            match self.prepare(job.input) {
                Ok(values) => {
                    inputs.extend_from_slice(&values);
                    waiting.push((job.reply, count));
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
        let started = Instant::now();
        let images = inputs.len() / input_len;
        let probs = std::panic::catch_unwind(AssertUnwindSafe(|| engine.predict(&inputs)))
            .unwrap_or_else(|_| Err("the forward pass panicked".into()));
        self.metrics.observe_batch(&self.model, images, started.elapsed());
        match probs {
            Ok(probs) => {
                let mut rest = probs.as_slice();
                for (reply, count) in waiting {
                    let (mine, others) = rest.split_at((count * self.config.classes).min(rest.len()));
                    rest = others;
                    let _ = reply.send(Ok(mine.to_vec()));
                }
            }
            Err(e) => {
                for (reply, _) in waiting {
                    let _ = reply.send(Err(JobError::Failed(e.clone())));
                }
            }
        }
    }

    fn prepare(&self, input: Input) -> Result<Vec<f32>, JobError> {
        let (width, height) = (self.config.width, self.config.height);
        match input {
            Input::Tensor { values, .. } => Ok(values),
            Input::Image { bytes, preparation } => {
                let max_pixels = self.settings.max_pixels;
                let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| match preparation {
                    Preparation::Handler => preprocess::opencv::decode(&bytes, max_pixels)
                        .map(|grey| preprocess::opencv::handler_input(&grey, width, height)),
                    Preparation::MnistStyle => preprocess::decode_limited(&bytes, max_pixels)
                        .map(|grey| preprocess::mnist_style(&grey, width, height)),
                }));
                match decoded {
                    Ok(Ok(values)) => Ok(values),
                    Ok(Err(e)) => Err(JobError::BadImage(format!("cannot read the image: {e}"))),
                    Err(_) => Err(JobError::BadImage("cannot read the image: the decoder failed".into())),
                }
            }
        }
    }
}
