//! The explore view: the test images with the model's predictions (all or only the
//! misclassified), the selected image, the confusion matrix; asking for the predictions when
//! they are out of date, its keys, clicks and drawing. Leaves out the batch prediction itself
//! (models.rs, run on a worker thread).

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::layout::ExploreLayout;
use crate::app::models::Predictions;
use crate::app::msg::Effect;
use crate::app::pad::SIDE;
use crate::app::shared::{DataState, Shared};
use crate::app::widgets::{draw_half_blocks, KeyHelp, ACCENT};

/// The view's keys, for the legend.
pub const KEYS: &[KeyHelp] =
    &[("↑↓ PgUp PgDn Home End", "browse"), ("m", "misclassified only / all"), ("mouse", "click, scroll")];

/// The explore view's state.
#[derive(Debug, Default)]
pub struct ExploreView {
    /// Position in the visible list (all, or only the misclassified).
    pub selected: usize,
    pub only_wrong: bool,
    /// For the model and data of `generation`.
    pub predictions: Option<(u64, Predictions)>,
    pub pending: Option<u64>,
    pub error: Option<String>,
}

impl ExploreView {
    /// Indices into the test set shown in the list.
    pub fn indices(&self, shared: &Shared) -> Vec<usize> {
        let (Some(split), Some((_, p))) = (shared.data.split(), &self.predictions) else {
            return Vec::new();
        };
        let labels = &split.test.labels;
        (0..labels.len().min(p.classes.len())).filter(|&i| !self.only_wrong || p.classes[i] != labels[i]).collect()
    }

    /// Asks for the predictions when they are out of date (called while the view is shown).
    pub fn wanted(&mut self, shared: &Shared) -> Vec<Effect> {
        let current = self.predictions.as_ref().is_some_and(|(g, _)| *g == shared.generation);
        if current || self.pending == Some(shared.generation) {
            return Vec::new();
        }
        let (Some(split), Some(model)) = (shared.data.split(), &shared.model) else {
            return Vec::new();
        };
        self.pending = Some(shared.generation);
        self.error = None;
        vec![Effect::PredictAll { model: model.clone(), split: split.clone(), generation: shared.generation }]
    }

    /// The worker's predictions for `generation`; a result for another one is stale. The image
    /// selected stays selected (or, gone from the misclassified, the next one in the list).
    pub fn on_predictions(&mut self, shared: &Shared, generation: u64, result: Result<Predictions, String>) {
        if self.pending != Some(generation) {
            return;
        }
        self.pending = None;
        match result {
            Ok(p) => {
                let selected_image = self.indices(shared).get(self.selected).copied();
                self.predictions = Some((generation, p));
                self.error = None;
                let indices = self.indices(shared);
                self.selected = match selected_image {
                    Some(image) => indices.iter().position(|&i| i >= image).unwrap_or(indices.len().saturating_sub(1)),
                    None => 0,
                };
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// The data changed: the predictions (and the selection) were for the old test set.
    pub fn forget_predictions(&mut self) {
        (self.predictions, self.selected, self.error) = (None, 0, None);
    }

    pub fn on_key(&mut self, shared: &Shared, key: KeyEvent) {
        let len = self.indices(shared).len();
        let page = 10;
        match key.code {
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected += 1,
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(page),
            KeyCode::PageDown => self.selected += page,
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = len.saturating_sub(1),
            KeyCode::Char('m') => {
                self.only_wrong = !self.only_wrong;
                self.selected = 0;
            }
            _ => {}
        }
        let len = self.indices(shared).len();
        self.selected = self.selected.min(len.saturating_sub(1));
    }

    pub fn on_mouse(&mut self, e: &ExploreLayout, shared: &Shared, mouse: MouseEvent) {
        let (column, row) = (mouse.column, mouse.row);
        let list = e.list;
        let inside = list.contains(Position::new(column, row));
        match mouse.kind {
            MouseEventKind::ScrollDown if inside => self.on_key(shared, KeyEvent::from(KeyCode::Down)),
            MouseEventKind::ScrollUp if inside => self.on_key(shared, KeyEvent::from(KeyCode::Up)),
            MouseEventKind::Down(MouseButton::Left) if inside && row > list.y && row + 1 < list.bottom() => {
                let offset =
                    list_offset(self.selected, self.indices(shared).len(), list.height.saturating_sub(2) as usize);
                self.selected = offset + (row - list.y - 1) as usize;
                self.on_key(shared, KeyEvent::from(KeyCode::Null));
            }
            _ => {}
        }
    }

    pub fn render(&self, frame: &mut Frame, e: &ExploreLayout, body: Rect, shared: &Shared) {
        let message = match (&shared.data, &shared.model, self) {
            (DataState::Loading(_), _, _) => Some("Loading the test data...".to_string()),
            (DataState::Failed { message, .. }, _, _) => {
                Some(format!("No test data: {message}. Set Data in the train view (1)."))
            }
            (_, None, _) => Some("No model: o loads one, or train one in the train view (1)".into()),
            (_, _, ex) if ex.error.is_some() => ex.error.clone(),
            // Until the first predictions are in; a new model's show the old ones meanwhile.
            (DataState::Ready { split, .. }, Some(model), ex) if ex.predictions.is_none() => {
                Some(format!("Predicting {} test images with the model {}...", split.test.len(), model.origin))
            }
            _ => None,
        };
        if let Some(message) = message {
            frame.render_widget(
                Paragraph::new(message).wrap(Wrap { trim: true }).block(Block::bordered().title("Explore")),
                body,
            );
            return;
        }
        let (Some(split), Some((_, predictions))) = (shared.data.split(), &self.predictions) else {
            return;
        };
        let labels = &split.test.labels;
        let indices = self.indices(shared);
        let total = labels.len().min(predictions.classes.len());
        let wrong = (0..total).filter(|&i| predictions.classes[i] != labels[i]).count();

        // The list.
        let title = if self.only_wrong {
            format!("Misclassified: {} of {total}", indices.len())
        } else {
            format!("Test images: {total}")
        };
        let block = Block::bordered().title(title);
        let inner = block.inner(e.list);
        frame.render_widget(block, e.list);
        let height = inner.height as usize;
        let offset = list_offset(self.selected, indices.len(), height);
        let compact = inner.width < 30;
        let lines: Vec<Line> = indices
            .iter()
            .enumerate()
            .skip(offset)
            .take(height)
            .map(|(position, &i)| {
                let (pred, conf, label) = (predictions.classes[i], predictions.confidence[i], labels[i]);
                let mark = if pred == label {
                    Span::styled("ok", Style::new().fg(ACCENT))
                } else {
                    Span::styled("XX", Style::new().fg(Color::LightRed))
                };
                let text = if compact {
                    format!("#{i:<5}{label}→{pred} {:>5.1}% ", conf * 100.0)
                } else {
                    format!("#{i:<5} true {label} pred {pred} {:>5.1}% ", conf * 100.0)
                };
                let style = if position == self.selected {
                    Style::new().add_modifier(Modifier::REVERSED)
                } else {
                    Style::new()
                };
                Line::from(vec![Span::styled(text, style), mark])
            })
            .collect();
        if lines.is_empty() {
            frame.render_widget(Paragraph::new("None: m shows all"), inner);
        } else {
            frame.render_widget(Paragraph::new(lines), inner);
        }

        // The selected image (when there is room for it) and its prediction.
        let selected = indices.get(self.selected).copied();
        let image_shown = e.image.area() > 0;
        if image_shown {
            let title = selected.map_or("Image".into(), |i| format!("Image #{i}"));
            frame.render_widget(Block::bordered().title(title), e.image);
        }
        if let Some(i) = selected {
            let image = &split.test.images[i * split.test.sample_len()..(i + 1) * split.test.sample_len()];
            if image_shown {
                draw_half_blocks(frame.buffer_mut(), Block::bordered().inner(e.image), &|x, y| {
                    image.get(y * SIDE + x).map_or(0.0, |&b| b as f32 / 255.0)
                });
            }
            let (pred, conf, label) = (predictions.classes[i], predictions.confidence[i], labels[i]);
            let verdict = if pred == label {
                Line::styled("correct", Style::new().fg(ACCENT))
            } else {
                Line::styled("WRONG", Style::new().fg(Color::LightRed).add_modifier(Modifier::BOLD))
            };
            let mut details = vec![
                Line::from(format!("True label: {label}")),
                Line::from(format!("Predicted:  {pred} ({:.1}%)", conf * 100.0)),
                verdict,
            ];
            if !image_shown {
                details.insert(0, Line::styled(format!("Image #{i}"), Style::new().add_modifier(Modifier::BOLD)));
            }
            frame.render_widget(
                Paragraph::new(details),
                Rect { x: e.details.x + 1, width: e.details.width.saturating_sub(1), ..e.details },
            );
        }

        // The confusion matrix.
        let mut matrix = [[0u32; 10]; 10];
        for (&t, &p) in labels.iter().zip(&predictions.classes) {
            let (t, p) = (t as usize, p as usize);
            if t < 10 && p < 10 {
                matrix[t][p] += 1;
            }
        }
        let accuracy = if total > 0 { (total - wrong) as f64 / total as f64 } else { 0.0 };
        let mut lines = vec![
            Line::from(format!("accuracy {accuracy:.4}: {wrong} of {total} wrong")),
            Line::from("rows: true class, columns: predicted"),
        ];
        // Columns as wide as the largest count and a space (4 at least, as for up to 999).
        let largest = matrix.iter().flatten().copied().max().unwrap_or(0);
        let width = (largest.to_string().len() + 1).max(4);
        let mut header = String::from("    ");
        header.extend((0..10).map(|c| format!("{c:>width$}")));
        lines.push(Line::styled(header, Style::new().add_modifier(Modifier::BOLD)));
        for (t, row) in matrix.iter().enumerate() {
            let mut spans = vec![Span::styled(format!("{t:>3} "), Style::new().add_modifier(Modifier::BOLD))];
            for (p, &n) in row.iter().enumerate() {
                let style = match (t == p, n) {
                    (true, _) => Style::new().fg(ACCENT),
                    (false, 0) => Style::new().fg(Color::DarkGray),
                    (false, _) => Style::new().fg(Color::LightRed),
                };
                spans.push(Span::styled(format!("{n:>width$}"), style));
            }
            lines.push(Line::from(spans));
        }
        let title =
            if self.pending.is_some() { "Confusion matrix - updating for the new model" } else { "Confusion matrix" };
        frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), e.confusion);
    }
}

/// The first list row shown so that `selected` is visible (kept near the middle).
pub fn list_offset(selected: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    selected.saturating_sub(height / 2).min(len - height)
}
