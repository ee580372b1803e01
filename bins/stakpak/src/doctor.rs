//! `stakpak doctor`: checks that the suite can run on this machine and is running well, and
//! says how to fix each thing that is not.
//!
//! The checks read the host (Landlock, user namespaces, cgroups, memory, disk, Docker), the
//! configuration (daemon files, policy packs, the agent's profile and LLM key, the vault key)
//! and the suite itself (units when installed, bus names, each daemon's `Status()`). Each
//! check ends `ok`, `warn`, `fail` or `skip`; any `fail` makes the exit status 1.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{self, Read, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use serde::Serialize;
use stakpak_config::{AgentConfig, ConfigError, DEFAULT_PROFILE, KeySource};
use stakpak_proto::{Backend, Daemon, DaemonState, LandlockStatus};
use stakpak_util::one_line;
use zbus::Connection;

use crate::{
    locate::{self, Target},
    status,
    suite::Layout,
    table::{Column, Table},
};

/// How long connecting to a bus or asking it something may take.
const BUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the Docker engine has to answer `/_ping`.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(3);

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// `MemAvailable` below these: warn, fail.
const MEMORY_WARN: u64 = GIB;
const MEMORY_FAIL: u64 = 256 * MIB;
/// Free space of the state folder below these: warn, fail.
const DISK_WARN: u64 = 2 * GIB;
const DISK_FAIL: u64 = 200 * MIB;
/// The lowest Landlock ABI sandboxd's local sandbox accepts with `require_landlock`
/// (`stakpak_sandbox::FULL_FS_ABI`).
const SANDBOX_LANDLOCK_ABI: u32 = 5;
/// The ABI that scopes signals and abstract sockets, which the daemons ask for.
const SCOPED_LANDLOCK_ABI: u32 = 6;

/// Installed: the configuration folder and the credentials the units load.
const INSTALLED_CONFIG_DIR: &str = "/etc/stakpak";
const INSTALLED_CREDENTIALS_DIR: &str = "/etc/stakpak/credentials";
const INSTALLED_STATE_BASE: &str = "/var/lib";
/// The user an installed sandboxd runs as cannot be looked up cheaply; `nobody` stands in
/// for any unprivileged user when trying a user namespace.
const NOBODY: u32 = 65534;

/// Files read by the five daemons, `<config-dir>/<short name>.toml`.
const DAEMON_CONFIGS: [&str; 5] = ["agent", "warden", "secretd", "sandboxd", "schedd"];

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn symbol(self, fancy: bool) -> &'static str {
        match (self, fancy) {
            (Status::Ok, true) => "✓",
            (Status::Warn, true) => "!",
            (Status::Fail, true) => "✗",
            (Status::Skip, true) => "-",
            (Status::Ok, false) => "ok  ",
            (Status::Warn, false) => "warn",
            (Status::Fail, false) => "FAIL",
            (Status::Skip, false) => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub message: String,
    /// A command or configuration change that fixes a `warn` or `fail`.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            message: message.into(),
            fix: None,
        }
    }
    fn ok(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, message)
    }
    fn skip(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check::new(name, Status::Skip, message)
    }
    fn warn(name: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(name, Status::Warn, message).with_fix(fix)
    }
    fn fail(name: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, message).with_fix(fix)
    }
    fn with_fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Which suite the checks are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Units under systemd, the system bus.
    Installed,
    /// `stakpak up`'s suite, or a bus given with `--bus-address`.
    Embedded,
}

/// Where the checked files are.
#[derive(Debug)]
struct Place {
    mode: Mode,
    config_dir: PathBuf,
    /// A folder on the file system holding the daemons' state (for the disk check).
    state_base: PathBuf,
    /// secretd's state folder (embedded; the vault key's default place).
    secretd_state: PathBuf,
    /// How to describe the suite in the report's first line.
    describe: String,
    /// The suite to ask over D-Bus; `None` when none runs.
    target: Option<Target>,
}

impl Place {
    pub(crate) fn resolve(
        bus_address: Option<&str>,
        layout: &Layout,
        explicit_config_dir: bool,
    ) -> Place {
        let located = locate::locate(bus_address, layout);
        let embedded = |target: Option<Target>, config_dir: PathBuf, describe: String| Place {
            mode: Mode::Embedded,
            config_dir,
            state_base: layout
                .state_dir(Daemon::Secrets)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| layout.root.clone()),
            secretd_state: layout.state_dir(Daemon::Secrets),
            describe,
            target,
        };
        match located {
            Ok(Target::System) => Place {
                mode: Mode::Installed,
                config_dir: if explicit_config_dir {
                    layout.config_dir.clone()
                } else {
                    PathBuf::from(INSTALLED_CONFIG_DIR)
                },
                state_base: PathBuf::from(INSTALLED_STATE_BASE),
                secretd_state: PathBuf::from(INSTALLED_STATE_BASE).join("stakpak-secretd"),
                describe: Target::System.describe(),
                target: Some(Target::System),
            },
            Ok(Target::Embedded(info)) => {
                let config_dir = info.config_dir.clone();
                let target = Target::Embedded(info);
                let describe = target.describe();
                embedded(Some(target), config_dir, describe)
            }
            Ok(target @ Target::Address(_)) => {
                let describe = target.describe();
                embedded(Some(target), layout.config_dir.clone(), describe)
            }
            Err(_) => embedded(
                None,
                layout.config_dir.clone(),
                format!("no suite running (looked in {})", layout.root.display()),
            ),
        }
    }

    /// The fix for anything that needs a running suite.
    fn start_fix(&self) -> &'static str {
        match self.mode {
            Mode::Installed => "stakpak up (systemctl start stakpak.target)",
            Mode::Embedded => "stakpak up",
        }
    }

    fn config_file(&self, name: &str) -> PathBuf {
        self.config_dir.join(name)
    }
}

/// `stakpak doctor`.
/// The folder of the agent's `config.toml` for the suite this command talks to: the running
/// embedded suite's, `/etc/stakpak` for the installed one (unless `--config-dir` was given),
/// else this command's own.
pub(crate) fn agent_config_dir(
    bus_address: Option<&str>,
    layout: &Layout,
    explicit_config_dir: bool,
) -> PathBuf {
    Place::resolve(bus_address, layout, explicit_config_dir).config_dir
}

pub fn run(
    json: bool,
    bus_address: Option<&str>,
    layout: &Layout,
    explicit_config_dir: bool,
) -> anyhow::Result<ExitCode> {
    let ctx = Place::resolve(bus_address, layout, explicit_config_dir);
    // Forks a child: done first, while this process has a single thread.
    let userns = check_user_namespaces(ctx.mode);
    let runtime = crate::runtime::new()?;
    let mut checks = Vec::new();
    if ctx.mode == Mode::Installed {
        checks.extend(check_units());
    }
    checks.extend(runtime.block_on(check_suite(&ctx)));
    checks.push(check_landlock(&ctx));
    checks.push(userns);
    checks.push(check_cgroup());
    checks.push(check_memory());
    checks.push(check_disk(&ctx.state_base));
    checks.push(check_docker(&ctx));
    checks.push(check_daemon_configs(&ctx));
    checks.push(check_policy(&ctx));
    checks.extend(check_agent(&ctx));
    checks.push(check_vault_key(&ctx));

    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&checks)?)?;
    } else {
        let fancy = rustix::termios::isatty(io::stdout());
        write!(out, "stakpak doctor: {}\n\n", ctx.describe)?;
        write!(out, "{}", render(&checks, fancy))?;
    }
    Ok(exit_code(&checks))
}

/// 1 when a check failed, else 0.
pub fn exit_code(checks: &[Check]) -> ExitCode {
    if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The report as a table: symbol, name, message, and the fix on the next line.
pub fn render(checks: &[Check], fancy: bool) -> String {
    let mut table = Table::new(2, ["", "", ""].map(Column::fit)).without_header();
    for c in checks {
        table.row([c.status.symbol(fancy), &c.name, &c.message]);
        if let Some(fix) = &c.fix
            && matches!(c.status, Status::Warn | Status::Fail)
        {
            table.under(2, format!("fix: {fix}"));
        }
    }
    let mut out = table.render();
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let _ = write!(
        out,
        "\n{} ok, {} warnings, {} failed, {} skipped\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    );
    out
}

// ---------------------------------------------------------------------------------------
// The suite: units, bus names, Status()

/// The units an installed suite consists of, target first.
fn unit_names() -> Vec<String> {
    std::iter::once("stakpak.target".to_string())
        .chain(
            Daemon::ALL
                .iter()
                .map(|d| format!("{}.service", d.binary())),
        )
        .collect()
}

fn check_units() -> Vec<Check> {
    let units = unit_names();
    let output = std::process::Command::new("systemctl")
        .arg("show")
        .arg("--property=Id,LoadState,ActiveState,SubState,UnitFileState")
        .args(&units)
        .output();
    let fail_all = |why: String| {
        units
            .iter()
            .map(|u| {
                Check::fail(
                    format!("unit {u}"),
                    why.clone(),
                    "the installed suite needs systemd as PID 1; without it use the embedded suite (stakpak up)",
                )
            })
            .collect()
    };
    match output {
        Ok(out) if out.status.success() => {
            let shown = parse_systemctl_show(&String::from_utf8_lossy(&out.stdout));
            units
                .iter()
                .map(|u| {
                    let props = shown
                        .iter()
                        .find(|p| p.get("Id").map(String::as_str) == Some(u.as_str()));
                    unit_check(u, props)
                })
                .collect()
        }
        Ok(out) => fail_all(format!(
            "systemctl show failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => fail_all(format!("cannot run systemctl: {e}")),
    }
}

/// `systemctl show` of several units: blocks of `Key=Value` lines separated by blank lines.
pub fn parse_systemctl_show(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut blocks = Vec::new();
    let mut current = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            current.insert(k.to_string(), v.to_string());
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The verdict on one unit from its `systemctl show` properties.
pub fn unit_check(unit: &str, props: Option<&BTreeMap<String, String>>) -> Check {
    let name = format!("unit {unit}");
    let get = |k: &str| {
        props
            .and_then(|p| p.get(k))
            .map(String::as_str)
            .unwrap_or("")
    };
    let journal = format!("journalctl -u {unit} -n 50 shows why; then systemctl restart {unit}");
    match (get("LoadState"), get("ActiveState")) {
        ("not-found", _) | ("", _) => Check::fail(
            name,
            "not installed",
            "install the stakpak package (apt install ./stakpak_<version>_<arch>.deb or dnf install ./stakpak-<version>.rpm)",
        ),
        ("masked", _) => Check::fail(name, "masked", format!("systemctl unmask {unit}")),
        ("loaded", "active") => {
            let enabled = get("UnitFileState");
            if unit == "stakpak.target" && !matches!(enabled, "enabled" | "static" | "") {
                Check::warn(
                    name,
                    format!("active, but {enabled}: it will not start at boot"),
                    "systemctl enable stakpak.target",
                )
            } else {
                Check::ok(name, format!("active ({})", get("SubState")))
            }
        }
        ("loaded", state @ ("activating" | "reloading" | "deactivating")) => {
            Check::warn(name, state.to_string(), journal)
        }
        ("loaded", "failed") => Check::fail(name, format!("failed ({})", get("SubState")), journal),
        ("loaded", state) => Check::fail(
            name,
            if state.is_empty() {
                "not active".to_string()
            } else {
                state.to_string()
            },
            "stakpak up (systemctl start stakpak.target)",
        ),
        (load, _) => Check::fail(
            name,
            format!("cannot be loaded ({load})"),
            format!(
                "systemd-analyze verify {unit} names the problem; then systemctl daemon-reload"
            ),
        ),
    }
}

async fn check_suite(ctx: &Place) -> Vec<Check> {
    let bus_name = |d: Daemon| format!("bus {}", d.bus_name());
    let daemon_name = |d: Daemon| format!("daemon {}", d.short_name());
    let Some(target) = &ctx.target else {
        return Daemon::ALL
            .iter()
            .flat_map(|&d| {
                [
                    Check::fail(bus_name(d), "no suite is running", ctx.start_fix()),
                    Check::fail(daemon_name(d), "no suite is running", ctx.start_fix()),
                ]
            })
            .collect();
    };
    let conn = match tokio::time::timeout(BUS_TIMEOUT, target.connect()).await {
        Ok(Ok(conn)) => conn,
        result => {
            let why = match result {
                Ok(Err(e)) => format!("{e:#}"),
                _ => format!("no answer within {} s", BUS_TIMEOUT.as_secs()),
            };
            return Daemon::ALL
                .iter()
                .flat_map(|&d| {
                    [
                        Check::fail(bus_name(d), why.clone(), ctx.start_fix()),
                        Check::fail(daemon_name(d), why.clone(), ctx.start_fix()),
                    ]
                })
                .collect();
        }
    };
    let mut checks = Vec::new();
    for daemon in Daemon::ALL {
        let (owned, status) =
            tokio::join!(name_owned(&conn, daemon), status::status_of(&conn, daemon));
        checks.push(bus_check(ctx, daemon, owned));
        checks.push(daemon_check(ctx, daemon, status));
    }
    checks
}

async fn name_owned(conn: &Connection, daemon: Daemon) -> Result<bool, String> {
    let ask = async {
        let dbus = zbus::fdo::DBusProxy::new(conn).await?;
        let name = zbus::names::BusName::try_from(daemon.bus_name())?;
        dbus.name_has_owner(name).await.map_err(zbus::Error::from)
    };
    match tokio::time::timeout(BUS_TIMEOUT, ask).await {
        Ok(Ok(owned)) => Ok(owned),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", BUS_TIMEOUT.as_secs())),
    }
}

/// What to do when a daemon of a running suite is missing or unwell.
fn daemon_fix(ctx: &Place, daemon: Daemon) -> String {
    match ctx.mode {
        Mode::Installed => format!(
            "journalctl -u {0} -n 50 shows why; then systemctl restart {0}",
            daemon.binary()
        ),
        Mode::Embedded => format!(
            "stakpak logs -c {} shows why; stakpak down && stakpak up restarts the suite",
            daemon.short_name()
        ),
    }
}

fn bus_check(ctx: &Place, daemon: Daemon, owned: Result<bool, String>) -> Check {
    let name = format!("bus {}", daemon.bus_name());
    match owned {
        Ok(true) => Check::ok(name, format!("owned by {}", daemon.binary())),
        Ok(false) => Check::fail(
            name,
            format!("nobody owns it: {} is not on the bus", daemon.binary()),
            daemon_fix(ctx, daemon),
        ),
        Err(e) => Check::fail(name, format!("cannot ask the bus: {e}"), ctx.start_fix()),
    }
}

fn daemon_check(
    ctx: &Place,
    daemon: Daemon,
    status: Result<stakpak_proto::DaemonStatus, String>,
) -> Check {
    let name = format!("daemon {}", daemon.short_name());
    let s = match status {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                name,
                format!("Status() failed: {e}"),
                daemon_fix(ctx, daemon),
            );
        }
    };
    let landlock = match s.landlock_abi {
        0 => s.landlock.to_string(),
        abi => format!("{} (ABI {abi})", s.landlock),
    };
    let summary = format!(
        "{}, pid {}, version {}, Landlock {landlock}",
        s.state, s.pid, s.version
    );
    match s.state {
        DaemonState::Running => {}
        DaemonState::Starting | DaemonState::Reloading => {
            return Check::warn(
                name,
                summary,
                "wait a few seconds and run stakpak doctor again",
            );
        }
        DaemonState::Stopping => return Check::fail(name, summary, daemon_fix(ctx, daemon)),
    }
    match s.landlock {
        LandlockStatus::Enforced => Check::ok(name, summary),
        LandlockStatus::Partial | LandlockStatus::NotEnforced => Check::warn(
            name,
            format!("{summary}: the daemon is not fully confined"),
            landlock_fix(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The kernel

fn landlock_fix() -> &'static str {
    "run Linux 6.7 or later with Landlock among the LSMs (cat /sys/kernel/security/lsm; boot with lsm=landlock,… if it is missing)"
}

/// The kernel's Landlock ABI version, 0 without Landlock.
pub fn landlock_abi() -> u32 {
    const CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and size 0 the kernel only returns the ABI version; no
    // memory is read or written.
    #[allow(unsafe_code)]
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

fn check_landlock(ctx: &Place) -> Check {
    let abi = landlock_abi();
    let required = sandboxd_config(ctx)
        .ok()
        .flatten()
        .and_then(|t| {
            t.get("exec")
                .and_then(|e| e.get("require_landlock"))
                .and_then(toml::Value::as_bool)
        })
        .unwrap_or(true);
    let name = "landlock";
    if abi >= SCOPED_LANDLOCK_ABI {
        return Check::ok(name, format!("Landlock ABI {abi}"));
    }
    let what = if abi == 0 {
        "Landlock is not available".to_string()
    } else {
        format!("Landlock ABI {abi}")
    };
    if abi < SANDBOX_LANDLOCK_ABI && required {
        return Check::fail(
            name,
            format!(
                "{what}: sandboxd needs ABI {SANDBOX_LANDLOCK_ABI} or later and refuses to run commands (require_landlock)"
            ),
            format!(
                "{}; or, accepting weaker confinement, set [exec] require_landlock = false in {}",
                landlock_fix(),
                ctx.config_file("sandboxd.toml").display()
            ),
        );
    }
    Check::warn(
        name,
        format!(
            "{what}: the daemons and the sandbox cannot scope signals and abstract sockets (ABI {SCOPED_LANDLOCK_ABI})"
        ),
        landlock_fix(),
    )
}

/// Reads a small `/proc` or `/sys` file, trimmed.
fn read_knob(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn check_user_namespaces(mode: Mode) -> Check {
    let name = "user namespaces";
    let sysctl_fix = |knob: &str, value: &str| {
        format!(
            "sysctl -w {knob}={value} (and keep it in /etc/sysctl.d/50-stakpak.conf: {knob} = {value})"
        )
    };
    if read_knob("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Check::fail(
            name,
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0): the local sandbox cannot start commands",
            sysctl_fix("kernel.unprivileged_userns_clone", "1"),
        );
    }
    if read_knob("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Check::fail(
            name,
            "user namespaces are disabled (user.max_user_namespaces = 0): the local sandbox cannot start commands",
            sysctl_fix("user.max_user_namespaces", "15000"),
        );
    }
    // Installed, sandboxd is an unprivileged user: try as one when we are root.
    let as_nobody = mode == Mode::Installed && rustix::process::geteuid().is_root();
    let who = if as_nobody {
        "an unprivileged user"
    } else {
        "this user"
    };
    match try_unshare_user(as_nobody) {
        Ok(()) => Check::ok(name, format!("{who} can create a user namespace")),
        Err(e) => {
            let fix = if read_knob("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
                .as_deref()
                == Some("1")
            {
                sysctl_fix("kernel.apparmor_restrict_unprivileged_userns", "0")
            } else {
                "allow unprivileged user namespaces (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone; a container runtime may forbid them), or use the Docker backend ([exec] backend = \"docker\")".to_string()
            };
            Check::fail(
                name,
                format!(
                    "{who} cannot create a user namespace ({e}): the local sandbox cannot start commands"
                ),
                fix,
            )
        }
    }
}

/// Tries `unshare(CLONE_NEWUSER)` in a forked child, as `nobody` when `as_nobody`.
fn try_unshare_user(as_nobody: bool) -> io::Result<()> {
    // SAFETY: called before this process starts a second thread (see `run`); the child
    // makes only raw system calls, which are async-signal-safe, and leaves with `_exit`.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: raw system calls on plain integers, then `_exit`; nothing allocates, and
        // no destructor or atexit handler of the parent runs in the child.
        #[allow(unsafe_code)]
        unsafe {
            let errno = || *libc::__errno_location();
            let mut code = 0;
            if as_nobody
                && (libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>())
                    != 0
                    || libc::syscall(libc::SYS_setgid, NOBODY) != 0
                    || libc::syscall(libc::SYS_setuid, NOBODY) != 0)
            {
                code = errno();
            }
            if code == 0 && libc::unshare(libc::CLONE_NEWUSER) != 0 {
                code = errno();
            }
            libc::_exit(code.clamp(0, 255));
        }
    }
    let pid = rustix::process::Pid::from_raw(pid).ok_or_else(|| io::Error::other("bad pid"))?;
    let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        .map_err(io::Error::from)?
        .map(|(_, s)| s);
    match status.and_then(|s| s.exit_status()) {
        Some(0) => Ok(()),
        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        None => Err(io::Error::other("the test process died")),
    }
}

/// Mount points of cgroup file systems: (mount point, type).
pub fn cgroup_mounts(mounts: &str) -> Vec<(String, String)> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "cgroup" | "cgroup2").then(|| (at.to_string(), kind.to_string()))
        })
        .collect()
}

fn check_cgroup() -> Check {
    let name = "cgroup pids";
    let fix = "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or set [limits] cgroup in sandboxd.toml to a delegated cgroup";
    let mounts = cgroup_mounts(&std::fs::read_to_string("/proc/self/mounts").unwrap_or_default());
    let unified = mounts
        .iter()
        .find(|(at, kind)| kind == "cgroup2" && at == "/sys/fs/cgroup");
    if let Some((at, _)) = unified {
        let controllers =
            std::fs::read_to_string(Path::new(at).join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "pids") {
            return Check::ok(name, "cgroup v2 with the pids controller");
        }
        return Check::warn(
            name,
            "cgroup v2 without the pids controller: commands run without a pids cgroup (RLIMIT_NPROC only)",
            "enable the pids controller (it is in every distribution kernel; check cgroup_disable= on the kernel command line)",
        );
    }
    let v1_pids = mounts
        .iter()
        .any(|(at, kind)| kind == "cgroup" && at.ends_with("/pids"));
    if v1_pids {
        return Check::warn(
            name,
            "cgroup v1 or hybrid: sandboxd limits processes with a pids cgroup only when [limits] cgroup names one in the v1 pids hierarchy",
            fix,
        );
    }
    Check::warn(
        name,
        "no cgroup file system with the pids controller: commands run without a pids cgroup (RLIMIT_NPROC only)",
        fix,
    )
}

// ---------------------------------------------------------------------------------------
// Resources

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// A size for people: `1.5 GiB`, `300 MiB`.
pub fn human(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// `ok`, `warn` or `fail` for an amount against two thresholds.
pub fn grade(amount: u64, warn_below: u64, fail_below: u64) -> Status {
    if amount < fail_below {
        Status::Fail
    } else if amount < warn_below {
        Status::Warn
    } else {
        Status::Ok
    }
}

fn check_memory() -> Check {
    let name = "memory";
    let Some(available) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_available(&m))
    else {
        return Check::skip(name, "/proc/meminfo has no MemAvailable");
    };
    let status = grade(available, MEMORY_WARN, MEMORY_FAIL);
    let message = format!("{} available", human(available));
    match status {
        Status::Ok => Check::ok(name, message),
        _ => Check::new(
            name,
            status,
            format!(
                "only {message} (the suite wants {} free, commands and the model client more)",
                human(MEMORY_WARN)
            ),
        )
        .with_fix("stop what is not needed (ps aux --sort=-rss | head) or add memory or swap"),
    }
}

fn check_disk(state_base: &Path) -> Check {
    let name = "disk";
    // The state folder may not exist yet (first start): its nearest existing ancestor is
    // on the same file system once it does.
    let Some(existing) = state_base.ancestors().find(|p| p.exists()) else {
        return Check::skip(
            name,
            format!("no folder of {} exists", state_base.display()),
        );
    };
    let free = match rustix::fs::statvfs(existing) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            return Check::skip(name, format!("cannot stat {}: {e}", existing.display()));
        }
    };
    let status = grade(free, DISK_WARN, DISK_FAIL);
    let message = format!("{} free for {}", human(free), state_base.display());
    match status {
        Status::Ok => Check::ok(name, message),
        _ => Check::new(
            name,
            status,
            format!(
                "only {message}: audit trails, sessions and workspaces grow there (want {})",
                human(DISK_WARN)
            ),
        )
        .with_fix(format!(
            "free space on the file system of {} (du -xsh {}/* | sort -h; journalctl --vacuum-size=200M)",
            existing.display(),
            existing.display()
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Docker

/// `<config>/sandboxd.toml` as a table; `None` when absent.
fn sandboxd_config(ctx: &Place) -> Result<Option<toml::Table>, String> {
    read_toml(&ctx.config_file("sandboxd.toml"))
}

fn read_toml(path: &Path) -> Result<Option<toml::Table>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| one_line(&e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// How sandboxd's configuration uses Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerUse {
    /// No enabled `[docker]`, `exec.backend` not `docker`.
    None,
    /// `exec.backend = "docker"`: every command that names no backend.
    Default(PathBuf),
    /// An enabled `[docker]` only: commands that ask for it.
    OnRequest(PathBuf),
}

/// Reads the Docker settings of a parsed `sandboxd.toml`.
pub fn docker_use(config: &toml::Table) -> DockerUse {
    let backend = config
        .get("exec")
        .and_then(|e| e.get("backend"))
        .and_then(toml::Value::as_str)
        .and_then(|b| b.parse::<Backend>().ok());
    let section = config.get("docker").and_then(toml::Value::as_table);
    let enabled = section
        .and_then(|d| d.get("enabled"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(true);
    let socket = section
        .and_then(|d| d.get("socket"))
        .and_then(toml::Value::as_str)
        .unwrap_or("/var/run/docker.sock");
    let socket = PathBuf::from(socket);
    if backend == Some(Backend::Docker) {
        DockerUse::Default(socket)
    } else if section.is_some() && enabled {
        DockerUse::OnRequest(socket)
    } else {
        DockerUse::None
    }
}

/// `GET /_ping` on the engine's unix socket; the status code of the answer.
pub fn docker_ping(socket: &Path, timeout: Duration) -> io::Result<u16> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    http_status(&head).ok_or_else(|| io::Error::other("the answer is not HTTP"))
}

/// The status code of an HTTP/1.x response's first line.
pub fn http_status(response: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(response.split(|&b| b == b'\n').next()?).ok()?;
    let mut words = text.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

fn check_docker(ctx: &Place) -> Check {
    let name = "docker";
    let path = ctx.config_file("sandboxd.toml");
    let config = match sandboxd_config(ctx) {
        Ok(Some(c)) => c,
        Ok(None) => return Check::skip(name, "not configured (no sandboxd.toml)"),
        Err(_) => {
            return Check::skip(
                name,
                format!("{} does not parse (see config)", path.display()),
            );
        }
    };
    let (socket, is_default) = match docker_use(&config) {
        DockerUse::None => return Check::skip(name, "not configured as a sandbox backend"),
        DockerUse::Default(s) => (s, true),
        DockerUse::OnRequest(s) => (s, false),
    };
    let answer = match docker_ping(&socket, DOCKER_TIMEOUT) {
        Ok(200) => return Check::ok(name, format!("the engine at {} answers", socket.display())),
        Ok(code) => format!("it answered HTTP {code}"),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Check::warn(
                name,
                format!(
                    "cannot open {} as this user ({e}), so the engine could not be asked",
                    socket.display()
                ),
                "run stakpak doctor as root (or as a member of group docker)",
            );
        }
        Err(e) => e.to_string(),
    };
    let message = format!(
        "Docker is configured as the sandbox backend but the engine at {} does not answer ({answer})",
        socket.display()
    );
    if is_default {
        Check::fail(
            name,
            message,
            format!(
                "start it (systemctl start docker) or set [exec] backend = \"local\" in {}",
                path.display()
            ),
        )
    } else {
        Check::warn(
            name,
            format!("{message}: commands that ask for the docker backend will fail"),
            format!(
                "start it (systemctl start docker) or set enabled = false in [docker] of {}",
                path.display()
            ),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Configuration

fn check_daemon_configs(ctx: &Place) -> Check {
    let name = "config";
    let mut valid = Vec::new();
    let mut absent = Vec::new();
    let mut bad = Vec::new();
    for daemon in DAEMON_CONFIGS {
        let file = format!("{daemon}.toml");
        match read_toml(&ctx.config_file(&file)) {
            Ok(Some(_)) => valid.push(file),
            Ok(None) => absent.push(file),
            Err(e) => bad.push(format!("{}: {e}", ctx.config_file(&file).display())),
        }
    }
    if !bad.is_empty() {
        return Check::fail(
            name,
            format!(
                "{} (the daemon exits 78 at start and refuses it on reload)",
                bad.join("; ")
            ),
            "correct the file at the place named, then stakpak down && stakpak up (installed: systemctl reload-or-restart stakpak.target)",
        );
    }
    let mut parts = Vec::new();
    if !valid.is_empty() {
        parts.push(format!("{} parse", valid.join(", ")));
    }
    if !absent.is_empty() {
        parts.push(format!("{} absent (defaults)", absent.join(", ")));
    }
    Check::ok(
        name,
        format!("in {}: {}", ctx.config_dir.display(), parts.join("; ")),
    )
}

fn check_policy(ctx: &Place) -> Check {
    let name = "policy";
    let loaded = crate::policy::policy_config(&ctx.config_dir).and_then(|cfg| {
        cfg.load_fast(&ctx.config_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))
    });
    match loaded {
        Ok(policy) => {
            let rules: usize = policy.packs().iter().map(|p| p.rules.len()).sum();
            Check::ok(
                name,
                format!("{} packs, {rules} rules load", policy.packs().len()),
            )
        }
        Err(e) => Check::fail(
            name,
            format!("the policy does not load: {e:#}"),
            "correct the pack or warden.toml named above; stakpak policy test runs every example",
        ),
    }
}

/// The LLM credential file: installed, what the agent's unit loads; embedded, beside
/// `config.toml`.
fn llm_credentials(ctx: &Place) -> PathBuf {
    match ctx.mode {
        Mode::Installed => Path::new(INSTALLED_CREDENTIALS_DIR).join("llm.toml"),
        Mode::Embedded => ctx.config_file("credentials.toml"),
    }
}

fn check_agent(ctx: &Place) -> Vec<Check> {
    let path = ctx.config_file("config.toml");
    let config = match AgentConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            return vec![
                Check::fail(
                    "agent config",
                    e.to_string(),
                    format!(
                        "correct {} (stakpak config sample prints a commented example)",
                        path.display()
                    ),
                ),
                Check::skip("llm key", "the agent's config does not load"),
            ];
        }
    };
    let credentials = llm_credentials(ctx);
    // Installed, the agent's environment is its unit's, not this shell's.
    let env = |var: &str| match ctx.mode {
        Mode::Installed => None,
        Mode::Embedded => std::env::var(var).ok(),
    };
    let profile = match config.profile(DEFAULT_PROFILE, &env, Some(&credentials)) {
        Ok(p) => p,
        Err(e @ ConfigError::NoProfile { .. }) => {
            return vec![
                Check::fail(
                    "agent config",
                    e.to_string(),
                    format!(
                        "stakpak config sample > {} and edit its default profile",
                        path.display()
                    ),
                ),
                Check::skip("llm key", "no profile to take a provider from"),
            ];
        }
        Err(ConfigError::Read { path: p, source })
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            return vec![
                Check::ok(
                    "agent config",
                    format!("{}: profile default resolves", path.display()),
                ),
                Check::warn(
                    "llm key",
                    format!("cannot read {} as this user", p.display()),
                    "run stakpak doctor as root",
                ),
            ];
        }
        Err(e @ ConfigError::Credentials { .. }) => {
            return vec![
                Check::ok(
                    "agent config",
                    format!("{}: profile default resolves", path.display()),
                ),
                Check::fail(
                    "llm key",
                    e.to_string(),
                    format!(
                        "chmod 600 {0} and make it yours (or root's): chown $(id -u) {0}",
                        credentials.display()
                    ),
                ),
            ];
        }
        Err(e) => {
            return vec![
                Check::fail(
                    "agent config",
                    e.to_string(),
                    format!("correct {}", path.display()),
                ),
                Check::skip("llm key", "the agent's config does not load"),
            ];
        }
    };
    let agent = Check::ok(
        "agent config",
        format!(
            "profile default: model {} from provider {}",
            profile.model, profile.provider_key
        ),
    );
    let provider = &profile.provider;
    let key = match (
        &provider.api_key,
        &provider.key_source,
        &provider.api_key_env,
    ) {
        (Some(_), Some(KeySource::Environment), Some(var)) => {
            Check::ok("llm key", format!("${var} is set in this environment"))
        }
        (Some(_), Some(KeySource::CredentialFile(file)), Some(var)) => {
            Check::ok("llm key", format!("{var} is in {}", file.display()))
        }
        (Some(_), _, _) => Check::ok("llm key", "set"),
        (None, _, None) => Check::ok(
            "llm key",
            format!("provider {} needs no key", profile.provider_key),
        ),
        (None, _, Some(var)) => {
            let (message, fix) = match ctx.mode {
                Mode::Installed => (
                    format!("no {var} in {}", credentials.display()),
                    format!(
                        "put {var} = \"…\" in {0} (chmod 600 {0}), then systemctl restart stakpak-agent",
                        credentials.display()
                    ),
                ),
                Mode::Embedded => (
                    format!(
                        "no API key for provider {}: {var} is neither in this environment nor in {}",
                        profile.provider_key,
                        credentials.display()
                    ),
                    format!(
                        "export {var}=… before stakpak up, or put {var} = \"…\" in {0} (chmod 600 {0})",
                        credentials.display()
                    ),
                ),
            };
            Check::fail("llm key", message, fix)
        }
    };
    vec![agent, key]
}

fn check_vault_key(ctx: &Place) -> Check {
    let name = "vault key";
    match ctx.mode {
        Mode::Installed => {
            let dir = Path::new(INSTALLED_CREDENTIALS_DIR);
            let candidates = [dir.join("vault.key.cred"), dir.join("vault.key")];
            let mut denied = None;
            for path in &candidates {
                match std::fs::symlink_metadata(path) {
                    Ok(meta) => return key_file_check(name, path, &meta, 0),
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        denied = Some(e);
                    }
                    Err(_) => {}
                }
            }
            if let Some(e) = denied {
                return Check::warn(
                    name,
                    format!("cannot look into {} ({e})", dir.display()),
                    "run stakpak doctor as root",
                );
            }
            Check::fail(
                name,
                format!(
                    "neither {} nor {} exists: secretd cannot open the vault",
                    candidates[0].display(),
                    candidates[1].display()
                ),
                format!(
                    "install -d -m 700 {0} && (umask 077; head -c 32 /dev/urandom > {0}/vault.key) (only when there is no vault yet: a new key cannot open an old vault)",
                    dir.display()
                ),
            )
        }
        Mode::Embedded => {
            let configured = read_toml(&ctx.config_file("secretd.toml"))
                .ok()
                .flatten()
                .and_then(|t| {
                    t.get("vault")
                        .and_then(|v| v.get("key_file"))
                        .and_then(toml::Value::as_str)
                        .map(PathBuf::from)
                });
            let path = match configured {
                Some(p) if p.is_absolute() => p,
                Some(p) => ctx.secretd_state.join(p),
                None => ctx.secretd_state.join("vault.key"),
            };
            let uid = rustix::process::geteuid().as_raw();
            match std::fs::symlink_metadata(&path) {
                Ok(meta) => key_file_check(name, &path, &meta, uid),
                Err(e) if e.kind() == io::ErrorKind::NotFound && ctx.target.is_none() => {
                    Check::fail(
                        name,
                        format!(
                            "{} does not exist yet: secretd creates it at its first start",
                            path.display()
                        ),
                        ctx.start_fix(),
                    )
                }
                Err(e) => Check::fail(
                    name,
                    format!("{}: {e}", path.display()),
                    "stakpak logs -c secretd shows what secretd makes of it",
                ),
            }
        }
    }
}

/// A key file must be a regular file of `owner` that nobody else can read or write.
fn key_file_check(name: &str, path: &Path, meta: &std::fs::Metadata, owner: u32) -> Check {
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() {
        return Check::fail(
            name,
            format!("{} is not a regular file", path.display()),
            format!("replace {} with the 32-byte key file", path.display()),
        );
    }
    if meta.uid() != owner || mode & 0o077 != 0 {
        return Check::fail(
            name,
            format!(
                "{} is mode {mode:04o}, owner uid {}: others could read the key",
                path.display(),
                meta.uid()
            ),
            format!("chown {owner} {0} && chmod 600 {0}", path.display()),
        );
    }
    Check::ok(
        name,
        format!("{} (mode {mode:04o}, uid {owner})", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_splits_into_units() {
        let text = "Id=stakpak.target\nLoadState=loaded\nActiveState=active\nSubState=active\nUnitFileState=enabled\n\n\
                    Id=stakpak-warden.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n";
        let blocks = parse_systemctl_show(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1]["Id"], "stakpak-warden.service");
        assert_eq!(blocks[1]["UnitFileState"], "");
    }

    #[test]
    fn unit_states_and_their_fixes() {
        let props = |load: &str, active: &str, file: &str| {
            BTreeMap::from([
                ("LoadState".to_string(), load.to_string()),
                ("ActiveState".to_string(), active.to_string()),
                ("SubState".to_string(), "running".to_string()),
                ("UnitFileState".to_string(), file.to_string()),
            ])
        };
        let cases = [
            (
                "stakpak-warden.service",
                props("loaded", "active", "enabled"),
                Status::Ok,
                None,
            ),
            (
                "stakpak.target",
                props("loaded", "active", "disabled"),
                Status::Warn,
                Some("systemctl enable stakpak.target"),
            ),
            (
                "stakpak-agent.service",
                props("loaded", "failed", "enabled"),
                Status::Fail,
                Some(
                    "journalctl -u stakpak-agent.service -n 50 shows why; then systemctl restart stakpak-agent.service",
                ),
            ),
            (
                "stakpak-agent.service",
                props("loaded", "inactive", "enabled"),
                Status::Fail,
                Some("stakpak up (systemctl start stakpak.target)"),
            ),
            (
                "stakpak-schedd.service",
                props("masked", "inactive", "masked"),
                Status::Fail,
                Some("systemctl unmask stakpak-schedd.service"),
            ),
        ];
        for (unit, p, status, fix) in cases {
            let c = unit_check(unit, Some(&p));
            assert_eq!((c.status, c.fix.as_deref()), (status, fix), "{unit}: {c:?}");
        }
        let missing = unit_check("stakpak.target", None);
        assert_eq!(missing.status, Status::Fail);
        assert_eq!(missing.message, "not installed");
    }

    #[test]
    fn meminfo_and_thresholds() {
        let meminfo = "MemTotal:       24683520 kB\nMemFree:        13729000 kB\nMemAvailable:    1048576 kB\n";
        assert_eq!(mem_available(meminfo), Some(GIB));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        let cases = [
            (GIB, Status::Ok),
            (GIB - 1, Status::Warn),
            (256 * MIB, Status::Warn),
            (256 * MIB - 1, Status::Fail),
        ];
        for (amount, status) in cases {
            assert_eq!(grade(amount, MEMORY_WARN, MEMORY_FAIL), status, "{amount}");
        }
        assert_eq!(human(3 * GIB / 2), "1.5 GiB");
        assert_eq!(human(300 * MIB), "300 MiB");
    }

    #[test]
    fn docker_settings_of_sandboxd_toml() {
        let parse = |s: &str| docker_use(&toml::from_str(s).unwrap());
        let cases = [
            ("", DockerUse::None),
            ("[exec]\nbackend = \"local\"\n", DockerUse::None),
            (
                "[exec]\nbackend = \"docker\"\n[docker]\nimage = \"x\"\nsocket = \"/tmp/d.sock\"\n",
                DockerUse::Default("/tmp/d.sock".into()),
            ),
            (
                "[docker]\nimage = \"x\"\n",
                DockerUse::OnRequest("/var/run/docker.sock".into()),
            ),
            (
                "[docker]\nenabled = false\nimage = \"x\"\n",
                DockerUse::None,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), expected, "{text}");
        }
    }

    #[test]
    fn http_status_lines() {
        let cases: [(&[u8], Option<u16>); 4] = [
            (b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\n\r\nOK", Some(200)),
            (b"HTTP/1.0 500 Internal Server Error\r\n", Some(500)),
            (b"SSH-2.0-OpenSSH\r\n", None),
            (b"", None),
        ];
        for (response, status) in cases {
            assert_eq!(http_status(response), status);
        }
    }

    #[test]
    fn ping_of_a_socket_nobody_listens_on_fails() {
        let dir = tempfile::tempdir().unwrap();
        let err = docker_ping(&dir.path().join("docker.sock"), DOCKER_TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn ping_speaks_http_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let n = s.read(&mut req).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .unwrap();
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        assert_eq!(docker_ping(&path, DOCKER_TIMEOUT).unwrap(), 200);
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /_ping HTTP/1.1\r\n")
        );
    }

    #[test]
    fn cgroup_mounts_of_a_hybrid_system() {
        let mounts = "proc /proc proc rw 0 0\n\
                      cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup_mounts(mounts),
            vec![
                ("/sys/fs/cgroup/pids".to_string(), "cgroup".to_string()),
                ("/sys/fs/cgroup/unified".to_string(), "cgroup2".to_string()),
            ]
        );
    }

    #[test]
    fn table_shows_fixes_of_problems_only() {
        let checks = vec![
            Check::ok("memory", "3.0 GiB available"),
            Check::fail("docker", "does not answer", "systemctl start docker"),
            Check::skip("llm key", "no profile"),
        ];
        assert_eq!(
            render(&checks, false),
            "ok    memory   3.0 GiB available\n\
             FAIL  docker   does not answer\n\
             \x20              fix: systemctl start docker\n\
             skip  llm key  no profile\n\
             \n1 ok, 0 warnings, 1 failed, 1 skipped\n"
        );
        assert_eq!(exit_code(&checks), ExitCode::FAILURE);
        assert_eq!(exit_code(&checks[..1]), ExitCode::SUCCESS);
    }

    #[test]
    fn key_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.key");
        std::fs::write(&path, [0u8; 32]).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        for (mode, status) in [
            (0o600, Status::Ok),
            (0o640, Status::Fail),
            (0o400, Status::Ok),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!(
                key_file_check("k", &path, &meta, uid).status,
                status,
                "{mode:o}"
            );
        }
    }

    #[test]
    fn landlock_abi_is_what_the_kernel_says() {
        // Without Landlock the syscall fails and the answer is 0; with it, a small version.
        let abi = landlock_abi();
        let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
        if lsm.split(',').any(|m| m.trim() == "landlock") {
            assert!((1..100).contains(&abi), "{abi}");
        }
    }

    #[test]
    fn user_namespace_probe_agrees_with_unshare() {
        // util-linux's unshare(1) makes the same call; where it is missing there is nothing
        // to compare with.
        let Ok(status) = std::process::Command::new("unshare")
            .args(["--user", "true"])
            .stderr(std::process::Stdio::null())
            .status()
        else {
            return;
        };
        let probe = try_unshare_user(false);
        assert_eq!(probe.is_ok(), status.success(), "{probe:?}");
        if let Err(e) = probe {
            assert!(e.raw_os_error().is_some(), "{e}");
        }
    }
}
