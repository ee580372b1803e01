//! Why a call failed, as sandboxd's core says it; `dbus.rs` turns each into its D-Bus error
//! in one place.

use stakpak_proto::Decision;
use stakpak_sandbox::docker::DockerError;

use crate::{changes::DbError, peers::PeerError};

/// A failure of sandboxd's core. Messages name sessions, paths and rules, never a value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The request cannot be served as asked (a bad session, path, pattern or timeout).
    #[error("{0}")]
    InvalidArgument(String),
    /// The warden refused a file change.
    #[error("the warden refused to {action} {host} ({decision}, rule {rule}): {reason}")]
    Refused {
        action: &'static str,
        host: String,
        decision: Decision,
        rule: String,
        reason: String,
    },
    /// The file system refused sandboxd a path of the workspace.
    #[error("path {path:?}: {errno}")]
    PathDenied {
        path: String,
        errno: rustix::io::Errno,
    },
    /// secretd could not resolve what a file change holds.
    #[error("{0}; nothing was written")]
    NotWritten(#[source] PeerError),
    /// Another daemon did not serve the call.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The Docker backend could not run the command.
    #[error("docker backend: {0}")]
    Docker(#[from] DockerError),
    /// Something sandboxd depends on is not there right now (the Docker engine, its
    /// section of the configuration).
    #[error("{0}")]
    Unavailable(String),
    #[error("changes database: {0}")]
    Changes(#[from] DbError),
    /// Anything else: the file system, a thread, the sandbox.
    #[error("{0}")]
    Internal(String),
}
