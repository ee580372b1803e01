//! `stakpak doctor` and `stakpak logs` against the real embedded suite: doctor passes on a
//! healthy suite, fails with the fix when the configured Docker engine does not answer or no
//! suite runs; logs shows a daemon's last lines and names the valid components (issue 7).

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{process::Command, time::Duration};

use serde_json::Value;
use stakpak_testkit::{EmbeddedSuite, Output, bin, random_string, wait_until};

/// A config.toml whose default profile talks to an OpenAI-compatible endpoint that needs no
/// key, so the LLM credential check passes without one.
const AGENT_CONFIG: &str = "[profiles.default]\nmodel = \"local/test-model\"\n\
                            [profiles.default.providers.local]\ntype = \"custom\"\n\
                            api_endpoint = \"http://127.0.0.1:9/v1\"\n";

fn doctor_json(out: &Output) -> Vec<Value> {
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {out:?}"))
        .as_array()
        .unwrap_or_else(|| panic!("doctor --json is not an array: {out:?}"))
        .clone()
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

/// The names of the checks that talk to the daemons.
fn daemon_checks() -> Vec<String> {
    ["Secrets1", "Warden1", "Sandbox1", "Agent1", "Scheduler1"]
        .iter()
        .map(|n| format!("bus dev.stakpak.{n}"))
        .chain(
            ["secretd", "warden", "sandboxd", "agent", "schedd"]
                .iter()
                .map(|d| format!("daemon {d}")),
        )
        .collect()
}

#[test]
fn doctor_passes_on_a_healthy_suite_and_logs_show_its_lines() {
    let suite = EmbeddedSuite::builder()
        .config_file("config.toml", AGENT_CONFIG)
        .start();

    let out = suite.stakpak(&["doctor", "--json"]);
    let checks = doctor_json(&out);
    for name in daemon_checks() {
        assert_eq!(check(&checks, &name)["status"], "ok", "{name}: {checks:#?}");
    }
    for name in ["llm key", "agent config", "vault key", "config", "policy"] {
        assert_eq!(check(&checks, name)["status"], "ok", "{name}: {checks:#?}");
    }
    assert_eq!(check(&checks, "docker")["status"], "skip");
    let failed: Vec<&Value> = checks.iter().filter(|c| c["status"] == "fail").collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    assert_eq!(out.code, Some(0), "{out:?}");

    // The table says the same in words.
    let table = suite.stakpak(&["doctor"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(
        table.stdout.contains("daemon warden") && table.stdout.contains(" 0 failed"),
        "{table:?}"
    );

    // logs -c warden: exactly the last five lines of the warden's file, as they are. Each
    // refused command adds a line.
    for _ in 0..3 {
        let denied = suite.stakpak(&["policy", "check", "--", "rm", "-rf", "/"]);
        assert_eq!(denied.code, Some(4), "{denied:?}");
    }
    // The audit line follows the reply: wait until the third is written.
    let text = wait_until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(suite.log_file("warden")).unwrap();
        (text.matches("audit trail appended").count() == 3).then_some(text)
    })
    .expect("the warden logged three audit appends");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 5, "{text}");
    let last_five = lines[lines.len() - 5..].join("\n") + "\n";
    let logs = suite.stakpak(&["logs", "-n", "5", "-c", "warden"]);
    assert_eq!(logs.code, Some(0), "{logs:?}");
    assert_eq!(logs.stdout, last_five);

    // Without -c: the components' lines merged, each under its name, at most N.
    let all = suite.stakpak(&["logs", "-n", "8"]);
    assert_eq!(all.code, Some(0), "{all:?}");
    let merged: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(merged.len(), 8, "{all:?}");
    assert_eq!(
        merged.last().unwrap().to_string(),
        format!("warden      {}", lines.last().unwrap()),
        "{all:?}"
    );
    assert!(
        merged
            .iter()
            .any(|l| l.starts_with("supervisor  ") && l.contains("suite ready")),
        "{all:?}"
    );
    let stamps: Vec<&str> = merged
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "not in time order: {all:?}");

    let unknown = suite.stakpak(&["logs", "-c", "wardn"]);
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert_eq!(
        unknown.stderr.trim(),
        "stakpak: error: unknown component `wardn`: valid components are agent, warden, secretd, sandboxd, schedd, supervisor, bus"
    );
}

#[test]
fn doctor_fails_when_the_configured_docker_engine_does_not_answer() {
    let socket = format!(
        "/tmp/{}/docker.sock",
        random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 12)
    );
    let sandboxd =
        format!("[exec]\nbackend = \"docker\"\n[docker]\nimage = \"x\"\nsocket = \"{socket}\"\n");
    let suite = EmbeddedSuite::builder()
        .config_file("config.toml", AGENT_CONFIG)
        .config_file("sandboxd.toml", &sandboxd)
        .start();

    let out = suite.stakpak(&["doctor", "--json"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let checks = doctor_json(&out);
    let docker = check(&checks, "docker");
    assert_eq!(docker["status"], "fail");
    let message = docker["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Docker is configured as the sandbox backend but the engine at {socket} does not answer"
        )),
        "{message}"
    );
    assert_eq!(
        docker["fix"],
        format!(
            "start it (systemctl start docker) or set [exec] backend = \"local\" in {}",
            suite.config_dir.join("sandboxd.toml").display()
        )
    );
    // Docker is the only problem: the suite itself is fine.
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["docker"]);

    let table = suite.stakpak(&["doctor"]);
    assert_eq!(table.code, Some(1), "{table:?}");
    assert!(
        table.stdout.contains("does not answer")
            && table
                .stdout
                .contains("fix: start it (systemctl start docker)"),
        "{table:?}"
    );
}

#[test]
fn doctor_without_a_suite_says_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("config.toml"), AGENT_CONFIG).unwrap();
    let out: Output = Command::new(bin("stakpak"))
        .arg("--state-dir")
        .arg(dir.path().join("s"))
        .arg("--config-dir")
        .arg(&config)
        .args(["doctor", "--json"])
        .env_remove("STAKPAK_BUS_ADDRESS")
        .env_remove("STAKPAK_STATE_DIR")
        .env_remove("STAKPAK_CONFIG_DIR")
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, Some(1), "{out:?}");
    let checks = doctor_json(&out);
    for name in daemon_checks() {
        let c = check(&checks, &name);
        assert_eq!(
            (&c["status"], &c["message"], &c["fix"]),
            (
                &Value::from("fail"),
                &Value::from("no suite is running"),
                &Value::from("stakpak up")
            ),
            "{name}"
        );
    }
    // What needs no suite is still checked.
    assert_eq!(check(&checks, "policy")["status"], "ok");
    assert_eq!(check(&checks, "llm key")["status"], "ok");
}
