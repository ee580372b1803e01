//! Finding the suite a command talks to: an explicit bus address, a running embedded suite,
//! or the installed suite on the system bus.

use std::path::Path;

use anyhow::{Context, bail};
use zbus::Connection;

use crate::suite::{self, Layout, SuiteInfo};

/// Which suite a command reaches.
#[derive(Debug, Clone)]
pub enum Target {
    /// Given with `--bus-address` or `STAKPAK_BUS_ADDRESS`.
    Address(String),
    /// Started by `stakpak up` without an install.
    Embedded(SuiteInfo),
    /// Installed under systemd, on the system bus.
    System,
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Address(a) => format!("bus {a}"),
            Target::Embedded(info) => format!("embedded suite in {}", info.root.display()),
            Target::System => "installed suite on the system bus".to_string(),
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Target::Address(_) => "address",
            Target::Embedded(_) => "embedded",
            Target::System => "installed",
        }
    }

    pub fn bus_address(&self) -> Option<&str> {
        match self {
            Target::Address(a) => Some(a),
            Target::Embedded(info) => Some(&info.bus_address),
            Target::System => None,
        }
    }

    pub async fn connect(&self) -> anyhow::Result<Connection> {
        match self.bus_address() {
            Some(a) => zbus::connection::Builder::address(a)
                .build()
                .await
                .with_context(|| format!("cannot connect to {}", self.describe())),
            None => Connection::system()
                .await
                .context("cannot connect to the system bus"),
        }
    }
}

/// Finds the suite and runs `f` on a connection to its bus, on a fresh runtime: how a
/// command that makes D-Bus calls starts. `f` gets the target too, to say which suite
/// did not answer.
pub fn on_bus<T>(
    bus_address: Option<&str>,
    layout: &Layout,
    f: impl AsyncFnOnce(&Target, &Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let target = locate(bus_address, layout)?;
    crate::runtime::new()?.block_on(async {
        let conn = target.connect().await?;
        f(&target, &conn).await
    })
}

/// The unit folders where an installed suite's `stakpak.target` lives.
const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

pub fn locate(bus_address: Option<&str>, layout: &Layout) -> anyhow::Result<Target> {
    if let Some(a) = bus_address {
        return Ok(Target::Address(a.to_string()));
    }
    if let Some(info) = suite::running_suite(layout) {
        return Ok(Target::Embedded(info));
    }
    let roots: Vec<&Path> = UNIT_DIRS.iter().map(Path::new).collect();
    if suite::installed_unit_exists(&roots) {
        return Ok(Target::System);
    }
    bail!(
        "no running stakpak suite found (looked in {} and for an installed stakpak.target); start one with `stakpak up`",
        layout.root.display()
    )
}

/// A daemon's error as the command line says it: its message (permission errors say so),
/// or, when the call never got an answer, what `unanswered` makes of the bus error.
pub fn daemon_error(
    e: stakpak_proto::Error,
    unanswered: impl FnOnce(zbus::Error) -> anyhow::Error,
) -> anyhow::Error {
    use stakpak_proto::Error as E;
    match e {
        E::ZBus(e) => unanswered(e),
        E::InvalidArgument(m) | E::InvalidConfig(m) | E::Internal(m) | E::Unavailable(m) => {
            anyhow::anyhow!("{m}")
        }
        E::PermissionDenied(m) => anyhow::anyhow!("permission denied: {m}"),
    }
}
