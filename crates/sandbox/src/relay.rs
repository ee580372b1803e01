//! Network `proxied`: the relay between a sandbox's loopback and the warden's egress proxy.
//!
//! The child, alone in its new network namespace, brings `lo` up, listens on
//! `127.0.0.1:<port>` and sends that listener to the parent (`child.rs`). A socket stays in
//! the namespace it was made in, so the parent — in the host's namespace — accepts on it
//! and relays each connection to the proxy's unix socket, after the one-line preamble
//! `stakpak-session <id>\n` that names the run's session. Inside the namespace there is no
//! other interface and no route: a program that ignores `HTTPS_PROXY` gets no connection,
//! and one that connects to `127.0.0.1:<port>` only ever talks to the proxy.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Where a proxied sandbox's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRelay {
    /// The egress proxy's unix socket.
    pub socket: PathBuf,
    /// The port the sandbox's loopback listens on (what `HTTPS_PROXY` names).
    pub port: u16,
    /// Sent in the preamble of every connection, for the proxy's audit trail.
    pub session: String,
    /// A CA bundle the command must be able to read (Landlock), e.g. one holding the
    /// proxy's CA; `None` adds nothing.
    pub ca_bundle: Option<PathBuf>,
}

/// The parent's end of the channel the child sends its listener over.
pub(crate) fn channel() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((a, b))
}

/// Takes the listener the child sent (it did before `exec`, so it is there once the spawn
/// returned).
pub(crate) fn receive(parent: &OwnedFd) -> io::Result<TcpListener> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(
        parent.as_fd(),
        &mut [io::IoSliceMut::new(&mut byte)],
        &mut ancillary,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(TcpListener::from(fd));
        }
    }
    Err(io::Error::other("the sandbox sent no listener"))
}

/// The running relay of one run.
#[derive(Debug)]
pub(crate) struct Relay {
    listener: TcpListener,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts accepting on `listener`; every connection goes to `socket`.
    pub(crate) fn start(listener: TcpListener, socket: &Path, session: &str) -> io::Result<Relay> {
        let accepting = listener.try_clone()?;
        let socket = socket.to_path_buf();
        let preamble = format!("stakpak-session {session}\n");
        let thread = std::thread::Builder::new()
            .name("proxy-relay".into())
            .spawn(move || {
                // Ends when `stop` shuts the listener down (accept fails).
                while let Ok((stream, _)) = accepting.accept() {
                    let socket = socket.clone();
                    let preamble = preamble.clone();
                    let _ = std::thread::Builder::new()
                        .name("proxy-conn".into())
                        .spawn(move || relay_one(stream, &socket, &preamble));
                }
            })?;
        Ok(Relay {
            listener,
            thread: Some(thread),
        })
    }

    /// Stops accepting; connections still open end with their sandbox.
    pub(crate) fn stop(mut self) {
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Read);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay_one(client: TcpStream, socket: &Path, preamble: &str) {
    let Ok(mut upstream) = UnixStream::connect(socket) else {
        // No proxy: the client's connection just closes.
        return;
    };
    if upstream.write_all(preamble.as_bytes()).is_err() {
        return;
    }
    let _ = client.set_nodelay(true);
    let (Ok(mut client_r), Ok(mut upstream_r)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let mut client_w = client;
    let back = std::thread::Builder::new()
        .name("proxy-conn".into())
        .spawn(move || {
            let _ = copy(&mut upstream_r, &mut client_w);
            let _ = client_w.shutdown(Shutdown::Write);
        });
    let _ = copy(&mut client_r, &mut upstream);
    let _ = upstream.shutdown(Shutdown::Write);
    if let Ok(t) = back {
        let _ = t.join();
    }
}

fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}
