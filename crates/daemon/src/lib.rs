//! What every stakpak daemon shares: path resolution, configuration files, logging to
//! journald or stderr, sd-notify, signals, the Landlock self-restriction and the bus
//! connection, tied together by [`run`].
//!
//! A daemon binary implements [`Service`] and calls [`main`]; everything from argument parsing
//! to the last `STOPPING=1` happens here, so the five daemons start, restrict themselves,
//! serve, reload and stop the same way.

mod args;
mod bus;
mod config;
mod control;
mod landlock;
mod logging;
mod notify;
mod paths;
mod run;

pub use args::DaemonArgs;
pub use bus::{BusTarget, caller_uid};
pub use config::{ConfigError, DaemonConfig, LogConfig, load_config};
pub use control::{ControlHandle, OwnConnection, ServeContext};
pub use landlock::{Confinement, LandlockError, LandlockOutcome, SYSTEM_READ, restrict_self};
pub use logging::{LogHandle, LoggingError};
pub use notify::{Notifier, watchdog_interval};
pub use paths::{Mode, Paths, PathsError};
pub use run::{BaseConfig, ExitStatus, RunError, ServeError, Service, StateError, main, run};
