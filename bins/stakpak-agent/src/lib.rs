//! `stakpak-agent`: the agent loop: LLM calls, tool dispatch, approvals, sessions, rulebooks.
//!
//! Serves `dev.stakpak.Agent1` through the shared daemon runtime of `stakpak-daemon`.

mod dbus;

use stakpak_daemon::{BaseConfig, ServeContext, ServeError, Service};
use stakpak_proto::{AgentInterface, Daemon};

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct AgentDaemon;

impl Service for AgentDaemon {
    const DAEMON: Daemon = Daemon::Agent;
    type Config = BaseConfig;

    async fn serve(
        ctx: ServeContext<BaseConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            AgentInterface(dbus::Handler::new(ctx.control)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<AgentDaemon>()
}
