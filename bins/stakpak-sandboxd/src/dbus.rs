//! The D-Bus side of the daemon: hands each call to the executor, the task registry or the
//! file tools.

use stakpak_daemon::ControlHandle;
use stakpak_proto::{
    Caller, ChangeInfo, DaemonControl, DaemonStatus, Error, ExecReply, ExecRequest, SandboxHandler,
    TaskDetails, TaskInfo, ViewReply, ViewRequest, zbus::OwnedFd,
};

use crate::{exec::Executor, files::Files, tasks::Tasks};

/// Behind `dev.stakpak.Sandbox1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
    executor: Executor,
    tasks: Tasks,
    files: Files,
}

impl Handler {
    pub(crate) fn new(
        control: ControlHandle,
        executor: Executor,
        tasks: Tasks,
        files: Files,
    ) -> Self {
        Handler {
            control,
            executor,
            tasks,
            files,
        }
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
        self.executor.exec(request, &caller, None).await
    }

    async fn exec_stream(
        &self,
        request: ExecRequest,
        stdout: OwnedFd,
        stderr: OwnedFd,
        caller: Caller,
    ) -> Result<ExecReply, Error> {
        self.executor
            .exec(request, &caller, Some((stdout.into(), stderr.into())))
            .await
    }

    async fn start_task(&self, request: ExecRequest, caller: Caller) -> Result<TaskInfo, Error> {
        self.tasks.start(request, &caller).await
    }

    async fn list_tasks(&self, session: String, _caller: Caller) -> Result<Vec<TaskInfo>, Error> {
        self.tasks.list(&session)
    }

    async fn task_details(
        &self,
        id: String,
        tail_bytes: u64,
        _caller: Caller,
    ) -> Result<TaskDetails, Error> {
        self.tasks.details(&id, tail_bytes)
    }

    async fn wait_tasks(
        &self,
        ids: Vec<String>,
        timeout_ms: u64,
        _caller: Caller,
    ) -> Result<Vec<TaskInfo>, Error> {
        self.tasks.wait(&ids, timeout_ms).await
    }

    async fn cancel_task(&self, id: String, _caller: Caller) -> Result<TaskInfo, Error> {
        self.tasks.cancel(&id).await
    }

    async fn view(&self, request: ViewRequest, caller: Caller) -> Result<ViewReply, Error> {
        self.files.view(request, &caller).await
    }

    async fn create(
        &self,
        session: String,
        path: String,
        content: String,
        caller: Caller,
    ) -> Result<ChangeInfo, Error> {
        self.files.create(session, path, content, &caller).await
    }

    async fn str_replace(
        &self,
        session: String,
        path: String,
        old: String,
        new: String,
        replace_all: bool,
        caller: Caller,
    ) -> Result<ChangeInfo, Error> {
        self.files
            .str_replace(session, path, old, new, replace_all, &caller)
            .await
    }

    async fn remove(
        &self,
        session: String,
        path: String,
        caller: Caller,
    ) -> Result<ChangeInfo, Error> {
        self.files.remove(session, path, &caller).await
    }

    async fn changes(&self, session: String, _caller: Caller) -> Result<Vec<ChangeInfo>, Error> {
        self.files.changes(session).await
    }

    async fn revert(&self, change_id: String, caller: Caller) -> Result<ChangeInfo, Error> {
        self.files.revert(change_id, &caller).await
    }
}
