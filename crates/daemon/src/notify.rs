//! The sd-notify protocol (sd_notify(3)): `READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`.
//!
//! systemd and `stakpak up` both pass `NOTIFY_SOCKET`; a path or an abstract name (`@…`).
//! Without it every call is a no-op, so a daemon started by hand just runs.

use std::{
    io,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    time::Duration,
};

/// Sends state changes to the service manager.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`; an unset variable gives a notifier that sends nothing.
    pub fn from_env() -> io::Result<Notifier> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(Notifier { target: None });
        };
        Notifier::connect(&path.to_string_lossy()).map(|target| Notifier {
            target: Some(target),
        })
    }

    fn connect(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("NOTIFY_SOCKET `{path}` is neither an absolute path nor @abstract"),
                ));
            }
        };
        Ok((UnixDatagram::unbound()?, addr))
    }

    /// A notifier that sends nothing.
    pub fn from_env_disabled() -> Notifier {
        Notifier { target: None }
    }

    /// True when a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram of newline-separated `KEY=VALUE` assignments.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some((socket, addr)) => socket.send_to_addr(state.as_bytes(), addr).map(|_| ()),
            None => Ok(()),
        }
    }

    /// `READY=1` with a human-readable status line.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&format!(
            "READY=1\nSTATUS={}\nMAINPID={}",
            one_line(status),
            std::process::id()
        ))
    }

    /// `STATUS=` alone.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("STATUS={}", one_line(status)))
    }

    /// `RELOADING=1` with the monotonic time systemd wants alongside it.
    pub fn reloading(&self) -> io::Result<()> {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.notify("STOPPING=1")
    }

    /// `WATCHDOG=1`: the event loop is alive.
    pub fn watchdog(&self) -> io::Result<()> {
        self.notify("WATCHDOG=1")
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is meant for us
/// (`WATCHDOG_PID` unset or our pid).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(own_pid)) {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_rules() {
        let cases = [
            ((None, None), None),
            ((Some("0"), None), None),
            ((Some("x"), None), None),
            ((Some("2000000"), None), Some(Duration::from_secs(1))),
            ((Some("2000000"), Some("42")), Some(Duration::from_secs(1))),
            ((Some("2000000"), Some("43")), None),
        ];
        for ((usec, pid), expected) in cases {
            assert_eq!(
                watchdog_interval_from(usec, pid, 42),
                expected,
                "{usec:?} {pid:?}"
            );
        }
    }

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let target = Notifier::connect(path.to_str().unwrap()).unwrap();
        let n = Notifier {
            target: Some(target),
        };
        n.ready("serving\non the bus").unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..len]).unwrap(),
            format!(
                "READY=1\nSTATUS=serving on the bus\nMAINPID={}",
                std::process::id()
            )
        );
    }

    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        let name = format!("stakpak-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            target: Some(Notifier::connect(&format!("@{name}")).unwrap()),
        };
        n.stopping().unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn relative_socket_is_rejected() {
        let err = Notifier::connect("notify.sock").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
