//! One `Exec`: warden verdict, placeholder resolution, the local sandbox, redaction.
//!
//! Every step that depends on another daemon fails closed: no verdict (warden down, slow or
//! erroring) or no resolution (secretd down) means nothing runs, and output that secretd
//! could not redact is withheld, never passed on as it is.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use stakpak_proto::{
    CheckRequest, Error, ExecReply, ExecRequest, SecretsProxy, WardenProxy, exec_status, zbus,
};
use stakpak_sandbox::{Command, ExitKind, Limits, Network, Sandbox, SandboxConfig};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::SandboxdConfig;

/// Rule id of a refusal because the warden gave no verdict.
pub const RULE_WARDEN_UNAVAILABLE: &str = "sandboxd.warden-unavailable";
/// Rule id of a refusal because secretd could not resolve the placeholders.
pub const RULE_SECRETD_UNAVAILABLE: &str = "sandboxd.secretd-unavailable";
/// Rule id of a refusal of an `ask` verdict (no approval flow yet).
pub const RULE_ASK_UNSUPPORTED: &str = "sandboxd.ask-unsupported";

/// Variables passed through from sandboxd's own environment, with their fallbacks.
const ENV_ALLOW: [(&str, &str); 2] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
];

/// What every exec needs: where sessions live and the current configuration.
#[derive(Debug, Clone)]
pub(crate) struct Executor {
    state_dir: PathBuf,
    config: watch::Receiver<Arc<SandboxdConfig>>,
}

/// A checked request.
#[derive(Debug)]
struct Checked {
    session: String,
    workdir: Option<PathBuf>,
    timeout: Duration,
    network: Network,
}

impl Executor {
    pub(crate) fn new(state_dir: PathBuf, config: watch::Receiver<Arc<SandboxdConfig>>) -> Self {
        Executor { state_dir, config }
    }

    /// The workspace of `session` (already validated).
    pub(crate) fn workspace(&self, session: &str) -> PathBuf {
        self.state_dir.join("workspaces").join(session)
    }

    fn private_tmp(&self, session: &str) -> PathBuf {
        self.state_dir.join("tmp").join(session)
    }

    pub(crate) async fn exec(
        &self,
        request: ExecRequest,
        caller: &str,
        connection: &zbus::Connection,
    ) -> Result<ExecReply, Error> {
        let config = Arc::clone(&self.config.borrow());
        let checked = check_request(&request, &config)?;
        let start = Instant::now();
        let reply = self
            .run_checked(&request, &checked, &config, connection)
            .await;
        let elapsed = start.elapsed();
        match &reply {
            Ok(r) => info!(
                session = %checked.session,
                caller = %caller,
                command = %request.command,
                decision = %r.decision,
                rule = %r.rule,
                status = %r.status,
                code = r.code,
                duration_ms = elapsed.as_millis() as u64,
                "exec"
            ),
            Err(e) => warn!(
                session = %checked.session,
                caller = %caller,
                command = %request.command,
                error = %e,
                duration_ms = elapsed.as_millis() as u64,
                "exec failed"
            ),
        }
        reply
    }

    async fn run_checked(
        &self,
        request: &ExecRequest,
        checked: &Checked,
        config: &SandboxdConfig,
        connection: &zbus::Connection,
    ) -> Result<ExecReply, Error> {
        let ms = Duration::from_millis;
        // (a) The warden's verdict; anything but a clear `allow` refuses.
        let verdict = tokio::time::timeout(ms(config.exec.warden_timeout_ms), async {
            let warden = WardenProxy::new(connection).await.map_err(Error::from)?;
            warden
                .check(CheckRequest {
                    kind: "command".into(),
                    subject: request.command.clone(),
                    session: checked.session.clone(),
                })
                .await
        })
        .await;
        let verdict = match verdict {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                return Ok(denied(
                    "deny",
                    RULE_WARDEN_UNAVAILABLE,
                    format!("the warden gave no verdict ({e}); nothing runs without one"),
                ));
            }
            Err(_) => {
                return Ok(denied(
                    "deny",
                    RULE_WARDEN_UNAVAILABLE,
                    format!(
                        "the warden did not answer within {} ms; nothing runs without a verdict",
                        config.exec.warden_timeout_ms
                    ),
                ));
            }
        };
        match verdict.decision.as_str() {
            "allow" => {}
            "ask" => {
                let rule = if verdict.rule.is_empty() {
                    RULE_ASK_UNSUPPORTED.to_string()
                } else {
                    verdict.rule.clone()
                };
                return Ok(denied(
                    "ask",
                    &rule,
                    format!(
                        "the warden asks for approval ({}), and sandboxd has no approval flow \
                         yet, so the command is refused",
                        verdict.reason
                    ),
                ));
            }
            "deny" => return Ok(denied("deny", &verdict.rule, verdict.reason)),
            other => {
                return Ok(denied(
                    "deny",
                    RULE_WARDEN_UNAVAILABLE,
                    format!("the warden answered an unknown decision {other:?}"),
                ));
            }
        }

        // (b) Placeholders to values, through the environment.
        let resolved = tokio::time::timeout(ms(config.exec.secretd_timeout_ms), async {
            let secrets = SecretsProxy::new(connection).await.map_err(Error::from)?;
            secrets
                .resolve(checked.session.clone(), request.command.clone(), true)
                .await
        })
        .await;
        let resolved = match resolved {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Ok(denied(
                    "allow",
                    RULE_SECRETD_UNAVAILABLE,
                    format!("secretd could not resolve the command's placeholders: {e}"),
                ));
            }
            Err(_) => {
                return Ok(denied(
                    "allow",
                    RULE_SECRETD_UNAVAILABLE,
                    format!(
                        "secretd did not answer within {} ms",
                        config.exec.secretd_timeout_ms
                    ),
                ));
            }
        };

        // (c) The sandbox, on a thread of its own so the bus stays responsive.
        let workspace = self.workspace(&checked.session);
        let tmp = self.private_tmp(&checked.session);
        for dir in [&workspace, &tmp] {
            create_dir(dir)?;
        }
        if let Some(rel) = &checked.workdir {
            create_dir(&workspace.join(rel))?;
        }
        let mut env = resolved.env;
        for (name, fallback) in ENV_ALLOW {
            let value = std::env::var(name).unwrap_or_else(|_| fallback.to_string());
            env.entry(name.to_string()).or_insert(value);
        }
        env.insert("HOME".into(), workspace.display().to_string());
        let sandbox_config = SandboxConfig {
            workspace,
            tmp,
            // Off by default: mounting is refused inside sandboxd's own Landlock domain.
            bind_tmp: config.exec.bind_tmp,
            network: checked.network,
            limits: Limits {
                memory_bytes: Some(config.limits.memory_bytes),
                pids: Some(config.limits.pids),
                cpu_secs: Some(config.limits.cpu_secs),
                nofile: Some(config.limits.nofile),
            },
            run_as: None,
            require_landlock: config.exec.require_landlock,
            pids_cgroup: None,
            output_cap: config.exec.output_cap,
        };
        let command = Command {
            shell: resolved.text,
            env,
            cwd: checked.workdir.clone(),
            timeout: checked.timeout,
        };
        let outcome = run_on_thread(sandbox_config, command).await?;

        // (d) Redaction; output that cannot be redacted is withheld.
        let stdout = String::from_utf8_lossy(&outcome.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
        let redacted = tokio::time::timeout(ms(config.exec.secretd_timeout_ms), async {
            let secrets = SecretsProxy::new(connection).await.map_err(Error::from)?;
            let out = secrets.redact(checked.session.clone(), stdout).await?;
            let err = secrets.redact(checked.session.clone(), stderr).await?;
            Ok::<_, Error>((out.redacted, err.redacted))
        })
        .await;
        let (status, code) = match outcome.status {
            ExitKind::Exited(c) => (exec_status::EXITED, c),
            ExitKind::Signaled(s) => (exec_status::SIGNALED, s),
            ExitKind::TimedOut => (exec_status::TIMED_OUT, 0),
        };
        let mut reply = ExecReply {
            status: status.into(),
            code,
            stdout: String::new(),
            stderr: String::new(),
            truncated: outcome.truncated,
            decision: verdict.decision,
            rule: verdict.rule,
            reason: verdict.reason,
        };
        match redacted {
            Ok(Ok((out, err))) => {
                reply.stdout = out;
                reply.stderr = err;
            }
            Ok(Err(e)) => reply.reason = withheld(&e.to_string()),
            Err(_) => reply.reason = withheld("secretd did not answer in time"),
        }
        Ok(reply)
    }
}

fn withheld(why: &str) -> String {
    format!("output withheld: secretd could not redact it ({why}); the command did run")
}

fn denied(decision: &str, rule: &str, reason: String) -> ExecReply {
    ExecReply {
        status: exec_status::DENIED.into(),
        code: 0,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
        decision: decision.into(),
        rule: rule.into(),
        reason,
    }
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))
}

async fn run_on_thread(
    config: SandboxConfig,
    command: Command,
) -> Result<stakpak_sandbox::Outcome, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sandbox-run".into())
        .spawn(move || {
            let result = Sandbox::new(config).and_then(|s| s.run(&command));
            let _ = tx.send(result);
        })
        .map_err(|e| Error::Internal(format!("cannot start the sandbox thread: {e}")))?;
    match rx.await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) => Err(Error::Internal(format!("sandbox: {e}"))),
        Err(_) => Err(Error::Internal("the sandbox thread died".into())),
    }
}

/// `[A-Za-z0-9_-]{1,64}`.
pub(crate) fn valid_session(session: &str) -> bool {
    (1..=64).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_request(request: &ExecRequest, config: &SandboxdConfig) -> Result<Checked, Error> {
    if !valid_session(&request.session) {
        return Err(Error::InvalidArgument(
            "session must be 1 to 64 of A-Z a-z 0-9 _ -".into(),
        ));
    }
    if request.command.trim().is_empty() {
        return Err(Error::InvalidArgument("command is empty".into()));
    }
    let workdir = if request.workdir.is_empty() {
        None
    } else {
        let rel = PathBuf::from(&request.workdir);
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Error::InvalidArgument(format!(
                "workdir {:?} must be a relative path inside the workspace",
                request.workdir
            )));
        }
        Some(rel)
    };
    let network = match request.network.as_str() {
        "" | "none" => Network::None,
        "host" => Network::Host,
        other => {
            return Err(Error::InvalidArgument(format!(
                "network {other:?} is not one of none, host"
            )));
        }
    };
    let e = &config.exec;
    let timeout_ms = match request.timeout_ms {
        0 => e.default_timeout_ms,
        t if t > e.max_timeout_ms => {
            return Err(Error::InvalidArgument(format!(
                "timeout_ms {t} is above the maximum {}",
                e.max_timeout_ms
            )));
        }
        t => t,
    };
    Ok(Checked {
        session: request.session.clone(),
        workdir,
        timeout: Duration::from_millis(timeout_ms),
        network,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(session: &str, workdir: &str, network: &str, timeout_ms: u64) -> ExecRequest {
        ExecRequest {
            session: session.into(),
            command: "true".into(),
            workdir: workdir.into(),
            timeout_ms,
            network: network.into(),
        }
    }

    #[test]
    fn sessions() {
        assert!(valid_session("abc-DEF_09"));
        assert!(valid_session(&"a".repeat(64)));
        for bad in ["", "a/b", "..", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_session(bad), "{bad:?}");
        }
    }

    #[test]
    fn requests() {
        let c = SandboxdConfig::default();
        let ok = check_request(&req("s", "sub/dir", "", 0), &c).unwrap();
        assert_eq!(ok.network, Network::None);
        assert_eq!(ok.timeout, Duration::from_millis(120_000));
        assert_eq!(ok.workdir, Some(PathBuf::from("sub/dir")));
        assert_eq!(
            check_request(&req("s", "", "host", 5), &c).unwrap().network,
            Network::Host
        );
        for bad in [
            req("s", "../x", "", 0),
            req("s", "/etc", "", 0),
            req("s", "", "bridge", 0),
            req("s", "", "", u64::MAX),
            req("../s", "", "", 0),
        ] {
            assert!(matches!(
                check_request(&bad, &c),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
