#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Escape attempts from inside the local sandbox (issue 5, "must be true" 1): each runs a
//! real command in the sandbox and asserts the exact observable result.
//!
//! They run the sandbox as `nobody` (and some as root), make setuid files and cgroups, so
//! they need root: CI runs them as root, and elsewhere they fail saying so.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stakpak_sandbox::{Command, ExitKind, Limits, Network, Sandbox, SandboxConfig, SandboxError};

mod support;
use support::restrict_like_sandboxd;

const NOBODY: (u32, u32) = (65534, 65534);
/// A uid no other test runs as, so counting its processes is not disturbed by them.
const BOMBER: (u32, u32) = (65533, 65533);

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the escape tests need root (they run the sandbox as nobody, make setuid files and cgroups); run them as root, as CI does"
    );
}

struct Fixture {
    base: tempfile::TempDir,
    sandbox: Sandbox,
    /// Dropped after `sandbox`: removed once the runs' cgroups below it are gone.
    cgroup: Option<TestCgroup>,
}

/// What every sandbox here starts from: `workspace` and `tmp` below `base` (see
/// `support::sandbox_dir`), run as nobody under Landlock with a private /tmp, no cgroup.
fn config(base: &Path, network: Network) -> SandboxConfig {
    SandboxConfig {
        workspace: base.join("workspace"),
        tmp: base.join("tmp"),
        network,
        limits: default_limits(),
        run_as: Some(NOBODY),
        require_landlock: true,
        pids_cgroup: None,
        bind_tmp: true,
        output_cap: 64 * 1024,
        read_roots: Vec::new(),
        hidden: Vec::new(),
        proxy: None,
    }
}

fn command(shell: &str, env: BTreeMap<String, String>, timeout: Duration) -> Command {
    Command {
        shell: shell.to_owned(),
        env,
        cwd: None,
        timeout,
    }
}

/// Runs `shell` and returns how it ended with its output as text.
fn run_in(
    sandbox: &Sandbox,
    shell: &str,
    env: BTreeMap<String, String>,
    timeout: Duration,
) -> (ExitKind, String, String) {
    let out = sandbox.run(&command(shell, env, timeout)).unwrap();
    (
        out.status,
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn default_limits() -> Limits {
    Limits {
        memory_bytes: Some(1 << 30),
        pids: Some(64),
        cpu_secs: Some(30),
        nofile: Some(256),
    }
}

impl Fixture {
    fn new(network: Network) -> Self {
        Self::build(network, default_limits(), Some(NOBODY), TestCgroup::find())
    }

    fn build(
        network: Network,
        limits: Limits,
        run_as: Option<(u32, u32)>,
        cgroup: Option<TestCgroup>,
    ) -> Self {
        require_root();
        let base = support::sandbox_dir();
        let sandbox = Sandbox::new(SandboxConfig {
            limits,
            run_as,
            pids_cgroup: cgroup.as_ref().map(|c| c.dir.clone()),
            ..config(base.path(), network)
        })
        .unwrap();
        Self {
            base,
            sandbox,
            cgroup,
        }
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
        run_in(&self.sandbox, shell, env, timeout)
    }

    fn run(&self, shell: &str) -> (ExitKind, String, String) {
        self.run_env(shell, path_env(), Duration::from_secs(10))
    }
}

/// A cgroup of its own for one test, in a pids hierarchy: cgroup v2 when the `pids`
/// controller can be handed down from its root, else the v1 `pids` hierarchy. The sandbox
/// makes one cgroup per run below it. Removed on drop.
struct TestCgroup {
    dir: PathBuf,
}

static CGROUP_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestCgroup {
    /// `None` when this machine has no writable pids hierarchy.
    fn find() -> Option<TestCgroup> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let name = format!(
            "stakpak-escape-{}-{}",
            std::process::id(),
            CGROUP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mounts = |wanted: &dyn Fn(&str, &str) -> bool| -> Vec<PathBuf> {
            mountinfo
                .lines()
                .filter_map(|line| {
                    let (mount, sb) = line.split_once(" - ")?;
                    let point = mount.split(' ').nth(4)?;
                    let mut sb = sb.split(' ');
                    let (fstype, options) = (sb.next()?, sb.nth(1).unwrap_or_default());
                    wanted(fstype, options).then(|| PathBuf::from(point))
                })
                .collect()
        };
        // v2: below the hierarchy's root, which alone may hold processes and still hand
        // controllers down ("no internal processes").
        for root in mounts(&|fstype, _| fstype == "cgroup2") {
            let has = |file: &Path| {
                fs::read_to_string(file).is_ok_and(|s| s.split_whitespace().any(|c| c == "pids"))
            };
            if !has(&root.join("cgroup.controllers")) {
                continue;
            }
            let control = root.join("cgroup.subtree_control");
            if !has(&control) && fs::write(&control, "+pids").is_err() {
                continue;
            }
            let dir = root.join(&name);
            if fs::create_dir(&dir).is_ok() {
                if fs::write(dir.join("cgroup.subtree_control"), "+pids").is_ok() {
                    return Some(TestCgroup { dir });
                }
                let _ = fs::remove_dir(&dir);
            }
        }
        for root in
            mounts(&|fstype, options| fstype == "cgroup" && options.split(',').any(|o| o == "pids"))
        {
            let dir = root.join(&name);
            if fs::create_dir(&dir).is_ok() {
                return Some(TestCgroup { dir });
            }
        }
        None
    }

    fn required() -> TestCgroup {
        require_root();
        Self::find().expect(
            "no writable pids cgroup hierarchy (cgroup v2 with the pids controller, or v1 pids): this test needs one",
        )
    }

    /// The per-run cgroups still below this one.
    fn children(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..200 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn path_env() -> BTreeMap<String, String> {
    BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())])
}

fn owned(status: ExitKind, out: &str, err: &str) -> (ExitKind, String, String) {
    (status, out.to_owned(), err.to_owned())
}

/// A small C program that makes the syscalls the tests try (compiled once, with gcc, into
/// a directory every user may read).
fn helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        // Shared by every run of these tests; each process builds its own copy and renames
        // it into place, so concurrent runs never see a half-written file.
        let dir = support::root().join("escape-helper");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let pid = std::process::id();
        let source = dir.join(format!("helper-{pid}.c"));
        fs::write(&source, HELPER_C).unwrap();
        let built = dir.join(format!("helper-{pid}"));
        let out = std::process::Command::new("gcc")
            .arg("-O1")
            .arg("-o")
            .arg(&built)
            .arg(&source)
            .output()
            .expect("these tests need gcc to build their helper");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_file(&source).unwrap();
        let bin = dir.join("helper");
        fs::rename(&built, &bin).unwrap();
        bin
    })
}

const HELPER_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>

static void report(const char *name, long rc) {
    if (rc < 0) printf("%s %s\n", name, strerrorname_np(errno));
    else printf("%s ok\n", name);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *mode = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(mode, "syscalls")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        report("io_uring_setup", syscall(SYS_io_uring_setup, 4, &p));
        report("io_uring_enter", syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
        report("io_uring_register", syscall(SYS_io_uring_register, -1, 0, NULL, 0));
        report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
        report("add_key", syscall(SYS_add_key, "user", "stakpak", "x", 1, KEY_SPEC_SESSION_KEYRING));
        report("request_key", syscall(SYS_request_key, "user", "stakpak", NULL, 0));
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.type = PERF_TYPE_SOFTWARE;
        a.config = PERF_COUNT_SW_CPU_CLOCK;
        report("perf_event_open", syscall(SYS_perf_event_open, &a, 0, -1, -1, 0));
        report("bpf", syscall(SYS_bpf, 0, NULL, 0));
        report("userfaultfd", syscall(SYS_userfaultfd, 0));
        report("unshare", syscall(SYS_unshare, 0));
        report("getpid", syscall(SYS_getpid));
        return 0;
    }
    if (!strcmp(mode, "attach")) {
        pid_t pid = atoi(argv[2]);
        report("ptrace_attach", ptrace(PTRACE_ATTACH, pid, 0, 0));
        char buf[8];
        struct iovec l = {buf, sizeof buf}, r = {(void *)0x400000, sizeof buf};
        report("process_vm_readv", syscall(SYS_process_vm_readv, pid, &l, 1, &r, 1, 0));
        return 0;
    }
    if (!strcmp(mode, "attach-child")) {
        pid_t pid = fork();
        if (pid == 0) { pause(); _exit(0); }
        report("ptrace_attach_child", ptrace(PTRACE_ATTACH, pid, 0, 0));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return 0;
    }
#ifdef __x86_64__
    if (!strcmp(mode, "i386")) {
        long rc;
        __asm__ volatile ("int $0x80" : "=a"(rc) : "a"(20L) : "memory");
        printf("i386 getpid returned\n");
        return 0;
    }
    if (!strcmp(mode, "x32")) {
        syscall(0x40000000L | SYS_getpid);
        printf("x32 getpid returned\n");
        return 0;
    }
#endif
    if (!strcmp(mode, "segv")) { *(volatile int *)0 = 1; return 0; }
    return 2;
}
"#;

/// A process of the host, outside every sandbox, killed on drop.
struct Outside(std::process::Child);

impl Outside {
    fn sleep(marker: &str) -> Outside {
        Outside(
            std::process::Command::new("sleep")
                .arg(marker)
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn tracer(&self) -> String {
        fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("TracerPid:"))
            .unwrap()
            .to_owned()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// A daemon's state directory: mode 0700, owned by root, with a world-readable file inside.
/// Landlock lets the sandbox read anywhere; the run-as user is what keeps it out.
#[test]
fn a_root_daemon_state_directory_is_closed_to_nobody() {
    let f = Fixture::new(Network::None);
    let state = f.path("stakpak-secretd");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let vault = state.join("vault.sealed");
    fs::write(&vault, "sealed\n").unwrap();
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o644)).unwrap();

    let got = f.run(&format!("cat {}; ls {}", vault.display(), state.display()));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(2),
            "",
            &format!(
                "cat: {v}: Permission denied\nls: cannot open directory '{s}': Permission denied\n",
                v = vault.display(),
                s = state.display()
            )
        )
    );
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

/// Network proxied: the only thing the command reaches is the relay on 127.0.0.1:<port>,
/// whose connections arrive on the proxy's unix socket after the session preamble; a direct
/// TCP connection to the host fails, and unix sockets cannot even be made.
#[test]
fn network_proxied_reaches_only_the_proxy() {
    require_root();
    let base = support::sandbox_dir();
    let socket = base.path().join("proxy.sock");
    let proxy = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let served = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (stream, _) = proxy.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let (mut preamble, mut line) = (String::new(), String::new());
        reader.read_line(&mut preamble).unwrap();
        reader.read_line(&mut line).unwrap();
        (&stream)
            .write_all(format!("proxy got {line}").as_bytes())
            .unwrap();
        preamble
    });
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let sandbox = Sandbox::new(SandboxConfig {
        proxy: Some(stakpak_sandbox::ProxyRelay {
            socket,
            port: 3128,
            session: "s-1".into(),
            ca_bundle: None,
        }),
        ..config(base.path(), Network::Proxied)
    })
    .unwrap();
    let got = run_in(
        &sandbox,
        &format!(
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128; echo ping >&3; head -n 1 <&3'; \
             bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo direct || echo no-direct; \
             /usr/bin/python3 -c 'import socket\ntry: socket.socket(socket.AF_UNIX); print(\"unix made\")\nexcept OSError as e: print(\"unix errno\", e.errno)'"
        ),
        BTreeMap::from([("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())]),
        Duration::from_secs(20),
    );
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(0),
            "proxy got ping\nno-direct\nunix errno 1\n",
            ""
        )
    );
    assert_eq!(served.join().unwrap(), "stakpak-session s-1\n");
    assert!(host.accept().is_err(), "the host listener saw a connection");

    // Without the proxy's socket, proxied is refused rather than run with no relay.
    let err = Sandbox::new(config(base.path(), Network::Proxied))
        .unwrap()
        .run(&command("true", path_env(), Duration::from_secs(5)))
        .unwrap_err();
    assert!(matches!(err, SandboxError::NoProxy), "{err}");
}

#[test]
fn no_new_privs_is_set() {
    let f = Fixture::new(Network::None);
    assert_eq!(
        f.run("grep NoNewPrivs /proc/self/status"),
        owned(ExitKind::Exited(0), "NoNewPrivs:\t1\n", "")
    );
}

/// A setuid-root copy of `id`: outside, run as nobody, it is root; inside, it is not
/// (no_new_privs, and root is not even mapped in the sandbox's user namespace).
#[test]
fn a_setuid_root_binary_gives_nothing() {
    use std::os::unix::process::CommandExt;
    let f = Fixture::new(Network::None);
    let suid = f.path("suid-id");
    fs::copy("/usr/bin/id", &suid).unwrap();
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();

    // The control: the bit works on this file system.
    let outside = std::process::Command::new(&suid)
        .arg("-u")
        .uid(NOBODY.0)
        .gid(NOBODY.1)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(outside.stdout).unwrap(), "0\n");

    let got = f.run(&format!("{s} -u; {s} -ru", s = suid.display()));
    assert_eq!(got, owned(ExitKind::Exited(0), "65534\n65534\n", ""));
}

/// A process of the host cannot be traced or read: the seccomp filter refuses `ptrace` and
/// `process_vm_readv` outright, and the pid namespace does not even show the pid.
#[test]
fn processes_outside_cannot_be_traced() {
    let f = Fixture::new(Network::None);
    let target = Outside::sleep(&format!("302.{}", std::process::id()));
    let pid = target.pid();

    let got = f.run(&format!("{} attach {pid}", helper().display()));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(0),
            "ptrace_attach EPERM\nprocess_vm_readv EPERM\n",
            ""
        )
    );
    let got = f.run(&format!("strace -p {pid} -e trace=none"));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(1),
            "",
            &format!(
                "strace: test_ptrace_get_syscall_info: PTRACE_TRACEME: Operation not permitted\n\
                 strace: attach: ptrace(PTRACE_ATTACH, {pid}): Operation not permitted\n"
            )
        )
    );
    let got = f.run(&format!(
        "gdb -nx -batch -p {pid} -ex 'print 1' </dev/null 2>&1 | grep ptrace"
    ));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(0),
            "ptrace: Operation not permitted.\n",
            ""
        )
    );
    assert_eq!(target.tracer(), "TracerPid:\t0");
}

/// The seccomp filter refuses `ptrace` even on the sandbox's own child, which Landlock and
/// the uid alone would allow.
#[test]
fn ptrace_is_refused_even_on_the_sandboxs_own_child() {
    let f = Fixture::new(Network::None);
    let got = f.run(&format!("{} attach-child", helper().display()));
    assert_eq!(
        got,
        owned(ExitKind::Exited(0), "ptrace_attach_child EPERM\n", "")
    );
}

#[test]
fn io_uring_keyrings_bpf_perf_and_userfaultfd_are_refused() {
    let f = Fixture::new(Network::None);
    let got = f.run(&format!("{} syscalls", helper().display()));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(0),
            "io_uring_setup EPERM\nio_uring_enter EPERM\nio_uring_register EPERM\n\
             keyctl EPERM\nadd_key EPERM\nrequest_key EPERM\nperf_event_open EPERM\n\
             bpf EPERM\nuserfaultfd EPERM\nunshare ok\ngetpid ok\n",
            ""
        )
    );
}

/// Syscalls through the i386 entry (`int 0x80`) or with the x32 bit kill the process
/// (SIGSYS: the shell reports 128 + 31). Outside the sandbox both return.
#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_syscall_abis_kill_the_process() {
    let f = Fixture::new(Network::None);
    let h = helper().display().to_string();
    let outside = std::process::Command::new(&h).arg("i386").output().unwrap();
    let ia32 = outside.status.success();
    let got = f.run(&format!("{h} i386; echo $?; {h} x32; echo $?"));
    // Without IA32 emulation in the kernel, `int 0x80` faults (SIGSEGV) before any filter.
    let (code, message) = if ia32 {
        ("159", "Bad system call")
    } else {
        ("139", "Segmentation fault")
    };
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(0),
            &format!("{code}\n159\n"),
            &format!("{message}\nBad system call\n")
        )
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
        Some(BOMBER),
        TestCgroup::find(),
    );
    // A bounded loop first, so the failure is observable: the 17th process cannot be made.
    let got = f.run("i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo unreachable");
    assert_eq!(
        got,
        owned(ExitKind::Exited(2), "", "/bin/sh: 0: Cannot fork\n")
    );

    // The real thing: it ends at the timeout and takes nothing of the host with it.
    let started = Instant::now();
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

/// As root, RLIMIT_NPROC is no protection: only the pids cgroup stops the bomb. To show it
/// is the cgroup that does, the run sets no limit of its own (no RLIMIT_NPROC, no per-run
/// `pids.max`) and only the test's cgroup above the run's has `pids.max`. The test process
/// stays healthy, the run ends at its timeout, and no process or cgroup is left.
#[test]
fn fork_bomb_as_root_is_contained_by_the_pids_cgroup() {
    let cgroup = TestCgroup::required();
    let root = cgroup.dir.clone();
    fs::write(root.join("pids.max"), "24").unwrap();
    let f = Fixture::build(
        Network::None,
        Limits {
            pids: None,
            ..default_limits()
        },
        None,
        Some(cgroup),
    );
    let got = f.run("i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo unreachable");
    assert_eq!(
        got,
        owned(ExitKind::Exited(2), "", "/bin/sh: 0: Cannot fork\n")
    );
    // It was this limit that stopped it: the cgroup was full when the fork failed.
    if let Ok(peak) = fs::read_to_string(root.join("pids.peak")) {
        assert_eq!(peak, "24\n");
    }

    let started = Instant::now();
    let got = f.run_env(
        "bash -c ':(){ :|:& };:; sleep 30'",
        path_env(),
        Duration::from_secs(2),
    );
    // Ends by the timeout, or earlier when bash gives up forking.
    assert!(
        matches!(got.0, ExitKind::TimedOut | ExitKind::Exited(_)),
        "{got:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Healthy: this process can still start others.
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    // Every run's cgroup is gone, which the kernel allows only once it is empty.
    let cg = f.cgroup.as_ref().unwrap();
    assert_eq!(cg.children(), Vec::<String>::new());
    assert_eq!(fs::read_to_string(root.join("cgroup.procs")).unwrap(), "");
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

/// Starts background processes in every disguise, then runs `end`; returns how the run
/// ended and which of those processes are left on the host.
fn leave_grandchildren(
    f: &Fixture,
    first: u32,
    end: &str,
    timeout: Duration,
) -> (ExitKind, Vec<String>) {
    let pid = std::process::id();
    let markers: Vec<String> = (first..first + 4).map(|n| format!("{n}.{pid}")).collect();
    let shell = format!(
        "(sleep {a} &) ; setsid sleep {b} & nohup sleep {c} >/dev/null 2>&1 & setsid -f nohup sleep {d} >/dev/null 2>&1; {end}",
        a = markers[0],
        b = markers[1],
        c = markers[2],
        d = markers[3],
    );
    let got = f.run_env(&shell, path_env(), timeout);
    assert_eq!((got.1.as_str(), got.2.as_str()), ("", ""));
    let left = markers
        .iter()
        .flat_map(|m| processes_matching(&format!("sleep {m}")))
        .collect();
    (got.0, left)
}

#[test]
fn grandchildren_do_not_outlive_the_timeout() {
    let f = Fixture::new(Network::None);
    assert_eq!(
        leave_grandchildren(&f, 300, "sleep 60", Duration::from_secs(1)),
        (ExitKind::TimedOut, Vec::new())
    );
}

/// Without a cgroup the timeout's SIGKILL reaches the waiter and pid 1 together, and the
/// run returns once the waiter is reaped: the kernel then kills the rest of the namespace
/// as pid 1 ends, a moment later (the pids cgroup, when there is one, is emptied before the
/// run returns). Whatever they did, none survives.
#[test]
fn grandchildren_do_not_outlive_the_timeout_without_a_cgroup() {
    let f = Fixture::build(Network::None, default_limits(), Some(NOBODY), None);
    for i in 0..3 {
        let (status, _) =
            leave_grandchildren(&f, 320 + i * 4, "sleep 60", Duration::from_millis(300));
        assert_eq!(status, ExitKind::TimedOut);
        let pid = std::process::id();
        let started = Instant::now();
        let left = loop {
            let left: Vec<String> = (320 + i * 4..324 + i * 4)
                .flat_map(|n| processes_matching(&format!("sleep {n}.{pid}")))
                .collect();
            if left.is_empty() || started.elapsed() > Duration::from_secs(1) {
                break left;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(left, Vec::<String>::new());
    }
}

/// Without a cgroup, and with the command ending normally: when the shell (pid 1 of the
/// namespace) ends, the kernel kills the rest of the namespace before the shell's parent
/// learns of its end.
#[test]
fn grandchildren_do_not_outlive_a_command_that_exits() {
    let f = Fixture::build(Network::None, default_limits(), Some(NOBODY), None);
    assert_eq!(
        leave_grandchildren(&f, 310, "exit 0", Duration::from_secs(10)),
        (ExitKind::Exited(0), Vec::new())
    );
}

#[test]
fn the_command_is_pid_1_of_its_own_namespace() {
    let f = Fixture::new(Network::None);
    let me = std::process::id();
    // The glob is expanded by the shell itself: no other process exists to be listed.
    let got = f.run(&format!(
        "echo $$; echo /proc/[0-9]*; kill -0 {me}; echo $?; cat /proc/{me}/environ"
    ));
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(1),
            "1\n/proc/1\n1\n",
            &format!(
                "/bin/sh: 1: kill: No such process\n\ncat: /proc/{me}/environ: No such file or directory\n"
            )
        )
    );
}

/// As sandboxd runs it: from inside a Landlock domain, where no fresh /proc can be mounted.
/// The host's processes show in /proc, but cannot be signalled (their pids mean nothing in
/// the namespace) nor inspected (Landlock, the uid); the seccomp filter is there too.
#[test]
fn pid_namespace_and_seccomp_hold_under_a_landlock_restricted_caller() {
    require_root();
    let base = support::sandbox_dir();
    let sandbox = Sandbox::new(SandboxConfig {
        bind_tmp: false,
        ..config(base.path(), Network::None)
    })
    .unwrap();
    let dir = base.path().to_path_buf();
    let me = std::process::id();
    let helper = helper().display().to_string();
    let got = std::thread::spawn(move || {
        // Landlock below ABI 8 restricts only the calling thread: this one.
        restrict_like_sandboxd(&dir);
        run_in(
            &sandbox,
            &format!(
                "echo $$; test -d /proc/{me} && echo host-pid-visible; kill -0 {me}; cat /proc/{me}/environ; {helper} attach-child"
            ),
            path_env(),
            Duration::from_secs(10),
        )
    })
    .join()
    .unwrap();
    assert_eq!(
        got,
        owned(
            ExitKind::Exited(0),
            "1\nhost-pid-visible\nptrace_attach_child EPERM\n",
            &format!(
                "/bin/sh: 1: kill: No such process\n\ncat: /proc/{me}/environ: Permission denied\n"
            )
        )
    );
}

/// The waiter between the sandbox and the command's pid 1 ends the way the command did.
#[test]
fn exit_codes_and_signals_are_those_of_the_command() {
    let f = Fixture::new(Network::None);
    assert_eq!(f.run("exit 3"), owned(ExitKind::Exited(3), "", ""));
    let h = helper().display().to_string();
    // A fault kills even pid 1; the shell as a parent reports 128 + 11.
    assert_eq!(
        f.run(&format!("ulimit -c 0; {h} segv; echo $?")),
        owned(ExitKind::Exited(0), "139\n", "Segmentation fault\n")
    );
    assert_eq!(
        f.run(&format!("ulimit -c 0; exec {h} segv")),
        owned(ExitKind::Signaled(libc::SIGSEGV), "", "")
    );
}

/// A set-up step that fails in pid 1 of the namespace (after the waiter was forked) is
/// still the spawn's error, reported at once.
#[test]
fn a_set_up_failure_in_pid_1_is_the_spawn_error() {
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let f = Fixture::build(
        Network::None,
        Limits {
            // Above the kernel's ceiling: setrlimit fails with EPERM, after the fork.
            nofile: Some(nr_open + 1),
            ..default_limits()
        },
        Some(NOBODY),
        None,
    );
    let started = Instant::now();
    let err = f
        .sandbox
        .run(&command(
            "echo unreachable",
            path_env(),
            Duration::from_secs(10),
        ))
        .unwrap_err();
    match err {
        SandboxError::Spawn(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        other => panic!("expected a spawn error, got {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
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
    let base = support::test_dir();
    let err = Sandbox::new(SandboxConfig {
        workspace: PathBuf::from("relative"),
        tmp: base.path().to_path_buf(),
        limits: Limits::default(),
        run_as: None,
        output_cap: 1,
        ..config(base.path(), Network::None)
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
            cwd: Some(PathBuf::from("../x")),
            ..command("true", BTreeMap::new(), Duration::from_secs(1))
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "working directory ../x is not a relative path inside the workspace"
    );
}

#[test]
fn output_past_the_cap_is_counted_not_kept() {
    require_root();
    let base = support::sandbox_dir();
    let sandbox = Sandbox::new(SandboxConfig {
        limits: Limits::default(),
        output_cap: 4,
        ..config(base.path(), Network::None)
    })
    .unwrap();
    let out = sandbox
        .run(&command(
            "printf 0123456789; printf ab >&2",
            BTreeMap::new(),
            Duration::from_secs(5),
        ))
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
