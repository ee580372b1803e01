#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Escape attempts from inside the local sandbox (issue 5, "must be true" 1): each runs a
//! real command in the sandbox and asserts the exact observable result.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stakpak_sandbox::{Command, ExitKind, Limits, Network, Sandbox, SandboxConfig};

const NOBODY: (u32, u32) = (65534, 65534);
/// A uid no other test runs as, so counting its processes is not disturbed by them.
const BOMBER: (u32, u32) = (65533, 65533);

struct Fixture {
    base: tempfile::TempDir,
    sandbox: Sandbox,
}

impl Fixture {
    fn new(network: Network) -> Self {
        Self::with_limits(
            network,
            Limits {
                memory_bytes: Some(1 << 30),
                pids: Some(64),
                cpu_secs: Some(30),
                nofile: Some(256),
            },
        )
    }

    fn with_limits(network: Network, limits: Limits) -> Self {
        Self::build(network, limits, NOBODY)
    }

    fn build(network: Network, limits: Limits, run_as: (u32, u32)) -> Self {
        let base = base_dir();
        // The run-as user must be able to reach the workspace below the 0700 tempdir.
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["workspace", "tmp"] {
            fs::create_dir(base.path().join(d)).unwrap();
        }
        let sandbox = Sandbox::new(SandboxConfig {
            workspace: base.path().join("workspace"),
            tmp: base.path().join("tmp"),
            network,
            limits,
            run_as: Some(run_as),
            require_landlock: true,
            pids_cgroup: pids_cgroup(),
            bind_tmp: true,
            output_cap: 64 * 1024,
        })
        .unwrap();
        Self { base, sandbox }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.base.path().join(rel)
    }

    fn run_env(
        &self,
        shell: &str,
        env: BTreeMap<String, String>,
        timeout: Duration,
    ) -> (ExitKind, String, String) {
        let out = self
            .sandbox
            .run(&Command {
                shell: shell.to_owned(),
                env,
                cwd: None,
                timeout,
            })
            .unwrap();
        (
            out.status,
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn run(&self, shell: &str) -> (ExitKind, String, String) {
        self.run_env(shell, path_env(), Duration::from_secs(10))
    }
}

/// The cgroup v1 pids hierarchy, when this machine has one we can use.
fn pids_cgroup() -> Option<PathBuf> {
    Some(PathBuf::from("/sys/fs/cgroup/pids")).filter(|p| p.join("cgroup.procs").exists())
}

/// Not below /tmp: the child's /tmp is its private tmp, so host paths there are hidden.
fn base_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn path_env() -> BTreeMap<String, String> {
    BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())])
}

fn owned(status: ExitKind, out: &str, err: &str) -> (ExitKind, String, String) {
    (status, out.to_owned(), err.to_owned())
}

#[test]
fn writes_go_to_the_workspace_and_private_tmp_only() {
    let f = Fixture::new(Network::None);
    let sibling = f.path("sibling");
    fs::create_dir(&sibling).unwrap();
    // World-writable, so only Landlock stands in the way.
    fs::set_permissions(&sibling, fs::Permissions::from_mode(0o777)).unwrap();
    let etc_target = format!("/etc/stakpak-escape-{}", std::process::id());

    let got = f.run(&format!("echo x > {etc_target}"));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(2),
            "",
            &format!("/bin/sh: 1: cannot create {etc_target}: Permission denied\n")
        )
    );
    assert!(!Path::new(&etc_target).exists());

    let target = sibling.join("escape");
    let got = f.run(&format!("echo x > {}", target.display()));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(2),
            "",
            &format!(
                "/bin/sh: 1: cannot create {}: Permission denied\n",
                target.display()
            )
        )
    );
    assert!(!target.exists());

    let got = f.run("echo in-workspace > ok && echo in-tmp > /tmp/ok && cat ok /tmp/ok");
    assert_eq!(
        got,
        owned(ExitKind::Exited(0), "in-workspace\nin-tmp\n", "")
    );
    assert_eq!(
        fs::read_to_string(f.path("workspace/ok")).unwrap(),
        "in-workspace\n"
    );
    // The child's /tmp is the private tmp, not the host's.
    assert_eq!(fs::read_to_string(f.path("tmp/ok")).unwrap(), "in-tmp\n");
}

#[test]
fn the_vault_is_neither_readable_nor_writable() {
    let f = Fixture::new(Network::None);
    let state = f.path("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
    let vault = state.join("vault");
    fs::write(&vault, "root-secret\n").unwrap();
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o600)).unwrap();

    // Reads: file permissions against the run-as user.
    let got = f.run(&format!("cat {}", vault.display()));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(1),
            "",
            &format!("cat: {}: Permission denied\n", vault.display())
        )
    );
    // Writes: Landlock, even on a world-writable file.
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o666)).unwrap();
    let got = f.run(&format!("echo overwritten > {}", vault.display()));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(2),
            "",
            &format!(
                "/bin/sh: 1: cannot create {}: Permission denied\n",
                vault.display()
            )
        )
    );
    assert_eq!(fs::read_to_string(&vault).unwrap(), "root-secret\n");
}

fn tcp_attempt(network: Network) -> ((ExitKind, String, String), bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let f = Fixture::new(network);
    let got = f.run(&format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo connected"
    ));
    (got, listener.accept().is_ok())
}

#[test]
fn network_none_has_no_tcp() {
    assert_eq!(
        tcp_attempt(Network::None),
        (owned(ExitKind::Exited(1), "", ""), false)
    );
}

#[test]
fn network_host_has_tcp() {
    assert_eq!(
        tcp_attempt(Network::Host),
        (owned(ExitKind::Exited(0), "connected\n", ""), true)
    );
}

#[test]
fn no_new_privs_is_set() {
    let f = Fixture::new(Network::None);
    assert_eq!(
        f.run("grep NoNewPrivs /proc/self/status"),
        owned(ExitKind::Exited(0), "NoNewPrivs:\t1\n", "")
    );
}

#[test]
fn fork_bomb_is_contained_by_the_pids_limit() {
    let f = Fixture::build(
        Network::None,
        Limits {
            pids: Some(16),
            ..Limits::default()
        },
        BOMBER,
    );
    // A bounded loop first, so the failure is observable: the 17th process cannot be made.
    let got = f.run("i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo unreachable");
    assert_eq!(
        got,
        owned(ExitKind::Exited(2), "", "/bin/sh: 0: Cannot fork\n")
    );

    // The real thing: it ends at the timeout and takes nothing of the host with it.
    let started = std::time::Instant::now();
    let got = f.run_env(
        "bash -c ':(){ :|:& };:; sleep 30'",
        path_env(),
        Duration::from_secs(2),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(got.0, ExitKind::TimedOut);
    assert_eq!(
        f.run("echo still-healthy"),
        owned(ExitKind::Exited(0), "still-healthy\n", "")
    );
    assert_eq!(processes_of_uid(BOMBER.0), Vec::<String>::new());
}

fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

fn processes_of_uid(uid: u32) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let is_pid = entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit());
        if is_pid && entry.metadata().map(|m| m.uid() == uid).unwrap_or(false) {
            let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            // Zombies already dead but not reaped by their (dying) parents do not count.
            if !status.contains("State:\tZ") {
                found.push(status.lines().next().unwrap_or_default().to_owned());
            }
        }
    }
    found
}

#[test]
fn grandchildren_do_not_outlive_the_timeout() {
    let f = Fixture::new(Network::None);
    let tag = format!("{}.{}", 300, std::process::id());
    let escaped = format!("{}.{}", 301, std::process::id());
    let shell = format!("(sleep {tag} &) ; setsid sleep {escaped} & sleep {tag}");
    let got = f.run_env(&shell, path_env(), Duration::from_secs(1));
    assert_eq!(got, owned(ExitKind::TimedOut, "", ""));
    assert_eq!(
        processes_matching(&format!("sleep {tag}")),
        Vec::<String>::new()
    );
    if pids_cgroup().is_some() {
        // `setsid` left the process group; the pids cgroup still held it.
        assert_eq!(
            processes_matching(&format!("sleep {escaped}")),
            Vec::<String>::new()
        );
    }
}

#[test]
fn environment_is_exactly_the_allow_list() {
    let f = Fixture::new(Network::None);
    let env = BTreeMap::from([
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ("STAKPAK_ALLOWED".to_owned(), "yes".to_owned()),
    ]);
    // `env -0` through `sort -z`, then only PWD is added by dash (it sets and exports PWD).
    let got = f.run_env("env | sort", env, Duration::from_secs(10));
    let expected = format!(
        "PATH=/usr/bin:/bin\nPWD={}\nSTAKPAK_ALLOWED=yes\n",
        f.path("workspace").display()
    );
    assert_eq!(got, owned(ExitKind::Exited(0), &expected, ""));
}

#[test]
fn only_stdio_is_inherited() {
    let f = Fixture::new(Network::None);
    // Not close-on-exec, and high enough not to be confused with ls's own directory fd.
    let leaked = rustix::fs::open(
        "/etc/hostname",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let high = rustix::io::fcntl_dupfd_cloexec(&leaked, 100).unwrap();
    rustix::io::fcntl_setfd(&high, rustix::io::FdFlags::empty()).unwrap();
    assert_eq!(
        rustix::io::fcntl_getfd(&high).unwrap(),
        rustix::io::FdFlags::empty()
    );
    let got = f.run("ls /proc/self/fd");
    // 3 is the directory ls itself opens to list /proc/self/fd.
    assert_eq!(got, owned(ExitKind::Exited(0), "0\n1\n2\n3\n", ""));
}

#[test]
fn bad_configs_and_commands_are_refused() {
    let base = base_dir();
    let err = Sandbox::new(SandboxConfig {
        workspace: PathBuf::from("relative"),
        tmp: base.path().to_path_buf(),
        network: Network::None,
        limits: Limits::default(),
        run_as: None,
        require_landlock: true,
        pids_cgroup: None,
        bind_tmp: true,
        output_cap: 1,
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "workspace relative is not an absolute path to a directory"
    );

    let f = Fixture::new(Network::None);
    let err = f
        .sandbox
        .run(&Command {
            shell: "true".to_owned(),
            env: BTreeMap::new(),
            cwd: Some(PathBuf::from("../x")),
            timeout: Duration::from_secs(1),
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "working directory ../x is not a relative path inside the workspace"
    );
}

#[test]
fn other_processes_cannot_be_inspected() {
    let f = Fixture::new(Network::None);
    // Reading another process's environment needs ptrace access: refused by Landlock
    // (outside the sandbox's domain) and by the uid change.
    let pid = std::process::id();
    let got = f.run(&format!("cat /proc/{pid}/environ"));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(1),
            "",
            &format!("cat: /proc/{pid}/environ: Permission denied\n")
        )
    );
}

#[test]
fn output_past_the_cap_is_counted_not_kept() {
    let base = base_dir();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(base.path().join("w")).unwrap();
    fs::create_dir(base.path().join("t")).unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        workspace: base.path().join("w"),
        tmp: base.path().join("t"),
        network: Network::None,
        limits: Limits::default(),
        run_as: Some(NOBODY),
        require_landlock: true,
        pids_cgroup: None,
        bind_tmp: true,
        output_cap: 4,
    })
    .unwrap();
    let out = sandbox
        .run(&Command {
            shell: "printf 0123456789; printf ab >&2".to_owned(),
            env: BTreeMap::new(),
            cwd: None,
            timeout: Duration::from_secs(5),
        })
        .unwrap();
    assert_eq!(
        (
            out.status,
            out.stdout,
            out.stderr,
            out.truncated,
            out.dropped_bytes
        ),
        (
            ExitKind::Exited(0),
            b"0123".to_vec(),
            b"ab".to_vec(),
            true,
            6
        )
    );
}
