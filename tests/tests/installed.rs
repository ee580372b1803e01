//! The installed suite: Debian bookworm booted with systemd as PID 1 in `systemd-nspawn`
//! (`stakpak_testkit::Container`), the freshly built `.deb` installed with dpkg, then what
//! an operator relies on: the target and its five services run, own their bus names and
//! confine themselves with Landlock; a scripted `stakpak run` (a command through sandboxd)
//! completes against the LLM double; the warden logs structured fields to the journal;
//! every daemon comes back after SIGKILL without losing a session; D-Bus policy refuses a
//! user outside group `stakpak`; stopping the target stops everything; purging leaves no
//! unit, user or state (issue 7, "Must be true" 2).
//!
//! Runs as root (overlay mounts, nspawn). A machine that cannot boot the container fails
//! these tests; nothing here skips.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use stakpak_proto::Daemon;
use stakpak_testkit::{Container, LlmDouble, Output, SlackDouble, Turn, nspawn_rootfs, wait_until};

/// Where the folder holding the `.deb` appears inside the container.
const DEB_DIR: &str = "/srv/stakpak-deb";

/// The boot itself and a command inside: what every other check stands on.
#[test]
fn the_container_boots_with_systemd_and_runs_commands() {
    let container = Container::builder(nspawn_rootfs()).boot();
    let pid1 = container.exec(&["cat", "/proc/1/comm"]);
    assert_eq!(pid1.stdout.trim(), "systemd", "{pid1:?}");
    let state = container.exec(&["systemctl", "is-system-running"]);
    assert!(
        matches!(state.stdout.trim(), "running" | "degraded"),
        "{state:?}"
    );
    let virt = container.exec(&["systemd-detect-virt", "--container"]);
    assert_eq!(virt.stdout.trim(), "systemd-nspawn", "{virt:?}");
    // A file written on the host through the overlay is there inside.
    std::fs::write(container.host_path("/root/from-host"), "hello\n").unwrap();
    let read = container.exec(&["cat", "/root/from-host"]);
    assert_eq!(read.stdout, "hello\n", "{read:?}");
}

#[test]
fn the_installed_deb_runs_the_suite_under_systemd() {
    let rootfs = nspawn_rootfs();
    let deb = build_deb();
    let deb_name = deb.file_name().unwrap().to_str().unwrap().to_string();
    let double = LlmDouble::start(vec![
        Turn::tools(vec![(
            "run_command",
            json!({"command": "printf installed-%s ok"}),
        )])
        .expecting("report from the container"),
        Turn::text("Done: the suite runs under systemd.").expecting("installed-ok"),
    ]);
    // A copy of its own: other builds may rewrite target/debian while this test runs.
    let deb_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&deb, deb_dir.path().join(&deb_name)).unwrap();
    let c = Container::builder(rootfs)
        .bind_ro(deb_dir.path(), DEB_DIR)
        .boot();
    let started = Instant::now();

    install(&c, &deb_name);
    target_and_services_active(&c);
    bus_names_owned(&c);
    landlock_enforced_in_every_daemon(&c);
    let session = scripted_run_completes(&c, &double);
    slack_tokens_reach_schedd_alone(&c);
    doctor_passes_and_names_a_stopped_docker(&c);
    warden_logs_structured_fields(&c);
    killed_daemons_come_back(&c, &session);
    outsider_refused_by_bus_policy(&c);
    stopping_the_target_stops_everything(&c);
    purge_leaves_nothing(&c);
    eprintln!(
        "installed-suite checks passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The `.deb` from `packaging/build.sh` (which prints the `.deb`'s path first, then the
/// `.rpm`'s), or the one `STAKPAK_TEST_DEB` names.
fn build_deb() -> PathBuf {
    if let Some(path) = std::env::var_os("STAKPAK_TEST_DEB") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "STAKPAK_TEST_DEB={} is no file",
            path.display()
        );
        return std::path::absolute(path).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/build.sh");
    assert!(
        script.is_file(),
        "{} is missing: it builds the .deb this test installs",
        script.display()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed ({}): {stdout}",
        script.display(),
        out.status
    );
    let deb = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .unwrap_or_else(|| panic!("{} printed no .deb path: {stdout}", script.display()));
    eprintln!(
        "packaging/build.sh took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    PathBuf::from(deb)
}

fn units() -> Vec<String> {
    let mut units = vec!["stakpak.target".to_string()];
    units.extend(
        Daemon::ALL
            .iter()
            .map(|d| format!("{}.service", d.binary())),
    );
    units
}

/// Fails `step` with `what`, the status of every unit of the suite and their journal.
fn fail(c: &Container, step: &str, what: &str) -> ! {
    let units = units();
    let units: Vec<&str> = units.iter().map(String::as_str).collect();
    c.fail(step, what, &units)
}

fn is_active(c: &Container, unit: &str) -> String {
    c.exec(&["systemctl", "is-active", unit])
        .stdout
        .trim()
        .to_string()
}

fn main_pid(c: &Container, unit: &str) -> u32 {
    c.exec(&["systemctl", "show", "-p", "MainPID", "--value", unit])
        .stdout
        .trim()
        .parse()
        .unwrap_or(0)
}

fn install(c: &Container, deb_name: &str) {
    let out = c.sh(&format!(
        "DEBIAN_FRONTEND=noninteractive dpkg -i {DEB_DIR}/{deb_name} 2>&1"
    ));
    if out.code != Some(0) {
        fail(c, "install", &format!("dpkg -i {deb_name} failed: {out:?}"));
    }
    eprintln!("installed {deb_name}");
}

fn target_and_services_active(c: &Container) {
    let expected: BTreeMap<String, String> = units()
        .into_iter()
        .map(|u| (u, "active".to_string()))
        .collect();
    let mut states = BTreeMap::new();
    let reached = wait_until(Duration::from_secs(30), || {
        states = units()
            .into_iter()
            .map(|u| {
                let state = is_active(c, &u);
                (u, state)
            })
            .collect();
        (states == expected).then_some(())
    });
    if reached.is_none() {
        fail(
            c,
            "target and services active",
            &format!("after 30 s: {states:?}"),
        );
    }
}

fn bus_names_owned(c: &Container) {
    // name → (pid, user, unit) as the system bus sees its owner, against what systemd says.
    let out = c.exec(&["busctl", "--system", "--no-pager", "--no-legend", "list"]);
    if out.code != Some(0) {
        fail(
            c,
            "bus names owned",
            &format!("busctl list failed: {out:?}"),
        );
    }
    let owners: BTreeMap<String, (String, String, String)> = out
        .stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // NAME PID PROCESS USER CONNECTION UNIT SESSION DESCRIPTION
            (f.len() >= 6 && f[0].starts_with("dev.stakpak.")).then(|| {
                (
                    f[0].to_string(),
                    (f[1].to_string(), f[3].to_string(), f[5].to_string()),
                )
            })
        })
        .collect();
    let expected: BTreeMap<String, (String, String, String)> = Daemon::ALL
        .iter()
        .map(|d| {
            let unit = format!("{}.service", d.binary());
            (
                d.bus_name().to_string(),
                (main_pid(c, &unit).to_string(), d.binary().to_string(), unit),
            )
        })
        .collect();
    if owners != expected {
        fail(
            c,
            "bus names owned",
            &format!(
                "owners of dev.stakpak.* on the system bus: {owners:#?}\nexpected: {expected:#?}\n{}",
                out.stdout
            ),
        );
    }
}

fn landlock_enforced_in_every_daemon(c: &Container) {
    let out = c.exec(&["stakpak", "status", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let seen: BTreeMap<String, (String, String)> = report["daemons"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["daemon"].as_str().unwrap_or_default().to_string(),
                (
                    d["state"].as_str().unwrap_or_default().to_string(),
                    d["landlock"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, String)> = Daemon::ALL
        .iter()
        .map(|d| {
            (
                d.binary().to_string(),
                ("running".to_string(), "enforced".to_string()),
            )
        })
        .collect();
    if out.code != Some(0) || seen != expected {
        fail(
            c,
            "landlock enforced",
            &format!("stakpak status --json: {seen:?}\n{out:?}"),
        );
    }
}

fn scripted_run_completes(c: &Container, double: &LlmDouble) -> String {
    // The host's loopback is the container's: the agent reaches the double directly.
    let config = format!(
        "[profiles.default]\nmodel = \"double/test-model\"\nmax_turns = 6\n\
         auto_approve = [\"run_command::printf\"]\n\n\
         [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
        double.base_url()
    );
    // Rewriting the file keeps the packaged owner and mode; the agent reads it per session.
    std::fs::write(c.host_path("/etc/stakpak/config.toml"), config).unwrap();
    let out = c.exec(&[
        "timeout",
        "120",
        "stakpak",
        "run",
        "-w",
        "/root",
        "report from the container",
    ]);
    let requests: Vec<_> = double.requests().into_iter().map(|r| r.matched).collect();
    if out.code != Some(0) || !out.stdout.contains("Done: the suite runs under systemd.") {
        fail(
            c,
            "scripted stakpak run",
            &format!("{out:?}\nthe double's requests matched: {requests:?}"),
        );
    }
    if requests != [Ok(()), Ok(())] {
        fail(
            c,
            "scripted stakpak run",
            &format!("the double's requests matched: {requests:?}"),
        );
    }
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| {
            fail(
                c,
                "scripted stakpak run",
                &format!("no session id: {out:?}"),
            )
        })
}

/// The Slack channel under systemd: root stores the tokens in secretd for schedd, schedd (its
/// own user, its own bus name) fetches them with `Reveal` and connects to the Slack double
/// on the host's loopback; no command can resolve them, and a kill -9 of schedd is followed
/// by a new connection with the tokens fetched again.
fn slack_tokens_reach_schedd_alone(c: &Container) {
    const BOT: &str = "xoxb-installed-canary-7f3a9c";
    const APP: &str = "xapp-1-installed-canary-2b8d";
    let slack = SlackDouble::start(BOT, APP);
    let step = "slack channel under systemd";
    let out = c.sh(&format!(
        "printf '%s\\n' {BOT} {APP} | stakpak autopilot channel add slack --api-url {}",
        slack.api_url()
    ));
    if out.code != Some(0) {
        fail(c, step, &format!("{out:?}"));
    }
    let connected = |n: u32| {
        wait_until(Duration::from_secs(30), || {
            (slack.connections_opened() >= n && slack.live_connections() >= 1).then_some(())
        })
    };
    if connected(1).is_none() {
        fail(c, step, "no socket mode connection from schedd");
    }
    let out = c.exec(&[
        "stakpak",
        "sandbox",
        "exec",
        "--",
        "echo {{secret:slack.bot_token}}",
    ]);
    if out.code == Some(0)
        || out.stdout.contains(BOT)
        || !out
            .stderr
            .contains("slack.bot_token is limited to consumers")
    {
        fail(
            c,
            step,
            &format!("a command resolved the bot token: {out:?}"),
        );
    }
    let before = main_pid(c, "stakpak-schedd.service");
    let _ = c.exec(&["kill", "-9", &before.to_string()]);
    if connected(2).is_none() {
        fail(c, step, "schedd did not reconnect after kill -9");
    }
    let logs = c.sh("journalctl --no-pager -o cat -u 'stakpak-*'");
    if logs.stdout.contains(BOT) || logs.stdout.contains(APP) {
        fail(c, step, "a token is in the journal");
    }
    let out = c.exec(&["stakpak", "autopilot", "channel", "remove", "slack"]);
    if out.code != Some(0) {
        fail(c, step, &format!("{out:?}"));
    }
}

/// `stakpak doctor` passes on the installed system (the agent's profile is configured by the
/// scripted run before); with the Docker backend configured and no engine, it fails saying so
/// and how to fix it.
fn doctor_passes_and_names_a_stopped_docker(c: &Container) {
    let out = c.exec(&["stakpak", "doctor", "--json"]);
    if out.code != Some(0) {
        fail(c, "stakpak doctor", &format!("{out:?}"));
    }
    let checks: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| fail(c, "stakpak doctor", &format!("not JSON ({e}): {out:?}")));
    let failed: Vec<&serde_json::Value> = checks
        .as_array()
        .map(|a| a.iter().filter(|ch| ch["status"] == "fail").collect())
        .unwrap_or_default();
    if !failed.is_empty() {
        fail(c, "stakpak doctor", &format!("failed checks: {failed:?}"));
    }

    let sandboxd_toml = c.host_path("/etc/stakpak/sandboxd.toml");
    let original = std::fs::read(&sandboxd_toml).unwrap();
    std::fs::write(
        &sandboxd_toml,
        "[exec]\nbackend = \"docker\"\n[docker]\nimage = \"stakpak-sandbox:latest\"\n",
    )
    .unwrap();
    let out = c.exec(&["stakpak", "doctor"]);
    std::fs::write(&sandboxd_toml, original).unwrap();
    let text = format!("{}{}", out.stdout, out.stderr);
    if out.code != Some(1)
        || !text.contains("Docker is configured as the sandbox backend")
        || !text.contains("systemctl start docker")
    {
        fail(
            c,
            "stakpak doctor with Docker configured but not running",
            &format!("{out:?}"),
        );
    }
}

fn warden_logs_structured_fields(c: &Container) {
    // Asks the running warden (not an in-process evaluation) and is denied.
    let check = c.exec(&["stakpak", "policy", "check", "--json", "--", "rm -rf /"]);
    let verdict: serde_json::Value = serde_json::from_str(&check.stdout)
        .unwrap_or_else(|_| fail(c, "warden journal fields", &format!("{check:?}")));
    if check.code != Some(4) || verdict["judged_by"] != "warden" || verdict["decision"] != "deny" {
        fail(
            c,
            "warden journal fields",
            &format!("stakpak policy check -- 'rm -rf /': {check:?}"),
        );
    }
    let rule = verdict["rule"].as_str().unwrap_or_default().to_string();
    let mut fields = BTreeMap::new();
    let found = wait_until(Duration::from_secs(10), || {
        let out = c.exec(&[
            "journalctl",
            "-u",
            "stakpak-warden",
            "-o",
            "json",
            "--no-pager",
        ]);
        fields = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rev()
            .find(|e| e["STAKPAK_DECISION"] == "deny")
            .map(|e| {
                e.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| k.starts_with("STAKPAK_"))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        (!fields.is_empty()).then_some(())
    });
    if found.is_none() {
        fail(
            c,
            "warden journal fields",
            "journalctl -u stakpak-warden has no entry with STAKPAK_DECISION=deny",
        );
    }
    let caller = fields.get("STAKPAK_CALLER").cloned().unwrap_or_default();
    let expected: BTreeMap<String, String> = [
        ("STAKPAK_DAEMON", "warden"),
        ("STAKPAK_DECISION", "deny"),
        ("STAKPAK_RULE", rule.as_str()),
        (
            "STAKPAK_ACTION",
            verdict["action"].as_str().unwrap_or_default(),
        ),
        ("STAKPAK_KIND", "command"),
        ("STAKPAK_SESSION", ""),
        ("STAKPAK_CALLER", caller.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if fields != expected || !caller.starts_with(':') {
        fail(
            c,
            "warden journal fields",
            &format!("STAKPAK_* fields of the deny entry: {fields:#?}\nexpected: {expected:#?}"),
        );
    }
}

fn killed_daemons_come_back(c: &Container, session: &str) {
    for daemon in Daemon::ALL {
        let unit = format!("{}.service", daemon.binary());
        let before = main_pid(c, &unit);
        let kill = c.exec(&["systemctl", "kill", "-s", "KILL", &unit]);
        if kill.code != Some(0) || before == 0 {
            fail(
                c,
                "SIGKILL and restart",
                &format!("systemctl kill -s KILL {unit} (MainPID {before}): {kill:?}"),
            );
        }
        let killed_at = Instant::now();
        let mut last = (String::new(), 0);
        let back = wait_until(Duration::from_secs(10), || {
            last = (is_active(c, &unit), main_pid(c, &unit));
            (last.0 == "active" && last.1 != 0 && last.1 != before).then_some(())
        });
        if back.is_none() {
            fail(
                c,
                "SIGKILL and restart",
                &format!(
                    "{unit} not back 10 s after SIGKILL of {before}: is-active {}, MainPID {}",
                    last.0, last.1
                ),
            );
        }
        eprintln!("{unit} back in {:.1} s", killed_at.elapsed().as_secs_f64());
    }
    let list = c.exec(&["stakpak", "sessions", "list", "--json"]);
    let sessions: serde_json::Value = serde_json::from_str(&list.stdout).unwrap_or_default();
    let state = sessions
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == session)
        .map(|s| s["state"].clone());
    if state != Some(json!("finished")) {
        fail(
            c,
            "SIGKILL and restart",
            &format!("session {session} after the restarts: {state:?}; {list:?}"),
        );
    }
}

fn outsider_refused_by_bus_policy(c: &Container) {
    let made = c.sh(
        "useradd --system --no-create-home stakpak-test-outsider && \
         useradd --system --no-create-home --groups stakpak stakpak-test-member",
    );
    if made.code != Some(0) {
        fail(c, "bus policy", &format!("useradd: {made:?}"));
    }
    let warden = Daemon::Warden;
    let call = |user: &str| -> Output {
        c.exec(&[
            "runuser",
            "-u",
            user,
            "--",
            "busctl",
            "--system",
            "call",
            warden.bus_name(),
            warden.object_path(),
            warden.interface(),
            "Status",
        ])
    };
    let outsider = call("stakpak-test-outsider");
    if outsider.code == Some(0) || !outsider.stderr.contains("Access denied") {
        fail(
            c,
            "bus policy",
            &format!("Warden1.Status from a user outside group stakpak: {outsider:?}"),
        );
    }
    // The same call from a member of `stakpak` goes through: the refusal above is policy.
    let member = call("stakpak-test-member");
    if member.code != Some(0) {
        fail(
            c,
            "bus policy",
            &format!("Warden1.Status from a member of group stakpak: {member:?}"),
        );
    }
    let status = c.exec(&[
        "runuser",
        "-u",
        "stakpak-test-outsider",
        "--",
        "stakpak",
        "status",
    ]);
    if status.code == Some(0) {
        fail(
            c,
            "bus policy",
            &format!("stakpak status from a user outside group stakpak succeeded: {status:?}"),
        );
    }
}

fn stopping_the_target_stops_everything(c: &Container) {
    let stop = c.exec(&["systemctl", "stop", "stakpak.target"]);
    if stop.code != Some(0) {
        fail(c, "stop the target", &format!("{stop:?}"));
    }
    let expected: BTreeMap<String, String> = units()
        .into_iter()
        .map(|u| (u, "inactive".to_string()))
        .collect();
    let states: BTreeMap<String, String> = units()
        .into_iter()
        .map(|u| {
            let state = is_active(c, &u);
            (u, state)
        })
        .collect();
    let processes: Vec<String> = c
        .exec(&["ps", "-e", "-o", "comm="])
        .stdout
        .lines()
        .map(str::trim)
        .filter(|p| p.starts_with("stakpak"))
        .map(str::to_string)
        .collect();
    if states != expected || !processes.is_empty() {
        fail(
            c,
            "stop the target",
            &format!("after systemctl stop stakpak.target: {states:?}, processes {processes:?}"),
        );
    }
}

fn purge_leaves_nothing(c: &Container) {
    // The test's own users go first: they are not the package's to remove.
    c.sh("userdel stakpak-test-outsider; userdel stakpak-test-member");
    let purge = c.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y stakpak 2>&1");
    if purge.code != Some(0) {
        fail(c, "purge", &format!("apt-get purge -y stakpak: {purge:?}"));
    }
    let left = |script: &str| -> Vec<String> {
        c.sh(script)
            .stdout
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    };
    let mut leftovers = BTreeMap::new();
    leftovers.insert(
        "package",
        // Known to dpkg as anything but not-installed (`un`, `pn`).
        left(
            "dpkg-query -W -f='${db:Status-Abbrev}\\n' stakpak 2>/dev/null | grep -v '^.n' || true",
        ),
    );
    leftovers.insert(
        "units and bus files",
        left(
            "find /etc/systemd /usr/lib/systemd /lib/systemd /usr/share/dbus-1 /etc/dbus-1 \
             \\( -name '*stakpak*' -o -name 'dev.stakpak.*' \\) 2>/dev/null",
        ),
    );
    leftovers.insert(
        "users",
        left("getent passwd | cut -d: -f1 | grep '^stakpak' || true"),
    );
    leftovers.insert(
        "state",
        left(
            "ls -d /var/lib/stakpak-* /var/lib/private/stakpak-* /run/stakpak 2>/dev/null || true",
        ),
    );
    leftovers.insert(
        "processes",
        left("ps -e -o comm= | grep '^stakpak' || true"),
    );
    let nothing: BTreeMap<&str, Vec<String>> = leftovers.keys().map(|k| (*k, Vec::new())).collect();
    if leftovers != nothing {
        fail(
            c,
            "purge",
            &format!(
                "apt-get purge -y stakpak left: {leftovers:#?}\n{}",
                purge.stdout
            ),
        );
    }
}
