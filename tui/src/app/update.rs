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
    /// A checkpoint prefix to save to.
    SaveModel {
        input: String,
    },
    LoadModel {
        input: String,
    },
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
            Ok(model) => app.shared.set_model(model),
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
            app.explore.on_predictions(generation, result);
            Vec::new()
        }
        Msg::ModelLoaded(Ok(model)) => {
            let text = format!("Model {}", model.origin);
            app.shared.set_model(model);
            app.shared.info(text);
            Vec::new()
        }
        Msg::ModelLoaded(Err(e)) | Msg::ModelSaved(Err(e)) => {
            app.shared.error(e);
            Vec::new()
        }
        Msg::ModelSaved(Ok(written)) => {
            app.shared.info(format!("Saved the model: {written}"));
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
        KeyCode::Char('o') => app.prompt = Some(Prompt::LoadModel { input: app.suggested_prefix() }),
        KeyCode::Char('e') => match app.shared.model {
            Some(_) => app.prompt = Some(Prompt::SaveModel { input: app.suggested_prefix() }),
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
        Prompt::SaveModel { input } if !ctrl_c => return on_path_prompt(app, true, input, key),
        Prompt::LoadModel { input } if !ctrl_c => return on_path_prompt(app, false, input, key),
        _ => request_quit(app),
    }
    Vec::new()
}

/// The save or the load prompt: typing edits the checkpoint prefix, Enter acts, Esc cancels.
fn on_path_prompt(app: &mut App, save: bool, mut input: String, key: KeyEvent) -> Vec<Effect> {
    let rebuild = |input: String| if save { Prompt::SaveModel { input } } else { Prompt::LoadModel { input } };
    match key.code {
        KeyCode::Enter if input.trim().is_empty() => {
            app.shared.error("Type a checkpoint prefix, e.g. out/mnist_cnn");
            app.prompt = Some(rebuild(input));
        }
        KeyCode::Enter => {
            let prefix = input.trim().to_string();
            return match (save, app.shared.model.clone()) {
                (true, Some(model)) => vec![Effect::SaveModel { model, prefix }],
                (true, None) => {
                    app.shared.error("No model to save yet");
                    Vec::new()
                }
                (false, _) => vec![Effect::LoadModel { prefix }],
            };
        }
        KeyCode::Esc => app.shared.info("Cancelled"),
        KeyCode::Backspace => {
            input.pop();
            app.prompt = Some(rebuild(input));
        }
        KeyCode::Char(c) if !is_chord(&key) => {
            input.push(c);
            app.prompt = Some(rebuild(input));
        }
        _ => app.prompt = Some(rebuild(input)),
    }
    Vec::new()
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
