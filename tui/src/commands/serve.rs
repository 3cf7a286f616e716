//! `mnist serve`: checks the arguments, chooses where the forward passes run, reads the model
//! (the one shipped in the binary unless --model is given) and runs the server until SIGTERM.
//! Leaves out the server itself (serve/).

use std::time::Duration;

use crate::cli::{BackendChoice, PrecisionChoice, ServeArgs};
use crate::serve::batcher::{BatchSettings, Device};
use crate::serve::{Settings, StartupModel};
use crate::{backend_choice, model_file, Failure, EXIT_BAD_INPUT};

fn bad(message: String) -> Failure {
    Failure::new(EXIT_BAD_INPUT, message)
}

fn seconds(value: f64, flag: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value).map_err(|_| bad(format!("{flag} must be a number of seconds, not {value}")))
}

pub fn run(args: ServeArgs) -> Result<String, Failure> {
    for (value, flag) in
        [(args.batch_size, "--batch-size"), (args.queue_size, "--queue-size"), (args.io_threads, "--io-threads")]
    {
        if value == 0 {
            return Err(bad(format!("{flag} must be at least 1")));
        }
    }
    if args.max_body_bytes == 0 || args.max_image_pixels == 0 || args.max_tensor_images == 0 {
        return Err(bad("--max-body-bytes, --max-image-pixels and --max-tensor-images must be at least 1".into()));
    }
    let timeout = seconds(args.timeout, "--timeout")?;
    if timeout.is_zero() {
        return Err(bad("--timeout must be more than 0 seconds".into()));
    }
    let device = match backend_choice::choose(args.backend, PrecisionChoice::F32)? {
        // The workers open the GPU themselves; this one only proved that it is there.
        backend_choice::Chosen::Cuda(_) => Device::Cuda,
        backend_choice::Chosen::Cpu { fallback } => {
            if let Some(why) = fallback.filter(|_| args.backend == BackendChoice::Auto) {
                eprintln!("mnist serve: no usable GPU ({why}); serving on the CPU");
            }
            Device::Cpu
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let settings = Settings {
        host: args.host,
        port: args.port,
        management_host: args.management_host,
        management_port: args.management_port,
        metrics_port: args.metrics_port,
        batch: BatchSettings {
            device,
            workers: if args.workers == 0 { cores } else { args.workers },
            batch_size: args.batch_size,
            max_batch_delay: Duration::from_millis(args.max_batch_delay),
            queue_size: args.queue_size,
            max_pixels: args.max_image_pixels,
        },
        max_body_bytes: args.max_body_bytes,
        timeout,
        drain_timeout: seconds(args.drain_timeout, "--drain-timeout")?,
        shutdown_delay: seconds(args.shutdown_delay, "--shutdown-delay")?,
        max_connections: args.max_connections.max(1),
        max_tensor_images: args.max_tensor_images,
        io_threads: args.io_threads,
        log: (!args.quiet).then_some(args.log_format),
    };
    let (url, imported) = match &args.model {
        Some(prefix) => (prefix.clone(), model_file::load(prefix, args.epoch)?),
        None => ("shipped".to_string(), model_file::shipped()?),
    };
    let startup =
        vec![StartupModel { name: args.model_name.clone(), url, config: imported.config, params: imported.params }];
    crate::serve::run(settings, startup).map_err(bad)
}
