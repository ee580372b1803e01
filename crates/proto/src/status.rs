//! The `Status()` reply every daemon gives.

use serde::{Deserialize, Serialize};
use zbus::Type;

use crate::wire::wire_enum;

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
    pub state: DaemonState,
    /// As applied at start-up.
    pub landlock: LandlockStatus,
    /// Landlock ABI version the kernel offers (0 when Landlock is unavailable).
    pub landlock_abi: u32,
    /// Configuration file the daemon reads (it may not exist: defaults apply).
    pub config_file: String,
}

wire_enum! {
    /// Life-cycle state of a daemon.
    pub enum DaemonState ("daemon state") {
        Starting = "starting", Running = "running", Reloading = "reloading",
        Stopping = "stopping",
    }
}

wire_enum! {
    /// How far the daemon's Landlock self-restriction took effect.
    /// `Enforced`: every access right the daemon asked to restrict is restricted; `Partial`:
    /// The kernel supports only part of the requested rights; `NotEnforced`: the kernel has no
    /// Landlock, or it is disabled.
    pub enum LandlockStatus ("landlock status") {
        Enforced = "enforced", Partial = "partial", NotEnforced = "not-enforced",
    }
}

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
            "dead".parse::<DaemonState>().map_err(|e| e.to_string()),
            Err("unknown daemon state `dead` (expected one of: starting, running, reloading, stopping)".to_string())
        );
    }

    #[test]
    fn status_signature_is_a_struct() {
        assert_eq!(DaemonStatus::SIGNATURE.to_string(), "(ssutssus)");
    }
}
