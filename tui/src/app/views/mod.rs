//! The app's three views, one file each holding the view's state, its keys and mouse, and its
//! drawing: train, draw, explore. What they share (data, model, status) comes in as `Shared`.

pub mod draw;
pub mod explore;
pub mod train;
