//! Drawing pieces more than one view uses: the fixed colours, a 28x28 image in half blocks,
//! the key-legend entry type and counted nouns. Leaves out any view's own drawing (views/).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;

use super::pad::SIDE;

/// Fixed colours: training curves cyan, validation yellow, in both charts.
pub const TRAIN_COLOUR: Color = Color::Cyan;
pub const VALIDATION_COLOUR: Color = Color::Yellow;
pub const ACCENT: Color = Color::LightGreen;

/// A key (or keys) and what it does, for the legend.
pub type KeyHelp = (&'static str, &'static str);

/// `1 epoch`, `2 epochs`: a count and its noun, plural unless one.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A 256-colour grey for an intensity in [0, 1].
pub fn grey(v: f32) -> Color {
    Color::Indexed(232 + (v.clamp(0.0, 1.0) * 23.0).round() as u8)
}

/// A 28x28 image in half blocks (two pixel rows per cell row), clipped to `area`.
pub fn draw_half_blocks(buf: &mut Buffer, area: Rect, pixel: &dyn Fn(usize, usize) -> f32) {
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
