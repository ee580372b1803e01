//! The D-Bus side of the daemon: turns each call's wire structs into the core's own types,
//! hands it to the executor, the task registry or the file tools, and turns their answers
//! back. The only place a core [`Error`] becomes a D-Bus error.

use stakpak_daemon::ControlHandle;
use stakpak_proto::{
    Backend as WireBackend, Caller, ChangeInfo, ChangeKind, Error as WireError, ExecReply,
    ExecRequest, NetworkMode, SandboxHandler, TaskDetails, TaskInfo, ViewKind, ViewReply,
    ViewRequest, zbus::OwnedFd,
};
use stakpak_sandbox::docker::DockerError;

use crate::{
    changes::{Change, Kind},
    config::Backend,
    error::Error,
    exec::{Executor, Net, Reply, Request},
    files::{Files, Shown, ViewAsk, Viewed},
    peers::{Bus, PeerError},
    tasks::{Task, TaskDetail, Tasks},
};

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

fn bus(caller: &Caller) -> Bus {
    Bus::new(caller.connection.clone(), caller.name.clone())
}

/// The D-Bus error of a core error: its name says what kind of failure it is (the caller's
/// request, a refusal, something missing, sandboxd itself), its message is the error's.
fn to_wire(e: Error) -> WireError {
    let message = e.to_string();
    match e {
        Error::InvalidArgument(_) | Error::Peer(PeerError::Unresolvable(_)) => {
            WireError::InvalidArgument(message)
        }
        Error::Refused { .. } | Error::PathDenied { .. } => WireError::PermissionDenied(message),
        Error::Docker(
            DockerError::EngineAbsent { .. }
            | DockerError::Engine { .. }
            | DockerError::ImageMissing { .. }
            | DockerError::ImageUnsuitable { .. },
        ) => WireError::Unavailable(message),
        Error::Docker(
            DockerError::BadSession(_) | DockerError::BadCwd(_) | DockerError::MissingCwd(_),
        ) => WireError::InvalidArgument(message),
        Error::NotWritten(_) | Error::Peer(_) | Error::Unavailable(_) => {
            WireError::Unavailable(message)
        }
        Error::Docker(_) | Error::Changes(_) | Error::Internal(_) => WireError::Internal(message),
    }
}

fn request(r: ExecRequest) -> Request {
    Request {
        session: r.session,
        command: r.command,
        workdir: r.workdir,
        timeout_ms: r.timeout_ms,
        network: r.network.get().map(|n| match n {
            NetworkMode::None => Net::None,
            NetworkMode::Host => Net::Host,
            NetworkMode::Proxied => Net::Proxied,
            NetworkMode::Bridge => Net::Bridge,
        }),
        backend: r.backend.get().map(|b| match b {
            WireBackend::Local => Backend::Local,
            WireBackend::Docker => Backend::Docker,
        }),
        env: r.env,
    }
}

fn exec_reply(r: Reply) -> ExecReply {
    ExecReply {
        status: r.status,
        code: r.code,
        stdout: r.stdout,
        stderr: r.stderr,
        truncated: r.truncated,
        decision: r.decision.into(),
        rule: r.rule,
        reason: r.reason,
        exec_id: r.exec_id,
        duration_ms: r.duration_ms,
        artifact: r.artifact,
    }
}

fn task_info(t: Task) -> TaskInfo {
    TaskInfo {
        id: t.id,
        session: t.session,
        command: t.command,
        state: t.state,
        code: t.code,
        started_ms: t.started_ms,
        ended_ms: t.ended_ms,
        decision: t.decision.into(),
        rule: t.rule,
        reason: t.reason,
        output_bytes: t.output_bytes,
    }
}

fn task_details(d: TaskDetail) -> TaskDetails {
    TaskDetails {
        info: task_info(d.task),
        tail: d.tail,
        output_path: d.output_path,
    }
}

fn view_ask(r: ViewRequest) -> ViewAsk {
    ViewAsk {
        session: r.session,
        path: r.path,
        start_line: r.start_line,
        end_line: r.end_line,
        max_bytes: r.max_bytes,
        depth: r.depth,
        grep: r.grep,
    }
}

fn view_reply(v: Viewed) -> ViewReply {
    ViewReply {
        kind: match v.shown {
            Shown::File => ViewKind::File,
            Shown::Dir => ViewKind::Dir,
            Shown::Grep => ViewKind::Grep,
        },
        content: v.content,
        truncated: v.truncated,
        total: v.total,
    }
}

fn change_info(c: Change) -> ChangeInfo {
    ChangeInfo {
        kind: match c.kind {
            Kind::Create => ChangeKind::Create,
            Kind::Edit => ChangeKind::Edit,
            Kind::Remove => ChangeKind::Remove,
        },
        id: c.id,
        session: c.session,
        path: c.path,
        created_ms: c.created_ms,
        reverted_ms: c.reverted_ms,
        summary: c.summary,
    }
}

stakpak_daemon::control_through!(Handler, control);

impl SandboxHandler for Handler {
    async fn exec(&self, request: ExecRequest, caller: Caller) -> Result<ExecReply, WireError> {
        self.executor
            .exec(self::request(request), &bus(&caller), None)
            .await
            .map(exec_reply)
            .map_err(to_wire)
    }

    async fn exec_stream(
        &self,
        request: ExecRequest,
        stdout: OwnedFd,
        stderr: OwnedFd,
        caller: Caller,
    ) -> Result<ExecReply, WireError> {
        self.executor
            .exec(
                self::request(request),
                &bus(&caller),
                Some((stdout.into(), stderr.into())),
            )
            .await
            .map(exec_reply)
            .map_err(to_wire)
    }

    async fn start_task(
        &self,
        request: ExecRequest,
        caller: Caller,
    ) -> Result<TaskInfo, WireError> {
        self.tasks
            .start(self::request(request), &bus(&caller))
            .await
            .map(task_info)
            .map_err(to_wire)
    }

    async fn list_tasks(
        &self,
        session: String,
        _caller: Caller,
    ) -> Result<Vec<TaskInfo>, WireError> {
        Ok(self
            .tasks
            .list(&session)
            .into_iter()
            .map(task_info)
            .collect())
    }

    async fn task_details(
        &self,
        id: String,
        tail_bytes: u64,
        _caller: Caller,
    ) -> Result<TaskDetails, WireError> {
        self.tasks
            .details(&id, tail_bytes)
            .map(task_details)
            .map_err(to_wire)
    }

    async fn wait_tasks(
        &self,
        ids: Vec<String>,
        timeout_ms: u64,
        _caller: Caller,
    ) -> Result<Vec<TaskInfo>, WireError> {
        self.tasks
            .wait(&ids, timeout_ms)
            .await
            .map(|tasks| tasks.into_iter().map(task_info).collect())
            .map_err(to_wire)
    }

    async fn cancel_task(&self, id: String, _caller: Caller) -> Result<TaskInfo, WireError> {
        self.tasks.cancel(&id).await.map(task_info).map_err(to_wire)
    }

    async fn view(&self, request: ViewRequest, caller: Caller) -> Result<ViewReply, WireError> {
        self.files
            .view(view_ask(request), &bus(&caller))
            .await
            .map(view_reply)
            .map_err(to_wire)
    }

    async fn create(
        &self,
        session: String,
        path: String,
        content: String,
        caller: Caller,
    ) -> Result<ChangeInfo, WireError> {
        self.files
            .create(session, path, content, &bus(&caller))
            .await
            .map(change_info)
            .map_err(to_wire)
    }

    async fn str_replace(
        &self,
        session: String,
        path: String,
        old: String,
        new: String,
        replace_all: bool,
        caller: Caller,
    ) -> Result<ChangeInfo, WireError> {
        self.files
            .str_replace(session, path, old, new, replace_all, &bus(&caller))
            .await
            .map(change_info)
            .map_err(to_wire)
    }

    async fn remove(
        &self,
        session: String,
        path: String,
        caller: Caller,
    ) -> Result<ChangeInfo, WireError> {
        self.files
            .remove(session, path, &bus(&caller))
            .await
            .map(change_info)
            .map_err(to_wire)
    }

    async fn changes(
        &self,
        session: String,
        _caller: Caller,
    ) -> Result<Vec<ChangeInfo>, WireError> {
        self.files
            .changes(session)
            .await
            .map(|changes| changes.into_iter().map(change_info).collect())
            .map_err(to_wire)
    }

    async fn revert(&self, change_id: String, caller: Caller) -> Result<ChangeInfo, WireError> {
        self.files
            .revert(change_id, &bus(&caller))
            .await
            .map(change_info)
            .map_err(to_wire)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The engine or image being unusable is `Unavailable` (an operator fixes it, not the
    /// caller); the messages name the socket or image.
    #[test]
    fn engine_and_image_problems_are_unavailable() {
        let absent = to_wire(Error::Docker(DockerError::EngineAbsent {
            socket: PathBuf::from("/nope.sock"),
        }));
        assert!(
            matches!(&absent, WireError::Unavailable(m) if m.contains("/nope.sock")),
            "{absent:?}"
        );
        let image = to_wire(Error::Docker(DockerError::ImageMissing {
            image: "img:9".into(),
        }));
        assert!(
            matches!(&image, WireError::Unavailable(m) if m.contains("img:9")),
            "{image:?}"
        );
    }

    #[test]
    fn unresolvable_placeholders_are_the_callers_doing() {
        let e = to_wire(Error::Peer(PeerError::Unresolvable("unknown x".into())));
        assert_eq!(
            e,
            WireError::InvalidArgument("the placeholders could not be resolved: unknown x".into())
        );
        let e = to_wire(Error::NotWritten(PeerError::ResolveTimeout(5)));
        assert_eq!(
            e,
            WireError::Unavailable(
                "secretd did not resolve the placeholders within 5 ms; nothing was written".into()
            )
        );
    }
}
