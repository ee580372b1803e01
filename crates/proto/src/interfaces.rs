//! The five daemon interfaces and their proxies.
//!
//! Each interface is a generic struct over a handler trait: the daemon implements the trait in
//! its own `dbus` module and keeps its logic away from zbus types. The `#[interface]` macro
//! also generates the client proxy, so the method list exists once.

use std::future::Future;

use zbus::interface;

use crate::{CheckReply, CheckRequest, DaemonStatus, Error};

/// Methods every daemon answers.
pub trait DaemonControl: Send + Sync + 'static {
    /// Version, pid, uptime, state and sandboxing of the daemon.
    fn status(&self) -> impl Future<Output = Result<DaemonStatus, Error>> + Send;
    /// Re-reads the configuration; a bad file leaves the running one in place and fails.
    fn reload(&self) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Handler behind `dev.stakpak.Agent1`.
pub trait AgentHandler: DaemonControl {}
/// Handler behind `dev.stakpak.Warden1`.
pub trait WardenHandler: DaemonControl {
    /// Judges one action for the bus peer `caller`.
    fn check(
        &self,
        request: CheckRequest,
        caller: String,
    ) -> impl Future<Output = Result<CheckReply, Error>> + Send;
}
/// Handler behind `dev.stakpak.Secrets1`.
pub trait SecretsHandler: DaemonControl {}
/// Handler behind `dev.stakpak.Sandbox1`.
pub trait SandboxHandler: DaemonControl {}
/// Handler behind `dev.stakpak.Scheduler1`.
pub trait SchedulerHandler: DaemonControl {}

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
}
