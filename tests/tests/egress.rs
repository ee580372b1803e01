//! The warden's egress proxy end to end (issue 10): commands in a `proxied` sandbox reach
//! local HTTPS origins only through the proxy, trusting the warden's CA; destructive API
//! calls (Kubernetes, AWS query and JSON protocols) are blocked with a 403 naming the rule
//! and read-only ones pass; a direct connection fails; `stakpak warden logs` lists what was
//! blocked and inspected, with detailed bodies redacted; the CA key is the warden's alone.
//!
//! The origins run in this process; the warden's static host map sends `allowed.test`,
//! `kube.test` and `aws.test` to them, and trusts their CA for the upstream side.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/https_origin.rs"]
mod https_origin;

use std::os::unix::{fs::PermissionsExt, process::CommandExt};

use https_origin::Origin;
use stakpak_testkit::{EmbeddedSuite, Output};

struct Setup {
    suite: EmbeddedSuite,
    allowed: Origin,
    kube: Origin,
    aws: Origin,
}

fn setup(detail: bool) -> Setup {
    let allowed = https_origin::start("allowed", &["allowed.test"]);
    let kube = https_origin::start("kube", &["kube.test"]);
    let aws = https_origin::start("aws", &["aws.test"]);
    let cas = format!("{}{}{}", allowed.ca_pem, kube.ca_pem, aws.ca_pem);
    let warden = format!(
        "[proxy]\n\
         hosts = {{ \"allowed.test\" = \"{}\", \"kube.test\" = \"{}\", \"aws.test\" = \"{}\" }}\n\
         upstream_ca = [\"origins.pem\"]\n\
         detail = {detail}\n",
        allowed.addr, kube.addr, aws.addr
    );
    let suite = EmbeddedSuite::builder()
        .config_file("origins.pem", &cas)
        .config_file("warden.toml", &warden)
        .start();
    Setup {
        suite,
        allowed,
        kube,
        aws,
    }
}

/// `stakpak sandbox exec --network proxied -- <command>`.
fn proxied(suite: &EmbeddedSuite, command: &str) -> Output {
    suite.stakpak(&[
        "sandbox",
        "exec",
        "--network",
        "proxied",
        "--session",
        "egress-1",
        "--timeout",
        "30",
        "--",
        command,
    ])
}

fn blocked_body(rule: &str, reason_part: &str, out: &Output) {
    assert!(
        out.stdout.contains(&format!("\"rule\":\"{rule}\"")) && out.stdout.contains(reason_part),
        "{out:?}"
    );
    assert!(out.stdout.ends_with("\n403"), "{out:?}");
}

#[test]
fn proxied_sandboxes_reach_the_network_only_through_the_judging_proxy() {
    let s = setup(false);

    // An allowed host: intercepted (the sandbox trusts the warden's CA, not the origin's),
    // forwarded, answered. The header placeholder is made inside the sandbox, so sandboxd
    // never saw it: the proxy passes it on as it is.
    let out = proxied(
        &s.suite,
        "curl -sS -H \"X-Token: {{secret:$(echo API_TOKEN)}}\" https://allowed.test/hello",
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            Some(0),
            "allowed GET /hello x-token={{secret:API_TOKEN}}",
            ""
        ),
        "{out:?}"
    );
    // The same with the network sandboxd gives by default.
    let out = s.suite.stakpak(&[
        "sandbox",
        "exec",
        "--",
        "curl -sS https://allowed.test/default",
    ]);
    assert_eq!(out.stdout, "allowed GET /default x-token=-", "{out:?}");

    // The certificate curl saw is the warden's leaf for the host.
    let out = proxied(
        &s.suite,
        "curl -sv -o /dev/null https://allowed.test/cert 2>&1",
    );
    assert!(
        out.stdout
            .contains("subjectAltName: host \"allowed.test\" matched cert's \"allowed.test\""),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("issuer: O=stakpak; CN=stakpak warden egress CA"),
        "{out:?}"
    );
    // With only the system's roots the interception shows: curl refuses the leaf.
    let out = proxied(
        &s.suite,
        "curl -sS --cacert /etc/ssl/certs/ca-certificates.crt https://allowed.test/x; echo \" exit=$?\"",
    );
    assert!(out.stdout.ends_with(" exit=60\n"), "{out:?}");

    // A namespace delete to the fake Kubernetes API: 403 naming the rule, never forwarded.
    let out = proxied(
        &s.suite,
        "curl -sS -X DELETE https://kube.test/api/v1/namespaces/prod -w '\\n%{http_code}'",
    );
    blocked_body("k8s-api.delete-namespace", "deleting a namespace", &out);
    let out = proxied(
        &s.suite,
        "curl -sS https://kube.test/api/v1/namespaces/prod",
    );
    assert_eq!(
        out.stdout, "kube GET /api/v1/namespaces/prod x-token=-",
        "{out:?}"
    );
    assert_eq!(
        *s.kube.hits.lock().unwrap(),
        vec!["GET /api/v1/namespaces/prod 0".to_string()]
    );

    // A connection that ignores the proxy finds no network: no route to the origin's port,
    // nothing listening on the sandbox's own loopback.
    let port = s.allowed.addr.port();
    let out = proxied(
        &s.suite,
        &format!(
            "curl -sS --noproxy '*' https://127.0.0.1:{port}/ 2>/dev/null; echo \"curl=$?\"; \
             bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null; echo \"tcp=$?\"; \
             bash -c 'exec 3<>/dev/tcp/1.1.1.1/443' 2>/dev/null; echo \"internet=$?\""
        ),
    );
    assert_eq!(out.stdout, "curl=7\ntcp=1\ninternet=1\n", "{out:?}");
    assert_eq!(s.allowed.hits.lock().unwrap().len(), 3);
}

#[test]
fn aws_destructive_calls_are_blocked_and_read_only_ones_pass() {
    let s = setup(false);
    let cases = [
        (
            "curl -sS 'https://aws.test/?Action=TerminateInstances&InstanceId.1=i-0abc' -w '\\n%{http_code}'",
            Some("aws-api.ec2-terminate"),
        ),
        (
            "curl -sS https://aws.test/ -d 'Action=TerminateInstances&InstanceId.1=i-0abc' -w '\\n%{http_code}'",
            Some("aws-api.ec2-terminate"),
        ),
        (
            "curl -sS https://aws.test/ -H 'X-Amz-Target: DynamoDB_20120810.DeleteTable' -H 'Content-Type: application/x-amz-json-1.0' -d '{\"TableName\":\"orders\"}' -w '\\n%{http_code}'",
            Some("aws-api.dynamodb-delete-table"),
        ),
        (
            "curl -sS 'https://aws.test/?Action=DescribeInstances' -w '\\n%{http_code}'",
            None,
        ),
        (
            "curl -sS https://aws.test/ -H 'X-Amz-Target: DynamoDB_20120810.ListTables' -d '{}' -w '\\n%{http_code}'",
            None,
        ),
    ];
    for (command, rule) in cases {
        let out = proxied(&s.suite, command);
        match rule {
            Some(rule) => blocked_body(rule, "\"decision\":\"deny\"", &out),
            None => {
                assert!(out.stdout.starts_with("aws "), "{out:?}");
                assert!(out.stdout.ends_with("\n200"), "{out:?}");
            }
        }
    }
    assert_eq!(
        *s.aws.hits.lock().unwrap(),
        vec![
            "GET /?Action=DescribeInstances 0".to_string(),
            "POST / 2".to_string()
        ]
    );
}

#[test]
fn warden_logs_list_blocked_and_inspected_requests_with_redacted_detail() {
    let s = setup(true);
    let secret = "hunter2-aws-9f8e7d6c5b4a";
    s.suite.set_secret("AWS_PASSWORD", secret);
    let out = proxied(
        &s.suite,
        "curl -sS -X DELETE https://kube.test/apis/apps/v1/namespaces/prod/deployments/web -H 'Authorization: Bearer {{secret:AWS_PASSWORD}}' -d \"password={{secret:AWS_PASSWORD}}\" -o /dev/null",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = proxied(&s.suite, "curl -sS https://allowed.test/fine -o /dev/null");
    assert_eq!(out.code, Some(0), "{out:?}");

    let logs = s.suite.stakpak(&["warden", "logs"]);
    assert_eq!(logs.code, Some(0), "{logs:?}");
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{logs:?}");
    assert!(
        lines[0].contains("blocked    403  DELETE https://kube.test/apis/apps/v1/namespaces/prod/deployments/web  k8s-api.delete-workload-protected"),
        "{logs:?}"
    );
    assert!(
        lines[1].contains("inspected  200  GET https://allowed.test/fine  -"),
        "{logs:?}"
    );

    let blocked = s
        .suite
        .stakpak(&["warden", "logs", "--blocked-only", "--detailed"]);
    assert_eq!(blocked.code, Some(0), "{blocked:?}");
    let text = &blocked.stdout;
    assert_eq!(
        text.lines().filter(|l| !l.starts_with("    ")).count(),
        1,
        "{text}"
    );
    for expected in [
        "    operation: k8s:delete:deployments  session: egress-1",
        "    request header: authorization: [masked]",
        "    request body: password={{secret:AWS_PASSWORD}}",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    // The value reached the request (sandboxd resolved it), but no log or record has it.
    assert!(!text.contains(secret), "{text}");
    let json = s.suite.stakpak(&["warden", "logs", "--json", "--detailed"]);
    assert!(!json.stdout.contains(secret));
    let log = std::fs::read_to_string(s.suite.log_file("warden")).unwrap();
    assert!(log.contains("request blocked"), "{log}");
    assert!(!log.contains(secret));
    let db = std::fs::read(s.suite.state_dir.join("state/warden/audit.db")).unwrap();
    let wal =
        std::fs::read(s.suite.state_dir.join("state/warden/audit.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the audit trail holds the secret"
        );
    }
}

#[test]
fn the_ca_key_is_the_wardens_alone() {
    let s = setup(false);
    let dir = s.suite.state_dir.join("state/warden/egress");
    let key = dir.join("ca-key.pem");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().uid(),
        rustix::process::getuid().as_raw()
    );
    // Another user cannot read it, even given the path.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test switches to another uid: run it as root, as CI does"
    );
    let other = std::process::Command::new("cat")
        .arg(&key)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1), "{other:?}");
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("Permission denied"),
        "{other:?}"
    );
    // Nor can a sandboxed command, which runs as the suite's own user when embedded.
    let out = proxied(
        &s.suite,
        &format!("cat {} 2>&1; echo \" exit=$?\"", key.display()),
    );
    assert!(out.stdout.ends_with(" exit=1\n"), "{out:?}");
    assert!(!out.stdout.contains("PRIVATE KEY"), "{out:?}");
}

/// `[proxy]` is part of the configuration: a bad pattern stops the start naming it, a reload
/// applies new host rules to the next connection, and a bad reload keeps the rules in force.
#[test]
fn proxy_settings_load_and_reload_like_the_policy() {
    let (suite, out) = EmbeddedSuite::builder()
        .config_file("warden.toml", "[proxy]\ndeny = [\"a*b.test\"]\n")
        .try_start();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("stakpak-warden failed to start: exited with status 78")
            && out
                .stderr
                .contains("host pattern `a*b.test`: a wildcard is `*` or `*.domain`"),
        "{out:?}"
    );
    drop(suite);

    let s = setup(false);
    let get = || {
        proxied(
            &s.suite,
            "curl -sS https://allowed.test/r -o /dev/null -w '%{http_code} %{http_connect}'; echo \" exit=$?\"",
        )
        .stdout
    };
    assert_eq!(get(), "200 200 exit=0\n");
    let toml = s.suite.config_dir.join("warden.toml");
    let original = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{original}deny = [\"allowed.test\"]\n")).unwrap();
    let reload = |s: &Setup| {
        let rt = stakpak_testkit::runtime();
        let conn = stakpak_testkit::connect(&rt, &s.suite.bus_address());
        rt.block_on(async {
            stakpak_proto::WardenProxy::new(&conn)
                .await
                .unwrap()
                .reload()
                .await
        })
    };
    reload(&s).unwrap();
    // The CONNECT itself is refused now (curl: exit 56, "CONNECT tunnel failed, response 403").
    assert_eq!(get(), "000 403 exit=56\n");
    let logs = s.suite.stakpak(&["warden", "logs", "--blocked-only"]);
    assert!(
        logs.stdout
            .contains("blocked    403  CONNECT allowed.test:443  proxy.deny[allowed.test]"),
        "{logs:?}"
    );

    // A bad reload answers InvalidConfig and the deny stays.
    std::fs::write(&toml, format!("{original}deny = [\"x:0\"]\n")).unwrap();
    let err = reload(&s).unwrap_err();
    assert!(
        matches!(&err, stakpak_proto::Error::InvalidConfig(m) if m.contains("host pattern `x:0`")),
        "{err:?}"
    );
    assert_eq!(get(), "000 403 exit=56\n");
}
