//! Command-line arguments every daemon takes.

use std::path::PathBuf;

use clap::Args;

/// Where a daemon finds its bus, configuration and state.
///
/// Without `--bus-address` the daemon runs in installed mode on the system bus with the
/// paths systemd hands it; with it, in embedded mode with XDG paths or the ones given here.
#[derive(Debug, Clone, Default, Args)]
pub struct DaemonArgs {
    /// D-Bus address of a private bus (embedded mode); the system bus when absent.
    #[arg(long, env = "STAKPAK_BUS_ADDRESS", value_name = "ADDRESS")]
    pub bus_address: Option<String>,

    /// Folder holding the configuration files.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Configuration file of this daemon (default: `<config-dir>/<daemon>.toml`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Folder for this daemon's persistent state.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Folder for this daemon's sockets and other run-time files.
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
}
