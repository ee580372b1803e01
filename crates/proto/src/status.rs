//! The `Status()` reply every daemon gives.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use zbus::Type;

/// What `Status()` answers: enough for `stakpak status` and for a supervisor to tell a
/// healthy daemon from a stuck one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DaemonStatus {
    /// Binary name, e.g. `stakpak-warden`.
    pub daemon: String,
    /// Package version of the binary.
    pub version: String,
    /// Process id as the daemon sees it.
    pub pid: u32,
    /// Milliseconds since the process started serving.
    pub uptime_ms: u64,
    /// One of [`DaemonState`]'s names.
    pub state: String,
    /// One of [`LandlockStatus`]'s names, as applied at start-up.
    pub landlock: String,
    /// Landlock ABI version the kernel offers (0 when Landlock is unavailable).
    pub landlock_abi: u32,
    /// Configuration file the daemon reads (it may not exist: defaults apply).
    pub config_file: String,
}

/// Life-cycle state of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonState {
    Starting,
    Running,
    Reloading,
    Stopping,
}

/// How far the daemon's Landlock self-restriction took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockStatus {
    /// Every access right the daemon asked to restrict is restricted.
    Enforced,
    /// The kernel supports only part of the requested rights.
    Partial,
    /// The kernel has no Landlock, or it is disabled.
    NotEnforced,
}

macro_rules! string_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name used on the wire and in `stakpak status`.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(concat!("unknown ", $what, " `{}`"), other)),
                }
            }
        }
    };
}

string_enum!(DaemonState, "daemon state", {
    Starting => "starting",
    Running => "running",
    Reloading => "reloading",
    Stopping => "stopping",
});

string_enum!(LandlockStatus, "landlock status", {
    Enforced => "enforced",
    Partial => "partial",
    NotEnforced => "not-enforced",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            DaemonState::Starting,
            DaemonState::Running,
            DaemonState::Reloading,
            DaemonState::Stopping,
        ] {
            assert_eq!(s.as_str().parse::<DaemonState>(), Ok(s));
        }
        for s in [
            LandlockStatus::Enforced,
            LandlockStatus::Partial,
            LandlockStatus::NotEnforced,
        ] {
            assert_eq!(s.as_str().parse::<LandlockStatus>(), Ok(s));
        }
        assert_eq!(
            "dead".parse::<DaemonState>(),
            Err("unknown daemon state `dead`".to_string())
        );
    }

    #[test]
    fn status_signature_is_a_struct() {
        assert_eq!(DaemonStatus::SIGNATURE.to_string(), "(ssutssus)");
    }
}
