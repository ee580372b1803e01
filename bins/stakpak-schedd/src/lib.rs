//! `stakpak-schedd`: the autopilot triggers: schedules, check scripts, channels, notifications.
//!
//! Serves `dev.stakpak.Scheduler1` through the shared daemon runtime of `stakpak-daemon`.

mod dbus;

use stakpak_daemon::{BaseConfig, ServeContext, ServeError, Service};
use stakpak_proto::{Daemon, SchedulerInterface};

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct SchedulerDaemon;

impl Service for SchedulerDaemon {
    const DAEMON: Daemon = Daemon::Scheduler;
    type Config = BaseConfig;

    async fn serve(
        ctx: ServeContext<BaseConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            SchedulerInterface(dbus::Handler::new(ctx.control)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<SchedulerDaemon>()
}
