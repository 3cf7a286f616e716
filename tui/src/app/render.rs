//! Drawing the app from its state: the frame around the views (tabs, the status line, the key
//! legend, prompts), each view drawing its own body. Only reads the state; every area comes
//! from `layout`, and cells are written only through bounds-checked calls, so no window size
//! can panic. Leaves out the views' drawing (views/).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::layout::{self, layout, AppLayout, View, MIN_HEIGHT, MIN_WIDTH, TAB_TITLES};
use super::shared::StatusKind;
use super::update::{App, Prompt};
use super::views::{draw, explore, train};
use super::widgets::{KeyHelp, ACCENT};

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let l = layout(area);
    if l.too_small {
        let text = format!(
            "Window too small ({}x{}): enlarge it to at least {MIN_WIDTH}x{MIN_HEIGHT}. q quits.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    render_tabs(frame.buffer_mut(), &l, app.view);
    match app.view {
        View::Train => app.train.render(frame, &l.train, &app.shared),
        View::Draw => app.draw.render(frame, &l.draw, &app.shared),
        View::Explore => app.explore.render(frame, &l.explore, l.body, &app.shared),
    }
    let (status, kind) = &app.shared.status;
    let status_style = match kind {
        StatusKind::Info => Style::new(),
        StatusKind::Error => Style::new().fg(Color::LightRed).add_modifier(Modifier::BOLD),
    };
    frame.render_widget(Paragraph::new(Line::styled(status.as_str(), status_style)), l.status);
    frame.render_widget(Paragraph::new(legend(app, l.legend)).style(Style::new().fg(Color::Gray)), l.legend);
    if let Some(prompt) = &app.prompt {
        render_prompt(frame, area, prompt);
    }
}

fn render_tabs(buf: &mut Buffer, l: &AppLayout, view: View) {
    let top = l.top;
    buf.set_stringn(top.x, top.y, layout::tab_prefix(), top.width as usize, Style::new().add_modifier(Modifier::BOLD));
    for ((rect, title), v) in l.tabs.iter().zip(TAB_TITLES).zip(View::ALL) {
        let style = if v == view {
            Style::new().fg(Color::Black).bg(ACCENT).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Gray)
        };
        buf.set_stringn(rect.x, rect.y, title, rect.width as usize, style);
    }
}

/// The keys that work in every view.
pub const GLOBAL_KEYS: &[KeyHelp] = &[("Tab/1-3", "views"), ("o", "load model"), ("e", "save model"), ("q", "quit")];

/// The legend's rows: the view's keys, then the keys that work everywhere (or whatever the
/// prompt or the field being typed takes).
fn legend(app: &App, area: Rect) -> Vec<Line<'static>> {
    let groups: Vec<&[KeyHelp]> = match &app.prompt {
        Some(Prompt::ConfirmQuit) => vec![&[("y", "quit and stop training"), ("n", "keep going")]],
        Some(_) => vec![&[("type", "the checkpoint prefix"), ("Enter", "ok"), ("Esc", "cancel")]],
        None if app.train.editing.is_some() => vec![train::EDIT_KEYS],
        None => {
            let view_keys = match app.view {
                View::Train => train::KEYS,
                View::Draw => draw::KEYS,
                View::Explore => explore::KEYS,
            };
            vec![view_keys, GLOBAL_KEYS]
        }
    };
    let key = |k: &'static str| Span::styled(k, Style::new().fg(Color::White).add_modifier(Modifier::BOLD));
    legend_rows(&groups, area.width as usize, area.height as usize)
        .into_iter()
        .map(|row| {
            let mut spans = Vec::new();
            for (k, what) in row {
                spans.push(key(k));
                spans.push(Span::raw(format!(" {what}  ")));
            }
            Line::from(spans)
        })
        .collect()
}

/// Lays the groups of keys out on `rows` rows of `width` cells: a row per group when each fits
/// in one, else all of them flowing from row to row (80 columns hold every view's keys so);
/// only what fits nowhere is left out.
fn legend_rows(groups: &[&[KeyHelp]], width: usize, rows: usize) -> Vec<Vec<KeyHelp>> {
    // "k what" and two spaces before the next.
    let cells = |(k, what): &KeyHelp| k.chars().count() + 1 + what.chars().count();
    let row_cells = |items: &[KeyHelp]| items.iter().map(cells).sum::<usize>() + 2 * items.len().saturating_sub(1);
    if groups.len() <= rows && groups.iter().all(|g| row_cells(g) <= width) {
        return groups.iter().map(|g| g.to_vec()).collect();
    }
    let mut out: Vec<Vec<KeyHelp>> = vec![Vec::new()];
    let mut used = 0;
    for item in groups.iter().flat_map(|g| g.iter()) {
        let need = if used == 0 { cells(item) } else { used + 2 + cells(item) };
        if need <= width {
            out.last_mut().expect("a row").push(*item);
            used = need;
        } else if out.len() < rows && cells(item) <= width {
            out.push(vec![*item]);
            used = cells(item);
        }
    }
    out
}

fn render_prompt(frame: &mut Frame, area: Rect, prompt: &Prompt) {
    let (title, lines): (&str, Vec<Line>) = match prompt {
        Prompt::ConfirmQuit => (
            "Quit?",
            vec![Line::from("Training is running. Quit and stop it?"), Line::from("y: quit   n: keep training")],
        ),
        Prompt::SaveModel { input } => (
            "Save the model",
            vec![
                Line::from("MXNet checkpoint prefix (PREFIX-symbol.json, PREFIX-0000.params):"),
                Line::from(format!("> {input}_")),
            ],
        ),
        Prompt::LoadModel { input } => (
            "Load a model",
            vec![
                Line::from("MXNet checkpoint prefix (PREFIX-symbol.json, PREFIX-0000.params):"),
                Line::from(format!("> {input}_")),
            ],
        ),
    };
    let width = area.width.saturating_sub(4).min(76);
    let height = 4u16.min(area.height);
    let popup =
        Rect::new(area.x + (area.width - width) / 2, area.y + area.height.saturating_sub(height) / 2, width, height);
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(title).border_style(Style::new().fg(ACCENT));
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}
