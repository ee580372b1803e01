//! `stakpak-warden`: the policy decision point. It judges every action (a command line, a
//! file write or delete) against the policy packs and answers allow, ask or deny with the
//! rule and the reason. sandboxd enforces its answer; the agent asks it for advice.
//!
//! The policy is part of the configuration: it is loaded with `warden.toml` at start and on
//! every reload, so a broken pack stops a start, and a reload with a broken pack keeps the
//! policy in force.
//!
//! It also runs the egress proxy (`egress.rs`, `crates/egress`): sandboxed commands with
//! network `proxied` reach the network only through it, and its request rules come from the
//! same packs.

pub mod config;
mod dbus;
pub mod egress;
mod wire;

pub use config::{AuditConfig, ProxyConfig, WardenConfig};

use std::sync::Arc;

use std::os::unix::fs::PermissionsExt;

use stakpak_daemon::{ServeContext, ServeError, Service, StateError};
use stakpak_proto::{Daemon, ProxyInfo, WardenInterface};
use tokio::{
    net::UnixListener,
    sync::{mpsc, watch},
};

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
            let requests: usize = policy.packs().iter().map(|p| p.requests.len()).sum();
            tracing::info!(
                packs = policy.packs().len(),
                rules,
                requests,
                "policy loaded"
            );
        }
        let proxy = start_proxy(&ctx, audit.clone())?;
        let log_db = ctx.paths.state_dir.join("audit.db");
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            WardenInterface(dbus::Handler::new(
                ctx.control,
                ctx.config,
                audit,
                proxy,
                log_db,
            )),
        ))
    }
}

/// Starts the egress proxy when `[proxy] enabled`: its CA, its listeners, the task that
/// passes reloaded settings on and the one that records its events.
fn start_proxy(
    ctx: &ServeContext<WardenConfig>,
    audit: Option<stakpak_audit::Recorder>,
) -> Result<Option<ProxyInfo>, ServeError> {
    let config = ctx.config.borrow().clone();
    if !config.proxy.enabled {
        return Ok(None);
    }
    let Some(settings) = config.proxy_settings.clone() else {
        return Err("the proxy's settings were not prepared".into());
    };
    let ca_dir = ctx.paths.state_dir.join(egress::CA_DIR);
    let ca = Arc::new(
        stakpak_egress::Authority::load_or_create(&ca_dir)
            .map_err(|e| StateError(e.to_string()))?,
    );
    let (settings_tx, settings_rx) = watch::channel(settings);
    let mut reloads = ctx.config.clone();
    tokio::spawn(async move {
        while reloads.changed().await.is_ok() {
            let next = reloads.borrow().proxy_settings.clone();
            if let Some(next) = next
                && settings_tx.send(next).is_err()
            {
                return;
            }
        }
    });
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let proxy = stakpak_egress::Proxy::new(
        settings_rx,
        Arc::new(egress::PolicyJudge::new(ctx.config.clone())),
        ca.clone(),
        events_tx,
    );
    let socket = ctx.paths.runtime_dir.join(egress::SOCKET);
    let _ = std::fs::remove_file(&socket);
    let unix = std::os::unix::net::UnixListener::bind(&socket)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", socket.display()))?;
    let mut tcp = String::new();
    let tcp_listener = match &config.proxy.listen {
        Some(listen) => {
            let listener = std::net::TcpListener::bind(listen)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tcp = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            Some(listener)
        }
        None => None,
    };
    // The proxy gets a thread and a runtime of its own: TLS handshakes under load must not
    // hold up verdicts on the bus, nor the watchdog. The thread is inside the warden's
    // Landlock domain like every other.
    std::thread::Builder::new()
        .name("egress".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return tracing::error!(error = %e, "cannot start the proxy's runtime"),
            };
            runtime.block_on(async move {
                let unix = match UnixListener::from_std(unix) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "cannot serve the proxy socket"),
                };
                let tcp = tcp_listener.and_then(|l| match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serve the proxy's TCP listener");
                        None
                    }
                });
                match tcp {
                    Some(tcp) => {
                        tokio::join!(proxy.clone().serve_unix(unix), proxy.serve_tcp(tcp));
                    }
                    None => proxy.serve_unix(unix).await,
                }
            });
        })
        .map_err(|e| format!("cannot start the proxy's thread: {e}"))?;
    tokio::spawn(egress::record_events(
        events_rx,
        audit,
        ctx.own_connection.clone(),
    ));
    tracing::info!(socket = %socket.display(), tcp = %tcp, "egress proxy listening");
    Ok(Some(ProxyInfo {
        enabled: true,
        socket: socket.display().to_string(),
        tcp,
        ca_pem: ca.cert_pem().to_string(),
    }))
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<WardenDaemon>()
}
