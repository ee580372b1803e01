//! The daemons a session calls, each built here with its timeout and its error mapping: the
//! warden (an advisory verdict on a command), secretd (redacting prompts, keeping generated
//! passwords) and sandboxd (every side effect, see `tools.rs`).

use std::time::Duration;

use stakpak_proto::{
    CheckKind, CheckRequest, Decision, Error, SandboxProxy, SecretsProxy, WardenProxy, zbus,
};

/// Why a call to a peer brought no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// It could not be reached, or it refused or failed the call.
    #[error("{0}")]
    Call(#[from] Error),
    /// It did not answer within `[peers] timeout_ms`.
    #[error("it did not answer")]
    Timeout,
}

impl From<zbus::Error> for PeerError {
    fn from(e: zbus::Error) -> Self {
        PeerError::Call(e.into())
    }
}

/// The warden's advisory verdict on a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub decision: Decision,
    /// The deciding rule; empty when the default applied.
    pub rule: String,
    pub reason: String,
}

/// The peers of one session's loop.
#[derive(Debug, Clone)]
pub struct Peers {
    conn: zbus::Connection,
    session: String,
    /// For the warden and secretd; sandboxd's calls carry their own timeouts.
    timeout: Duration,
}

impl Peers {
    pub fn new(conn: zbus::Connection, session: &str, timeout_ms: u64) -> Self {
        Peers {
            conn,
            session: session.to_string(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, PeerError>>,
    ) -> Result<T, PeerError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(PeerError::Timeout))
    }

    /// The warden's verdict on a shell command of this session.
    pub async fn check_command(&self, command: &str) -> Result<Judgement, PeerError> {
        self.bounded(async {
            let warden = WardenProxy::new(&self.conn).await?;
            let reply = warden
                .check(CheckRequest {
                    kind: CheckKind::Command,
                    subject: command.to_string(),
                    session: self.session.clone(),
                })
                .await?;
            Ok(Judgement {
                decision: reply.decision,
                rule: reply.rule,
                reason: reply.reason,
            })
        })
        .await
    }

    /// A prompt, redacted by secretd, which remembers what it found in the session.
    pub async fn register(&self, text: &str) -> Result<String, PeerError> {
        self.bounded(async {
            let secrets = SecretsProxy::new(&self.conn).await?;
            let reply = secrets
                .register(self.session.clone(), text.to_string())
                .await?;
            Ok(reply.redacted)
        })
        .await
    }

    /// Hands secretd a value to keep in the session; the answer is its placeholder.
    pub async fn remember(&self, rule: &str, value: String) -> Result<String, PeerError> {
        self.bounded(async {
            let secrets = SecretsProxy::new(&self.conn).await?;
            Ok(secrets
                .remember(self.session.clone(), rule.to_string(), value)
                .await?)
        })
        .await
    }

    /// sandboxd, for `tools.rs`. No timeout here: a command runs as long as its own allows.
    pub async fn sandbox(&self) -> zbus::Result<SandboxProxy<'static>> {
        SandboxProxy::new(&self.conn).await
    }

    /// The session the calls are made for.
    pub fn session(&self) -> &str {
        &self.session
    }
}
