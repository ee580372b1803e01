//! sandboxd end to end: a command runs through warden, secretd, the local sandbox and the
//! redactor; what the warden denies is refused even straight over D-Bus; with the warden
//! unable to answer nothing runs; a secret reaches the command but never its output or logs.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use stakpak_proto::{Error, ExecReply, ExecRequest, SandboxProxy};
use stakpak_testkit::{EmbeddedSuite, files_below, random_string};

use stakpak_testkit::runtime;

/// Calls `Exec` straight over the suite's bus, as any bus peer could.
fn exec(suite: &EmbeddedSuite, session: &str, command: &str) -> Result<ExecReply, Error> {
    let rt = runtime();
    let conn = stakpak_testkit::connect(&rt, &suite.bus_address());
    rt.block_on(async {
        let proxy = SandboxProxy::new(&conn).await.unwrap();
        proxy
            .exec(ExecRequest {
                session: session.into(),
                command: command.into(),
                workdir: String::new(),
                timeout_ms: 10_000,
                network: "none".parse().unwrap(),
                ..ExecRequest::default()
            })
            .await
    })
}

fn random_alnum(n: usize) -> String {
    random_string(
        b"abcdefghijkmnopqrstuvwyzABCDEFGHJKLMNPQRSTUVWYZ23456789",
        n,
    )
}

#[test]
fn echo_runs_through_the_whole_path() {
    let suite = EmbeddedSuite::builder().start();

    let reply = exec(&suite, "s1", "echo hello").unwrap();
    assert_eq!(reply.status.as_str(), "exited", "{reply:?}");
    assert_eq!(reply.code, 0, "{reply:?}");
    assert_eq!(reply.stdout, "hello\n");
    assert_eq!(reply.stderr, "");
    assert_eq!(reply.decision.as_str(), "allow");
    assert!(suite.workspace("s1").is_dir());

    // The CLI takes the same path and exits with the command's status.
    let out = suite.stakpak(&["sandbox", "exec", "--", "echo", "hello"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "hello\n");
    let out = suite.stakpak(&["sandbox", "exec", "--", "exit 7"]);
    assert_eq!(out.code, Some(7), "{out:?}");
    let out = suite.stakpak(&["sandbox", "exec", "--timeout", "0.5", "--", "sleep", "5"]);
    assert_eq!(out.code, Some(124), "{out:?}");

    // One structured line per exec, with the command as sent.
    let log = std::fs::read_to_string(suite.log_file("sandboxd")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("exec")
            && l.contains("session=s1")
            && l.contains("command=echo hello")
            && l.contains("decision=allow")
            && l.contains("status=exited")),
        "{log}"
    );

    // Bad requests get typed errors.
    assert!(matches!(
        exec(&suite, "../etc", "true"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn warden_deny_is_refused_even_straight_over_dbus() {
    let suite = EmbeddedSuite::builder().start();
    assert_eq!(exec(&suite, "s2", "true").unwrap().code, 0);
    let marker = suite.workspace("s2").join("ran");

    let command = format!("rm -rf / ; touch {}", marker.display());
    let reply = exec(&suite, "s2", &command).unwrap();
    assert_eq!(reply.status.as_str(), "denied", "{reply:?}");
    assert_eq!(reply.decision.as_str(), "deny");
    assert_eq!(reply.rule, "fs.rm-root");
    assert!(!reply.reason.is_empty());
    assert!(!marker.exists(), "a denied command ran");

    let out = suite.stakpak(&["sandbox", "exec", "--session", "s2", "--", &command]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out.stderr.contains("fs.rm-root"), "{out:?}");
    assert!(!marker.exists(), "a denied command ran");
}

/// SIGCONT on drop, so a failing test does not leave a daemon stopped.
struct Stopped(rustix::process::Pid);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, rustix::process::Signal::CONT);
    }
}

/// With `daemon` stopped (SIGSTOP: it holds its bus name but answers nothing), a command is
/// refused with `rule` within the configured timeout and does not run; once the daemon
/// answers again, commands run again.
fn nothing_runs_while_stopped(daemon: &str, timeout_key: &str, session: &str, rule: &str) {
    let suite = EmbeddedSuite::builder()
        .config_file("sandboxd.toml", &format!("[exec]\n{timeout_key} = 2000\n"))
        .start();
    assert_eq!(exec(&suite, session, "true").unwrap().code, 0);
    let marker = suite.workspace(session).join("ran");
    let pid = suite.pid_of(daemon).expect("daemon pid");
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();

    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let stopped = Stopped(pid);
    let start = Instant::now();
    let reply = exec(&suite, session, &format!("touch {}", marker.display())).unwrap();
    let took = start.elapsed();
    drop(stopped);

    assert_eq!(reply.status.as_str(), "denied", "{reply:?}");
    assert_eq!(reply.rule, rule, "{reply:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(!marker.exists(), "a command ran without {daemon}");

    let reply = exec(&suite, session, "echo back").unwrap();
    assert_eq!(reply.stdout, "back\n", "{reply:?}");
}

#[test]
fn nothing_runs_when_the_warden_cannot_answer() {
    nothing_runs_while_stopped(
        "stakpak-warden",
        "warden_timeout_ms",
        "s3",
        "sandboxd.warden-unavailable",
    );
}

#[test]
fn nothing_runs_when_secretd_cannot_answer() {
    // Placeholders are resolved by secretd only; without it the command must not run with
    // its placeholders unresolved, nor with anything else.
    nothing_runs_while_stopped(
        "stakpak-secretd",
        "secretd_timeout_ms",
        "s5",
        "sandboxd.secretd-unavailable",
    );
}

#[test]
fn a_secret_reaches_the_command_but_not_its_output_or_the_logs() {
    let suite = EmbeddedSuite::builder().start();
    let canary = format!("cnry{}", random_alnum(28));
    suite.set_secret("CANARY", &canary);

    let reply = exec(
        &suite,
        "s4",
        r#"printf %s "{{secret:CANARY}}" > out.txt; cat out.txt"#,
    )
    .unwrap();
    assert_eq!(reply.status.as_str(), "exited", "{reply:?}");
    assert_eq!(reply.code, 0, "{reply:?}");
    let written = std::fs::read_to_string(suite.workspace("s4").join("out.txt")).unwrap();
    assert_eq!(written, canary);
    assert!(!reply.stdout.contains(&canary), "{reply:?}");
    assert!(reply.stdout.contains("{{secret:CANARY}}"), "{reply:?}");

    // The CLI prints the same redacted output.
    let out = suite.stakpak(&["sandbox", "exec", "--session", "s4", "--", "cat", "out.txt"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains(&canary), "{out:?}");
    assert!(out.stdout.contains("{{secret:CANARY}}"), "{out:?}");

    for file in files_below(&suite.state_dir.join("logs")) {
        let text = std::fs::read(&file).unwrap();
        assert!(
            !text.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{} holds the canary",
            file.display()
        );
    }
}

#[test]
fn children_get_a_private_tmpdir_and_a_read_only_tmp() {
    // The kernel refuses mount(2) inside sandboxd's Landlock domain (crates/sandbox's
    // `under_landlock` test shows it), so children get `TMPDIR` instead of a /tmp mount.
    let suite = EmbeddedSuite::builder().start();
    let reply = exec(
        &suite,
        "s5",
        r#"touch "$TMPDIR/x" && echo tmpdir-ok; (echo x > /tmp/stakpak-sandboxd-probe-$$) 2>/dev/null || echo tmp-ro"#,
    )
    .unwrap();
    assert_eq!(reply.stdout, "tmpdir-ok\ntmp-ro\n", "{reply:?}");
    assert!(suite.state_dir.join("state/sandboxd/tmp/s5/x").exists());
}

fn exec_on(suite: &EmbeddedSuite, network: &str, command: &str) -> ExecReply {
    let rt = runtime();
    let conn = stakpak_testkit::connect(&rt, &suite.bus_address());
    rt.block_on(async {
        let proxy = SandboxProxy::new(&conn).await.unwrap();
        proxy
            .exec(ExecRequest {
                session: "escape".into(),
                command: command.into(),
                timeout_ms: 10_000,
                network: network.parse().unwrap(),
                ..ExecRequest::default()
            })
            .await
            .unwrap()
    })
}

#[test]
fn a_command_cannot_reach_the_vault_the_daemons_state_or_the_bus() {
    let suite = EmbeddedSuite::builder()
        .config_file("sandboxd.toml", "[exec]\ntask_default_timeout_ms = 60000\n")
        .start();
    suite.set_secret("CANARY", &format!("cnry{}", random_alnum(28)));
    let state = suite.state_dir.join("state");
    // Every file of the suite outside the command's own workspace and tmp.
    let targets: Vec<PathBuf> = files_below(&suite.state_dir)
        .into_iter()
        .chain(files_below(&suite.config_dir))
        .filter(|p| {
            !p.starts_with(state.join("sandboxd/workspaces"))
                && !p.starts_with(state.join("sandboxd/tmp"))
                && !p.ends_with("bus.sock")
        })
        .collect();
    for must in [
        state.join("secretd/vault.key"),
        state.join("secretd/vault.bin"),
        state.join("sandboxd/audit.db"),
        state.join("warden/audit.db"),
        suite.config_dir.join("sandboxd.toml"),
    ] {
        assert!(
            targets.contains(&must),
            "{} missing from {targets:?}",
            must.display()
        );
    }
    for target in &targets {
        let t = target.display();
        let reply = exec_on(
            &suite,
            "none",
            &format!(
                "cat '{t}' >/dev/null 2>&1 && echo read; echo x >> '{t}' 2>/dev/null && echo wrote; echo done"
            ),
        );
        assert_eq!(reply.stdout, "done\n", "{t}: {reply:?}");
    }
    // The suite's log and audit files were not appended to by the attempts.
    let audit = std::fs::read(state.join("sandboxd/audit.db")).unwrap();
    assert!(!audit.ends_with(b"x\n"));

    // The bus: with network none no unix socket can even be made; with host the bus answers,
    // but secretd resolves only for sandboxd itself.
    let bus = suite.bus_socket();
    let resolve = format!(
        "busctl --address=unix:path={} call dev.stakpak.Secrets1 /dev/stakpak/Secrets1 \
         dev.stakpak.Secrets1 Resolve ssb '' '{{{{secret:CANARY}}}}' false",
        bus.display()
    );
    let reply = exec_on(&suite, "none", &resolve);
    assert_eq!(
        (reply.status.as_str(), reply.code == 0),
        ("exited", false),
        "{reply:?}"
    );
    assert!(!reply.stdout.contains("cnry"), "{reply:?}");
    let reply = exec_on(&suite, "host", &resolve);
    assert_ne!(reply.code, 0, "{reply:?}");
    assert!(
        reply.stderr.contains("only sandboxd may call Resolve"),
        "{reply:?}"
    );

    // No privileges to gain, and the command is pid 1 of its own namespace.
    let reply = exec_on(&suite, "none", "grep NoNewPrivs /proc/self/status; echo $$");
    assert_eq!(reply.stdout, "NoNewPrivs:\t1\n1\n", "{reply:?}");
}

#[test]
fn a_fork_bomb_is_contained_and_sandboxd_stays_healthy() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: sandboxd makes a pids cgroup per command (the CI runs as root)"
    );
    let suite = EmbeddedSuite::builder()
        .config_file("sandboxd.toml", "[limits]\npids = 64\n")
        .start();
    let log = std::fs::read_to_string(suite.log_file("sandboxd")).unwrap();
    assert!(
        log.contains("cgroup="),
        "sandboxd found no pids cgroup to use: {log}"
    );
    let marker = random_alnum(12);
    let start = Instant::now();
    let rt = runtime();
    let conn = stakpak_testkit::connect(&rt, &suite.bus_address());
    let reply = rt
        .block_on(async {
            let proxy = SandboxProxy::new(&conn).await.unwrap();
            proxy
                .exec(ExecRequest {
                    session: "bomb".into(),
                    command: format!("bomb_{marker}() {{ bomb_{marker} | bomb_{marker} & }}; bomb_{marker}; sleep 60"),
                    timeout_ms: 3_000,
                    ..ExecRequest::default()
                })
                .await
        })
        .unwrap();
    // Held by the pids limit: either the shell could not even start its `sleep` (the bomb
    // took every pid first) and ended, or it waited until the timeout killed everything.
    let held = reply.status.as_str() == "timed-out"
        || (reply.status.as_str() == "exited" && reply.code != 0 && reply.stderr.contains("fork"));
    assert!(held, "{reply:?}");
    assert!(start.elapsed() < Duration::from_secs(20));

    // sandboxd answers and runs the next command; nothing of the bomb is left.
    let sandboxd = suite.daemon_status("stakpak-sandboxd").unwrap();
    assert_eq!(sandboxd["state"], "running", "{sandboxd}");
    assert_eq!(sandboxd["restarts"], 0, "{sandboxd}");
    assert_eq!(
        exec(&suite, "bomb", "echo alive").unwrap().stdout,
        "alive\n"
    );
    assert_eq!(
        stakpak_testkit::processes_named(&format!("bomb_{marker}")),
        Vec::new(),
        "processes of the bomb are left"
    );
    // Every thread's children: none (the runs are over).
    let sandboxd_pid = suite.pid_of("stakpak-sandboxd").unwrap();
    for task in std::fs::read_dir(format!("/proc/{sandboxd_pid}/task")).unwrap() {
        let children =
            std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        assert_eq!(children.trim(), "", "sandboxd still has children");
    }
}
