//! Loading a daemon's TOML configuration file.
//!
//! A missing file means defaults; anything else that is wrong (unreadable, not TOML, an unknown
//! key, a bad value) is an error that names the file and the problem, and the daemon refuses to
//! start or, on reload, keeps the configuration it has.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, de::DeserializeOwned};
use stakpak_util::one_line;

use crate::Paths;
use tracing_subscriber::EnvFilter;

/// What a daemon's configuration must offer to the shared runtime.
pub trait DaemonConfig: DeserializeOwned + Default + Send + Sync + 'static {
    /// The `[log]` section.
    fn log(&self) -> &LogConfig;

    /// Checks values that deserialising cannot (ranges, combinations) and loads what the
    /// configuration names (a policy, say), so that a reload either takes all of it or none.
    /// The message names the key or file at fault.
    fn prepare(&mut self, _paths: &Paths) -> Result<(), String> {
        Ok(())
    }
}

/// The `[log]` section every daemon's file has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `warn,stakpak_warden=debug`, …
    #[serde(default = "LogConfig::default_level")]
    pub level: String,
}

impl LogConfig {
    fn default_level() -> String {
        "info".to_string()
    }

    /// Checks that `level` is a filter tracing understands.
    pub fn validate(&self) -> Result<(), String> {
        EnvFilter::builder()
            .parse(&self.level)
            .map(|_| ())
            .map_err(|e| format!("log.level: invalid filter `{}`: {e}", self.level))
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: Self::default_level(),
        }
    }
}

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("invalid configuration in {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and prepares `path`; a missing file yields the defaults.
pub fn load_config<C: DaemonConfig>(path: &Path, paths: &Paths) -> Result<C, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    // toml's messages carry the line, column and offending key; keep them on one line.
    let mut config: C = toml::from_str(&text).map_err(|e| invalid(one_line(&e.to_string())))?;
    config.log().validate().map_err(invalid)?;
    config.prepare(paths).map_err(invalid)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct TestConfig {
        #[serde(default)]
        log: LogConfig,
        #[serde(default)]
        limit: u32,
    }

    impl DaemonConfig for TestConfig {
        fn log(&self) -> &LogConfig {
            &self.log
        }
        fn prepare(&mut self, _paths: &Paths) -> Result<(), String> {
            if self.limit > 10 {
                return Err(format!("limit: {} is more than 10", self.limit));
            }
            Ok(())
        }
    }

    fn load(text: &str) -> (PathBuf, Result<TestConfig, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        let r = load_config::<TestConfig>(&path, &test_paths());
        (path, r)
    }

    fn test_paths() -> Paths {
        Paths {
            mode: crate::Mode::Embedded,
            config_dir: "/c".into(),
            config_file: "/c/t.toml".into(),
            state_dir: "/s".into(),
            runtime_dir: "/r".into(),
        }
    }

    #[test]
    fn missing_file_gives_defaults() {
        let r = load_config::<TestConfig>(Path::new("/nonexistent/stakpak/t.toml"), &test_paths())
            .unwrap();
        assert_eq!(r, TestConfig::default());
        assert_eq!(r.log.level, "info");
    }

    #[test]
    fn good_file_loads() {
        let (_, r) = load("limit = 3\n[log]\nlevel = \"debug\"\n");
        assert_eq!(
            r.unwrap(),
            TestConfig {
                log: LogConfig {
                    level: "debug".into()
                },
                limit: 3
            }
        );
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let cases = [
            ("limt = 3\n", "unknown field `limt`"),
            (
                "limit = \"three\"\n",
                "invalid type: string \"three\", expected u32",
            ),
            ("limit = 30\n", "limit: 30 is more than 10"),
            (
                "[log]\nlevel = \"loud=[\"\n",
                "log.level: invalid filter `loud=[`",
            ),
            (
                "[log\n",
                "TOML parse error at line 1, column 5: unclosed table, expected `]`",
            ),
        ];
        for (text, expected) in cases {
            let (path, r) = load(text);
            let msg = r.unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("invalid configuration in {}: ", path.display())),
                "{msg}"
            );
            assert!(msg.contains(expected), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = load_config::<TestConfig>(dir.path(), &test_paths());
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("cannot read {}: ", dir.path().display())),
            "{msg}"
        );
    }
}
