//! The app's state (the shared part, each view's own, the prompts) and `update`, which applies
//! one message to it without I/O and returns the effects (threads, files, the worker's pause and
//! stop) for the event loop and the workers to carry out. Keys every view shares live here.
//! Leaves out each view's own keys and drawing (views/) and the frame around them (render.rs).

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::layout::{self, layout, View};
use super::models::Model;
use super::msg::{DataMsg, Effect, ExploreMsg, Msg};
use super::shared::{DataState, Shared};
use super::views::draw::DrawView;
use super::views::explore::ExploreView;
use super::views::train::{Settings, TrainView};

#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Quitting would stop a running training.
    ConfirmQuit,
    /// A checkpoint prefix to save the model to or load one from.
    Checkpoint(CheckpointPrompt),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointAction {
    Save,
    Load,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPrompt {
    pub action: CheckpointAction,
    pub input: String,
    /// Why the last try failed (the prompt stays open, the path as typed).
    pub error: Option<String>,
    /// Enter was pressed and the save or load is under way.
    pub busy: bool,
}

impl CheckpointPrompt {
    fn open(action: CheckpointAction, input: String) -> Prompt {
        Prompt::Checkpoint(CheckpointPrompt { action, input, error: None, busy: false })
    }
}

pub struct App {
    pub view: View,
    pub shared: Shared,
    pub train: TrainView,
    pub draw: DrawView,
    pub explore: ExploreView,
    pub prompt: Option<Prompt>,
    /// The terminal's size at the last draw or resize, for mouse hit-testing.
    pub screen: Rect,
    pub out_dir: PathBuf,
    pub quit: bool,
}

impl App {
    /// The app before any event; returns it with the effects to start with (loading the data).
    pub fn new(settings: Settings, model: Result<Model, String>, out_dir: PathBuf) -> (App, Vec<Effect>) {
        let args = settings.data_args();
        let mut app = App {
            view: View::Train,
            shared: Shared::new(DataState::Loading(args.clone())),
            train: TrainView::new(settings),
            draw: DrawView::default(),
            explore: ExploreView::default(),
            prompt: None,
            screen: Rect::new(0, 0, 120, 40),
            out_dir,
            quit: false,
        };
        match model {
            Ok(model) => {
                if let Err(e) = app.shared.set_model(model) {
                    app.shared.error(e);
                }
            }
            Err(e) => app.shared.error(e),
        }
        (app, vec![Effect::LoadData(args)])
    }

    /// The draw view's prediction, if the pad or the model changed (once per frame).
    pub fn refresh_prediction(&mut self) {
        self.draw.refresh_prediction(&mut self.shared);
    }

    fn suggested_prefix(&self) -> String {
        self.out_dir.join("mnist_cnn").display().to_string()
    }
}

/// Applies one message; returns the effects to carry out.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let mut effects = match msg {
        Msg::Key(key) if key.kind != KeyEventKind::Release => on_key(app, key),
        Msg::Key(_) => Vec::new(),
        Msg::Mouse(mouse) => {
            on_mouse(app, mouse);
            Vec::new()
        }
        Msg::Resize(w, h) => {
            app.screen = Rect::new(0, 0, w, h);
            Vec::new()
        }
        Msg::Worker(m) => {
            app.train.on_worker(&mut app.shared, m);
            Vec::new()
        }
        Msg::Data(m) => on_data(app, m),
        Msg::DataProgress { text, args } => {
            if matches!(&app.shared.data, DataState::Loading(a) if *a == args) {
                app.shared.info(text);
            }
            Vec::new()
        }
        Msg::Explore(ExploreMsg::Done { generation, result }) => {
            app.explore.on_predictions(&app.shared, generation, result);
            Vec::new()
        }
        Msg::ModelLoaded(result) => {
            let text = result.and_then(|model| {
                let text = format!("Model {}", model.origin);
                app.shared.set_model(model).map(|()| text)
            });
            checkpoint_done(app, CheckpointAction::Load, text);
            Vec::new()
        }
        Msg::ModelSaved(result) => {
            checkpoint_done(app, CheckpointAction::Save, result.map(|written| format!("Saved the model: {written}")));
            Vec::new()
        }
    };
    if app.view == View::Explore {
        effects.extend(app.explore.wanted(&app.shared));
    }
    effects
}

fn on_data(app: &mut App, msg: DataMsg) -> Vec<Effect> {
    // A reply for data settings that were changed since is stale.
    let (args, state) = match msg {
        DataMsg::Loaded { split, source, args } => (args.clone(), DataState::Ready { split, source, args }),
        DataMsg::Failed { message, args } => (args, DataState::Failed { message }),
    };
    if !matches!(&app.shared.data, DataState::Loading(a) if *a == args) {
        return Vec::new();
    }
    app.shared.set_data(state);
    app.explore.forget_predictions();
    app.train.on_data(&mut app.shared)
}

fn request_quit(app: &mut App) {
    if app.train.phase.is_active() {
        app.prompt = Some(Prompt::ConfirmQuit);
    } else {
        app.quit = true;
    }
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
    if let Some(prompt) = app.prompt.take() {
        return on_prompt_key(app, prompt, key, ctrl_c);
    }
    if ctrl_c {
        request_quit(app);
        return Vec::new();
    }
    if app.train.editing.is_some() {
        app.train.on_edit_key(&mut app.shared, key, is_chord(&key));
        return Vec::new();
    }
    // Ctrl or Alt with a key is no shortcut here (Ctrl-C is, above): Ctrl-X must not stop a run.
    if is_chord(&key) {
        return Vec::new();
    }
    match key.code {
        KeyCode::Char('q') => request_quit(app),
        KeyCode::Tab => app.view = View::ALL[(app.view.index() + 1) % 3],
        KeyCode::BackTab => app.view = View::ALL[(app.view.index() + 2) % 3],
        KeyCode::Char(c @ '1'..='3') => app.view = View::ALL[c as usize - '1' as usize],
        KeyCode::Char('o') => app.prompt = Some(CheckpointPrompt::open(CheckpointAction::Load, app.suggested_prefix())),
        KeyCode::Char('e') => match app.shared.model {
            Some(_) => app.prompt = Some(CheckpointPrompt::open(CheckpointAction::Save, app.suggested_prefix())),
            None => app.shared.error("No model to save yet"),
        },
        _ => {
            return match app.view {
                View::Train => app.train.on_key(&mut app.shared, key),
                View::Draw => {
                    app.draw.on_key(key);
                    Vec::new()
                }
                View::Explore => {
                    app.explore.on_key(&app.shared, key);
                    Vec::new()
                }
            }
        }
    }
    Vec::new()
}

fn on_prompt_key(app: &mut App, prompt: Prompt, key: KeyEvent, ctrl_c: bool) -> Vec<Effect> {
    match prompt {
        Prompt::ConfirmQuit => match key.code {
            KeyCode::Char('y') | KeyCode::Enter if !is_chord(&key) => {
                app.quit = true;
                return app.train.quit_effects();
            }
            // Ctrl-C twice quits at once.
            _ if ctrl_c => app.quit = true,
            _ => app.shared.info("Quit cancelled"),
        },
        Prompt::Checkpoint(_) if ctrl_c => request_quit(app),
        Prompt::Checkpoint(checkpoint) => return on_checkpoint_key(app, checkpoint, key),
    }
    Vec::new()
}

/// The save or the load prompt: typing edits the checkpoint prefix (Ctrl-U clears it), Enter
/// acts and keeps the prompt until the result comes (open again, with the error, if it failed),
/// Esc cancels.
fn on_checkpoint_key(app: &mut App, mut prompt: CheckpointPrompt, key: KeyEvent) -> Vec<Effect> {
    let mut effects = Vec::new();
    match key.code {
        // The save or load under way answers in a moment; keys wait for it.
        _ if prompt.busy => {}
        KeyCode::Esc => {
            app.shared.info("Cancelled");
            return effects;
        }
        KeyCode::Enter => match (checkpoint_prefix(&prompt.input), prompt.action, app.shared.model.clone()) {
            (Err(e), _, _) => {
                app.shared.error(e.clone());
                prompt.error = Some(e);
            }
            (Ok(_), CheckpointAction::Save, None) => {
                let e = "No model to save yet".to_string();
                app.shared.error(e.clone());
                prompt.error = Some(e);
            }
            (Ok(prefix), CheckpointAction::Save, Some(model)) => {
                prompt.busy = true;
                effects.push(Effect::SaveModel { model, prefix });
            }
            (Ok(prefix), CheckpointAction::Load, _) => {
                prompt.busy = true;
                effects.push(Effect::LoadModel { prefix });
            }
        },
        KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => prompt.input.clear(),
        KeyCode::Backspace => {
            prompt.input.pop();
        }
        KeyCode::Char(c) if !is_chord(&key) => prompt.input.push(c),
        _ => {}
    }
    app.prompt = Some(Prompt::Checkpoint(prompt));
    effects
}

/// The checkpoint prefix a typed path stands for: a folder (ending in `/`, or `.` or `..`)
/// holds `mnist_cnn`, as `mnist train` names its files.
pub fn checkpoint_prefix(input: &str) -> Result<String, String> {
    let input = input.trim();
    if input.is_empty() {
        return Err("Type a checkpoint prefix, e.g. out/mnist_cnn".into());
    }
    let last = input.rsplit(['/', std::path::MAIN_SEPARATOR]).next().unwrap_or("");
    Ok(match last {
        "" => format!("{input}mnist_cnn"),
        "." | ".." => format!("{input}/mnist_cnn"),
        _ => input.to_string(),
    })
}

/// The result of a save or load: the prompt waiting for it closes, or opens again with the error.
fn checkpoint_done(app: &mut App, action: CheckpointAction, result: Result<String, String>) {
    let waiting = matches!(&app.prompt, Some(Prompt::Checkpoint(p)) if p.busy && p.action == action);
    match result {
        Ok(text) => {
            if waiting {
                app.prompt = None;
            }
            app.shared.info(text);
        }
        Err(e) => {
            if let (true, Some(Prompt::Checkpoint(p))) = (waiting, app.prompt.as_mut()) {
                (p.busy, p.error) = (false, Some(e.clone()));
            }
            app.shared.error(e);
        }
    }
}

/// Alt, Ctrl (or Super, Hyper, Meta) with a key: neither text nor the key's shortcut (a terminal
/// sends Esc quickly followed by a key as Alt+key). Shift is neither: it makes capitals and BackTab.
fn is_chord(key: &KeyEvent) -> bool {
    let chord =
        KeyModifiers::ALT | KeyModifiers::CONTROL | KeyModifiers::SUPER | KeyModifiers::HYPER | KeyModifiers::META;
    key.modifiers.intersects(chord)
}

fn on_mouse(app: &mut App, mouse: MouseEvent) {
    let l = layout(app.screen);
    if l.too_small || app.prompt.is_some() {
        return;
    }
    if let MouseEventKind::Down(MouseButton::Left) = mouse.kind {
        if let Some(view) = layout::tab_at(&l, mouse.column, mouse.row) {
            app.view = view;
            return;
        }
    }
    match app.view {
        View::Draw => app.draw.on_mouse(&l.draw, mouse),
        View::Explore => app.explore.on_mouse(&l.explore, &app.shared, mouse),
        View::Train => {}
    }
}
