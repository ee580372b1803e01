//! Receiving sd-notify datagrams from the daemons, one socket each.

use std::{io, path::Path};

use stakpak_proto::Daemon;
use tokio::{net::UnixDatagram, sync::mpsc};

/// What one datagram said; a datagram may carry several assignments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    pub ready: bool,
    pub reloading: bool,
    pub stopping: bool,
    pub watchdog: bool,
    pub status: Option<String>,
    pub main_pid: Option<u32>,
}

impl NotifyMessage {
    /// Parses newline-separated `KEY=VALUE` pairs as sd_notify(3) sends them; unknown keys are
    /// ignored as systemd does.
    pub fn parse(datagram: &[u8]) -> NotifyMessage {
        let mut msg = NotifyMessage::default();
        for line in String::from_utf8_lossy(datagram).lines() {
            match line.split_once('=') {
                Some(("READY", "1")) => msg.ready = true,
                Some(("RELOADING", "1")) => msg.reloading = true,
                Some(("STOPPING", "1")) => msg.stopping = true,
                Some(("WATCHDOG", "1")) => msg.watchdog = true,
                Some(("STATUS", s)) => msg.status = Some(s.to_string()),
                Some(("MAINPID", p)) => msg.main_pid = p.parse().ok(),
                _ => {}
            }
        }
        msg
    }
}

/// Binds `path` (replacing a stale socket) and forwards every datagram as `(daemon, message)`.
pub fn listen(
    daemon: Daemon,
    path: &Path,
    tx: mpsc::UnboundedSender<(Daemon, NotifyMessage)>,
) -> io::Result<tokio::task::JoinHandle<()>> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let socket = UnixDatagram::bind(path)?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf).await {
            if tx.send((daemon, NotifyMessage::parse(&buf[..n]))).is_err() {
                break;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_daemons_send() {
        let cases: [(&[u8], NotifyMessage); 4] = [
            (
                b"READY=1\nSTATUS=serving x\nMAINPID=42",
                NotifyMessage {
                    ready: true,
                    status: Some("serving x".into()),
                    main_pid: Some(42),
                    ..Default::default()
                },
            ),
            (
                b"WATCHDOG=1",
                NotifyMessage {
                    watchdog: true,
                    ..Default::default()
                },
            ),
            (
                b"RELOADING=1\nMONOTONIC_USEC=123",
                NotifyMessage {
                    reloading: true,
                    ..Default::default()
                },
            ),
            (b"READY=0\nBOGUS\nFOO=bar", NotifyMessage::default()),
        ];
        for (datagram, expected) in cases {
            assert_eq!(NotifyMessage::parse(datagram), expected);
        }
    }
}
