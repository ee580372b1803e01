//! Wire types of `dev.stakpak.Secrets1`, and who called.
//!
//! Types that carry a secret value ([`SetRequest`], [`ResolveReply`]) have a hand-written
//! `Debug` that prints names and sizes only, so no log line or panic message shows a value.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use zbus::Type;

/// The bus peer a call came from, as the bus daemon knows it.
///
/// `name` is the sender's unique name, taken from the message header the bus daemon filled
/// in; the connection lets the daemon ask the bus daemon about that peer (its uid, from the
/// kernel). Nothing here is what the caller says about itself.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Unique bus name of the sender (`:1.42`); empty on a peer-to-peer connection.
    pub name: String,
    /// The connection the call arrived on.
    pub connection: zbus::Connection,
}

/// `Set(name, value, consumers)`: store a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SetRequest {
    pub name: String,
    pub value: String,
    /// Who may use it (consumer names such as `schedd`); empty: every consumer.
    pub consumers: Vec<String>,
}

impl fmt::Debug for SetRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetRequest")
            .field("name", &self.name)
            .field("value_len", &self.value.len())
            .field("consumers", &self.consumers)
            .finish()
    }
}

/// One secret as `List()` shows it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SecretInfo {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    pub updated_unix: u64,
    /// Who may use it; empty means every consumer.
    pub consumers: Vec<String>,
}

/// One value a redaction replaced: the rule that found it (`vault` for a vault secret) and
/// the placeholder that now stands in the text. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Detection {
    pub rule_id: String,
    pub placeholder: String,
}

/// Reply of `Redact` and `Register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RedactReply {
    /// The text with every known and detected value replaced by its placeholder.
    pub redacted: String,
    /// What was replaced, in order of appearance in `redacted`.
    pub detections: Vec<Detection>,
}

/// `Resolve(session, text, shell)`: placeholders back to values, for execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    /// Session whose `[REDACTED_SECRET:…]` placeholders may appear; empty: none.
    pub session: String,
    /// A shell command (`shell`) or any other text.
    pub text: String,
    /// True: `text` is a shell command; values go into the environment.
    pub shell: bool,
}

/// Reply of `Resolve`.
///
/// With `shell`, `text` is the command with each placeholder replaced by a reference to an
/// environment variable and `env` holds the variables' values; without it, `text` holds the
/// values themselves and `env` is empty.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ResolveReply {
    pub text: String,
    pub env: BTreeMap<String, String>,
}

impl fmt::Debug for ResolveReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveReply")
            .field("text_len", &self.text.len())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}
