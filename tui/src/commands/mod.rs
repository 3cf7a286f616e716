//! The subcommands, one file each: `mnist train`, `predict` and `bench`. The interactive app
//! (`mnist tui`) lives in app/. Each exposes `run(args) -> Result<summary, Failure>`.

pub mod bench;
pub mod predict;
pub mod train;
