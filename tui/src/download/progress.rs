//! Progress events of a fetch and a small renderer for them: a one-line bar redrawn with `\r`
//! on a terminal, a few plain lines otherwise. Leaves out the TUI, which renders the events itself.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Source;

/// What a fetch reports while it works, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A cached file failed its check and was deleted; it is fetched again.
    Discarded { path: PathBuf, reason: String },
    /// A download from the start; `total` is the size the server announced.
    Started { url: String, total: Option<u64> },
    /// A download picked up at byte `offset` of a partial file.
    Resumed { url: String, offset: u64, total: Option<u64> },
    /// Bytes of the file on disk so far (counting a resumed part).
    Bytes { done: u64, total: Option<u64> },
    /// An attempt failed; attempt number `attempt` of `attempts` starts after `delay`.
    Retrying { url: String, attempt: u32, attempts: u32, delay: Duration, reason: String },
    /// A URL failed for good (or ran out of retries); `next` is tried at once.
    NextUrl { reason: String, next: String },
    /// Another process holds the cache entry's lock (it is downloading the file): this one
    /// waits for it, then uses the file it installed or downloads itself if it failed.
    Waiting { lock: PathBuf },
    /// A file passed its size and digest check.
    Verified { path: PathBuf },
    /// The fetch is over: the file to read.
    Done { path: PathBuf, source: Source, bytes: u64 },
}

/// The bar is redrawn at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;

/// Writes progress for people: a bar on a terminal, otherwise start, each quarter and done
/// as plain lines (no `\r`, no ANSI), so pod logs stay readable. Write errors are ignored:
/// a broken stderr must not fail the download.
pub struct ProgressRenderer<W: Write> {
    out: W,
    bar: bool,
    /// When the bar was last drawn; `None` when no bar line is open.
    last_draw: Option<Instant>,
    /// Quarters already reported in plain mode (1 = 25%).
    quarters_shown: u64,
    /// Start of the current download and the byte it started at, for the speed.
    started: Option<(Instant, u64)>,
}

impl ProgressRenderer<io::Stderr> {
    /// Renders to stderr, as a bar only when stderr is a terminal.
    pub fn stderr() -> Self {
        let bar = io::stderr().is_terminal();
        Self::new(io::stderr(), bar)
    }
}

impl<W: Write> ProgressRenderer<W> {
    pub fn new(out: W, bar: bool) -> Self {
        Self { out, bar, last_draw: None, quarters_shown: 0, started: None }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn handle(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Discarded { path, reason } => {
                self.line(&format!("Cached {} is unusable ({reason}); fetching it again", path.display()));
            }
            ProgressEvent::Started { url, total } => {
                // Keras's own wording.
                let size = total.map(|t| format!(" ({})", megabytes(t))).unwrap_or_default();
                self.line(&format!("Downloading data from {url}{size}"));
                self.begin(0, *total);
            }
            ProgressEvent::Resumed { url, offset, total } => {
                let of = total.map(|t| format!(" of {}", megabytes(t))).unwrap_or_default();
                self.line(&format!("Resuming {url} at {}{of}", megabytes(*offset)));
                self.begin(*offset, *total);
            }
            ProgressEvent::Bytes { done, total } => self.bytes(*done, *total),
            ProgressEvent::Retrying { url, attempt, attempts, delay, reason } => {
                self.line(&format!(
                    "Retrying {url} in {:.1}s (attempt {attempt} of {attempts}) after: {reason}",
                    delay.as_secs_f64()
                ));
            }
            ProgressEvent::NextUrl { reason, next } => self.line(&format!("{reason}; trying {next}")),
            ProgressEvent::Waiting { lock } => {
                self.line(&format!(
                    "Waiting for another process downloading into the cache (it holds {})",
                    lock.display()
                ));
            }
            // The Done line says it; a separate line would only repeat it.
            ProgressEvent::Verified { .. } => {}
            ProgressEvent::Done { path, source, bytes } => {
                let how = match source {
                    Source::Cache => "Using cached".to_string(),
                    Source::Reused => "Using existing".to_string(),
                    Source::Downloaded { .. } => "Saved".to_string(),
                };
                self.line(&format!("{how} {} ({})", path.display(), megabytes(*bytes)));
            }
        }
    }

    fn begin(&mut self, offset: u64, total: Option<u64>) {
        self.started = Some((Instant::now(), offset));
        // A resumed download does not repeat the quarters already behind it.
        self.quarters_shown = match total {
            Some(t) if t > 0 => offset.saturating_mul(4) / t,
            _ => 0,
        };
    }

    fn bytes(&mut self, done: u64, total: Option<u64>) {
        if self.bar {
            let finished = total == Some(done);
            let due = self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW_EVERY);
            if due || finished {
                self.draw_bar(done, total);
            }
        } else if let Some(total) = total.filter(|&t| t > 0) {
            // 25%, 50%, 75%; 100% is the Done line.
            let quarters = done.saturating_mul(4) / total;
            if quarters > self.quarters_shown && quarters < 4 {
                self.quarters_shown = quarters;
                self.line(&format!("Downloaded {}% ({} of {})", quarters * 25, megabytes(done), megabytes(total)));
            }
        }
    }

    fn draw_bar(&mut self, done: u64, total: Option<u64>) {
        let speed = match self.started {
            Some((at, from)) if at.elapsed().as_secs_f64() > 0.0 => {
                format!(" {}/s", megabytes(((done.saturating_sub(from)) as f64 / at.elapsed().as_secs_f64()) as u64))
            }
            _ => String::new(),
        };
        let text = match total.filter(|&t| t > 0) {
            Some(total) => {
                let filled = (done.min(total) as f64 / total as f64 * BAR_WIDTH as f64) as usize;
                format!(
                    "[{}{}] {:>3}% {} of {}{speed}",
                    "=".repeat(filled),
                    " ".repeat(BAR_WIDTH - filled),
                    done.min(total) * 100 / total,
                    megabytes(done),
                    megabytes(total)
                )
            }
            None => format!("{}{speed}", megabytes(done)),
        };
        // `\x1b[K` clears what a longer previous line left behind.
        let _ = write!(self.out, "\r{text}\x1b[K");
        let _ = self.out.flush();
        self.last_draw = Some(Instant::now());
    }

    /// A whole line; ends an open bar line first so the two do not mix.
    fn line(&mut self, text: &str) {
        if self.last_draw.take().is_some() {
            let _ = writeln!(self.out);
        }
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

/// Decimal megabytes with one decimal, like `11.5 MB`.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
