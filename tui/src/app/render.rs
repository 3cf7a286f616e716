//! Drawing the app from its state: tabs, the train, draw and explore views, the status line,
//! the key legend and prompts. Only reads the state; every area comes from `layout`, and
//! cells are written only through bounds-checked calls, so no window size can panic.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Clear, Dataset, Gauge, GraphType, LegendPosition, Paragraph, Wrap};
use ratatui::Frame;

use super::layout::{self, layout, AppLayout, PadGeometry, MIN_HEIGHT, MIN_WIDTH, TAB_TITLES};
use super::models::argmax;
use super::pad::SIDE;
use super::series::{downsample, format_duration, recent, RECENT_POINTS, WHOLE_RUN_POINTS};
use super::state::{App, ChartWindow, DataState, Field, Phase, Prompt, StatusKind, View};

/// Fixed colours: training curves cyan, validation yellow, in both charts.
pub const TRAIN_COLOUR: Color = Color::Cyan;
pub const VALIDATION_COLOUR: Color = Color::Yellow;
const ACCENT: Color = Color::LightGreen;

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
        View::Train => render_train(frame, &l, app),
        View::Draw => render_draw(frame, &l, app),
        View::Explore => render_explore(frame, &l, app),
    }
    let status_style = match app.status.1 {
        StatusKind::Info => Style::new(),
        StatusKind::Error => Style::new().fg(Color::LightRed).add_modifier(Modifier::BOLD),
    };
    frame.render_widget(Paragraph::new(Line::styled(app.status.0.as_str(), status_style)), l.status);
    frame.render_widget(Paragraph::new(legend(app)).style(Style::new().fg(Color::Gray)), l.legend);
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

/// Two rows: the view's keys, then the keys that work everywhere.
fn legend(app: &App) -> Vec<Line<'static>> {
    let key = |k: &'static str| Span::styled(k, Style::new().fg(Color::White).add_modifier(Modifier::BOLD));
    let pairs = |items: &[(&'static str, &'static str)]| {
        let mut spans = Vec::new();
        for (k, what) in items {
            spans.push(key(k));
            spans.push(Span::raw(format!(" {what}  ")));
        }
        Line::from(spans)
    };
    if let Some(prompt) = &app.prompt {
        return match prompt {
            Prompt::ConfirmQuit => vec![pairs(&[("y", "quit and stop training"), ("n", "keep going")])],
            _ => vec![pairs(&[("type", "the checkpoint prefix"), ("Enter", "ok"), ("Esc", "cancel")])],
        };
    }
    if app.editing.is_some() {
        return vec![pairs(&[("type", "the value"), ("Enter", "set"), ("Esc", "cancel"), ("Backspace", "delete")])];
    }
    let view_keys: &[(&str, &str)] = match app.view {
        View::Train => &[
            ("s", "start"),
            ("p/space", "pause/resume"),
            ("x", "stop"),
            ("w", "whole run/recent"),
            ("↑↓", "setting"),
            ("←→", "change"),
            ("Enter", "type it"),
        ],
        View::Draw => &[
            ("mouse", "left draws, right erases"),
            ("arrows", "move"),
            ("space", "dab"),
            ("d", "pen down/up"),
            ("+/-", "brush"),
            ("c", "clear"),
        ],
        View::Explore => {
            &[("↑↓ PgUp PgDn Home End", "browse"), ("m", "misclassified only / all"), ("mouse", "click, scroll")]
        }
    };
    let global = [("Tab/1-3", "views"), ("o", "load model"), ("e", "save model"), ("q", "quit")];
    vec![pairs(view_keys), pairs(&global)]
}

fn render_prompt(frame: &mut Frame, area: Rect, prompt: &Prompt) {
    let (title, lines): (&str, Vec<Line>) = match prompt {
        Prompt::ConfirmQuit => (
            "Quit?",
            vec![Line::from("Training is running. Quit and stop it?"), Line::from("y: quit   n: keep training")],
        ),
        Prompt::SaveModel { input, offered } => (
            if *offered { "Training ended: save the model?" } else { "Save the model" },
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

fn render_train(frame: &mut Frame, l: &AppLayout, app: &App) {
    let t = &l.train;
    // Settings.
    let locked = app.phase.is_active() || app.phase == Phase::WaitingForData;
    let mut lines = Vec::new();
    for (i, field) in Field::ALL.iter().enumerate() {
        let selected = i == app.selected_field;
        let value = match &app.editing {
            Some((f, text)) if f == field => format!("{text}_"),
            _ => app.settings.value(*field),
        };
        let style = if selected {
            Style::new().fg(Color::Black).bg(if locked { Color::Gray } else { ACCENT })
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::raw(if selected { "> " } else { "  " }),
            Span::styled(format!("{:<11}{value}", field.label()), style),
        ]));
    }
    lines.push(Line::styled(
        if locked { "locked while training" } else { "s starts a run" },
        Style::new().fg(Color::Gray),
    ));
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title("Settings")), t.settings);

    // Progress.
    let block = Block::bordered().title("Progress");
    let inner = block.inner(t.progress);
    frame.render_widget(block, t.progress);
    let row = |i: u16| Rect::new(inner.x, inner.y + i, inner.width, 1).intersection(inner);
    let phase = match &app.phase {
        Phase::Idle => "Not started".to_string(),
        Phase::WaitingForData => "Waiting for the data".into(),
        Phase::Running => "Running".into(),
        Phase::Paused => "Paused".into(),
        Phase::Stopping => "Stopping".into(),
        Phase::Completed => "Finished".into(),
        Phase::Stopped => "Stopped".into(),
        Phase::Failed(m) => format!("Failed: {m}"),
    };
    let data_line = match &app.data {
        DataState::Loading(_) => "Data: loading...".to_string(),
        DataState::Ready { source, .. } => format!("Data: {source}"),
        DataState::Failed { message, .. } => format!("No data: {message}"),
    };
    let data_style =
        if matches!(app.data, DataState::Failed { .. }) { Style::new().fg(Color::LightRed) } else { Style::new() };
    let model_line = format!("Model for draw/explore: {}", app.model.as_ref().map_or("none", |m| m.origin.as_str()));
    match &app.run {
        None => {
            // Before any run there is room to wrap a long "No data" reason.
            let lines = vec![Line::from(phase), Line::from(model_line), Line::styled(data_line, data_style)];
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        }
        Some(run) => {
            let where_ = if run.epoch > 0 {
                format!(" - epoch {}/{} - step {}/{}", run.epoch, run.epochs, run.step, run.steps_per_epoch)
            } else {
                String::new()
            };
            frame.render_widget(
                Paragraph::new(Line::styled(format!("{phase}{where_}"), Style::new().add_modifier(Modifier::BOLD))),
                row(0),
            );
            let epoch_label = format!("epoch {:.0}%", run.epoch_fraction() * 100.0);
            frame.render_widget(
                Gauge::default()
                    .ratio(run.epoch_fraction())
                    .label(epoch_label)
                    .gauge_style(Style::new().fg(TRAIN_COLOUR)),
                row(1),
            );
            let eta = match (&app.phase, run.eta) {
                (Phase::Running, Some(eta)) => format!("ETA {}", format_duration(eta)),
                (Phase::Running, None) => "ETA after warm-up".into(),
                (Phase::Completed, _) => "done".into(),
                _ => String::new(),
            };
            let run_label = format!("run {:.0}%  {eta}", run.run_fraction() * 100.0);
            frame.render_widget(
                Gauge::default().ratio(run.run_fraction()).label(run_label).gauge_style(Style::new().fg(ACCENT)),
                row(2),
            );
            let rate = match (&app.phase, run.samples_per_second) {
                (Phase::Running, Some(r)) => format!("{r:.0} samples/s"),
                _ => "- samples/s".into(),
            };
            let backend = if run.backend.is_empty() {
                "starting".into()
            } else {
                format!("backend {} - device {}", run.backend, run.device)
            };
            frame.render_widget(Paragraph::new(format!("{rate} - {backend}")), row(3));
            let last = match run.last_epoch {
                Some((e, train, Some(test))) => format!(
                    "Epoch {e}: loss {:.4} acc {:.4} - val_loss {:.4} val_acc {:.4}",
                    train.loss, train.accuracy, test.loss, test.accuracy
                ),
                Some((e, train, None)) => format!("Epoch {e}: loss {:.4} acc {:.4}", train.loss, train.accuracy),
                None => "No epoch finished yet".into(),
            };
            frame.render_widget(Paragraph::new(last), row(4));
            frame.render_widget(Paragraph::new(Line::styled(data_line, data_style)), row(5));
            frame.render_widget(Paragraph::new(model_line), row(6));
        }
    }

    // Charts.
    let window = match app.chart_window {
        ChartWindow::WholeRun => "whole run",
        ChartWindow::Recent => "recent",
    };
    let (train_loss, val_loss, train_acc, val_acc) = match &app.run {
        Some(r) => (&r.train_loss[..], &r.val_loss[..], &r.train_accuracy[..], &r.val_accuracy[..]),
        None => (&[][..], &[][..], &[][..], &[][..]),
    };
    let epochs = app.run.as_ref().map_or(app.settings.epochs, |r| r.epochs);
    let loss = ChartSpec {
        title: format!("Loss ({window})"),
        y_title: "loss",
        train: train_loss,
        validation: val_loss,
        accuracy: false,
    };
    render_chart(frame, t.loss, &loss, app.chart_window, epochs);
    let accuracy = ChartSpec {
        title: format!("Accuracy ({window})"),
        y_title: "accuracy",
        train: train_acc,
        validation: val_acc,
        accuracy: true,
    };
    render_chart(frame, t.accuracy, &accuracy, app.chart_window, epochs);
}

struct ChartSpec<'a> {
    title: String,
    y_title: &'static str,
    train: &'a [(f64, f64)],
    validation: &'a [(f64, f64)],
    accuracy: bool,
}

fn render_chart(frame: &mut Frame, area: Rect, spec: &ChartSpec, window: ChartWindow, epochs: usize) {
    let block = Block::bordered().title(spec.title.as_str());
    if spec.train.is_empty() && spec.validation.is_empty() {
        let text = Paragraph::new("No training yet: s starts a run")
            .alignment(Alignment::Center)
            .style(Style::new().fg(Color::Gray))
            .block(block);
        frame.render_widget(text, area);
        return;
    }
    let (train, x_bounds) = match window {
        ChartWindow::WholeRun => (downsample(spec.train, WHOLE_RUN_POINTS), [0.0, epochs.max(1) as f64]),
        ChartWindow::Recent => {
            let points = recent(spec.train, RECENT_POINTS).to_vec();
            let first = points.first().map_or(0.0, |p| p.0);
            let last = points.last().map_or(first, |p| p.0).max(spec.validation.last().map_or(0.0, |p| p.0));
            (points, [first, if last > first { last } else { first + 0.01 }])
        }
    };
    let validation: Vec<(f64, f64)> =
        spec.validation.iter().copied().filter(|p| p.0 >= x_bounds[0] && p.0 <= x_bounds[1]).collect();
    let values = train.iter().chain(&validation).map(|p| p.1).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    let y_bounds = if spec.accuracy {
        let lo = (lo * 20.0).floor() / 20.0;
        [lo.min(0.95), 1.0]
    } else {
        [0.0, (hi * 1.1).max(0.01)]
    };
    let digits = if spec.accuracy { 3 } else { 2 };
    let y_labels = [y_bounds[0], (y_bounds[0] + y_bounds[1]) / 2.0, y_bounds[1]].map(|v| format!("{v:.digits$}"));
    let x_labels = [x_bounds[0], (x_bounds[0] + x_bounds[1]) / 2.0, x_bounds[1]].map(|v| format!("{v:.1}"));
    let datasets = vec![
        Dataset::default()
            .name("train (smoothed)")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(TRAIN_COLOUR))
            .data(&train),
        Dataset::default()
            .name("validation")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(VALIDATION_COLOUR))
            .data(&validation),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        // Keep the legend (which colour is which) unless the chart is tiny.
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)))
        // In the corner the curve leaves empty: loss falls, accuracy rises.
        .legend_position(Some(if spec.accuracy { LegendPosition::BottomRight } else { LegendPosition::TopRight }))
        .x_axis(Axis::default().title("epoch").bounds(x_bounds).labels(x_labels).style(Style::new().fg(Color::Gray)))
        .y_axis(
            Axis::default().title(spec.y_title).bounds(y_bounds).labels(y_labels).style(Style::new().fg(Color::Gray)),
        );
    frame.render_widget(chart, area);
}

/// A 256-colour grey for an intensity in [0, 1].
fn grey(v: f32) -> Color {
    Color::Indexed(232 + (v.clamp(0.0, 1.0) * 23.0).round() as u8)
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

/// A 28x28 image in half blocks (two pixel rows per cell row), clipped to `area`.
fn draw_half_blocks(buf: &mut Buffer, area: Rect, pixel: &dyn Fn(usize, usize) -> f32) {
    let threshold = 0.25;
    for row in 0..(SIDE as u16 / 2).min(area.height) {
        for x in 0..(SIDE as u16).min(area.width) {
            let (top, bottom) = (pixel(x as usize, 2 * row as usize), pixel(x as usize, 2 * row as usize + 1));
            let (symbol, fg, bg) = match (top >= threshold, bottom >= threshold) {
                (true, true) => ('█', grey(top.max(bottom)), Color::Reset),
                (true, false) => ('▀', grey(top), grey(bottom)),
                (false, true) => ('▄', grey(bottom), grey(top)),
                (false, false) => (' ', Color::Reset, grey(top.max(bottom))),
            };
            if let Some(cell) = buf.cell_mut((area.x + x, area.y + row)) {
                cell.set_char(symbol).set_fg(fg).set_bg(bg);
            }
        }
    }
}

fn render_draw(frame: &mut Frame, l: &AppLayout, app: &App) {
    let d = &l.draw;
    let Some(pad) = d.pad else {
        let text = "The window is too small for the pad: enlarge it to at least 20 rows.";
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), d.pad_block);
        return;
    };
    let pen = if app.pad.pen_down { "pen down" } else { "pen up" };
    let title = format!("Pad 28x28 - brush {} - {pen}", app.pad.brush);
    frame.render_widget(Block::bordered().title(title), d.pad_block);
    draw_pad(frame.buffer_mut(), &pad, app);

    frame.render_widget(Block::bordered().title("Model input"), d.seen);
    let seen_inner = Block::bordered().inner(d.seen);
    draw_half_blocks(frame.buffer_mut(), seen_inner, &|x, y| app.seen.get(y * SIDE + x).copied().unwrap_or(0.0));

    let prediction = match (&app.probabilities, &app.classifier) {
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
        Line::from(format!("Model: {}", app.model.as_ref().map_or("none", |m| m.origin.as_str()))),
        Line::styled(
            "Model input: the pad cropped to the ink, fitted in 20x20 and centred by mass, as MNIST's digits were.",
            Style::new().fg(Color::Gray),
        ),
    ];
    frame.render_widget(Paragraph::new(info).wrap(Wrap { trim: false }), d.info);

    let block = Block::bordered().title("Probabilities");
    let inner = block.inner(d.bars);
    frame.render_widget(block, d.bars);
    if let Some(p) = &app.probabilities {
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

fn draw_pad(buf: &mut Buffer, pad: &PadGeometry, app: &App) {
    let p = &app.pad;
    if pad.pixels_per_row == 2 {
        draw_half_blocks(buf, pad.inner, &|x, y| p.pixel(x, y));
    } else {
        for y in 0..SIDE {
            for x in 0..SIDE {
                let v = p.pixel(x, y);
                let (column, row) = pad.cell_of(x, y);
                for dx in 0..pad.cell_width {
                    if let Some(cell) = buf.cell_mut((column + dx, row)) {
                        cell.set_char(shade(v)).set_fg(grey(v.max(0.3)));
                    }
                }
            }
        }
    }
    // The keyboard cursor: brackets around its pixel (or a marked cell when narrow).
    let (column, row) = pad.cell_of(p.cursor.0, p.cursor.1);
    let marks: &[char] = if pad.cell_width >= 2 { &['[', ']'] } else { &['+'] };
    for (dx, &c) in marks.iter().enumerate() {
        if let Some(cell) = buf.cell_mut((column + dx as u16, row)) {
            cell.set_char(c).set_fg(Color::LightRed).set_bg(Color::Reset);
        }
    }
}

/// The first list row shown so that `selected` is visible (kept near the middle).
pub fn list_offset(selected: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    selected.saturating_sub(height / 2).min(len - height)
}

fn render_explore(frame: &mut Frame, l: &AppLayout, app: &App) {
    let e = &l.explore;
    let body = l.body;
    let message = match (&app.data, &app.model, &app.explore) {
        (DataState::Loading(_), _, _) => Some("Loading the test data...".to_string()),
        (DataState::Failed { message, .. }, _, _) => {
            Some(format!("No test data: {message}. Set Data in the train view (1)."))
        }
        (_, None, _) => Some("No model: o loads one, or train one in the train view (1)".into()),
        (_, _, ex) if ex.error.is_some() => ex.error.clone(),
        (DataState::Ready { split, .. }, Some(model), ex)
            if ex.predictions.as_ref().is_none_or(|(g, _)| *g != app.generation) =>
        {
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
    let (Some(split), Some((_, predictions))) = (app.data.split(), &app.explore.predictions) else {
        return;
    };
    let labels = &split.test.labels;
    let indices = app.explore_indices();
    let total = labels.len().min(predictions.classes.len());
    let wrong = (0..total).filter(|&i| predictions.classes[i] != labels[i]).count();

    // The list.
    let title = if app.explore.only_wrong {
        format!("Misclassified: {} of {total}", indices.len())
    } else {
        format!("Test images: {total}")
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(e.list);
    frame.render_widget(block, e.list);
    let height = inner.height as usize;
    let offset = list_offset(app.explore.selected, indices.len(), height);
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
            let text = format!("#{i:<5} true {label} pred {pred} {:>5.1}% ", conf * 100.0);
            let style = if position == app.explore.selected {
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

    // The selected image and its prediction.
    let selected = indices.get(app.explore.selected).copied();
    frame.render_widget(Block::bordered().title(selected.map_or("Image".into(), |i| format!("Image #{i}"))), e.image);
    if let Some(i) = selected {
        let image = &split.test.images[i * split.test.sample_len()..(i + 1) * split.test.sample_len()];
        draw_half_blocks(frame.buffer_mut(), Block::bordered().inner(e.image), &|x, y| {
            image.get(y * SIDE + x).map_or(0.0, |&b| b as f32 / 255.0)
        });
        let (pred, conf, label) = (predictions.classes[i], predictions.confidence[i], labels[i]);
        let verdict = if pred == label {
            Line::styled("correct", Style::new().fg(ACCENT))
        } else {
            Line::styled("WRONG", Style::new().fg(Color::LightRed).add_modifier(Modifier::BOLD))
        };
        let details = vec![
            Line::from(format!("True label: {label}")),
            Line::from(format!("Predicted:  {pred} ({:.1}%)", conf * 100.0)),
            verdict,
        ];
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
    let mut header = String::from("    ");
    header.extend((0..10).map(|c| format!("{c:>4}")));
    lines.push(Line::styled(header, Style::new().add_modifier(Modifier::BOLD)));
    for (t, row) in matrix.iter().enumerate() {
        let mut spans = vec![Span::styled(format!("{t:>3} "), Style::new().add_modifier(Modifier::BOLD))];
        for (p, &n) in row.iter().enumerate() {
            let style = match (t == p, n) {
                (true, _) => Style::new().fg(ACCENT),
                (false, 0) => Style::new().fg(Color::DarkGray),
                (false, _) => Style::new().fg(Color::LightRed),
            };
            spans.push(Span::styled(format!("{n:>4}"), style));
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title("Confusion matrix")), e.confusion);
}
