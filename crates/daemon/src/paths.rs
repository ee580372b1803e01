//! Resolution of the configuration, state and runtime folders of a daemon.
//!
//! Installed, systemd hands the folders over in `CONFIGURATION_DIRECTORY`, `STATE_DIRECTORY`
//! and `RUNTIME_DIRECTORY`; the defaults match the units (`/etc/stakpak`,
//! `/var/lib/stakpak-<daemon>`, `/run/stakpak/<daemon>`). Embedded, the XDG base directories
//! apply unless the supervisor passes explicit folders.

use std::path::{Path, PathBuf};

use stakpak_proto::Daemon;

use crate::DaemonArgs;

/// How the daemon was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Under systemd, on the system bus.
    Installed,
    /// Under `stakpak up`, on a private bus.
    Embedded,
}

/// The folders one daemon may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub mode: Mode,
    pub config_dir: PathBuf,
    pub config_file: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
}

/// A folder could not be determined.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathsError {
    #[error("cannot find a {what} folder: set {var} or pass --{flag}")]
    Unresolved {
        what: &'static str,
        var: &'static str,
        flag: &'static str,
    },
    #[error("{flag} must be an absolute path, got `{path}`")]
    Relative { flag: &'static str, path: PathBuf },
}

impl Paths {
    /// Resolves the folders of `daemon` from its arguments and the process environment.
    pub fn resolve(daemon: Daemon, args: &DaemonArgs) -> Result<Paths, PathsError> {
        Self::resolve_with(daemon, args, |k| std::env::var_os(k).map(PathBuf::from))
    }

    /// Same as [`Paths::resolve`] with the environment given as a lookup function.
    pub fn resolve_with(
        daemon: Daemon,
        args: &DaemonArgs,
        env: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<Paths, PathsError> {
        let short = daemon.short_name();
        // systemd may pass several folders separated by colons; the first is ours.
        let systemd_dir = |var: &str| {
            env(var).and_then(|v| {
                v.to_str()
                    .and_then(|s| s.split(':').next())
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
        };
        let home_rel = |rel: &str| env("HOME").map(|h| h.join(rel));
        let mode = if args.bus_address.is_some() {
            Mode::Embedded
        } else {
            Mode::Installed
        };
        let (config_dir, state_dir, runtime_dir) = match mode {
            Mode::Installed => (
                args.config_dir
                    .clone()
                    .or_else(|| systemd_dir("CONFIGURATION_DIRECTORY"))
                    .unwrap_or_else(|| PathBuf::from("/etc/stakpak")),
                args.state_dir
                    .clone()
                    .or_else(|| systemd_dir("STATE_DIRECTORY"))
                    .unwrap_or_else(|| PathBuf::from(format!("/var/lib/stakpak-{short}"))),
                args.runtime_dir
                    .clone()
                    .or_else(|| systemd_dir("RUNTIME_DIRECTORY"))
                    .unwrap_or_else(|| Path::new("/run/stakpak").join(short)),
            ),
            Mode::Embedded => (
                args.config_dir
                    .clone()
                    .or_else(|| env("XDG_CONFIG_HOME").map(|d| d.join("stakpak")))
                    .or_else(|| home_rel(".config/stakpak"))
                    .ok_or(PathsError::Unresolved {
                        what: "configuration",
                        var: "XDG_CONFIG_HOME",
                        flag: "config-dir",
                    })?,
                args.state_dir
                    .clone()
                    .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("stakpak").join(short)))
                    .or_else(|| home_rel(".local/state/stakpak").map(|d| d.join(short)))
                    .ok_or(PathsError::Unresolved {
                        what: "state",
                        var: "XDG_STATE_HOME",
                        flag: "state-dir",
                    })?,
                args.runtime_dir
                    .clone()
                    .or_else(|| env("XDG_RUNTIME_DIR").map(|d| d.join("stakpak").join(short)))
                    .ok_or(PathsError::Unresolved {
                        what: "runtime",
                        var: "XDG_RUNTIME_DIR",
                        flag: "runtime-dir",
                    })?,
            ),
        };
        let config_file = args
            .config
            .clone()
            .unwrap_or_else(|| config_dir.join(format!("{short}.toml")));
        // Landlock rules and log lines need stable absolute paths.
        for (flag, path) in [
            ("--config-dir", &config_dir),
            ("--config", &config_file),
            ("--state-dir", &state_dir),
            ("--runtime-dir", &runtime_dir),
        ] {
            if !path.is_absolute() {
                return Err(PathsError::Relative {
                    flag,
                    path: path.clone(),
                });
            }
        }
        Ok(Paths {
            mode,
            config_dir,
            config_file,
            state_dir,
            runtime_dir,
        })
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
    fn installed_defaults() {
        let p = Paths::resolve_with(Daemon::Warden, &DaemonArgs::default(), env_of(&[])).unwrap();
        assert_eq!(
            p,
            Paths {
                mode: Mode::Installed,
                config_dir: "/etc/stakpak".into(),
                config_file: "/etc/stakpak/warden.toml".into(),
                state_dir: "/var/lib/stakpak-warden".into(),
                runtime_dir: "/run/stakpak/warden".into(),
            }
        );
    }

    #[test]
    fn installed_takes_systemd_folders() {
        let env = env_of(&[
            ("STATE_DIRECTORY", "/var/lib/stakpak-secretd:/var/lib/other"),
            ("RUNTIME_DIRECTORY", "/run/stakpak/secretd"),
            ("CONFIGURATION_DIRECTORY", "/etc/stakpak"),
        ]);
        let p = Paths::resolve_with(Daemon::Secrets, &DaemonArgs::default(), env).unwrap();
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/stakpak-secretd"));
        assert_eq!(p.runtime_dir, PathBuf::from("/run/stakpak/secretd"));
        assert_eq!(p.config_file, PathBuf::from("/etc/stakpak/secretd.toml"));
    }

    #[test]
    fn embedded_uses_xdg() {
        let args = DaemonArgs {
            bus_address: Some("unix:path=/tmp/bus".into()),
            ..Default::default()
        };
        let env = env_of(&[("HOME", "/home/ops"), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        let p = Paths::resolve_with(Daemon::Sandbox, &args, env).unwrap();
        assert_eq!(
            p,
            Paths {
                mode: Mode::Embedded,
                config_dir: "/home/ops/.config/stakpak".into(),
                config_file: "/home/ops/.config/stakpak/sandboxd.toml".into(),
                state_dir: "/home/ops/.local/state/stakpak/sandboxd".into(),
                runtime_dir: "/run/user/1000/stakpak/sandboxd".into(),
            }
        );
    }

    #[test]
    fn embedded_without_runtime_dir_is_an_error() {
        let args = DaemonArgs {
            bus_address: Some("unix:path=/tmp/bus".into()),
            ..Default::default()
        };
        let err = Paths::resolve_with(Daemon::Agent, &args, env_of(&[("HOME", "/root")]));
        assert_eq!(
            err,
            Err(PathsError::Unresolved {
                what: "runtime",
                var: "XDG_RUNTIME_DIR",
                flag: "runtime-dir"
            })
        );
    }

    #[test]
    fn relative_paths_are_rejected() {
        let args = DaemonArgs {
            state_dir: Some("state".into()),
            ..Default::default()
        };
        let err = Paths::resolve_with(Daemon::Agent, &args, env_of(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--state-dir must be an absolute path, got `state`"
        );
    }
}
