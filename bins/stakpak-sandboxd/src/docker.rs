//! The Docker backend of [`crate::exec::Executor::run`]: one [`DockerBackend`] per
//! configuration, connected on first use, and the loop that streams a containerised
//! command's output into the same [`Output`] the local sandbox feeds.
//!
//! The connection is made lazily (a sandboxd without a running engine starts and serves the
//! local backend), kept while `[docker]` stays the same, and made again after a reload that
//! changes it. A failed connection is not kept: the next command tries again. The engine
//! being absent or the image missing is an [`Error::Docker`] naming the socket or image.
//!
//! Containers outlive sandboxd on purpose (see `config.rs`, "The Docker backend").

use std::{
    collections::VecDeque,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use stakpak_sandbox::{
    Command, Outcome, Stream,
    docker::{ContainerMode, DockerBackend, DockerConfig, DockerMount, DockerNetwork},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{Notify, oneshot},
};
use tracing::{info, warn};

use crate::{
    config::{DockerMode, DockerNetworkMode, DockerSection},
    error::Error,
    output::Output,
};

/// How long connecting (version negotiation and the image check) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The Docker engine as sandboxd uses it; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    /// The host folder of the sessions' workspaces (`<state>/workspaces`).
    workspaces_root: PathBuf,
    backend: Arc<tokio::sync::Mutex<Option<Arc<DockerBackend>>>>,
}

impl Engine {
    pub(crate) fn new(workspaces_root: PathBuf) -> Self {
        Engine {
            workspaces_root,
            backend: Arc::default(),
        }
    }

    /// The backend for `section`, connecting (again) when there is none for it yet.
    async fn backend(
        &self,
        section: &DockerSection,
        output_cap: usize,
    ) -> Result<Arc<DockerBackend>, Error> {
        let wanted = docker_config(section, &self.workspaces_root, output_cap);
        let mut slot = self.backend.lock().await;
        if let Some(backend) = slot.as_ref()
            && *backend.config() == wanted
        {
            return Ok(Arc::clone(backend));
        }
        let socket = wanted.socket.clone();
        let backend =
            match tokio::time::timeout(CONNECT_TIMEOUT, DockerBackend::connect(wanted)).await {
                Ok(connected) => Arc::new(connected?),
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "the Docker engine at {} did not answer within {} s",
                        socket.display(),
                        CONNECT_TIMEOUT.as_secs()
                    )));
                }
            };
        info!(socket = %socket.display(), image = %section.image, "connected to the Docker engine");
        *slot = Some(Arc::clone(&backend));
        Ok(backend)
    }

    /// Runs `command` for `session` in its container, streaming every chunk of output
    /// through `output` as it comes, until it ends, times out, or `cancel` (an eventfd)
    /// becomes readable.
    pub(crate) async fn run(
        &self,
        section: &DockerSection,
        output_cap: usize,
        session: &str,
        mut command: Command,
        cancel: Option<Arc<OwnedFd>>,
        output: &mut Output,
    ) -> Result<Outcome, Error> {
        let backend = self.backend(section, output_cap).await?;
        container_env(&mut command, session, section.mode);
        let watch = cancel
            .map(watch_eventfd)
            .transpose()
            .map_err(|e| Error::Internal(format!("cannot watch the task's eventfd: {e}")))?;
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let mut cancel_tx = watch.as_ref().map(|_| cancel_tx);

        let queue = Arc::new(Queue::default());
        let mut sink = {
            let queue = Arc::clone(&queue);
            move |stream: Stream, bytes: &[u8]| queue.push(stream, bytes)
        };
        let exec = backend.exec(session, &command, Some(cancel_rx), &mut sink);
        tokio::pin!(exec);
        // The exec is not polled while the loop hands its chunks to the redactor: the
        // engine's stream is then not read, which holds a fast writer back instead of
        // queueing its output in sandboxd's memory. One poll of the exec queues at most
        // what the runtime's cooperative budget lets it read.
        let result = loop {
            tokio::select! {
                biased;
                result = &mut exec => break result,
                () = queue.notify.notified() => {}
                () = cancelled(watch.as_ref()), if cancel_tx.is_some() => {
                    if let Some(tx) = cancel_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
            while let Some((stream, bytes)) = queue.pop() {
                output.chunk(stream, bytes).await;
            }
        };
        while let Some((stream, bytes)) = queue.pop() {
            output.chunk(stream, bytes).await;
        }
        result.map_err(Error::from)
    }
}

/// Output chunks on their way from the exec (a synchronous sink) to the redactor.
#[derive(Default)]
struct Queue {
    chunks: Mutex<VecDeque<(Stream, Vec<u8>)>>,
    notify: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Stream, Vec<u8>)>> {
        self.chunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, stream: Stream, bytes: &[u8]) {
        self.lock().push_back((stream, bytes.to_vec()));
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<(Stream, Vec<u8>)> {
        self.lock().pop_front()
    }
}

/// Registers a task's cancel eventfd with the runtime's reactor.
fn watch_eventfd(fd: Arc<OwnedFd>) -> std::io::Result<AsyncFd<Arc<OwnedFd>>> {
    #[allow(unsafe_code)]
    // SAFETY: the registration needs the descriptor to stay open and to stay the same file
    // while the `AsyncFd` lives. It holds one `Arc` of the `OwnedFd`, which closes the
    // descriptor only when its last `Arc` is dropped, and nothing replaces it (`get_mut` is
    // never called).
    let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
    registered.map_err(std::io::Error::from)
}

/// Resolves when the eventfd is readable (a cancel was asked); never without one.
async fn cancelled(watch: Option<&AsyncFd<Arc<OwnedFd>>>) {
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    loop {
        let mut guard = match watch.readable().await {
            Ok(guard) => guard,
            Err(e) => {
                warn!(error = %e, "cannot watch a task's eventfd: it cannot be cancelled");
                return std::future::pending().await;
            }
        };
        // Readiness may be spurious: ask the kernel, without consuming the count.
        let mut fds = [rustix::event::PollFd::new(
            watch.get_ref(),
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
            return;
        }
        guard.clear_ready();
    }
}

/// What the container's environment differs in from the local sandbox's: `HOME` is the
/// workspace as the container sees it, and `PATH` is the image's (sandboxd's own means
/// nothing inside the image). A request cannot set either (`exec.env_allow`).
fn container_env(command: &mut Command, session: &str, mode: DockerMode) {
    command.env.remove("PATH");
    let home = match mode {
        // The mount points of `stakpak_sandbox::docker` (its module documentation).
        DockerMode::Persistent => format!("/workspaces/{session}"),
        DockerMode::PerSession => "/workspace".to_owned(),
    };
    command.env.insert("HOME".to_owned(), home);
}

/// The backend's configuration from `[docker]`.
fn docker_config(
    section: &DockerSection,
    workspaces_root: &std::path::Path,
    output_cap: usize,
) -> DockerConfig {
    let mut config = DockerConfig::new(section.image.clone(), workspaces_root);
    config.socket = section.socket.clone();
    config.mode = match section.mode {
        DockerMode::Persistent => ContainerMode::Persistent,
        DockerMode::PerSession => ContainerMode::PerSession,
    };
    config.network = match section.network {
        DockerNetworkMode::None => DockerNetwork::None,
        DockerNetworkMode::Host => DockerNetwork::Host,
        DockerNetworkMode::Bridge => DockerNetwork::Bridge,
    };
    config.mounts = section
        .mounts
        .iter()
        .map(|m| DockerMount {
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
        })
        .collect();
    // The CA bundle's folder (system roots and the warden's egress CA), once sandboxd wrote
    // it: the folder, not the file, so a bundle written again shows in running containers.
    if let Some(state) = workspaces_root.parent() {
        let dir = crate::egress::bundle_dir(state);
        if dir.join(crate::egress::BUNDLE).is_file() {
            config
                .mounts
                .push(DockerMount::read_only(dir, crate::egress::CONTAINER_DIR));
        }
    }
    config.memory_bytes = section.memory_bytes;
    // Checked to fit in `prepare`.
    config.pids = Some(i64::try_from(section.pids).unwrap_or(i64::MAX));
    config.nano_cpus = section.nano_cpus();
    config.tmp_bytes = section.tmp_bytes;
    config.output_cap = output_cap;
    config.name_prefix = section.name_prefix.clone();
    config
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_section_becomes_the_backend_configuration() {
        let section: DockerSection = toml::from_str(
            r#"
            image = "img:1"
            socket = "/run/d.sock"
            mode = "per-session"
            network = "bridge"
            name_prefix = "p"
            mounts = [{ source = "/opt/a", target = "/a" }, { source = "/b", target = "/b", read_only = false }]
            memory_bytes = 1000
            pids = 7
            cpus = 1.5
            tmp_bytes = 4096
            "#,
        )
        .unwrap();
        let mut expected = DockerConfig::new("img:1", "/s/workspaces");
        expected.socket = "/run/d.sock".into();
        expected.mode = ContainerMode::PerSession;
        expected.network = DockerNetwork::Bridge;
        expected.name_prefix = "p".into();
        expected.mounts = vec![
            DockerMount::read_only("/opt/a", "/a"),
            DockerMount {
                source: "/b".into(),
                target: "/b".into(),
                read_only: false,
            },
        ];
        expected.memory_bytes = Some(1000);
        expected.pids = Some(7);
        expected.nano_cpus = Some(1_500_000_000);
        expected.tmp_bytes = 4096;
        expected.output_cap = 99;
        assert_eq!(
            docker_config(&section, std::path::Path::new("/s/workspaces"), 99),
            expected
        );
    }

    #[test]
    fn the_container_gets_its_own_home_and_the_images_path() {
        let mut command = Command {
            shell: "true".into(),
            env: [
                ("PATH", "/host/bin"),
                ("HOME", "/s/workspaces/s1"),
                ("LANG", "C"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            cwd: None,
            timeout: Duration::from_secs(1),
        };
        container_env(&mut command, "s1", DockerMode::Persistent);
        let env: Vec<_> = command
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(env, ["HOME=/workspaces/s1", "LANG=C"]);
        container_env(&mut command, "s1", DockerMode::PerSession);
        assert_eq!(command.env["HOME"], "/workspace");
    }
}
