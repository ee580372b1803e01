//! The local sandbox runner used by sandboxd: runs one shell command (`/bin/sh -c CMD`)
//! confined by Landlock, a seccomp filter, namespaces (the command is pid 1 of its own pid
//! namespace), `no_new_privs`, rlimits and an optional pids cgroup, and returns its exit
//! status with bounded stdout and stderr.
//!
//! # What confines the child, and where it is set up
//!
//! The parent prepares everything that needs allocation or path lookups ([`Sandbox::run`]
//! builds a [`child::ChildPlan`]); the child, between `fork` and `exec`, only makes raw
//! syscalls (`child.rs`), in this order:
//!
//! 1. `setsid`: own session and process group, so the parent can SIGKILL the group.
//! 2. joins the run's pids cgroup (when configured): `pids.max` bounds forks whatever the
//!    uid, and the cgroup lists every descendant even if it leaves the process group.
//! 3. drops to the run-as user (when configured): the user the files and RLIMIT_NPROC see.
//! 4. `unshare` user (mapping its own uid and gid to themselves), mount, IPC and, for
//!    [`Network::None`] and [`Network::Proxied`], network namespaces (for `Proxied` the
//!    child then brings loopback up, listens on `127.0.0.1:<port>` and hands the listener
//!    to the parent, which relays its connections to the warden's egress proxy:
//!    `relay.rs`); makes every mount private and binds the
//!    private tmp over `/tmp` (unless [`SandboxConfig::bind_tmp`] is off: then `TMPDIR`
//!    names the private tmp instead).
//! 5. `unshare` a pid namespace and fork once more (`child.rs`): the grandchild is pid 1 of
//!    the namespace and goes on below; the child only waits for it and ends with its exit
//!    status or signal, so that is what the parent sees. When pid 1 ends, the kernel kills
//!    everything left in its namespace, so no background process outlives the command,
//!    whatever session, process group or cgroup it made for itself; and pid 1 dies with the
//!    waiter (`PR_SET_PDEATHSIG`). Pid 1 mounts a fresh `/proc` of the namespace when it
//!    can (mounting works when the caller is not Landlock-restricted), so the command sees
//!    only its own processes; otherwise the host's processes show in `/proc` but their pids
//!    mean nothing inside, and Landlock keeps their details and signals out of reach.
//! 6. rlimits: address space, process count, CPU seconds, open files.
//! 7. `PR_SET_NO_NEW_PRIVS`, then `landlock_restrict_self`: read and execute on `/`, every
//!    right below the workspace and the private tmp, write on `/dev/null`; signals and
//!    abstract unix sockets scoped to the sandbox (ABI 6+). Landlock also forbids `ptrace`
//!    of processes outside the sandbox's domain and any mount change.
//! 8. the seccomp filter (`seccomp.rs`, which lists it): a syscall through a foreign ABI
//!    (i386, x32) kills the process; `ptrace` (even of the sandbox's own children),
//!    `process_vm_*`, io_uring, keyrings, `bpf`, `perf_event_open`, `userfaultfd`, module
//!    and kexec loading, mounting, `reboot`, swap, `acct` and setting the clock fail with
//!    `EPERM`; everything else is allowed.
//! 9. every descriptor above 2 is marked close-on-exec (`close_range`).
//!
//! The environment starts empty; stdin is `/dev/null`; stdout and stderr are pipes. A
//! timeout or a cancel SIGKILLs the process group (the waiter and pid 1 among it) and
//! every process of the run's cgroup; the cgroup is emptied before the run returns, while
//! without one the rest of the pid namespace is killed by the kernel a few milliseconds
//! after the run returned.
//!
//! `RLIMIT_NPROC` does not bind root (nor, counted per uid, distinguish two runs of the same
//! user); the pids cgroup does: sandboxd gives one when it has a cgroup to delegate from.
//!
//! Not done here: memory cgroups (memory is bounded by `RLIMIT_AS`). Reads outside the
//! workspace are allowed by Landlock; secrets are kept from the child by file permissions
//! (the run-as user) and, in the daemon, by hiding state directories. The seccomp filter is
//! a deny list, not an allow list. The command's shell is pid 1 of its namespace, so signals
//! sent to it from inside the namespace are ignored unless it handles them.

mod child;
pub mod docker;
mod landlock;
mod readable;
mod relay;
mod seccomp;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Pid, Signal};

pub use docker::{
    ContainerMode, DockerBackend, DockerConfig, DockerError, DockerMount, DockerNetwork,
};
pub use landlock::FULL_FS_ABI;
pub use relay::ProxyRelay;

/// Errors of [`Sandbox::new`] and [`Sandbox::run`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "landlock is not fully enforced (kernel abi {abi}, need {FULL_FS_ABI}) and the config requires it"
    )]
    LandlockNotEnforced { abi: i32 },
    #[error("cannot create the landlock ruleset: {0}")]
    Landlock(#[source] io::Error),
    #[error("cannot add a landlock rule for {path}: {source}")]
    LandlockPath { path: PathBuf, source: io::Error },
    #[error("{what} {path} is not an absolute path to a directory")]
    NotADirectory { what: &'static str, path: PathBuf },
    #[error("workspace {0} is below /tmp, which the child sees as its private tmp")]
    WorkspaceUnderTmp(PathBuf),
    #[error("cannot hand {path} to the run-as user: {source}")]
    Chown { path: PathBuf, source: io::Error },
    #[error("working directory {0} is not a relative path inside the workspace")]
    BadCwd(PathBuf),
    #[error("environment entry {0:?} contains a NUL byte or '=' in its name")]
    BadEnv(String),
    #[error("cannot set up the pids cgroup {path}: {source}")]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("cannot start the sandboxed command: {0}")]
    Spawn(#[source] io::Error),
    #[error("cannot collect the sandboxed command's output or status: {0}")]
    Wait(#[source] io::Error),
    #[error("network proxied needs the egress proxy's socket (SandboxConfig::proxy)")]
    NoProxy,
    #[error("cannot set up the relay to the egress proxy: {0}")]
    Relay(#[source] io::Error),
}

/// The child's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// An own, empty network namespace: only a loopback that is down.
    None,
    /// The host's network.
    Host,
    /// An own network namespace whose only reachable service is the warden's egress proxy
    /// on `127.0.0.1:<port>` ([`SandboxConfig::proxy`]).
    Proxied,
}

/// Resource limits for one run; `None` leaves the inherited limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `RLIMIT_AS`.
    pub memory_bytes: Option<u64>,
    /// `RLIMIT_NPROC` (per real uid, so only effective with a non-root `run_as`) and the
    /// pids cgroup's `pids.max` when [`SandboxConfig::pids_cgroup`] is set.
    pub pids: Option<u64>,
    /// `RLIMIT_CPU`, in seconds.
    pub cpu_secs: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub nofile: Option<u64>,
}

/// How a [`Sandbox`] runs its commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The writable working directory; absolute.
    pub workspace: PathBuf,
    /// The private tmp; absolute. Seen as `/tmp` by the child when `bind_tmp` is set.
    pub tmp: PathBuf,
    /// Bind the private tmp over `/tmp` in the child's mount namespace. Mounting is refused
    /// inside a Landlock domain, so a caller that is itself Landlock-restricted (sandboxd)
    /// turns this off: the child then gets `TMPDIR` pointing at the private tmp, and `/tmp`
    /// stays read-only through the child's own Landlock ruleset.
    pub bind_tmp: bool,
    pub network: Network,
    pub limits: Limits,
    /// `(uid, gid)` the child runs as; the workspace and tmp are handed to this user.
    pub run_as: Option<(u32, u32)>,
    /// Refuse to run unless the kernel enforces every filesystem right ([`FULL_FS_ABI`]).
    pub require_landlock: bool,
    /// A directory in a pids cgroup hierarchy (v1 or v2) below which one cgroup per run is made.
    pub pids_cgroup: Option<PathBuf>,
    /// Bytes kept of each of stdout and stderr.
    pub output_cap: usize,
    /// What the child may read and execute; empty: everything (`/`). A caller that is itself
    /// Landlock-restricted passes what it may read (the child cannot read more anyway, and
    /// the hidden paths are carved out by listing directories the caller can list).
    pub read_roots: Vec<PathBuf>,
    /// Paths below `read_roots` where the child may read nothing (the suite's configuration,
    /// daemon states, backups): see `readable.rs`. Names inside stay listable, contents do
    /// not; the workspace and tmp stay usable even below one.
    pub hidden: Vec<PathBuf>,
    /// Where [`Network::Proxied`] connections go; required with it, ignored otherwise.
    pub proxy: Option<ProxyRelay>,
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Given to `/bin/sh -c`.
    pub shell: String,
    /// The child's whole environment.
    pub env: BTreeMap<String, String>,
    /// Relative to the workspace; `None` is the workspace itself.
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Exited(i32),
    Signaled(i32),
    /// Killed, with its whole process group and cgroup, when the timeout passed.
    TimedOut,
    /// Killed, with its whole process group and cgroup, because the cancel descriptor
    /// became readable.
    Cancelled,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where [`Sandbox::run_streaming`] hands every chunk of output as it arrives.
pub type Sink<'a> = &'a mut dyn FnMut(Stream, &[u8]);

/// The result of [`Sandbox::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: ExitKind,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Whether either stream had more than the output cap.
    pub truncated: bool,
    /// Bytes past the cap, stdout and stderr together.
    pub dropped_bytes: u64,
    pub duration: Duration,
}

/// A configured local sandbox; cheap to keep, one [`Sandbox::run`] per command.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    abi: i32,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How long the output is still drained after the command ended and its group was killed.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

impl Sandbox {
    /// Checks the configuration and the kernel; hands the workspace and tmp to `run_as`.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        for (what, path) in [("workspace", &config.workspace), ("tmp", &config.tmp)] {
            if !path.is_absolute() || !path.is_dir() {
                return Err(SandboxError::NotADirectory {
                    what,
                    path: path.clone(),
                });
            }
        }
        // The private tmp is mounted over /tmp in the child, which would hide a workspace there.
        if config.bind_tmp && config.workspace.starts_with("/tmp") {
            return Err(SandboxError::WorkspaceUnderTmp(config.workspace.clone()));
        }
        let abi = landlock::abi_version();
        if config.require_landlock && abi < FULL_FS_ABI {
            return Err(SandboxError::LandlockNotEnforced { abi });
        }
        if let Some((uid, gid)) = config.run_as {
            for path in [&config.workspace, &config.tmp] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                    SandboxError::Chown {
                        path: path.clone(),
                        source,
                    }
                })?;
            }
        }
        Ok(Self { config, abi })
    }

    /// The kernel's Landlock ABI (0 without Landlock).
    pub fn landlock_abi(&self) -> i32 {
        self.abi
    }

    /// Runs `cmd` and waits for it, at most `cmd.timeout`.
    pub fn run(&self, cmd: &Command) -> Result<Outcome, SandboxError> {
        self.run_streaming(cmd, None, &mut |_, _| {})
    }

    /// Runs `cmd` like [`Sandbox::run`], handing every chunk of output to `sink` as it
    /// arrives (the [`Outcome`] still keeps the first `output_cap` bytes of each stream).
    /// When `cancel` becomes readable (an eventfd or a pipe), the command is killed with
    /// every descendant and the outcome is [`ExitKind::Cancelled`].
    pub fn run_streaming(
        &self,
        cmd: &Command,
        cancel: Option<std::os::fd::BorrowedFd<'_>>,
        sink: Sink<'_>,
    ) -> Result<Outcome, SandboxError> {
        let cfg = &self.config;
        let cwd = match &cmd.cwd {
            None => cfg.workspace.clone(),
            Some(rel) => {
                if rel
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(SandboxError::BadCwd(rel.clone()));
                }
                cfg.workspace.join(rel)
            }
        };
        for (k, v) in &cmd.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(SandboxError::BadEnv(k.clone()));
            }
        }

        let ruleset = if self.abi > 0 {
            let roots = if cfg.read_roots.is_empty() {
                vec![PathBuf::from("/")]
            } else {
                cfg.read_roots.clone()
            };
            let mut readable = readable::expand(&roots, &cfg.hidden);
            if cfg.network == Network::Proxied
                && let Some(bundle) = cfg.proxy.as_ref().and_then(|p| p.ca_bundle.clone())
            {
                readable.push(bundle);
            }
            Some(landlock::build(
                self.abi,
                &[&cfg.workspace, &cfg.tmp],
                &readable,
            )?)
        } else {
            None
        };
        let cgroup = cfg
            .pids_cgroup
            .as_deref()
            .map(|root| RunCgroup::create(root, cfg.limits.pids))
            .transpose()?;

        let (uid, gid) = cfg.run_as.unwrap_or_else(|| {
            (
                rustix::process::getuid().as_raw(),
                rustix::process::getgid().as_raw(),
            )
        });
        let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWIPC;
        if cfg.network != Network::Host {
            flags |= libc::CLONE_NEWNET;
        }
        // Network proxied: the channel the child sends its loopback listener over.
        let relay_channel = match (cfg.network, &cfg.proxy) {
            (Network::Proxied, Some(p)) => {
                let (parent, child) = relay::channel().map_err(SandboxError::Relay)?;
                Some((parent, child, p))
            }
            (Network::Proxied, None) => return Err(SandboxError::NoProxy),
            _ => None,
        };
        let mut rlimits = Vec::new();
        let l = cfg.limits;
        for (res, val) in [
            (libc::RLIMIT_AS, l.memory_bytes),
            (libc::RLIMIT_NPROC, l.pids),
            (libc::RLIMIT_CPU, l.cpu_secs),
            (libc::RLIMIT_NOFILE, l.nofile),
        ] {
            if let Some(v) = val {
                rlimits.push((res, v));
            }
        }
        let plan = child::ChildPlan {
            run_as: cfg.run_as,
            unshare_flags: flags,
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            tmp: CString::new(cfg.tmp.as_os_str().as_bytes()).map_err(|_| {
                SandboxError::NotADirectory {
                    what: "tmp",
                    path: cfg.tmp.clone(),
                }
            })?,
            bind_tmp: cfg.bind_tmp,
            rlimits,
            cgroup_procs: cgroup.as_ref().map(|c| c.procs.as_raw_fd()),
            ruleset: ruleset.as_ref().map(|fd| fd.as_raw_fd()),
            pid_namespace: true,
            seccomp: seccomp::Filter::build(cfg.network != Network::Host),
            proxy_listener: relay_channel
                .as_ref()
                .map(|(_, child, p)| (child.as_raw_fd(), p.port)),
        };

        let mut command = std::process::Command::new("/bin/sh");
        command.arg("-c").arg(&cmd.shell).env_clear().envs(&cmd.env);
        if !cfg.bind_tmp {
            command.env("TMPDIR", &cfg.tmp);
        }
        command
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: `ChildPlan::apply` makes only async-signal-safe raw syscalls on data
        // prepared before the fork and does not allocate.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || plan.apply());
        }

        let start = Instant::now();
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(cg) = cgroup {
                    cg.remove();
                }
                return Err(SandboxError::Spawn(e));
            }
        };
        // The ruleset and cgroup.procs descriptors were for the child only.
        drop(ruleset);
        let relay = match relay_channel {
            Some((parent, child_end, p)) => {
                drop(child_end);
                match relay::receive(&parent)
                    .and_then(|listener| relay::Relay::start(listener, &p.socket, &p.session))
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        kill_everything(&child, cgroup.as_ref());
                        let _ = child.wait();
                        if let Some(cg) = cgroup {
                            cg.remove();
                        }
                        return Err(SandboxError::Relay(e));
                    }
                }
            }
            None => None,
        };
        let result = collect(&mut child, cmd.timeout, cfg.output_cap, start, cancel, sink);
        // Whatever happened, nothing of this run survives it.
        kill_everything(&child, cgroup.as_ref());
        let group = Pid::from_child(&child);
        let _ = child.wait();
        match cgroup {
            Some(cg) => cg.remove(),
            // Without a cgroup: the pid namespace's init (in the process group) exits only
            // after the kernel has killed everything else in the namespace, so once the
            // group is empty, nothing of the run is left.
            None => wait_group_gone(group),
        }
        if let Some(r) = relay {
            r.stop();
        }
        let (status, out) = result?;
        Ok(Outcome {
            status,
            truncated: out.dropped > 0,
            dropped_bytes: out.dropped,
            stdout: out.stdout,
            stderr: out.stderr,
            duration: start.elapsed(),
        })
    }
}

#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    dropped: u64,
}

fn read_some(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
    cap: usize,
    dropped: &mut u64,
    stream: Stream,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    match r.read(&mut chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            sink(stream, &chunk[..n]);
            let keep = n.min(cap.saturating_sub(buf.len()));
            buf.extend_from_slice(&chunk[..keep]);
            *dropped += (n - keep) as u64;
            Ok(true)
        }
        Err(e)
            if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Reads both pipes and waits for the child in one `poll` loop (the child's pidfd becomes
/// readable when it exits), until it exits or the deadline passes.
fn collect(
    child: &mut Child,
    timeout: Duration,
    cap: usize,
    start: Instant,
    cancel: Option<std::os::fd::BorrowedFd<'_>>,
    sink: Sink<'_>,
) -> Result<(ExitKind, Collected), SandboxError> {
    let pid = Pid::from_child(child);
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| SandboxError::Wait(e.into()))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out = Collected::default();
    let deadline = start + timeout;
    let mut status: Option<ExitKind> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = drain_until.unwrap_or(deadline);
        if stdout.is_none() && stderr.is_none() && status.is_some() {
            break;
        }
        if now >= until {
            break;
        }
        let remaining = until - now;
        let ts = rustix::time::Timespec {
            tv_sec: i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(remaining.subsec_nanos()),
        };
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        if let Some(s) = &stdout {
            fds.push(PollFd::new(s, PollFlags::IN));
            which.push(0);
        }
        if let Some(s) = &stderr {
            fds.push(PollFd::new(s, PollFlags::IN));
            which.push(1);
        }
        if status.is_none() {
            fds.push(PollFd::from_borrowed_fd(pidfd.as_fd(), PollFlags::IN));
            which.push(2);
            if let Some(fd) = cancel {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
                which.push(3);
            }
        }
        match poll(&mut fds, Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SandboxError::Wait(e.into())),
        }
        let ready: Vec<(usize, bool)> = which
            .iter()
            .zip(fds.iter())
            .map(|(w, f)| (*w, !f.revents().is_empty()))
            .collect();
        drop(fds);
        for (w, is_ready) in ready {
            if !is_ready {
                continue;
            }
            match w {
                0 => {
                    if let Some(s) = stdout.as_mut()
                        && !read_some(
                            s,
                            &mut out.stdout,
                            cap,
                            &mut out.dropped,
                            Stream::Stdout,
                            sink,
                        )
                        .map_err(SandboxError::Wait)?
                    {
                        stdout = None;
                    }
                }
                1 => {
                    if let Some(s) = stderr.as_mut()
                        && !read_some(
                            s,
                            &mut out.stderr,
                            cap,
                            &mut out.dropped,
                            Stream::Stderr,
                            sink,
                        )
                        .map_err(SandboxError::Wait)?
                    {
                        stderr = None;
                    }
                }
                3 => {
                    // Cancelled: the caller kills everything after `collect` returns.
                    status = Some(ExitKind::Cancelled);
                    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                }
                _ => {
                    if let Some(st) = child.try_wait().map_err(SandboxError::Wait)? {
                        status = Some(match (st.code(), st.signal()) {
                            (Some(code), _) => ExitKind::Exited(code),
                            (None, Some(sig)) => ExitKind::Signaled(sig),
                            (None, None) => ExitKind::Signaled(0),
                        });
                        // Background processes may still hold the pipes: kill them and
                        // keep reading only briefly what is already buffered.
                        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                        drain_until = Some(Instant::now() + DRAIN_GRACE);
                    }
                }
            }
        }
    }
    Ok((status.unwrap_or(ExitKind::TimedOut), out))
}

/// Waits (at most a second) until no process of the group `pgid` exists, killing again
/// what appears.
fn wait_group_gone(pgid: Pid) {
    for _ in 0..1000 {
        match rustix::process::test_kill_process_group(pgid) {
            Err(rustix::io::Errno::SRCH) => return,
            _ => {
                let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// SIGKILL to the child's process group and, when there is one, to every process left in
/// its cgroup (which also holds descendants that left the group with `setsid`).
fn kill_everything(child: &Child, cgroup: Option<&RunCgroup>) {
    let pid = Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    if let Some(cg) = cgroup {
        cg.kill_all();
    }
}

/// One pids cgroup per run, removed afterwards.
struct RunCgroup {
    dir: PathBuf,
    procs: fs::File,
}

impl RunCgroup {
    fn create(root: &Path, pids: Option<u64>) -> Result<Self, SandboxError> {
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("stakpak-sandbox-{}-{n}", std::process::id()));
        let err = |source| SandboxError::Cgroup {
            path: dir.clone(),
            source,
        };
        fs::create_dir(&dir).map_err(err)?;
        let cg = Self {
            procs: fs::File::options()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map_err(err)?,
            dir: dir.clone(),
        };
        if let Some(max) = pids {
            fs::write(dir.join("pids.max"), max.to_string()).map_err(err)?;
        }
        Ok(cg)
    }

    /// Kills until the cgroup is empty; `pids.max` keeps a fork bomb from outrunning this.
    fn kill_all(&self) {
        for _ in 0..1000 {
            let Ok(list) = fs::read_to_string(self.dir.join("cgroup.procs")) else {
                return;
            };
            let pids: Vec<i32> = list.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                if let Some(pid) = Pid::from_raw(p) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn remove(self) {
        // Reaping of the killed processes is asynchronous; retry rmdir briefly.
        for _ in 0..200 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl std::fmt::Debug for RunCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCgroup").field("dir", &self.dir).finish()
    }
}
