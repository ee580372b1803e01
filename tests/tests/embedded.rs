//! The embedded suite end to end: `stakpak up` on a real private `dbus-daemon`, the five real
//! daemons, `Status` over D-Bus, supervision after SIGKILL, and `stakpak down`.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use stakpak_proto::{
    AgentProxy, Daemon, SandboxProxy, SchedulerProxy, SecretsProxy, WardenProxy, zbus,
};
use stakpak_testkit::{EmbeddedSuite, wait_until};

use stakpak_testkit::runtime;

async fn connect(address: &str) -> zbus::Connection {
    zbus::connection::Builder::address(address)
        .build()
        .await
        .unwrap()
}

/// Calls `Status()` on every daemon through the generated proxies.
async fn statuses(conn: &zbus::Connection) -> Vec<stakpak_proto::DaemonStatus> {
    vec![
        AgentProxy::new(conn).await.unwrap().status().await.unwrap(),
        WardenProxy::new(conn)
            .await
            .unwrap()
            .status()
            .await
            .unwrap(),
        SecretsProxy::new(conn)
            .await
            .unwrap()
            .status()
            .await
            .unwrap(),
        SandboxProxy::new(conn)
            .await
            .unwrap()
            .status()
            .await
            .unwrap(),
        SchedulerProxy::new(conn)
            .await
            .unwrap()
            .status()
            .await
            .unwrap(),
    ]
}

fn daemon_rows(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["daemons"].as_array().unwrap().clone()
}

#[test]
fn suite_comes_up_survives_a_killed_daemon_and_goes_down() {
    let suite = EmbeddedSuite::builder().start();

    // stakpak status --json: five daemons, running, with version and pid.
    let status = suite.status();
    assert_eq!(status["mode"], "embedded");
    assert_eq!(status["bus_address"], suite.bus_address());
    let rows = daemon_rows(&status);
    let mut names: Vec<&str> = rows.iter().map(|r| r["daemon"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "stakpak-agent",
            "stakpak-sandboxd",
            "stakpak-schedd",
            "stakpak-secretd",
            "stakpak-warden"
        ]
    );
    for row in &rows {
        assert_eq!(row["state"], "running", "{row}");
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"), "{row}");
        assert!(row["pid"].as_u64().unwrap() > 1, "{row}");
        assert_eq!(row["landlock"], "enforced", "{row}");
        assert_eq!(row["restarts"], 0, "{row}");
    }

    // Status() over the real bus, through the proxies, from this process.
    let rt = runtime();
    let conn = rt.block_on(connect(&suite.bus_address()));
    let answered = rt.block_on(statuses(&conn));
    let mut answered_names: Vec<String> = answered.iter().map(|s| s.daemon.clone()).collect();
    answered_names.sort();
    let mut expected: Vec<String> = Daemon::ALL.iter().map(|d| d.binary().to_string()).collect();
    expected.sort();
    assert_eq!(answered_names, expected);
    for s in &answered {
        assert_eq!(s.state.as_str(), "running");
        assert_eq!(s.landlock.as_str(), "enforced");
        let daemon = Daemon::from_name(&s.daemon).unwrap();
        assert_eq!(
            s.config_file,
            suite
                .config_dir
                .join(format!("{}.toml", daemon.short_name()))
                .display()
                .to_string()
        );
    }

    // SIGKILL the warden: the supervisor restarts it and the bus name comes back.
    let dbus = rt.block_on(zbus::fdo::DBusProxy::new(&conn)).unwrap();
    let old_pid = suite.kill_9("stakpak-warden");
    let new_pid = wait_until(Duration::from_secs(10), || {
        let owned = rt
            .block_on(dbus.name_has_owner(Daemon::Warden.bus_name().try_into().unwrap()))
            .unwrap_or(false);
        let pid = suite.pid_of("stakpak-warden")?;
        (owned && pid != old_pid).then_some(pid)
    })
    .expect("the warden came back under a new pid");
    let warden = rt.block_on(WardenProxy::new(&conn)).unwrap();
    let status = rt.block_on(warden.status()).unwrap();
    assert_eq!(status.pid, new_pid);
    assert_eq!(status.state.as_str(), "running");
    let row = daemon_rows(&suite.status())
        .into_iter()
        .find(|r| r["daemon"] == "stakpak-warden")
        .unwrap();
    assert_eq!(row["restarts"], 1, "{row}");
    // The restart is logged by the supervisor with the daemon and how it ended.
    let log = std::fs::read_to_string(suite.log_file("supervisor")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("daemon exited; restarting it"))
        .unwrap_or_else(|| panic!("no restart logged:\n{log}"));
    assert!(line.contains("daemon=stakpak-warden"), "{line}");
    assert!(line.contains("killed by signal 9 (SIGKILL)"), "{line}");
    drop(warden);
    drop(dbus);
    drop(conn);

    // stakpak down leaves no stakpak or dbus-daemon process and no socket.
    let before = suite.processes();
    assert_eq!(
        before.len(),
        7,
        "supervisor, bus and five daemons: {before:#?}"
    );
    let out = suite.down();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "stakpak suite stopped\n");
    let after = suite.processes();
    assert!(after.is_empty(), "left behind: {after:#?}");
    for p in &before {
        assert!(
            stakpak_testkit::ProcessInfo::read(p.pid).is_none_or(|i| !i.is_live()),
            "{p:?} still alive"
        );
    }
    assert!(!suite.bus_socket().exists());
    assert!(!suite.state_dir.join("notify").exists());
    assert!(!suite.state_dir.join("suite.json").exists());
    let out = suite.stakpak(&["status"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no running stakpak suite found"),
        "{out:?}"
    );
}

#[test]
fn up_is_idempotent_and_down_without_a_suite_says_so() {
    let suite = EmbeddedSuite::builder().start();
    let pid = suite.pid_of("stakpak-agent").unwrap();
    let again = suite.stakpak(&["up"]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(
        again
            .stdout
            .starts_with("stakpak suite already running in "),
        "{again:?}"
    );
    assert_eq!(suite.pid_of("stakpak-agent"), Some(pid));
    assert_eq!(suite.down().code, Some(0));
    let out = suite.down();
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout.starts_with("no stakpak suite running in "),
        "{out:?}"
    );
}

#[test]
fn up_reports_the_daemon_with_a_bad_config_instead_of_hanging() {
    let started = Instant::now();
    let (suite, out) = EmbeddedSuite::builder()
        .config_file("warden.toml", "[log]\nlevel = \"info\"\nbogus = 1\n")
        .ready_timeout(60.0)
        .try_start();
    let took = started.elapsed();
    assert_eq!(out.code, Some(1), "{out:?}");
    let path = suite.config_dir.join("warden.toml");
    assert!(
        out.stderr
            .starts_with("stakpak: error: stakpak-warden failed to start: exited with status 78\n"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "stakpak-warden: error: invalid configuration in {}: ",
            path.display()
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("unknown field `bogus`"), "{out:?}");
    assert!(out.stderr.contains("(full log: "), "{out:?}");
    // It failed on the daemon's exit, not on the 60 s readiness timeout.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    let left = wait_until(Duration::from_secs(5), || {
        suite.processes().is_empty().then_some(())
    });
    assert!(left.is_some(), "left behind: {:#?}", suite.processes());
    assert!(!suite.bus_socket().exists());
}

#[test]
fn a_daemon_that_stops_answering_is_aborted_killed_and_restarted() {
    // A stopped process sends no WATCHDOG=1 and ignores SIGABRT until continued: the
    // supervisor must follow with SIGKILL and bring the daemon back.
    let suite = EmbeddedSuite::builder().watchdog(1.0).start();
    let old_pid = suite.pid_of("stakpak-schedd").unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(old_pid as i32).unwrap(),
        rustix::process::Signal::STOP,
    )
    .unwrap();
    let new_pid = wait_until(Duration::from_secs(15), || {
        let status = suite.status();
        let row = daemon_rows(&status)
            .into_iter()
            .find(|r| r["daemon"] == "stakpak-schedd")?;
        let pid = row["pid"].as_u64()? as u32;
        (row["state"] == "running" && pid != old_pid).then_some(pid)
    })
    .expect("the stopped daemon was replaced");
    assert_ne!(new_pid, old_pid);
    let log = std::fs::read_to_string(suite.log_file("supervisor")).unwrap();
    for expected in [
        "watchdog timeout: no WATCHDOG=1 in time; aborting it",
        "still there after SIGABRT; killing it",
        "killed by signal 9 (SIGKILL)",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(expected) && l.contains("daemon=stakpak-schedd")),
            "{expected:?} not in the supervisor log:\n{log}"
        );
    }
    // The old process is gone, not left stopped.
    assert!(stakpak_testkit::ProcessInfo::read(old_pid).is_none_or(|p| !p.is_live()));
    assert_eq!(suite.down().code, Some(0));
}
