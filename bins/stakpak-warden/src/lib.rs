//! `stakpak-warden`: the policy decision point: judges every action against the policy packs.
//!
//! Serves `dev.stakpak.Warden1` through the shared daemon runtime of `stakpak-daemon`.

mod dbus;

use stakpak_daemon::{BaseConfig, ServeContext, ServeError, Service};
use stakpak_proto::{Daemon, WardenInterface};

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct WardenDaemon;

impl Service for WardenDaemon {
    const DAEMON: Daemon = Daemon::Warden;
    type Config = BaseConfig;

    async fn serve(
        ctx: ServeContext<BaseConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            WardenInterface(dbus::Handler::new(ctx.control)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<WardenDaemon>()
}
