//! The draw view's 28x28 pad: white ink on black, a round brush with a soft rim, straight
//! segments between drag positions so fast strokes have no gaps, and a keyboard cursor.
//! Leaves out the screen (layout.rs maps cells to pixels) and the model (models.rs).

use crate::preprocess::{self, Grey};

/// Pixels per side, MNIST's.
pub const SIDE: usize = 28;
pub const MAX_BRUSH: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    pixels: Vec<f32>, // (SIDE, SIDE), values in [0, 1]
    /// The keyboard cursor (x, y).
    pub cursor: (usize, usize),
    /// Brush diameter in pixels, 1..=MAX_BRUSH.
    pub brush: usize,
    /// With the pen down, moving the cursor with the arrows draws.
    pub pen_down: bool,
    /// Where the last mouse press or drag painted, so the next drag joins it with a line.
    pub last_drag: Option<(usize, usize)>,
}

impl Default for Pad {
    fn default() -> Self {
        Pad { pixels: vec![0.0; SIDE * SIDE], cursor: (SIDE / 2, SIDE / 2), brush: 2, pen_down: false, last_drag: None }
    }
}

impl Pad {
    pub fn pixel(&self, x: usize, y: usize) -> f32 {
        if x < SIDE && y < SIDE {
            self.pixels[y * SIDE + x]
        } else {
            0.0
        }
    }

    pub fn is_blank(&self) -> bool {
        self.pixels.iter().all(|&v| v == 0.0)
    }

    pub fn clear(&mut self) {
        self.pixels.iter_mut().for_each(|v| *v = 0.0);
        self.last_drag = None;
    }

    pub fn set_brush(&mut self, brush: usize) {
        self.brush = brush.clamp(1, MAX_BRUSH);
    }

    /// Paints (or erases) one brush print centred on pixel (x, y): full ink inside the brush's
    /// radius, half ink on a one-pixel rim, like the anti-aliased strokes MNIST was made from.
    pub fn stamp(&mut self, x: usize, y: usize, erase: bool) {
        let radius = self.brush as f32 / 2.0;
        let reach = self.brush as isize / 2 + 1;
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let (px, py) = (x as isize + dx, y as isize + dy);
                if !(0..SIDE as isize).contains(&px) || !(0..SIDE as isize).contains(&py) {
                    continue;
                }
                // Even brushes centre between pixels, odd ones on a pixel.
                let offset = if self.brush.is_multiple_of(2) { 0.5 } else { 0.0 };
                let (fx, fy) = (dx as f32 + offset, dy as f32 + offset);
                let distance = (fx * fx + fy * fy).sqrt();
                let ink = if distance <= radius {
                    1.0
                } else if distance <= radius + 0.75 {
                    0.5
                } else {
                    continue;
                };
                let slot = &mut self.pixels[py as usize * SIDE + px as usize];
                // The eraser clears its rim too, so erasing over a stroke leaves nothing behind.
                *slot = if erase { 0.0 } else { (*slot).max(ink) };
            }
        }
    }

    /// Stamps every pixel of the straight segment from `from` to `to` (Bresenham), ends included.
    pub fn line(&mut self, from: (usize, usize), to: (usize, usize), erase: bool) {
        let (mut x, mut y) = (from.0 as isize, from.1 as isize);
        let (x1, y1) = (to.0 as isize, to.1 as isize);
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
        let mut error = dx + dy;
        loop {
            self.stamp(x as usize, y as usize, erase);
            if x == x1 && y == y1 {
                break;
            }
            let doubled = 2 * error;
            if doubled >= dy {
                error += dy;
                x += sx;
            }
            if doubled <= dx {
                error += dx;
                y += sy;
            }
        }
    }

    /// A mouse press (`drag` false) or drag (`drag` true) at pixel (x, y).
    pub fn mouse_paint(&mut self, x: usize, y: usize, drag: bool, erase: bool) {
        let (x, y) = (x.min(SIDE - 1), y.min(SIDE - 1));
        match self.last_drag.filter(|_| drag) {
            Some(from) => self.line(from, (x, y), erase),
            None => self.stamp(x, y, erase),
        }
        self.last_drag = Some((x, y));
        self.cursor = (x, y);
    }

    /// Moves the keyboard cursor, drawing the way when the pen is down.
    pub fn move_cursor(&mut self, dx: isize, dy: isize) {
        let from = self.cursor;
        let clamp = |v: usize, d: isize| (v as isize + d).clamp(0, SIDE as isize - 1) as usize;
        self.cursor = (clamp(from.0, dx), clamp(from.1, dy));
        if self.pen_down {
            self.line(from, self.cursor, false);
        }
    }

    /// What the model sees: the ink cropped, fitted into 20x20 and centred by mass in 28x28.
    pub fn model_input(&self) -> Vec<f32> {
        match Grey::new(SIDE, SIDE, self.pixels.clone()) {
            Some(grey) => preprocess::mnist_style_light_on_dark(grey, SIDE, SIDE),
            None => vec![0.0; SIDE * SIDE],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inked(pad: &Pad) -> usize {
        (0..SIDE * SIDE).filter(|i| pad.pixel(i % SIDE, i / SIDE) > 0.0).count()
    }

    #[test]
    fn a_line_has_no_gaps_even_between_far_apart_drag_events() {
        let mut pad = Pad::default();
        pad.set_brush(1);
        pad.mouse_paint(2, 3, false, false);
        pad.mouse_paint(25, 20, true, false);
        // Every column between the ends holds full ink somewhere.
        for x in 2..=25 {
            assert!((0..SIDE).any(|y| pad.pixel(x, y) == 1.0), "gap at column {x}");
        }
        assert_eq!(pad.pixel(2, 3), 1.0);
        assert_eq!(pad.pixel(25, 20), 1.0);
    }

    #[test]
    fn a_new_press_does_not_join_the_previous_stroke() {
        let mut pad = Pad::default();
        pad.set_brush(1);
        pad.mouse_paint(2, 2, false, false);
        pad.mouse_paint(20, 2, false, false);
        assert_eq!(pad.pixel(10, 2), 0.0);
    }

    #[test]
    fn brush_size_widens_the_stroke_and_erasing_removes_ink() {
        let mut small = Pad::default();
        small.set_brush(1);
        small.stamp(14, 14, false);
        let mut big = Pad::default();
        big.set_brush(9); // clamped
        assert_eq!(big.brush, MAX_BRUSH);
        big.stamp(14, 14, false);
        assert!(inked(&big) > inked(&small), "{} vs {}", inked(&big), inked(&small));
        big.stamp(14, 14, true);
        assert!(big.is_blank());
    }

    #[test]
    fn stamps_at_the_edges_stay_inside() {
        let mut pad = Pad::default();
        pad.set_brush(MAX_BRUSH);
        for (x, y) in [(0, 0), (27, 27), (0, 27), (27, 0)] {
            pad.stamp(x, y, false);
        }
        pad.mouse_paint(500, 500, true, false);
        assert_eq!(pad.cursor, (27, 27));
    }

    #[test]
    fn the_keyboard_draws_only_with_the_pen_down() {
        let mut pad = Pad::default();
        pad.move_cursor(3, 0);
        assert!(pad.is_blank());
        pad.pen_down = true;
        pad.move_cursor(0, 5);
        assert!(inked(&pad) > 5);
        pad.move_cursor(-100, -100);
        assert_eq!(pad.cursor, (0, 0));
    }

    #[test]
    fn the_model_input_is_centred_and_20_pixels_tall() {
        let mut pad = Pad::default();
        pad.set_brush(2);
        pad.line((3, 1), (3, 12), false); // a short stroke in a corner
        let input = pad.model_input();
        let rows: Vec<usize> = (0..SIDE).filter(|&y| (0..SIDE).any(|x| input[y * SIDE + x] > 0.3)).collect();
        assert!(rows.len() >= 19 && rows.len() <= 21, "{rows:?}");
        let cols: Vec<usize> = (0..SIDE).filter(|&x| (0..SIDE).any(|y| input[y * SIDE + x] > 0.3)).collect();
        let mid = (cols[0] + cols[cols.len() - 1]) as f32 / 2.0;
        assert!((mid - 13.5).abs() <= 1.5, "{cols:?}");
        assert!(Pad::default().model_input().iter().all(|&v| v == 0.0));
    }
}
