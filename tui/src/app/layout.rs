//! Where everything goes on the screen: one pure function of the terminal's size, used both to
//! render and to hit-test the mouse (tabs, the pad's pixels, the explore list), so the two
//! always agree; and the views they show. Leaves out what is drawn in each area (views/, render.rs).

use ratatui::layout::{Constraint, Layout, Position, Rect};

use super::pad::SIDE;

/// The app's views, one tab each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Train,
    Draw,
    Explore,
}

impl View {
    pub const ALL: [View; 3] = [View::Train, View::Draw, View::Explore];
    pub fn index(self) -> usize {
        View::ALL.iter().position(|&v| v == self).unwrap_or(0)
    }
}

/// Below this the app shows only a "window too small" line.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;
/// Rows of the key legend.
pub const LEGEND_ROWS: u16 = 2;
/// The tab titles, in `View::ALL` order; their widths place the tab hit areas.
pub const TAB_TITLES: [&str; 3] = [" 1 Train ", " 2 Draw ", " 3 Explore "];
const TAB_PREFIX: &str = " mnist ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppLayout {
    pub too_small: bool,
    /// The top row: the app's name and the tabs.
    pub top: Rect,
    pub tabs: [Rect; 3],
    pub body: Rect,
    pub status: Rect,
    pub legend: Rect,
    pub train: TrainLayout,
    pub draw: DrawLayout,
    pub explore: ExploreLayout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrainLayout {
    pub settings: Rect,
    pub progress: Rect,
    pub loss: Rect,
    pub accuracy: Rect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrawLayout {
    /// None when the body cannot hold even the half-height pad.
    pub pad: Option<PadGeometry>,
    pub pad_block: Rect,
    pub seen: Rect,
    /// Beside the model's input: the predicted class.
    pub prediction: Rect,
    /// Under the bars: which model, and what the input view shows.
    pub info: Rect,
    pub bars: Rect,
}

/// How the 28x28 pad maps onto cells: each pixel `cell_width` columns wide, and one or two
/// pixels per row (two when the window is short: upper and lower half blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PadGeometry {
    pub inner: Rect,
    pub cell_width: u16,
    pub pixels_per_row: u16,
}

impl PadGeometry {
    /// The pixel under a cell, if the cell is on the pad (the upper one in half-height mode).
    pub fn pixel_at(&self, column: u16, row: u16) -> Option<(usize, usize)> {
        if !self.inner.contains(Position::new(column, row)) {
            return None;
        }
        Some(self.clamped_pixel_at(column, row))
    }

    /// The pixel under a cell or, off the pad, the nearest edge pixel (a drag leaving the pad).
    pub fn clamped_pixel_at(&self, column: u16, row: u16) -> (usize, usize) {
        let x = column.saturating_sub(self.inner.x) / self.cell_width.max(1);
        let y = row.saturating_sub(self.inner.y) * self.pixels_per_row;
        ((x as usize).min(SIDE - 1), (y as usize).min(SIDE - 1))
    }

    /// The cell showing pixel (x, y).
    pub fn cell_of(&self, x: usize, y: usize) -> (u16, u16) {
        (self.inner.x + x as u16 * self.cell_width, self.inner.y + y as u16 / self.pixels_per_row.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExploreLayout {
    pub list: Rect,
    /// Empty when the window is too short for both the image and the matrix, and too narrow
    /// to put them side by side.
    pub image: Rect,
    pub details: Rect,
    pub confusion: Rect,
}

/// Width and height of a 28x28 image drawn with half blocks, border included.
pub const IMAGE_BLOCK: (u16, u16) = (SIDE as u16 + 2, SIDE as u16 / 2 + 2);

pub fn layout(area: Rect) -> AppLayout {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return AppLayout { too_small: true, body: area, ..AppLayout::default() };
    }
    let [top, body, status, legend] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(LEGEND_ROWS),
    ])
    .areas(area);
    let mut tabs = [Rect::default(); 3];
    let mut x = top.x + TAB_PREFIX.len() as u16;
    for (slot, title) in tabs.iter_mut().zip(TAB_TITLES) {
        let width = (title.len() as u16).min(top.right().saturating_sub(x));
        *slot = Rect::new(x, top.y, width, 1);
        x += width + 1;
    }
    AppLayout {
        too_small: false,
        top,
        tabs,
        body,
        status,
        legend,
        train: train_layout(body),
        draw: draw_layout(body),
        explore: explore_layout(body),
    }
}

/// The view whose tab title is under a cell.
pub fn tab_at(layout: &AppLayout, column: u16, row: u16) -> Option<View> {
    layout.tabs.iter().position(|r| r.contains(Position::new(column, row))).map(|i| View::ALL[i])
}

pub fn tab_prefix() -> &'static str {
    TAB_PREFIX
}

fn train_layout(body: Rect) -> TrainLayout {
    let [top, charts] = Layout::vertical([Constraint::Length(10), Constraint::Min(0)]).areas(body);
    let [settings, progress] = Layout::horizontal([Constraint::Length(34), Constraint::Min(0)]).areas(top);
    let [loss, accuracy] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    TrainLayout { settings, progress, loss, accuracy }
}

/// The probability bars' block: ten rows, and at least a few cells of bar beside the class and
/// the percentage.
pub const BARS_BLOCK: (u16, u16) = (2 + 2 + 9 + 7, 2 + 10);

/// The pad on the left (as large as leaves the right side its room); on the right the model's
/// input with the prediction beside it over the bars when the body is tall, or the input beside
/// the bars when short (80x24), so that all ten bars always show.
fn draw_layout(body: Rect) -> DrawLayout {
    let side = SIDE as u16;
    // Room to the right of the pad for the model's input and the bars.
    let stacked = body.height >= IMAGE_BLOCK.1 + BARS_BLOCK.1;
    let right_min = if stacked { IMAGE_BLOCK.0 + 2 } else { IMAGE_BLOCK.0 + BARS_BLOCK.0 };
    let full_height = body.height >= side + 2;
    let (cell_width, pixels_per_row) = match (full_height, body.width) {
        (true, w) if w >= 2 * side + 2 + right_min => (2, 1),
        (true, w) if w >= side + 2 + right_min => (1, 1),
        (_, w) if w >= 2 * side + 2 + right_min && body.height >= side / 2 + 2 => (2, 2),
        (_, w) if w >= side + 2 && body.height >= side / 2 + 2 => (1, 2),
        _ => (0, 0),
    };
    if cell_width == 0 {
        return DrawLayout { pad: None, pad_block: body, ..DrawLayout::default() };
    }
    let pad_size = (side * cell_width + 2, side / pixels_per_row + 2);
    let [pad_column, right] = Layout::horizontal([Constraint::Length(pad_size.0), Constraint::Min(0)]).areas(body);
    let [pad_block, _] = Layout::vertical([Constraint::Length(pad_size.1), Constraint::Min(0)]).areas(pad_column);
    let inner = Rect::new(pad_block.x + 1, pad_block.y + 1, side * cell_width, side / pixels_per_row);
    let (seen, prediction, bars, info) = if stacked {
        let [seen_row, bars, info] =
            Layout::vertical([Constraint::Length(IMAGE_BLOCK.1), Constraint::Length(BARS_BLOCK.1), Constraint::Min(0)])
                .areas(right);
        let [seen, prediction] =
            Layout::horizontal([Constraint::Length(IMAGE_BLOCK.0), Constraint::Min(0)]).areas(seen_row);
        (seen, prediction, bars, info)
    } else {
        let [seen_column, bars_column] =
            Layout::horizontal([Constraint::Length(IMAGE_BLOCK.0), Constraint::Min(0)]).areas(right);
        let [seen, info] = Layout::vertical([Constraint::Length(IMAGE_BLOCK.1), Constraint::Min(0)]).areas(seen_column);
        let [bars, prediction] =
            Layout::vertical([Constraint::Length(BARS_BLOCK.1), Constraint::Min(0)]).areas(bars_column);
        (seen, prediction, bars, info)
    };
    DrawLayout { pad: Some(PadGeometry { inner, cell_width, pixels_per_row }), pad_block, seen, prediction, bars, info }
}

/// The confusion matrix's block: a row label and ten columns of 5 (4-digit counts, the full test
/// set's), 10 rows under 3 lines of text.
pub const MATRIX_BLOCK: (u16, u16) = (2 + 4 + 10 * 5, 2 + 3 + 10);
/// The explore list's width: rows like `#1234  true 4 pred 2  55.4% XX`, or `#1234 4→2  55.4% XX`
/// when narrow.
const LIST_WIDTH: u16 = 32;
const COMPACT_LIST_WIDTH: u16 = 24;

/// The list on the left, as wide as leaves the confusion matrix its room. When the body is tall:
/// on the right the selected image beside its details, and the matrix under them (so 100x36
/// holds it all). When short (80x24): the details over the matrix, and the image between the
/// list and them only if the width allows; the matrix's counts come before the image.
fn explore_layout(body: Rect) -> ExploreLayout {
    let list_width = if body.width >= LIST_WIDTH + MATRIX_BLOCK.0 { LIST_WIDTH } else { COMPACT_LIST_WIDTH };
    let [list, right] = Layout::horizontal([Constraint::Length(list_width), Constraint::Min(0)]).areas(body);
    if body.height >= IMAGE_BLOCK.1 + MATRIX_BLOCK.1 {
        let [top, confusion] = Layout::vertical([Constraint::Length(IMAGE_BLOCK.1), Constraint::Min(0)]).areas(right);
        let [image, details] = Layout::horizontal([Constraint::Length(IMAGE_BLOCK.0), Constraint::Min(0)]).areas(top);
        return ExploreLayout { list, image, details, confusion };
    }
    let (image, right) = if right.width >= IMAGE_BLOCK.0 + MATRIX_BLOCK.0 && body.height >= IMAGE_BLOCK.1 {
        let [column, right] = Layout::horizontal([Constraint::Length(IMAGE_BLOCK.0), Constraint::Min(0)]).areas(right);
        let [image, _] = Layout::vertical([Constraint::Length(IMAGE_BLOCK.1), Constraint::Min(0)]).areas(column);
        (image, right)
    } else {
        (Rect::default(), right)
    };
    let [details, confusion] = Layout::vertical([Constraint::Length(4), Constraint::Min(0)]).areas(right);
    ExploreLayout { list, image, details, confusion }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pad_uses_square_cells_when_there_is_room_and_half_blocks_when_short() {
        let big = layout(Rect::new(0, 0, 120, 40));
        let pad = big.draw.pad.unwrap();
        assert_eq!((pad.cell_width, pad.pixels_per_row), (2, 1));
        assert_eq!(pad.inner.width, 56);
        let short = layout(Rect::new(0, 0, 120, 24)).draw.pad.unwrap();
        assert_eq!((short.cell_width, short.pixels_per_row), (2, 2));
        assert!(layout(Rect::new(0, 0, 40, 12)).draw.pad.is_none());
    }

    #[test]
    fn hit_testing_inverts_cell_of() {
        for size in [(120, 40), (120, 24), (70, 40), (60, 22)] {
            let Some(pad) = layout(Rect::new(0, 0, size.0, size.1)).draw.pad else {
                continue;
            };
            for (x, y) in [(0, 0), (27, 27), (13, 6), (5, 20)] {
                let (c, r) = pad.cell_of(x, y);
                let y_seen = y - y % pad.pixels_per_row as usize;
                assert_eq!(pad.pixel_at(c, r), Some((x, y_seen)), "{size:?}");
            }
            assert_eq!(pad.pixel_at(pad.inner.x - 1, pad.inner.y), None);
            assert_eq!(pad.clamped_pixel_at(0, 500), (0, 27));
        }
    }

    #[test]
    fn tabs_are_hit_where_their_titles_are() {
        let l = layout(Rect::new(0, 0, 120, 40));
        assert_eq!(tab_at(&l, l.tabs[1].x, 0), Some(View::Draw));
        assert_eq!(tab_at(&l, l.tabs[2].x + 3, 0), Some(View::Explore));
        assert_eq!(tab_at(&l, 0, 0), None);
        assert_eq!(tab_at(&l, l.tabs[0].x, 1), None);
    }

    #[test]
    fn every_size_gives_areas_inside_the_screen() {
        for w in 0..=130 {
            for h in 0..=45 {
                let area = Rect::new(0, 0, w, h);
                let l = layout(area);
                let mut rects = vec![
                    l.body,
                    l.status,
                    l.legend,
                    l.train.settings,
                    l.train.progress,
                    l.train.loss,
                    l.train.accuracy,
                ];
                rects.extend([
                    l.draw.pad_block,
                    l.draw.seen,
                    l.draw.info,
                    l.draw.bars,
                    l.explore.list,
                    l.explore.image,
                    l.explore.details,
                    l.explore.confusion,
                ]);
                rects.extend(l.tabs);
                rects.extend(l.draw.pad.map(|p| p.inner));
                for r in rects {
                    assert!(
                        r.area() == 0
                            || area.contains(Position::new(r.x, r.y))
                                && r.right() <= area.right()
                                && r.bottom() <= area.bottom(),
                        "{w}x{h}: {r:?}"
                    );
                }
            }
        }
    }
}
