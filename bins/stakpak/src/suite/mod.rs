//! The embedded suite: `stakpak up`, `stakpak down`, and finding a running suite.

mod busd;
mod layout;
mod notify;
mod spawn;
mod supervisor;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
pub use layout::{DaemonInfo, Layout, LayoutError, Placement, SuiteInfo};
use rustix::process::{Pid, Signal};
pub use supervisor::{Options, ReadyReport, SuiteError, Supervisor};

/// True while a supervisor holds the suite's lock.
pub fn is_running(layout: &Layout) -> bool {
    let Ok(file) = std::fs::File::open(layout.lock_file()) else {
        return false;
    };
    matches!(
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared),
        Err(rustix::io::Errno::WOULDBLOCK)
    )
}

/// What `stakpak up` prints (and, detached, what the supervisor sends back to it).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum UpReport {
    Ready(ReadyReport),
    Failed { error: String },
}

/// Runs the supervisor in this process until SIGTERM/SIGINT. With `report_to_stdout` (the
/// detached child), the outcome goes to stdout as one JSON line and stdout is closed after.
pub fn up_foreground(opts: Options, report_to_stdout: bool) -> anyhow::Result<()> {
    let runtime = crate::runtime::new()?;
    runtime.block_on(async {
        match Supervisor::start(opts).await {
            Ok((sup, report)) => {
                if report_to_stdout {
                    send_report(&UpReport::Ready(report));
                } else {
                    print_ready(&report);
                }
                sup.run_until_stopped().await;
                Ok(())
            }
            Err(e) => {
                if report_to_stdout {
                    send_report(&UpReport::Failed {
                        error: e.to_string(),
                    });
                }
                Err(e.into())
            }
        }
    })
}

fn send_report(report: &UpReport) {
    if let Ok(line) = serde_json::to_string(report) {
        println!("{line}");
    }
    // The parent stops reading after this line; later writes must not hit a closed pipe.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

fn print_ready(report: &ReadyReport) {
    println!(
        "stakpak suite ready in {} ms: {} daemons on {} (supervisor pid {})",
        report.ready_ms,
        report.daemons.len(),
        report.bus_address,
        report.supervisor_pid
    );
}

/// Starts the supervisor as a background process and waits for its report.
pub fn up_detached(
    placement: &Placement,
    layout: &Layout,
    ready_timeout: Duration,
    watchdog: Duration,
) -> anyhow::Result<()> {
    supervisor::prepare_dirs(layout)?;
    let log_path = layout.log_file("supervisor");
    let log = spawn::open_log(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the stakpak executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("up").arg("--foreground").arg("--report-json");
    cmd.arg("--timeout")
        .arg(ready_timeout.as_secs_f64().to_string())
        .arg("--watchdog")
        .arg(watchdog.as_secs_f64().to_string());
    // The child inherits our environment and gets the same placement, so it resolves the
    // same layout.
    if let Some(dir) = &placement.state_dir {
        cmd.arg("--state-dir").arg(dir);
    }
    if let Some(dir) = &placement.config_dir {
        cmd.arg("--config-dir").arg(dir);
    }
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Its own process group: a Ctrl-C in this terminal must not stop the suite.
        .process_group(0);
    let mut child = cmd.spawn().context("cannot start the supervisor")?;
    let stdout = child
        .stdout
        .take()
        .context("the supervisor has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("cannot read the supervisor's report")?;
    let report: UpReport = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(_) => {
            let status = child
                .wait()
                .ok()
                .map(spawn::describe_exit)
                .unwrap_or_default();
            bail!(
                "the supervisor {status} before the suite was ready; see {}",
                log_path.display()
            );
        }
    };
    match report {
        UpReport::Ready(report) => {
            print_ready(&report);
            Ok(())
        }
        UpReport::Failed { error } => {
            let _ = child.wait();
            bail!("{error}")
        }
    }
}

/// Stops a running embedded suite and waits until its supervisor is gone.
pub fn down(layout: &Layout, timeout: Duration) -> anyhow::Result<bool> {
    if !is_running(layout) {
        // A supervisor killed with SIGKILL leaves files behind (its children die with it).
        layout.remove_running_files();
        return Ok(false);
    }
    let pid =
        supervisor_pid(layout).context("a suite is running but its supervisor pid is unknown")?;
    let pid = Pid::from_raw(pid as i32).context("invalid supervisor pid")?;
    rustix::process::kill_process(pid, Signal::TERM).with_context(|| {
        format!(
            "cannot signal the supervisor (pid {})",
            pid.as_raw_nonzero()
        )
    })?;
    let begun = Instant::now();
    while is_running(layout) || process_alive(pid) {
        if begun.elapsed() > timeout {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            bail!(
                "the suite did not stop within {} s; its supervisor (pid {}) was killed",
                timeout.as_secs(),
                pid.as_raw_nonzero()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// True while `pid` exists and is not a zombie: a detached supervisor's parent has exited, and
/// its reaper may take a while, but a zombie holds no resources.
fn process_alive(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

fn supervisor_pid(layout: &Layout) -> Option<u32> {
    let from_lock = std::fs::read_to_string(layout.lock_file())
        .ok()
        .and_then(|s| s.trim().parse().ok());
    from_lock.or_else(|| {
        SuiteInfo::read(&layout.suite_file())
            .ok()
            .map(|i| i.supervisor_pid)
    })
}

/// Reads the suite file of a running suite.
pub fn running_suite(layout: &Layout) -> Option<SuiteInfo> {
    if !is_running(layout) {
        return None;
    }
    SuiteInfo::read(&layout.suite_file()).ok()
}

/// True when `path` looks like an installed suite's target unit.
pub fn installed_unit_exists(roots: &[&Path]) -> bool {
    roots.iter().any(|r| r.join("stakpak.target").is_file())
}
