//! The D-Bus side of the daemon: validates calls and hands them to the executor.

use stakpak_daemon::ControlHandle;
use stakpak_proto::{
    Caller, DaemonControl, DaemonStatus, Error, ExecReply, ExecRequest, SandboxHandler,
};

use crate::exec::Executor;

/// Behind `dev.stakpak.Sandbox1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
    executor: Executor,
}

impl Handler {
    pub(crate) fn new(control: ControlHandle, executor: Executor) -> Self {
        Handler { control, executor }
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

impl SandboxHandler for Handler {
    async fn exec(&self, request: ExecRequest, caller: Caller) -> Result<ExecReply, Error> {
        self.executor
            .exec(request, &caller.name, &caller.connection)
            .await
    }
}
