#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Docker backend against a real engine on /var/run/docker.sock, with the image built by
//! `scripts/docker-test-image.sh` (`STAKPAK_TEST_IMAGE` names another). These tests fail,
//! never skip, when the engine is unreachable: CI starts it with `scripts/start-dockerd.sh`.
//!
//! Every test uses its own container name prefix, so tests run in parallel, and removes its
//! containers at the end, also when it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, KillContainerOptions, TopOptions};
use stakpak_sandbox::docker::{
    ContainerMode, DockerBackend, DockerConfig, DockerError, DockerMount,
};
use stakpak_sandbox::{Command, ExitKind, Outcome, Stream};

fn image() -> String {
    std::env::var("STAKPAK_TEST_IMAGE").unwrap_or_else(|_| "stakpak-sandbox-test:latest".into())
}

/// One test's backend, its workspaces and the engine; removes the test's containers on drop.
struct Fixture {
    backend: DockerBackend,
    docker: Docker,
    root: tempfile::TempDir,
}

impl Fixture {
    async fn new(test: &str, mode: ContainerMode) -> Self {
        Self::with(test, mode, |_| {}).await
    }

    async fn with(test: &str, mode: ContainerMode, tweak: impl FnOnce(&mut DockerConfig)) -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut config = DockerConfig::new(image(), root.path());
        config.mode = mode;
        config.name_prefix = format!("stakpak-test-{test}-{}", std::process::id());
        tweak(&mut config);
        let backend = DockerBackend::connect(config)
            .await
            .unwrap_or_else(|e| panic!("the Docker engine must run for these tests: {e}"));
        let docker = Docker::connect_with_unix_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        Self {
            backend,
            docker,
            root,
        }
    }

    fn workspace(&self, session: &str) -> PathBuf {
        let path = self.root.path().join(session);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    async fn run(&self, session: &str, shell: &str) -> Outcome {
        self.backend
            .exec(session, &cmd(shell), None, &mut |_, _| {})
            .await
            .unwrap()
    }

    async fn container_id(&self, session: &str) -> String {
        self.docker
            .inspect_container(
                &self.backend.container_name(session),
                None::<InspectContainerOptions>,
            )
            .await
            .unwrap()
            .id
            .unwrap()
    }

    /// The command lines of every process in the container, as the host's `ps` sees them.
    async fn processes(&self, session: &str) -> Vec<String> {
        let top = self
            .docker
            .top_processes(
                &self.backend.container_name(session),
                Some(TopOptions {
                    ps_args: "-eo pid,args".into(),
                }),
            )
            .await
            .unwrap();
        top.processes
            .unwrap_or_default()
            .into_iter()
            .map(|row| row.get(1).cloned().unwrap_or_default())
            .collect()
    }

    /// Processes of a test command still alive (the tests' commands all sleep 30x seconds).
    async fn leftovers(&self, session: &str) -> Vec<String> {
        self.processes(session)
            .await
            .into_iter()
            .filter(|p| p.contains("sleep 30"))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Async clean-up from a destructor: on a thread of its own, with its own runtime.
        let config = self.backend.config().clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(b) = DockerBackend::connect(config).await {
                    let _ = b.remove_all().await;
                }
            });
        })
        .join();
    }
}

fn cmd(shell: &str) -> Command {
    Command {
        shell: shell.into(),
        env: BTreeMap::new(),
        cwd: None,
        timeout: Duration::from_secs(30),
    }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[tokio::test]
async fn persistent_container_is_reused_and_respawned() {
    let f = Fixture::new("persistent", ContainerMode::Persistent).await;
    std::fs::write(f.workspace("s1").join("mine"), "1").unwrap();
    std::fs::write(f.workspace("s2").join("theirs"), "2").unwrap();

    let out = f.run("s1", "pwd; ls").await;
    assert_eq!(
        (out.status, text(&out.stdout)),
        (ExitKind::Exited(0), "/workspaces/s1\nmine\n")
    );
    let first = f.container_id("s1").await;
    let out = f.run("s2", "pwd; ls").await;
    assert_eq!(text(&out.stdout), "/workspaces/s2\ntheirs\n");
    assert_eq!(
        f.container_id("s2").await,
        first,
        "one container for all sessions"
    );

    // Killed from outside: the next exec makes a new one.
    f.docker
        .kill_container(
            &f.backend.container_name("s1"),
            None::<KillContainerOptions>,
        )
        .await
        .unwrap();
    let out = f.run("s1", "echo again").await;
    assert_eq!(
        (out.status, text(&out.stdout)),
        (ExitKind::Exited(0), "again\n")
    );
    assert_ne!(f.container_id("s1").await, first);
}

#[tokio::test]
async fn containers_are_hardened() {
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(extra.path().join("data"), "ro").unwrap();
    let f = Fixture::with("hardened", ContainerMode::Persistent, |c| {
        c.mounts = vec![DockerMount::read_only(extra.path(), "/extra")];
        c.pids = Some(64);
        c.memory_bytes = Some(256 << 20);
        c.nano_cpus = Some(500_000_000);
    })
    .await;
    f.workspace("s");
    let out = f
        .run(
            "s",
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status
             touch /rootfs-write 2>/dev/null && echo root-writable
             touch /tmp/ok && echo tmp-writable
             cat /extra/data; echo
             touch /extra/x 2>/dev/null && echo extra-writable
             touch here && echo workspace-writable
             ls /sys/class/net",
        )
        .await;
    assert_eq!(
        text(&out.stdout),
        "CapEff:\t0000000000000000\nNoNewPrivs:\t1\ntmp-writable\nro\nworkspace-writable\nlo\n"
    );

    let info = f
        .docker
        .inspect_container(
            &f.backend.container_name("s"),
            None::<InspectContainerOptions>,
        )
        .await
        .unwrap();
    let host = info.host_config.unwrap();
    assert_eq!(
        (
            host.cap_drop,
            host.security_opt,
            host.readonly_rootfs,
            host.network_mode,
            host.pids_limit,
            host.memory,
            host.nano_cpus,
            host.init,
        ),
        (
            Some(vec!["ALL".to_string()]),
            Some(vec!["no-new-privileges".to_string()]),
            Some(true),
            Some("none".to_string()),
            Some(64),
            Some(256 << 20),
            Some(500_000_000),
            Some(true),
        )
    );
    let labels = info.config.unwrap().labels.unwrap();
    assert_eq!(
        labels.get("dev.stakpak.sandbox").map(String::as_str),
        Some("1")
    );
}

#[tokio::test]
async fn per_session_containers_see_only_their_workspace() {
    let f = Fixture::new("per-session", ContainerMode::PerSession).await;
    std::fs::write(f.workspace("alpha").join("alpha-file"), "").unwrap();
    std::fs::write(f.workspace("beta").join("beta-file"), "").unwrap();

    // Every file of either session that the container can see, anywhere.
    let shell = "pwd; find / \\( -path /proc -o -path /sys \\) -prune -o -name '*-file' -print";
    let a = f.run("alpha", shell).await;
    let b = f.run("beta", shell).await;
    assert_eq!(text(&a.stdout), "/workspace\n/workspace/alpha-file\n");
    assert_eq!(text(&b.stdout), "/workspace\n/workspace/beta-file\n");
    let (ida, idb) = (f.container_id("alpha").await, f.container_id("beta").await);
    assert_ne!(ida, idb);
    assert_eq!(f.run("alpha", "true").await.status, ExitKind::Exited(0));
    assert_eq!(f.container_id("alpha").await, ida, "kept between commands");

    f.backend.end_session("alpha").await.unwrap();
    let gone = f
        .docker
        .inspect_container(
            &f.backend.container_name("alpha"),
            None::<InspectContainerOptions>,
        )
        .await;
    assert!(
        matches!(
            gone,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        ),
        "{gone:?}"
    );
    assert_eq!(f.container_id("beta").await, idb);
}

#[tokio::test]
async fn output_is_streamed_as_it_arrives() {
    let f = Fixture::new("stream", ContainerMode::Persistent).await;
    let chunks = Arc::new(Mutex::new(Vec::new()));
    let seen = chunks.clone();
    let mut sink =
        move |s: Stream, b: &[u8]| seen.lock().unwrap().push((Instant::now(), s, b.to_vec()));
    let out = f
        .backend
        .exec(
            "s",
            &cmd("echo a; echo e >&2; sleep 1; echo b"),
            None,
            &mut sink,
        )
        .await
        .unwrap();
    let end = Instant::now();
    assert_eq!(
        (out.status, text(&out.stdout), text(&out.stderr)),
        (ExitKind::Exited(0), "a\nb\n", "e\n")
    );
    let chunks = chunks.lock().unwrap();
    // stdout and stderr are separate pipes: their relative order is not kept.
    let (first_at, _, data) = chunks
        .iter()
        .find(|(_, s, _)| *s == Stream::Stdout)
        .unwrap();
    assert_eq!(data.as_slice(), b"a\n");
    assert!(
        end.duration_since(*first_at) >= Duration::from_millis(500),
        "first chunk {:?} before the end",
        end.duration_since(*first_at)
    );
    let mut by_stream = (Vec::new(), Vec::new());
    for (_, s, b) in chunks.iter() {
        match s {
            Stream::Stdout => by_stream.0.extend_from_slice(b),
            Stream::Stderr => by_stream.1.extend_from_slice(b),
        }
    }
    assert_eq!(by_stream, (b"a\nb\n".to_vec(), b"e\n".to_vec()));
}

#[tokio::test]
async fn env_cwd_and_exit_code() {
    let f = Fixture::new("env", ContainerMode::Persistent).await;
    std::fs::create_dir_all(f.workspace("s").join("sub/dir")).unwrap();
    let mut c = cmd("echo \"$GREETING\"; pwd; exit 3");
    c.env.insert("GREETING".into(), "hello world".into());
    c.cwd = Some("sub/dir".into());
    let out = f.backend.exec("s", &c, None, &mut |_, _| {}).await.unwrap();
    assert_eq!(
        (out.status, text(&out.stdout), out.truncated),
        (
            ExitKind::Exited(3),
            "hello world\n/workspaces/s/sub/dir\n",
            false
        )
    );

    c.cwd = Some("../other".into());
    let err = f.backend.exec("s", &c, None, &mut |_, _| {}).await;
    assert!(matches!(err, Err(DockerError::BadCwd(_))), "{err:?}");
    c.cwd = Some("missing".into());
    let err = f.backend.exec("s", &c, None, &mut |_, _| {}).await;
    assert!(matches!(err, Err(DockerError::MissingCwd(_))), "{err:?}");
    let err = f
        .backend
        .exec("../s", &cmd("true"), None, &mut |_, _| {})
        .await;
    assert!(matches!(err, Err(DockerError::BadSession(_))), "{err:?}");
    let mut c = cmd("true");
    c.env.insert("STAKPAK_SANDBOX_RUN".into(), "forged".into());
    let err = f.backend.exec("s", &c, None, &mut |_, _| {}).await;
    assert!(matches!(err, Err(DockerError::BadEnv(_))), "{err:?}");
}

#[tokio::test]
async fn output_is_capped_per_stream() {
    let f = Fixture::with("cap", ContainerMode::Persistent, |c| c.output_cap = 1000).await;
    let mut total = 0usize;
    let out = f
        .backend
        .exec(
            "s",
            &cmd("head -c 5000 /dev/zero; head -c 1500 /dev/zero >&2"),
            None,
            &mut |_, b| total += b.len(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            out.status,
            out.stdout.len(),
            out.stderr.len(),
            out.truncated,
            out.dropped_bytes,
            total
        ),
        (ExitKind::Exited(0), 1000, 1000, true, 4500, 6500)
    );
}

/// Background children, one that left the session, one in a new session and one that
/// cleared its environment: none may outlive the command.
const SPAWNS_DESCENDANTS: &str = "sleep 301 & setsid sleep 302 & sh -c 'sleep 303 &'; \
                                  env -i /bin/sleep 304 & echo started; sleep 300";

#[tokio::test]
async fn timeout_kills_every_descendant() {
    let f = Fixture::new("timeout", ContainerMode::Persistent).await;
    let mut c = cmd(SPAWNS_DESCENDANTS);
    c.timeout = Duration::from_secs(1);
    let out = f.backend.exec("s", &c, None, &mut |_, _| {}).await.unwrap();
    assert_eq!(
        (out.status, text(&out.stdout)),
        (ExitKind::TimedOut, "started\n")
    );
    assert!(out.duration < Duration::from_secs(10), "{:?}", out.duration);
    assert_eq!(f.leftovers("s").await, Vec::<String>::new());
    // The container itself is still there and usable.
    assert_eq!(f.run("s", "echo ok").await.status, ExitKind::Exited(0));
}

#[tokio::test]
async fn cancel_kills_every_descendant() {
    let f = Fixture::new("cancel", ContainerMode::PerSession).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let _ = tx.send(());
    });
    let started = Instant::now();
    let out = f
        .backend
        .exec("s", &cmd(SPAWNS_DESCENDANTS), Some(rx), &mut |_, _| {})
        .await
        .unwrap();
    canceller.await.unwrap();
    assert_eq!(
        (out.status, text(&out.stdout)),
        (ExitKind::Cancelled, "started\n")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(f.leftovers("s").await, Vec::<String>::new());

    // A cancel that came before the command even started still kills all of it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    tx.send(()).unwrap();
    let out = f
        .backend
        .exec("s", &cmd(SPAWNS_DESCENDANTS), Some(rx), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(out.status, ExitKind::Cancelled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.leftovers("s").await, Vec::<String>::new());

    // A dropped sender cancels nothing.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    drop(tx);
    let out = f
        .backend
        .exec("s", &cmd("sleep 0.3; echo done"), Some(rx), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (out.status, text(&out.stdout)),
        (ExitKind::Exited(0), "done\n")
    );
}

#[tokio::test]
async fn dropping_the_exec_kills_the_command() {
    let f = Fixture::new("dropped", ContainerMode::Persistent).await;
    let mut started = false;
    let mut sink = |_: Stream, b: &[u8]| started |= b.starts_with(b"started");
    let command = cmd(SPAWNS_DESCENDANTS);
    let run = f.backend.exec("s", &command, None, &mut sink);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), run)
            .await
            .is_err()
    );
    assert!(started, "dropped while the command ran");
    // The reaping goes on in a task of its own.
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut left = f.leftovers("s").await;
    while !left.is_empty() && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = f.leftovers("s").await;
    }
    assert_eq!(left, Vec::<String>::new());
}

#[tokio::test]
async fn background_leftovers_die_with_the_command() {
    let f = Fixture::new("leftovers", ContainerMode::Persistent).await;
    let started = Instant::now();
    let out = f
        .run(
            "s",
            SPAWNS_DESCENDANTS.replace("sleep 300", "true").as_str(),
        )
        .await;
    assert_eq!(
        (out.status, text(&out.stdout)),
        (ExitKind::Exited(0), "started\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.leftovers("s").await, Vec::<String>::new());
}

/// With every pid of the container taken, the reaper cannot fork: the container is removed.
#[tokio::test]
async fn exhausted_pids_fall_back_to_removing_the_container() {
    let f = Fixture::with("pids", ContainerMode::Persistent, |c| c.pids = Some(16)).await;
    f.run("s", "true").await;
    let first = f.container_id("s").await;
    // Docker's init, the keep-alive shell and its sleep, this shell (which ends as the
    // last sleep) and 12 sleeps: 16.
    let mut c = cmd("i=0; while [ $i -lt 12 ]; do sleep 300 & i=$((i+1)); done; exec sleep 300");
    c.timeout = Duration::from_secs(2);
    let out = f.backend.exec("s", &c, None, &mut |_, _| {}).await.unwrap();
    assert_eq!(out.status, ExitKind::TimedOut);
    assert_eq!(f.run("s", "echo fine").await.stdout, b"fine\n");
    assert_ne!(
        f.container_id("s").await,
        first,
        "the container was replaced"
    );
    assert_eq!(f.leftovers("s").await, Vec::<String>::new());
}

#[tokio::test]
async fn missing_image_is_named() {
    let root = tempfile::tempdir().unwrap();
    let config = DockerConfig::new("stakpak-no-such-image:latest", root.path());
    let err = DockerBackend::connect(config).await.unwrap_err();
    assert!(matches!(err, DockerError::ImageMissing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Docker image `stakpak-no-such-image:latest` is not in the local engine; build it with \
         `docker import` or `docker load` (nothing is pulled)"
    );
}

#[tokio::test]
async fn absent_engine_names_the_socket() {
    let root = tempfile::tempdir().unwrap();
    let mut config = DockerConfig::new(image(), root.path());
    config.socket = root.path().join("no-docker.sock");
    let err = DockerBackend::connect(config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no Docker engine socket at {}: is dockerd running?",
            Path::new(root.path()).join("no-docker.sock").display()
        )
    );
}
