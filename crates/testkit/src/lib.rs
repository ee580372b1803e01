//! Test support that uses real components: the suite's real binaries on a real
//! `dbus-daemon`. Nothing here is a mock of the code under test.
//!
//! Panics are this crate's way of failing a test, so it unwraps freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binaries;
mod bus;
mod daemon;
mod llm;
mod nspawn;
mod process;
mod slack;
mod suite;

pub use binaries::{bin, bin_dir};
pub use bus::{BusOptions, PrivateBus};
pub use daemon::{DaemonDirs, daemon_command, files_below, random_string, start_daemon};
pub use llm::{LlmDouble, Recorded, Reply, Turn};
pub use nspawn::{Container, ContainerBuilder, nspawn_rootfs};
pub use process::{Output, ProcessInfo, processes_named, wait_until};
pub use slack::{
    ApiCall, Posted, SLACK_APP_ID, SLACK_BOT_USER_ID, SLACK_TEAM_ID, SlackDouble, app_mention,
    message_im,
};
pub use suite::{EmbeddedSuite, SuiteBuilder};

/// A current-thread runtime with timers and I/O, as the daemons use, for blocking tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A new connection to the bus at `address` (a suite's or a private bus's), as any client.
pub fn connect(rt: &tokio::runtime::Runtime, address: &str) -> stakpak_proto::zbus::Connection {
    rt.block_on(async {
        stakpak_proto::zbus::connection::Builder::address(address)
            .build()
            .await
            .expect("a connection to the bus")
    })
}

/// A client of a suite's sandboxd on its bus, as any bus peer could be, for blocking tests.
#[derive(Debug)]
pub struct SandboxClient {
    rt: tokio::runtime::Runtime,
    proxy: stakpak_proto::SandboxProxy<'static>,
}

impl SandboxClient {
    pub fn new(suite: &EmbeddedSuite) -> SandboxClient {
        let rt = runtime();
        let conn = connect(&rt, &suite.bus_address());
        let proxy = rt
            .block_on(stakpak_proto::SandboxProxy::new(&conn))
            .expect("a sandboxd proxy");
        SandboxClient { rt, proxy }
    }

    /// Runs `f` with a `SandboxProxy` and waits for it.
    pub fn call<T>(
        &self,
        f: impl AsyncFnOnce(&stakpak_proto::SandboxProxy<'_>) -> Result<T, stakpak_proto::Error>,
    ) -> Result<T, stakpak_proto::Error> {
        self.rt.block_on(f(&self.proxy))
    }

    pub fn exec(
        &self,
        request: stakpak_proto::ExecRequest,
    ) -> Result<stakpak_proto::ExecReply, stakpak_proto::Error> {
        self.call(async |p| p.exec(request).await)
    }

    /// Starts a background task, which must be accepted.
    pub fn start_task(&self, request: stakpak_proto::ExecRequest) -> stakpak_proto::TaskInfo {
        self.call(async |p| p.start_task(request).await).unwrap()
    }

    /// A task's details from the start of its output.
    pub fn task_details(&self, id: &str) -> stakpak_proto::TaskDetails {
        let id = id.to_string();
        self.call(async |p| p.task_details(id, 0).await).unwrap()
    }

    /// Waits up to `ms` for one task to end; its state then.
    pub fn wait_task(&self, id: &str, ms: u64) -> stakpak_proto::TaskInfo {
        let ids = vec![id.to_string()];
        self.call(async |p| p.wait_tasks(ids, ms).await)
            .unwrap()
            .remove(0)
    }
}
