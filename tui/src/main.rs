//! The `mnist` binary (placeholder until `mnist train` lands).
fn main() {}
