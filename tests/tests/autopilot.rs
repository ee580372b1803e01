//! Autopilot end to end: schedd in the embedded suite with the LLM double. A check that
//! exits 0 with `trigger_on = "failure"` leaves the agent asleep, one that exits 1 wakes
//! it; a check the warden refuses is recorded `check-denied`; bad input is refused with
//! the reason; a kill -9 of schedd loses no schedule and no history.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::Value;
use stakpak_testkit::{EmbeddedSuite, LlmDouble, Turn};

const AUTOPILOT: &str = r#"
[[schedules]]
name = "quiet"
cron = "*/2 * * * * *"
check = "exit 0"
trigger_on = "failure"
prompt = "QUIET-PROMPT investigate"

[[schedules]]
name = "wake"
cron = "*/2 * * * * *"
check = "exit 1"
trigger_on = "failure"
prompt = "WAKE-PROMPT investigate"

[[schedules]]
name = "denied"
cron = "*/2 * * * * *"
check = "rm -rf /"
prompt = "DENIED-PROMPT"

[[schedules]]
name = "broken"
cron = "every now and then"
prompt = "DENIED-PROMPT"
"#;

fn suite(double: &LlmDouble) -> EmbeddedSuite {
    let config = format!(
        "[profiles.default]\nmodel = \"double/test-model\"\nmax_turns = 2\n\
         [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
        double.base_url()
    );
    EmbeddedSuite::builder()
        .config_file("config.toml", &config)
        .config_file("autopilot.toml", AUTOPILOT)
        .start()
}

fn json(suite: &EmbeddedSuite, args: &[&str]) -> Value {
    let out = suite.stakpak(args);
    assert!(
        out.code == Some(0),
        "stakpak {args:?}: {}",
        out.stderr.clone()
    );
    serde_json::from_str(&out.stdout).unwrap()
}

/// `autopilot schedule history NAME --json`: every run, newest first.
fn history(suite: &EmbeddedSuite, name: &str) -> Vec<Value> {
    let runs = json(
        suite,
        &[
            "autopilot",
            "schedule",
            "history",
            name,
            "--json",
            "-n",
            "1000",
        ],
    );
    runs.as_array().unwrap().clone()
}

fn outcomes(suite: &EmbeddedSuite, name: &str) -> Vec<String> {
    history(suite, name)
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn checks_decide_whether_the_agent_wakes_and_history_survives_kill_9() {
    let double = LlmDouble::start((0..20).map(|_| Turn::text("all fine")).collect());
    let suite = suite(&double);

    wait_for("a finished run of `wake`", || {
        outcomes(&suite, "wake").iter().any(|o| o == "finished")
    });
    wait_for("a skipped-by-check run of `quiet`", || {
        outcomes(&suite, "quiet")
            .iter()
            .any(|o| o == "skipped-by-check")
    });
    wait_for("a check-denied run of `denied`", || {
        outcomes(&suite, "denied")
            .iter()
            .any(|o| o == "check-denied")
    });
    for name in ["quiet", "wake", "denied"] {
        let out = suite.stakpak(&["autopilot", "schedule", "disable", name]);
        assert!(out.code == Some(0));
    }
    let prompts: Vec<String> = double.requests().iter().map(|r| r.body.clone()).collect();
    assert!(prompts.iter().any(|b| b.contains("WAKE-PROMPT")));
    assert!(!prompts.iter().any(|b| b.contains("QUIET-PROMPT")));
    assert!(!prompts.iter().any(|b| b.contains("DENIED-PROMPT")));
    assert!(
        outcomes(&suite, "quiet")
            .iter()
            .all(|o| o == "skipped-by-check")
    );

    // The bad entry is reported, the good ones run.
    let status = json(&suite, &["autopilot", "status", "--json"]);
    let rejected: Vec<&str> = status["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        rejected,
        ["broken: invalid cron `every now and then`: expected 5 fields (6 with seconds), got 4"]
    );

    // A schedule added from the command line and the history survive a kill -9.
    let out = suite.add_schedule(
        "nightly",
        "0 3 * * *",
        "p",
        &["--timezone", "Europe/Berlin"],
    );
    assert!(out.code == Some(0), "{}", out.stderr.clone());
    let before = outcomes(&suite, "wake").len();
    let pid = suite.kill_9("stakpak-schedd");
    wait_for("schedd to come back", || {
        suite.pid_of("stakpak-schedd").is_some_and(|p| p != pid)
            && suite
                .stakpak(&["autopilot", "schedule", "list", "--json"])
                .code
                == Some(0)
    });
    let list = json(&suite, &["autopilot", "schedule", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["denied", "nightly", "quiet", "wake"]);
    assert!(outcomes(&suite, "wake").len() >= before);
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let double = LlmDouble::start(vec![]);
    let suite = suite(&double);
    // In order: each add sees the schedules the ones before it made (`wake` is there from
    // the start). `Ok` is accepted; `Err` is refused with a reason that says so.
    /// Name, cron, further arguments, and whether it is accepted or why it is refused.
    type Case = (
        &'static str,
        &'static str,
        &'static [&'static str],
        Result<(), &'static str>,
    );
    let cases: [Case; 8] = [
        ("x", "61 * * * *", &[], Err("invalid cron `61 * * * *`")),
        (
            "x",
            "@daily",
            &["--trigger-on", "often"],
            Err("trigger_on `often` is not one of"),
        ),
        (
            "x",
            "@daily",
            &["--timezone", "Mars/Base"],
            Err("unknown time zone `Mars/Base`"),
        ),
        (
            "wake",
            "@daily",
            &[],
            Err("a schedule named `wake` already exists"),
        ),
        (
            "x",
            "@every 0s",
            &[],
            Err("invalid `@every 0s`: the interval must be from 1s to 366d"),
        ),
        ("every", "@every 90m", &[], Ok(())),
        ("x", "@daily", &[], Ok(())),
        (
            "x",
            "@daily",
            &[],
            Err("a schedule named `x` already exists"),
        ),
    ];
    for (name, cron, extra, expected) in cases {
        let out = suite.add_schedule(name, cron, "p", extra);
        let ok = out.code == Some(0);
        match expected {
            Ok(()) => assert!(ok, "{name} {cron} {extra:?}: {}", out.stderr),
            Err(reason) => assert!(
                !ok && out.stderr.contains(reason),
                "{name} {cron} {extra:?}: {}",
                out.stderr
            ),
        }
    }
    let out = suite.stakpak(&["autopilot", "schedule", "remove", "nope"]);
    assert!(out.stderr.clone().contains("no schedule named `nope`"));
}

#[test]
fn a_due_time_missed_while_down_is_caught_up_once_or_recorded_missed() {
    let autopilot = r#"
[[schedules]]
name = "catchup"
cron = "*/2 * * * * *"
check = "exit 0"
catch_up = true
prompt = "CATCHUP-PROMPT"

[[schedules]]
name = "nocatchup"
cron = "*/2 * * * * *"
check = "exit 0"
prompt = "NOCATCHUP-PROMPT"
"#;
    let double = LlmDouble::start(vec![]);
    let config = format!(
        "[profiles.default]\nmodel = \"double/test-model\"\n\
         [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
        double.base_url()
    );
    let suite = EmbeddedSuite::builder()
        .config_file("config.toml", &config)
        .config_file("autopilot.toml", autopilot)
        .start();
    wait_for("a first run of each", || {
        !outcomes(&suite, "catchup").is_empty() && !outcomes(&suite, "nocatchup").is_empty()
    });
    assert_eq!(suite.down().code, Some(0));
    // Down across at least two due times.
    std::thread::sleep(Duration::from_secs(5));
    let again = suite.stakpak(&["up"]);
    assert_eq!(again.code, Some(0), "{again:?}");

    let triggers = |name: &str| -> Vec<(String, String)> {
        history(&suite, name)
            .iter()
            .map(|r| {
                (
                    r["trigger"].as_str().unwrap().to_string(),
                    r["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    wait_for("the catch-up run to end", || {
        triggers("catchup")
            .iter()
            .any(|(t, o)| t == "catch-up" && o != "running")
    });
    let runs = history(&suite, "catchup");
    let catch_up = runs.iter().find(|r| r["trigger"] == "catch-up").unwrap();
    assert_eq!(catch_up["outcome"], "skipped-by-check", "{catch_up}");
    let caught: Vec<_> = triggers("catchup")
        .into_iter()
        .filter(|(t, _)| t == "catch-up")
        .collect();
    assert_eq!(caught.len(), 1, "{caught:?}");
    assert!(!triggers("catchup").iter().any(|(_, o)| o == "missed"));
    let missed: Vec<_> = triggers("nocatchup")
        .into_iter()
        .filter(|(_, o)| o == "missed")
        .collect();
    assert_eq!(missed, [("schedule".to_string(), "missed".to_string())]);
    assert!(!triggers("nocatchup").iter().any(|(t, _)| t == "catch-up"));
}
