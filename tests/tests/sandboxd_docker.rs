//! sandboxd's Docker backend end to end: commands and background tasks through warden,
//! secretd, a container of the real engine and the redactor, over the suite's bus and the
//! CLI.
//!
//! These tests need dockerd on /var/run/docker.sock and the image built by
//! `scripts/docker-test-image.sh` (`STAKPAK_TEST_IMAGE` names another); they fail, never
//! skip, when either is missing (CI runs `scripts/start-dockerd.sh` first). Each test gives
//! its containers a name prefix of its own and removes them at the end, also when it fails.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{process::Command, time::Duration};

use stakpak_proto::{Error, ExecRequest};
use stakpak_testkit::{EmbeddedSuite, SandboxClient, processes_named, random_string, wait_until};

fn image() -> String {
    std::env::var("STAKPAK_TEST_IMAGE").unwrap_or_else(|_| "stakpak-sandbox-test:latest".into())
}

/// `docker ARGS…`, which must succeed; its stdout.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI: {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed (is dockerd running? scripts/start-dockerd.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The names of the containers made with `prefix`, sorted.
fn containers(prefix: &str) -> Vec<String> {
    let label = format!("label=dev.stakpak.sandbox.prefix={prefix}");
    let mut names: Vec<String> =
        docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])
            .lines()
            .map(str::to_owned)
            .collect();
    names.sort();
    names
}

/// A container name prefix of one test; its containers are removed on drop.
struct Prefix(String);

impl Prefix {
    fn new(test: &str) -> Self {
        // The engine must answer before anything else: no engine is a failure, not a skip.
        docker(&["version", "--format", "{{.Server.Version}}"]);
        docker(&["image", "inspect", "--format", "{{.Id}}", &image()]);
        Prefix(format!(
            "stakpak-e2e-{test}-{}-{}",
            std::process::id(),
            random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 6)
        ))
    }

    /// `sandboxd.toml` with a `[docker]` section for this prefix; `extra` goes into it.
    fn config(&self, extra: &str) -> String {
        format!(
            "[docker]\nimage = \"{}\"\nname_prefix = \"{}\"\n{extra}",
            image(),
            self.0
        )
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let names = containers(&self.0);
        if !names.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(names.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
    }
}

/// A request for the Docker backend.
fn request(session: &str, command: &str) -> ExecRequest {
    ExecRequest {
        session: session.into(),
        command: command.into(),
        timeout_ms: 60_000,
        backend: "docker".parse().unwrap(),
        ..ExecRequest::default()
    }
}

#[test]
fn a_command_runs_in_a_container_with_its_secret_and_a_redacted_reply() {
    let prefix = Prefix::new("path");
    let suite = EmbeddedSuite::builder()
        .config_file("sandboxd.toml", &prefix.config(""))
        .start();
    let client = SandboxClient::new(&suite);
    let canary = format!(
        "cnry{}",
        random_string(
            b"abcdefghijkmnopqrstuvwyzABCDEFGHJKLMNPQRSTUVWYZ23456789",
            28
        )
    );
    suite.set_secret("CANARY", &canary);

    // sandboxd connects to the engine's socket from inside its Landlock domain.
    let sandboxd = suite.daemon_status("stakpak-sandboxd").unwrap();
    assert_eq!(sandboxd["landlock"], "enforced", "{sandboxd}");

    let command = r#"printf %s "{{secret:CANARY}}" > got.txt; echo "token {{secret:CANARY}}"; hostname; pwd; echo "$HOME"; echo err >&2; exit 3"#;
    let reply = client.exec(request("s1", command)).unwrap();
    assert_eq!(
        (
            reply.status.as_str(),
            reply.code,
            reply.decision.as_str(),
            reply.stdout.as_str(),
            reply.stderr.as_str()
        ),
        (
            "exited",
            3,
            "allow",
            "token {{secret:CANARY}}\nsandbox\n/workspaces/s1\n/workspaces/s1\n",
            "err\n"
        ),
        "{reply:?}"
    );
    // The container got the value, in the session's workspace on the host.
    assert_eq!(
        std::fs::read_to_string(suite.workspace("s1").join("got.txt")).unwrap(),
        canary
    );
    assert_eq!(containers(&prefix.0), std::slice::from_ref(&prefix.0));

    // The container trusts the warden's egress CA: the bundle's folder (system roots, then
    // the warden's CA) is mounted read-only and the usual variables name it.
    let reply = client
        .exec(request(
            "s1",
            "echo $SSL_CERT_FILE $NODE_EXTRA_CA_CERTS; grep -c 'stakpak warden egress CA' $REQUESTS_CA_BUNDLE; touch /etc/stakpak/egress/x 2>/dev/null || echo read-only",
        ))
        .unwrap();
    assert_eq!(
        reply.stdout,
        "/etc/stakpak/egress/ca-bundle.pem /etc/stakpak/egress/ca-bundle.pem\n1\nread-only\n",
        "{reply:?}"
    );

    // The CLI takes the same path.
    let out = suite.stakpak(&["sandbox", "exec", "--backend", "docker", "--", "echo", "hi"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "hi\n"),
        "{out:?}"
    );
    let out = suite.stakpak(&["sandbox", "exec", "--backend", "docker", "--", "hostname"]);
    assert_eq!(out.stdout, "sandbox\n", "{out:?}");

    // A network the containers do not have is refused, not granted.
    let mut host = request("s1", "true");
    host.network = "host".parse().unwrap();
    let err = client.call(async |p| p.exec(host).await).unwrap_err();
    assert!(
        err.to_string()
            .contains("containers have network \"none\" (docker.network)"),
        "{err}"
    );
}

#[test]
fn the_warden_refuses_before_the_engine_is_asked_and_a_missing_socket_is_named() {
    let prefix = Prefix::new("nosock");
    let socket = "/run/stakpak-no-such-docker.sock";
    let suite = EmbeddedSuite::builder()
        .config_file(
            "sandboxd.toml",
            &prefix.config(&format!("socket = \"{socket}\"\n")),
        )
        .start();
    let client = SandboxClient::new(&suite);

    // Denied by the warden: an answer, although no engine could have run it.
    let denied = client.exec(request("s1", "rm -rf /")).unwrap();
    assert_eq!(
        (denied.status.as_str(), denied.rule.as_str()),
        ("denied", "fs.rm-root"),
        "{denied:?}"
    );
    // Allowed: the engine is needed, and the error names its socket.
    let err = client.exec(request("s1", "echo hi")).unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains(socket)),
        "{err:?}"
    );
    // The local backend is not affected.
    let local = client
        .call(async |p| {
            p.exec(ExecRequest {
                backend: "local".parse().unwrap(),
                ..request("s1", "echo local")
            })
            .await
        })
        .unwrap();
    assert_eq!(local.stdout, "local\n", "{local:?}");
    assert!(containers(&prefix.0).is_empty());
}

#[test]
fn a_missing_image_is_named() {
    let prefix = Prefix::new("noimage");
    let missing = format!("stakpak-no-such-image-{}:never", prefix.0);
    let suite = EmbeddedSuite::builder()
        .config_file(
            "sandboxd.toml",
            &format!(
                "[exec]\nbackend = \"docker\"\n[docker]\nimage = \"{missing}\"\nname_prefix = \"{}\"\n",
                prefix.0
            ),
        )
        .start();
    let client = SandboxClient::new(&suite);
    // The request names no backend: `exec.backend` makes it docker.
    let err = client
        .call(async |p| {
            p.exec(ExecRequest {
                backend: Default::default(),
                ..request("s1", "echo hi")
            })
            .await
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains(&missing)),
        "{err:?}"
    );
    let out = suite.stakpak(&["sandbox", "exec", "--", "echo", "hi"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains(&missing), "{out:?}");
}

#[test]
fn a_background_task_in_a_container_is_cancelled_with_its_processes() {
    let prefix = Prefix::new("task");
    let suite = EmbeddedSuite::builder()
        .config_file("sandboxd.toml", &prefix.config(""))
        .start();
    let client = SandboxClient::new(&suite);
    let nap = format!(
        "9{}.{}",
        random_string(b"123456789", 5),
        random_string(b"123456789", 6)
    );
    let info = client.start_task(request(
        "t1",
        &format!("echo started; (sleep {nap} &); sleep {nap}; echo never"),
    ));
    assert_eq!(info.state.as_str(), "running", "{info:?}");

    // The container's processes are the host's to see.
    let found = wait_until(Duration::from_secs(20), || {
        (processes_named(&nap).len() >= 2).then_some(())
    });
    assert!(found.is_some(), "the task's processes did not start");
    let details = wait_until(Duration::from_secs(10), || {
        let d = client.task_details(&info.id);
        d.tail.contains("started").then_some(d)
    })
    .expect("the tail never showed the output");
    assert_eq!(details.tail, "started\n");

    let id = info.id.clone();
    let cancelled = client.call(async |p| p.cancel_task(id).await).unwrap();
    assert_eq!(cancelled.state.as_str(), "cancelled", "{cancelled:?}");
    let gone = wait_until(Duration::from_secs(10), || {
        processes_named(&nap).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "processes survived the cancel: {:?}",
        processes_named(&nap)
    );
    assert_eq!(client.task_details(&info.id).tail, "started\n");
    // The container stays for the next command.
    assert_eq!(containers(&prefix.0), std::slice::from_ref(&prefix.0));
    assert_eq!(
        client.exec(request("t1", "echo after")).unwrap().stdout,
        "after\n"
    );
}

#[test]
fn per_session_mode_gives_each_session_its_own_container() {
    let prefix = Prefix::new("persession");
    let suite = EmbeddedSuite::builder()
        .config_file("sandboxd.toml", &prefix.config("mode = \"per-session\"\n"))
        .start();
    let client = SandboxClient::new(&suite);

    for session in ["a", "b"] {
        let reply = client
            .exec(request(
                session,
                &format!("echo {session} > mine; ls /workspace; pwd"),
            ))
            .unwrap();
        // Each sees only its own workspace.
        assert_eq!(reply.stdout, "mine\n/workspace\n", "{reply:?}");
        assert_eq!(
            std::fs::read_to_string(suite.workspace(session).join("mine")).unwrap(),
            format!("{session}\n")
        );
    }
    assert_eq!(
        containers(&prefix.0),
        [format!("{}-a", prefix.0), format!("{}-b", prefix.0)]
    );
    // The persistent name is not used, and sessions do not share a /tmp.
    let a = client
        .exec(request("a", "echo x > /tmp/a; ls /tmp"))
        .unwrap();
    let b = client.exec(request("b", "ls /tmp")).unwrap();
    assert_eq!((a.stdout.as_str(), b.stdout.as_str()), ("a\n", ""));
}
