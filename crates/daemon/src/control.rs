//! The control channel between a daemon's D-Bus handlers and its event loop.
//!
//! Handlers only validate and forward; the loop in [`crate::run`] owns the state, so every
//! change (reload, stop) happens in one place and in order.

use std::sync::Arc;

use stakpak_proto::{DaemonControl, DaemonStatus, Error};
use tokio::sync::{mpsc, oneshot, watch};

use crate::Paths;

/// What handlers can ask of the event loop.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    Status(oneshot::Sender<DaemonStatus>),
    Reload(oneshot::Sender<Result<(), Error>>),
}

/// Cheap to clone; given to the daemon's D-Bus handlers.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<ControlEvent>,
}

impl ControlHandle {
    pub(crate) fn new(tx: mpsc::Sender<ControlEvent>) -> Self {
        ControlHandle { tx }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ControlEvent,
    ) -> Result<T, Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx
            .send(make(reply_tx))
            .await
            .map_err(|_| Error::Unavailable("the daemon is stopping".into()))?;
        reply_rx
            .await
            .map_err(|_| Error::Unavailable("the daemon is stopping".into()))
    }
}

impl DaemonControl for ControlHandle {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.ask(ControlEvent::Status).await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.ask(ControlEvent::Reload).await?
    }
}

/// What a daemon gets to set up its objects.
#[derive(Debug)]
pub struct ServeContext<C> {
    /// For the `Status`/`Reload` methods of its interface.
    pub control: ControlHandle,
    /// The current configuration; changes on every successful reload.
    pub config: watch::Receiver<Arc<C>>,
    /// Its folders.
    pub paths: Paths,
    /// The daemon's own bus connection, the one that owns its name, once it does.
    pub own_connection: OwnConnection,
}

/// The daemon's own connection, available once its bus name is owned: calls that a peer
/// accepts only from the owner of that name (secretd's `Resolve`, `Reveal`) go through it.
#[derive(Debug, Clone)]
pub struct OwnConnection(watch::Receiver<Option<zbus::Connection>>);

impl OwnConnection {
    /// The sender the runtime fills once the name is owned, and the handle given out.
    pub fn new() -> (watch::Sender<Option<zbus::Connection>>, OwnConnection) {
        let (tx, rx) = watch::channel(None);
        (tx, OwnConnection(rx))
    }

    /// Waits until the daemon owns its name; `None` when it stopped before.
    pub async fn get(&self) -> Option<zbus::Connection> {
        let mut rx = self.0.clone();
        rx.wait_for(Option::is_some).await.ok()?.clone()
    }
}

/// Implements `DaemonControl` for a handler by handing `Status` and `Reload` to its
/// [`ControlHandle`] field: `stakpak_daemon::control_through!(Handler, control);`. Every
/// daemon answers them the same way, through its event loop.
#[macro_export]
macro_rules! control_through {
    ($handler:ty, $field:ident) => {
        impl ::stakpak_proto::DaemonControl for $handler {
            async fn status(
                &self,
            ) -> ::std::result::Result<::stakpak_proto::DaemonStatus, ::stakpak_proto::Error> {
                self.$field.status().await
            }

            async fn reload(&self) -> ::std::result::Result<(), ::stakpak_proto::Error> {
                self.$field.reload().await
            }
        }
    };
}
