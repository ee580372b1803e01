//! Calls to the other daemons: sandboxd runs checks, the agent runs sessions, secretd gives
//! the channels' tokens. Only this module builds their proxies; every call goes over schedd's
//! own bus connection, is bounded by a timeout and fails as a [`PeerError`].

use std::{future::Future, time::Duration};

use stakpak_daemon::OwnConnection;
use stakpak_proto::{
    AgentProxy, Daemon, ExecReply, ExecRequest, SandboxProxy, SecretsProxy, SessionDetail,
    SessionInfo, StartRequest, ToolCallInfo, zbus,
};
use tokio::time::Instant;

/// How long a run waits for a daemon to appear on the bus (they start with schedd in the
/// embedded suite).
const APPEAR_WAIT: Duration = Duration::from_secs(15);
/// Longest wait for the answer to a call that returns at once (`Start`, `Approve`,
/// `Reveal` …).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Added to the time a call may take by its own limit (a check's timeout, a `WaitSession`
/// slice), so the peer's own limit answers first.
const MARGIN: Duration = Duration::from_secs(30);

/// Why a call to another daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("schedd is stopping")]
    Stopping,
    #[error("{0} is not on the bus")]
    Absent(&'static str),
    /// The proxy could not be made, or the bus could not be asked.
    #[error("{0}")]
    Bus(#[from] zbus::Error),
    /// The daemon answered with an error.
    #[error("{0}")]
    Call(#[source] stakpak_proto::Error),
    #[error("{peer} did not answer {call} within {} s", .after.as_secs())]
    TimedOut {
        peer: &'static str,
        call: &'static str,
        after: Duration,
    },
}

impl PeerError {
    /// The message of the error without the D-Bus error name in front.
    pub fn message(&self) -> String {
        use stakpak_proto::Error as E;
        match self {
            PeerError::Call(source) => match source {
                E::InvalidConfig(m)
                | E::InvalidArgument(m)
                | E::PermissionDenied(m)
                | E::Unavailable(m)
                | E::Internal(m) => m.clone(),
                E::ZBus(z) => z.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// Runs `call` against `peer` within `after`.
async fn bounded<T>(
    peer: Daemon,
    call: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, stakpak_proto::Error>>,
) -> Result<T, PeerError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(PeerError::Call(source)),
        Err(_) => Err(PeerError::TimedOut {
            peer: peer.short_name(),
            call,
            after,
        }),
    }
}

/// The other daemons, reached over schedd's own connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Peers {
    own: OwnConnection,
}

impl Peers {
    pub fn new(own: OwnConnection) -> Peers {
        Peers { own }
    }

    /// The connection, once schedd owns its name.
    async fn connection(&self) -> Result<zbus::Connection, PeerError> {
        self.own.get().await.ok_or(PeerError::Stopping)
    }

    /// Waits until `daemon` owns its name, for a while.
    pub async fn wait_for(&self, daemon: Daemon) -> Result<(), PeerError> {
        let conn = self.connection().await?;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
        let name = daemon.bus_name();
        let deadline = Instant::now() + APPEAR_WAIT;
        loop {
            let bus_name = zbus::names::BusName::try_from(name)?;
            if dbus.name_has_owner(bus_name).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Absent(name));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn sandbox(&self) -> Result<Sandbox, PeerError> {
        let conn = self.connection().await?;
        Ok(Sandbox(SandboxProxy::new(&conn).await?))
    }

    pub async fn agent(&self) -> Result<Agent, PeerError> {
        let conn = self.connection().await?;
        Ok(Agent(AgentProxy::new(&conn).await?))
    }

    pub async fn secrets(&self) -> Result<Secrets, PeerError> {
        let conn = self.connection().await?;
        Ok(Secrets(SecretsProxy::new(&conn).await?))
    }
}

/// sandboxd's `Sandbox1`.
#[derive(Debug, Clone)]
pub struct Sandbox(SandboxProxy<'static>);

impl Sandbox {
    /// Runs a command; waits its own timeout and a margin.
    pub async fn exec(&self, request: ExecRequest) -> Result<ExecReply, PeerError> {
        let after = Duration::from_millis(request.timeout_ms).saturating_add(MARGIN);
        bounded(Daemon::Sandbox, "Exec", after, self.0.exec(request)).await
    }
}

/// The agent's `Agent1`.
#[derive(Debug, Clone)]
pub struct Agent(AgentProxy<'static>);

impl Agent {
    pub async fn start(&self, request: StartRequest) -> Result<SessionInfo, PeerError> {
        bounded(Daemon::Agent, "Start", CALL_TIMEOUT, self.0.start(request)).await
    }

    pub async fn approve(
        &self,
        session: &str,
        ids: Vec<String>,
    ) -> Result<Vec<ToolCallInfo>, PeerError> {
        let call = self.0.approve(session.to_owned(), ids);
        bounded(Daemon::Agent, "Approve", CALL_TIMEOUT, call).await
    }

    pub async fn reject(
        &self,
        session: &str,
        ids: Vec<String>,
        reason: &str,
    ) -> Result<Vec<ToolCallInfo>, PeerError> {
        let call = self.0.reject(session.to_owned(), ids, reason.to_owned());
        bounded(Daemon::Agent, "Reject", CALL_TIMEOUT, call).await
    }

    pub async fn cancel(&self, session: &str) -> Result<(), PeerError> {
        let call = self.0.cancel(session.to_owned());
        bounded(Daemon::Agent, "Cancel", CALL_TIMEOUT, call)
            .await
            .map(drop)
    }

    /// Waits until the session is not `running`, at most `timeout_ms` and a margin. With 0
    /// the agent sets no limit and neither does this: the call lasts as long as the session
    /// runs (it returns at once while approval is pending).
    pub async fn wait_session(&self, id: &str, timeout_ms: u64) -> Result<SessionInfo, PeerError> {
        let call = self.0.wait_session(id.to_owned(), timeout_ms);
        if timeout_ms == 0 {
            return call.await.map_err(PeerError::Call);
        }
        let after = Duration::from_millis(timeout_ms).saturating_add(MARGIN);
        bounded(Daemon::Agent, "WaitSession", after, call).await
    }

    pub async fn show_session(&self, id: &str) -> Result<SessionDetail, PeerError> {
        let call = self.0.show_session(id.to_owned());
        bounded(Daemon::Agent, "ShowSession", CALL_TIMEOUT, call).await
    }
}

/// secretd's `Secrets1`.
#[derive(Debug, Clone)]
pub struct Secrets(SecretsProxy<'static>);

impl Secrets {
    /// The value of secret `name` for `consumer`.
    pub async fn reveal(&self, name: &str, consumer: &str) -> Result<String, PeerError> {
        let call = self.0.reveal(name.to_owned(), consumer.to_owned());
        bounded(Daemon::Secrets, "Reveal", CALL_TIMEOUT, call).await
    }
}
