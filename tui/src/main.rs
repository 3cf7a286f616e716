//! The `mnist` binary (placeholder until `mnist train` lands).
// Unused until the CLI calls it.
#[allow(dead_code, unused_imports)]
mod download;

fn main() {}
