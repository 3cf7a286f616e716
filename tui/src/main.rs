//! The `mnist` binary: `mnist train` (headless, for pods and scripts), `predict`, `bench`,
//! `export`, `serve` (the model over HTTP) and the interactive app (`mnist tui`, or `mnist`
//! alone on a terminal).
//! Errors become one clear sentence on stderr and a documented exit code; on exit a one-line
//! summary goes to /dev/termination-log when it is writable (Kubernetes' convention).

mod app;
mod atomic;
mod backend_choice;
mod checkpoint_policy;
mod checkpoints;
mod cli;
mod commands;
mod datasource;
mod download;
mod failure;
mod model_file;
mod plot;
mod preprocess;
mod report;
mod serve;

pub use failure::{Failure, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERNAL, EXIT_SIGINT, EXIT_SIGTERM, EXIT_TRANSIENT};

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use std::io::IsTerminal;

use clap::Parser;

/// SIGINT and SIGTERM ask the running command to stop after the current step.
#[derive(Default)]
pub struct Signals {
    last: Arc<AtomicI32>,
    stop_flags: Mutex<Vec<Arc<AtomicBool>>>,
}

impl Signals {
    fn install() -> Arc<Self> {
        let signals = Arc::new(Signals::default());
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let last = signals.last.clone();
            // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
            let registered =
                unsafe { signal_hook::low_level::register(signal, move || last.store(signal, Ordering::SeqCst)) };
            if let Err(e) = registered {
                eprintln!("warning: cannot handle signal {signal}: {e}");
            }
        }
        // A watcher thread turns the signal into stop flags (a handler must not lock).
        let watched = signals.clone();
        std::thread::spawn(move || loop {
            if watched.last.load(Ordering::SeqCst) != 0 {
                for flag in watched.stop_flags.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
        signals
    }

    /// `flag` becomes true once SIGINT or SIGTERM arrives.
    pub fn forward_to(&self, flag: Arc<AtomicBool>) {
        self.stop_flags.lock().unwrap_or_else(|e| e.into_inner()).push(flag);
    }

    /// The exit code and name of the signal received, if any.
    pub fn received(&self) -> Option<(i32, &'static str)> {
        match self.last.load(Ordering::SeqCst) {
            signal_hook::consts::SIGINT => Some((EXIT_SIGINT, "SIGINT")),
            signal_hook::consts::SIGTERM => Some((EXIT_SIGTERM, "SIGTERM")),
            _ => None,
        }
    }
}

fn termination_log(summary: &str) {
    use std::io::Write;
    let path = std::env::var_os("MNIST_TERMINATION_LOG").unwrap_or_else(|| "/dev/termination-log".into());
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).truncate(true).open(&path) {
        let _ = writeln!(f, "{summary}");
    }
}

fn main() {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        // Only training stops gracefully; the other commands keep the default signal handling.
        Some(cli::Command::Train(args)) => commands::train::run(args, &Signals::install()),
        Some(cli::Command::Predict(args)) => commands::predict::run(args),
        Some(cli::Command::Bench(args)) => commands::bench::run(args),
        // The server handles SIGTERM and SIGINT itself (drain, then exit 0).
        Some(cli::Command::Serve(args)) => commands::serve::run(args),
        Some(cli::Command::Export(args)) => commands::export::run(args),
        Some(cli::Command::Tui(args)) => app::run(args, &Signals::install()),
        // On a terminal `mnist` alone opens the app; in scripts and pods it only prints help.
        None if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() => {
            app::run(cli::Cli::tui_defaults(), &Signals::install())
        }
        None => {
            use clap::CommandFactory;
            let _ = cli::Cli::command().print_help();
            println!("\nOn a terminal, `mnist` with no command (or `mnist tui`) opens the interactive app.");
            Ok(String::new())
        }
    };
    match result {
        Ok(summary) => {
            if !summary.is_empty() {
                termination_log(&summary);
            }
        }
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            termination_log(&format!("error: {}", failure.message));
            std::process::exit(failure.code);
        }
    }
}
