//! D-Bus errors of the suite, each with a name of its own under `dev.stakpak.Error`.

use zbus::DBusError;

/// Prefix of every error name the suite sends.
pub const ERROR_PREFIX: &str = "dev.stakpak.Error";

/// An error a daemon answers a method call with.
///
/// Each variant becomes its own D-Bus error name (`dev.stakpak.Error.InvalidConfig`, …) with
/// the string as its message, so a client can tell failures apart without parsing text.
/// Messages never carry secret values.
#[derive(Debug, DBusError, PartialEq)]
#[zbus(prefix = "dev.stakpak.Error")]
pub enum Error {
    /// A transport-level failure (the bus went away, a reply did not decode).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A configuration file is missing a required value or holds a bad one.
    InvalidConfig(String),
    /// An argument of the call was rejected.
    InvalidArgument(String),
    /// The caller is not allowed to make this call.
    PermissionDenied(String),
    /// The daemon cannot serve the call right now (starting, stopping, a dependency down).
    Unavailable(String),
    /// An unexpected failure inside the daemon.
    Internal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_distinct_and_prefixed() {
        let cases = [
            (
                Error::InvalidConfig(String::new()),
                "dev.stakpak.Error.InvalidConfig",
            ),
            (
                Error::InvalidArgument(String::new()),
                "dev.stakpak.Error.InvalidArgument",
            ),
            (
                Error::PermissionDenied(String::new()),
                "dev.stakpak.Error.PermissionDenied",
            ),
            (
                Error::Unavailable(String::new()),
                "dev.stakpak.Error.Unavailable",
            ),
            (Error::Internal(String::new()), "dev.stakpak.Error.Internal"),
        ];
        for (err, name) in cases {
            assert_eq!(err.name().as_str(), name);
        }
    }
}
