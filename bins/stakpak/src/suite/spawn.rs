//! Starting the suite's child processes: an empty environment plus an allow-list, no stdin,
//! and a parent-death signal so that a supervisor killed with SIGKILL takes its children with
//! it instead of leaving them orphaned.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::process::Command;

/// Variables a child keeps from the supervisor's environment; everything else is dropped.
const PASS_ENV: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "STAKPAK_LOG",
    "RUST_BACKTRACE",
];

/// A command for `program` with a clean environment, stdin from /dev/null and stdout and
/// stderr appended to `log`.
pub fn command(program: &Path, log: &File) -> io::Result<Command> {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for key in PASS_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log.try_clone()?))
        .kill_on_drop(false);
    let parent = rustix::process::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe raw
    // system calls (prctl, getppid); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
            // The parent may have died between fork and prctl: then nobody would signal us.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("supervisor exited during start-up"));
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Opens (creating) a log file for appending.
pub fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Finds a suite binary: `STAKPAK_LIBEXEC_DIR`, then next to the running `stakpak`, then the
/// folders packages install to.
pub fn find_binary(name: &str) -> Result<PathBuf, io::Error> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("STAKPAK_LIBEXEC_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        candidates.push(dir);
    }
    candidates.extend(["/usr/libexec/stakpak", "/usr/lib/stakpak", "/usr/bin"].map(PathBuf::from));
    candidates
        .iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let looked: Vec<_> = candidates.iter().map(|d| d.display().to_string()).collect();
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "cannot find {name} in {}; build it with `cargo build --workspace` or set STAKPAK_LIBEXEC_DIR",
                    looked.join(", ")
                ),
            )
        })
}

/// The last `max_lines` lines written to `path` after byte `offset`, for error reports.
pub fn log_tail(path: &Path, offset: u64, max_lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        // Bounded: a daemon that logged megabytes before dying must not stall the report.
        f.take(64 * 1024).read_to_string(&mut text)
    });
    if read.is_err() {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// `exited with status 78`, `killed by signal 9 (SIGKILL)`.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                1 => " (SIGHUP)",
                2 => " (SIGINT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {sig}{name}")
        }
        (None, None) => "ended in an unknown way".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exits_are_described() {
        let cases = [
            (
                std::process::ExitStatus::from_raw(78 << 8),
                "exited with status 78",
            ),
            (
                std::process::ExitStatus::from_raw(9),
                "killed by signal 9 (SIGKILL)",
            ),
            (
                std::process::ExitStatus::from_raw(0),
                "exited with status 0",
            ),
        ];
        for (status, text) in cases {
            assert_eq!(describe_exit(status), text);
        }
    }

    #[test]
    fn log_tail_reads_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "old 1\nold 2\n").unwrap();
        let offset = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, "old 1\nold 2\nnew 1\n\nnew 2\nnew 3\n").unwrap();
        assert_eq!(log_tail(&path, offset, 2), "new 2\nnew 3");
        assert_eq!(log_tail(&path, offset, 10), "new 1\nnew 2\nnew 3");
        assert_eq!(log_tail(&dir.path().join("missing"), 0, 10), "");
    }
}
