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
use super::update::{App, CheckpointAction, Prompt};
use super::views::train::Phase;
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
        render_prompt(frame, area, app, prompt);
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
        Some(_) => vec![&[("type", "the checkpoint prefix"), ("Enter", "ok"), ("Esc", "cancel"), ("Ctrl-U", "clear")]],
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

fn render_prompt(frame: &mut Frame, area: Rect, app: &App, prompt: &Prompt) {
    let width = area.width.saturating_sub(4).min(76);
    let inner_width = width.saturating_sub(2) as usize;
    let (title, lines): (&str, Vec<Line>) = match prompt {
        Prompt::ConfirmQuit => {
            ("Quit?", vec![Line::from(quit_question(&app.train.phase)), Line::from("y: quit   n: keep training")])
        }
        Prompt::Checkpoint(p) => {
            let mut lines = vec![
                Line::from("MXNet checkpoint prefix (PREFIX-symbol.json, PREFIX-0000.params):"),
                Line::styled("(a path ending in / is a folder: FOLDER/mnist_cnn)", Style::new().fg(Color::Gray)),
                Line::from(format!("> {}_", p.input)),
            ];
            if p.busy {
                lines.push(Line::from(if p.action == CheckpointAction::Save { "Saving..." } else { "Loading..." }));
            }
            // The whole error, wrapped to the prompt's width (it names the files and the cause).
            let error_style = Style::new().fg(Color::LightRed).add_modifier(Modifier::BOLD);
            for row in p.error.as_deref().map(|e| wrap_words(e, inner_width)).unwrap_or_default() {
                lines.push(Line::styled(row, error_style));
            }
            (if p.action == CheckpointAction::Save { "Save the model" } else { "Load a model" }, lines)
        }
    };
    let lines: Vec<Line> = lines
        .into_iter()
        .flat_map(|line| {
            let style = line.style;
            let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
            wrap_words(&text, inner_width).into_iter().map(move |row| Line::styled(row, style))
        })
        .collect();
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup =
        Rect::new(area.x + (area.width - width) / 2, area.y + area.height.saturating_sub(height) / 2, width, height);
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(title).border_style(Style::new().fg(ACCENT));
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}

/// What quitting asks, by how the run stands.
fn quit_question(phase: &Phase) -> &'static str {
    match phase {
        Phase::Paused => "Training is paused. Quit and stop it?",
        Phase::Stopping => "Training is stopping. Quit now?",
        _ => "Training is running. Quit and stop it?",
    }
}

/// `text` in rows of at most `width` characters, broken at spaces (a word longer than a row is
/// cut into pieces).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut rows = vec![String::new()];
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let row = rows.last_mut().expect("a row");
            let used = row.chars().count();
            let need = if used == 0 { word.len() } else { used + 1 + word.len() };
            if need <= width {
                if used > 0 {
                    row.push(' ');
                }
                row.extend(word);
                break;
            }
            if used > 0 {
                rows.push(String::new());
                continue;
            }
            // A word longer than a row.
            row.extend(word.drain(..width));
            rows.push(String::new());
        }
    }
    while rows.len() > 1 && rows.last().is_some_and(|r| r.is_empty()) {
        rows.pop();
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_wrap_at_spaces_and_long_words_are_cut() {
        assert_eq!(
            wrap_words("cannot read model file a-symbol.json", 16),
            ["cannot read", "model file", "a-symbol.json"]
        );
        assert_eq!(wrap_words("/a/very/long/path/name x", 8), ["/a/very/", "long/pat", "h/name x"]);
        assert_eq!(wrap_words("", 8), [""]);
        assert_eq!(wrap_words("exactly8", 8), ["exactly8"]);
    }

    #[test]
    fn the_legend_keeps_a_row_per_group_when_it_can_and_flows_when_not() {
        let view: &[KeyHelp] = &[("s", "start"), ("x", "stop")];
        let global: &[KeyHelp] = &[("q", "quit")];
        assert_eq!(legend_rows(&[view, global], 20, 2), vec![view.to_vec(), global.to_vec()]);
        // "s start  x stop" is 15 cells: at 14 the view's keys flow on into the next row.
        assert_eq!(legend_rows(&[view, global], 14, 2), vec![vec![view[0]], vec![view[1], global[0]]]);
        assert_eq!(legend_rows(&[view, global], 7, 1), vec![vec![view[0]]]);
    }
}
