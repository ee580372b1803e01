//! `stakpak-schedd`: the autopilot triggers: schedules, check scripts, channels, notifications.
//!
//! Serves `dev.stakpak.Scheduler1` through the shared daemon runtime of `stakpak-daemon`.
//! Schedules come from `autopilot.toml` (`config.rs`) and from `AddSchedule`; they and their
//! runs live in `<state>/schedd.db` (`store.rs`). One loop (`scheduler.rs`) sleeps until the
//! earliest firing; a run (`runner.rs`) asks sandboxd to run the check and the agent to run
//! the session, since schedd itself executes nothing. How a run's end reaches people is the
//! [`notify::Notifier`] hook, which the chat channels (`channels.rs`, `slack.rs`) implement:
//! the Slack channel also starts and continues agent sessions from mentions and DMs.
//!
//! Layers, each importing only those below it: `dbus.rs` (the only module that sees wire
//! structs and names D-Bus errors) calls `scheduler.rs` and `channels.rs`; the scheduler
//! reports a run's end through [`notify::Notifier`], which the channels implement; runs and
//! channels reach the other daemons through `peers.rs`; `schedule.rs`, `run.rs`, `store.rs`
//! and `notify.rs` know no other module of schedd but the types they store.

mod channels;
mod config;
mod db;
mod dbus;
pub mod notify;
mod peers;
mod profiles;
mod run;
mod runner;
mod schedule;
mod scheduler;
mod slack;
mod store;

use std::sync::Arc;

use stakpak_daemon::{ServeContext, ServeError, Service, StateError};
use stakpak_proto::{Daemon, SchedulerInterface};

pub use config::ScheddConfig;

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct SchedulerDaemon;

impl Service for SchedulerDaemon {
    const DAEMON: Daemon = Daemon::Scheduler;
    type Config = ScheddConfig;

    async fn serve(
        ctx: ServeContext<ScheddConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        let db = ctx.paths.state_dir.join("schedd.db");
        let store = store::Store::open(&db).map_err(|e| StateError(e.to_string()))?;
        let peers = peers::Peers::new(ctx.own_connection.clone());
        let channels =
            channels::Channels::open(&db, peers.clone()).map_err(|e| StateError(e.to_string()))?;
        let mut core = scheduler::Core::new(
            store,
            runner::Runner::new(peers),
            Arc::new(channels.clone()),
        );
        let current = ctx.config.borrow().clone();
        core.load(&current.autopilot, scheduler::now_ms())
            .map_err(|e| StateError(e.to_string()))?;
        channels
            .start_stored()
            .map_err(|e| StateError(e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(core.run(rx, ctx.config.clone()));
        let handler = dbus::Handler::new(ctx.control, tx, channels, ctx.paths.config_dir.clone());
        Ok(builder.serve_at(Self::DAEMON.object_path(), SchedulerInterface(handler)))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<SchedulerDaemon>()
}
