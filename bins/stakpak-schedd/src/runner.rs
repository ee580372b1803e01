//! One run of a schedule, over the bus: the check through sandboxd (so the warden judges
//! it), then, if its exit says so, an agent session through `Agent1`, cancelled when the
//! schedule's timeout passes. schedd itself never executes anything.

use std::{sync::Arc, time::Duration};

use stakpak_proto::{
    AgentProxy, ExecRequest, RunInfo, SandboxProxy, StartRequest, exec_status, run_outcome,
    session_state, zbus,
};
use tokio::{sync::OnceCell, time::Instant};

use crate::schedule::Definition;

/// Longest single `WaitSession` call; the run's timeout is waited for in such slices.
const WAIT_SLICE: Duration = Duration::from_secs(20);
/// How long a run waits for sandboxd and the agent to appear on the bus (they start with
/// schedd in the embedded suite).
const PEERS_WAIT: Duration = Duration::from_secs(15);

/// Makes runs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    address: Option<String>,
    conn: Arc<OnceCell<zbus::Connection>>,
}

impl Runner {
    /// `address`: the private bus (embedded); `None`: the system bus.
    pub fn new(address: Option<String>) -> Self {
        Runner {
            address,
            conn: Arc::new(OnceCell::new()),
        }
    }

    async fn connection(&self) -> Result<zbus::Connection, String> {
        self.conn
            .get_or_try_init(|| async {
                let builder = match &self.address {
                    Some(a) => zbus::connection::Builder::address(a.as_str()),
                    None => zbus::connection::Builder::system(),
                };
                builder.build().await.map_err(|e| e.to_string())
            })
            .await
            .cloned()
            .map_err(|e| format!("cannot connect to the bus: {e}"))
    }

    async fn wait_for(&self, conn: &zbus::Connection, name: &'static str) -> Result<(), String> {
        let dbus = zbus::fdo::DBusProxy::new(conn)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + PEERS_WAIT;
        loop {
            let bus_name = zbus::names::BusName::try_from(name).map_err(|e| e.to_string())?;
            if dbus.name_has_owner(bus_name).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{name} is not on the bus"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs the check and the agent; returns the run as it ended.
    pub async fn execute(self, def: Definition, mut run: RunInfo, dry_run: bool) -> RunInfo {
        let outcome = self.steps(&def, &mut run, dry_run).await;
        if let Err(reason) = outcome {
            run.outcome = run_outcome::FAILED.into();
            run.reason = reason;
        }
        run
    }

    async fn steps(
        &self,
        def: &Definition,
        run: &mut RunInfo,
        dry_run: bool,
    ) -> Result<(), String> {
        let conn = self.connection().await?;
        let mut wake = true;
        if !def.check.trim().is_empty() {
            // sandboxd refuses everything while the warden or secretd is away: wait for all
            // three, or a run right after the suite started would be recorded as denied.
            for daemon in [
                stakpak_proto::Daemon::Warden,
                stakpak_proto::Daemon::Secrets,
                stakpak_proto::Daemon::Sandbox,
            ] {
                self.wait_for(&conn, daemon.bus_name()).await?;
            }
            let sandbox = SandboxProxy::new(&conn).await.map_err(|e| e.to_string())?;
            let request = ExecRequest {
                session: format!("autopilot-{}", def.name),
                command: def.check.clone(),
                timeout_ms: u64::try_from(def.check_timeout.as_millis()).unwrap_or(u64::MAX),
                ..ExecRequest::default()
            };
            let reply = sandbox
                .exec(request)
                .await
                .map_err(|e| format!("sandboxd did not run the check: {e}"))?;
            run.check_status = reply.status.clone();
            run.check_code = reply.code;
            run.check_rule = reply.rule.clone();
            match reply.status.as_str() {
                exec_status::DENIED => {
                    run.outcome = run_outcome::CHECK_DENIED.into();
                    run.reason = format!(
                        "sandboxd refused the check (rule {}): {}",
                        if reply.rule.is_empty() {
                            "-"
                        } else {
                            &reply.rule
                        },
                        reply.reason
                    );
                    return Ok(());
                }
                exec_status::FAILED => {
                    run.outcome = run_outcome::CHECK_FAILED.into();
                    run.reason = format!("the check could not run: {}", reply.reason);
                    return Ok(());
                }
                _ => {}
            }
            let ok = reply.status == exec_status::EXITED && reply.code == 0;
            wake = def.trigger_on.wakes(ok);
            if !wake {
                run.reason = format!(
                    "check {} {} and trigger_on is {}",
                    reply.status,
                    reply.code,
                    def.trigger_on.as_str()
                );
            }
        }
        if dry_run {
            run.outcome = if wake {
                run_outcome::WOULD_RUN
            } else {
                run_outcome::WOULD_SKIP
            }
            .into();
            return Ok(());
        }
        if !wake {
            run.outcome = run_outcome::SKIPPED_BY_CHECK.into();
            return Ok(());
        }
        self.wait_for(&conn, stakpak_proto::Daemon::Agent.bus_name())
            .await?;
        let agent = AgentProxy::new(&conn).await.map_err(|e| e.to_string())?;
        let session = format!("autopilot-{}", run.id);
        let info = agent
            .start(StartRequest {
                prompt: def.prompt.clone(),
                new_id: session.clone(),
                profile: def.profile.clone(),
                max_steps: def.max_turns,
                ..StartRequest::default()
            })
            .await
            .map_err(|e| format!("the agent did not start the session: {}", describe(&e)))?;
        run.session = info.id.clone();
        let deadline = Instant::now() + def.timeout;
        let mut info = info;
        while !session_state::is_stopped(&info.state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = agent.cancel(info.id.clone()).await;
                run.outcome = run_outcome::TIMED_OUT.into();
                run.reason = format!("cancelled after {} s", def.timeout.as_secs());
                run.input_tokens = info.input_tokens;
                run.output_tokens = info.output_tokens;
                return Ok(());
            }
            let slice = u64::try_from(left.min(WAIT_SLICE).as_millis()).unwrap_or(u64::MAX);
            info = agent
                .wait_session(info.id.clone(), slice.max(1))
                .await
                .map_err(|e| format!("lost the session {}: {}", info.id, describe(&e)))?;
        }
        run.outcome = info.state.clone();
        run.reason = info.reason.clone();
        run.input_tokens = info.input_tokens;
        run.output_tokens = info.output_tokens;
        Ok(())
    }
}

/// The message of a D-Bus error without its name's prefix noise.
fn describe(e: &stakpak_proto::Error) -> String {
    use stakpak_proto::Error as E;
    match e {
        E::InvalidConfig(m)
        | E::InvalidArgument(m)
        | E::PermissionDenied(m)
        | E::Unavailable(m)
        | E::Internal(m) => m.clone(),
        E::ZBus(z) => z.to_string(),
    }
}

/// The bus schedd serves on, as its command line or environment gives it.
pub fn bus_address() -> Option<String> {
    let mut args = std::env::args();
    while let Some(arg) = args.next() {
        if arg == "--bus-address" {
            return args.next();
        }
        if let Some(a) = arg.strip_prefix("--bus-address=") {
            return Some(a.to_string());
        }
    }
    std::env::var("STAKPAK_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
}
