//! The D-Bus side of the daemon: hands each call to the session manager.

use stakpak_daemon::ControlHandle;
use stakpak_proto::{
    AgentHandler, Caller, DaemonControl, DaemonStatus, Error, SessionDetail, SessionInfo,
    StartRequest, ToolCallInfo,
};

use crate::session::Manager;

/// Behind `dev.stakpak.Agent1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
    sessions: Manager,
}

impl Handler {
    pub(crate) fn new(control: ControlHandle, sessions: Manager) -> Self {
        Handler { control, sessions }
    }
}

impl DaemonControl for Handler {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.control.status().await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.control.reload().await
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    if crate::session::valid_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "session {id:?} is not 1 to 64 of A-Z a-z 0-9 _ -"
        )))
    }
}

impl AgentHandler for Handler {
    async fn start(&self, request: StartRequest, caller: Caller) -> Result<SessionInfo, Error> {
        self.sessions.start(request, &caller).await
    }

    async fn approve(
        &self,
        session: String,
        ids: Vec<String>,
        caller: Caller,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        check_id(&session)?;
        self.sessions
            .approve_or_reject(&session, ids, None, &caller)
            .await
    }

    async fn reject(
        &self,
        session: String,
        ids: Vec<String>,
        reason: String,
        caller: Caller,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        check_id(&session)?;
        self.sessions
            .approve_or_reject(&session, ids, Some(reason), &caller)
            .await
    }

    async fn cancel(&self, session: String, caller: Caller) -> Result<SessionInfo, Error> {
        check_id(&session)?;
        self.sessions.cancel(&session, &caller.connection).await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        self.sessions.list()
    }

    async fn show_session(&self, id: String) -> Result<SessionDetail, Error> {
        check_id(&id)?;
        self.sessions.show(&id)
    }

    async fn wait_session(&self, id: String, timeout_ms: u64) -> Result<SessionInfo, Error> {
        check_id(&id)?;
        self.sessions.wait(&id, timeout_ms).await
    }
}
