//! `stakpak-secretd`: the only holder of secret values: vault, placeholder resolution, redaction.
//!
//! Serves `dev.stakpak.Secrets1` through the shared daemon runtime of `stakpak-daemon`.

mod dbus;

use stakpak_daemon::{BaseConfig, ServeContext, ServeError, Service};
use stakpak_proto::{Daemon, SecretsInterface};

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct SecretsDaemon;

impl Service for SecretsDaemon {
    const DAEMON: Daemon = Daemon::Secrets;
    type Config = BaseConfig;

    async fn serve(
        ctx: ServeContext<BaseConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            SecretsInterface(dbus::Handler::new(ctx.control)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<SecretsDaemon>()
}
