//! One execution: warden verdict, placeholder resolution, the sandbox, redaction, audit.
//!
//! Every step that depends on another daemon fails closed: no verdict (warden down, slow or
//! erroring) or no resolution (secretd down) means nothing runs, and output that secretd
//! could not redact is withheld, never passed on as it is.
//!
//! [`Executor::prepare`] does everything up to the start (checks, verdict, resolution);
//! [`Executor::run`] runs a prepared command (with the local sandbox on a thread of its own,
//! or in a container of the Docker backend, `docker.rs`) and streams its output through
//! [`Output`]; [`Executor::exec`] is both for `Exec`/`ExecStream`, and the task
//! registry (`tasks.rs`) uses the two halves for background tasks. Each execution, refused
//! or run, ends with one audit entry (`sandboxd`/`exec`) holding the command as sent.

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::{AsFd, OwnedFd},
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use stakpak_audit::Recorder;
use stakpak_proto::{CheckKind, Decision, ExecStatus};
use stakpak_sandbox::{
    Command, ExitKind, Limits, Network, ProxyRelay, Sandbox, SandboxConfig, Stream,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::{
    config::{Backend, LocalNetwork, SandboxdConfig},
    docker::Engine,
    egress::{self, RULE_PROXY_UNAVAILABLE, Trust},
    error::Error,
    output::{Finished, Keep, LogFile, Output},
    peers::{Bus, Peers, RULE_SECRETD_UNAVAILABLE, Verdict},
};

/// One shell command to run in a session's workspace (`Exec`, `ExecStream`, `StartTask`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Request {
    /// `[A-Za-z0-9_-]{1,64}`; names the workspace.
    pub session: String,
    /// As the agent wrote it, placeholders included.
    pub command: String,
    /// Relative to the workspace; empty: the workspace itself.
    pub workdir: String,
    /// 0: the default.
    pub timeout_ms: u64,
    /// `None`: the configured default of the backend.
    pub network: Option<Net>,
    /// `None`: `exec.backend`.
    pub backend: Option<Backend>,
    /// Variables to add; every name must be in `exec.env_allow`.
    pub env: HashMap<String, String>,
}

/// The network a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    /// Only the warden's egress proxy (the local sandbox).
    Proxied,
    None,
    Host,
    /// Docker's default bridge (the Docker backend).
    Bridge,
}

impl Net {
    fn name(self) -> &'static str {
        match self {
            Net::Proxied => "proxied",
            Net::None => "none",
            Net::Host => "host",
            Net::Bridge => "bridge",
        }
    }
}

/// How a command ended, or why it did not run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: ExecStatus,
    /// Exit code, signal number, or 0.
    pub code: i32,
    /// Redacted, up to the output cap.
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    /// `None` when the warden was never asked.
    pub decision: Option<Decision>,
    pub rule: String,
    pub reason: String,
    pub exec_id: String,
    pub duration_ms: u64,
    /// Workspace-relative path of the whole redacted output when it went past the cap.
    pub artifact: String,
}

/// Variables passed through from sandboxd's own environment, with their fallbacks.
const ENV_PASS: [(&str, &str); 2] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
];

/// Folder of the workspace where sandboxd keeps output logs for `View`.
pub(crate) const OUTPUT_DIR: &str = ".stakpak/output";

/// What every execution needs: where sessions live, the configuration, the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct Executor {
    state_dir: PathBuf,
    config: watch::Receiver<Arc<SandboxdConfig>>,
    audit: Recorder,
    /// The Docker engine, connected on the first command that uses it.
    docker: Engine,
    /// The CA bundle of proxied runs, in step with the warden's CA.
    trust: Arc<Trust>,
}

/// A checked request.
#[derive(Debug)]
struct Checked {
    session: String,
    workdir: Option<PathBuf>,
    timeout: Duration,
    /// The local sandbox's network; a container's is `docker.network`, checked here too.
    network: Network,
    backend: Backend,
}

/// A command the warden allowed, with its placeholders resolved, ready to start.
pub(crate) struct Prepared {
    pub exec_id: String,
    pub session: String,
    /// The command as the caller sent it (placeholders, never values).
    pub command_as_sent: String,
    pub verdict: Verdict,
    /// The other daemons, for the output's redaction.
    pub peers: Peers,
    backend: Backend,
    sandbox: SandboxConfig,
    command: Command,
    audit: AuditContext,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The resolved command holds secret values: never printed.
        f.debug_struct("Prepared")
            .field("exec_id", &self.exec_id)
            .field("session", &self.session)
            .field("command_as_sent", &self.command_as_sent)
            .finish_non_exhaustive()
    }
}

/// Who asked, for the audit entry.
#[derive(Debug, Clone)]
struct AuditContext {
    caller: String,
    uid: Option<u32>,
    task: bool,
    started: Instant,
}

/// The result of [`Executor::prepare`].
#[derive(Debug)]
pub(crate) enum Prep {
    Ready(Box<Prepared>),
    /// Refused (warden, secretd); the reply says why and has been audited.
    Refused(Reply),
}

/// A new execution id: `x-` and 12 hex digits. No randomness is an error, never a guessable
/// id that could collide with another.
pub(crate) fn new_id(prefix: &str) -> Result<String, Error> {
    stakpak_util::random::id(prefix)
        .map_err(|e| Error::Internal(format!("cannot make an execution id: {e}")))
}

/// Unix milliseconds now.
pub(crate) use stakpak_util::now_ms;

impl Executor {
    pub(crate) fn new(
        state_dir: PathBuf,
        config: watch::Receiver<Arc<SandboxdConfig>>,
        audit: Recorder,
    ) -> Self {
        Executor {
            docker: Engine::new(state_dir.join("workspaces")),
            trust: Arc::new(Trust::default()),
            state_dir,
            config,
            audit,
        }
    }

    pub(crate) fn config(&self) -> Arc<SandboxdConfig> {
        Arc::clone(&self.config.borrow())
    }

    /// The workspace of `session` (already validated).
    pub(crate) fn workspace(&self, session: &str) -> PathBuf {
        self.state_dir.join("workspaces").join(session)
    }

    fn private_tmp(&self, session: &str) -> PathBuf {
        self.state_dir.join("tmp").join(session)
    }

    /// `Exec` and `ExecStream`: prepare, run, audit.
    pub(crate) async fn exec(
        &self,
        request: Request,
        bus: &Bus,
        forward: Option<(OwnedFd, OwnedFd)>,
    ) -> Result<Reply, Error> {
        let prepared = match self.prepare(&request, bus, false).await? {
            Prep::Ready(p) => p,
            Prep::Refused(reply) => return Ok(reply),
        };
        let config = self.config();
        let workspace = self.workspace(&prepared.session);
        let rel = format!("{OUTPUT_DIR}/{}.log", prepared.exec_id);
        let output = Output::new(
            &prepared.session,
            prepared.peers.clone(),
            Keep::Capped {
                cap: config.exec.output_cap,
                log: LogFile::new(&workspace, rel),
            },
            forward,
        );
        self.run(*prepared, None, output).await
    }

    /// Checks the request, asks the warden and has secretd resolve placeholders. A bad
    /// request is an error; a refusal is audited and returned as [`Prep::Refused`].
    pub(crate) async fn prepare(
        &self,
        request: &Request,
        bus: &Bus,
        task: bool,
    ) -> Result<Prep, Error> {
        let config = self.config();
        let checked = check_request(request, &config, task)?;
        let audit = AuditContext {
            caller: bus.caller().to_string(),
            uid: bus.caller_uid().await,
            task,
            started: Instant::now(),
        };
        let exec_id = new_id("x")?;
        let peers = bus.peers(&config.exec);

        // (a) The warden's verdict; anything but a clear `allow` refuses.
        let verdict = match peers
            .check(CheckKind::Command, &request.command, &checked.session)
            .await
        {
            Ok(v) => v,
            Err(r) => {
                let reply = denied(&exec_id, r.decision, &r.rule, r.reason);
                self.record(&exec_id, &checked.session, &request.command, &audit, &reply);
                return Ok(Prep::Refused(reply));
            }
        };

        // Network proxied: where the warden's egress proxy is, and the CA bundle; without
        // the proxy nothing runs (the command asked for a network it would not get). The
        // Docker backend's containers trust the warden's CA too (the bundle's folder is
        // mounted into them, `docker.rs`); without the proxy they just do not.
        let proxied = checked.backend == Backend::Local && checked.network == Network::Proxied;
        let found = if proxied || checked.backend == Backend::Docker {
            Some(self.trust.egress(&peers, &self.state_dir).await)
        } else {
            None
        };
        let (egress, container_egress) = match (checked.backend, found) {
            (Backend::Local, Some(Ok(e))) => (Some(e), None),
            (Backend::Local, Some(Err(why))) => {
                let reply = denied(
                    &exec_id,
                    Decision::Deny,
                    RULE_PROXY_UNAVAILABLE,
                    why.to_string(),
                );
                self.record(&exec_id, &checked.session, &request.command, &audit, &reply);
                return Ok(Prep::Refused(reply));
            }
            (Backend::Docker, Some(found)) => (None, found.ok()),
            _ => (None, None),
        };

        // (b) Placeholders to values: the command's through the environment, the extra
        // variables' in place.
        let resolved = match peers
            .resolve_command(&checked.session, &request.command, &request.env)
            .await
        {
            Ok(r) => r,
            Err(why) => {
                let reply = denied(
                    &exec_id,
                    verdict.decision,
                    RULE_SECRETD_UNAVAILABLE,
                    why.to_string(),
                );
                self.record(&exec_id, &checked.session, &request.command, &audit, &reply);
                return Ok(Prep::Refused(reply));
            }
        };

        let workspace = self.workspace(&checked.session);
        let tmp = self.private_tmp(&checked.session);
        for dir in [&workspace, &tmp] {
            create_dir(dir)?;
        }
        if let Some(rel) = &checked.workdir {
            create_dir(&workspace.join(rel))?;
        }
        let mut env = resolved.extra_env;
        env.extend(resolved.env);
        for (name, fallback) in ENV_PASS {
            let value = std::env::var(name).unwrap_or_else(|_| fallback.to_string());
            env.entry(name.to_string()).or_insert(value);
        }
        env.insert("HOME".into(), workspace.display().to_string());
        if let Some(e) = &egress {
            env.extend(egress::env(config.exec.proxy_port, &e.bundle));
        }
        if let (Some(e), Some(docker)) = (&container_egress, config.docker()) {
            let host = docker.network == crate::config::DockerNetworkMode::Host;
            env.extend(egress::container_env(e, host));
        }
        let sandbox = SandboxConfig {
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
            run_as: config.exec.run_as_ids,
            require_landlock: config.exec.require_landlock,
            pids_cgroup: config.limits.pids_cgroup(),
            output_cap: config.exec.output_cap,
            read_roots: stakpak_daemon::SYSTEM_READ
                .iter()
                .map(PathBuf::from)
                .chain(config.exec.read_paths.iter().cloned())
                .collect(),
            hidden: config.exec.hidden.clone(),
            proxy: egress.map(|e| ProxyRelay {
                socket: e.socket,
                port: config.exec.proxy_port,
                session: checked.session.clone(),
                ca_bundle: Some(e.bundle),
            }),
        };
        let command = Command {
            shell: resolved.command,
            env,
            cwd: checked.workdir.clone(),
            timeout: checked.timeout,
        };
        Ok(Prep::Ready(Box::new(Prepared {
            exec_id,
            session: checked.session,
            command_as_sent: request.command.clone(),
            verdict,
            peers,
            backend: checked.backend,
            sandbox,
            command,
            audit,
        })))
    }

    /// Runs a prepared command, streaming its output through `output`, until it ends, times
    /// out or `cancel` (an eventfd) becomes readable. Audits the result.
    pub(crate) async fn run(
        &self,
        prepared: Prepared,
        cancel: Option<Arc<OwnedFd>>,
        mut output: Output,
    ) -> Result<Reply, Error> {
        let Prepared {
            exec_id,
            session,
            command_as_sent,
            verdict,
            peers: _,
            backend,
            sandbox,
            command,
            audit,
        } = prepared;
        let started = match backend {
            Backend::Local => run_local(sandbox, command, cancel, &mut output).await,
            Backend::Docker => {
                let config = self.config();
                match config.docker() {
                    Some(section) => {
                        self.docker
                            .run(
                                section,
                                config.exec.output_cap,
                                &session,
                                command,
                                cancel,
                                &mut output,
                            )
                            .await
                    }
                    None => Err(Error::Unavailable(
                        "the docker backend is no longer configured ([docker] in sandboxd.toml)"
                            .into(),
                    )),
                }
            }
        };
        let outcome = match started {
            Ok(outcome) => outcome,
            Err(e) => {
                let reply = Reply {
                    status: ExecStatus::Failed,
                    reason: e.to_string(),
                    decision: Some(verdict.decision),
                    rule: verdict.rule,
                    exec_id: exec_id.clone(),
                    ..Reply::default()
                };
                self.record(&exec_id, &session, &command_as_sent, &audit, &reply);
                return Err(e);
            }
        };
        let (status, code) = match outcome.status {
            ExitKind::Exited(c) => (ExecStatus::Exited, c),
            ExitKind::Signaled(s) => (ExecStatus::Signaled, s),
            ExitKind::TimedOut => (ExecStatus::TimedOut, 0),
            ExitKind::Cancelled => (ExecStatus::Cancelled, 0),
        };
        let mut reply = Reply {
            status,
            code,
            decision: Some(verdict.decision),
            rule: verdict.rule,
            reason: verdict.reason,
            exec_id: exec_id.clone(),
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            ..Reply::default()
        };
        match output.finish().await {
            Ok(Finished {
                stdout,
                stderr,
                truncated,
                log,
                ..
            }) => {
                reply.stdout = stdout;
                reply.stderr = stderr;
                reply.truncated = truncated;
                reply.artifact = log.unwrap_or_default();
            }
            Err(e) => {
                reply.reason = format!("output withheld: {e}; the command did run");
            }
        }
        self.record(&exec_id, &session, &command_as_sent, &audit, &reply);
        Ok(reply)
    }

    /// One audit entry and one journal line per execution.
    fn record(
        &self,
        exec_id: &str,
        session: &str,
        command_as_sent: &str,
        audit: &AuditContext,
        reply: &Reply,
    ) {
        let duration_ms = u64::try_from(audit.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // The audit format has always held the decision's name, empty when there was none.
        let decision = reply.decision.map(Decision::as_str).unwrap_or_default();
        info!(
            exec_id = %exec_id,
            session = %session,
            caller = %audit.caller,
            uid = audit.uid.map(i64::from).unwrap_or(-1),
            command = %command_as_sent,
            decision = %decision,
            rule = %reply.rule,
            status = %reply.status,
            code = reply.code,
            duration_ms,
            task = audit.task,
            "exec"
        );
        if reply.status == ExecStatus::Failed || reply.reason.starts_with("output withheld") {
            warn!(exec_id = %exec_id, reason = %reply.reason, "exec did not complete normally");
        }
        let fields: BTreeMap<String, Value> = [
            ("exec_id", json!(exec_id)),
            ("session", json!(session)),
            ("caller", json!(audit.caller)),
            ("uid", json!(audit.uid)),
            ("command", json!(command_as_sent)),
            ("decision", json!(decision)),
            ("rule", json!(reply.rule)),
            ("status", json!(reply.status.as_str())),
            ("code", json!(reply.code)),
            ("duration_ms", json!(duration_ms)),
            ("task", json!(audit.task)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.audit.record("exec", fields);
    }
}

fn denied(exec_id: &str, decision: Decision, rule: &str, reason: String) -> Reply {
    Reply {
        status: ExecStatus::Denied,
        decision: Some(decision),
        rule: rule.into(),
        reason,
        exec_id: exec_id.into(),
        ..Reply::default()
    }
}

/// Runs a command with the local sandbox on a thread of its own, streaming its chunks
/// through `output`.
async fn run_local(
    sandbox: SandboxConfig,
    command: Command,
    cancel: Option<Arc<OwnedFd>>,
    output: &mut Output,
) -> Result<stakpak_sandbox::Outcome, Error> {
    let (chunks_tx, mut chunks) = mpsc::channel::<(Stream, Vec<u8>)>(64);
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("sandbox-run".into())
        .spawn(move || {
            let mut sink = |stream: Stream, bytes: &[u8]| {
                // The receiver only goes away when the daemon stops.
                let _ = chunks_tx.blocking_send((stream, bytes.to_vec()));
            };
            let result = Sandbox::new(sandbox).and_then(|s| {
                s.run_streaming(&command, cancel.as_deref().map(|fd| fd.as_fd()), &mut sink)
            });
            let _ = done_tx.send(result);
        })
        .map_err(|e| Error::Internal(format!("cannot start the sandbox thread: {e}")))?;
    while let Some((stream, bytes)) = chunks.recv().await {
        output.chunk(stream, bytes).await;
    }
    match done.await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) => Err(Error::Internal(format!(
            "the sandbox could not run the command: {e}"
        ))),
        Err(_) => Err(Error::Internal("the sandbox thread died".into())),
    }
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))
}

/// `[A-Za-z0-9_-]{1,64}`.
pub(crate) fn valid_session(session: &str) -> bool {
    (1..=64).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a request for the Docker backend must also be: the backend configured, the network
/// the containers have (a container's network is `docker.network`, fixed when it is made,
/// so a command never gets more or less network than it asked for), a session that can
/// name a container.
fn check_docker_request(request: &Request, config: &SandboxdConfig) -> Result<(), Error> {
    let Some(docker) = config.docker() else {
        return Err(Error::InvalidArgument(
            "backend \"docker\" is not configured in sandboxd.toml ([docker])".into(),
        ));
    };
    let network = docker.network.as_str();
    match request.network {
        None => {}
        Some(asked) if asked.name() == network => {}
        Some(asked @ (Net::None | Net::Host | Net::Bridge)) => {
            let asked = asked.name();
            return Err(Error::InvalidArgument(format!(
                "network {asked:?} cannot be had with the docker backend, whose containers have network {network:?} (docker.network); ask for {network:?} or leave network empty"
            )));
        }
        Some(other) => {
            let other = other.name();
            return Err(Error::InvalidArgument(format!(
                "network {other:?} is not one of none, host, bridge"
            )));
        }
    }
    if !request
        .session
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::InvalidArgument(format!(
            "session {:?} cannot name a container: with the docker backend it must start with a letter or digit",
            request.session
        )));
    }
    Ok(())
}

fn check_request(request: &Request, config: &SandboxdConfig, task: bool) -> Result<Checked, Error> {
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
    let backend = request.backend.unwrap_or(config.exec.backend);
    let network = match backend {
        Backend::Local => match request.network {
            None => match config.exec.network {
                LocalNetwork::Proxied => Network::Proxied,
                LocalNetwork::None => Network::None,
                LocalNetwork::Host => Network::Host,
            },
            Some(Net::Proxied) => Network::Proxied,
            Some(Net::None) => Network::None,
            Some(Net::Host) => Network::Host,
            Some(other) => {
                let other = other.name();
                return Err(Error::InvalidArgument(format!(
                    "network {other:?} is not one of proxied, none, host"
                )));
            }
        },
        Backend::Docker => {
            check_docker_request(request, config)?;
            Network::None
        }
    };
    let e = &config.exec;
    for name in request.env.keys() {
        if !e.env_allow.iter().any(|allowed| allowed == name) {
            return Err(Error::InvalidArgument(format!(
                "environment variable {name:?} is not in exec.env_allow ({})",
                e.env_allow.join(", ")
            )));
        }
    }
    let timeout_ms = match request.timeout_ms {
        0 if task => e.task_default_timeout_ms,
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
        backend,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn net(name: &str) -> Option<Net> {
        match name {
            "" => None,
            "proxied" => Some(Net::Proxied),
            "none" => Some(Net::None),
            "host" => Some(Net::Host),
            "bridge" => Some(Net::Bridge),
            other => panic!("no network {other}"),
        }
    }

    fn req(session: &str, workdir: &str, network: &str, timeout_ms: u64) -> Request {
        Request {
            session: session.into(),
            command: "true".into(),
            workdir: workdir.into(),
            timeout_ms,
            network: net(network),
            ..Request::default()
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
    fn docker_requests() {
        let docker = |network: &str, session: &str| Request {
            backend: Some(Backend::Docker),
            ..req(session, "", network, 0)
        };
        let local = SandboxdConfig::default();
        let err = check_request(&docker("", "s"), &local, false).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("not configured")),
            "{err:?}"
        );

        let mut config: SandboxdConfig =
            toml::from_str("[docker]\nimage = \"i\"\nnetwork = \"bridge\"\n").unwrap();
        for network in ["", "bridge"] {
            let ok = check_request(&docker(network, "s"), &config, false).unwrap();
            assert_eq!(ok.backend, Backend::Docker, "{network}");
        }
        for (request, needle) in [
            (docker("none", "s"), "containers have network \"bridge\""),
            (docker("host", "s"), "containers have network \"bridge\""),
            (docker("", "_s"), "must start with a letter or digit"),
        ] {
            let err = check_request(&request, &config, false).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument(m) if m.contains(needle)),
                "{request:?}: {err:?}"
            );
        }
        // The configured default applies to a request that names no backend.
        assert_eq!(
            check_request(&req("s", "", "", 0), &config, false)
                .unwrap()
                .backend,
            Backend::Local
        );
        config.exec.backend = Backend::Docker;
        assert_eq!(
            check_request(&req("s", "", "bridge", 0), &config, false)
                .unwrap()
                .backend,
            Backend::Docker
        );
        let local = Request {
            backend: Some(Backend::Local),
            ..req("s", "", "bridge", 0)
        };
        assert!(check_request(&local, &config, false).is_err());
    }

    #[test]
    fn requests() {
        let c = SandboxdConfig::default();
        let ok = check_request(&req("s", "sub/dir", "", 0), &c, false).unwrap();
        assert_eq!(ok.network, Network::Proxied);
        assert_eq!(
            check_request(&req("s", "", "none", 0), &c, false)
                .unwrap()
                .network,
            Network::None
        );
        assert_eq!(ok.timeout, Duration::from_millis(120_000));
        assert_eq!(ok.workdir, Some(PathBuf::from("sub/dir")));
        assert_eq!(
            check_request(&req("s", "", "host", 5), &c, false)
                .unwrap()
                .network,
            Network::Host
        );
        for bad in [
            req("s", "../x", "", 0),
            req("s", "/etc", "", 0),
            req("s", "", "bridge", 0),
            req("s", "", "", u64::MAX),
            req("../s", "", "", 0),
            Request {
                env: HashMap::from([("LD_PRELOAD".into(), "/x.so".into())]),
                ..req("s", "", "", 0)
            },
        ] {
            assert!(matches!(
                check_request(&bad, &c, false),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
