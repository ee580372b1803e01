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
//! [limits]
//! pids = 256
//! memory_bytes = 1073741824
//! cpu_secs = 600
//! nofile = 1024
//! ```

use serde::Deserialize;
use stakpak_daemon::{DaemonConfig, LogConfig, Paths};

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
}

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
        }
    }
}

/// `[limits]`: per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub pids: u64,
    pub memory_bytes: u64,
    pub cpu_secs: u64,
    pub nofile: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            pids: 256,
            memory_bytes: 1 << 30,
            cpu_secs: 600,
            nofile: 1024,
        }
    }
}

impl DaemonConfig for SandboxdConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }

    fn prepare(&mut self, _paths: &Paths) -> Result<(), String> {
        let e = &self.exec;
        for (key, value) in [
            ("exec.default_timeout_ms", e.default_timeout_ms),
            ("exec.max_timeout_ms", e.max_timeout_ms),
            ("exec.warden_timeout_ms", e.warden_timeout_ms),
            ("exec.secretd_timeout_ms", e.secretd_timeout_ms),
            ("limits.pids", self.limits.pids),
            ("limits.memory_bytes", self.limits.memory_bytes),
            ("limits.cpu_secs", self.limits.cpu_secs),
            ("limits.nofile", self.limits.nofile),
        ] {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if e.default_timeout_ms > e.max_timeout_ms {
            return Err("exec.default_timeout_ms is above exec.max_timeout_ms".into());
        }
        if e.output_cap == 0 {
            return Err("exec.output_cap must be greater than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_zero_values() {
        let c: SandboxdConfig = toml::from_str("").unwrap();
        assert_eq!(c.limits.pids, 256);
        assert_eq!(c.exec.warden_timeout_ms, 5_000);
        let paths = Paths {
            mode: stakpak_daemon::Mode::Embedded,
            config_dir: "/c".into(),
            config_file: "/c/sandboxd.toml".into(),
            state_dir: "/s".into(),
            runtime_dir: "/r".into(),
        };
        let mut bad: SandboxdConfig = toml::from_str("[limits]\npids = 0\n").unwrap();
        assert!(bad.prepare(&paths).unwrap_err().contains("limits.pids"));
        assert!(toml::from_str::<SandboxdConfig>("[exec]\nbogus = 1\n").is_err());
    }
}
