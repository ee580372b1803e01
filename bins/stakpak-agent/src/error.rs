//! Why a call into the agent failed ([`AgentError`], turned into a D-Bus error in one place,
//! `dbus.rs`), and why a session's loop stopped with `failed` ([`RunError`], whose message
//! becomes the session's reason).

use stakpak_config::ConfigError;
use stakpak_llm::LlmError;
use stakpak_util::random::RandomError;

use crate::store::StoreError;

/// A call the registry refused or could not serve.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{field} {id:?} is not 1 to 64 of A-Z a-z 0-9 _ -")]
    BadId { field: &'static str, id: String },
    #[error("no session {0:?}")]
    NoSession(String),
    #[error("session {0} is running; wait for it, approve its calls or cancel it")]
    Running(String),
    #[error("session {0} exists already")]
    Exists(String),
    #[error("no checkpoint {0:?}")]
    NoCheckpoint(String),
    #[error("no tool call {call:?} waiting for approval in session {session}")]
    NotWaiting { call: String, session: String },
    #[error("cannot make a session id: {0}")]
    NoId(RandomError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a session's loop failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `config.toml`, the profile, its credentials or the rulebooks.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "model {given:?} must be `{provider}/<model>`: profile {profile} uses provider {provider}"
    )]
    Model {
        given: String,
        provider: String,
        profile: String,
    },
    #[error(transparent)]
    Client(LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session {0} has no checkpoint to resume from")]
    NoCheckpoint(String),
    #[error("secretd could not redact the prompt, so it was not sent to the model: {0}")]
    Redact(stakpak_proto::Error),
    #[error("secretd did not answer; the prompt was not sent to the model")]
    RedactTimeout,
    #[error("nothing to do: the session has no prompt")]
    NothingToDo,
    #[error("the model call failed: {0}")]
    ModelCall(LlmError),
}
