//! Looking at processes from the outside, as an operator would with `ps`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

/// What `/proc` says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub name: String,
    pub state: char,
    pub rss_kib: u64,
    pub cmdline: Vec<String>,
}

impl ProcessInfo {
    pub fn read(pid: u32) -> Option<ProcessInfo> {
        let dir = Path::new("/proc").join(pid.to_string());
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let name = field("Name:")?;
        let state = field("State:")?.chars().next()?;
        let rss_kib = field("VmRSS:")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        let cmdline = std::fs::read(dir.join("cmdline"))
            .ok()?
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(ProcessInfo {
            pid,
            name,
            state,
            rss_kib,
            cmdline,
        })
    }

    /// Alive and not a zombie.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Live processes whose command line mentions `needle` (a suite folder, say): finds exactly
/// the processes of one suite even when other suites run on the machine.
pub fn processes_named(needle: &str) -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter_map(ProcessInfo::read)
        .filter(|p| p.is_live() && p.cmdline.iter().any(|a| a.contains(needle)))
        .collect()
}

/// Polls `check` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Captured result of a command.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(o: std::process::Output) -> Self {
        Output {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}
