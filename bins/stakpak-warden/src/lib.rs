//! `stakpak-warden`: the policy decision point. It judges every action (a command line, a
//! file write or delete) against the policy packs and answers allow, ask or deny with the
//! rule and the reason. sandboxd enforces its answer; the agent asks it for advice.
//!
//! The policy is part of the configuration: it is loaded with `warden.toml` at start and on
//! every reload, so a broken pack stops a start, and a reload with a broken pack keeps the
//! policy in force.

mod dbus;

use std::sync::Arc;

use serde::Deserialize;
use stakpak_daemon::{DaemonConfig, LogConfig, Paths, ServeContext, ServeError, Service};
use stakpak_policy::{Policy, load::PolicyConfig};
use stakpak_proto::{Daemon, WardenInterface};

/// `warden.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WardenConfig {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// The policy this configuration names, loaded by `prepare`.
    #[serde(skip)]
    pub loaded: Option<Arc<Policy>>,
}

/// The `[audit]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every verdict that is not `allow` in `<state>/audit.db`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { enabled: true }
    }
}

impl DaemonConfig for WardenConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }

    fn prepare(&mut self, paths: &Paths) -> Result<(), String> {
        self.policy.validate()?;
        let policy = self
            .policy
            .load_fast(&paths.config_dir)
            .map_err(|e| format!("policy: {e}"))?;
        self.loaded = Some(Arc::new(policy));
        Ok(())
    }
}

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct WardenDaemon;

impl Service for WardenDaemon {
    const DAEMON: Daemon = Daemon::Warden;
    type Config = WardenConfig;

    async fn serve(
        ctx: ServeContext<WardenConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        let audit = if ctx.config.borrow().audit.enabled {
            Some(stakpak_audit::Recorder::start(
                &ctx.paths.state_dir.join("audit.db"),
                "warden",
            )?)
        } else {
            None
        };
        if let Some(policy) = &ctx.config.borrow().loaded {
            let rules: usize = policy.packs().iter().map(|p| p.rules.len()).sum();
            tracing::info!(packs = policy.packs().len(), rules, "policy loaded");
        }
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            WardenInterface(dbus::Handler::new(ctx.control, ctx.config, audit)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<WardenDaemon>()
}
