//! Bus names, object paths and interface names of the five daemons.

use std::fmt;

/// One of the five daemons of the suite.
///
/// Each daemon owns one well-known bus name and serves one object whose path and interface
/// mirror that name (`dev.stakpak.Warden1` at `/dev/stakpak/Warden1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Daemon {
    Agent,
    Warden,
    Secrets,
    Sandbox,
    Scheduler,
}

impl Daemon {
    /// Every daemon, in start-up order: the ones others depend on come first.
    pub const ALL: [Daemon; 5] = [
        Daemon::Secrets,
        Daemon::Warden,
        Daemon::Sandbox,
        Daemon::Agent,
        Daemon::Scheduler,
    ];

    /// Short name used on the command line, in logs (`STAKPAK_DAEMON=`) and for state folders.
    pub const fn short_name(self) -> &'static str {
        match self {
            Daemon::Agent => "agent",
            Daemon::Warden => "warden",
            Daemon::Secrets => "secretd",
            Daemon::Sandbox => "sandboxd",
            Daemon::Scheduler => "schedd",
        }
    }

    /// Name of the executable, also the systemd unit name without `.service`.
    pub const fn binary(self) -> &'static str {
        match self {
            Daemon::Agent => "stakpak-agent",
            Daemon::Warden => "stakpak-warden",
            Daemon::Secrets => "stakpak-secretd",
            Daemon::Sandbox => "stakpak-sandboxd",
            Daemon::Scheduler => "stakpak-schedd",
        }
    }

    /// Well-known bus name the daemon owns; also its interface name.
    pub const fn bus_name(self) -> &'static str {
        match self {
            Daemon::Agent => AGENT,
            Daemon::Warden => WARDEN,
            Daemon::Secrets => SECRETS,
            Daemon::Sandbox => SANDBOX,
            Daemon::Scheduler => SCHEDULER,
        }
    }

    /// Interface name served at [`Daemon::object_path`].
    pub const fn interface(self) -> &'static str {
        self.bus_name()
    }

    /// Object path of the daemon's one object.
    pub const fn object_path(self) -> &'static str {
        match self {
            Daemon::Agent => AGENT_PATH,
            Daemon::Warden => WARDEN_PATH,
            Daemon::Secrets => SECRETS_PATH,
            Daemon::Sandbox => SANDBOX_PATH,
            Daemon::Scheduler => SCHEDULER_PATH,
        }
    }

    /// Looks a daemon up by its short name or its binary name.
    pub fn from_name(name: &str) -> Option<Daemon> {
        Daemon::ALL
            .into_iter()
            .find(|d| d.short_name() == name || d.binary() == name)
    }
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

pub(crate) const AGENT: &str = "dev.stakpak.Agent1";
pub(crate) const WARDEN: &str = "dev.stakpak.Warden1";
pub(crate) const SECRETS: &str = "dev.stakpak.Secrets1";
pub(crate) const SANDBOX: &str = "dev.stakpak.Sandbox1";
pub(crate) const SCHEDULER: &str = "dev.stakpak.Scheduler1";

pub(crate) const AGENT_PATH: &str = "/dev/stakpak/Agent1";
pub(crate) const WARDEN_PATH: &str = "/dev/stakpak/Warden1";
pub(crate) const SECRETS_PATH: &str = "/dev/stakpak/Secrets1";
pub(crate) const SANDBOX_PATH: &str = "/dev/stakpak/Sandbox1";
pub(crate) const SCHEDULER_PATH: &str = "/dev/stakpak/Scheduler1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for d in Daemon::ALL {
            zbus::names::WellKnownName::try_from(d.bus_name()).unwrap();
            zbus::names::InterfaceName::try_from(d.interface()).unwrap();
            zbus::ObjectPath::try_from(d.object_path()).unwrap();
            assert!(seen.insert(d.bus_name()));
            assert_eq!(Daemon::from_name(d.short_name()), Some(d));
            assert_eq!(Daemon::from_name(d.binary()), Some(d));
        }
        assert_eq!(Daemon::from_name("stakpak"), None);
    }
}
