//! The D-Bus side of the daemon: validates calls and hands them to the event loop.

use stakpak_daemon::ControlHandle;
use stakpak_proto::{DaemonControl, DaemonStatus, Error, SecretsHandler};

/// Behind `dev.stakpak.Secrets1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
}

impl Handler {
    pub(crate) fn new(control: ControlHandle) -> Self {
        Handler { control }
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

impl SecretsHandler for Handler {}
