//! Connecting to the bus and taking the daemon's well-known name.

use zbus::{
    Connection,
    connection::Builder,
    fdo::{RequestNameFlags, RequestNameReply},
};

/// Which bus a daemon serves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusTarget {
    /// The system bus (installed mode).
    System,
    /// A private bus by address (embedded mode and tests).
    Address(String),
}

impl BusTarget {
    /// A connection builder for this bus; objects are added to it before it connects.
    pub fn builder(&self) -> Builder<'static> {
        match self {
            BusTarget::System => Builder::system(),
            BusTarget::Address(address) => Builder::address(address.as_str()),
        }
    }
}

impl std::fmt::Display for BusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusTarget::System => f.write_str("the system bus"),
            BusTarget::Address(a) => write!(f, "the bus at {a}"),
        }
    }
}

/// Taking the bus name failed.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("bus name {0} is already owned by another process")]
    Taken(&'static str),
    #[error("cannot request bus name {name}: {source}")]
    Request {
        name: &'static str,
        source: zbus::Error,
    },
}

/// Requests `name` without queueing: a second daemon of the same kind must fail, not wait.
/// Called last, once every object is served, so no call arrives before it can be answered.
pub(crate) async fn request_name(conn: &Connection, name: &'static str) -> Result<(), NameError> {
    let reply = conn
        .request_name_with_flags(name, RequestNameFlags::DO_NOT_QUEUE)
        .await
        .map_err(|source| match source {
            zbus::Error::NameTaken => NameError::Taken(name),
            source => NameError::Request { name, source },
        })?;
    match reply {
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => Ok(()),
        RequestNameReply::InQueue | RequestNameReply::Exists => Err(NameError::Taken(name)),
    }
}

/// Asks the bus daemon which uid the peer `caller.name` runs as (the kernel's answer, not the
/// caller's); `None` on a peer-to-peer connection or when the bus cannot say.
pub async fn caller_uid(caller: &stakpak_proto::Caller) -> Option<u32> {
    if caller.name.is_empty() {
        return None;
    }
    let reply = caller
        .connection
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetConnectionUnixUser",
            &(caller.name.as_str(),),
        )
        .await;
    match reply.and_then(|r| r.body().deserialize::<u32>()) {
        Ok(uid) => Some(uid),
        Err(e) => {
            tracing::debug!(caller = %caller.name, error = %e, "cannot learn the caller's uid");
            None
        }
    }
}
