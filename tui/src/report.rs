//! Turns training events into log output: a live Keras-style progress bar on a terminal;
//! otherwise (`kubectl logs`) one line per epoch plus rare heartbeats, never `\r` or ANSI;
//! or one JSON object per line. Also keeps the per-epoch timings for history.csv. Leaves out
//! steering the run (stopping, checkpoints): that is checkpoint_policy.rs, which wraps this.

use std::io::Write;
use std::time::{Duration, Instant};

use mnist_core::model::Metrics;
use mnist_core::train::{Control, Event, Observer};
use serde_json::json;

use crate::cli::LogFormat;

/// Heartbeat lines per epoch at most (plain and JSON logs).
pub const MAX_HEARTBEATS_PER_EPOCH: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A terminal: redraw a progress line in place.
    Live,
    /// Plain lines for log collectors.
    Lines,
    Json,
}

impl Style {
    pub fn choose(format: LogFormat, stdout_is_terminal: bool) -> Self {
        match (format, stdout_is_terminal) {
            (LogFormat::Json, _) => Style::Json,
            (LogFormat::Text, true) => Style::Live,
            (LogFormat::Text, false) => Style::Lines,
        }
    }
}

/// One finished epoch, as history.csv records it.
#[derive(Clone, Copy, Debug)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train: Metrics,
    pub test: Option<Metrics>,
    pub seconds: f64,
}

pub struct Reporter<W: Write> {
    out: W,
    style: Style,
    quiet: bool,
    heartbeat: Option<Duration>,
    epochs: usize,
    steps_per_epoch: usize,
    train_samples: usize,
    run_start: Instant,
    epoch_start: Instant,
    last_output: Instant,
    steps_done_in_run: usize,
    heartbeats_this_epoch: usize,
    last_running: Option<Metrics>,
    pub records: Vec<EpochRecord>,
}

impl<W: Write> Reporter<W> {
    pub fn new(out: W, style: Style, quiet: bool, heartbeat: Option<Duration>) -> Self {
        let now = Instant::now();
        Reporter {
            out,
            style,
            quiet,
            heartbeat,
            epochs: 0,
            steps_per_epoch: 0,
            train_samples: 0,
            run_start: now,
            epoch_start: now,
            last_output: now,
            steps_done_in_run: 0,
            heartbeats_this_epoch: 0,
            last_running: None,
            records: Vec::new(),
        }
    }

    /// A free-form informational line (start-up facts), or a JSON record with `fields`.
    pub fn info(&mut self, text: &str, fields: serde_json::Value) {
        if self.quiet {
            return;
        }
        match self.style {
            Style::Json => {
                let mut record = json!({ "event": "info", "message": text });
                if let (Some(obj), Some(extra)) = (record.as_object_mut(), fields.as_object()) {
                    obj.extend(extra.clone());
                }
                self.line(&record.to_string());
            }
            _ => self.line(text),
        }
    }

    /// The final result lines, printed even when quiet (the seed's wording).
    pub fn result(&mut self, test: Metrics) {
        match self.style {
            Style::Json => {
                let record = json!({ "event": "result", "test_loss": test.loss, "test_accuracy": test.accuracy, "test_samples": test.samples });
                self.line(&record.to_string());
            }
            _ => {
                self.line(&format!("Test loss: {:.4}", test.loss));
                self.line(&format!("Test accuracy: {:.4}", test.accuracy));
            }
        }
    }

    pub fn line(&mut self, text: &str) {
        // A closed stdout (a vanished log reader) must not stop training.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Time to the end of the run from the rate of the steps this process trained, shown once
    /// a few steps give a stable rate. `position` is the global step just finished.
    fn eta(&self, now: Instant, position: usize) -> Option<Duration> {
        let elapsed = now - self.run_start;
        if self.steps_done_in_run < 3 || elapsed < Duration::from_secs(1) {
            return None;
        }
        let total = self.epochs * self.steps_per_epoch;
        let per_step = elapsed.as_secs_f64() / self.steps_done_in_run as f64;
        Some(Duration::from_secs_f64(per_step * total.saturating_sub(position) as f64))
    }

    fn on_step(&mut self, epoch: usize, step: usize, samples_done: usize, running: Option<Metrics>) {
        self.steps_done_in_run += 1;
        if running.is_some() {
            self.last_running = running;
        }
        let now = Instant::now();
        let position = (epoch - 1) * self.steps_per_epoch + step;
        match self.style {
            Style::Live => {
                if now - self.last_output < Duration::from_millis(100) || self.quiet {
                    return;
                }
                self.last_output = now;
                let eta = self.eta(now, position).map_or(String::new(), |d| format!(" - ETA: {}", human(d)));
                let metrics = self
                    .last_running
                    .map_or(String::new(), |m| format!(" - loss: {:.4} - acc: {:.4}", m.loss, m.accuracy));
                let bar = progress_bar(samples_done, self.train_samples, 30);
                let width = self.train_samples.to_string().len();
                let _ = write!(self.out, "\r{samples_done:>width$}/{} {bar}{eta}{metrics}\x1b[K", self.train_samples);
                let _ = self.out.flush();
            }
            Style::Lines | Style::Json => {
                let Some(every) = self.heartbeat else { return };
                // At most every `every` and at most a few per epoch, so even a slow machine's
                // 12-epoch log stays short (under 60 lines).
                if now - self.last_output < every
                    || self.quiet
                    || self.heartbeats_this_epoch >= MAX_HEARTBEATS_PER_EPOCH
                {
                    return;
                }
                self.last_output = now;
                self.heartbeats_this_epoch += 1;
                let epoch_secs = (now - self.epoch_start).as_secs_f64();
                let rate = samples_done as f64 / epoch_secs.max(1e-9);
                let eta = self.eta(now, position);
                if self.style == Style::Json {
                    let record = json!({
                        "event": "progress", "epoch": epoch, "epochs": self.epochs, "step": step,
                        "steps": self.steps_per_epoch, "samples_per_s": rate.round(),
                        "eta_s": eta.map(|d| d.as_secs()),
                    });
                    self.line(&record.to_string());
                } else {
                    let eta = eta.map_or(String::new(), |d| format!(" - ETA {}", human(d)));
                    self.line(&format!(
                        "Epoch {epoch}/{} - step {step}/{} - {rate:.0} samples/s{eta}",
                        self.epochs, self.steps_per_epoch
                    ));
                }
            }
        }
    }

    fn on_epoch_end(&mut self, epoch: usize, train: Metrics, test: Option<Metrics>) {
        let seconds = self.epoch_start.elapsed().as_secs_f64();
        self.records.push(EpochRecord { epoch, train, test, seconds });
        self.last_output = Instant::now();
        if self.quiet {
            return;
        }
        let val = test.map_or(String::new(), |t| format!(" - val_loss: {:.4} - val_acc: {:.4}", t.loss, t.accuracy));
        let summary = format!("{} - loss: {:.4} - acc: {:.4}{val}", human_secs(seconds), train.loss, train.accuracy);
        match self.style {
            Style::Live => {
                let bar = progress_bar(self.train_samples, self.train_samples, 30);
                let _ = write!(self.out, "\r{}/{} {bar} - ", self.train_samples, self.train_samples);
                self.line(&format!("{summary}\x1b[K"));
            }
            Style::Lines => self.line(&format!("Epoch {epoch}/{} - {summary}", self.epochs)),
            Style::Json => {
                let record = json!({
                    "event": "epoch_end", "epoch": epoch, "epochs": self.epochs, "seconds": seconds,
                    "loss": train.loss, "acc": train.accuracy,
                    "val_loss": test.map(|t| t.loss), "val_acc": test.map(|t| t.accuracy),
                });
                self.line(&record.to_string());
            }
        }
    }
}

/// Only prints: always answers `Continue`.
impl<W: Write> Observer for Reporter<W> {
    fn on_event(&mut self, event: &Event) -> Control {
        match *event {
            Event::Started { epochs, steps_per_epoch, train_samples, .. } => {
                self.run_start = Instant::now();
                self.last_output = self.run_start;
                self.epochs = epochs;
                self.steps_per_epoch = steps_per_epoch;
                self.train_samples = train_samples;
            }
            Event::EpochStarted { epoch } => {
                self.epoch_start = Instant::now();
                self.heartbeats_this_epoch = 0;
                self.last_running = None;
                if self.style == Style::Live && !self.quiet {
                    self.line(&format!("Epoch {epoch}/{}", self.epochs));
                }
            }
            Event::Step { epoch, step, samples_done, running, .. } => self.on_step(epoch, step, samples_done, running),
            Event::EpochEnded { epoch, train, test } => self.on_epoch_end(epoch, train, test),
            Event::Finished { .. } => {}
        }
        Control::Continue
    }
}

fn progress_bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
    let mut bar = String::with_capacity(width + 2);
    bar.push('[');
    for i in 0..width {
        bar.push(if i < filled || (filled == width) {
            '='
        } else if i == filled {
            '>'
        } else {
            '.'
        });
    }
    bar.push(']');
    bar
}

/// "37s", "2m05s", "1h02m".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    }
}

/// Whole seconds like Keras, but a tenth below ten seconds so fast epochs are not "0s".
fn human_secs(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1}s")
    } else {
        human(Duration::from_secs_f64(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(loss: f32, accuracy: f32) -> Metrics {
        Metrics { loss, accuracy, samples: 100 }
    }

    fn run(style: Style) -> String {
        let mut buf = Vec::new();
        {
            let mut r = Reporter::new(&mut buf, style, false, Some(Duration::from_secs(30)));
            r.on_event(&Event::Started { epochs: 2, steps_per_epoch: 3, train_samples: 300, test_samples: 50 });
            for epoch in 1..=2 {
                r.on_event(&Event::EpochStarted { epoch });
                for step in 1..=3 {
                    r.on_event(&Event::Step {
                        epoch,
                        step,
                        steps_per_epoch: 3,
                        samples_done: step * 100,
                        running: None,
                    });
                }
                r.on_event(&Event::EpochEnded { epoch, train: metrics(0.5, 0.9), test: Some(metrics(0.25, 0.95)) });
            }
            r.result(metrics(0.25, 0.95));
        }
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn plain_lines_have_one_line_per_epoch_and_no_control_characters() {
        let text = run(Style::Lines);
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("Epoch 1/2 - ")
                && lines[0].ends_with("- loss: 0.5000 - acc: 0.9000 - val_loss: 0.2500 - val_acc: 0.9500"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[2], "Test loss: 0.2500");
        assert_eq!(lines[3], "Test accuracy: 0.9500");
    }

    #[test]
    fn json_lines_parse() {
        let text = run(Style::Json);
        let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["event"], "epoch_end");
        assert_eq!(records[1]["epoch"], 2);
        assert_eq!(records[2]["test_accuracy"].as_f64().unwrap() as f32, 0.95);
    }

    #[test]
    fn heartbeats_are_spaced_and_capped_per_epoch() {
        let mut buf = Vec::new();
        {
            let mut r = Reporter::new(&mut buf, Style::Lines, false, Some(Duration::ZERO));
            r.on_event(&Event::Started { epochs: 2, steps_per_epoch: 50, train_samples: 5000, test_samples: 10 });
            for epoch in 1..=2 {
                r.on_event(&Event::EpochStarted { epoch });
                for step in 1..=50 {
                    r.on_event(&Event::Step {
                        epoch,
                        step,
                        steps_per_epoch: 50,
                        samples_done: step * 100,
                        running: None,
                    });
                }
                r.on_event(&Event::EpochEnded { epoch, train: metrics(0.5, 0.9), test: None });
            }
        }
        let text = String::from_utf8(buf).unwrap();
        let beats = text.lines().filter(|l| l.contains(" - step ")).count();
        assert_eq!(beats, 2 * MAX_HEARTBEATS_PER_EPOCH, "{text}");
        assert!(text.lines().any(|l| l.starts_with("Epoch 1/2 - step 1/50 - ")), "{text}");
    }

    #[test]
    fn progress_bar_shapes() {
        assert_eq!(progress_bar(0, 10, 5), "[>....]");
        assert_eq!(progress_bar(5, 10, 4), "[==>.]");
        assert_eq!(progress_bar(10, 10, 3), "[===]");
    }
}
