//! The console end to end: the real `stakpak` TUI in a real terminal (tmux: send-keys to
//! type, capture-pane to read the screen) against the embedded suite and the LLM double.
//! A prompt streams an answer, two of three pending calls are approved with Space and
//! Enter and the third is rejected; a session started by `stakpak run` in another process
//! is attached to, shows its history and then its live events, and so is one started by a
//! schedule; a stream is seen while it is still coming; the console says when the suite is
//! down and how to start it, follows it down and up, survives resizes and ends on SIGTERM.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::json;
use stakpak_testkit::{EmbeddedSuite, LlmDouble, Turn, bin, random_string, wait_until};

/// How long the screen may take to show what a step expects.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);

/// A tmux server of its own (its own socket, no configuration file) running one program in
/// one window; killed on drop.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    /// Every screen read, for checks over the whole run.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Tmux {
    /// Runs `program` with `args` in a new window of `size` (columns, rows); after it exits
    /// the pane prints `EXITED <status>` and stays, so the test can read how it ended.
    fn start(program: &Path, args: &[&str], cwd: &Path, size: (u16, u16)) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let quoted: Vec<String> = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| (*a).to_string()))
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let script = format!(
            "env -u STAKPAK_BUS_ADDRESS -u STAKPAK_STATE_DIR -u STAKPAK_CONFIG_DIR {}; echo EXITED $?; sleep 600",
            quoted.join(" ")
        );
        let tmux = Tmux {
            socket,
            _dir: dir,
            seen: std::cell::RefCell::default(),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "main", "-x"])
            .arg(size.0.to_string())
            .arg("-y")
            .arg(size.1.to_string())
            .arg("-c")
            .arg(cwd)
            .arg(script)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        // -u: the screen is UTF-8 whatever the locale of the machine running the test.
        cmd.arg("-u")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null");
        cmd.env("TERM", "xterm-256color");
        cmd
    }

    /// Presses keys by their tmux names (`Enter`, `Space`, `Down`, `C-c`, …).
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let status = self
                .command()
                .args(["send-keys", "-t", "main", key])
                .status()
                .unwrap();
            assert!(status.success());
            // A lone escape byte must not merge with the next key into Alt+key.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "main", "-l", text])
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Resizes the window, as a terminal emulator's window being dragged would.
    fn resize(&self, columns: u16, rows: u16) {
        let status = self
            .command()
            .args(["resize-window", "-t", "main", "-x"])
            .arg(columns.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        self.seen.borrow_mut().push(screen.clone());
        screen
    }

    /// The pid of the shell running in the pane.
    fn pane_pid(&self) -> u32 {
        let out = self
            .command()
            .args(["display-message", "-p", "-t", "main", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// Whether any screen read so far showed `text`.
    fn ever_showed(&self, text: &str) -> bool {
        self.seen.borrow().iter().any(|s| s.contains(text))
    }

    /// Waits until the screen shows every one of `needles`; returns that screen.
    fn wait_for(&self, needles: &[&str]) -> String {
        self.wait_until(&format!("{needles:?}"), |screen| {
            needles.iter().all(|n| screen.contains(n))
        })
    }

    /// Waits until `check` holds for the screen; returns that screen.
    fn wait_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let found = wait_until(SCREEN_TIMEOUT, || {
            let screen = self.screen();
            check(&screen).then_some(screen)
        });
        found.unwrap_or_else(|| {
            panic!(
                "the screen never showed {what}; it shows:\n{}",
                self.screen()
            )
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// A suite whose default profile talks to `double` (OpenAI wire format) and runs `uname`
/// and `printf` without asking.
fn suite_for(double: &LlmDouble) -> EmbeddedSuite {
    let config = format!(
        "[profiles.default]\nmodel = \"double/test-model\"\nmax_turns = 12\n\
         auto_approve = [\"run_command::uname\", \"run_command::printf\"]\n\
         [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
        double.base_url()
    );
    EmbeddedSuite::builder()
        .config_file("config.toml", &config)
        .start()
}

/// The console on `suite`, in tmux, in a terminal of `size` (columns, rows).
fn console(suite: &EmbeddedSuite, size: (u16, u16)) -> Tmux {
    let state = suite.state_dir.display().to_string();
    let config = suite.config_dir.display().to_string();
    Tmux::start(
        &bin("stakpak"),
        &["--state-dir", &state, "--config-dir", &config],
        suite.dir.path(),
        size,
    )
}

fn sessions(suite: &EmbeddedSuite) -> Vec<serde_json::Value> {
    let out = suite.stakpak(&["sessions", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn only_session(suite: &EmbeddedSuite) -> String {
    let list = sessions(suite);
    assert_eq!(list.len(), 1, "{list:#?}");
    list[0]["id"].as_str().unwrap().to_string()
}

fn calls(suite: &EmbeddedSuite, id: &str) -> Vec<(String, String)> {
    let out = suite.stakpak(&["sessions", "show", id, "--json"]);
    let detail: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    detail["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["arguments"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Ctrl+C twice: the console exits 0 and leaves the terminal to the shell.
fn quit(tmux: &Tmux) {
    tmux.keys(&["C-c", "C-c"]);
    tmux.wait_for(&["EXITED 0"]);
}

#[test]
fn a_prompt_streams_an_answer_and_two_of_three_calls_are_approved() {
    let script = vec![
        Turn::tools(vec![
            ("run_command", json!({"command": "echo first > one.txt"})),
            ("run_command", json!({"command": "echo second > two.txt"})),
            ("run_command", json!({"command": "echo third > three.txt"})),
        ])
        .with_text("I will write **three** files.")
        .expecting("write three files"),
        Turn::text("## Report\n\n- `one.txt` and `three.txt` written\n- `two.txt` was rejected\n")
            .in_chunks(6)
            .expecting("status: exited 0")
            .expecting("rejected"),
        // A second prompt: the answer starts streaming and then stalls, so what the screen
        // shows can only have come from the stream.
        Turn::stall("Looking through the logs now").expecting("and the logs?"),
    ];
    let double = LlmDouble::start(script);
    let suite = suite_for(&double);
    // Tall enough that the three cards and the report fit on one screen.
    let tmux = console(&suite, (100, 50));
    tmux.wait_for(&["Type a prompt and press Enter", "● suite up"]);

    tmux.type_text("write three files");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&[
        "I will write three files.",
        "3 call(s) wait for approval · 3 ticked",
        "[x] $ echo third > three.txt",
    ]);
    assert!(screen.contains("› write three files"), "{screen}");
    let id = only_session(&suite);
    assert!(screen.contains(&id), "{screen}");

    // Down to the second call, untick it, confirm the lot.
    tmux.keys(&["Down", "Space"]);
    tmux.wait_for(&[
        "› [ ] $ echo second > two.txt",
        "3 call(s) wait for approval · 2 ticked",
    ]);
    tmux.keys(&["Enter"]);

    let screen = tmux.wait_for(&["Report", "two.txt was rejected", "✓ finished"]);
    // Each card with its result: two done, the unticked one rejected.
    assert!(screen.contains("╭ run_command · rejected"), "{screen}");
    assert!(
        screen.contains("rejected: rejected by the operator"),
        "{screen}"
    );
    assert_eq!(
        screen.matches("╭ run_command · done").count(),
        2,
        "{screen}"
    );
    assert!(!screen.contains("wait for approval"), "{screen}");
    assert_eq!(
        calls(&suite, &id),
        [
            ("{\"command\":\"echo first > one.txt\"}", "done"),
            ("{\"command\":\"echo second > two.txt\"}", "rejected"),
            ("{\"command\":\"echo third > three.txt\"}", "done"),
        ]
        .map(|(a, s)| (a.to_string(), s.to_string()))
    );
    let ws = suite.workspace(&id);
    assert_eq!(
        std::fs::read_to_string(ws.join("one.txt")).unwrap(),
        "first\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("three.txt")).unwrap(),
        "third\n"
    );
    assert!(!ws.join("two.txt").exists());

    // More of the same session; the answer shows while it streams.
    tmux.type_text("and the logs?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&["Looking through the logs now▌", "running"]);
    assert!(screen.contains("› and the logs?"), "{screen}");
    tmux.type_text("/cancel");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["✗ cancelled"]);
    quit(&tmux);
    assert_eq!(double.remaining(), 0);
}

#[test]
fn attaching_to_a_session_started_by_stakpak_run_shows_its_history_and_live_events() {
    let script = vec![
        Turn::tools(vec![
            ("run_command", json!({"command": "uname -s"})),
            (
                "run_command",
                json!({"command": "printf 'token=%s\\n' '{{secret:TUI_CANARY}}'"}),
            ),
        ])
        .with_text("First the kernel.")
        .expecting("check the attach flow"),
        Turn::tools(vec![(
            "run_command",
            json!({"command": "echo attached > a.txt"}),
        )])
        .with_text("Now a file.")
        .expecting("Linux"),
        Turn::text("Attached and **finished**.")
            .in_chunks(4)
            .expecting("status: exited 0"),
    ];
    let double = LlmDouble::start(script);
    let suite = suite_for(&double);
    let canary = format!(
        "tui{}",
        random_string(b"abcdefghijkmnopqrstuvwxyz23456789", 24)
    );
    suite.set_secret("TUI_CANARY", &canary);

    // Another terminal: `stakpak run`, following its session until it ends.
    let mut run = suite
        .stakpak_command(&["run", "check the attach flow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr is read to the end (a closed pipe would end it), the session id first.
    let stderr = BufReader::new(run.stderr.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let id = loop {
        let line = lines
            .recv_timeout(SCREEN_TIMEOUT)
            .expect("stakpak run names its session");
        if let Some(rest) = line.strip_prefix("session ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(id.starts_with("s-"), "no session id from stakpak run");
    let waiting = wait_until(SCREEN_TIMEOUT, || {
        sessions(&suite)
            .iter()
            .any(|s| s["id"] == id && s["state"] == "waiting-approval")
            .then_some(())
    });
    assert!(waiting.is_some(), "{:#?}", sessions(&suite));

    let tmux = console(&suite, (100, 50));
    tmux.wait_for(&["● suite up"]);
    tmux.type_text("/sessions");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["sessions · Enter attaches", &id, "waiting-approval"]);
    tmux.keys(&["Enter"]);
    // The history: the prompt, the first turn's text and its finished call with output.
    let screen = tmux.wait_for(&[
        "› check the attach flow",
        "First the kernel.",
        "$ uname -s",
        "Linux",
        // The command's output as sandboxd redacted it: the placeholder, not the value.
        "token={{secret:TUI_CANARY}}",
        "Now a file.",
        "[x] $ echo attached > a.txt",
    ]);
    assert!(
        screen.contains(&format!("{id} · waiting-approval")),
        "{screen}"
    );

    // Approved here; the rest arrives live, in both terminals.
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Attached and finished.", "✓ finished"]);
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // (Its own terminal may break the last line where a delta met the session's end.)
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .replace('\n', "")
            .contains("Attached and **finished**."),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(suite.workspace(&id).join("a.txt")).unwrap(),
        "attached\n"
    );

    // /new detaches; /resume ID attaches again, from the history alone.
    tmux.type_text("/new");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Type a prompt and press Enter"]);
    tmux.type_text(&format!("/resume {id}"));
    tmux.keys(&["Enter"]);
    tmux.wait_for(&[
        "Attached and finished.",
        "✓ finished",
        &format!("attached to session {id}"),
    ]);
    quit(&tmux);
    assert!(!tmux.ever_showed(&canary), "a screen showed the secret");
}

#[test]
fn the_console_says_when_the_suite_is_down_and_connects_once_it_runs() {
    let double = LlmDouble::start(vec![]);
    let suite = suite_for(&double);
    let down = suite.down();
    assert_eq!(down.code, Some(0), "{down:?}");

    let tmux = console(&suite, (80, 24));
    tmux.wait_for(&[
        "The stakpak suite is not running.",
        "Start it with `stakpak up`",
        "● suite down",
    ]);
    let up = suite.stakpak(&["up"]);
    assert_eq!(up.code, Some(0), "{up:?}");
    tmux.wait_for(&["● suite up", "Type a prompt and press Enter"]);

    // The side panel shows the five daemons by their Status().
    tmux.keys(&["F2"]);
    let screen = tmux.wait_for(&["Suite", "secretd", "warden", "sandboxd", "agent", "schedd"]);
    assert_eq!(screen.matches("● ").count() - 1, 5, "{screen}");
    assert!(screen.contains("│ Ask the agent, or /help"), "{screen}");

    // Resized: narrower (the panel takes the body), too small (a notice), and back.
    tmux.resize(60, 20);
    let screen = tmux.wait_until("the panel across the body", |screen| {
        screen.lines().any(|r| r.starts_with("│ ● secretd")) && screen.contains("Ask the agent")
    });
    let rows: Vec<&str> = screen.lines().collect();
    assert!(rows[0].starts_with(" stakpak "), "{screen}");
    assert!(rows.iter().all(|r| r.chars().count() <= 60), "{screen}");
    tmux.resize(30, 8);
    tmux.wait_for(&["stakpak needs 40x10"]);
    tmux.resize(80, 24);
    tmux.keys(&["F2"]);
    tmux.wait_for(&["Type a prompt and press Enter", "● suite up"]);

    // Stopped under it, started again: it follows.
    let down = suite.down();
    assert_eq!(down.code, Some(0), "{down:?}");
    tmux.wait_for(&["● suite down", "Start it with `stakpak up`"]);
    let up = suite.stakpak(&["up"]);
    assert_eq!(up.code, Some(0), "{up:?}");
    tmux.wait_for(&["● suite up", "Type a prompt and press Enter"]);

    // SIGTERM ends it cleanly: exit 0, the shell's screen back.
    let shell: u32 = tmux.pane_pid();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let console: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(console).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let screen = tmux.wait_for(&["EXITED 0"]);
    assert!(!screen.contains("● suite"), "{screen}");
}

#[test]
fn a_session_started_by_a_schedule_is_attached_to_and_approved_from_the_console() {
    let script = vec![
        Turn::tools(vec![(
            "run_command",
            json!({"command": "echo scheduled > s.txt"}),
        )])
        .with_text("The nightly check writes its mark.")
        .expecting("NIGHTLY mark the run"),
        Turn::text("Nightly check done.").expecting("status: exited 0"),
    ];
    let double = LlmDouble::start(script);
    let suite = suite_for(&double);
    let add = suite.add_schedule("nightly", "@yearly", "NIGHTLY mark the run", &[]);
    assert_eq!(add.code, Some(0), "{add:?}");
    let trigger = suite.stakpak(&["autopilot", "schedule", "trigger", "nightly"]);
    assert_eq!(trigger.code, Some(0), "{trigger:?}");
    let waiting = wait_until(SCREEN_TIMEOUT, || {
        sessions(&suite)
            .first()
            .filter(|s| s["pending"] == 1)
            .map(|s| s["id"].as_str().unwrap().to_string())
    });
    let id = waiting.unwrap_or_else(|| panic!("{:#?}", sessions(&suite)));

    // /resume without an id attaches to the newest session: the schedule's.
    let tmux = console(&suite, (100, 40));
    tmux.wait_for(&["● suite up"]);
    tmux.type_text("/resume");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&[
        "NIGHTLY mark the run",
        "The nightly check writes its mark.",
        "[x] $ echo scheduled > s.txt",
        &format!("attached to session {id}"),
    ]);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Nightly check done.", "✓ finished"]);
    assert_eq!(
        std::fs::read_to_string(suite.workspace(&id).join("s.txt")).unwrap(),
        "scheduled\n"
    );
    quit(&tmux);
}
