//! The embedded suite's supervisor: a private `dbus-daemon` and the five daemons as children,
//! each with a NOTIFY_SOCKET of its own, watched and restarted with back-off.
//!
//! It runs on a current-thread runtime on purpose: children are spawned from the main thread,
//! which lives as long as the supervisor, so their parent-death signal (which follows the
//! spawning *thread*) fires only when the supervisor itself is gone.

use std::{
    fs::File,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    process::ExitStatus,
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use stakpak_proto::Daemon;
use tokio::{
    signal::unix::{Signal as SignalStream, SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};
use tracing::{error, info, warn};

use super::{
    busd,
    layout::{DaemonInfo, Layout, SuiteInfo},
    notify::{self, NotifyMessage},
    spawn,
};

/// First restart delay after a crash; doubled on each crash in a row up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A daemon that ran this long before crashing starts its back-off from the beginning.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long daemons get to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct Options {
    pub layout: Layout,
    /// How long every daemon has to send `READY=1`.
    pub ready_timeout: Duration,
    /// `WATCHDOG_USEC` given to the daemons; a daemon silent for longer is restarted.
    pub watchdog: Duration,
}

/// Sent to `stakpak up` when the suite is ready (or could not start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReport {
    pub ready_ms: u64,
    pub bus_address: String,
    pub supervisor_pid: u32,
    pub daemons: Vec<DaemonInfo>,
}

/// Why the suite could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("a stakpak suite is already running in {}{}", root.display(), pid.map(|p| format!(" (supervisor pid {p})")).unwrap_or_default())]
    AlreadyRunning { root: PathBuf, pid: Option<u32> },
    #[error("cannot prepare {}: {source}", path.display())]
    Prepare { path: PathBuf, source: io::Error },
    #[error("refusing to use {} for the suite: {why}", path.display())]
    Unsafe { path: PathBuf, why: String },
    #[error("cannot start the private bus: {0}")]
    Bus(io::Error),
    #[error("cannot start {daemon}: {source}")]
    Spawn { daemon: Daemon, source: io::Error },
    #[error("{daemon} failed to start: {how}{}\n(full log: {})", indent(tail), log.display())]
    DaemonFailed {
        daemon: Daemon,
        how: String,
        tail: String,
        log: PathBuf,
    },
    #[error("{} did not report ready within {} ms (logs in {})", names(daemons), timeout.as_millis(), logs.display())]
    NotReady {
        daemons: Vec<Daemon>,
        timeout: Duration,
        logs: PathBuf,
    },
    #[error("interrupted by {0} while starting")]
    Interrupted(&'static str),
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
}

fn indent(tail: &str) -> String {
    tail.lines().map(|l| format!("\n  {l}")).collect()
}

fn names(daemons: &[Daemon]) -> String {
    daemons
        .iter()
        .map(|d| d.binary())
        .collect::<Vec<_>>()
        .join(", ")
}

struct Slot {
    daemon: Daemon,
    program: PathBuf,
    pid: Option<u32>,
    generation: u64,
    ready: bool,
    restarts: u32,
    failures: u32,
    started: Instant,
    last_alive: Instant,
    restart_at: Option<Instant>,
    log_offset: u64,
    /// SIGABRT was sent for a missed watchdog and no sign of life came since.
    aborted: bool,
}

struct Exited {
    daemon: Option<Daemon>,
    generation: u64,
    status: io::Result<ExitStatus>,
}

struct Signals {
    term: SignalStream,
    int: SignalStream,
    hup: SignalStream,
}

/// A running embedded suite.
pub struct Supervisor {
    opts: Options,
    _lock: File,
    bus: Option<(u32, u64)>,
    bus_generation: u64,
    slots: Vec<Slot>,
    exit_tx: mpsc::UnboundedSender<Exited>,
    exit_rx: mpsc::UnboundedReceiver<Exited>,
    notify_rx: mpsc::UnboundedReceiver<(Daemon, NotifyMessage)>,
    listeners: Vec<JoinHandle<()>>,
    signals: Signals,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("root", &self.opts.layout.root)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Takes the suite's lock, starts the bus and every daemon and waits until all are ready.
    /// On failure everything started so far is stopped again before the error returns.
    pub async fn start(opts: Options) -> Result<(Supervisor, ReadyReport), SuiteError> {
        let begun = Instant::now();
        let signals = Signals {
            term: signal(SignalKind::terminate()).map_err(SuiteError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(SuiteError::Signals)?,
            hup: signal(SignalKind::hangup()).map_err(SuiteError::Signals)?,
        };
        let layout = &opts.layout;
        prepare_dirs(layout)?;
        let lock = take_lock(layout)?;

        let programs = Daemon::ALL
            .into_iter()
            .map(|d| {
                spawn::find_binary(d.binary())
                    .map(|p| (d, p))
                    .map_err(|source| SuiteError::Spawn { daemon: d, source })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let (exit_tx, exit_rx) = mpsc::unbounded_channel();
        let (notify_tx, notify_rx) = mpsc::unbounded_channel();
        let mut listeners = Vec::new();
        for (daemon, _) in &programs {
            let path = layout.notify_socket(*daemon);
            listeners.push(
                notify::listen(*daemon, &path, notify_tx.clone())
                    .map_err(|source| SuiteError::Prepare { path, source })?,
            );
        }
        let now = Instant::now();
        let slots = programs
            .into_iter()
            .map(|(daemon, program)| Slot {
                daemon,
                program,
                pid: None,
                generation: 0,
                ready: false,
                restarts: 0,
                failures: 0,
                started: now,
                last_alive: now,
                restart_at: None,
                log_offset: 0,
                aborted: false,
            })
            .collect();
        let mut sup = Supervisor {
            opts,
            _lock: lock,
            bus: None,
            bus_generation: 0,
            slots,
            exit_tx,
            exit_rx,
            notify_rx,
            listeners,
            signals,
        };
        match sup.bring_up(begun).await {
            Ok(report) => Ok((sup, report)),
            Err(e) => {
                sup.shutdown().await;
                Err(e)
            }
        }
    }

    async fn bring_up(&mut self, begun: Instant) -> Result<ReadyReport, SuiteError> {
        self.start_bus().await.map_err(SuiteError::Bus)?;
        for i in 0..self.slots.len() {
            let daemon = self.slots[i].daemon;
            self.spawn(i)
                .map_err(|source| SuiteError::Spawn { daemon, source })?;
        }
        let deadline = tokio::time::Instant::now() + self.opts.ready_timeout;
        while self.slots.iter().any(|s| !s.ready) {
            tokio::select! {
                _ = self.signals.term.recv() => return Err(SuiteError::Interrupted("SIGTERM")),
                _ = self.signals.int.recv() => return Err(SuiteError::Interrupted("SIGINT")),
                Some((daemon, msg)) = self.notify_rx.recv() => self.on_notify(daemon, msg),
                Some(exit) = self.exit_rx.recv() => {
                    let Some(i) = self.slot_of(&exit) else {
                        if exit.daemon.is_none() && exit.generation == self.bus_generation {
                            self.bus = None;
                            return Err(SuiteError::Bus(io::Error::other("dbus-daemon exited during start-up")));
                        }
                        continue;
                    };
                    let slot = &mut self.slots[i];
                    slot.pid = None;
                    let log = self.opts.layout.log_file(slot.daemon.short_name());
                    return Err(SuiteError::DaemonFailed {
                        daemon: slot.daemon,
                        how: exit.status.map(spawn::describe_exit).unwrap_or_else(|e| format!("could not be waited for: {e}")),
                        tail: spawn::log_tail(&log, slot.log_offset, 12),
                        log,
                    });
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(SuiteError::NotReady {
                        daemons: self.slots.iter().filter(|s| !s.ready).map(|s| s.daemon).collect(),
                        timeout: self.opts.ready_timeout,
                        logs: self.opts.layout.logs_dir(),
                    });
                }
            }
        }
        let report = ReadyReport {
            ready_ms: begun.elapsed().as_millis() as u64,
            bus_address: self.opts.layout.bus_address(),
            supervisor_pid: std::process::id(),
            daemons: self.daemon_infos(),
        };
        self.write_suite_file();
        info!(ready_ms = report.ready_ms, bus = %report.bus_address, "suite ready");
        Ok(report)
    }

    /// Supervises until SIGTERM or SIGINT, then stops everything and cleans up.
    pub async fn run_until_stopped(mut self) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                _ = self.signals.term.recv() => { info!("SIGTERM: stopping the suite"); break; }
                _ = self.signals.int.recv() => { info!("SIGINT: stopping the suite"); break; }
                _ = self.signals.hup.recv() => self.signal_all(Signal::HUP, "reload"),
                Some((daemon, msg)) = self.notify_rx.recv() => self.on_notify(daemon, msg),
                Some(exit) = self.exit_rx.recv() => self.on_exit(exit).await,
                _ = sleep_until(deadline) => self.on_deadline(),
            }
        }
        self.shutdown().await;
    }

    async fn start_bus(&mut self) -> io::Result<()> {
        let bus = busd::start(&self.opts.layout).await?;
        self.bus_generation += 1;
        let generation = self.bus_generation;
        let mut child = bus.child;
        let pid = child.id().unwrap_or_default();
        self.bus = Some((pid, generation));
        let tx = self.exit_tx.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Exited {
                daemon: None,
                generation,
                status,
            });
        });
        info!(pid, address = %bus.address, "private bus started");
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let layout = &self.opts.layout;
        let slot = &mut self.slots[i];
        let daemon = slot.daemon;
        let log_path = layout.log_file(daemon.short_name());
        let log = spawn::open_log(&log_path)?;
        slot.log_offset = log.metadata()?.len();
        let mut cmd = spawn::command(&slot.program, &log)?;
        cmd.arg("--bus-address")
            .arg(layout.bus_address())
            .arg("--config-dir")
            .arg(&layout.config_dir)
            .arg("--state-dir")
            .arg(layout.state_dir(daemon))
            .arg("--runtime-dir")
            .arg(layout.runtime_dir(daemon))
            .env("NOTIFY_SOCKET", layout.notify_socket(daemon))
            .env("WATCHDOG_USEC", self.opts.watchdog.as_micros().to_string());
        if daemon == Daemon::Agent {
            // LLM keys from the environment of `stakpak up` reach the agent alone.
            for (key, value) in std::env::vars_os() {
                if key.to_str().is_some_and(|k| k.ends_with("_API_KEY")) {
                    cmd.env(key, value);
                }
            }
        }
        let mut child = cmd.spawn()?;
        slot.generation += 1;
        slot.pid = child.id();
        slot.ready = false;
        slot.started = Instant::now();
        slot.last_alive = slot.started;
        slot.restart_at = None;
        slot.aborted = false;
        let generation = slot.generation;
        let tx = self.exit_tx.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Exited {
                daemon: Some(daemon),
                generation,
                status,
            });
        });
        Ok(())
    }

    fn slot_of(&self, exit: &Exited) -> Option<usize> {
        let daemon = exit.daemon?;
        self.slots
            .iter()
            .position(|s| s.daemon == daemon && s.generation == exit.generation)
    }

    fn on_notify(&mut self, daemon: Daemon, msg: NotifyMessage) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.daemon == daemon) else {
            return;
        };
        if slot.pid.is_none() {
            return;
        }
        if msg.ready || msg.watchdog || msg.reloading {
            slot.last_alive = Instant::now();
            slot.aborted = false;
        }
        if msg.stopping {
            slot.ready = false;
        }
        if msg.ready && !slot.ready {
            slot.ready = true;
            if slot.restarts > 0 {
                info!(daemon = %daemon, pid = slot.pid, restarts = slot.restarts, "daemon ready again after restart");
                self.write_suite_file();
            }
        }
    }

    async fn on_exit(&mut self, exit: Exited) {
        let how = match &exit.status {
            Ok(s) => spawn::describe_exit(*s),
            Err(e) => format!("could not be waited for: {e}"),
        };
        if exit.daemon.is_none() {
            if exit.generation != self.bus_generation {
                return;
            }
            self.bus = None;
            error!(
                how,
                "the private bus exited; restarting it (daemons will reconnect)"
            );
            if let Err(e) = self.start_bus().await {
                error!(error = %e, "cannot restart the private bus; stopping the suite");
                let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::TERM);
            }
            return;
        }
        let Some(i) = self.slot_of(&exit) else { return };
        let slot = &mut self.slots[i];
        let ran = slot.started.elapsed();
        slot.pid = None;
        slot.ready = false;
        slot.failures = if ran >= STABLE_AFTER {
            1
        } else {
            slot.failures + 1
        };
        let delay = backoff(slot.failures);
        slot.restart_at = Some(Instant::now() + delay);
        warn!(
            daemon = %slot.daemon,
            how,
            ran_ms = ran.as_millis() as u64,
            restart_in_ms = delay.as_millis() as u64,
            restarts = slot.restarts,
            "daemon exited; restarting it"
        );
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if slot.restart_at.is_some_and(|t| t <= now) {
                slot.restarts += 1;
                let daemon = slot.daemon;
                match self.spawn(i) {
                    Ok(()) => {
                        info!(daemon = %daemon, pid = self.slots[i].pid, restarts = self.slots[i].restarts, "daemon restarted")
                    }
                    Err(e) => {
                        let slot = &mut self.slots[i];
                        slot.failures += 1;
                        let delay = backoff(slot.failures);
                        slot.restart_at = Some(now + delay);
                        error!(daemon = %daemon, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot restart daemon");
                    }
                }
                continue;
            }
            let Some(pid) = slot.pid else { continue };
            if slot.ready && now.duration_since(slot.last_alive) > self.opts.watchdog {
                if slot.aborted {
                    // A stopped or wedged process does not act on SIGABRT; systemd follows
                    // with SIGKILL after TimeoutAbortSec=, and so do we after one more period.
                    warn!(daemon = %slot.daemon, pid, "still there after SIGABRT; killing it");
                    kill(pid, Signal::KILL);
                } else {
                    // As systemd does: SIGABRT, so the daemon may leave a core for the post-mortem.
                    warn!(daemon = %slot.daemon, pid, "watchdog timeout: no WATCHDOG=1 in time; aborting it");
                    kill(pid, Signal::ABORT);
                    slot.aborted = true;
                }
                slot.last_alive = now;
            } else if !slot.ready && now.duration_since(slot.started) > self.opts.ready_timeout {
                warn!(daemon = %slot.daemon, pid, "no READY=1 in time after restart; killing it");
                kill(pid, Signal::KILL);
                slot.started = now;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| match (s.restart_at, s.pid) {
                (Some(t), _) => Some(t),
                (None, Some(_)) if s.ready => Some(s.last_alive + self.opts.watchdog),
                (None, Some(_)) => Some(s.started + self.opts.ready_timeout),
                (None, None) => None,
            })
            .min()
    }

    fn signal_all(&self, sig: Signal, why: &str) {
        for slot in &self.slots {
            if let Some(pid) = slot.pid {
                info!(daemon = %slot.daemon, pid, why, "signalling daemon");
                kill(pid, sig);
            }
        }
    }

    fn daemon_infos(&self) -> Vec<DaemonInfo> {
        self.slots
            .iter()
            .map(|s| DaemonInfo {
                daemon: s.daemon.binary().to_string(),
                pid: s.pid.unwrap_or_default(),
                restarts: s.restarts,
            })
            .collect()
    }

    fn write_suite_file(&self) {
        let layout = &self.opts.layout;
        let info = SuiteInfo {
            bus_address: layout.bus_address(),
            supervisor_pid: std::process::id(),
            root: layout.root.clone(),
            config_dir: layout.config_dir.clone(),
            daemons: self.daemon_infos(),
        };
        if let Err(e) = info.write(&layout.suite_file()) {
            warn!(error = %e, path = %layout.suite_file().display(), "cannot write the suite file");
        }
    }

    /// SIGTERM to every daemon, SIGKILL to those still there after the grace period, then the
    /// bus; finally the sockets and files that only make sense while the suite runs.
    async fn shutdown(&mut self) {
        for slot in &mut self.slots {
            slot.restart_at = None;
        }
        self.signal_all(Signal::TERM, "stop");
        if !self.wait_daemons_gone(STOP_GRACE).await {
            warn!(
                "daemons still running after {} s; killing them",
                STOP_GRACE.as_secs()
            );
            self.signal_all(Signal::KILL, "stop (forced)");
            self.wait_daemons_gone(Duration::from_secs(2)).await;
        }
        if let Some((pid, _)) = self.bus {
            kill(pid, Signal::TERM);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while self.bus.is_some() {
                match tokio::time::timeout_at(deadline, self.exit_rx.recv()).await {
                    Ok(Some(exit)) if exit.daemon.is_none() => self.bus = None,
                    Ok(Some(_)) => {}
                    _ => {
                        kill(pid, Signal::KILL);
                        self.bus = None;
                    }
                }
            }
        }
        for l in &self.listeners {
            l.abort();
        }
        let layout = &self.opts.layout;
        layout.remove_running_files();
        let _ = std::fs::remove_dir_all(layout.root.join("run"));
        info!("suite stopped");
    }

    async fn wait_daemons_gone(&mut self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        while self.slots.iter().any(|s| s.pid.is_some()) {
            match tokio::time::timeout_at(deadline, self.exit_rx.recv()).await {
                Ok(Some(exit)) => {
                    if let Some(i) = self.slot_of(&exit) {
                        self.slots[i].pid = None;
                    } else if exit.daemon.is_none() && exit.generation == self.bus_generation {
                        self.bus = None;
                    }
                }
                _ => return false,
            }
        }
        true
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (MIN_BACKOFF * factor).min(MAX_BACKOFF)
}

fn kill(pid: u32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Creates the suite's folders, private to the user (0700).
pub(super) fn prepare_dirs(layout: &Layout) -> Result<(), SuiteError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut dirs = vec![
        layout.root.clone(),
        layout.notify_dir(),
        layout.logs_dir(),
        layout.config_dir.clone(),
    ];
    for d in Daemon::ALL {
        dirs.push(layout.state_dir(d));
        dirs.push(layout.runtime_dir(d));
    }
    for path in dirs {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|source| SuiteError::Prepare { path, source })?;
    }
    check_private(&layout.root)
}

/// The suite folder holds the bus socket: anyone who can enter it can talk to the daemons.
/// Refuse one that another user owns or that others may enter.
fn check_private(root: &std::path::Path) -> Result<(), SuiteError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(root).map_err(|source| SuiteError::Prepare {
        path: root.to_path_buf(),
        source,
    })?;
    let uid = rustix::process::getuid().as_raw();
    let problem = if !meta.is_dir() {
        Some("it is not a folder".to_string())
    } else if meta.uid() != uid {
        Some(format!(
            "it belongs to uid {}, not to uid {uid}",
            meta.uid()
        ))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "its mode is {:o}; it must be 700",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        Some(why) => Err(SuiteError::Unsafe {
            path: root.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Holds `supervisor.lock` with `flock` for the supervisor's life; the kernel drops it when
/// the process dies, so a stale file never blocks the next `stakpak up`.
fn take_lock(layout: &Layout) -> Result<File, SuiteError> {
    let path = layout.lock_file();
    let prepare = |source| SuiteError::Prepare {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(prepare)?;
    if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            return Err(SuiteError::AlreadyRunning {
                root: layout.root.clone(),
                pid,
            });
        }
        return Err(prepare(e.into()));
    }
    file.set_len(0).map_err(prepare)?;
    write!(file, "{}", std::process::id()).map_err(prepare)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(
            delays,
            vec![
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
