//! `mnist train`: the sample's job end to end, headless. Loads (or downloads) MNIST, trains
//! with the chosen backend (CPU, CUDA, or CUDA when usable), prints Keras-style progress, the
//! test result, and writes the model and the history into --out-dir.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use mnist_core::codec::{mxnet, onnx};
use mnist_core::train::{Outcome, TrainConfig, Trainer, TrainerState};
use mnist_core::{Backend, Config, CpuBackend, Error};
use mnist_cuda::CudaBackend;
use serde_json::json;

use crate::atomic::{check_writable, remove_abandoned_temps, write_atomic};
use crate::backend_choice::{self, Chosen};
use crate::checkpoint_policy::CheckpointPolicy;
use crate::checkpoints;
use crate::cli::{ExportDtype, ModelFormat, TrainArgs};
use crate::commands::export;
use crate::datasource;
use crate::failure::core_failure;
use crate::report::{EpochRecord, Reporter, Style};
use crate::Failure;

pub fn run(args: TrainArgs, signals: &crate::Signals) -> Result<String, Failure> {
    let style = Style::choose(args.log_format, std::io::stdout().is_terminal());
    let heartbeat = (args.heartbeat_secs > 0).then(|| Duration::from_secs(args.heartbeat_secs));
    let reporter = Reporter::new(std::io::stdout(), style, args.quiet, heartbeat);

    if args.epochs == 0 || args.batch_size == 0 {
        return Err(Failure::new(crate::EXIT_BAD_INPUT, "--epochs and --batch-size must be positive".into()));
    }
    if !(args.learning_rate.is_finite() && args.learning_rate > 0.0 && args.epsilon.is_finite() && args.epsilon > 0.0) {
        return Err(Failure::new(
            crate::EXIT_BAD_INPUT,
            "--learning-rate and --epsilon must be positive numbers".into(),
        ));
    }
    // Checked with the other flags, before the data is loaded (or downloaded) and a GPU started.
    let checkpoints = match (&args.checkpoint_dir, Duration::try_from_secs_f64(args.checkpoint_interval)) {
        (Some(dir), Ok(interval)) => Some((dir.clone(), interval)),
        (Some(_), Err(_)) => {
            return Err(Failure::new(crate::EXIT_BAD_INPUT, "--checkpoint-interval must be a number of seconds".into()))
        }
        (None, _) => None,
    };
    std::fs::create_dir_all(&args.out_dir).map_err(|e| {
        Failure::new(crate::EXIT_BAD_INPUT, format!("cannot create --out-dir {}: {e}", args.out_dir.display()))
    })?;
    check_writable(&args.out_dir).map_err(|e| {
        Failure::new(crate::EXIT_BAD_INPUT, format!("cannot write into --out-dir {}: {e}", args.out_dir.display()))
    })?;
    let outputs = output_names(&args);
    remove_abandoned_temps(&args.out_dir, &outputs.each());
    // Held until training ends: a second trainer on the same folder refuses at once.
    let _checkpoint_dir_lock = match &args.checkpoint_dir {
        Some(dir) => checkpoints::lock(dir)?,
        None => None,
    };

    match backend_choice::choose(args.backend, args.precision)? {
        Chosen::Cuda(gpu) => train_on(*gpu, &args, checkpoints, style, signals, reporter),
        Chosen::Cpu { fallback } => {
            if let Some(why) = fallback {
                eprintln!("note: --backend auto: training on the CPU because {why}");
            }
            train_on(CpuBackend::new(args.threads), &args, checkpoints, style, signals, reporter)
        }
    }
}

/// The backend's name for logs ("cpu" or "cuda"), its CPU threads, if any, and its precision.
trait BackendInfo: Backend {
    const LABEL: &'static str;
    fn threads(&self) -> Option<usize>;
    fn precision(&self) -> &'static str;
    /// A line on f16 loss scaling after training, where there is one.
    fn loss_scale_note(&mut self) -> Option<String>;
}

impl BackendInfo for CpuBackend {
    const LABEL: &'static str = "cpu";
    fn threads(&self) -> Option<usize> {
        Some(CpuBackend::threads(self))
    }
    fn precision(&self) -> &'static str {
        "f32"
    }
    fn loss_scale_note(&mut self) -> Option<String> {
        None
    }
}

impl BackendInfo for CudaBackend {
    const LABEL: &'static str = "cuda";
    fn threads(&self) -> Option<usize> {
        None
    }
    fn precision(&self) -> &'static str {
        CudaBackend::precision(self).name()
    }
    fn loss_scale_note(&mut self) -> Option<String> {
        match self.loss_scale() {
            Ok(Some(s)) => {
                Some(format!("f16 loss scale {} at the end; {} steps skipped for overflow", s.scale, s.skipped_steps))
            }
            Ok(None) => None,
            Err(e) => Some(format!("f16 loss scale unreadable: {e}")),
        }
    }
}

/// Everything after choosing the backend: the Trainer is generic over it. `checkpoints`: the
/// --checkpoint-dir folder and interval, if any.
fn train_on<B: BackendInfo>(
    backend: B,
    args: &TrainArgs,
    checkpoints: Option<(std::path::PathBuf, Duration)>,
    style: Style,
    signals: &crate::Signals,
    mut reporter: Reporter<std::io::Stdout>,
) -> Result<String, Failure> {
    let device = backend.device_name();
    let (label, precision) = (B::LABEL, backend.precision());
    reporter.info(&format!("mnist {} - backend: {label} - device: {device} - precision: {precision}", env!("CARGO_PKG_VERSION")), json!({
        "version": env!("CARGO_PKG_VERSION"), "backend": label, "device": device, "threads": backend.threads(), "precision": precision,
    }));

    let load_started = std::time::Instant::now();
    let loaded = datasource::load(&args.data)?;
    if args.verbose > 0 {
        eprintln!("data loaded in {:.2}s", load_started.elapsed().as_secs_f64());
    }
    let (train, test) = (&loaded.split.train, &loaded.split.test);
    reporter.info(&format!("data: {}", loaded.source), json!({ "data": loaded.source }));
    reporter.info(
        &format!("x_train shape: ({}, {}, {}, {})", train.len(), train.height, train.width, train.channels),
        json!({ "x_train_shape": [train.len(), train.height, train.width, train.channels] }),
    );
    reporter.info(&format!("{} train samples", train.len()), json!({ "train_samples": train.len() }));
    reporter.info(&format!("{} test samples", test.len()), json!({ "test_samples": test.len() }));

    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        // A running-metrics read is one small device round trip: frequent for the live bar,
        // every 50 steps otherwise so a diverging loss is caught early.
        metrics_every: if style == Style::Live { 5 } else { 50 },
        optimizer: mnist_core::Adadelta {
            learning_rate: args.learning_rate,
            epsilon: args.epsilon,
            ..Default::default()
        },
    };
    let mut trainer = match args.checkpoint_dir.as_deref().and_then(checkpoints::newest) {
        Some((path, state)) => {
            if let Some(problem) =
                checkpoints::mismatch(&state, args.batch_size, args.seed, args.learning_rate, args.epsilon)
            {
                return Err(Failure::new(
                    crate::EXIT_BAD_INPUT,
                    format!(
                        "cannot resume from {}: {problem}; use the same settings or another --checkpoint-dir",
                        path.display()
                    ),
                ));
            }
            let mut trainer = Trainer::resume(backend, &state, train, Some(test))
                .map_err(|e| core_failure(&format!("cannot resume from {}", path.display()), e))?;
            trainer.set_epochs(args.epochs);
            let text = format!(
                "resuming from {} (epoch {}, step {})",
                path.display(),
                state.epochs_done + 1,
                state.step_in_epoch
            );
            reporter.info(&text, json!({ "resumed_from": path.display().to_string(), "epochs_done": state.epochs_done, "step": state.step_in_epoch }));
            reporter.records = records_from(&state);
            trainer
        }
        None => Trainer::new(backend, Config::default(), config, train, Some(test))
            .map_err(|e| core_failure("cannot start training", e))?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    signals.forward_to(stop.clone());
    let mut observer = CheckpointPolicy::new(reporter, stop, checkpoints);
    let outcome = trainer.run(&mut observer);
    let reporter = &mut observer.inner;
    match outcome {
        Ok(Outcome::Completed) => {}
        Ok(Outcome::Stopped) => {
            if let Some(failure) = observer.failure {
                return Err(failure);
            }
            let Some((code, name)) = signals.received() else {
                return Err(Failure::new(crate::EXIT_INTERNAL, "training stopped without a signal".into()));
            };
            let saved = match (&args.checkpoint_dir, &observer.last_saved) {
                (None, _) => String::from("no --checkpoint-dir, nothing saved"),
                (Some(_), Some(path)) => format!("checkpoint written to {}", path.display()),
                (Some(_), None) => String::from("no checkpoint written"),
            };
            return Err(Failure::new(
                code,
                format!(
                    "stopped by {name} at epoch {}, step {}; {saved}",
                    trainer.epochs_done() + 1,
                    trainer.step_in_epoch()
                ),
            ));
        }
        Err(e @ Error::NonFinite { .. }) => {
            // The trainer restored the last good parameters: keep them and the history.
            write_outputs(args, &mut trainer, &reporter.records)?;
            return Err(Failure::new(
                crate::EXIT_DIVERGED,
                format!(
                    "training diverged: {e}; the model of the last good epoch ({}) was written to {}",
                    trainer.epochs_done(),
                    args.out_dir.display()
                ),
            ));
        }
        Err(e) => return Err(core_failure("training failed", e)),
    }
    let test_metrics = match trainer.history().last() {
        Some((_, Some(t))) => *t,
        _ => trainer.evaluate_test().map_err(|e| core_failure("evaluation failed", e))?.unwrap_or_default(),
    };
    reporter.result(test_metrics);
    if let Some(note) = trainer.network.backend.loss_scale_note() {
        reporter.info(&note, json!({ "loss_scale": note }));
    }

    if args.verbose > 0 {
        for r in reporter.records.iter().filter(|r| r.seconds.is_finite()) {
            eprintln!("epoch {}: {:.0} samples/s including validation", r.epoch, train.len() as f64 / r.seconds);
        }
    }
    let written = write_outputs(args, &mut trainer, &reporter.records)?;
    reporter.info(&format!("model: {written}"), json!({ "model": written }));
    Ok(format!(
        "trained {} epochs: test accuracy {:.4}, test loss {:.4}",
        args.epochs, test_metrics.accuracy, test_metrics.loss
    ))
}

/// The files `mnist train` writes into --out-dir.
struct OutputNames {
    symbol: String,
    params: String,
    onnx: String,
}

impl OutputNames {
    const HISTORY: &'static str = "history.csv";
    const PLOT: &'static str = "training.svg";

    fn each(&self) -> [&str; 5] {
        [&self.params, &self.symbol, &self.onnx, Self::HISTORY, Self::PLOT]
    }
}

fn output_names(args: &TrainArgs) -> OutputNames {
    OutputNames {
        symbol: mxnet::symbol_file_name(&args.model_prefix),
        params: mxnet::params_file_name(&args.model_prefix, 0),
        onnx: format!("{}.onnx", args.model_prefix),
    }
}

/// The model, history.csv and training.svg, each atomically; returns a description of the model
/// files. The parameters go first, so a failure (a full disk) leaves no new file at all, not a
/// symbol file without its parameters.
fn write_outputs<B: Backend>(
    args: &TrainArgs,
    trainer: &mut Trainer<B>,
    records: &[EpochRecord],
) -> Result<String, Failure> {
    let names = output_names(args);
    let dtype = match args.dtype {
        ExportDtype::F32 => mxnet::Dtype::F32,
        ExportDtype::F16 => mxnet::Dtype::F16,
    };
    let params = trainer.network.params().map_err(|e| core_failure("cannot read the parameters", e))?;
    // --format: the MXNet files and/or PREFIX.onnx.
    let mut written = Vec::new();
    if args.format != ModelFormat::Onnx {
        let model = mxnet::export(&Config::default(), &params, dtype)
            .map_err(|e| core_failure("cannot export the model", e))?;
        write_output(&args.out_dir, &names.params, &model.params)?;
        write_output(&args.out_dir, &names.symbol, model.symbol.as_bytes())?;
        written.push(format!("{} and {} in {}", names.symbol, names.params, args.out_dir.display()));
    }
    if args.format != ModelFormat::Mxnet {
        let path = args.out_dir.join(&names.onnx);
        written.push(export::write_onnx(&path, &Config::default(), &params, args.dtype, onnx::InputLayout::Nhwc)?);
    }
    write_output(&args.out_dir, OutputNames::HISTORY, history_csv(records).as_bytes())?;
    write_output(&args.out_dir, OutputNames::PLOT, crate::plot::training_svg(records).as_bytes())?;
    Ok(written.join("; "))
}

fn write_output(out_dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Failure> {
    let path = out_dir.join(name);
    write_atomic(&path, bytes)
        .map_err(|e| Failure::new(crate::EXIT_BAD_INPUT, format!("cannot write {}: {e}", path.display())))
}

/// The epoch records of a resumed run's finished epochs (their times are not known).
fn records_from(state: &TrainerState) -> Vec<EpochRecord> {
    state
        .history
        .iter()
        .enumerate()
        .map(|(i, &(train, test))| EpochRecord { epoch: i + 1, train, test, seconds: f64::NAN })
        .collect()
}

fn history_csv(records: &[EpochRecord]) -> String {
    let mut csv = String::from("epoch,loss,acc,val_loss,val_acc,seconds\n");
    for r in records {
        let (vl, va) =
            r.test.map_or((String::new(), String::new()), |t| (format!("{:.6}", t.loss), format!("{:.6}", t.accuracy)));
        // A resumed run does not know how long its earlier epochs took.
        let seconds = if r.seconds.is_nan() { String::new() } else { format!("{:.3}", r.seconds) };
        csv.push_str(&format!("{},{:.6},{:.6},{vl},{va},{seconds}\n", r.epoch, r.train.loss, r.train.accuracy));
    }
    csv
}
