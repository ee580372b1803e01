//! The async runtime a command's D-Bus calls run on: one thread, as the CLI makes one call
//! after another (and the embedded supervisor relies on spawning from its only thread).

use anyhow::Context;
use tokio::runtime::Runtime;

/// A current-thread runtime with I/O and timers.
pub fn new() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
