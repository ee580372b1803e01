//! The five daemon interfaces and their proxies.
//!
//! Each interface is a generic struct over a handler trait: the daemon implements the trait in
//! its own `dbus` module and keeps its logic away from zbus types. The `#[interface]` macro
//! also generates the client proxy, so the method list exists once.

use std::future::Future;

use zbus::interface;

use zbus::OwnedFd;

use crate::{
    Caller, ChangeInfo, ChannelInfo, ChannelSpec, CheckReply, CheckRequest, DaemonStatus, Error,
    ExecReply, ExecRequest, RedactReply, ResolveReply, ResolveRequest, RunInfo, ScheduleInfo,
    ScheduleSpec, SchedulerStatus, SecretInfo, SessionDetail, SessionInfo, SetRequest,
    StartRequest, TaskDetails, TaskInfo, ToolCallInfo, ViewReply, ViewRequest,
};
use crate::{ProxyInfo, RequestLogEntry, RequestLogQuery};

/// Methods every daemon answers.
pub trait DaemonControl: Send + Sync + 'static {
    /// Version, pid, uptime, state and sandboxing of the daemon.
    fn status(&self) -> impl Future<Output = Result<DaemonStatus, Error>> + Send;
    /// Re-reads the configuration; a bad file leaves the running one in place and fails.
    fn reload(&self) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Handler behind `dev.stakpak.Agent1`.
pub trait AgentHandler: DaemonControl {
    /// Starts a session (or more of one) and returns at once; its events are signals on
    /// [`crate::session_path`].
    fn start(
        &self,
        request: StartRequest,
        caller: Caller,
    ) -> impl Future<Output = Result<SessionInfo, Error>> + Send;
    /// Approves waiting tool calls (`ids` empty: all of the session's).
    fn approve(
        &self,
        session: String,
        ids: Vec<String>,
        caller: Caller,
    ) -> impl Future<Output = Result<Vec<ToolCallInfo>, Error>> + Send;
    /// Rejects waiting tool calls (`ids` empty: all); the model gets `reason`.
    fn reject(
        &self,
        session: String,
        ids: Vec<String>,
        reason: String,
        caller: Caller,
    ) -> impl Future<Output = Result<Vec<ToolCallInfo>, Error>> + Send;
    /// Stops a session's loop; running tools are cancelled.
    fn cancel(
        &self,
        session: String,
        caller: Caller,
    ) -> impl Future<Output = Result<SessionInfo, Error>> + Send;
    /// Every session, newest first.
    fn list_sessions(&self) -> impl Future<Output = Result<Vec<SessionInfo>, Error>> + Send;
    /// One session with its messages and tool calls.
    fn show_session(&self, id: String)
    -> impl Future<Output = Result<SessionDetail, Error>> + Send;
    /// Waits until the session is no longer `running` (or `timeout_ms` passed; 0: no limit).
    fn wait_session(
        &self,
        id: String,
        timeout_ms: u64,
    ) -> impl Future<Output = Result<SessionInfo, Error>> + Send;
}
/// Handler behind `dev.stakpak.Warden1`.
pub trait WardenHandler: DaemonControl {
    /// Judges one action for the bus peer `caller`.
    fn check(
        &self,
        request: CheckRequest,
        caller: String,
    ) -> impl Future<Output = Result<CheckReply, Error>> + Send;
    /// Where the egress proxy listens, and its CA.
    fn proxy_info(&self) -> impl Future<Output = Result<ProxyInfo, Error>> + Send;
    /// The egress proxy's recorded requests, newest last.
    fn request_log(
        &self,
        query: RequestLogQuery,
    ) -> impl Future<Output = Result<Vec<RequestLogEntry>, Error>> + Send;
}
/// Handler behind `dev.stakpak.Secrets1`. Every method learns its [`Caller`] from the bus.
pub trait SecretsHandler: DaemonControl {
    /// Stores a secret, replacing one of the same name.
    fn set(
        &self,
        request: SetRequest,
        caller: Caller,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Removes a secret.
    fn delete(
        &self,
        name: String,
        caller: Caller,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Every secret's name, times and consumers; never a value.
    fn list(&self, caller: Caller) -> impl Future<Output = Result<Vec<SecretInfo>, Error>> + Send;
    /// Redacts a text (command output, a file read): known values and detected ones.
    fn redact(
        &self,
        session: String,
        text: String,
        caller: Caller,
    ) -> impl Future<Output = Result<RedactReply, Error>> + Send;
    /// Redacts a user prompt, keeping what it detects in the session for later resolution.
    fn register(
        &self,
        session: String,
        text: String,
        caller: Caller,
    ) -> impl Future<Output = Result<RedactReply, Error>> + Send;
    /// Opens a redaction stream for one output channel; returns its id.
    fn open_stream(
        &self,
        session: String,
        caller: Caller,
    ) -> impl Future<Output = Result<String, Error>> + Send;
    /// Redacts the next chunk of a stream; may hold back a few bytes for the next one.
    fn redact_chunk(
        &self,
        stream: String,
        chunk: Vec<u8>,
        caller: Caller,
    ) -> impl Future<Output = Result<Vec<u8>, Error>> + Send;
    /// Ends a stream, returning what it held back, redacted.
    fn close_stream(
        &self,
        stream: String,
        caller: Caller,
    ) -> impl Future<Output = Result<Vec<u8>, Error>> + Send;
    /// Replaces placeholders by their values, for execution. Only sandboxd may call it.
    fn resolve(
        &self,
        request: ResolveRequest,
        caller: Caller,
    ) -> impl Future<Output = Result<ResolveReply, Error>> + Send;
    /// Keeps a value made outside (a generated password) in a session, under `rule`, and
    /// returns its placeholder; the value is redacted and resolvable in that session from now.
    fn remember(
        &self,
        session: String,
        rule: String,
        value: String,
        caller: Caller,
    ) -> impl Future<Output = Result<String, Error>> + Send;
    /// The value of a secret limited to `consumer`, for that daemon's own use (schedd's
    /// channel tokens). Only the connection owning that daemon's bus name may call it, and
    /// only for secrets whose consumers name it.
    fn reveal(
        &self,
        name: String,
        consumer: String,
        caller: Caller,
    ) -> impl Future<Output = Result<String, Error>> + Send;
}
/// Handler behind `dev.stakpak.Sandbox1`. The [`Caller`]'s connection is the daemon's own,
/// for its calls to warden and secretd.
pub trait SandboxHandler: DaemonControl {
    /// Runs one command, after the warden allowed it, and returns its redacted output.
    fn exec(
        &self,
        request: ExecRequest,
        caller: Caller,
    ) -> impl Future<Output = Result<ExecReply, Error>> + Send;
    /// Like `exec`, and also writes the redacted output to `stdout` and `stderr` as it comes.
    fn exec_stream(
        &self,
        request: ExecRequest,
        stdout: OwnedFd,
        stderr: OwnedFd,
        caller: Caller,
    ) -> impl Future<Output = Result<ExecReply, Error>> + Send;
    /// Starts a background task; returns at once.
    fn start_task(
        &self,
        request: ExecRequest,
        caller: Caller,
    ) -> impl Future<Output = Result<TaskInfo, Error>> + Send;
    /// Tasks of a session, or of every session when `session` is empty.
    fn list_tasks(
        &self,
        session: String,
        caller: Caller,
    ) -> impl Future<Output = Result<Vec<TaskInfo>, Error>> + Send;
    /// One task with the last `tail_bytes` (0: a default) of its redacted output.
    fn task_details(
        &self,
        id: String,
        tail_bytes: u64,
        caller: Caller,
    ) -> impl Future<Output = Result<TaskDetails, Error>> + Send;
    /// Waits until every task in `ids` has ended or `timeout_ms` passed; returns their state.
    fn wait_tasks(
        &self,
        ids: Vec<String>,
        timeout_ms: u64,
        caller: Caller,
    ) -> impl Future<Output = Result<Vec<TaskInfo>, Error>> + Send;
    /// Kills a task with every descendant.
    fn cancel_task(
        &self,
        id: String,
        caller: Caller,
    ) -> impl Future<Output = Result<TaskInfo, Error>> + Send;
    /// Reads a file, a directory tree or grep matches of the workspace, redacted.
    fn view(
        &self,
        request: ViewRequest,
        caller: Caller,
    ) -> impl Future<Output = Result<ViewReply, Error>> + Send;
    /// Creates or overwrites a file, after the warden allowed the write.
    fn create(
        &self,
        session: String,
        path: String,
        content: String,
        caller: Caller,
    ) -> impl Future<Output = Result<ChangeInfo, Error>> + Send;
    /// Replaces `old` by `new`: exactly one match unless `replace_all`.
    fn str_replace(
        &self,
        session: String,
        path: String,
        old: String,
        new: String,
        replace_all: bool,
        caller: Caller,
    ) -> impl Future<Output = Result<ChangeInfo, Error>> + Send;
    /// Moves a file or directory to the session's backups.
    fn remove(
        &self,
        session: String,
        path: String,
        caller: Caller,
    ) -> impl Future<Output = Result<ChangeInfo, Error>> + Send;
    /// The changeset of a session, or of every session when `session` is empty.
    fn changes(
        &self,
        session: String,
        caller: Caller,
    ) -> impl Future<Output = Result<Vec<ChangeInfo>, Error>> + Send;
    /// Restores the exact bytes and mode from before a change.
    fn revert(
        &self,
        change_id: String,
        caller: Caller,
    ) -> impl Future<Output = Result<ChangeInfo, Error>> + Send;
}
/// Handler behind `dev.stakpak.Scheduler1`.
pub trait SchedulerHandler: DaemonControl {
    /// Adds a schedule (stored in schedd's database); a taken name is an error.
    fn add_schedule(
        &self,
        spec: ScheduleSpec,
    ) -> impl Future<Output = Result<ScheduleInfo, Error>> + Send;
    /// Removes a schedule added through `AddSchedule`; its history stays.
    fn remove_schedule(&self, name: String) -> impl Future<Output = Result<(), Error>> + Send;
    /// Enables or disables a schedule.
    fn enable_schedule(
        &self,
        name: String,
        enabled: bool,
    ) -> impl Future<Output = Result<ScheduleInfo, Error>> + Send;
    /// Every schedule with its next firing and last run.
    fn list_schedules(&self) -> impl Future<Output = Result<Vec<ScheduleInfo>, Error>> + Send;
    /// Runs of a schedule, newest first (`limit` 0: a default).
    fn history(
        &self,
        name: String,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RunInfo>, Error>> + Send;
    /// Starts a run now; with `dry_run` only the check runs and nothing wakes the agent.
    fn trigger(
        &self,
        name: String,
        dry_run: bool,
    ) -> impl Future<Output = Result<RunInfo, Error>> + Send;
    /// One run.
    fn show_run(&self, id: String) -> impl Future<Output = Result<RunInfo, Error>> + Send;
    /// Deletes finished runs older than `older_than_days`; returns how many.
    fn clean(&self, older_than_days: u32) -> impl Future<Output = Result<u64, Error>> + Send;
    /// Schedules, rejected entries of `autopilot.toml`, runs in progress and channels.
    fn scheduler_status(&self) -> impl Future<Output = Result<SchedulerStatus, Error>> + Send;
    /// Adds a chat channel whose tokens are already in secretd (set for consumer schedd):
    /// checks them with the service, stores the channel and connects it.
    fn add_channel(
        &self,
        spec: ChannelSpec,
    ) -> impl Future<Output = Result<ChannelInfo, Error>> + Send;
    /// Disconnects and forgets a channel (its tokens stay in secretd).
    fn remove_channel(&self, kind: String) -> impl Future<Output = Result<(), Error>> + Send;
    /// Every channel with its connection state.
    fn list_channels(&self) -> impl Future<Output = Result<Vec<ChannelInfo>, Error>> + Send;
    /// Checks a channel's tokens with the service and, when `target` is set, posts a test
    /// message there; returns what was done.
    fn test_channel(
        &self,
        kind: String,
        target: String,
    ) -> impl Future<Output = Result<String, Error>> + Send;
}

/// `dev.stakpak.Agent1`: the agent loop.
#[derive(Debug)]
pub struct AgentInterface<H>(pub H);

#[interface(
    name = "dev.stakpak.Agent1",
    proxy(
        async_name = "AgentProxy",
        default_service = "dev.stakpak.Agent1",
        default_path = "/dev/stakpak/Agent1"
    )
)]
impl<H: AgentHandler> AgentInterface<H> {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.0.status().await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.0.reload().await
    }

    /// Starts a session, or continues one; returns at once.
    async fn start(
        &self,
        request: StartRequest,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<SessionInfo, Error> {
        self.0.start(request, caller(&header, connection)).await
    }

    /// Approves waiting tool calls (all when `ids` is empty).
    async fn approve(
        &self,
        session: String,
        ids: Vec<String>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        self.0
            .approve(session, ids, caller(&header, connection))
            .await
    }

    /// Rejects waiting tool calls (all when `ids` is empty).
    async fn reject(
        &self,
        session: String,
        ids: Vec<String>,
        reason: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        self.0
            .reject(session, ids, reason, caller(&header, connection))
            .await
    }

    /// Stops a session.
    async fn cancel(
        &self,
        session: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<SessionInfo, Error> {
        self.0.cancel(session, caller(&header, connection)).await
    }

    /// Every session, newest first.
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        self.0.list_sessions().await
    }

    /// A session with its messages and tool calls.
    async fn show_session(&self, id: String) -> Result<SessionDetail, Error> {
        self.0.show_session(id).await
    }

    /// Waits until the session is not `running`, at most `timeout_ms` (0: no limit).
    async fn wait_session(&self, id: String, timeout_ms: u64) -> Result<SessionInfo, Error> {
        self.0.wait_session(id, timeout_ms).await
    }

    /// Streamed assistant text of a session (on the session's path).
    #[zbus(signal)]
    pub async fn text_delta(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        session: &str,
        text: &str,
    ) -> zbus::Result<()>;

    /// A tool call was proposed or changed state (waiting for approval, running, done, …).
    #[zbus(signal)]
    pub async fn tool_call(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        call: ToolCallInfo,
    ) -> zbus::Result<()>;

    /// The session changed state (finished, paused, waiting for approval, …), with its usage.
    #[zbus(signal)]
    pub async fn session_changed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        info: SessionInfo,
    ) -> zbus::Result<()>;
}

/// `dev.stakpak.Warden1`: the policy decision point.
#[derive(Debug)]
pub struct WardenInterface<H>(pub H);

#[interface(
    name = "dev.stakpak.Warden1",
    proxy(
        async_name = "WardenProxy",
        default_service = "dev.stakpak.Warden1",
        default_path = "/dev/stakpak/Warden1"
    )
)]
impl<H: WardenHandler> WardenInterface<H> {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.0.status().await
    }

    /// Judges a command line or a file action against the loaded policy.
    async fn check(
        &self,
        request: CheckRequest,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<CheckReply, Error> {
        let caller = header.sender().map(|s| s.to_string()).unwrap_or_default();
        self.0.check(request, caller).await
    }

    /// Where the egress proxy listens and the CA sandboxes must trust.
    async fn proxy_info(&self) -> Result<ProxyInfo, Error> {
        self.0.proxy_info().await
    }

    /// Requests the egress proxy blocked or inspected, from the audit trail.
    async fn request_log(&self, query: RequestLogQuery) -> Result<Vec<RequestLogEntry>, Error> {
        self.0.request_log(query).await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.0.reload().await
    }
}

/// `dev.stakpak.Secrets1`: the vault and the redactor.
#[derive(Debug)]
pub struct SecretsInterface<H>(pub H);

#[interface(
    name = "dev.stakpak.Secrets1",
    proxy(
        async_name = "SecretsProxy",
        default_service = "dev.stakpak.Secrets1",
        default_path = "/dev/stakpak/Secrets1"
    )
)]
impl<H: SecretsHandler> SecretsInterface<H> {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.0.status().await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.0.reload().await
    }

    /// Stores a secret under `name` for `consumers` (empty: every consumer).
    async fn set(
        &self,
        name: String,
        value: String,
        consumers: Vec<String>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<(), Error> {
        let request = SetRequest {
            name,
            value,
            consumers,
        };
        self.0.set(request, caller(&header, connection)).await
    }

    /// Removes a secret.
    async fn delete(
        &self,
        name: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<(), Error> {
        self.0.delete(name, caller(&header, connection)).await
    }

    /// Every secret without its value.
    async fn list(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<SecretInfo>, Error> {
        self.0.list(caller(&header, connection)).await
    }

    /// Redacts `text`; values detected are kept in `session` (empty: in no session).
    async fn redact(
        &self,
        session: String,
        text: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<RedactReply, Error> {
        self.0
            .redact(session, text, caller(&header, connection))
            .await
    }

    /// Redacts a user prompt; values detected are kept in `session`.
    async fn register(
        &self,
        session: String,
        text: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<RedactReply, Error> {
        self.0
            .register(session, text, caller(&header, connection))
            .await
    }

    /// Opens a redaction stream owned by the caller; returns its id.
    async fn open_stream(
        &self,
        session: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<String, Error> {
        self.0
            .open_stream(session, caller(&header, connection))
            .await
    }

    /// Redacts the next chunk of a stream. Send the next chunk after this reply.
    async fn redact_chunk(
        &self,
        stream: String,
        chunk: Vec<u8>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<u8>, Error> {
        self.0
            .redact_chunk(stream, chunk, caller(&header, connection))
            .await
    }

    /// Ends a stream and returns the rest of its output.
    async fn close_stream(
        &self,
        stream: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<u8>, Error> {
        self.0
            .close_stream(stream, caller(&header, connection))
            .await
    }

    /// Keeps a value in a session's map and returns its placeholder.
    async fn remember(
        &self,
        session: String,
        rule: String,
        value: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<String, Error> {
        self.0
            .remember(session, rule, value, caller(&header, connection))
            .await
    }

    /// The value of secret `name`, limited to `consumer`, for that daemon itself.
    async fn reveal(
        &self,
        name: String,
        consumer: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<String, Error> {
        self.0
            .reveal(name, consumer, caller(&header, connection))
            .await
    }

    /// Placeholders in `text` back to their values (with `shell`, through the environment).
    async fn resolve(
        &self,
        session: String,
        text: String,
        shell: bool,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ResolveReply, Error> {
        let request = ResolveRequest {
            session,
            text,
            shell,
        };
        self.0.resolve(request, caller(&header, connection)).await
    }
}

/// The sender of a call, as the bus daemon stamped it on the message.
fn caller(header: &zbus::message::Header<'_>, connection: &zbus::Connection) -> Caller {
    Caller {
        name: header.sender().map(|s| s.to_string()).unwrap_or_default(),
        connection: connection.clone(),
    }
}

/// `dev.stakpak.Sandbox1`: the only place anything runs.
#[derive(Debug)]
pub struct SandboxInterface<H>(pub H);

#[interface(
    name = "dev.stakpak.Sandbox1",
    proxy(
        async_name = "SandboxProxy",
        default_service = "dev.stakpak.Sandbox1",
        default_path = "/dev/stakpak/Sandbox1"
    )
)]
impl<H: SandboxHandler> SandboxInterface<H> {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.0.status().await
    }

    /// Runs a shell command in the session's workspace: warden, secretd, sandbox, redaction.
    async fn exec(
        &self,
        request: ExecRequest,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ExecReply, Error> {
        self.0.exec(request, caller(&header, connection)).await
    }

    /// `Exec`, writing the redacted output to the two descriptors as it comes.
    async fn exec_stream(
        &self,
        request: ExecRequest,
        stdout: OwnedFd,
        stderr: OwnedFd,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ExecReply, Error> {
        self.0
            .exec_stream(request, stdout, stderr, caller(&header, connection))
            .await
    }

    /// Starts a background task.
    async fn start_task(
        &self,
        request: ExecRequest,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<TaskInfo, Error> {
        self.0
            .start_task(request, caller(&header, connection))
            .await
    }

    /// Background tasks of a session (all when empty).
    async fn list_tasks(
        &self,
        session: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<TaskInfo>, Error> {
        self.0
            .list_tasks(session, caller(&header, connection))
            .await
    }

    /// One task and the tail of its output.
    async fn task_details(
        &self,
        id: String,
        tail_bytes: u64,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<TaskDetails, Error> {
        self.0
            .task_details(id, tail_bytes, caller(&header, connection))
            .await
    }

    /// Waits for tasks to end, at most `timeout_ms`.
    async fn wait_tasks(
        &self,
        ids: Vec<String>,
        timeout_ms: u64,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<TaskInfo>, Error> {
        self.0
            .wait_tasks(ids, timeout_ms, caller(&header, connection))
            .await
    }

    /// Kills a task and every descendant.
    async fn cancel_task(
        &self,
        id: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<TaskInfo, Error> {
        self.0.cancel_task(id, caller(&header, connection)).await
    }

    /// Reads a file, a tree or grep matches, redacted.
    async fn view(
        &self,
        request: ViewRequest,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ViewReply, Error> {
        self.0.view(request, caller(&header, connection)).await
    }

    /// Creates or overwrites a file.
    async fn create(
        &self,
        session: String,
        path: String,
        content: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ChangeInfo, Error> {
        self.0
            .create(session, path, content, caller(&header, connection))
            .await
    }

    /// Replaces exactly one match (or all with `replace_all`).
    // The D-Bus arguments of the method, plus the two the macro injects.
    #[allow(clippy::too_many_arguments)]
    async fn str_replace(
        &self,
        session: String,
        path: String,
        old: String,
        new: String,
        replace_all: bool,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ChangeInfo, Error> {
        self.0
            .str_replace(
                session,
                path,
                old,
                new,
                replace_all,
                caller(&header, connection),
            )
            .await
    }

    /// Moves a path to the session's backups.
    async fn remove(
        &self,
        session: String,
        path: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ChangeInfo, Error> {
        self.0
            .remove(session, path, caller(&header, connection))
            .await
    }

    /// A session's changeset (all when empty).
    async fn changes(
        &self,
        session: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<Vec<ChangeInfo>, Error> {
        self.0.changes(session, caller(&header, connection)).await
    }

    /// Undoes one change.
    async fn revert(
        &self,
        change_id: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<ChangeInfo, Error> {
        self.0.revert(change_id, caller(&header, connection)).await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.0.reload().await
    }
}

/// `dev.stakpak.Scheduler1`: autopilot schedules and channels.
#[derive(Debug)]
pub struct SchedulerInterface<H>(pub H);

#[interface(
    name = "dev.stakpak.Scheduler1",
    proxy(
        async_name = "SchedulerProxy",
        default_service = "dev.stakpak.Scheduler1",
        default_path = "/dev/stakpak/Scheduler1"
    )
)]
impl<H: SchedulerHandler> SchedulerInterface<H> {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.0.status().await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.0.reload().await
    }

    /// Adds a schedule.
    async fn add_schedule(&self, spec: ScheduleSpec) -> Result<ScheduleInfo, Error> {
        self.0.add_schedule(spec).await
    }

    /// Removes a schedule added through `AddSchedule`.
    async fn remove_schedule(&self, name: String) -> Result<(), Error> {
        self.0.remove_schedule(name).await
    }

    /// Enables or disables a schedule.
    async fn enable_schedule(&self, name: String, enabled: bool) -> Result<ScheduleInfo, Error> {
        self.0.enable_schedule(name, enabled).await
    }

    /// Every schedule.
    async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>, Error> {
        self.0.list_schedules().await
    }

    /// Runs of a schedule, newest first.
    async fn history(&self, name: String, limit: u32) -> Result<Vec<RunInfo>, Error> {
        self.0.history(name, limit).await
    }

    /// Starts a run now (or only its check with `dry_run`).
    async fn trigger(&self, name: String, dry_run: bool) -> Result<RunInfo, Error> {
        self.0.trigger(name, dry_run).await
    }

    /// One run.
    async fn show_run(&self, id: String) -> Result<RunInfo, Error> {
        self.0.show_run(id).await
    }

    /// Deletes old finished runs.
    async fn clean(&self, older_than_days: u32) -> Result<u64, Error> {
        self.0.clean(older_than_days).await
    }

    /// Schedules, rejected entries, runs in progress and channels.
    async fn scheduler_status(&self) -> Result<SchedulerStatus, Error> {
        self.0.scheduler_status().await
    }

    /// Adds a chat channel (its tokens already in secretd).
    async fn add_channel(&self, spec: ChannelSpec) -> Result<ChannelInfo, Error> {
        self.0.add_channel(spec).await
    }

    /// Removes a chat channel.
    async fn remove_channel(&self, kind: String) -> Result<(), Error> {
        self.0.remove_channel(kind).await
    }

    /// Every chat channel.
    async fn list_channels(&self) -> Result<Vec<ChannelInfo>, Error> {
        self.0.list_channels().await
    }

    /// Checks a channel; with a target, posts a test message.
    async fn test_channel(&self, kind: String, target: String) -> Result<String, Error> {
        self.0.test_channel(kind, target).await
    }
}
