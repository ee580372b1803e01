//! One daemon started on its own against a private bus, and small helpers the daemon tests
//! share.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use stakpak_proto::{Daemon, zbus};

use crate::{bin, connect, wait_until};

/// A temporary folder with `config/`, `state/`, `run/` and `elsewhere/` (a place the daemon
/// must not touch) for one daemon.
#[derive(Debug)]
pub struct DaemonDirs {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl DaemonDirs {
    pub fn new(prefix: &str) -> DaemonDirs {
        let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["config", "state", "run", "elsewhere"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        DaemonDirs { _tmp: tmp, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes `<config>/<daemon>.toml`.
    pub fn write_config(&self, daemon: Daemon, text: &str) {
        let file = self
            .path("config")
            .join(format!("{}.toml", daemon.short_name()));
        std::fs::write(file, text).unwrap();
    }
}

/// The daemon's binary with its folders and bus, and none of the variables a service
/// manager or the developer's shell might pass (notify socket, journal, log level,
/// credentials).
pub fn daemon_command(daemon: Daemon, bus_address: &str, dirs: &DaemonDirs) -> Command {
    let mut cmd = Command::new(bin(daemon.binary()));
    cmd.arg("--bus-address")
        .arg(bus_address)
        .arg("--config-dir")
        .arg(dirs.path("config"))
        .arg("--state-dir")
        .arg(dirs.path("state"))
        .arg("--runtime-dir")
        .arg(dirs.path("run"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("STAKPAK_LOG")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

/// Starts `daemon` (its output discarded) and waits up to ten seconds for its bus name;
/// returns the child and a client connection to the bus.
pub fn start_daemon(
    daemon: Daemon,
    bus_address: &str,
    dirs: &DaemonDirs,
    rt: &tokio::runtime::Runtime,
) -> (Child, zbus::Connection) {
    let child = daemon_command(daemon, bus_address, dirs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let conn = connect(rt, bus_address);
    let dbus = rt.block_on(zbus::fdo::DBusProxy::new(&conn)).unwrap();
    wait_until(Duration::from_secs(10), || {
        rt.block_on(dbus.name_has_owner(daemon.bus_name().try_into().unwrap()))
            .unwrap_or(false)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{} did not take its bus name", daemon.binary()));
    (child, conn)
}

/// `n` characters of `alphabet` from the kernel's random source (canaries, tokens), each
/// symbol equally likely.
pub fn random_string(alphabet: &[u8], n: usize) -> String {
    stakpak_util::random::string(alphabet, n).unwrap()
}

/// Every regular file below `dir`, recursively, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}
