//! Wire types of `dev.stakpak.Warden1.Check`.

use serde::{Deserialize, Serialize};
use zbus::Type;

use crate::wire::wire_enum;

wire_enum! {
    /// The warden's verdict on an action.
    /// `Ask`: a human decides.
    pub enum Decision ("decision") {
        Allow = "allow", Ask = "ask", Deny = "deny",
    }
}

wire_enum! {
    /// What [`CheckRequest::subject`] is.
    /// `Command`: a shell command line; `Write`: a file path about to be written; `Delete`: a
    /// file path about to be removed; `Request`: an HTTP request, judged by the packs'
    /// `[[request]]` rules.
    pub enum CheckKind ("check kind") {
        Command = "command", Write = "write", Delete = "delete", Request = "request",
    }
}

wire_enum! {
    /// Why a request is in the egress log ([`RequestLogEntry::outcome`]).
    #[derive(Default)]
    pub enum RequestOutcome ("request outcome") {
        #[default] Blocked = "blocked", Inspected = "inspected",
    }
}

/// What the warden is asked to judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CheckRequest {
    pub kind: CheckKind,
    /// The command line, the path, or the request in the packs' example form (`METHOD
    /// URL`, header lines, a blank line, the body).
    pub subject: String,
    /// Session the action belongs to (empty when none); recorded in the audit trail.
    pub session: String,
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CheckMatch {
    pub rule: String,
    pub pack: String,
    pub decision: Decision,
    pub reason: String,
    pub action: String,
}

/// The warden's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CheckReply {
    pub decision: Decision,
    /// The deciding rule; empty when no rule matched and the default applied.
    pub rule: String,
    pub reason: String,
    /// The normalised action the decision is about.
    pub action: String,
    /// Every rule that matched, strictest first.
    pub matches: Vec<CheckMatch>,
}

/// `ProxyInfo()`: where the egress proxy listens and the CA that sandboxes trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ProxyInfo {
    /// Whether the proxy runs (`[proxy] enabled`).
    pub enabled: bool,
    /// The unix socket sandboxd relays sandbox connections to; each connection starts with
    /// `stakpak-session <id>\n`.
    pub socket: String,
    /// The TCP listener (`[proxy] listen`), `host:port`; empty when none.
    pub tcp: String,
    /// The interception CA certificate, PEM.
    pub ca_pem: String,
}

/// `RequestLog(query)`: which recorded requests to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RequestLogQuery {
    /// Only requests and connections that were refused.
    pub blocked_only: bool,
    /// Fill [`RequestLogEntry::detail`].
    pub detailed: bool,
    /// The newest this many; 0: 100.
    pub limit: u32,
}

/// One request the egress proxy blocked or inspected, from the warden's audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RequestLogEntry {
    /// Its row in `<warden state>/audit.db`.
    pub seq: u64,
    /// Unix milliseconds.
    pub ts_ms: i64,
    pub outcome: RequestOutcome,
    /// The verdict; none for a connection refused before any rule was asked.
    pub decision: crate::wire::Opt<Decision>,
    pub rule: String,
    pub reason: String,
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query; empty for `CONNECT`.
    pub path: String,
    pub operation: String,
    /// The status the client got.
    pub status: u16,
    pub duration_ms: u64,
    pub session: String,
    /// With `detailed`: headers (credentials masked) and bodies (redacted by secretd) as a
    /// JSON object; empty otherwise or when none was recorded.
    pub detail: String,
}
