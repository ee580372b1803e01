//! `agent.toml`: how the agent daemon runs its loops. The profiles, models and providers are
//! in `config.toml` (stakpak's shape, `stakpak-config`), read at every session start so a
//! change applies to the next session without a reload.
//!
//! ```toml
//! [loop]
//! context_budget_chars = 400000   # old tool output is trimmed first past this
//! command_timeout_secs = 120      # run_command's default timeout
//! max_tokens = 4096               # per model turn
//! [llm]
//! timeout_secs = 300              # one model call, retries included
//! idle_timeout_secs = 60          # between two streamed events
//! max_retries = 3                 # on 429, 5xx and connection errors
//! [peers]
//! timeout_ms = 10000              # a call to warden or secretd
//! ```

use serde::Deserialize;
use stakpak_daemon::{DaemonConfig, LogConfig, Paths};

/// `agent.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentdConfig {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default, rename = "loop")]
    pub run: LoopConfig,
    #[serde(default)]
    pub llm: LlmConfig,
    #[serde(default)]
    pub peers: PeersConfig,
}

/// `[loop]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub context_budget_chars: usize,
    pub command_timeout_secs: u64,
    pub max_tokens: u32,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            context_budget_chars: 400_000,
            command_timeout_secs: 120,
            max_tokens: 4096,
        }
    }
}

/// `[llm]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_retries: u32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            timeout_secs: 300,
            idle_timeout_secs: 60,
            max_retries: 3,
        }
    }
}

/// `[peers]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    pub timeout_ms: u64,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig { timeout_ms: 10_000 }
    }
}

impl DaemonConfig for AgentdConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }

    fn prepare(&mut self, _paths: &Paths) -> Result<(), String> {
        for (key, zero) in [
            (
                "loop.context_budget_chars",
                self.run.context_budget_chars == 0,
            ),
            (
                "loop.command_timeout_secs",
                self.run.command_timeout_secs == 0,
            ),
            ("loop.max_tokens", self.run.max_tokens == 0),
            ("llm.timeout_secs", self.llm.timeout_secs == 0),
            ("llm.idle_timeout_secs", self.llm.idle_timeout_secs == 0),
            ("peers.timeout_ms", self.peers.timeout_ms == 0),
        ] {
            if zero {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        Ok(())
    }
}
