//! Every D-Bus interface, proxy, wire struct, bus name, object path and error name of the
//! suite, defined once.
//!
//! This crate has no business logic. A daemon implements one of the `*Handler` traits in its
//! own `dbus` module and serves the matching `*Interface` struct; clients use the generated
//! `*Proxy` types. Interfaces are versioned by name (`dev.stakpak.Warden1`): an incompatible
//! change gets a new name, never a changed signature.

mod agent;
mod error;
mod interfaces;
mod names;
mod sandbox;
mod scheduler;
mod secrets;
mod status;
mod warden;

pub use agent::{
    MessageInfo, SessionDetail, SessionInfo, StartRequest, ToolCallInfo, session_path,
    session_state,
};
pub use error::{ERROR_PREFIX, Error};
pub use interfaces::{
    AgentHandler, AgentInterface, AgentProxy, DaemonControl, SandboxHandler, SandboxInterface,
    SandboxProxy, SchedulerHandler, SchedulerInterface, SchedulerProxy, SecretsHandler,
    SecretsInterface, SecretsProxy, WardenHandler, WardenInterface, WardenProxy,
};
pub use names::Daemon;
pub use sandbox::{
    ChangeInfo, ExecReply, ExecRequest, TaskDetails, TaskInfo, ViewReply, ViewRequest, exec_status,
};
pub use scheduler::{
    ChannelInfo, ChannelSpec, RunInfo, ScheduleInfo, ScheduleSpec, SchedulerStatus, channel_state,
    run_outcome,
};
pub use secrets::{
    Caller, Detection, RedactReply, ResolveReply, ResolveRequest, SecretInfo, SetRequest,
};
pub use status::{DaemonState, DaemonStatus, LandlockStatus};
pub use warden::{
    CHECK_KINDS, CheckMatch, CheckReply, CheckRequest, ProxyInfo, RequestLogEntry, RequestLogQuery,
};

/// Re-exported so that users of the proxies need not name zbus in their own manifests.
pub use zbus;
