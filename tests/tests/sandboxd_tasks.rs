//! sandboxd's background tasks, streamed output, output cap with its artifact, and the
//! audit trail of executions, end to end over the suite's bus.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use stakpak_audit::AuditLog;
use stakpak_proto::ExecRequest;
use stakpak_testkit::{
    EmbeddedSuite, SandboxClient, files_below, processes_named, random_string, wait_until,
};

fn request(session: &str, command: &str) -> ExecRequest {
    ExecRequest {
        session: session.into(),
        command: command.into(),
        network: "none".parse().unwrap(),
        ..ExecRequest::default()
    }
}

/// A `sleep` argument nobody else on the machine uses, to find exactly our processes.
fn marker_sleep() -> String {
    format!(
        "9{}.{}",
        random_string(b"123456789", 5),
        random_string(b"123456789", 6)
    )
}

#[test]
fn a_background_task_runs_reports_its_tail_and_is_cancelled_with_every_descendant() {
    let suite = EmbeddedSuite::builder().start();
    let client = SandboxClient::new(&suite);
    let nap = marker_sleep();
    // A grandchild in its own session, one in the background, and the foreground sleep.
    let command = format!(
        "echo started; setsid sleep {nap} & (sleep {nap} &); echo running; sleep {nap}; echo never"
    );
    let info = client.start_task(request("t1", &command));
    assert_eq!(info.state.as_str(), "running", "{info:?}");
    assert_eq!(info.decision.as_str(), "allow");
    assert!(info.id.starts_with("x-"), "{info:?}");

    // Its three sleeps appear, and its output so far is in the tail.
    let found = wait_until(Duration::from_secs(10), || {
        (processes_named(&nap).len() >= 3).then_some(())
    });
    assert!(found.is_some(), "the task's processes did not start");
    let details = wait_until(Duration::from_secs(10), || {
        let d = client.task_details(&info.id);
        d.tail.contains("running").then_some(d)
    })
    .expect("the tail never showed the output");
    assert_eq!(details.tail, "started\nrunning\n");
    assert_eq!(details.info.state.as_str(), "running");
    assert_eq!(
        details.output_path,
        format!(".stakpak/tasks/{}.log", info.id)
    );
    assert_eq!(
        std::fs::read_to_string(suite.workspace("t1").join(&details.output_path)).unwrap(),
        "started\nrunning\n"
    );

    // Waiting with a short timeout is an answer, not an error.
    let start = Instant::now();
    assert_eq!(client.wait_task(&info.id, 300).state.as_str(), "running");
    assert!(start.elapsed() >= Duration::from_millis(250));

    // Listed, by session and in all.
    let listed = client
        .call(async |p| p.list_tasks("t1".into()).await)
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].command, command);
    assert_eq!(listed[0].output_bytes, 16);
    let out = suite.stakpak(&["sandbox", "tasks"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(&info.id) && out.stdout.contains("running"),
        "{out:?}"
    );

    let id = info.id.clone();
    let cancelled = client.call(async |p| p.cancel_task(id).await).unwrap();
    assert_eq!(cancelled.state.as_str(), "cancelled", "{cancelled:?}");
    assert!(cancelled.ended_ms >= cancelled.started_ms);
    let gone = wait_until(Duration::from_secs(5), || {
        processes_named(&nap).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "descendants survived the cancel: {:?}",
        processes_named(&nap)
    );
    assert!(!client.task_details(&info.id).tail.contains("never"));

    // Unknown ids are errors naming the id.
    let err = client
        .call(async |p| p.cancel_task("x-nope".into()).await)
        .unwrap_err();
    assert!(err.to_string().contains("x-nope"), "{err}");
}

#[test]
fn tasks_end_on_their_own_time_out_with_their_descendants_and_can_be_denied() {
    let suite = EmbeddedSuite::builder().start();
    let client = SandboxClient::new(&suite);

    let quick = client.start_task(request("t2", "sleep 0.2; echo done; exit 3"));
    let ended = client.wait_task(&quick.id, 10_000);
    assert_eq!(ended.state.as_str(), "exited", "{ended:?}");
    assert_eq!(ended.code, 3);
    assert_eq!(client.task_details(&quick.id).tail, "done\n");

    // A task past its timeout is killed with its grandchild.
    let nap = marker_sleep();
    let mut req = request("t2", &format!("setsid sleep {nap} & sleep {nap}"));
    req.timeout_ms = 500;
    let slow = client.call(async |p| p.start_task(req).await).unwrap();
    let ended = client.wait_task(&slow.id, 10_000);
    assert_eq!(ended.state.as_str(), "timed-out", "{ended:?}");
    let gone = wait_until(Duration::from_secs(5), || {
        processes_named(&nap).is_empty().then_some(())
    });
    assert!(gone.is_some(), "a grandchild outlived the timeout");

    // The warden's deny holds for tasks too.
    let denied = client.start_task(request("t2", "rm -rf /"));
    assert_eq!(denied.state.as_str(), "denied", "{denied:?}");
    assert_eq!(denied.rule, "fs.rm-root");
    assert!(denied.ended_ms > 0);
}

#[test]
fn output_past_the_cap_is_kept_whole_in_an_artifact() {
    let suite = EmbeddedSuite::builder()
        .config_file("sandboxd.toml", "[exec]\noutput_cap = 1000\n")
        .start();
    let client = SandboxClient::new(&suite);

    let small = client.exec(request("t3", "echo small")).unwrap();
    assert!(!small.truncated);
    assert_eq!(small.artifact, "");

    let big = client
        .exec(request("t3", "seq 1 2000; echo tail >&2"))
        .unwrap();
    assert_eq!(big.status.as_str(), "exited", "{big:?}");
    assert!(big.truncated);
    assert_eq!(big.stdout.len(), 1000);
    assert!(big.stdout.starts_with("1\n2\n3\n"));
    assert_eq!(big.stderr, "tail\n");
    assert_eq!(big.artifact, format!(".stakpak/output/{}.log", big.exec_id));
    let whole = std::fs::read_to_string(suite.workspace("t3").join(&big.artifact)).unwrap();
    let mut expected: String = (1..=2000).map(|n| format!("{n}\n")).collect();
    expected.push_str("tail\n");
    assert_eq!(whole, expected);
}

#[test]
fn the_cli_streams_output_as_it_comes() {
    let suite = EmbeddedSuite::builder().start();
    let start = Instant::now();
    let mut child = suite
        .stakpak_command(&[
            "sandbox",
            "exec",
            "--",
            "echo first; sleep 1.5; echo second",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    let first_at = start.elapsed();
    assert_eq!(lines.next().unwrap().unwrap(), "second");
    let second_at = start.elapsed();
    assert!(child.wait().unwrap().success());
    assert!(
        second_at - first_at >= Duration::from_millis(1000),
        "the first line came only with the second ({first_at:?} vs {second_at:?})"
    );
}

#[test]
fn secrets_reach_the_task_but_not_its_record_output_logs_or_audit_trail() {
    let suite = EmbeddedSuite::builder().start();
    let client = SandboxClient::new(&suite);
    let canary = format!(
        "cnry{}",
        random_string(
            b"abcdefghijkmnopqrstuvwyzABCDEFGHJKLMNPQRSTUVWYZ23456789",
            28
        )
    );
    suite.set_secret("CANARY", &canary);

    let command = r#"printf %s "{{secret:CANARY}}" > task.txt; echo "token {{secret:CANARY}}""#;
    let task = client.start_task(request("t4", command));
    let ended = client.wait_task(&task.id, 10_000);
    assert_eq!(ended.state.as_str(), "exited", "{ended:?}");
    assert_eq!(ended.code, 0, "{ended:?}");
    // The command got the value ...
    assert_eq!(
        std::fs::read_to_string(suite.workspace("t4").join("task.txt")).unwrap(),
        canary
    );
    // ... its record and output show the placeholder.
    assert_eq!(ended.command, command);
    let details = client.task_details(&task.id);
    assert_eq!(details.tail, "token {{secret:CANARY}}\n");
    let exec = client
        .exec(request("t4", r#"echo "{{secret:CANARY}}""#))
        .unwrap();
    assert_eq!(exec.stdout, "{{secret:CANARY}}\n");

    // The audit trail has both executions with the command as sent, and a sound chain.
    // (Entries are appended by a writer thread of their own, just after the reply.)
    let audit = AuditLog::open(&suite.state_dir.join("state/sandboxd/audit.db")).unwrap();
    let records = wait_until(Duration::from_secs(5), || {
        let records = audit.recent(10).unwrap();
        (records.len() >= 2).then_some(records)
    })
    .expect("two audit entries");
    audit.verify().unwrap();
    let execs: Vec<_> = records
        .iter()
        .filter(|r| r.source == "sandboxd" && r.kind == "exec")
        .collect();
    assert_eq!(execs.len(), 2, "{records:?}");
    let task_entry = execs
        .iter()
        .find(|r| r.fields["exec_id"] == task.id.as_str())
        .expect("the task's audit entry");
    assert_eq!(task_entry.fields["command"], command);
    assert_eq!(task_entry.fields["session"], "t4");
    assert_eq!(task_entry.fields["decision"], "allow");
    assert_eq!(task_entry.fields["status"], "exited");
    assert_eq!(task_entry.fields["task"], true);
    assert_eq!(task_entry.fields["uid"], rustix::process::getuid().as_raw());
    assert!(
        task_entry.fields["caller"]
            .as_str()
            .unwrap()
            .starts_with(':')
    );

    // Nowhere on disk of the suite but the workspace file is the value.
    for file in files_below(&suite.state_dir) {
        if file.ends_with("task.txt") {
            continue;
        }
        let Ok(text) = std::fs::read(&file) else {
            continue;
        };
        assert!(
            !text.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{} holds the canary",
            file.display()
        );
    }
}
