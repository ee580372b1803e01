//! Calls to the other daemons: the only module that builds their proxies. Each call is
//! bounded by its timeout and fails closed, and its failures become [`PeerError`]s (or a
//! [`Refusal`] for the warden) here, with the messages replies have always carried.

use std::{collections::BTreeMap, collections::HashMap, time::Duration};

use stakpak_proto::{
    Caller, CheckKind, CheckRequest, Decision, Error as WireError, SecretsProxy, WardenProxy, zbus,
};
use stakpak_secrets::placeholder::may_hold_placeholder;

use crate::config::ExecConfig;

/// Rule id of a refusal because the warden gave no verdict.
pub const RULE_WARDEN_UNAVAILABLE: &str = "sandboxd.warden-unavailable";
/// Rule id of a refusal because secretd could not resolve the placeholders.
pub const RULE_SECRETD_UNAVAILABLE: &str = "sandboxd.secretd-unavailable";
/// Rule id of a refusal of an `ask` verdict (no approval flow in sandboxd).
pub const RULE_ASK_UNSUPPORTED: &str = "sandboxd.ask-unsupported";

/// The bus a call came in on, and who made it.
#[derive(Debug, Clone)]
pub(crate) struct Bus {
    connection: zbus::Connection,
    caller: String,
}

impl Bus {
    pub(crate) fn new(connection: zbus::Connection, caller: String) -> Self {
        Bus { connection, caller }
    }

    /// The caller's unique bus name (`:1.42`).
    pub(crate) fn caller(&self) -> &str {
        &self.caller
    }

    /// The caller's uid, from the bus daemon (which learnt it from the kernel).
    pub(crate) async fn caller_uid(&self) -> Option<u32> {
        stakpak_daemon::caller_uid(&Caller {
            name: self.caller.clone(),
            connection: self.connection.clone(),
        })
        .await
    }

    /// The other daemons, with the timeouts of `exec` (the configuration of this call).
    pub(crate) fn peers(&self, exec: &ExecConfig) -> Peers {
        Peers {
            connection: self.connection.clone(),
            warden_timeout: Duration::from_millis(exec.warden_timeout_ms),
            secretd_timeout: Duration::from_millis(exec.secretd_timeout_ms),
        }
    }
}

/// The warden and secretd, each call bounded by its timeout.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    connection: zbus::Connection,
    warden_timeout: Duration,
    secretd_timeout: Duration,
}

/// The warden's clear `allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub decision: Decision,
    pub rule: String,
    pub reason: String,
}

/// A refusal: the decision, the rule and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub decision: Decision,
    pub rule: String,
    pub reason: String,
}

/// Where the warden's egress proxy is, and its CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyInfo {
    pub enabled: bool,
    pub socket: String,
    pub tcp: String,
    pub ca_pem: String,
}

/// A command with its placeholders resolved: `command` refers to variables of `env`, and
/// the extra variables hold their values.
pub(crate) struct Resolved {
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub extra_env: BTreeMap<String, String>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secrets: names only.
        f.debug_struct("Resolved")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("extra_env", &self.extra_env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why another daemon gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// secretd refused the placeholders themselves (an unknown name): the caller's doing.
    #[error("the placeholders could not be resolved: {0}")]
    Unresolvable(String),
    #[error("secretd could not resolve the placeholders: {0}")]
    Resolve(String),
    #[error("secretd did not resolve the placeholders within {0} ms")]
    ResolveTimeout(u128),
    #[error("secretd could not resolve the command's placeholders: {0}")]
    ResolveCommand(String),
    #[error("secretd did not answer within {0} ms")]
    ResolveCommandTimeout(u128),
    #[error("secretd could not redact the output: {0}")]
    Redact(String),
    #[error("secretd did not redact the output within {0} ms")]
    RedactTimeout(u128),
    #[error("the warden did not say where its egress proxy is ({0})")]
    ProxyInfo(String),
    #[error("the warden did not say where its egress proxy is within {0} ms")]
    ProxyInfoTimeout(u128),
}

/// `call` bounded by `timeout`: its error through `failed`, the timeout through `late`.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, WireError>>,
    failed: impl FnOnce(WireError) -> PeerError,
    late: impl FnOnce(u128) -> PeerError,
) -> Result<T, PeerError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(e)),
        Err(_) => Err(late(timeout.as_millis())),
    }
}

impl Peers {
    async fn secrets(&self) -> Result<SecretsProxy<'_>, WireError> {
        SecretsProxy::new(&self.connection)
            .await
            .map_err(WireError::from)
    }

    /// Asks the warden about one action. `Ok` only for a clear `allow`; everything else
    /// (deny, ask, no answer, an answer that does not decode) is a [`Refusal`].
    pub(crate) async fn check(
        &self,
        kind: CheckKind,
        subject: &str,
        session: &str,
    ) -> Result<Verdict, Refusal> {
        let timeout = self.warden_timeout;
        let verdict = tokio::time::timeout(timeout, async {
            let warden = WardenProxy::new(&self.connection)
                .await
                .map_err(WireError::from)?;
            warden
                .check(CheckRequest {
                    kind,
                    subject: subject.into(),
                    session: session.into(),
                })
                .await
        })
        .await;
        let verdict = match verdict {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                return Err(Refusal {
                    decision: Decision::Deny,
                    rule: RULE_WARDEN_UNAVAILABLE.into(),
                    reason: format!("the warden gave no verdict ({e}); nothing runs without one"),
                });
            }
            Err(_) => {
                return Err(Refusal {
                    decision: Decision::Deny,
                    rule: RULE_WARDEN_UNAVAILABLE.into(),
                    reason: format!(
                        "the warden did not answer within {} ms; nothing runs without a verdict",
                        timeout.as_millis()
                    ),
                });
            }
        };
        match verdict.decision {
            Decision::Allow => Ok(Verdict {
                decision: verdict.decision,
                rule: verdict.rule,
                reason: verdict.reason,
            }),
            Decision::Ask => Err(Refusal {
                decision: Decision::Ask,
                rule: if verdict.rule.is_empty() {
                    RULE_ASK_UNSUPPORTED.into()
                } else {
                    verdict.rule
                },
                reason: format!(
                    "the warden asks for approval ({}); approvals are given to the agent, so \
                     sandboxd refuses it",
                    verdict.reason
                ),
            }),
            Decision::Deny => Err(Refusal {
                decision: Decision::Deny,
                rule: verdict.rule,
                reason: verdict.reason,
            }),
        }
    }

    /// Where the warden's egress proxy listens, and its CA.
    pub(crate) async fn proxy_info(&self) -> Result<ProxyInfo, PeerError> {
        let info = bounded(
            self.warden_timeout,
            async {
                let warden = WardenProxy::new(&self.connection)
                    .await
                    .map_err(WireError::from)?;
                warden.proxy_info().await
            },
            |e| PeerError::ProxyInfo(e.to_string()),
            PeerError::ProxyInfoTimeout,
        )
        .await?;
        Ok(ProxyInfo {
            enabled: info.enabled,
            socket: info.socket,
            tcp: info.tcp,
            ca_pem: info.ca_pem,
        })
    }

    /// A command's placeholders to values (through the environment), and those of the
    /// extra variables in place; one bound for all of it.
    pub(crate) async fn resolve_command(
        &self,
        session: &str,
        command: &str,
        extra: &HashMap<String, String>,
    ) -> Result<Resolved, PeerError> {
        bounded(
            self.secretd_timeout,
            async {
                let secrets = self.secrets().await?;
                let resolved = secrets
                    .resolve(session.to_string(), command.to_string(), true)
                    .await?;
                let mut extra_env = BTreeMap::new();
                for (name, value) in extra {
                    let value = if may_hold_placeholder(value) {
                        secrets
                            .resolve(session.to_string(), value.clone(), false)
                            .await?
                            .text
                    } else {
                        value.clone()
                    };
                    extra_env.insert(name.clone(), value);
                }
                Ok(Resolved {
                    command: resolved.text,
                    env: resolved.env,
                    extra_env,
                })
            },
            |e| PeerError::ResolveCommand(e.to_string()),
            PeerError::ResolveCommandTimeout,
        )
        .await
    }

    /// The placeholders of a plain text (not a shell command) to values; a text without any
    /// is returned as it is, without asking.
    pub(crate) async fn resolve_text(
        &self,
        session: &str,
        text: String,
    ) -> Result<String, PeerError> {
        if !may_hold_placeholder(&text) {
            return Ok(text);
        }
        bounded(
            self.secretd_timeout,
            async {
                let secrets = self.secrets().await?;
                secrets.resolve(session.to_string(), text, false).await
            },
            |e| match e {
                WireError::InvalidArgument(m) => PeerError::Unresolvable(m),
                e => PeerError::Resolve(e.to_string()),
            },
            PeerError::ResolveTimeout,
        )
        .await
        .map(|reply| reply.text)
    }

    /// Redacts a text; an error means the text must not leave sandboxd.
    pub(crate) async fn redact(&self, session: &str, text: String) -> Result<String, PeerError> {
        bounded(
            self.secretd_timeout,
            async {
                let secrets = self.secrets().await?;
                secrets.redact(session.to_string(), text).await
            },
            |e| PeerError::Redact(e.to_string()),
            PeerError::RedactTimeout,
        )
        .await
        .map(|reply| reply.redacted)
    }

    /// Redacts one chunk of a stream, opening the stream (for `session`) when there is none
    /// yet; returns the stream and the redacted bytes.
    pub(crate) async fn redact_chunk(
        &self,
        stream: Option<String>,
        session: &str,
        raw: Vec<u8>,
    ) -> Result<(String, Vec<u8>), PeerError> {
        bounded(
            self.secretd_timeout,
            async {
                let secrets = self.secrets().await?;
                let id = match stream {
                    Some(id) => id,
                    None => secrets.open_stream(session.to_string()).await?,
                };
                let redacted = secrets.redact_chunk(id.clone(), raw).await?;
                Ok((id, redacted))
            },
            |e| PeerError::Redact(e.to_string()),
            PeerError::RedactTimeout,
        )
        .await
    }

    /// Closes a stream, returning what it held back, redacted.
    pub(crate) async fn close_stream(&self, stream: String) -> Result<Vec<u8>, PeerError> {
        bounded(
            self.secretd_timeout,
            async {
                let secrets = self.secrets().await?;
                secrets.close_stream(stream).await
            },
            |e| PeerError::Redact(e.to_string()),
            PeerError::RedactTimeout,
        )
        .await
    }
}
