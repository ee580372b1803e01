//! `sandboxd.toml`.
//!
//! ```toml
//! [exec]
//! default_timeout_ms = 120000  # when a request gives 0
//! max_timeout_ms = 3600000
//! warden_timeout_ms = 5000     # no verdict in time: refused
//! secretd_timeout_ms = 5000    # no resolution or redaction in time: refused / withheld
//! output_cap = 1048576         # bytes kept of each of stdout and stderr
//! require_landlock = true      # refuse to run when the kernel cannot enforce Landlock fully
//! bind_tmp = false             # bind the private tmp over /tmp (fails under sandboxd's Landlock)
//! env_allow = ["TERM", "TZ", "KUBECONFIG", …]  # variables a request may set
//! task_default_timeout_ms = 3600000  # background tasks whose request gives 0
//! tasks_kept = 200             # finished tasks remembered
//! backend = "local"            # a request without `backend`: "local" or "docker" (needs [docker])
//! read_paths = ["/var/log", "/var/lib/dpkg", "/opt", "/srv"]  # readable besides /usr, /etc, …
//! hide = ["/srv/private"]      # more folders commands may not read (the suite's own always)
//! run_as = "stakpak-run"       # the user commands run as; "" for sandboxd's own (see below)
//! network = "proxied"          # a request without `network`: "proxied" (only the warden's
//!                              # egress proxy, see egress.rs), "none" or "host"
//! proxy_port = 3128            # the proxy's port on a proxied sandbox's loopback
//! [limits]
//! pids = 256
//! memory_bytes = 1073741824
//! cpu_secs = 600
//! nofile = 1024
//! cgroup = ""                  # delegated cgroup for the runs' pids cgroups; empty: own, if usable
//! [files]
//! view_max_bytes = 262144      # bytes View returns at most (a request may ask for fewer)
//! tree_max_entries = 1000      # entries of a directory tree
//! grep_max_matches = 200       # matching lines of a grep
//! [docker]                     # the Docker backend; absent: requests for it are refused
//! enabled = true               # false: as if the section were absent
//! socket = "/var/run/docker.sock"
//! image = "stakpak-sandbox:latest"  # required; must be in the engine already (never pulled)
//! mode = "persistent"          # or "per-session": one container per session
//! network = "none"             # the containers' network: "none", "host" or "bridge"
//! name_prefix = "stakpak-sandbox"  # container name (persistent), `<prefix>-<session>` otherwise
//! mounts = [{ source = "/opt/tools", target = "/opt/tools", read_only = true }]
//! memory_bytes = 2147483648    # per container (swap included); absent: unlimited
//! pids = 512                   # per container
//! cpus = 1.5                   # per container; absent: unlimited
//! tmp_bytes = 67108864         # the container's tmpfs /tmp
//! ```
//!
//! # The Docker backend (`[docker]`)
//!
//! A request with `backend = "docker"` (or without one, when `exec.backend = "docker"`) runs
//! through the same warden, secretd and redaction path, but in a container of the local
//! engine (`stakpak_sandbox::docker`; `docker.rs` of this daemon). The limits of `[limits]`
//! and `exec.hide` are the local sandbox's; a container has the limits of `[docker]`, shared
//! by every command it runs, and sees only the workspace and `docker.mounts`.
//!
//! - **Network.** Fixed per container by `docker.network`. A request's `network` must be
//!   empty (the configured one) or name exactly that network; anything else is refused
//!   rather than run with more (or less) network than asked.
//! - **Lifetime.** Containers are made on first use and kept: when sandboxd stops, the
//!   persistent container and every per-session one are left running for the next start
//!   (which reuses them when made from the same configuration, and replaces them otherwise).
//!   Nothing ends a per-session container while sandboxd runs; an operator removes them
//!   with `docker rm -f $(docker ps -aq --filter label=dev.stakpak.sandbox.prefix=<prefix>)`.
//! - **Landlock.** Up to ABI 7 Landlock has no right for connecting to a named unix socket
//!   (only the socket file's permissions decide), so `[docker]` adds nothing to sandboxd's
//!   domain (`tests/tests/sandboxd_docker.rs` connects from inside it). A later ABI that
//!   governs it would need a rule on `docker.socket`. The engine, outside the domain, does
//!   the bind mounts, so the workspaces need no right beyond sandboxd's own.
//!
//! # The run-as user (`[exec] run_as`)
//!
//! Commands of the local sandbox run as this user, resolved through `/etc/passwd` to its uid
//! and primary gid; each command's workspace and private tmp are handed to it. A name that is
//! not there is a configuration error naming it; `""` runs commands as sandboxd's own user.
//! Unset, installed sandboxd uses `stakpak-run` when that user exists and sandboxd may change
//! uids (`CAP_SETUID` in its effective set: root, or the unit's `AmbientCapabilities=`), and
//! its own user otherwise. Embedded, unset means sandboxd's own user: the suite, its
//! workspaces and everything a command leaves behind then belong to whoever ran `stakpak up`,
//! which keeps file ownership simple for a suite that has no users of its own.
//!
//! # The pids cgroup (`[limits] cgroup`)
//!
//! `limits.pids` is also `RLIMIT_NPROC`, which does not bind root; a pids cgroup per command
//! does. At start (in `confinement`, before the Landlock restriction and any second thread)
//! sandboxd settles on a *base* cgroup: `limits.cgroup` when set (a cgroup v2 directory, or
//! one in a v1 `pids` hierarchy), else its own cgroup from `/proc/self/cgroup` (v2 when the
//! `pids` controller is available there, else the v1 `pids` hierarchy). Below the base:
//!
//! - `runs/`: the parent of one `stakpak-sandbox-<pid>-<n>` cgroup per command (made and
//!   removed by `stakpak-sandbox`), whose `pids.max` is `limits.pids`. On v2 sandboxd enables
//!   `pids` in the base's and in `runs/`'s `cgroup.subtree_control`.
//! - `daemon/`: only on v2, and only when enabling `pids` in the base fails because sandboxd
//!   itself is in it (the "no internal processes" rule: a cgroup that hands controllers to
//!   its children may hold no process, the root excepted). sandboxd moves itself into this
//!   leaf, then enables the controller; should that still fail, it moves back. Under systemd
//!   that is `Delegate=yes` on sandboxd's unit with no `limits.cgroup` set.
//!
//! `runs/` joins sandboxd's Landlock write rules (and nothing else of the hierarchy). An
//! unusable `limits.cgroup` is logged as an error and every command is refused (the run's
//! cgroup cannot be made); without `limits.cgroup`, an unusable own cgroup is one warning and
//! commands run without a pids cgroup. The choice is made once: a reload that changes
//! `limits.cgroup` is refused.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use stakpak_daemon::{DaemonConfig, LogConfig, Mode, Paths};

/// A value of `sandboxd.toml` that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {} is not an absolute path", path.display())]
    NotAbsolute { key: String, path: PathBuf },
    #[error("{key}: {} may not contain `..`", path.display())]
    ParentDir { key: String, path: PathBuf },
    #[error("{key} must be greater than 0")]
    Zero { key: &'static str },
    #[error("exec.run_as: there is no user `{name}` (in {PASSWD})")]
    NoSuchUser { name: String },
    #[error("exec.env_allow: {name:?} is not a variable name")]
    BadVariable { name: String },
    #[error(
        "exec.env_allow: {name:?} may not be set by a request (sandboxd sets it, or it loads code)"
    )]
    ReservedVariable { name: String },
    #[error("exec.default_timeout_ms is above exec.max_timeout_ms")]
    DefaultAboveMax,
    #[error("limits.cgroup cannot change while sandboxd runs (it is \"{}\"); restart it", at_start.display())]
    CgroupChanged { at_start: PathBuf },
    #[error("exec.backend is \"docker\" but there is no enabled [docker] section")]
    NoDockerSection,
    #[error("docker.image must name an image already in the engine")]
    NoImage,
    #[error(
        "docker.name_prefix: {name:?} must be 1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
    )]
    BadNamePrefix { name: String },
    #[error("docker.mounts[{index}].target: {} would cover or sit inside the workspace or /tmp", target.display())]
    ReservedTarget { index: usize, target: PathBuf },
    #[error("docker.pids is too large")]
    TooManyPids,
    #[error("docker.cpus: {cpus} is not a positive number of CPUs")]
    BadCpus { cpus: f64 },
}

/// Why no cgroup could be prepared for the runs' pids cgroups (logged, never an error of
/// the configuration: see the module documentation).
#[derive(Debug, thiserror::Error)]
enum CgroupError {
    #[error("no cgroup of sandboxd offers the pids controller")]
    NoneOffered,
    #[error("{} is not a cgroup directory", path.display())]
    NotCgroup { path: PathBuf },
    #[error("{} is not in a pids hierarchy", path.display())]
    NotPids { path: PathBuf },
    #[error("the pids controller is not available in {} (cgroup.controllers)", path.display())]
    NoController { path: PathBuf },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `sandboxd.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxdConfig {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub exec: ExecConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub files: FilesConfig,
    /// `[docker]`; absent: no Docker backend.
    #[serde(default)]
    pub docker: Option<DockerSection>,
}

/// `[exec]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub warden_timeout_ms: u64,
    pub secretd_timeout_ms: u64,
    pub output_cap: usize,
    pub require_landlock: bool,
    /// Bind the private tmp over `/tmp` in the child. The kernel refuses mounts inside a
    /// Landlock domain, so this only works when sandboxd itself is not Landlock-restricted;
    /// off, the child gets `TMPDIR` instead and `/tmp` is read-only.
    pub bind_tmp: bool,
    /// Names of the variables a request may add to the child's environment (which otherwise
    /// holds only `PATH`, `LANG`, `HOME` and `TMPDIR`).
    pub env_allow: Vec<String>,
    /// Timeout of a background task whose request gives 0.
    pub task_default_timeout_ms: u64,
    /// Finished tasks kept in the registry (oldest forgotten first; logs stay in the workspace).
    pub tasks_kept: usize,
    /// The backend of a request that names none.
    pub backend: Backend,
    /// Folders commands may read besides the system folders every daemon reads (`/usr`,
    /// `/etc`, `/proc`, …); sandboxd's own Landlock domain grants them too.
    pub read_paths: Vec<PathBuf>,
    /// More folders below which commands may read nothing, besides the suite's own.
    pub hide: Vec<PathBuf>,
    /// Everything hidden from commands: the suite's folders (`hidden.rs`) and `hide`; set in
    /// `prepare`.
    #[serde(skip)]
    pub hidden: Vec<PathBuf>,
    /// The user commands run as (see the module documentation); `""`: sandboxd's own.
    pub run_as: Option<String>,
    /// `run_as` (or its default) as `(uid, gid)`; set in `prepare`.
    #[serde(skip)]
    pub run_as_ids: Option<(u32, u32)>,
    /// The local sandbox's network when a request names none: `proxied` (only the warden's
    /// egress proxy), `none` or `host`.
    pub network: LocalNetwork,
    /// The port of the proxy on a proxied sandbox's loopback (`HTTPS_PROXY`).
    pub proxy_port: u16,
}

/// `exec.network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalNetwork {
    /// An own network namespace; only the warden's egress proxy is reachable.
    #[default]
    Proxied,
    /// An own, empty network namespace.
    None,
    /// The host's network.
    Host,
}

/// The run-as user of installed sandboxd when `exec.run_as` is unset.
pub const DEFAULT_RUN_AS: &str = "stakpak-run";
const PASSWD: &str = "/etc/passwd";

/// The default `exec.env_allow`.
pub const DEFAULT_ENV_ALLOW: [&str; 10] = [
    "TERM",
    "LANG",
    "LC_ALL",
    "TZ",
    "NO_COLOR",
    "KUBECONFIG",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "DOCKER_HOST",
];

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            default_timeout_ms: 120_000,
            max_timeout_ms: 3_600_000,
            warden_timeout_ms: 5_000,
            secretd_timeout_ms: 5_000,
            output_cap: 1024 * 1024,
            require_landlock: true,
            bind_tmp: false,
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| s.to_string()).collect(),
            task_default_timeout_ms: 3_600_000,
            tasks_kept: 200,
            backend: Backend::Local,
            read_paths: ["/var/log", "/var/lib/dpkg", "/opt", "/srv"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            hide: Vec::new(),
            hidden: Vec::new(),
            run_as: None,
            run_as_ids: None,
            network: LocalNetwork::Proxied,
            proxy_port: 3128,
        }
    }
}

impl ExecConfig {
    /// Settles `run_as_ids` from `run_as`, the mode, the text of `/etc/passwd` and whether
    /// this process may change uids.
    fn settle_run_as(
        &mut self,
        mode: Mode,
        passwd: &str,
        can_switch: bool,
    ) -> Result<(), ConfigError> {
        self.run_as_ids = match self.run_as.as_deref() {
            Some("") => None,
            Some(name) => Some(
                user_ids(passwd, name).ok_or_else(|| ConfigError::NoSuchUser {
                    name: name.to_string(),
                })?,
            ),
            None if mode == Mode::Installed && can_switch => user_ids(passwd, DEFAULT_RUN_AS),
            None => None,
        };
        Ok(())
    }
}

/// The uid and primary gid of `name` in the text of `/etc/passwd`.
fn user_ids(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let (uid, gid) = (f.nth(1)?, f.next()?);
        Some((uid.parse().ok()?, gid.parse().ok()?))
    })
}

/// True when this process may change its uid (`CAP_SETUID` effective).
fn can_switch_users() -> bool {
    rustix::thread::capabilities(None)
        .is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::SETUID))
}

/// `[limits]`: per command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub pids: u64,
    pub memory_bytes: u64,
    pub cpu_secs: u64,
    pub nofile: u64,
    /// A cgroup directory delegated to sandboxd, below which each command gets a pids
    /// cgroup (see the module documentation); empty: sandboxd's own cgroup, if usable.
    pub cgroup: PathBuf,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            pids: 256,
            memory_bytes: 1 << 30,
            cpu_secs: 600,
            nofile: 1024,
            cgroup: PathBuf::new(),
        }
    }
}

/// `limits.cgroup` as read at start, and the `runs/` cgroup settled on then.
static RUN_CGROUPS: OnceLock<(PathBuf, Option<PathBuf>)> = OnceLock::new();

impl LimitsConfig {
    /// Settles, once per process, the cgroup below which commands get their pids cgroups
    /// (creating `runs/`, moving sandboxd into `daemon/` if needed) and returns it. Call it
    /// at start, before the Landlock restriction, which must allow writing there.
    pub fn settle_cgroup(&self) -> Option<&'static Path> {
        RUN_CGROUPS
            .get_or_init(|| (self.cgroup.clone(), settle(&self.cgroup)))
            .1
            .as_deref()
    }

    /// The parent cgroup for [`stakpak_sandbox::SandboxConfig::pids_cgroup`]: what
    /// [`LimitsConfig::settle_cgroup`] settled on at start (`None` before that).
    pub fn pids_cgroup(&self) -> Option<PathBuf> {
        RUN_CGROUPS.get().and_then(|(_, runs)| runs.clone())
    }

    fn check_cgroup(&self) -> Result<(), ConfigError> {
        if !self.cgroup.as_os_str().is_empty() && !self.cgroup.is_absolute() {
            return Err(ConfigError::NotAbsolute {
                key: "limits.cgroup".into(),
                path: self.cgroup.clone(),
            });
        }
        match RUN_CGROUPS.get() {
            Some((at_start, _)) if *at_start != self.cgroup => Err(ConfigError::CgroupChanged {
                at_start: at_start.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// Picks and prepares the `runs/` cgroup; logs why there is none.
fn settle(configured: &Path) -> Option<PathBuf> {
    let explicit = !configured.as_os_str().is_empty();
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own_v2 = own_cgroup_dir(&proc_cgroup, &mountinfo, Hierarchy::V2);
    let base = if explicit {
        Ok(configured.to_path_buf())
    } else {
        own_v2
            .clone()
            .filter(|dir| has_word(&dir.join("cgroup.controllers"), "pids"))
            .or_else(|| own_cgroup_dir(&proc_cgroup, &mountinfo, Hierarchy::V1Pids))
            .ok_or(CgroupError::NoneOffered)
    };
    match base.and_then(|base| prepare_runs(&base, own_v2.as_deref())) {
        Ok(runs) => {
            tracing::info!(cgroup = %runs.display(), "every command runs in a pids cgroup below this one");
            Some(runs)
        }
        Err(why) if explicit => {
            tracing::error!(
                "limits.cgroup {} is unusable ({why}): commands will be refused",
                configured.display()
            );
            // Fail closed: making the run's cgroup below this path fails at every command.
            Some(configured.join("runs"))
        }
        Err(why) => {
            tracing::warn!(
                "commands run without a pids cgroup ({why}); limits.pids then binds only through RLIMIT_NPROC, which does not bind root"
            );
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hierarchy {
    V2,
    V1Pids,
}

/// The directory of this process's cgroup in `hierarchy`, from the contents of
/// `/proc/self/cgroup` and `/proc/self/mountinfo`.
fn own_cgroup_dir(proc_cgroup: &str, mountinfo: &str, hierarchy: Hierarchy) -> Option<PathBuf> {
    let path = proc_cgroup.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let wanted = match hierarchy {
            Hierarchy::V2 => id == "0" && controllers.is_empty(),
            Hierarchy::V1Pids => controllers.split(',').any(|c| c == "pids"),
        };
        wanted.then_some(path)
    })?;
    mountinfo.lines().find_map(|line| {
        let (mount, sb) = line.split_once(" - ")?;
        let mount: Vec<&str> = mount.split(' ').collect();
        let sb: Vec<&str> = sb.split(' ').collect();
        let (root, point) = (*mount.get(3)?, *mount.get(4)?);
        let fstype = *sb.first()?;
        let options = sb.get(2).copied().unwrap_or_default();
        let matches = match hierarchy {
            Hierarchy::V2 => fstype == "cgroup2",
            Hierarchy::V1Pids => fstype == "cgroup" && options.split(',').any(|o| o == "pids"),
        };
        if !matches {
            return None;
        }
        let rel = Path::new(path).strip_prefix(root).ok()?;
        Some(Path::new(point).join(rel))
    })
}

fn has_word(file: &Path, word: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|s| s.split_whitespace().any(|w| w == word))
}

/// Makes `base/runs` ready for per-command pids cgroups (see the module documentation);
/// `own_v2` is sandboxd's own v2 cgroup, the only one it moves itself out of.
fn prepare_runs(base: &Path, own_v2: Option<&Path>) -> Result<PathBuf, CgroupError> {
    let err = |what: &'static str, path: &Path, source: std::io::Error| CgroupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let runs = base.join("runs");
    let mkdir = |dir: &Path| match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(err("cannot create", dir, e))
        }
        _ => Ok(()),
    };
    if !base.join("cgroup.controllers").exists() {
        // cgroup v1: every cgroup of the pids hierarchy has the controller; no leaf rule.
        if !base.join("cgroup.procs").exists() {
            return Err(CgroupError::NotCgroup {
                path: base.to_path_buf(),
            });
        }
        mkdir(&runs)?;
        if !runs.join("pids.max").exists() {
            return Err(CgroupError::NotPids {
                path: base.to_path_buf(),
            });
        }
        return Ok(runs);
    }
    if !has_word(&base.join("cgroup.controllers"), "pids") {
        return Err(CgroupError::NoController {
            path: base.to_path_buf(),
        });
    }
    let control = base.join("cgroup.subtree_control");
    if !has_word(&control, "pids") {
        match std::fs::write(&control, "+pids") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy && is_same(own_v2, base) => {
                // We are an internal process of `base`: move into a leaf of our own.
                let leaf = base.join("daemon");
                mkdir(&leaf)?;
                let pid = std::process::id().to_string();
                let procs = leaf.join("cgroup.procs");
                std::fs::write(&procs, &pid)
                    .map_err(|e| err("cannot move sandboxd to", &procs, e))?;
                if let Err(e) = std::fs::write(&control, "+pids") {
                    let _ = std::fs::write(base.join("cgroup.procs"), &pid);
                    return Err(err("cannot enable pids in", &control, e));
                }
            }
            Err(e) => return Err(err("cannot enable pids in", &control, e)),
        }
    }
    mkdir(&runs)?;
    let control = runs.join("cgroup.subtree_control");
    if !has_word(&control, "pids") {
        std::fs::write(&control, "+pids").map_err(|e| err("cannot enable pids in", &control, e))?;
    }
    Ok(runs)
}

fn is_same(a: Option<&Path>, b: &Path) -> bool {
    match (a.and_then(|a| a.canonicalize().ok()), b.canonicalize().ok()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `[files]`: the file tools (`View`, `Create`, `StrReplace`, `Remove`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Bytes of text `View` returns at most; a request may ask for fewer.
    pub view_max_bytes: u64,
    /// Entries a directory tree lists at most.
    pub tree_max_entries: u64,
    /// Matching lines a grep returns at most.
    pub grep_max_matches: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            view_max_bytes: 256 * 1024,
            tree_max_entries: 1000,
            grep_max_matches: 200,
        }
    }
}

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The local sandbox (`stakpak_sandbox::Sandbox`): namespaces, Landlock, rlimits.
    #[default]
    Local,
    /// A container of the local Docker engine (`[docker]`).
    Docker,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Docker => "docker",
        }
    }
}

/// `docker.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DockerMode {
    #[default]
    Persistent,
    PerSession,
}

/// `docker.network`: the containers' network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerNetworkMode {
    #[default]
    None,
    Host,
    Bridge,
}

impl DockerNetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DockerNetworkMode::None => "none",
            DockerNetworkMode::Host => "host",
            DockerNetworkMode::Bridge => "bridge",
        }
    }
}

/// One of `docker.mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerMountConfig {
    pub source: PathBuf,
    pub target: PathBuf,
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

/// `[docker]`: the Docker backend (see the module documentation).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSection {
    /// `false`: as if the section were absent.
    pub enabled: bool,
    /// The engine's unix socket.
    pub socket: PathBuf,
    /// The image of every container; required, never pulled.
    pub image: String,
    pub mode: DockerMode,
    pub network: DockerNetworkMode,
    /// The persistent container's name; per-session ones are `<name_prefix>-<session>`.
    pub name_prefix: String,
    /// Extra bind mounts, read-only unless `read_only = false`.
    pub mounts: Vec<DockerMountConfig>,
    /// Memory of each container, swap included; absent: unlimited.
    pub memory_bytes: Option<u64>,
    /// Processes of each container.
    pub pids: u64,
    /// CPUs of each container (`1.5`: one and a half); absent: unlimited.
    pub cpus: Option<f64>,
    /// Size of each container's tmpfs `/tmp`.
    pub tmp_bytes: u64,
}

impl Default for DockerSection {
    fn default() -> Self {
        DockerSection {
            enabled: true,
            socket: PathBuf::from("/var/run/docker.sock"),
            image: String::new(),
            mode: DockerMode::Persistent,
            network: DockerNetworkMode::None,
            name_prefix: "stakpak-sandbox".into(),
            mounts: Vec::new(),
            memory_bytes: None,
            pids: 512,
            cpus: None,
            tmp_bytes: 64 << 20,
        }
    }
}

/// Container paths a `docker.mounts` target may neither cover nor sit inside: the workspace
/// (per-session and persistent) and the tmpfs.
const DOCKER_RESERVED_TARGETS: [&str; 3] = ["/workspace", "/workspaces", "/tmp"];

impl DockerSection {
    /// `cpus` in billionths of a CPU, as the engine takes it.
    pub fn nano_cpus(&self) -> Option<i64> {
        // Checked in `check`: finite, positive and at most 1e6 CPUs, so this fits.
        self.cpus.map(|c| (c * 1e9).round() as i64)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.image.trim().is_empty() {
            return Err(ConfigError::NoImage);
        }
        if !self.socket.is_absolute() {
            return Err(ConfigError::NotAbsolute {
                key: "docker.socket".into(),
                path: self.socket.clone(),
            });
        }
        let name = &self.name_prefix;
        let valid_name = name.len() <= 64
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid_name {
            return Err(ConfigError::BadNamePrefix { name: name.clone() });
        }
        for (i, m) in self.mounts.iter().enumerate() {
            for (what, path) in [("source", &m.source), ("target", &m.target)] {
                if !path.is_absolute() {
                    return Err(ConfigError::NotAbsolute {
                        key: format!("docker.mounts[{i}].{what}"),
                        path: path.clone(),
                    });
                }
                if path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(ConfigError::ParentDir {
                        key: format!("docker.mounts[{i}].{what}"),
                        path: path.clone(),
                    });
                }
            }
            let covers = |r: &&str| {
                let r = Path::new(r);
                r.starts_with(&m.target) || m.target.starts_with(r)
            };
            if DOCKER_RESERVED_TARGETS.iter().any(covers) {
                return Err(ConfigError::ReservedTarget {
                    index: i,
                    target: m.target.clone(),
                });
            }
        }
        if let Some(bad) = [
            ("docker.pids", self.pids),
            ("docker.tmp_bytes", self.tmp_bytes),
            ("docker.memory_bytes", self.memory_bytes.unwrap_or(1)),
        ]
        .iter()
        .find(|(_, v)| *v == 0)
        {
            return Err(ConfigError::Zero { key: bad.0 });
        }
        if i64::try_from(self.pids).is_err() {
            return Err(ConfigError::TooManyPids);
        }
        if let Some(c) = self.cpus
            && !(c.is_finite() && c > 0.0 && c <= 1e6)
        {
            return Err(ConfigError::BadCpus { cpus: c });
        }
        Ok(())
    }
}

impl SandboxdConfig {
    /// `[docker]` when present and enabled.
    pub fn docker(&self) -> Option<&DockerSection> {
        self.docker.as_ref().filter(|d| d.enabled)
    }

    fn check_docker(&self) -> Result<(), ConfigError> {
        match self.docker() {
            Some(d) => d.check(),
            None if self.exec.backend == Backend::Docker => Err(ConfigError::NoDockerSection),
            None => Ok(()),
        }
    }
}

impl DaemonConfig for SandboxdConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }

    /// The trait takes the message; [`SandboxdConfig::check`] says what is wrong.
    fn prepare(&mut self, paths: &Paths) -> Result<(), String> {
        self.check(paths).map_err(|e| e.to_string())
    }
}

impl SandboxdConfig {
    /// Checks every value and settles what depends on the host (hidden folders, the run-as
    /// user, the cgroup).
    fn check(&mut self, paths: &Paths) -> Result<(), ConfigError> {
        for (key, list) in [
            ("exec.hide", &self.exec.hide),
            ("exec.read_paths", &self.exec.read_paths),
        ] {
            if let Some(bad) = list.iter().find(|p| !p.is_absolute()) {
                return Err(ConfigError::NotAbsolute {
                    key: key.into(),
                    path: bad.clone(),
                });
            }
        }
        self.exec.hidden = crate::hidden::hidden_paths(paths, &self.exec.hide);
        let e = &self.exec;
        for (key, value) in [
            ("exec.default_timeout_ms", e.default_timeout_ms),
            ("exec.max_timeout_ms", e.max_timeout_ms),
            ("exec.warden_timeout_ms", e.warden_timeout_ms),
            ("exec.secretd_timeout_ms", e.secretd_timeout_ms),
            ("exec.task_default_timeout_ms", e.task_default_timeout_ms),
            ("limits.pids", self.limits.pids),
            ("limits.memory_bytes", self.limits.memory_bytes),
            ("limits.cpu_secs", self.limits.cpu_secs),
            ("limits.nofile", self.limits.nofile),
            ("files.view_max_bytes", self.files.view_max_bytes),
            ("files.tree_max_entries", self.files.tree_max_entries),
            ("files.grep_max_matches", self.files.grep_max_matches),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { key });
            }
        }
        if let Some(bad) = e
            .env_allow
            .iter()
            .find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(ConfigError::BadVariable { name: bad.clone() });
        }
        if let Some(bad) = e
            .env_allow
            .iter()
            .find(|n| n.starts_with("LD_") || ["PATH", "HOME", "TMPDIR"].contains(&n.as_str()))
        {
            return Err(ConfigError::ReservedVariable { name: bad.clone() });
        }
        if e.default_timeout_ms > e.max_timeout_ms {
            return Err(ConfigError::DefaultAboveMax);
        }
        if e.output_cap == 0 {
            return Err(ConfigError::Zero {
                key: "exec.output_cap",
            });
        }
        let passwd = std::fs::read_to_string(PASSWD).unwrap_or_default();
        self.exec
            .settle_run_as(paths.mode, &passwd, can_switch_users())?;
        self.limits.check_cgroup()?;
        self.check_docker()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The folders of an embedded suite, as `prepare` resolves relative paths against them.
    fn embedded_paths() -> Paths {
        Paths {
            mode: stakpak_daemon::Mode::Embedded,
            config_dir: "/c".into(),
            config_file: "/c/sandboxd.toml".into(),
            state_dir: "/s".into(),
            runtime_dir: "/r".into(),
        }
    }

    #[test]
    fn defaults_and_zero_values() {
        let c: SandboxdConfig = toml::from_str("").unwrap();
        assert_eq!(c.limits.pids, 256);
        assert_eq!(c.exec.warden_timeout_ms, 5_000);
        let paths = embedded_paths();
        let mut bad: SandboxdConfig = toml::from_str("[limits]\npids = 0\n").unwrap();
        assert!(bad.prepare(&paths).unwrap_err().contains("limits.pids"));
        assert!(toml::from_str::<SandboxdConfig>("[exec]\nbogus = 1\n").is_err());
        assert_eq!(c.files, FilesConfig::default());
        let mut bad: SandboxdConfig = toml::from_str("[files]\ngrep_max_matches = 0\n").unwrap();
        assert_eq!(
            bad.prepare(&paths).unwrap_err(),
            "files.grep_max_matches must be greater than 0"
        );
    }

    #[test]
    fn run_as_resolves_by_name_and_defaults_by_mode() {
        const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
            stakpak-run:x:989:988::/:/usr/sbin/nologin\n\
            ops:x:1000:1000::/home/ops:/bin/bash\n";
        let settle = |text: &str, mode: Mode, passwd: &str, can_switch: bool| {
            let mut c: SandboxdConfig = toml::from_str(text).unwrap();
            c.exec
                .settle_run_as(mode, passwd, can_switch)
                .map(|()| c.exec.run_as_ids)
                .map_err(|e| e.to_string())
        };
        let explicit = "[exec]\nrun_as = \"ops\"\n";
        type Case<'a> = (
            &'a str,
            Mode,
            &'a str,
            bool,
            Result<Option<(u32, u32)>, String>,
        );
        let cases: [Case<'_>; 8] = [
            ("", Mode::Installed, PASSWD_TEXT, true, Ok(Some((989, 988)))),
            ("", Mode::Installed, PASSWD_TEXT, false, Ok(None)),
            (
                "",
                Mode::Installed,
                "root:x:0:0::/:/bin/sh\n",
                true,
                Ok(None),
            ),
            ("", Mode::Embedded, PASSWD_TEXT, true, Ok(None)),
            (
                explicit,
                Mode::Embedded,
                PASSWD_TEXT,
                false,
                Ok(Some((1000, 1000))),
            ),
            (
                explicit,
                Mode::Installed,
                PASSWD_TEXT,
                true,
                Ok(Some((1000, 1000))),
            ),
            (
                "[exec]\nrun_as = \"\"\n",
                Mode::Installed,
                PASSWD_TEXT,
                true,
                Ok(None),
            ),
            (
                "[exec]\nrun_as = \"nobody-here\"\n",
                Mode::Installed,
                PASSWD_TEXT,
                true,
                Err("exec.run_as: there is no user `nobody-here` (in /etc/passwd)".into()),
            ),
        ];
        for (text, mode, passwd, can_switch, expected) in cases {
            assert_eq!(
                settle(text, mode, passwd, can_switch),
                expected,
                "{text:?} {mode:?} can_switch={can_switch}"
            );
        }
    }

    #[test]
    fn limits_cgroup_must_be_absolute() {
        let paths = embedded_paths();
        let c: SandboxdConfig = toml::from_str("").unwrap();
        assert_eq!(c.limits.cgroup, PathBuf::new());
        let mut bad: SandboxdConfig = toml::from_str("[limits]\ncgroup = \"sandboxd\"\n").unwrap();
        assert_eq!(
            bad.prepare(&paths).unwrap_err(),
            "limits.cgroup: sandboxd is not an absolute path"
        );
        let mut good: SandboxdConfig =
            toml::from_str("[limits]\ncgroup = \"/sys/fs/cgroup/stakpak\"\n").unwrap();
        assert_eq!(good.prepare(&paths), Ok(()));
    }

    #[test]
    fn docker_section_is_checked_key_by_key() {
        let paths = embedded_paths();
        let check = |text: &str| {
            let mut c: SandboxdConfig = toml::from_str(text).unwrap();
            c.prepare(&paths).map(|()| c)
        };
        let ok =
            check("[exec]\nbackend = \"docker\"\n[docker]\nimage = \"i\"\ncpus = 0.5\n").unwrap();
        let docker = ok.docker().unwrap();
        assert_eq!(ok.exec.backend, Backend::Docker);
        assert_eq!(
            (
                docker.socket.as_path(),
                docker.mode,
                docker.network,
                docker.pids
            ),
            (
                Path::new("/var/run/docker.sock"),
                DockerMode::Persistent,
                DockerNetworkMode::None,
                512
            )
        );
        assert_eq!(docker.nano_cpus(), Some(500_000_000));
        assert_eq!(check("").unwrap().exec.backend, Backend::Local);
        for (text, error) in [
            (
                "[exec]\nbackend = \"docker\"\n",
                "exec.backend is \"docker\" but there is no enabled [docker] section",
            ),
            (
                "[exec]\nbackend = \"docker\"\n[docker]\nenabled = false\nimage = \"i\"\n",
                "exec.backend is \"docker\" but there is no enabled [docker] section",
            ),
            (
                "[docker]\nmode = \"per-session\"\n",
                "docker.image must name an image already in the engine",
            ),
            (
                "[docker]\nimage = \"i\"\nsocket = \"docker.sock\"\n",
                "docker.socket: docker.sock is not an absolute path",
            ),
            (
                "[docker]\nimage = \"i\"\nmounts = [{ source = \"opt\", target = \"/opt\" }]\n",
                "docker.mounts[0].source: opt is not an absolute path",
            ),
            (
                "[docker]\nimage = \"i\"\nmounts = [{ source = \"/opt\", target = \"/a/../b\" }]\n",
                "docker.mounts[0].target: /a/../b may not contain `..`",
            ),
            (
                "[docker]\nimage = \"i\"\nmounts = [{ source = \"/opt\", target = \"/workspaces/x\" }]\n",
                "docker.mounts[0].target: /workspaces/x would cover or sit inside the workspace or /tmp",
            ),
            (
                "[docker]\nimage = \"i\"\nmounts = [{ source = \"/opt\", target = \"/\" }]\n",
                "docker.mounts[0].target: / would cover or sit inside the workspace or /tmp",
            ),
            (
                "[docker]\nimage = \"i\"\nname_prefix = \"-x\"\n",
                "docker.name_prefix: \"-x\" must be 1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit",
            ),
            (
                "[docker]\nimage = \"i\"\npids = 0\n",
                "docker.pids must be greater than 0",
            ),
            (
                "[docker]\nimage = \"i\"\ncpus = -1.0\n",
                "docker.cpus: -1 is not a positive number of CPUs",
            ),
        ] {
            assert_eq!(check(text).map(|_| ()), Err(error.to_owned()), "{text}");
        }
        let disabled = check("[docker]\nenabled = false\n").unwrap();
        assert!(disabled.docker().is_none());
        assert!(toml::from_str::<SandboxdConfig>("[docker]\nmode = \"shared\"\n").is_err());
        assert!(toml::from_str::<SandboxdConfig>("[docker]\nbogus = 1\n").is_err());
    }

    const MOUNTINFO: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
40 24 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 24 0:34 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct
";

    /// The writes `prepare_runs` makes in a v2 cgroup, on a tree of plain files standing in
    /// for cgroupfs (the kernel's answers, such as EBUSY, cannot be imitated this way).
    #[test]
    fn runs_get_the_pids_controller_at_each_level_on_v2() {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        std::fs::write(b.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(b.join("cgroup.subtree_control"), "cpu\n").unwrap();
        std::fs::write(b.join("cgroup.procs"), "").unwrap();
        assert_eq!(
            prepare_runs(b, None).map_err(|e| e.to_string()),
            Ok(b.join("runs"))
        );
        assert_eq!(
            std::fs::read_to_string(b.join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert_eq!(
            std::fs::read_to_string(b.join("runs/cgroup.subtree_control")).unwrap(),
            "+pids"
        );

        std::fs::write(b.join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert_eq!(
            prepare_runs(b, None).map_err(|e| e.to_string()),
            Err(format!(
                "the pids controller is not available in {} (cgroup.controllers)",
                b.display()
            ))
        );
        let plain = tempfile::tempdir().unwrap();
        assert_eq!(
            prepare_runs(plain.path(), None).map_err(|e| e.to_string()),
            Err(format!(
                "{} is not a cgroup directory",
                plain.path().display()
            ))
        );
    }

    #[test]
    fn own_cgroup_is_found_in_each_hierarchy() {
        let proc_cgroup = "\
4:cpu,cpuacct:/elsewhere
3:pids:/system.slice/stakpak-sandboxd.service
0::/system.slice/stakpak-sandboxd.service
";
        assert_eq!(
            own_cgroup_dir(proc_cgroup, MOUNTINFO, Hierarchy::V2),
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/stakpak-sandboxd.service"
            ))
        );
        assert_eq!(
            own_cgroup_dir(proc_cgroup, MOUNTINFO, Hierarchy::V1Pids),
            Some(PathBuf::from(
                "/sys/fs/cgroup/pids/system.slice/stakpak-sandboxd.service"
            ))
        );
        // No v1 pids line, and a v2 path outside the mounted part of the hierarchy.
        let mountinfo = "28 24 0:26 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_cgroup_dir("0::/system.slice/x\n", mountinfo, Hierarchy::V2),
            None
        );
        assert_eq!(
            own_cgroup_dir("0::/system.slice/x\n", mountinfo, Hierarchy::V1Pids),
            None
        );
        assert_eq!(
            own_cgroup_dir("0::/user.slice/a.scope\n", mountinfo, Hierarchy::V2),
            Some(PathBuf::from("/sys/fs/cgroup/a.scope"))
        );
    }
}
