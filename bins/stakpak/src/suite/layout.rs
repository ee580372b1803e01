//! Where an embedded suite keeps its files.
//!
//! ```text
//! <root>/                 $XDG_RUNTIME_DIR/stakpak, or --state-dir DIR
//!   supervisor.lock       flock held by the running supervisor
//!   suite.json            bus address, supervisor pid, daemons (written atomically)
//!   bus.conf, bus.sock    the private dbus-daemon
//!   notify/<daemon>.sock  one NOTIFY_SOCKET per daemon
//!   run/<daemon>/         each daemon's runtime folder
//!   logs/<daemon>.log     each daemon's stderr; logs/supervisor.log when detached
//!   state/<daemon>/       each daemon's state, with --state-dir (else $XDG_STATE_HOME/stakpak)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stakpak_proto::Daemon;

/// The longest path a Unix socket address can hold (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Files and folders of one embedded suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub config_dir: PathBuf,
    state_base: PathBuf,
}

/// A folder of the suite could not be determined or is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error(
        "cannot find a configuration folder: set XDG_CONFIG_HOME or HOME, or pass --config-dir"
    )]
    NoConfigDir,
    #[error("socket path {0} is longer than 107 bytes; choose a shorter --state-dir")]
    SocketPathTooLong(PathBuf),
}

/// Options that place a suite.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub state_dir: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
}

impl Layout {
    /// Places the suite from the options and the process environment.
    pub fn resolve(placement: &Placement) -> Result<Layout, LayoutError> {
        Self::resolve_with(placement, |k| std::env::var_os(k).map(PathBuf::from))
    }

    pub fn resolve_with(
        placement: &Placement,
        env: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<Layout, LayoutError> {
        let config_dir = placement
            .config_dir
            .clone()
            .or_else(|| env("XDG_CONFIG_HOME").map(|d| d.join("stakpak")))
            .or_else(|| env("HOME").map(|h| h.join(".config/stakpak")))
            .ok_or(LayoutError::NoConfigDir)?;
        let layout = match &placement.state_dir {
            Some(dir) => Layout {
                root: dir.clone(),
                config_dir,
                state_base: dir.join("state"),
            },
            None => {
                let uid = rustix::process::getuid().as_raw();
                // Like tmux: without a per-user runtime folder, a private folder in /tmp
                // (checked for owner and mode before use, see `prepare_dirs`).
                let runtime = env("XDG_RUNTIME_DIR")
                    .filter(|d| d.is_absolute())
                    .or_else(|| {
                        let d = PathBuf::from(format!("/run/user/{uid}"));
                        d.is_dir().then_some(d)
                    });
                let root = match &runtime {
                    Some(dir) => dir.join("stakpak"),
                    None => env("TMPDIR")
                        .filter(|d| d.is_absolute())
                        .unwrap_or_else(|| PathBuf::from("/tmp"))
                        .join(format!("stakpak-{uid}")),
                };
                let state_base = env("XDG_STATE_HOME")
                    .or_else(|| env("HOME").map(|h| h.join(".local/state")))
                    .map(|d| d.join("stakpak"))
                    .unwrap_or_else(|| root.join("state"));
                Layout {
                    root,
                    config_dir,
                    state_base,
                }
            }
        };
        let bus = layout.bus_socket();
        if bus.as_os_str().len() > MAX_SOCKET_PATH
            || layout.notify_socket(Daemon::Scheduler).as_os_str().len() > MAX_SOCKET_PATH
        {
            return Err(LayoutError::SocketPathTooLong(bus));
        }
        Ok(layout)
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("supervisor.lock")
    }
    pub fn suite_file(&self) -> PathBuf {
        self.root.join("suite.json")
    }
    pub fn bus_config(&self) -> PathBuf {
        self.root.join("bus.conf")
    }
    pub fn bus_socket(&self) -> PathBuf {
        self.root.join("bus.sock")
    }
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.bus_socket().display())
    }
    pub fn notify_dir(&self) -> PathBuf {
        self.root.join("notify")
    }
    pub fn notify_socket(&self, daemon: Daemon) -> PathBuf {
        self.notify_dir()
            .join(format!("{}.sock", daemon.short_name()))
    }
    /// Removes what says a suite runs here (its record, bus, lock and notify sockets), as
    /// far as it is there; the logs and state stay.
    pub fn remove_running_files(&self) {
        for path in [
            self.suite_file(),
            self.bus_socket(),
            self.bus_config(),
            self.lock_file(),
        ] {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_dir_all(self.notify_dir());
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    pub fn runtime_dir(&self, daemon: Daemon) -> PathBuf {
        self.root.join("run").join(daemon.short_name())
    }
    pub fn state_dir(&self, daemon: Daemon) -> PathBuf {
        self.state_base.join(daemon.short_name())
    }
}

/// What `suite.json` says about a running suite; read by every CLI command that needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteInfo {
    pub bus_address: String,
    pub supervisor_pid: u32,
    pub root: PathBuf,
    pub config_dir: PathBuf,
    pub daemons: Vec<DaemonInfo>,
}

/// The supervisor's view of one daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub daemon: String,
    pub pid: u32,
    pub restarts: u32,
}

impl SuiteInfo {
    pub fn read(path: &Path) -> std::io::Result<SuiteInfo> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Writes to a temporary file and renames it over `path`: readers see the old or the new
    /// content, never half of one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<PathBuf> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| PathBuf::from(v))
        }
    }

    #[test]
    fn state_dir_holds_everything() {
        let p = Placement {
            state_dir: Some("/srv/sp".into()),
            config_dir: Some("/srv/sp-config".into()),
        };
        let l = Layout::resolve_with(&p, env_of(&[])).unwrap();
        assert_eq!(l.bus_address(), "unix:path=/srv/sp/bus.sock");
        assert_eq!(
            l.state_dir(Daemon::Warden),
            PathBuf::from("/srv/sp/state/warden")
        );
        assert_eq!(
            l.runtime_dir(Daemon::Secrets),
            PathBuf::from("/srv/sp/run/secretd")
        );
        assert_eq!(
            l.notify_socket(Daemon::Agent),
            PathBuf::from("/srv/sp/notify/agent.sock")
        );
        assert_eq!(l.config_dir, PathBuf::from("/srv/sp-config"));
    }

    #[test]
    fn xdg_defaults() {
        let env = env_of(&[("XDG_RUNTIME_DIR", "/run/user/1000"), ("HOME", "/home/ops")]);
        let l = Layout::resolve_with(&Placement::default(), env).unwrap();
        assert_eq!(l.root, PathBuf::from("/run/user/1000/stakpak"));
        assert_eq!(l.config_dir, PathBuf::from("/home/ops/.config/stakpak"));
        assert_eq!(
            l.state_dir(Daemon::Scheduler),
            PathBuf::from("/home/ops/.local/state/stakpak/schedd")
        );
    }

    #[test]
    fn without_runtime_dir_a_private_tmp_folder() {
        let l = Layout::resolve_with(&Placement::default(), env_of(&[("HOME", "/root")])).unwrap();
        let uid = rustix::process::getuid().as_raw();
        if !std::path::Path::new(&format!("/run/user/{uid}")).is_dir() {
            assert_eq!(l.root, PathBuf::from(format!("/tmp/stakpak-{uid}")));
        }
        assert_eq!(l.config_dir, PathBuf::from("/root/.config/stakpak"));
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let long = format!("/{}", "x".repeat(120));
        let p = Placement {
            state_dir: Some(long.clone().into()),
            config_dir: Some("/c".into()),
        };
        assert_eq!(
            Layout::resolve_with(&p, env_of(&[])),
            Err(LayoutError::SocketPathTooLong(
                PathBuf::from(long).join("bus.sock")
            ))
        );
    }

    #[test]
    fn suite_info_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suite.json");
        let info = SuiteInfo {
            bus_address: "unix:path=/x/bus.sock".into(),
            supervisor_pid: 7,
            root: "/x".into(),
            config_dir: "/c".into(),
            daemons: vec![DaemonInfo {
                daemon: "stakpak-warden".into(),
                pid: 8,
                restarts: 1,
            }],
        };
        info.write(&path).unwrap();
        assert_eq!(SuiteInfo::read(&path).unwrap(), info);
        assert!(!dir.path().join("suite.json.tmp").exists());
    }
}
