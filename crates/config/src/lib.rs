//! The agent's configuration: `config.toml` (settings and profiles, in stakpak/agent's
//! shape) and rulebooks (Markdown SOPs with front matter).
//!
//! Pure: parsing, validation and resolution. Files are read only by [`AgentConfig::load`],
//! [`AgentConfig::profile`] (the credential file, when a key is not in the environment) and
//! [`load_rulebooks`].
//!
//! `config.toml` is often readable by everyone, so it never holds an API key: a key-like
//! field is an error that points to the environment or to `credentials.toml` (mode 0600).
//! Nothing here formats a key, or a value that could be one, into an error or a `Debug`.

mod credentials;
mod glob;
mod profile;
mod rulebook;
mod walk;

use std::{io, path::PathBuf};

pub use profile::{
    ALL_PROFILE, AgentConfig, DEFAULT_AUTO_APPROVE, DEFAULT_MAX_TURNS, DEFAULT_PROFILE, KeySource,
    Profile, ProviderKind, ProviderSettings, RulebookFilter, SAMPLE,
};
pub use rulebook::{Rulebook, load_rulebooks, parse_rulebook};

/// Why a configuration, a credential file or a rulebook was refused. Every variant names
/// the file; none carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not TOML at all; the position and the parser's words, never the offending line
    /// (it could hold a key).
    #[error("invalid configuration in {path}: line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key or value that is not allowed, named by its path (`profiles.prod.max_turns`).
    #[error("invalid configuration in {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("no profile {name:?} in {path}; {known}")]
    NoProfile {
        path: PathBuf,
        name: String,
        known: String,
    },
    /// The credential file is unsafe (mode, owner, type) or malformed.
    #[error("credential file {path}: {problem}")]
    Credentials { path: PathBuf, problem: String },
    #[error("invalid rulebook {path}: line {line}: {message}")]
    RulebookLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid rulebook {path}: {message}")]
    Rulebook { path: PathBuf, message: String },
    #[error("rulebook uri {uri:?} is defined twice in one folder: {first} and {second}")]
    DuplicateRulebook {
        uri: String,
        first: PathBuf,
        second: PathBuf,
    },
}
