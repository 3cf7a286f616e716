//! The draw view: the pad and what the model makes of it (the MNIST-style input it sees and
//! the ten probabilities, one CPU forward pass per frame at most), its keys and mouse strokes,
//! and its drawing. Leaves out the pad's own painting rules (pad.rs) and the model (models.rs).

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::layout::{DrawLayout, PadGeometry};
use crate::app::models::argmax;
use crate::app::pad::{Pad, SIDE};
use crate::app::shared::Shared;
use crate::app::widgets::{draw_half_blocks, grey, KeyHelp, ACCENT, TRAIN_COLOUR};

/// The view's keys, for the legend.
pub const KEYS: &[KeyHelp] = &[
    ("mouse", "left draws, right erases"),
    ("arrows", "move"),
    ("space", "dab"),
    ("d", "pen down/up"),
    ("+/-", "brush"),
    ("c", "clear"),
];

/// The draw view's state.
#[derive(Debug)]
pub struct DrawView {
    pub pad: Pad,
    /// The pad after MNIST-style preprocessing, and the model's probabilities for it.
    pub seen: Vec<f32>,
    pub probabilities: Option<Vec<f32>>,
    /// The pad changed since the last prediction.
    stale: bool,
    /// The model (and data) generation the probabilities are for.
    predicted_for: u64,
}

impl Default for DrawView {
    fn default() -> Self {
        DrawView {
            pad: Pad::default(),
            seen: vec![0.0; SIDE * SIDE],
            probabilities: None,
            stale: false,
            predicted_for: 0,
        }
    }
}

impl DrawView {
    /// Runs the model on the pad if the pad or the model changed since the last call: one CPU
    /// forward pass, called once per frame by the event loop (so a burst of drag events costs one).
    pub fn refresh_prediction(&mut self, shared: &mut Shared) {
        if !std::mem::take(&mut self.stale) && self.predicted_for == shared.generation {
            return;
        }
        self.predicted_for = shared.generation;
        self.seen = self.pad.model_input();
        self.probabilities = match &mut shared.classifier {
            Some(c) if !self.pad.is_blank() => match c.classify(&self.seen) {
                Ok(p) => Some(p),
                Err(e) => {
                    shared.error(e);
                    None
                }
            },
            _ => None,
        };
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        let pad = &mut self.pad;
        match key.code {
            KeyCode::Left => pad.move_cursor(-1, 0),
            KeyCode::Right => pad.move_cursor(1, 0),
            KeyCode::Up => pad.move_cursor(0, -1),
            KeyCode::Down => pad.move_cursor(0, 1),
            KeyCode::Char(' ') => {
                let (x, y) = pad.cursor;
                pad.stamp(x, y, false);
            }
            KeyCode::Char('d') | KeyCode::Enter => {
                pad.pen_down = !pad.pen_down;
                if pad.pen_down {
                    let (x, y) = pad.cursor;
                    pad.stamp(x, y, false);
                }
            }
            KeyCode::Char('c') | KeyCode::Backspace | KeyCode::Delete => pad.clear(),
            KeyCode::Char('+') | KeyCode::Char('=') | KeyCode::Char(']') => pad.set_brush(pad.brush + 1),
            KeyCode::Char('-') | KeyCode::Char('[') => pad.set_brush(pad.brush.saturating_sub(1)),
            _ => return,
        }
        self.stale = true;
    }

    pub fn on_mouse(&mut self, d: &DrawLayout, mouse: MouseEvent) {
        let Some(pad) = d.pad else { return };
        let (column, row) = (mouse.column, mouse.row);
        match mouse.kind {
            MouseEventKind::Down(button @ (MouseButton::Left | MouseButton::Right)) => {
                if let Some((x, y)) = pad.pixel_at(column, row) {
                    self.pad.mouse_paint(x, y, false, button == MouseButton::Right);
                    self.stale = true;
                }
            }
            // A drag that leaves the pad keeps drawing along its edge.
            MouseEventKind::Drag(button @ (MouseButton::Left | MouseButton::Right)) if self.pad.last_drag.is_some() => {
                let (x, y) = pad.clamped_pixel_at(column, row);
                self.pad.mouse_paint(x, y, true, button == MouseButton::Right);
                self.stale = true;
            }
            MouseEventKind::Up(_) => self.pad.last_drag = None,
            _ => {}
        }
    }

    pub fn render(&self, frame: &mut Frame, d: &DrawLayout, shared: &Shared) {
        let Some(pad) = d.pad else {
            let text = "The window is too small for the pad: enlarge it to at least 20 rows.";
            frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), d.pad_block);
            return;
        };
        let pen = if self.pad.pen_down { "pen down" } else { "pen up" };
        let mut title = format!("Pad 28x28 - brush {} - {pen}", self.pad.brush);
        if title.len() + 2 > d.pad_block.width as usize {
            title = format!("Pad - brush {} - {pen}", self.pad.brush);
        }
        frame.render_widget(Block::bordered().title(title), d.pad_block);
        draw_pad(frame.buffer_mut(), &pad, &self.pad);

        frame.render_widget(Block::bordered().title("Model input"), d.seen);
        let seen_inner = Block::bordered().inner(d.seen);
        draw_half_blocks(frame.buffer_mut(), seen_inner, &|x, y| self.seen.get(y * SIDE + x).copied().unwrap_or(0.0));

        let prediction = match (&self.probabilities, &shared.classifier) {
            (_, None) => Line::styled("No model: o loads one, or train one", Style::new().fg(Color::LightRed)),
            (Some(p), Some(_)) => {
                let (class, probability) = argmax(p);
                Line::styled(
                    format!("Prediction: {class} ({:.1}%)", probability * 100.0),
                    Style::new().fg(ACCENT).add_modifier(Modifier::BOLD),
                )
            }
            (None, Some(_)) => Line::from("Draw a digit on the pad"),
        };
        let beside = Rect { x: d.prediction.x + 1, width: d.prediction.width.saturating_sub(1), ..d.prediction };
        frame.render_widget(Paragraph::new(vec![Line::from(""), prediction]).wrap(Wrap { trim: false }), beside);
        let info = vec![
            Line::from(format!("Model: {}", shared.model.as_ref().map_or("none", |m| m.origin.as_str()))),
            Line::styled(
                "Model input: the pad cropped to the ink, fitted in 20x20 and centred by mass, as MNIST's digits were.",
                Style::new().fg(Color::Gray),
            ),
        ];
        frame.render_widget(Paragraph::new(info).wrap(Wrap { trim: false }), d.info);

        let block = Block::bordered().title("Probabilities");
        let inner = block.inner(d.bars);
        frame.render_widget(block, d.bars);
        if let Some(p) = &self.probabilities {
            let best = argmax(p).0;
            let bar_width = inner.width.saturating_sub(9) as usize;
            let lines: Vec<Line> = p
                .iter()
                .enumerate()
                .map(|(class, &prob)| {
                    let filled = ((prob.clamp(0.0, 1.0) * bar_width as f32).round() as usize).min(bar_width);
                    let colour = if class == best { ACCENT } else { TRAIN_COLOUR };
                    Line::from(vec![
                        Span::raw(format!("{class} ")),
                        Span::styled("█".repeat(filled), Style::new().fg(colour)),
                        Span::styled("·".repeat(bar_width - filled), Style::new().fg(Color::DarkGray)),
                        Span::raw(format!("{:>6.1}%", prob * 100.0)),
                    ])
                })
                .collect();
            frame.render_widget(Paragraph::new(lines), inner);
        }
    }
}

/// The character for ink of intensity `v` at full resolution: full, soft or none.
fn shade(v: f32) -> char {
    if v >= 0.75 {
        '█'
    } else if v >= 0.25 {
        '▓'
    } else if v > 0.0 {
        '░'
    } else {
        ' '
    }
}

fn draw_pad(buf: &mut Buffer, geometry: &PadGeometry, pad: &Pad) {
    if geometry.pixels_per_row == 2 {
        draw_half_blocks(buf, geometry.inner, &|x, y| pad.pixel(x, y));
    } else {
        for y in 0..SIDE {
            for x in 0..SIDE {
                let v = pad.pixel(x, y);
                let (column, row) = geometry.cell_of(x, y);
                for dx in 0..geometry.cell_width {
                    if let Some(cell) = buf.cell_mut((column + dx, row)) {
                        cell.set_char(shade(v)).set_fg(grey(v.max(0.3)));
                    }
                }
            }
        }
    }
    // The keyboard cursor: brackets around its pixel (or a marked cell when narrow).
    let (column, row) = geometry.cell_of(pad.cursor.0, pad.cursor.1);
    let marks: &[char] = if geometry.cell_width >= 2 { &['[', ']'] } else { &['+'] };
    for (dx, &c) in marks.iter().enumerate() {
        if let Some(cell) = buf.cell_mut((column + dx as u16, row)) {
            cell.set_char(c).set_fg(Color::LightRed).set_bg(Color::Reset);
        }
    }
}
