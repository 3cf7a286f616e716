//! The draw view's rules and screen: the pad by mouse and keyboard, and the model's reading of it.

use super::*;

#[test]
fn the_mouse_draws_on_the_pad_filling_gaps_between_drag_events() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('-')); // brush 1: exactly the dragged pixels
    let pad = layout(app.screen).draw.pad.unwrap();
    mouse(&mut app, MouseEventKind::Down(MouseButton::Left), pad.cell_of(3, 5));
    mouse(&mut app, MouseEventKind::Drag(MouseButton::Left), pad.cell_of(20, 5));
    mouse(&mut app, MouseEventKind::Drag(MouseButton::Left), pad.cell_of(20, 22));
    mouse(&mut app, MouseEventKind::Up(MouseButton::Left), pad.cell_of(20, 22));
    for x in 3..=20 {
        assert_eq!(app.draw.pad.pixel(x, 5), 1.0, "gap at ({x}, 5)");
    }
    for y in 5..=22 {
        assert_eq!(app.draw.pad.pixel(20, y), 1.0, "gap at (20, {y})");
    }
    // After the release, a drag without a press does not draw.
    mouse(&mut app, MouseEventKind::Drag(MouseButton::Left), pad.cell_of(3, 25));
    assert_eq!(app.draw.pad.pixel(3, 25), 0.0);
    // The right button erases.
    mouse(&mut app, MouseEventKind::Down(MouseButton::Right), pad.cell_of(10, 5));
    assert_eq!(app.draw.pad.pixel(10, 5), 0.0);

    app.refresh_prediction();
    let p = app.draw.probabilities.clone().expect("a prediction");
    assert_eq!(p.len(), 10);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    assert!(app.draw.seen.iter().any(|&v| v > 0.5));
    let shown = screen(&app, 120, 40);
    assert_shows(
        &shown,
        &["Pad 28x28 - brush 1 - pen up", "Model input", "Prediction: ", "Probabilities", "Model: shipped", "██"],
    );
    assert_eq!(shown.matches('%').count(), 11, "ten bars and the prediction:\n{shown}");
}

#[test]
fn the_keyboard_draws_a_one_that_the_shipped_model_reads_as_one() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('2'));
    for _ in 0..10 {
        key(&mut app, KeyCode::Up);
    }
    key(&mut app, KeyCode::Char('d')); // pen down
    for _ in 0..20 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Char('d'));
    app.refresh_prediction();
    let (class, probability) = models::argmax(app.draw.probabilities.as_ref().unwrap());
    assert_eq!(class, 1, "{:?}", app.draw.probabilities);
    assert!(probability > 0.5);
    assert_shows(&screen(&app, 120, 40), &["Prediction: 1"]);
    // Space dabs at the cursor; c clears, and a blank pad has no prediction.
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Char(' '));
    assert!(app.draw.pad.pixel(app.draw.pad.cursor.0, app.draw.pad.cursor.1) > 0.0);
    key(&mut app, KeyCode::Char('+'));
    assert_eq!(app.draw.pad.brush, 3);
    key(&mut app, KeyCode::Char('c'));
    app.refresh_prediction();
    assert!(app.draw.pad.is_blank() && app.draw.probabilities.is_none());
    assert_shows(&screen(&app, 120, 40), &["Draw a digit on the pad"]);
}

/// Issue 17 #4: at 80x24 the draw view shows the pad, the model's input, the prediction, all
/// ten probability bars and every key of the legend.
#[test]
fn at_80x24_draw_shows_the_pad_the_ten_bars_and_the_keys() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('d'));
    for _ in 0..8 {
        key(&mut app, KeyCode::Down);
    }
    app.refresh_prediction();
    let shown = screen(&app, 80, 24);
    assert_shows(&shown, &["Pad - brush 2 - pen down", "Model input", "Prediction: ", "Probabilities"]);
    for class in 0..10 {
        let bar = format!("│{class} ");
        assert!(shown.lines().any(|l| l.contains(&bar) && l.contains('%')), "no bar for {class}:\n{shown}");
    }
    assert_eq!(shown.matches('%').count(), 11, "ten bars and the prediction:\n{shown}");
    assert_legend(&shown, views::draw::KEYS);
    assert_legend(&shown, render::GLOBAL_KEYS);
    // The pad is where the mouse finds it.
    let pad = layout(Rect::new(0, 0, 80, 24)).draw.pad.unwrap();
    app.screen = Rect::new(0, 0, 80, 24);
    key(&mut app, KeyCode::Char('c'));
    mouse(&mut app, MouseEventKind::Down(MouseButton::Left), pad.cell_of(3, 4));
    assert!(app.draw.pad.pixel(3, 4) > 0.0);
}
