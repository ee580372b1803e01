//! `stakpak-agent`: the agent loop: LLM calls, tool dispatch, approvals, sessions, rulebooks.
//!
//! Serves `dev.stakpak.Agent1` through the shared daemon runtime of `stakpak-daemon`.
//! `dbus.rs` turns calls into the registry's (`registry.rs`: starting, listing, answering
//! and cancelling sessions) and reports back into signals (`events.rs`). Each session is a
//! loop (`turn.rs`, its tool calls in `calls.rs`) that plans with the model of its profile
//! (`profile.rs`, read from `config.toml` through `stakpak-config`) and acts only through
//! its peers (`peers.rs`; sandboxd for every side effect, `tools.rs`); sessions, messages,
//! tool calls and checkpoints live in `<state>/sessions.db` (`store.rs`).
//!
//! Imports flow one way: `dbus` → `registry` → `turn` → `calls` → `tools` → `peers`, all
//! of them over `state`, `store`, `model`, `events` and `error`.

mod calls;
mod config;
mod dbus;
mod error;
mod events;
mod model;
mod peers;
mod profile;
mod registry;
mod state;
mod store;
mod tools;
mod turn;

use std::path::PathBuf;

use stakpak_daemon::{Confinement, Paths, ServeContext, ServeError, Service, StateError};
use stakpak_proto::{AgentInterface, Daemon};

pub use config::AgentdConfig;

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct AgentDaemon;

/// Where rulebooks are read from, later folders overriding earlier ones by uri: the shipped
/// ones (installed under /usr/share, or the source tree's when run from a checkout), then the
/// operator's in the configuration folder.
fn rulebook_dirs(paths: &Paths) -> Vec<PathBuf> {
    let shipped = PathBuf::from("/usr/share/stakpak/rulebooks");
    let source = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../rulebooks"));
    let mut dirs = Vec::new();
    if shipped.is_dir() {
        dirs.push(shipped);
    } else if source.is_dir() {
        dirs.push(source);
    }
    dirs.push(paths.config_dir.join("rulebooks"));
    dirs
}

impl Service for AgentDaemon {
    const DAEMON: Daemon = Daemon::Agent;
    type Config = AgentdConfig;

    /// Besides the usual folders: reading the shipped rulebooks.
    fn confinement(paths: &Paths, _config: &AgentdConfig) -> Confinement {
        let mut confinement =
            Confinement::for_daemon(&paths.config_dir, &paths.state_dir, &paths.runtime_dir);
        confinement.read.extend(rulebook_dirs(paths));
        confinement
    }

    async fn serve(
        ctx: ServeContext<AgentdConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        let db = ctx.paths.state_dir.join("sessions.db");
        let mut store = store::Store::open(&db).map_err(|e| StateError(e.to_string()))?;
        let interrupted = store
            .mark_interrupted()
            .map_err(|e| StateError(e.to_string()))?;
        if interrupted > 0 {
            tracing::warn!(
                sessions = interrupted,
                "sessions were running when the agent stopped; resume them with stakpak -s ID"
            );
        }
        let sessions = registry::Manager::new(state::Shared::new(
            store,
            ctx.config.clone(),
            ctx.paths.config_dir.clone(),
            rulebook_dirs(&ctx.paths),
        ));
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            AgentInterface(dbus::Handler::new(ctx.control, sessions)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<AgentDaemon>()
}
