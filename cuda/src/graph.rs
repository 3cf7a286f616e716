//! Step recording: a training step of each shape runs op by op once (setting up scratch and
//! cuBLAS), is captured on the stream as a CUDA graph the next time, and is then replayed as
//! one graph launch after its values (batch start, two dropout seeds) are copied to the device,
//! where `load_batch` and `dropout` read them. Leaves out: which ops a step runs
//! (`Network::train_step`).

use std::collections::HashMap;

use cudarc::driver::{result as driver, sys as driver_sys, CudaGraph};
use mnist_core::backend::{StepMode, StepValues};
use mnist_core::optim::Adadelta;
use mnist_core::{Error, Result};

use crate::data::CudaDataset;
use crate::device::{backend_error, driver_error, CudaBuffer, Device};

/// Everything a recorded training step depends on besides the network's buffers (which one
/// Network owns for the backend's whole life) and `StepValues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StepKey {
    batch: usize,
    data: [u64; 5],  // images, labels and order addresses, N, sample_len
    hyper: [u32; 3], // Adadelta's f32 bits
}

/// A captured CUDA graph. cudarc leaves `CudaGraph` !Send because its handles are raw pointers;
/// CUDA allows a graph to be used from any thread as long as calls are serialised, which the
/// backend's `&mut self` guarantees, so the backend stays Send as before.
struct StepGraph(CudaGraph);
// SAFETY: see above; the graph is only touched through `&mut CudaBackend`.
unsafe impl Send for StepGraph {}

enum Recording {
    /// Ran once op by op (allocating scratch, loading cuBLAS's kernels); recorded next time.
    WarmedUp,
    Graph(StepGraph),
    /// Recording failed once; steps of this shape run op by op from then on.
    Failed,
}

/// How many steps were recorded and replayed, and why any recording failed (for the tests:
/// the `test-hooks` feature).
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepGraphStats {
    pub recorded: usize,
    pub replayed: usize,
    pub failures: Vec<String>,
}

/// The recordings of one backend, by step shape.
pub(crate) struct StepGraphs {
    // Field order is drop order: the graphs before the values buffer they read.
    enabled: bool,
    graphs: HashMap<StepKey, Recording>,
    recording: Option<(StepKey, StepValues)>, // between begin and end while capturing
    #[cfg(feature = "test-hooks")]
    stats: StepGraphStats,
    values: CudaBuffer<u64>, // (3): start, dropout seed 1, dropout seed 2 of the current step
}

impl StepGraphs {
    pub(crate) fn new(device: &Device, enabled: bool) -> Result<StepGraphs> {
        Ok(StepGraphs {
            enabled,
            graphs: HashMap::new(),
            recording: None,
            #[cfg(feature = "test-hooks")]
            stats: StepGraphStats::default(),
            values: device.alloc(3)?,
        })
    }

    /// Forgets every recording: they hold addresses of scratch that is about to be replaced.
    /// Refused while a step is being captured.
    pub(crate) fn drop_recordings(&mut self, op: &str) -> Result<()> {
        if self.recording.is_some() {
            return Err(backend_error(op, "scratch would grow while a step is recorded"));
        }
        self.graphs.clear();
        Ok(())
    }

    /// The values of the step being captured, if one is.
    pub(crate) fn recording(&self) -> Option<StepValues> {
        self.recording.map(|(_, values)| values)
    }

    /// Where a recorded step's kernels read the value `wanted` from: `slot` of the values
    /// buffer, checked to hold what the caller passed; null (use the argument) when not recording.
    pub(crate) fn value_at(&self, op: &str, slot: usize, wanted: u64) -> Result<u64> {
        let Some((_, values)) = self.recording else {
            return Ok(0);
        };
        let have = [values.start as u64, values.dropout_seeds[0], values.dropout_seeds[1]];
        if have[slot] != wanted {
            return Err(backend_error(op, "a recorded step passed a value that begin_step was not given"));
        }
        Ok(self.values.at(slot))
    }

    /// Copies a step's values to the device, in stream order before the step's kernels.
    fn write_values(&mut self, device: &Device, values: StepValues) -> Result<()> {
        let host = [values.start as u64, values.dropout_seeds[0], values.dropout_seeds[1]];
        // From pageable memory: CUDA stages the 24 bytes before returning, so `host` may go.
        let mut view = self.values.slice.slice_mut(0..3);
        device.stream.memcpy_htod(&host, &mut view).map_err(|e| driver_error("cuMemcpyHtoD (step values)", e))
    }

    /// `Backend::begin_step` (the batch already checked against the dataset): records a
    /// training step as a CUDA graph the second time a shape is seen (the first runs op by op,
    /// so scratch and cuBLAS are set up outside the capture) and replays it after, with
    /// `values` copied to the device first: one graph launch instead of ~40 launches.
    pub(crate) fn begin(
        &mut self,
        device: &Device,
        data: &CudaDataset,
        batch: usize,
        hyper: Adadelta,
        values: StepValues,
    ) -> Result<StepMode> {
        if !self.enabled || self.recording.is_some() {
            return Ok(StepMode::Run);
        }
        let key = StepKey {
            batch,
            data: [data.images.ptr, data.labels.ptr, data.order.ptr, data.len() as u64, data.sample_len as u64],
            hyper: [hyper.learning_rate.to_bits(), hyper.rho.to_bits(), hyper.epsilon.to_bits()],
        };
        match self.graphs.get(&key) {
            None => {
                self.graphs.insert(key, Recording::WarmedUp);
                Ok(StepMode::Run)
            }
            Some(Recording::Failed) => Ok(StepMode::Run),
            // The two dropout layers are told apart by their seeds: equal ones (a 2^-64 chance)
            // run op by op and the next step is recorded instead.
            Some(Recording::WarmedUp) if values.dropout_seeds[0] == values.dropout_seeds[1] => Ok(StepMode::Run),
            Some(Recording::WarmedUp) => {
                self.write_values(device, values)?;
                // Thread-local mode: an allocation or synchronisation on this thread during the
                // capture is an error (a bug here), while other threads' CUDA work is unaffected.
                device
                    .stream
                    .begin_capture(driver_sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .map_err(|e| driver_error("cuStreamBeginCapture", e))?;
                self.recording = Some((key, values));
                self.graphs.insert(key, Recording::Failed); // until end succeeds
                Ok(StepMode::Run)
            }
            Some(Recording::Graph(graph)) => {
                let exec = graph.0.cu_graph_exec();
                self.write_values(device, values)?;
                // SAFETY: a graph instantiated from this stream's capture, launched on the same
                // stream; every address in it belongs to buffers that live as long as the
                // backend and the network (scratch that is replaced drops the recordings).
                unsafe { driver::graph::launch(exec, device.stream.cu_stream()) }
                    .map_err(|e| driver_error("cuGraphLaunch (training step)", e))?;
                #[cfg(feature = "test-hooks")]
                {
                    self.stats.replayed += 1;
                }
                Ok(StepMode::Replayed)
            }
        }
    }

    /// `Backend::end_step`: ends a capture begun by `begin` and launches the new graph once (the
    /// capture ran nothing); true when the recording failed and was dropped.
    pub(crate) fn end(&mut self, device: &Device, ops_error: Option<&Error>) -> Result<bool> {
        let Some((key, _)) = self.recording.take() else {
            return Ok(false);
        };
        // Ends the capture on every path, so the stream never stays in capture mode.
        let captured = device.stream.end_capture(driver_sys::CUgraphInstantiate_flags(0));
        let why = match (ops_error, captured) {
            (None, Ok(Some(graph))) => {
                graph.launch().map_err(|e| driver_error("cuGraphLaunch (training step, first)", e))?;
                self.graphs.insert(key, Recording::Graph(StepGraph(graph)));
                #[cfg(feature = "test-hooks")]
                {
                    self.stats.recorded += 1;
                }
                return Ok(false);
            }
            (Some(e), _) => format!("an op failed while recording: {e}"),
            (None, Ok(None)) => "the capture was empty".to_string(),
            (None, Err(e)) => format!("{}", driver_error("cuStreamEndCapture", e)),
        };
        // The shape runs op by op from now on; only the tests ask why.
        #[cfg(feature = "test-hooks")]
        self.stats.failures.push(why);
        #[cfg(not(feature = "test-hooks"))]
        let _ = why;
        Ok(true)
    }

    /// How many steps were recorded and replayed so far, and why any recording failed.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn stats(&self) -> &StepGraphStats {
        &self.stats
    }
}
