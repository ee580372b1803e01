//! Test support that uses real components: the suite's real binaries on a real
//! `dbus-daemon`. Nothing here is a mock of the code under test.
//!
//! Panics are this crate's way of failing a test, so it unwraps freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binaries;
mod bus;
mod daemon;
mod process;
mod suite;

pub use binaries::{bin, bin_dir};
pub use bus::{BusOptions, PrivateBus};
pub use daemon::{DaemonDirs, daemon_command, files_below, random_string};
pub use process::{Output, ProcessInfo, processes_named, wait_until};
pub use suite::{EmbeddedSuite, SuiteBuilder};
