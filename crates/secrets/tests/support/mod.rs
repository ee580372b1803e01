//! What the integration tests share (the benches include single files with `#[path]`).

pub mod rng;
