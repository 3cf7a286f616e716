//! The subcommands, one file each: `mnist train`, `predict`, `bench`, `serve` and `export`. The interactive app
//! (`mnist tui`) lives in app/. Each exposes `run(args) -> Result<summary, Failure>`.

pub mod bench;
pub mod export;
pub mod predict;
pub mod serve;
pub mod train;
