//! Logging: to journald with structured fields when stderr is connected to the journal, to
//! stderr otherwise. The filter can be changed at run time (on reload).

use std::os::fd::AsFd;

use stakpak_proto::Daemon;
use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt, reload};

/// Switches the log filter of a running daemon.
#[derive(Debug, Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
}

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter `{filter}`: {message}")]
    Filter { filter: String, message: String },
    #[error("cannot connect to the journal: {0}")]
    Journal(std::io::Error),
    #[error("a logger is already installed")]
    AlreadySet,
}

impl LogHandle {
    /// Replaces the filter, e.g. after a reload changed `log.level`.
    pub fn set_filter(&self, filter: &str) -> Result<(), LoggingError> {
        let f = parse_filter(filter)?;
        self.filter.reload(f).map_err(|e| LoggingError::Filter {
            filter: filter.to_string(),
            message: e.to_string(),
        })
    }
}

fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| LoggingError::Filter {
            filter: filter.to_string(),
            message: e.to_string(),
        })
}

/// True when systemd connected our stderr to the journal (`JOURNAL_STREAM` names the device
/// and inode of that stream, see systemd.exec(5)); then native journal messages keep their
/// fields and priorities instead of being flattened to text.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stat.st_dev) && ino.parse::<u64>().ok() == Some(stat.st_ino)
}

/// Installs the global logger for `daemon`. `STAKPAK_LOG` overrides `level`.
pub fn init(daemon: Daemon, level: &str) -> Result<LogHandle, LoggingError> {
    let level = std::env::var("STAKPAK_LOG").unwrap_or_else(|_| level.to_string());
    let (filter, handle) = reload::Layer::new(parse_filter(&level)?);
    let registry = Registry::default().with(filter);
    let result = if stderr_is_journal() {
        let journald = tracing_journald::layer()
            .map_err(LoggingError::Journal)?
            .with_syslog_identifier(daemon.binary().to_string())
            .with_field_prefix(Some("STAKPAK".to_string()))
            .with_custom_fields([("STAKPAK_DAEMON", daemon.short_name())]);
        tracing::subscriber::set_global_default(registry.with(journald))
    } else {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(rustix::termios::isatty(std::io::stderr()))
            .with_target(false);
        tracing::subscriber::set_global_default(registry.with(fmt))
    };
    result.map_err(|_| LoggingError::AlreadySet)?;
    Ok(LogHandle { filter: handle })
}
