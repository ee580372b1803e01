//! A Debian machine booted with systemd as PID 1 in `systemd-nspawn`, for tests of the
//! installed suite: a fresh overlay of the cached root filesystem per container, commands
//! run inside through `nsenter`, everything torn down on drop.
//!
//! The host these tests run on has no systemd of its own (PID 1 is the VM's init), so
//! nspawn can neither register with machined nor ask for a scope: it runs with
//! `--register=no --keep-unit` in a cgroup made for it here, and commands enter the
//! container through its PID 1's namespaces instead of `machinectl`.

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Output, random_string};

/// The `PATH` of commands run inside; nothing else of the test's environment goes in.
const INSIDE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The cached Debian bookworm root filesystem, made on first use by
/// `scripts/nspawn-rootfs.sh` (debootstrap; about a minute). Panics when it cannot be
/// made: a test that needs a booted machine fails rather than skips.
pub fn nspawn_rootfs() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nspawn-rootfs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed ({}): {stdout}",
        script.display(),
        out.status
    );
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        path.join("usr/lib/systemd/systemd").is_file(),
        "{} printed {}, which holds no systemd",
        script.display(),
        path.display()
    );
    path
}

/// What to boot and what to give it.
#[derive(Debug)]
pub struct ContainerBuilder {
    rootfs: PathBuf,
    binds_ro: Vec<(PathBuf, String)>,
    boot_timeout: Duration,
}

impl ContainerBuilder {
    /// Makes the host folder `host` visible read-only at `inside` in the container.
    pub fn bind_ro(mut self, host: impl Into<PathBuf>, inside: &str) -> ContainerBuilder {
        self.binds_ro.push((host.into(), inside.to_string()));
        self
    }

    /// How long booting may take before the test fails (default 120 s).
    pub fn boot_timeout(mut self, timeout: Duration) -> ContainerBuilder {
        self.boot_timeout = timeout;
        self
    }

    /// Boots the machine and waits until its systemd says `running` or `degraded`.
    /// Panics, with the console output, when it does not get there.
    pub fn boot(self) -> Container {
        let name = format!(
            "stakpak-test-{}",
            random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 10)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .tempdir_in("/var/tmp")
            .expect("a folder for the container");
        let root = dir.path().join("root");
        let cgroups = make_cgroups(&name);
        for sub in ["upper", "work", "root"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        // An overlay instead of a copy: a clean machine in milliseconds, and the cached
        // root filesystem is never written.
        let mounted = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                self.rootfs.display(),
                dir.path().join("upper").display(),
                dir.path().join("work").display()
            ))
            .arg(&root)
            .output()
            .expect("run mount");
        assert!(
            mounted.status.success(),
            "cannot mount an overlay of {} at {}: {}",
            self.rootfs.display(),
            root.display(),
            String::from_utf8_lossy(&mounted.stderr)
        );
        let console_path = dir.path().join("console.log");
        let mut container = Container {
            name,
            dir: Some(dir),
            root,
            console_path,
            cgroups,
            nspawn: None,
            leader: 0,
        };
        container.start(&self);
        container.wait_for_boot(self.boot_timeout);
        container
    }
}

/// A booted machine. Dropping it powers it off (killing it if it does not stop in time),
/// unmounts its root and removes every trace of it on the host.
#[derive(Debug)]
pub struct Container {
    name: String,
    /// Removed on drop, after the overlay is unmounted.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    console_path: PathBuf,
    cgroups: Vec<PathBuf>,
    nspawn: Option<Child>,
    leader: u32,
}

impl Container {
    /// A container booted from `rootfs` (usually [`nspawn_rootfs`]).
    pub fn builder(rootfs: impl Into<PathBuf>) -> ContainerBuilder {
        ContainerBuilder {
            rootfs: rootfs.into(),
            binds_ro: Vec::new(),
            boot_timeout: Duration::from_secs(120),
        }
    }

    /// The machine name (also its hostname).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host pid of the container's PID 1 (its systemd).
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// Where a path inside the container is on the host (the overlay's merged view):
    /// files written here are seen inside at once.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// What the container printed on its console so far (systemd's boot messages).
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console_path).unwrap_or_default()
    }

    /// The `nsenter` command that runs `program ARGS` inside, as root, in every namespace
    /// of the container's PID 1, with an empty environment but for `PATH`, `HOME`, `LANG`
    /// and no pager or colours.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.leader.to_string())
            .arg("--all")
            .arg("--")
            .arg("/usr/bin/env")
            .arg("-i")
            .arg(format!("PATH={INSIDE_PATH}"))
            .arg("HOME=/root")
            .arg("LANG=C.UTF-8")
            .arg("TERM=dumb")
            .arg("SYSTEMD_PAGER=")
            .arg("SYSTEMD_COLORS=0")
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` inside and waits for it.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("a command to run");
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"))
            .into()
    }

    /// Runs `script` with `/bin/sh -c` inside and waits for it.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["/bin/sh", "-c", script])
    }

    /// `systemctl status` and the journal's last lines of `units` inside, for a failure
    /// message; the whole journal's tail when `units` is empty.
    pub fn diagnose(&self, units: &[&str]) -> String {
        let mut text = String::new();
        if !units.is_empty() {
            let mut status = vec!["systemctl", "status", "--no-pager", "--full", "--lines=0"];
            status.extend_from_slice(units);
            let out = self.exec(&status);
            let _ = write!(
                text,
                "--- {}\n{}{}",
                status.join(" "),
                out.stdout,
                out.stderr
            );
        }
        let mut journal = vec![
            "journalctl",
            "--no-pager",
            "--lines=60",
            "-o",
            "short-monotonic",
        ];
        for unit in units {
            journal.push("-u");
            journal.push(unit);
        }
        let out = self.exec(&journal);
        let _ = write!(
            text,
            "--- {}\n{}{}",
            journal.join(" "),
            out.stdout,
            out.stderr
        );
        text
    }

    /// Fails the test: `step` and `what` went wrong, followed by [`Container::diagnose`]
    /// of `units`.
    pub fn fail(&self, step: &str, what: &str, units: &[&str]) -> ! {
        panic!(
            "step `{step}` failed: {what}\n{}",
            self.diagnose(units).trim_end()
        )
    }

    fn start(&mut self, builder: &ContainerBuilder) {
        let console = File::create(&self.console_path).unwrap();
        // The shell joins the cgroups made for this container, then becomes nspawn.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(
                "for cg in $STAKPAK_NSPAWN_CGROUPS; do echo $$ >\"$cg/cgroup.procs\" || exit 125; \
                 done; unset STAKPAK_NSPAWN_CGROUPS; exec \"$@\"",
            )
            .arg("sh")
            .arg("systemd-nspawn")
            .env(
                "STAKPAK_NSPAWN_CGROUPS",
                self.cgroups
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            // The container's systemd runs the unified (v2) hierarchy, as Debian does on a
            // real machine, whatever the host mounts.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .arg("--quiet")
            .arg("--boot")
            .arg(format!("--directory={}", self.root.display()))
            .arg(format!("--machine={}", self.name))
            // No machined and no systemd on the host to register with or to make a scope.
            .arg("--register=no")
            .arg("--keep-unit")
            // Leave the host's /var/log/journal alone.
            .arg("--link-journal=no")
            // Boot messages to the log file; nothing reads the console.
            .arg("--console=read-only")
            // No --private-network: the container shares the host's network namespace, so
            // the agent inside reaches an LLM double on the host's 127.0.0.1. nspawn then
            // withholds CAP_NET_ADMIN, and units with PrivateNetwork=yes log that they
            // cannot bring up their loopback (harmless: they need no network).
            //
            // nspawn's own seccomp allow-list (systemd 252) predates Landlock: without these
            // every daemon inside would find Landlock missing (ABI 0).
            .arg("--system-call-filter=landlock_create_ruleset landlock_add_rule landlock_restrict_self");
        for (host, inside) in &builder.binds_ro {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        // The kernel command line of the container's systemd.
        cmd.arg("systemd.firstboot=off")
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console);
        self.nspawn = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start systemd-nspawn: {e}")),
        );
    }

    fn wait_for_boot(&mut self, timeout: Duration) {
        let start = Instant::now();
        let nspawn_pid = self.nspawn.as_ref().map(Child::id).unwrap_or_default();
        // The container's PID 1 is nspawn's child once that child has become systemd.
        while self.leader == 0 {
            self.check_nspawn_alive("find the container's PID 1");
            if let Some(pid) = children(nspawn_pid).into_iter().find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "systemd")
            }) {
                self.leader = pid;
            } else if start.elapsed() > timeout {
                panic!(
                    "container {} has no systemd after {timeout:?}; console:\n{}",
                    self.name,
                    self.console()
                );
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Until the container's bus is up `systemctl` fails at once; retry until the
        // state is final.
        loop {
            self.check_nspawn_alive("boot");
            let out = self.exec(&["timeout", "10", "systemctl", "is-system-running", "--wait"]);
            let state = out.stdout.trim().to_string();
            if state == "running" || state == "degraded" {
                if state == "degraded" {
                    let failed = self.exec(&["systemctl", "--failed", "--no-pager"]);
                    eprintln!(
                        "container {} booted degraded:\n{}",
                        self.name, failed.stdout
                    );
                }
                eprintln!(
                    "container {} booted ({state}) in {:.1} s",
                    self.name,
                    start.elapsed().as_secs_f64()
                );
                return;
            }
            let last = format!("{state} {}", out.stderr.trim());
            if start.elapsed() > timeout {
                panic!(
                    "container {} did not finish booting in {timeout:?} (last state: {last}); console:\n{}",
                    self.name,
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn check_nspawn_alive(&mut self, doing: &str) {
        if let Some(child) = self.nspawn.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "systemd-nspawn exited ({status}) during {doing} of {}; console:\n{}",
                self.name,
                self.console()
            );
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut nspawn) = self.nspawn.take() {
            // SIGTERM makes nspawn ask the container's systemd to power off.
            let _ = Command::new("kill")
                .args(["-TERM", &nspawn.id().to_string()])
                .status();
            let stopped = crate::wait_until(Duration::from_secs(30), || {
                nspawn.try_wait().ok().flatten().map(|_| ())
            });
            if stopped.is_none() {
                eprintln!(
                    "container {} did not power off in 30 s: killing it",
                    self.name
                );
                if self.leader != 0 {
                    // PID 1 of a pid namespace: its death kills every process inside.
                    let _ = Command::new("kill")
                        .args(["-KILL", &self.leader.to_string()])
                        .status();
                }
                let _ = nspawn.kill();
                let _ = nspawn.wait();
            }
        }
        let mut unmounted = Command::new("umount")
            .arg(&self.root)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            unmounted = Command::new("umount")
                .arg("--lazy")
                .arg(&self.root)
                .status()
                .is_ok_and(|s| s.success());
        }
        if !unmounted {
            // Removing the folder now would reach through the mount into the lower layer's
            // view; leave it for an operator rather than risk that.
            eprintln!("cannot unmount {}: leaving it", self.root.display());
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
        for cgroup in &self.cgroups {
            remove_cgroup(cgroup);
        }
    }
}

/// A fresh cgroup named `name` in each hierarchy systemd cares about, below the test's own:
/// nspawn puts its `payload` and `supervisor` cgroups below its own, so containers booted
/// side by side never share one.
fn make_cgroups(name: &str) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path_of = |controller: &str| {
        own.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, ctl, path) = (fields.next()?, fields.next()?, fields.next()?);
            (ctl == controller).then(|| path.trim_start_matches('/').to_string())
        })
    };
    let mut made = Vec::new();
    let mut hierarchies = Vec::new();
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        // Unified only.
        hierarchies.push((PathBuf::from("/sys/fs/cgroup"), path_of("")));
    } else {
        if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            hierarchies.push((PathBuf::from("/sys/fs/cgroup/unified"), path_of("")));
        }
        if Path::new("/sys/fs/cgroup/systemd/cgroup.procs").exists() {
            hierarchies.push((
                PathBuf::from("/sys/fs/cgroup/systemd"),
                path_of("name=systemd"),
            ));
        }
    }
    for (mount, own_path) in hierarchies {
        let dir = mount.join(own_path.unwrap_or_default()).join(name);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot make the cgroup {}: {e}", dir.display()));
        made.push(dir);
    }
    made
}

/// Removes a cgroup and everything the container left below it, deepest first.
fn remove_cgroup(dir: &Path) {
    let mut dirs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        dirs.push(d);
    }
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
