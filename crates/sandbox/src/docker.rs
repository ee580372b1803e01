//! The Docker backend of the sandbox: runs one shell command (`/bin/sh -c CMD`) inside a
//! hardened container of a local Docker engine, streaming its output like
//! [`crate::Sandbox::run_streaming`] and returning the same [`Outcome`].
//!
//! # Containers
//!
//! - [`ContainerMode::Persistent`] (the default): one long-lived container,
//!   `<name_prefix>` (`stakpak-sandbox`), with the whole workspaces root bind-mounted
//!   read-write at `/workspaces`; a command of session `s` runs in `/workspaces/s/<cwd>`.
//!   Sessions share the container (and its uid): they are separated from the host, not
//!   from each other.
//! - [`ContainerMode::PerSession`]: one container per session, `<name_prefix>-<session>`,
//!   with only that session's workspace bind-mounted at `/workspace`; removed by
//!   [`DockerBackend::end_session`].
//!
//! Before every exec the container is inspected and, when it is missing, not running,
//! paused, unhealthy or made from another configuration (the label
//! `dev.stakpak.sandbox.config`), removed and created again. Every container is made with
//! every capability dropped, `no-new-privileges`, a read-only root filesystem with a tmpfs
//! `/tmp`, the pids, memory and CPU limits and the network mode of the [`DockerConfig`],
//! the extra mounts read-only unless said otherwise, Docker's init as pid 1 (so orphans are
//! reaped) and the label `dev.stakpak.sandbox=1`. Images are never pulled.
//!
//! # Killing a command and everything it started
//!
//! Every exec gets a fresh marker in its environment (`STAKPAK_SANDBOX_RUN=<id>`), which
//! every descendant inherits. When the command times out, is cancelled, or exits, a second
//! exec in the same container (the *reaper*, a few lines of `sh`) SIGKILLs every process
//! whose environment holds the marker and every process in the session of one of them
//! (runc makes each exec a session leader, so a child that clears its environment is still
//! found through its session), and repeats until a scan finds nothing alive. Signals are
//! thus sent by the engine's runtime inside the container: sandboxd needs neither the host's
//! pid namespace nor the right to signal processes outside its own Landlock domain. The
//! reaper needs `sh`, `tr`, `grep` and `kill` in the image, checked when a container is made.
//! When it cannot run or does not finish (the pids limit is exhausted by a fork bomb), the
//! whole container is killed and removed instead; the next exec creates it again.
//!
//! A process that both leaves the session (`setsid`) and clears its environment, after every
//! marked process is gone, escapes the reaper; in per-session mode it dies with
//! [`DockerBackend::end_session`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HealthStatusEnum, HostConfig, Mount, MountType, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::oneshot;

use crate::{Command, ExitKind, Outcome, Stream};

/// The label every container of this backend carries.
pub const LABEL: &str = "dev.stakpak.sandbox";
/// The label holding the name prefix of the backend that made the container.
const LABEL_PREFIX: &str = "dev.stakpak.sandbox.prefix";
/// The label holding a hash of the configuration the container was made from.
const LABEL_CONFIG: &str = "dev.stakpak.sandbox.config";
/// The label naming the session of a per-session container.
const LABEL_SESSION: &str = "dev.stakpak.sandbox.session";
/// The environment variable that marks every process of one exec.
pub const RUN_MARKER_ENV: &str = "STAKPAK_SANDBOX_RUN";

/// Where the workspaces root is mounted in a persistent container.
const PERSISTENT_ROOT: &str = "/workspaces";
/// Where the session's workspace is mounted in a per-session container.
const SESSION_ROOT: &str = "/workspace";

/// How long output is still read after the command ended or was killed.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long the reaper may take before the container is killed instead.
const REAPER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the engine may take to report an exec's start, or its exit after its output
/// ended or it was killed.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(5);

/// Kills every process of one exec; `$1` is the marker. Exits 0 once a scan finds no live
/// process holding the marker or belonging to a session of one, 1 after 100 scans.
/// Zombies are skipped: they are dead, and only their parent (Docker's init) can remove them.
const REAPER: &str = r#"m="$1"; self=$$
round=0
while [ "$round" -lt 100 ]; do
    round=$((round + 1)); sids=" "; found=0
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        [ "$p" = "$self" ] && continue
        if tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qxF "$m"; then
            read -r st <"$d/stat" 2>/dev/null || continue
            set -- ${st##*) }
            [ "$1" = Z ] && continue
            [ "$4" != 1 ] && sids="$sids$4 "
            kill -9 "$p" 2>/dev/null; found=1
        fi
    done
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        read -r st <"$d/stat" 2>/dev/null || continue
        set -- ${st##*) }
        [ "$1" = Z ] && continue
        case "$sids" in *" $4 "*) [ "$p" != 1 ] && kill -9 "$p" 2>/dev/null; found=1 ;; esac
    done
    [ "$found" = 0 ] && exit 0
done
exit 1"#;

/// Checks that the image has what the reaper runs.
const REAPER_NEEDS: &str = "command -v tr && command -v grep && command -v kill";

static EXEC_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Errors of the Docker backend.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker engine socket at {}: is dockerd running?", socket.display())]
    EngineAbsent { socket: PathBuf },
    #[error("cannot talk to the Docker engine at {}: {source}", socket.display())]
    Engine {
        socket: PathBuf,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "Docker image `{image}` is not in the local engine; build it with `docker import` or `docker load` (nothing is pulled)"
    )]
    ImageMissing { image: String },
    #[error("Docker image `{image}` lacks /bin/sh, tr, grep or kill, which the sandbox needs")]
    ImageUnsuitable { image: String },
    #[error(
        "session name `{0}` must be 1 to 64 of [A-Za-z0-9_.-], starting with a letter or digit"
    )]
    BadSession(String),
    #[error("working directory {0} is not a relative path inside the workspace")]
    BadCwd(PathBuf),
    #[error("working directory {0} does not exist in the workspace")]
    MissingCwd(PathBuf),
    #[error("environment entry `{0}` contains a NUL byte or '=' in its name, or is reserved")]
    BadEnv(String),
    #[error("{what} {} is not an absolute path", path.display())]
    NotAbsolute { what: &'static str, path: PathBuf },
    #[error(
        "container name prefix `{0}` must be 1 to 64 of [A-Za-z0-9_.-], starting with a letter or digit"
    )]
    BadPrefix(String),
    #[error("cannot create the workspace {}: {source}", path.display())]
    Workspace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Docker engine refused to {what} {container}: {source}")]
    Api {
        what: &'static str,
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("container {container} is not usable: {reason}")]
    Unusable { container: String, reason: String },
}

/// Which containers commands run in; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContainerMode {
    /// One container for every session, kept between commands.
    #[default]
    Persistent,
    /// One container per session, removed by [`DockerBackend::end_session`].
    PerSession,
}

/// The containers' network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DockerNetwork {
    /// No network but a loopback (`--network none`).
    #[default]
    None,
    /// The host's network (`--network host`).
    Host,
    /// Docker's default bridge (`--network bridge`).
    Bridge,
}

impl DockerNetwork {
    /// The engine's name for the network mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Host => "host",
            Self::Bridge => "bridge",
        }
    }
}

/// One extra bind mount of a host path into every container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerMount {
    /// The host path.
    pub source: PathBuf,
    /// Where the containers see it; absolute.
    pub target: PathBuf,
    pub read_only: bool,
}

impl DockerMount {
    /// A read-only bind mount.
    pub fn read_only(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            read_only: true,
        }
    }
}

/// How a [`DockerBackend`] runs its commands. [`DockerConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerConfig {
    /// The engine's unix socket; default `/var/run/docker.sock`.
    pub socket: PathBuf,
    /// The image every container is made from; it must already be in the engine.
    pub image: String,
    pub mode: ContainerMode,
    /// Extra bind mounts, on top of the workspace.
    pub mounts: Vec<DockerMount>,
    /// Default [`DockerNetwork::None`].
    pub network: DockerNetwork,
    /// The containers' memory limit (swap included); `None` is unlimited.
    pub memory_bytes: Option<u64>,
    /// The containers' pids limit; default 512.
    pub pids: Option<i64>,
    /// The containers' CPU quota in billionths of a CPU; `None` is unlimited.
    pub nano_cpus: Option<i64>,
    /// Size of the tmpfs mounted on `/tmp`, in bytes; default 64 MiB.
    pub tmp_bytes: u64,
    /// Bytes kept of each of stdout and stderr; default 1 MiB.
    pub output_cap: usize,
    /// The host folder holding one `<session>/` workspace per session.
    pub workspaces_root: PathBuf,
    /// The persistent container's name, and the start of per-session containers' names
    /// (`<prefix>-<session>`); default `stakpak-sandbox`.
    pub name_prefix: String,
}

impl DockerConfig {
    /// The defaults, for `image` and the workspaces in `workspaces_root`.
    pub fn new(image: impl Into<String>, workspaces_root: impl Into<PathBuf>) -> Self {
        Self {
            socket: PathBuf::from("/var/run/docker.sock"),
            image: image.into(),
            mode: ContainerMode::Persistent,
            mounts: Vec::new(),
            network: DockerNetwork::None,
            memory_bytes: None,
            pids: Some(512),
            nano_cpus: None,
            tmp_bytes: 64 << 20,
            output_cap: 1 << 20,
            workspaces_root: workspaces_root.into(),
            name_prefix: "stakpak-sandbox".to_owned(),
        }
    }

    /// A hash of everything a container is made from, kept in a label so that a container
    /// made from another configuration is replaced.
    fn container_hash(&self) -> String {
        let mut h = std::hash::DefaultHasher::new();
        (
            &self.image,
            self.mode,
            &self.mounts,
            self.network,
            self.memory_bytes,
            self.pids,
            self.nano_cpus,
            self.tmp_bytes,
            &self.workspaces_root,
        )
            .hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

/// A connection to a Docker engine that runs commands in sandbox containers; see the
/// module documentation. Methods take `&self` and may run concurrently.
#[derive(Debug)]
pub struct DockerBackend {
    docker: Docker,
    config: DockerConfig,
    config_hash: String,
    /// Serialises the check-and-respawn of containers, so two execs never race to create
    /// the same container.
    lifecycle: tokio::sync::Mutex<()>,
}

/// How the exec's output loop ended.
enum Ending {
    /// The output ended.
    OutputEnded,
    /// The engine reported the command's exit (with its code when it had one).
    Exited(Option<i64>),
    TimedOut,
    Cancelled,
}

impl DockerBackend {
    /// Connects to the engine at `config.socket`, agrees on an API version, and checks that
    /// the image is present.
    pub async fn connect(config: DockerConfig) -> Result<Self, DockerError> {
        let paths = config
            .mounts
            .iter()
            .flat_map(|m| [("mount source", &m.source), ("mount target", &m.target)]);
        for (what, path) in
            std::iter::once(("workspaces root", &config.workspaces_root)).chain(paths)
        {
            if !path.is_absolute() {
                return Err(DockerError::NotAbsolute {
                    what,
                    path: path.clone(),
                });
            }
        }
        if !valid_name(&config.name_prefix) {
            return Err(DockerError::BadPrefix(config.name_prefix.clone()));
        }
        let socket = config.socket.clone();
        let engine_err = |source| DockerError::Engine {
            socket: socket.clone(),
            source,
        };
        if !socket.exists() {
            return Err(DockerError::EngineAbsent { socket });
        }
        let path = socket.to_string_lossy();
        let docker = Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(engine_err)?
            .negotiate_version()
            .await
            .map_err(engine_err)?;
        let backend = Self {
            docker,
            config_hash: config.container_hash(),
            config,
            lifecycle: tokio::sync::Mutex::new(()),
        };
        backend.check_image().await?;
        Ok(backend)
    }

    /// The configuration this backend was connected with.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The name of the container the commands of `session` run in.
    pub fn container_name(&self, session: &str) -> String {
        match self.config.mode {
            ContainerMode::Persistent => self.config.name_prefix.clone(),
            ContainerMode::PerSession => format!("{}-{session}", self.config.name_prefix),
        }
    }

    /// Runs `cmd` for `session`, handing every chunk of output to `sink` as it arrives; at
    /// most `cmd.timeout`. When `cancel` receives a value, the command is killed with every
    /// descendant and the outcome is [`ExitKind::Cancelled`] (a dropped sender cancels
    /// nothing). The environment is the image's plus `cmd.env` plus the run marker; the
    /// exit status is the engine's (a command killed by a signal reads `Exited(128 + n)`).
    /// The timeout counts from the exec's creation, after the container is ready.
    ///
    /// Dropping the returned future kills the command too, from a task spawned on the
    /// current Tokio runtime.
    pub async fn exec(
        &self,
        session: &str,
        cmd: &Command,
        cancel: Option<oneshot::Receiver<()>>,
        sink: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<Outcome, DockerError> {
        check_session(session)?;
        let rel = match &cmd.cwd {
            None => PathBuf::new(),
            Some(rel) => {
                if rel
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(DockerError::BadCwd(rel.clone()));
                }
                rel.clone()
            }
        };
        let mut env = Vec::with_capacity(cmd.env.len() + 1);
        for (k, v) in &cmd.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') || k == RUN_MARKER_ENV {
                return Err(DockerError::BadEnv(k.clone()));
            }
            env.push(format!("{k}={v}"));
        }
        let workspace = self.ensure_workspace(session)?;
        if !workspace.join(&rel).is_dir() {
            return Err(DockerError::MissingCwd(rel));
        }
        let inner_root = match self.config.mode {
            ContainerMode::Persistent => Path::new(PERSISTENT_ROOT).join(session),
            ContainerMode::PerSession => PathBuf::from(SESSION_ROOT),
        };
        let working_dir = inner_root.join(&rel).to_string_lossy().into_owned();
        let marker = run_marker();
        env.push(format!("{RUN_MARKER_ENV}={marker}"));

        let container = self.ensure_container(session).await?;
        let api = |what| {
            let container = container.clone();
            move |source| DockerError::Api {
                what,
                container,
                source,
            }
        };
        let start = Instant::now();
        let exec_id = self
            .docker
            .create_exec(
                &container,
                CreateExecOptions {
                    attach_stdin: Some(false),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    env: Some(env),
                    cmd: Some(vec![
                        "/bin/sh".to_owned(),
                        "-c".to_owned(),
                        cmd.shell.clone(),
                    ]),
                    working_dir: Some(working_dir),
                    ..Default::default()
                },
            )
            .await
            .map_err(api("create an exec in"))?
            .id;
        let started = self
            .docker
            .start_exec(
                &exec_id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(api("start an exec in"))?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(DockerError::Unusable {
                container,
                reason: "the engine detached an attached exec".to_owned(),
            });
        };
        drop(input);
        let mut guard = ReapOnDrop {
            docker: self.docker.clone(),
            container: container.clone(),
            exec_id: exec_id.clone(),
            marker: marker.clone(),
            armed: true,
        };

        let cap = self.config.output_cap;
        let mut out = Collected::default();
        let mut cancel = cancel;
        let deadline = tokio::time::Instant::from_std(start + cmd.timeout);
        let mut poll_every = Duration::from_millis(50);
        let mut next_poll = tokio::time::Instant::now() + poll_every;
        let mut ending = None;
        let mut reaped = false;
        let mut drain_until: Option<tokio::time::Instant> = None;
        // An engine error while following the command: it is still reaped before returning.
        let mut failure = None;
        loop {
            let until = drain_until.unwrap_or(deadline);
            tokio::select! {
                biased;
                chunk = output.next() => match chunk {
                    Some(Ok(LogOutput::StdErr { message })) => {
                        out.take(Stream::Stderr, &message, cap, sink);
                    }
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        out.take(Stream::Stdout, &message, cap, sink);
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    // A broken attach stream ends the output, not the command: the exit
                    // code still comes from the engine below.
                    Some(Err(_)) | None => {
                        ending.get_or_insert(Ending::OutputEnded);
                        break;
                    }
                },
                () = tokio::time::sleep_until(until) => {
                    if drain_until.is_some() {
                        break;
                    }
                    ending = Some(Ending::TimedOut);
                    self.reap(&container, &exec_id, &marker).await?;
                    reaped = true;
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                },
                r = async { cancel.as_mut()?.await.ok() }, if cancel.is_some() && ending.is_none() => {
                    if r.is_some() {
                        ending = Some(Ending::Cancelled);
                        self.reap(&container, &exec_id, &marker).await?;
                        reaped = true;
                        drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                    } else {
                        // The sender was dropped: no cancel can come any more.
                        cancel = None;
                    }
                },
                // The command may have exited while background processes still hold its
                // output open: then reap them, so the output ends now.
                () = tokio::time::sleep_until(next_poll), if ending.is_none() => {
                    let inspect = match self.docker.inspect_exec(&exec_id).await {
                        Ok(inspect) => inspect,
                        Err(source) => {
                            failure = Some(api("inspect an exec in")(source));
                            break;
                        }
                    };
                    if inspect.running == Some(false) {
                        ending = Some(Ending::Exited(inspect.exit_code));
                        self.reap(&container, &exec_id, &marker).await?;
                        reaped = true;
                        drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                    poll_every = (poll_every * 2).min(Duration::from_secs(1));
                    next_poll = tokio::time::Instant::now() + poll_every;
                },
            }
        }
        drop(output);
        // The exit code before the reaper runs: when the reaper fails, the container and
        // with it the exec's record are removed.
        let status = match (failure, ending) {
            (Some(e), _) => Err(e),
            (None, Some(Ending::TimedOut)) => Ok(ExitKind::TimedOut),
            (None, Some(Ending::Cancelled)) => Ok(ExitKind::Cancelled),
            (None, Some(Ending::Exited(Some(code)))) => Ok(ExitKind::Exited(exit_code_i32(code))),
            (None, Some(Ending::Exited(None) | Ending::OutputEnded) | None) => self
                .exit_code(&exec_id, &container)
                .await
                .map(ExitKind::Exited),
        };
        // Whatever happened, nothing of this run survives it.
        guard.armed = false;
        let reaped = if reaped {
            Ok(())
        } else {
            self.reap(&container, &exec_id, &marker).await
        };
        let status = status?;
        reaped?;
        Ok(Outcome {
            status,
            truncated: out.dropped > 0,
            dropped_bytes: out.dropped,
            stdout: out.stdout,
            stderr: out.stderr,
            duration: start.elapsed(),
        })
    }

    /// Removes the container of `session` in per-session mode (killing whatever runs in
    /// it); does nothing in persistent mode, where the container is shared. The workspace
    /// on the host is left alone.
    pub async fn end_session(&self, session: &str) -> Result<(), DockerError> {
        check_session(session)?;
        if self.config.mode == ContainerMode::Persistent {
            return Ok(());
        }
        let _guard = self.lifecycle.lock().await;
        self.remove(&self.container_name(session)).await
    }

    /// Removes every container this backend's name prefix made (persistent and
    /// per-session), e.g. when sandboxd stops.
    pub async fn remove_all(&self) -> Result<(), DockerError> {
        let _guard = self.lifecycle.lock().await;
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_PREFIX}={}", self.config.name_prefix)],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|source| DockerError::Api {
                what: "list the containers of",
                container: self.config.name_prefix.clone(),
                source,
            })?;
        for c in list {
            if let Some(id) = c.id {
                self.remove(&id).await?;
            }
        }
        Ok(())
    }

    async fn check_image(&self) -> Result<(), DockerError> {
        match self.docker.inspect_image(&self.config.image).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(DockerError::ImageMissing {
                image: self.config.image.clone(),
            }),
            Err(source) => Err(DockerError::Engine {
                socket: self.config.socket.clone(),
                source,
            }),
        }
    }

    /// The host folder of `session`'s workspace, created when missing.
    fn ensure_workspace(&self, session: &str) -> Result<PathBuf, DockerError> {
        let path = self.config.workspaces_root.join(session);
        std::fs::create_dir_all(&path).map_err(|source| DockerError::Workspace {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Returns the name of a running, healthy container for `session`, made from this
    /// configuration, creating it (again) when needed.
    async fn ensure_container(&self, session: &str) -> Result<String, DockerError> {
        let name = self.container_name(session);
        let _guard = self.lifecycle.lock().await;
        match self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let healthy =
                    state.health.and_then(|h| h.status) != Some(HealthStatusEnum::UNHEALTHY);
                let same_config = info
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(LABEL_CONFIG).cloned())
                    .is_some_and(|h| h == self.config_hash);
                if state.running == Some(true)
                    && state.paused != Some(true)
                    && state.restarting != Some(true)
                    && healthy
                    && same_config
                {
                    return Ok(name);
                }
                self.remove(&name).await?;
            }
            Err(e) if is_not_found(&e) => {}
            Err(source) => {
                return Err(DockerError::Api {
                    what: "inspect",
                    container: name,
                    source,
                });
            }
        }
        self.create(&name, session).await?;
        Ok(name)
    }

    async fn create(&self, name: &str, session: &str) -> Result<(), DockerError> {
        let cfg = &self.config;
        let bind = |source: &Path, target: &Path, read_only: bool| Mount {
            source: Some(source.to_string_lossy().into_owned()),
            target: Some(target.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(read_only),
            ..Default::default()
        };
        let mut labels = HashMap::from([
            (LABEL.to_owned(), "1".to_owned()),
            (LABEL_PREFIX.to_owned(), cfg.name_prefix.clone()),
            (LABEL_CONFIG.to_owned(), self.config_hash.clone()),
        ]);
        let mut mounts = Vec::with_capacity(cfg.mounts.len() + 1);
        match cfg.mode {
            ContainerMode::Persistent => {
                mounts.push(bind(
                    &cfg.workspaces_root,
                    Path::new(PERSISTENT_ROOT),
                    false,
                ));
            }
            ContainerMode::PerSession => {
                mounts.push(bind(
                    &cfg.workspaces_root.join(session),
                    Path::new(SESSION_ROOT),
                    false,
                ));
                labels.insert(LABEL_SESSION.to_owned(), session.to_owned());
            }
        }
        for m in &cfg.mounts {
            mounts.push(bind(&m.source, &m.target, m.read_only));
        }
        let memory = cfg
            .memory_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let host_config = HostConfig {
            mounts: Some(mounts),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,nosuid,nodev,mode=1777,size={}", cfg.tmp_bytes),
            )])),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            network_mode: Some(cfg.network.as_str().to_owned()),
            pids_limit: cfg.pids,
            memory,
            // Equal to the memory limit: no swap on top of it.
            memory_swap: memory,
            nano_cpus: cfg.nano_cpus,
            ipc_mode: Some("private".to_owned()),
            init: Some(true),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(cfg.image.clone()),
            hostname: Some("sandbox".to_owned()),
            // The container only has to stay up; commands arrive as execs.
            entrypoint: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
            cmd: Some(vec!["while :; do sleep 3600; done".to_owned()]),
            working_dir: Some("/".to_owned()),
            labels: Some(labels),
            network_disabled: Some(cfg.network == DockerNetwork::None),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_owned()),
                    ..Default::default()
                }),
                body,
            )
            .await;
        match created {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                return Err(DockerError::ImageMissing {
                    image: cfg.image.clone(),
                });
            }
            Err(source) => {
                return Err(DockerError::Api {
                    what: "create",
                    container: name.to_owned(),
                    source,
                });
            }
        }
        if let Err(source) = self.docker.start_container(name, None).await {
            let _ = self.remove(name).await;
            return Err(DockerError::Api {
                what: "start",
                container: name.to_owned(),
                source,
            });
        }
        // Without these the reaper would find nothing and leave a command's leftovers alive.
        if run_helper(&self.docker, name, &[REAPER_NEEDS]).await.ok() != Some(0) {
            let _ = self.remove(name).await;
            return Err(DockerError::ImageUnsuitable {
                image: cfg.image.clone(),
            });
        }
        Ok(())
    }

    /// Force-removes a container (and its anonymous volumes); a missing one is fine.
    async fn remove(&self, container: &str) -> Result<(), DockerError> {
        remove_container(&self.docker, container).await
    }

    /// Kills every process of exec `exec_id`, marked `marker`; when the reaper fails,
    /// removes the whole container instead.
    async fn reap(&self, container: &str, exec_id: &str, marker: &str) -> Result<(), DockerError> {
        if reap_exec(&self.docker, container, exec_id, marker).await {
            return Ok(());
        }
        let _guard = self.lifecycle.lock().await;
        self.remove(container).await
    }

    /// The exit code of a finished exec, waiting briefly for the engine to record it.
    async fn exit_code(&self, exec_id: &str, container: &str) -> Result<i32, DockerError> {
        let give_up = Instant::now() + EXIT_CODE_WAIT;
        loop {
            let inspect =
                self.docker
                    .inspect_exec(exec_id)
                    .await
                    .map_err(|source| DockerError::Api {
                        what: "inspect an exec in",
                        container: container.to_owned(),
                        source,
                    })?;
            if inspect.running != Some(true)
                && let Some(code) = inspect.exit_code
            {
                return Ok(exit_code_i32(code));
            }
            if Instant::now() >= give_up {
                return Err(DockerError::Unusable {
                    container: container.to_owned(),
                    reason: format!("exec {exec_id} reported no exit code"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Force-removes a container (and its anonymous volumes); a missing one is fine.
async fn remove_container(docker: &Docker, container: &str) -> Result<(), DockerError> {
    match docker
        .remove_container(
            container,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // 409: a removal of this container is already in progress.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(source) => Err(DockerError::Api {
            what: "remove",
            container: container.to_owned(),
            source,
        }),
    }
}

/// Runs the reaper for exec `exec_id`, marked `marker`, in `container`; false when the
/// processes could not be shown gone, and the container must go instead.
///
/// The reaper only finds processes that already carry the marker: an exec that was just
/// started may not have reached its `execve` yet. So the exec must be seen started before
/// the reaper runs, and seen ended after it; if it still runs, the reaper runs again.
async fn reap_exec(docker: &Docker, container: &str, exec_id: &str, marker: &str) -> bool {
    let marker = format!("{RUN_MARKER_ENV}={marker}");
    for _ in 0..3 {
        if !wait_exec(docker, exec_id, |pid, running| pid > 0 || !running).await {
            return false;
        }
        let args = [REAPER, "reaper", &marker];
        let reaper = run_helper(docker, container, &args);
        let reaped = tokio::time::timeout(REAPER_TIMEOUT, reaper)
            .await
            .ok()
            .and_then(Result::ok);
        if reaped != Some(0) {
            return false;
        }
        if wait_exec(docker, exec_id, |_, running| !running).await {
            return true;
        }
    }
    false
}

/// Polls the exec's pid and running state until `done` holds (true) or a few seconds
/// passed or the engine cannot tell (false).
async fn wait_exec(docker: &Docker, exec_id: &str, done: impl Fn(i64, bool) -> bool) -> bool {
    let give_up = Instant::now() + EXIT_CODE_WAIT;
    while Instant::now() < give_up {
        let Ok(inspect) = docker.inspect_exec(exec_id).await else {
            return false;
        };
        if done(inspect.pid.unwrap_or(0), inspect.running == Some(true)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Runs `/bin/sh -c ARGS…` in the container, discarding its output, and returns its exit
/// code.
async fn run_helper(
    docker: &Docker,
    container: &str,
    args: &[&str],
) -> Result<i64, bollard::errors::Error> {
    let mut cmd = vec!["/bin/sh".to_owned(), "-c".to_owned()];
    cmd.extend(args.iter().map(|a| (*a).to_owned()));
    let id = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd),
                working_dir: Some("/".to_owned()),
                ..Default::default()
            },
        )
        .await?
        .id;
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&id, None).await? {
        while let Some(Ok(_)) = output.next().await {}
    }
    loop {
        let inspect = docker.inspect_exec(&id).await?;
        if inspect.running != Some(true) {
            return Ok(inspect.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reaps an exec whose [`DockerBackend::exec`] future was dropped before it could, on a task
/// of its own.
struct ReapOnDrop {
    docker: Docker,
    container: String,
    exec_id: String,
    marker: String,
    armed: bool,
}

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let docker = self.docker.clone();
        let container = std::mem::take(&mut self.container);
        let exec_id = std::mem::take(&mut self.exec_id);
        let marker = std::mem::take(&mut self.marker);
        runtime.spawn(async move {
            if !reap_exec(&docker, &container, &exec_id, &marker).await {
                let _ = remove_container(&docker, &container).await;
            }
        });
    }
}

/// Session names become folder and container names.
fn check_session(session: &str) -> Result<(), DockerError> {
    if valid_name(session) {
        Ok(())
    } else {
        Err(DockerError::BadSession(session.to_owned()))
    }
}

/// What Docker accepts in a container name and is a plain folder name: 1 to 64 of
/// `[A-Za-z0-9_.-]`, starting with a letter or digit.
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A marker no other exec of any backend shares: pid, counter and clock.
fn run_marker() -> String {
    let n = EXEC_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{n:x}-{nanos:x}", std::process::id())
}

fn exit_code_i32(code: i64) -> i32 {
    i32::try_from(code).unwrap_or(-1)
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    dropped: u64,
}

impl Collected {
    fn take(
        &mut self,
        stream: Stream,
        chunk: &[u8],
        cap: usize,
        sink: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) {
        sink(stream, chunk);
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let keep = chunk.len().min(cap.saturating_sub(buf.len()));
        buf.extend_from_slice(&chunk[..keep]);
        self.dropped += (chunk.len() - keep) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names() {
        for (name, ok) in [
            ("s1", true),
            ("a.b_c-d", true),
            ("", false),
            (".hidden", false),
            ("-x", false),
            ("_x", false),
            ("a/b", false),
            ("..", false),
            ("a b", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(check_session(name).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn cap_keeps_the_first_bytes_of_each_stream() {
        let mut seen = Vec::new();
        let mut sink = |s: Stream, b: &[u8]| seen.push((s, b.to_vec()));
        let mut c = Collected::default();
        c.take(Stream::Stdout, b"abc", 4, &mut sink);
        c.take(Stream::Stdout, b"def", 4, &mut sink);
        c.take(Stream::Stderr, b"xy", 4, &mut sink);
        assert_eq!(
            (c.stdout.as_slice(), c.stderr.as_slice(), c.dropped),
            (&b"abcd"[..], &b"xy"[..], 2)
        );
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn config_hash_follows_what_containers_are_made_from() {
        let a = DockerConfig::new("img", "/w");
        let mut b = a.clone();
        b.output_cap = 7;
        assert_eq!(a.container_hash(), b.container_hash());
        b.network = DockerNetwork::Host;
        assert_ne!(a.container_hash(), b.container_hash());
    }
}
