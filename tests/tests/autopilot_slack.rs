//! The Slack channel of schedd end to end: the embedded suite, the LLM double and the Slack
//! double (Web API + Socket Mode). `stakpak autopilot channel add slack` stores the tokens in
//! secretd (for schedd alone) and schedd connects; a mention becomes a session that answers
//! in its thread; an approval request shows Allow/Deny buttons and Allow runs the call; a
//! failed schedule run is reported to its `notify_target`; a dropped Socket Mode connection
//! and a kill -9 of schedd are both followed by a new connection, and the thread still
//! continues its session. The tokens are in no file of the suite and no command gets them.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stakpak_testkit::{EmbeddedSuite, LlmDouble, SlackDouble, Turn, app_mention};

const BOT: &str = "xoxb-canary-bot-token-5eb1c0de";
const APP: &str = "xapp-1-canary-app-token-a11ce5";
const WAIT: Duration = Duration::from_secs(60);

fn suite(llm: &LlmDouble) -> EmbeddedSuite {
    let config = format!(
        "[profiles.default]\nmodel = \"double/test-model\"\nmax_turns = 6\n\
         [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n\
         [profiles.ops]\nmodel = \"double/test-model\"\n\
         [profiles.ops.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
        llm.base_url(),
        llm.base_url()
    );
    EmbeddedSuite::builder()
        .config_file("config.toml", &config)
        .start()
}

/// `stakpak ARGS` with `stdin` piped in: (exit code, stdout, stderr).
fn stakpak_with_stdin(suite: &EmbeddedSuite, args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = suite.stakpak_with_stdin(args, stdin);
    (out.code.unwrap_or(-1), out.stdout, out.stderr)
}

fn json_of(suite: &EmbeddedSuite, args: &[&str]) -> Value {
    let out = suite.stakpak(args);
    assert_eq!(out.code, Some(0), "stakpak {args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn args(call: &stakpak_testkit::ApiCall) -> &Value {
    &call.args
}

/// Every file under `root`, read whole (the suite's state, logs and configuration).
fn files_holding(root: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn channel_state(suite: &EmbeddedSuite) -> Value {
    let list = json_of(suite, &["autopilot", "channel", "list", "--json"]);
    list.as_array().unwrap()[0].clone()
}

#[test]
fn slack_mentions_become_sessions_approvals_buttons_and_failures_notifications() {
    let llm = LlmDouble::start(vec![
        Turn::text("The disk is 42% full.").expecting("how full"),
        Turn::tools(vec![(
            "run_command",
            json!({"command": "echo slack-approved"}),
        )])
        .expecting("clean up"),
        Turn::text("Cleaned up.").expecting("slack-approved"),
    ]);
    let suite = suite(&llm);
    let slack = SlackDouble::start(BOT, APP);

    // Bad input first: nothing of it stays behind.
    let (code, _, err) = stakpak_with_stdin(
        &suite,
        &[
            "autopilot",
            "channel",
            "add",
            "slack",
            "--api-url",
            &slack.api_url(),
        ],
        "xoxb-wrong-bot-token-000000\nxapp-1-wrong-app-token-0000\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("the slack channel was not added") && err.contains("bot token"),
        "{err}"
    );
    let (code, _, err) = stakpak_with_stdin(
        &suite,
        &["autopilot", "channel", "add", "slack", "--profile", "nope"],
        &format!("{BOT}\n{APP}\n"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown profile `nope`"), "{err}");
    let (code, _, err) = stakpak_with_stdin(
        &suite,
        &["autopilot", "channel", "add", "slack"],
        "just one line\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("needs a bot token (xoxb-…) and an app token"),
        "{err}"
    );
    let secrets = json_of(&suite, &["secret", "list", "--json"]);
    assert_eq!(secrets, json!([]), "refused adds leave no token behind");
    assert_eq!(
        json_of(&suite, &["autopilot", "channel", "list", "--json"]),
        json!([])
    );
    let out = suite.stakpak(&[
        "autopilot",
        "schedule",
        "add",
        "x",
        "--cron",
        "@daily",
        "--prompt",
        "p",
        "--profile",
        "nope",
    ]);
    assert!(
        out.stderr.contains("schedule `x`: unknown profile `nope`")
            && out.stderr.contains("defines default, ops"),
        "{}",
        out.stderr
    );

    // The channel, with its tokens on stdin.
    let (code, stdout, err) = stakpak_with_stdin(
        &suite,
        &[
            "autopilot",
            "channel",
            "add",
            "slack",
            "--profile",
            "ops",
            "--api-url",
            &slack.api_url(),
        ],
        &format!("{APP}\n{BOT}\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("added slack channel: bot user "),
        "{stdout}"
    );
    slack.wait_until("a socket mode connection", WAIT, |d| {
        d.live_connections() == 1
    });
    let secrets = json_of(&suite, &["secret", "list", "--json"]);
    let scoped: Vec<(&str, &Value)> = secrets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), &s["consumers"]))
        .collect();
    assert_eq!(
        scoped,
        [
            ("slack.app_token", &json!(["schedd"])),
            ("slack.bot_token", &json!(["schedd"]))
        ]
    );
    let deadline = Instant::now() + WAIT;
    while channel_state(&suite)["state"] != "connected" {
        assert!(Instant::now() < deadline, "{}", channel_state(&suite));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = suite.stakpak(&["autopilot", "channel", "add", "slack"]);
    assert!(
        out.stderr.contains("a slack channel is already configured"),
        "{}",
        out.stderr
    );

    // A mention: eyes, a session, the answer in the thread.
    let ts = "1700000800.000100";
    slack.send_event(app_mention("C5", "U1", "how full is the disk?", ts, None));
    let reply = slack.wait_call("chat.postMessage", 1, WAIT);
    assert_eq!(
        (
            args(&reply)["channel"].clone(),
            args(&reply)["thread_ts"].clone(),
            args(&reply)["text"].clone()
        ),
        (json!("C5"), json!(ts), json!("The disk is 42% full."))
    );
    let eyes = slack.wait_call("reactions.add", 1, WAIT);
    assert_eq!(args(&eyes)["name"], json!("eyes"));
    assert_eq!(args(&eyes)["timestamp"], json!(ts));

    // A reply in the thread continues the session; its command waits for approval.
    slack.send_event(app_mention(
        "C5",
        "U1",
        "now clean up",
        "1700000801.000100",
        Some(ts),
    ));
    let ask = slack.wait_call("chat.postMessage", 2, WAIT);
    assert_eq!(args(&ask)["thread_ts"], json!(ts));
    let buttons = &args(&ask)["blocks"][1]["elements"];
    assert_eq!(buttons[0]["action_id"], json!("stakpak-allow"));
    assert_eq!(buttons[1]["action_id"], json!("stakpak-deny"));
    let value = buttons[0]["value"].as_str().unwrap().to_owned();
    let session = value.split_once(' ').unwrap().0.to_owned();
    let posted = slack.posted();
    slack.press_button("stakpak-allow", &value, "C5", &posted[1].ts, "U7");
    let done = slack.wait_call("chat.postMessage", 3, WAIT);
    assert_eq!(
        (
            args(&done)["thread_ts"].clone(),
            args(&done)["text"].clone()
        ),
        (json!(ts), json!("Cleaned up."))
    );
    let update = slack.wait_call("chat.update", 1, WAIT);
    assert!(
        args(&update)["text"]
            .as_str()
            .unwrap()
            .starts_with("Allowed by <@U7>"),
        "{update:?}"
    );
    let shown = json_of(&suite, &["sessions", "show", &session, "--json"]);
    let calls = shown["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{shown}");
    assert_eq!(calls[0]["state"], "done", "{shown}");
    assert!(
        calls[0]["output"]
            .as_str()
            .unwrap()
            .contains("slack-approved")
    );
    // Both messages of the thread went to one session, started with the channel's profile.
    let list = json_of(&suite, &["sessions", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["profile"], "ops", "{list}");

    // A failed run of a schedule is reported to its notify_target.
    let out = suite.add_schedule(
        "nightly",
        "@yearly",
        "NIGHTLY check the backups",
        &[
            "--notify-channel",
            "slack",
            "--notify-target",
            "C0ALERTS",
            "--notify-on",
            "failures",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    llm.push(Turn::status(
        400,
        r#"{"error":{"message":"context too long"}}"#,
    ));
    let out = suite.stakpak(&["autopilot", "schedule", "trigger", "nightly"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    slack.wait_until("the failure notification", WAIT, |d| {
        d.calls_to("chat.postMessage")
            .iter()
            .any(|c| c.args["channel"] == json!("C0ALERTS"))
    });
    let note = slack
        .calls_to("chat.postMessage")
        .into_iter()
        .find(|c| c.args["channel"] == json!("C0ALERTS"))
        .unwrap();
    let text = note.args["text"].as_str().unwrap();
    assert!(
        text.contains("nightly") && text.contains("failed"),
        "{text}"
    );

    // A dropped connection is opened again, and the channel still works.
    slack.drop_connection();
    slack.wait_until("a second connection", WAIT, |d| {
        d.connections_opened() >= 2 && d.live_connections() == 1
    });
    llm.push(Turn::text("Second thread here.").expecting("anyone there"));
    slack.send_event(app_mention(
        "C6",
        "U1",
        "anyone there?",
        "1700000900.000100",
        None,
    ));
    slack.wait_until("the answer after the reconnection", WAIT, |d| {
        d.calls_to("chat.postMessage")
            .iter()
            .any(|c| c.args["text"] == json!("Second thread here."))
    });

    // kill -9 of schedd: it comes back, fetches the tokens again, reconnects, and the old
    // thread continues its session.
    suite.kill_9("stakpak-schedd");
    let opened = slack.connections_opened();
    slack.wait_until("a connection from the new schedd", WAIT, |d| {
        d.connections_opened() > opened && d.live_connections() >= 1
    });
    llm.push(Turn::text("Same session as before.").expecting("Cleaned up."));
    slack.send_event(app_mention(
        "C5",
        "U1",
        "still there?",
        "1700000950.000100",
        Some(ts),
    ));
    slack.wait_until("the answer in the old thread", WAIT, |d| {
        d.calls_to("chat.postMessage").iter().any(|c| {
            c.args["text"] == json!("Same session as before.") && c.args["thread_ts"] == json!(ts)
        })
    });
    let list = json_of(&suite, &["sessions", "list", "--json"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&session.as_str()));
    assert_eq!(
        ids.len(),
        3,
        "slack threads C5 and C6 and the schedule run: {list}"
    );

    let status = json_of(&suite, &["autopilot", "status", "--json"]);
    let channel = &status["channels"][0];
    assert_eq!(channel["spec"]["kind"], "slack");
    assert_eq!(channel["state"], "connected", "{channel}");
    let test = suite.stakpak(&[
        "autopilot",
        "channel",
        "test",
        "slack",
        "--target",
        "C0ALERTS",
    ]);
    assert_eq!(test.code, Some(0), "{}", test.stderr);
    assert!(
        test.stdout.contains("the bot token works"),
        "{}",
        test.stdout
    );

    // The tokens: used with Slack, never in a file of the suite, never given to a command.
    for call in slack.calls_to("chat.postMessage") {
        assert_eq!(call.token.as_deref(), Some(BOT));
    }
    for token in [BOT, APP] {
        assert_eq!(files_holding(suite.root(), token), Vec::<String>::new());
        assert!(!llm.requests().iter().any(|r| r.body.contains(token)));
    }
    let out = suite.stakpak(&["sandbox", "exec", "--", "echo {{secret:slack.bot_token}}"]);
    assert_ne!(out.code, Some(0));
    assert!(!out.stdout.contains(BOT));
    assert!(
        out.stderr
            .contains("slack.bot_token is limited to consumers"),
        "{}",
        out.stderr
    );

    // Removing the channel disconnects it and deletes the tokens.
    let out = suite.stakpak(&["autopilot", "channel", "remove", "slack"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(json_of(&suite, &["secret", "list", "--json"]), json!([]));
    slack.wait_until("no live connection", WAIT, |d| d.live_connections() == 0);
}
