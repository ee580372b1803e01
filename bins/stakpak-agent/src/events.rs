//! How the core reports what happens to a session. The D-Bus layer implements [`Events`]
//! and turns each report into a signal; the registry and the turn loop never name the
//! interface or a signal emitter.

use std::{future::Future, pin::Pin, sync::Arc};

use stakpak_proto::zbus;

use crate::model::{Session, ToolCall};

/// A report on its way; awaited, so signals leave in the order things happened.
pub type Reported<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the core reports to. Reports are best effort: a listener that misses one reads the
/// session again.
pub trait Events: Send + Sync {
    /// The session changed state, or its usage did.
    fn session_changed<'a>(&'a self, session: &'a Session) -> Reported<'a>;
    /// A tool call was proposed or changed state.
    fn tool_call<'a>(&'a self, call: &'a ToolCall) -> Reported<'a>;
    /// Streamed assistant text.
    fn text_delta<'a>(&'a self, session: &'a str, text: &'a str) -> Reported<'a>;
}

/// What a call into the core brings from the bus: where to report, and the connection the
/// session's calls to its peers (warden, secretd, sandboxd) go through.
#[derive(Clone)]
pub struct Link {
    pub events: Arc<dyn Events>,
    pub conn: zbus::Connection,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}
