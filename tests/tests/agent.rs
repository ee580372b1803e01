//! The agent end to end: the embedded suite, the real `stakpak` CLI, and the LLM double in
//! both wire formats. A multi-turn session creates and edits a file, runs commands, meets a
//! warden denial and recovers, waits for an approval given through the CLI, and finishes;
//! canaries never reach the model, the session database or the logs.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::json;
use stakpak_testkit::{EmbeddedSuite, LlmDouble, Turn, files_below, random_string, wait_until};

#[derive(Clone, Copy, Debug)]
enum Format {
    OpenAi,
    Anthropic,
}

const KEY: &str = "sk-test-key-0123456789abcdef";

/// A suite whose default profile talks to `double` in `format`; the key comes from the
/// credential file (Anthropic) or none is needed (an OpenAI-compatible custom endpoint).
fn suite_for(double: &LlmDouble, format: Format, extra: &str) -> EmbeddedSuite {
    let provider = match format {
        Format::OpenAi => format!(
            "[profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
            double.base_url()
        ),
        Format::Anthropic => format!(
            "[profiles.default.providers.double]\ntype = \"anthropic\"\napi_endpoint = \"{}\"\n",
            double.base_url()
        ),
    };
    let config = format!(
        "[profiles.default]\nmodel = \"double/test-model\"\nmax_turns = 12\n\
         auto_approve = [\"create\", \"str_replace\", \"run_command::df\", \"run_command::printf\"]\n{extra}\n{provider}"
    );
    let suite = EmbeddedSuite::builder()
        .config_file("config.toml", &config)
        .config_file(
            "credentials.toml",
            &format!("ANTHROPIC_API_KEY = \"{KEY}\"\n"),
        )
        .start();
    std::fs::set_permissions(
        suite.config_dir.join("credentials.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    suite
}

fn double_for(format: Format, script: Vec<Turn>) -> LlmDouble {
    match format {
        Format::OpenAi => LlmDouble::start(script),
        Format::Anthropic => LlmDouble::with_key(script, KEY),
    }
}

/// Starts `stakpak ARGS` and hands its stderr lines to a channel.
fn spawn_cli(suite: &EmbeddedSuite, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = suite
        .stakpak_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn session_id(lines: &mpsc::Receiver<String>) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the CLI names its session");
        if let Some(id) = line.strip_prefix("session ") {
            return id.split_whitespace().next().unwrap().to_string();
        }
    }
}

fn sessions(suite: &EmbeddedSuite) -> serde_json::Value {
    let out = suite.stakpak(&["sessions", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

fn state_of(suite: &EmbeddedSuite, id: &str) -> String {
    sessions(suite)
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn a_session_that_edits_is_denied_recovers_and_is_approved(format: Format) {
    let canary_vault = format!(
        "vlt{}",
        random_string(b"abcdefghijkmnopqrstuvwxyz23456789", 26)
    );
    // A token secretd's rules detect in the prompt.
    let canary_prompt = format!(
        "ghp_{}",
        random_string(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            36
        )
    );
    let script = vec![
        Turn::tools(vec![
            (
                "create",
                json!({"path": "app.conf", "content": "port=80\nname=web\n"}),
            ),
            ("run_command", json!({"command": "df -h /"})),
        ])
        .expecting("prepare the config")
        .expecting("[REDACTED_SECRET:github-pat:"),
        Turn::tools(vec![(
            "str_replace",
            json!({"path": "app.conf", "old_str": "port=80", "new_str": "port=8080"}),
        )])
        .expecting("status: exited 0"),
        Turn::tools(vec![("run_command", json!({"command": "rm -rf /"}))])
            .expecting("edited app.conf"),
        Turn::tools(vec![
            ("run_command", json!({"command": "cat app.conf"})),
            (
                "run_command",
                json!({"command": "printf %s '{{secret:CANARY}}' > token.txt"}),
            ),
        ])
        .expecting("fs.rm-root"),
        Turn::text("All done: the service now listens on port 8080.").expecting("port=8080"),
    ];
    let double = double_for(format, script);
    let suite = suite_for(&double, format, "");
    suite.set_secret("CANARY", &canary_vault);

    let prompt = format!("prepare the config of web; the deploy token is {canary_prompt}");
    let (mut run, lines) = spawn_cli(&suite, &["run", &prompt]);
    let id = session_id(&lines);

    // The fourth turn's calls are not auto-approved: the session waits.
    let waiting = wait_until(Duration::from_secs(60), || {
        (state_of(&suite, &id) == "waiting-approval").then_some(())
    });
    assert!(
        waiting.is_some(),
        "never waited for approval: {:?}; requests {:#?}",
        state_of(&suite, &id),
        double
            .requests()
            .iter()
            .map(|r| r.matched.clone())
            .collect::<Vec<_>>()
    );
    let detail = suite.stakpak(&["sessions", "show", &id, "--json"]);
    let detail: serde_json::Value = serde_json::from_str(&detail.stdout).unwrap();
    let waiting: Vec<&serde_json::Value> = detail["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "waiting-approval")
        .collect();
    // `cat` is not auto-approved; `printf` is, but not with a redirection.
    assert_eq!(waiting.len(), 2, "{detail:#}");
    assert!(
        waiting[0]["arguments"]
            .as_str()
            .unwrap()
            .contains("cat app.conf")
    );
    assert_eq!(waiting[0]["approval"], "profile");

    // Approved through the CLI from another process.
    let approve = suite.stakpak(&["-s", &id, "--approve-all"]);
    assert_eq!(approve.code, Some(0), "{approve:?}");
    let status = run.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut run.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{status:?} {stdout}");
    assert!(stdout.contains("All done"), "{stdout}");

    // What happened, as the session records it.
    assert_eq!(state_of(&suite, &id), "finished");
    let out = suite.stakpak(&["sessions", "show", &id, "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let detail: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let calls = detail["tool_calls"].as_array().unwrap();
    let states: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("create", "done"),
            ("run_command", "done"),
            ("str_replace", "done"),
            ("run_command", "denied"),
            ("run_command", "done"),
            ("run_command", "done"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "{detail:#}"
    );
    assert_eq!(calls[3]["rule"], "fs.rm-root");
    assert_eq!(
        std::fs::read_to_string(suite.workspace(&id).join("app.conf")).unwrap(),
        "port=8080\nname=web\n"
    );
    let text = suite.stakpak(&["sessions", "show", &id]);
    assert!(text.stdout.contains("finished"), "{text:?}");
    let listed = suite.stakpak(&["sessions", "list"]);
    assert!(listed.stdout.contains(&id), "{listed:?}");

    // The command got the vault value...
    assert_eq!(
        std::fs::read_to_string(suite.workspace(&id).join("token.txt")).unwrap(),
        canary_vault
    );
    // ...and no canary reached the model, the session database or a log.
    let requests = double.requests();
    assert_eq!(requests.len(), 5);
    for r in &requests {
        assert_eq!(r.matched, Ok(()), "{}", r.body);
        for canary in [&canary_vault, &canary_prompt] {
            assert!(
                !r.body.contains(canary.as_str()),
                "a request holds a canary"
            );
        }
    }
    for file in files_below(&suite.state_dir) {
        if file.ends_with("token.txt") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for canary in [&canary_vault, &canary_prompt] {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{} holds a canary",
                file.display()
            );
        }
    }
}

#[test]
fn a_session_in_the_openai_format() {
    a_session_that_edits_is_denied_recovers_and_is_approved(Format::OpenAi);
}

#[test]
fn a_session_in_the_anthropic_format() {
    a_session_that_edits_is_denied_recovers_and_is_approved(Format::Anthropic);
}

#[test]
fn pause_on_approval_exits_10_and_approve_all_resumes() {
    let script = vec![
        Turn::tools(vec![
            ("run_command", json!({"command": "echo one > one.txt"})),
            ("run_command", json!({"command": "echo two > two.txt"})),
        ]),
        Turn::text("both written").expecting("status: exited 0"),
    ];
    let double = double_for(Format::OpenAi, script);
    let suite = suite_for(&double, Format::OpenAi, "");
    let (mut run, lines) = spawn_cli(&suite, &["-a", "--pause-on-approval", "write two files"]);
    let id = session_id(&lines);
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(10));
    assert_eq!(state_of(&suite, &id), "paused");
    assert!(!suite.workspace(&id).join("one.txt").exists());

    let resumed = suite.stakpak(&["-s", &id, "--approve-all"]);
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    assert_eq!(state_of(&suite, &id), "finished");
    assert!(suite.workspace(&id).join("one.txt").exists());
    assert!(suite.workspace(&id).join("two.txt").exists());
}

#[test]
fn a_killed_agent_resumes_from_the_last_checkpoint() {
    let script = vec![
        Turn::tools(vec![("run_command", json!({"command": "df -h /"}))]),
        // The agent is killed while it waits for this answer.
        Turn::text("never delivered").after(Duration::from_secs(30)),
        Turn::text("resumed and finished").expecting("status: exited 0"),
    ];
    let double = double_for(Format::OpenAi, script);
    let suite = suite_for(&double, Format::OpenAi, "");
    let (mut run, lines) = spawn_cli(&suite, &["run", "check the disk"]);
    let id = session_id(&lines);
    // The second request is in flight once the double has seen it.
    let in_flight = wait_until(Duration::from_secs(60), || {
        (double.requests().len() >= 2).then_some(())
    });
    assert!(in_flight.is_some(), "{:?}", state_of(&suite, &id));
    let pid = suite.kill_9("stakpak-agent");
    // The CLI sees the agent go and stops with an error.
    let status = run.wait().unwrap();
    assert!(!status.success());

    // The supervisor restarts the agent; the session is marked interrupted.
    let restarted = wait_until(Duration::from_secs(30), || {
        suite
            .pid_of("stakpak-agent")
            .filter(|p| *p != pid)
            .filter(|_| state_of(&suite, &id) == "interrupted")
    });
    assert!(restarted.is_some(), "{}", state_of(&suite, &id));

    let resumed = suite.stakpak(&["-s", &id]);
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    assert!(
        resumed.stdout.contains("resumed and finished"),
        "{resumed:?}"
    );
    assert_eq!(state_of(&suite, &id), "finished");
    // The resumed request carried the first turn's result from the checkpoint.
    let requests = double.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].matched, Ok(()));
}

#[test]
fn bad_tool_arguments_go_back_to_the_model_and_provider_errors_fail_the_session() {
    let script = vec![
        Turn::raw_tools(vec![("run_command", "{\"command\": \"df -h")]),
        Turn::text("fixed it").expecting("not valid JSON"),
    ];
    let double = double_for(Format::Anthropic, script);
    let suite = suite_for(&double, Format::Anthropic, "");
    let out = suite.stakpak(&["run", "check the disk"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("fixed it"), "{out:?}");

    // A wrong key: the session fails with a message that names the problem, not the key.
    std::fs::write(
        suite.config_dir.join("credentials.toml"),
        "ANTHROPIC_API_KEY = \"sk-wrong-key-000000000000\"\n",
    )
    .unwrap();
    let out = suite.stakpak(&["run", "again"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("failed"), "{out:?}");
    assert!(
        out.stderr.to_lowercase().contains("auth") || out.stderr.contains("401"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("sk-wrong-key"), "{out:?}");
}

#[test]
fn rulebooks_project_context_generated_passwords_and_questions() {
    let script = vec![
        Turn::tools(vec![("generate_password", json!({"length": 20}))])
            .expecting("stakpak://rulebooks/disk-full")
            .expecting("Deploys go through make deploy"),
        Turn::tools(vec![(
            "ask_user",
            json!({"question": "Which port should web listen on?"}),
        )])
        .expecting("[REDACTED_SECRET:generated-password:"),
        Turn::text("Using port 8443.").expecting("8443"),
    ];
    let double = double_for(Format::OpenAi, script);
    let suite = suite_for(
        &double,
        Format::OpenAi,
        "[profiles.default.rulebooks]\ninclude = [\"stakpak://rulebooks/disk-*\"]\n",
    );
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("AGENTS.md"),
        "Deploys go through make deploy.\n",
    )
    .unwrap();
    let workdir = project.path().display().to_string();
    let out = suite.stakpak(&["run", "-w", &workdir, "set up web"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("the agent asks: Which port should web listen on?"),
        "{out:?}"
    );
    let id = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(state_of(&suite, &id), "waiting-user");
    let answered = suite.stakpak(&["-s", &id, "8443"]);
    assert_eq!(answered.code, Some(0), "{answered:?}");
    assert!(answered.stdout.contains("Using port 8443."), "{answered:?}");
    // Only one rulebook was selected, and the password's value never reached the model.
    let requests = double.requests();
    assert!(
        !requests[0]
            .body
            .contains("## stakpak://rulebooks/runaway-logs")
    );
    assert!(
        requests[0]
            .body
            .contains("## stakpak://rulebooks/disk-full")
    );
    for r in &requests {
        assert_eq!(r.matched, Ok(()), "{}", r.body);
    }
}

#[test]
fn a_session_waiting_for_approval_can_be_cancelled() {
    let script = vec![Turn::tools(vec![(
        "run_command",
        json!({"command": "echo never > never.txt"}),
    )])];
    let double = double_for(Format::OpenAi, script);
    let suite = suite_for(&double, Format::OpenAi, "");
    let (mut run, lines) = spawn_cli(&suite, &["run", "write a file"]);
    let id = session_id(&lines);
    let waiting = wait_until(Duration::from_secs(60), || {
        (state_of(&suite, &id) == "waiting-approval").then_some(())
    });
    assert!(waiting.is_some());
    let out = suite.stakpak(&["sessions", "cancel", &id]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), format!("session {id} cancelled"));
    assert_eq!(run.wait().unwrap().code(), Some(1));
    assert!(!suite.workspace(&id).join("never.txt").exists());
}
