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
pub mod wire;

pub use agent::{
    MessageInfo, Role, SessionDetail, SessionInfo, SessionState, StartRequest, ToolCallInfo,
    ToolCallState, session_path,
};
pub use error::{ERROR_PREFIX, Error};
pub use interfaces::{
    AgentHandler, AgentInterface, AgentProxy, DaemonControl, SandboxHandler, SandboxInterface,
    SandboxProxy, SchedulerHandler, SchedulerInterface, SchedulerProxy, SecretsHandler,
    SecretsInterface, SecretsProxy, WardenHandler, WardenInterface, WardenProxy,
};
pub use names::Daemon;
pub use sandbox::{
    Backend, ChangeInfo, ChangeKind, ExecReply, ExecRequest, ExecStatus, NetworkMode, TaskDetails,
    TaskInfo, ViewKind, ViewReply, ViewRequest,
};
pub use scheduler::{
    ChannelInfo, ChannelSpec, ChannelState, RunInfo, RunOutcome, RunTrigger, ScheduleInfo,
    ScheduleSource, ScheduleSpec, SchedulerStatus,
};
pub use secrets::{
    Caller, Detection, RedactReply, ResolveReply, ResolveRequest, SecretInfo, SetRequest,
};
pub use status::{DaemonState, DaemonStatus, LandlockStatus};
pub use warden::{
    CheckKind, CheckMatch, CheckReply, CheckRequest, Decision, ProxyInfo, RequestLogEntry,
    RequestLogQuery, RequestOutcome,
};
pub use wire::{Opt, UnknownValue, WireEnum};

/// Re-exported so that users of the proxies need not name zbus in their own manifests.
pub use zbus;
