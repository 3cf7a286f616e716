//! The interactive app (`mnist tui`, or `mnist` alone on a terminal): the terminal set up and
//! always restored (on exit, error and panic), one channel for every event, the effects of
//! `update` carried out by the workers, and redraws capped at about 20 per second.
//! Leaves out the state and its rules (update.rs, views/), drawing (render.rs) and the
//! threads (worker.rs).

mod layout;
mod models;
mod msg;
mod pad;
mod render;
mod series;
mod shared;
mod update;
mod views;
mod widgets;
mod worker;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{self as terminal_event, DisableMouseCapture, EnableMouseCapture, Event as TerminalEvent};
use crossterm::execute;
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;

use crate::cli::TuiArgs;
use crate::Failure;
use msg::{Effect, Msg, RunCommand};
use update::{update, App};
use views::train::Settings;
use worker::Workers;

/// At most one redraw per this long (about 20 per second).
pub const FRAME_INTERVAL: Duration = Duration::from_millis(50);

/// Decides when to redraw: only when something changed, and not sooner than FRAME_INTERVAL
/// after the last redraw.
#[derive(Debug, Default)]
pub struct FrameLimiter {
    last: Option<Instant>,
    dirty: bool,
}

impl FrameLimiter {
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// Whether to draw now; if so, counts it as drawn.
    pub fn should_draw(&mut self, now: Instant) -> bool {
        let due = self.last.is_none_or(|last| now.duration_since(last) >= FRAME_INTERVAL);
        if self.dirty && due {
            self.dirty = false;
            self.last = Some(now);
            true
        } else {
            false
        }
    }

    /// How long to wait for the next event before checking again.
    pub fn wait(&self, now: Instant) -> Duration {
        match (self.dirty, self.last) {
            (true, Some(last)) => FRAME_INTERVAL.saturating_sub(now.duration_since(last)),
            (true, None) => Duration::ZERO,
            (false, _) => FRAME_INTERVAL,
        }
    }
}

/// Leaves raw mode, the alternate screen and mouse capture; harmless when already left.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), DisableMouseCapture, LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Restores the terminal when dropped, including while unwinding from a panic.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<TerminalGuard> {
        // A panic on the UI thread: restore the terminal, then the message lands on the normal
        // screen. The other threads catch their panics and report them in the app (worker.rs),
        // so their messages would only scribble over the screen.
        let previous = std::panic::take_hook();
        let ui_thread = std::thread::current().id();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == ui_thread {
                restore_terminal();
                previous(info);
            }
        }));
        enable_raw_mode()?;
        let guard = TerminalGuard;
        execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn settings_from(args: &TuiArgs) -> Settings {
    Settings {
        epochs: args.epochs.max(1),
        batch_size: args.batch_size.max(1),
        backend: args.backend,
        precision: args.precision,
        seed: args.seed,
        data: args.data.data.as_ref().map_or(String::new(), |p| p.display().to_string()),
        limit: args.data.limit.unwrap_or(0),
        threads: args.threads,
        download: crate::cli::DataArgs { data: None, limit: None, ..args.data.clone() },
    }
}

/// The model the app starts with: --model, else the shipped one.
fn first_model(args: &TuiArgs) -> Result<models::Model, String> {
    match &args.model {
        Some(prefix) => models::load(prefix),
        None => models::shipped(),
    }
}

pub fn run(args: TuiArgs, signals: &crate::Signals) -> Result<String, Failure> {
    if !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
        return Err(Failure::new(
            crate::EXIT_BAD_INPUT,
            "the app needs a terminal on stdin and stdout; for logs use `mnist train`".into(),
        ));
    }
    // Checked before the screen is taken over, so a bad --model is one clear line.
    let model = first_model(&args).map_err(|e| Failure::new(crate::EXIT_BAD_INPUT, e))?;
    let (mut app, effects) = App::new(settings_from(&args), Ok(model), args.out_dir.clone());
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    signals.forward_to(stop.clone());

    let guard = TerminalGuard::enter()
        .map_err(|e| Failure::new(crate::EXIT_INTERNAL, format!("cannot set up the terminal: {e}")))?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
        .map_err(|e| Failure::new(crate::EXIT_INTERNAL, format!("cannot set up the terminal: {e}")))?;
    spawn_input_reader(tx.clone());
    let mut workers = Workers::new(tx);
    for effect in effects {
        workers.carry_out(effect);
    }
    let result = event_loop(&mut app, &mut terminal, &rx, &mut workers, &stop);
    drop(guard);
    // A run still going was told to stop (quit or signal); the process exit ends its thread.
    result.map(|()| String::new())
}

fn event_loop(
    app: &mut App,
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    rx: &Receiver<Msg>,
    workers: &mut Workers,
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::new(crate::EXIT_INTERNAL, format!("cannot draw: {e}"));
    let mut frames = FrameLimiter::default();
    frames.changed();
    if let Ok(size) = terminal.size() {
        app.screen = Rect::new(0, 0, size.width, size.height);
    }
    loop {
        match rx.recv_timeout(frames.wait(Instant::now())) {
            Ok(msg) => {
                for effect in update(app, msg) {
                    workers.carry_out(effect);
                }
                // Take whatever else is queued before drawing (a burst of drag events).
                while let Ok(msg) = rx.try_recv() {
                    for effect in update(app, msg) {
                        workers.carry_out(effect);
                    }
                }
                frames.changed();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if stop.load(Ordering::SeqCst) {
            workers.carry_out(Effect::ControlRun(RunCommand::Stop));
            return Ok(());
        }
        if app.quit {
            return Ok(());
        }
        if frames.should_draw(Instant::now()) {
            app.refresh_prediction();
            terminal.draw(|frame| render::render(frame, app)).map_err(failed)?;
            let size = terminal.size().map_err(failed)?;
            app.screen = Rect::new(0, 0, size.width, size.height);
        }
    }
}

/// Terminal events onto the channel; a read error ends the reader (the app keeps its other
/// events and quits by key or signal).
fn spawn_input_reader(tx: Sender<Msg>) {
    std::thread::spawn(move || loop {
        let msg = match terminal_event::read() {
            Ok(TerminalEvent::Key(key)) => Msg::Key(key),
            Ok(TerminalEvent::Mouse(mouse)) => Msg::Mouse(mouse),
            Ok(TerminalEvent::Resize(w, h)) => Msg::Resize(w, h),
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.send(msg).is_err() {
            return;
        }
    });
}
