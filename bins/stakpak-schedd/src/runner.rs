//! One run of a schedule, over the bus: the check through sandboxd (so the warden judges
//! it), then, if its exit says so, an agent session through `Agent1`, cancelled when the
//! schedule's timeout passes. schedd itself never executes anything.

use std::time::Duration;

use stakpak_proto::{Daemon, ExecRequest, ExecStatus, RunOutcome, StartRequest};
use tokio::time::Instant;

use crate::{
    peers::{PeerError, Peers},
    run::Run,
    schedule::Definition,
};

/// Longest single `WaitSession` call; the run's timeout is waited for in such slices.
const WAIT_SLICE: Duration = Duration::from_secs(20);

/// Why a run failed on its way; the message becomes the run's reason.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// A daemon the run needs is not there, or the bus is not.
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("sandboxd did not run the check: {0}")]
    Check(#[source] PeerError),
    #[error("the agent did not start the session: {}", .0.message())]
    Start(#[source] PeerError),
    #[error("lost the session {id}: {}", .source.message())]
    Lost { id: String, source: PeerError },
}

/// Makes runs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    peers: Peers,
}

impl Runner {
    pub fn new(peers: Peers) -> Self {
        Runner { peers }
    }

    /// Runs the check and the agent; returns the run as it ended.
    pub async fn execute(self, def: Definition, mut run: Run, dry_run: bool) -> Run {
        if let Err(e) = self.steps(&def, &mut run, dry_run).await {
            run.outcome = RunOutcome::Failed;
            run.reason = e.to_string();
        }
        run
    }

    async fn steps(&self, def: &Definition, run: &mut Run, dry_run: bool) -> Result<(), RunError> {
        let mut wake = true;
        if !def.check.trim().is_empty() {
            // sandboxd refuses everything while the warden or secretd is away: wait for all
            // three, or a run right after the suite started would be recorded as denied.
            for daemon in [Daemon::Warden, Daemon::Secrets, Daemon::Sandbox] {
                self.peers.wait_for(daemon).await?;
            }
            let sandbox = self.peers.sandbox().await?;
            let request = ExecRequest {
                session: format!("autopilot-{}", def.name),
                command: def.check.clone(),
                timeout_ms: u64::try_from(def.check_timeout.as_millis()).unwrap_or(u64::MAX),
                ..ExecRequest::default()
            };
            let reply = sandbox.exec(request).await.map_err(RunError::Check)?;
            run.check_status = Some(reply.status);
            run.check_code = reply.code;
            run.check_rule = reply.rule.clone();
            match reply.status {
                ExecStatus::Denied => {
                    run.outcome = RunOutcome::CheckDenied;
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
                ExecStatus::Failed => {
                    run.outcome = RunOutcome::CheckFailed;
                    run.reason = format!("the check could not run: {}", reply.reason);
                    return Ok(());
                }
                _ => {}
            }
            let ok = reply.status == ExecStatus::Exited && reply.code == 0;
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
                RunOutcome::WouldRun
            } else {
                RunOutcome::WouldSkip
            };
            return Ok(());
        }
        if !wake {
            run.outcome = RunOutcome::SkippedByCheck;
            return Ok(());
        }
        self.peers.wait_for(Daemon::Agent).await?;
        let agent = self.peers.agent().await?;
        let session = format!("autopilot-{}", run.id);
        let mut info = agent
            .start(StartRequest {
                prompt: def.prompt.clone(),
                new_id: session,
                profile: def.profile.clone(),
                max_steps: def.max_turns,
                ..StartRequest::default()
            })
            .await
            .map_err(RunError::Start)?;
        run.session = info.id.clone();
        let deadline = Instant::now() + def.timeout;
        while !info.state.is_stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = agent.cancel(&info.id).await;
                run.outcome = RunOutcome::TimedOut;
                run.reason = format!("cancelled after {} s", def.timeout.as_secs());
                run.input_tokens = info.input_tokens;
                run.output_tokens = info.output_tokens;
                return Ok(());
            }
            let slice = u64::try_from(left.min(WAIT_SLICE).as_millis()).unwrap_or(u64::MAX);
            info = agent
                .wait_session(&info.id, slice.max(1))
                .await
                .map_err(|source| RunError::Lost {
                    id: info.id.clone(),
                    source,
                })?;
        }
        run.outcome = info.state.into();
        run.reason = info.reason;
        run.input_tokens = info.input_tokens;
        run.output_tokens = info.output_tokens;
        Ok(())
    }
}
