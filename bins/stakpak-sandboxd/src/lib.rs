//! `stakpak-sandboxd`: the only process that executes anything, inside a sandbox.
//!
//! Serves `dev.stakpak.Sandbox1` through the shared daemon runtime of `stakpak-daemon`.

mod dbus;

use stakpak_daemon::{BaseConfig, ServeContext, ServeError, Service};
use stakpak_proto::{Daemon, SandboxInterface};

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct SandboxDaemon;

impl Service for SandboxDaemon {
    const DAEMON: Daemon = Daemon::Sandbox;
    type Config = BaseConfig;

    async fn serve(
        ctx: ServeContext<BaseConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            SandboxInterface(dbus::Handler::new(ctx.control)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<SandboxDaemon>()
}
