//! The console drawn into ratatui's `TestBackend` and compared, screen by screen, with the
//! text in `snapshots/` (`STAKPAK_UPDATE_SNAPSHOTS=1` rewrites them; review the diff), and
//! the console's behaviour: approvals, commands, quitting, history and live events.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};
use stakpak_proto::{
    ChangeInfo, ChangeKind, DaemonState, Decision, ExecStatus, MessageInfo, SessionDetail,
    SessionInfo, SessionState, StartRequest, TaskInfo, ToolCallInfo,
};
use stakpak_secrets::detect::{DetectOptions, Detector};

use super::{
    app::{App, Focus, Popup, ProfileEntry, Suite},
    client::{DaemonRow, Event, Purpose, Request},
    ui,
};

const SESSION: &str = "s-0a1b2c3d4e5f";

fn info(state: &str) -> SessionInfo {
    SessionInfo {
        id: SESSION.into(),
        title: "why is the disk full?".into(),
        profile: "default".into(),
        model: "anthropic/claude-sonnet-4-5".into(),
        state: state.parse().unwrap(),
        turns: 2,
        input_tokens: 12_400,
        output_tokens: 860,
        ..SessionInfo::default()
    }
}

/// A message; `calls` comma-separated.
fn message(role: &str, text: &str, calls: &str) -> MessageInfo {
    MessageInfo {
        role: role.parse().unwrap(),
        text: text.into(),
        tool_calls: calls
            .split(',')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
        created_ms: 0,
    }
}

fn call(id: &str, name: &str, arguments: serde_json::Value, state: &str) -> ToolCallInfo {
    ToolCallInfo {
        id: id.into(),
        session: SESSION.into(),
        turn: 1,
        name: name.into(),
        arguments: arguments.to_string(),
        state: state.parse().unwrap(),
        ..ToolCallInfo::default()
    }
}

fn command(id: &str, command: &str, state: &str) -> ToolCallInfo {
    call(
        id,
        "run_command",
        serde_json::json!({ "command": command }),
        state,
    )
}

/// `call` as the warden judged it.
fn judged(call: ToolCallInfo, decision: &str, rule: &str, reason: &str) -> ToolCallInfo {
    ToolCallInfo {
        decision: decision.parse().unwrap(),
        rule: rule.into(),
        reason: reason.into(),
        ..call
    }
}

fn daemons() -> Vec<DaemonRow> {
    ["secretd", "warden", "sandboxd", "agent", "schedd"]
        .iter()
        .enumerate()
        .map(|(i, name)| DaemonRow {
            name: (*name).into(),
            state: (*name != "schedd").then_some(DaemonState::Running),
            detail: if *name == "schedd" {
                "not on the bus".into()
            } else {
                format!("pid {} · up 2h 5m", 4100 + i)
            },
        })
        .collect()
}

/// A console connected to a suite, with nothing queued.
fn connected() -> App {
    let mut app = App::new(
        String::new(),
        String::new(),
        vec![
            ProfileEntry {
                name: "default".into(),
                model: "anthropic/claude-sonnet-4-5".into(),
            },
            ProfileEntry {
                name: "local".into(),
                model: "ollama/qwen3:32b".into(),
            },
        ],
    );
    assert_eq!(app.take_requests(), [Request::Connect]);
    app.apply(Event::Connected(
        "embedded suite in /run/user/1000/stakpak".into(),
    ));
    app.apply(Event::Daemons(daemons()));
    assert_eq!(app.take_requests(), [Request::Daemons]);
    app
}

/// `app` attached to a session with this history.
fn attached(app: &mut App, state: &str, messages: Vec<MessageInfo>, calls: Vec<ToolCallInfo>) {
    app.attach(SESSION);
    assert_eq!(app.take_requests(), [Request::Attach(SESSION.into())]);
    app.apply(Event::Detail {
        detail: Box::new(SessionDetail {
            info: info(state),
            messages,
            tool_calls: calls,
        }),
        attach: true,
    });
    app.notice = None;
}

/// A console attached to a running session that has just been given `prompt`.
fn asked(prompt: &str) -> App {
    let mut app = connected();
    attached(
        &mut app,
        "running",
        vec![message("user", prompt, "")],
        vec![],
    );
    app
}

fn key(app: &mut App, code: KeyCode) {
    app.key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// The screen as text, one string a row, trailing blanks cut.
fn screen(app: &mut App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let row: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
            row.trim_end().to_string()
        })
        .collect()
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tui/snapshots")
}

/// Compares a screen with `snapshots/<name>.txt`, whole.
fn assert_snapshot(name: &str, rows: &[String]) {
    let path = snapshot_dir().join(format!("{name}.txt"));
    let actual = format!("{}\n", rows.join("\n"));
    if std::env::var_os("STAKPAK_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (STAKPAK_UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "the screen differs from {}:\n{actual}",
        path.display()
    );
}

fn delta(app: &mut App, session: &str, text: &str) {
    app.apply(Event::Delta {
        session: session.into(),
        text: text.into(),
    });
}

fn has_row(rows: &[String], needle: &str) -> bool {
    rows.iter().any(|r| r.contains(needle))
}

#[test]
fn chat_view_with_a_streamed_answer() {
    let mut app = asked("why is the disk full?");
    for text in [
        "## Disk usage\n\nThe disk on `/` is **92%** full. The largest folders:\n\n",
        "- `/var/log`: 14 GiB of rotated logs\n- `/var/lib/docker`: 9 GiB\n\n",
        "Clean the journal:\n\n```bash\njournalctl --vacuum-size=500M # keeps 500 MB\n",
    ] {
        delta(&mut app, SESSION, text);
    }
    // A delta for another session is not this chat's.
    delta(&mut app, "s-other", "not shown");
    let rows = screen(&mut app, 80, 24);
    assert!(!has_row(&rows, "not shown"));
    assert!(has_row(&rows, " Disk usage"));
    assert!(has_row(&rows, " • /var/log: 14 GiB of rotated logs"));
    assert!(has_row(
        &rows,
        " │ journalctl --vacuum-size=500M # keeps 500 MB▌"
    ));
    assert_snapshot("chat_streamed", &rows);
}

#[test]
fn the_stored_history_takes_over_from_the_streamed_text() {
    let mut app = asked("check the disk");
    delta(&mut app, SESSION, "Looking at ");
    delta(&mut app, SESSION, "the disk.");
    app.apply(Event::Call(Box::new(command("c1", "df -h /", "running"))));
    let session = app.session.as_ref().unwrap();
    assert_eq!(session.live.len(), 1);
    assert_eq!(session.live[0].text, "Looking at the disk.");
    assert_eq!(session.live[0].calls, ["c1"]);
    // The turn is stored: the live part goes, nothing is shown twice.
    app.apply(Event::Changed(Box::new(info("finished"))));
    assert_eq!(app.take_requests(), [Request::Resync(SESSION.into())]);
    app.apply(Event::Detail {
        detail: Box::new(SessionDetail {
            info: info("finished"),
            messages: vec![
                message("user", "check the disk", ""),
                message("assistant", "Looking at the disk.", "c1"),
                message("tool", "Filesystem ...", "c1"),
                message("assistant", "It is fine.", ""),
            ],
            tool_calls: vec![ToolCallInfo {
                output: "Filesystem Size Used\n/dev/sda1 40G 12G".into(),
                ..command("c1", "df -h /", "done")
            }],
        }),
        attach: false,
    });
    assert!(app.session.as_ref().unwrap().live.is_empty());
    let rows = screen(&mut app, 80, 24);
    let once = |needle: &str| rows.iter().filter(|r| r.contains(needle)).count();
    assert_eq!(once("Looking at the disk."), 1, "{rows:#?}");
    assert_eq!(once("$ df -h /"), 1, "{rows:#?}");
    assert!(has_row(&rows, "✓ finished · 2 turns · 13260 tokens"));
}

#[test]
fn scrolled_up_the_view_stays_while_text_streams_in() {
    let mut app = asked("tell me a story");
    for i in 0..40 {
        delta(&mut app, SESSION, &format!("line {i}\n\n"));
    }
    screen(&mut app, 80, 24);
    key(&mut app, KeyCode::PageUp);
    let before = screen(&mut app, 80, 24);
    assert!(has_row(&before, " line 23"), "{before:#?}");
    delta(&mut app, SESSION, "line 40\n\nline 41\n\n");
    assert_eq!(screen(&mut app, 80, 24)[1..12], before[1..12]);
    // Esc returns to the end, which follows again.
    key(&mut app, KeyCode::Esc);
    assert!(has_row(&screen(&mut app, 80, 24), "line 41"));
}

#[test]
fn attaching_to_another_session_never_shows_the_first_ones_rows() {
    let mut app = asked("first");
    app.apply(Event::Detail {
        detail: Box::new(SessionDetail {
            info: info("finished"),
            messages: vec![message("assistant", "answer AAAA", "")],
            tool_calls: vec![],
        }),
        attach: false,
    });
    assert!(has_row(&screen(&mut app, 80, 24), "answer AAAA"));
    // Another session whose message has the same place and length.
    app.attach("s-other");
    app.apply(Event::Detail {
        detail: Box::new(SessionDetail {
            info: SessionInfo {
                id: "s-other".into(),
                state: SessionState::Finished,
                ..SessionInfo::default()
            },
            messages: vec![message("assistant", "answer BBBB", "")],
            tool_calls: vec![],
        }),
        attach: true,
    });
    let rows = screen(&mut app, 80, 24);
    assert!(has_row(&rows, "answer BBBB"), "{rows:#?}");
    assert!(!has_row(&rows, "answer AAAA"), "{rows:#?}");
}

#[test]
fn a_tool_card_with_a_denial() {
    let mut app = connected();
    let denied = ToolCallInfo {
        output: "refused by the warden (deny, rule fs.rm-root): deletes the root filesystem".into(),
        is_error: true,
        ..judged(
            command("c2", "rm -rf /", "denied"),
            "deny",
            "fs.rm-root",
            "deletes the root filesystem",
        )
    };
    let long = ToolCallInfo {
        decision: Decision::Allow.into(),
        output: (1..=40)
            .map(|i| format!("/var/log/app.log.{i} 350M"))
            .collect::<Vec<_>>()
            .join("\n"),
        ..command("c1", "du -sh /var/log/*", "done")
    };
    attached(
        &mut app,
        "running",
        vec![
            message("user", "free some space", ""),
            message("assistant", "", "c1"),
            message("assistant", "Removing everything is quickest.", "c2"),
        ],
        vec![long, denied],
    );
    let rows = screen(&mut app, 80, 24);
    assert!(has_row(&rows, "╭ run_command · denied"));
    assert!(has_row(&rows, "│ $ rm -rf /"));
    assert!(has_row(
        &rows,
        "│ warden deny · fs.rm-root: deletes the root filesystem"
    ));
    assert!(has_row(&rows, "│ … 35 more lines · Ctrl+O expands"));
    assert_snapshot("tool_card_denied", &rows);

    // The first card, selected and expanded, shows every line.
    app.key(KeyEvent::new(KeyCode::Up, KeyModifiers::ALT));
    app.key(KeyEvent::new(KeyCode::Up, KeyModifiers::ALT));
    assert_eq!(
        app.session.as_ref().unwrap().selected.as_deref(),
        Some("c1")
    );
    app.key(KeyEvent::new(KeyCode::Char('o'), KeyModifiers::CONTROL));
    let rows = screen(&mut app, 80, 24);
    assert!(has_row(&rows, "▶ run_command · done"), "{rows:#?}");
    assert!(has_row(&rows, "│ /var/log/app.log.15 350M"), "{rows:#?}");
    assert!(!has_row(&rows, "more lines"), "{rows:#?}");
}

#[test]
fn the_approval_bar_with_three_pending_calls() {
    let mut app = connected();
    let ask = ToolCallInfo {
        approval: "k8s.delete".into(),
        ..judged(
            command("c3", "kubectl delete pod web-0", "waiting-approval"),
            "ask",
            "k8s.delete",
            "deletes cluster resources",
        )
    };
    let calls = vec![
        ToolCallInfo {
            approval: "profile".into(),
            ..command("c1", "systemctl restart nginx", "waiting-approval")
        },
        ToolCallInfo {
            approval: "profile".into(),
            ..call(
                "c2",
                "create",
                serde_json::json!({"path": "/etc/nginx/conf.d/web.conf", "content": "x"}),
                "waiting-approval",
            )
        },
        ask,
    ];
    attached(
        &mut app,
        "waiting-approval",
        vec![
            message("user", "restart the web tier", ""),
            message("assistant", "Three steps:", "c1,c2,c3"),
        ],
        calls,
    );
    assert_eq!(app.focus, Focus::Approvals);
    // The cursor to the second call, which is unticked.
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Char(' '));
    let rows = screen(&mut app, 80, 24);
    assert!(has_row(&rows, "3 call(s) wait for approval · 2 ticked"));
    assert!(has_row(&rows, "[x] $ systemctl restart nginx"));
    assert!(has_row(&rows, "› [ ] create /etc/nginx/conf.d/web.conf"));
    assert!(has_row(
        &rows,
        "[x] $ kubectl delete pod web-0  warden ask · k8s.delete"
    ));
    assert_snapshot("approval_bar", &rows);

    // Enter: the ticked ones approved, the other rejected, in one go.
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.take_requests(),
        [Request::Decide {
            session: SESSION.into(),
            approve: vec!["c1".into(), "c3".into()],
            reject: vec!["c2".into()],
        }]
    );
    assert_eq!(app.focus, Focus::Input);
    assert!(app.pending().is_empty());
}

#[test]
fn a_call_arriving_while_the_operator_types_does_not_take_the_keys() {
    let mut app = connected();
    attached(&mut app, "running", vec![], vec![]);
    typed(&mut app, "half a sentence");
    app.apply(Event::Call(Box::new(command(
        "c1",
        "make deploy",
        "waiting-approval",
    ))));
    assert_eq!(app.focus, Focus::Input);
    typed(&mut app, " more");
    assert_eq!(app.input.text(), "half a sentence more");
    assert!(app.take_requests().is_empty());
    // Tab moves to the bar when the operator wants it.
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Focus::Approvals);
}

#[test]
fn approving_everything_never_sends_an_empty_list() {
    let mut app = connected();
    attached(
        &mut app,
        "waiting-approval",
        vec![],
        vec![command("c1", "make deploy", "waiting-approval")],
    );
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.take_requests(),
        [Request::Decide {
            session: SESSION.into(),
            approve: vec!["c1".into()],
            reject: vec![],
        }]
    );
}

fn panel_app() -> App {
    let mut app = connected();
    attached(
        &mut app,
        "finished",
        vec![
            message("user", "rotate the nginx logs", ""),
            message("assistant", "Rotated; nginx reopened its logs.", ""),
        ],
        vec![],
    );
    key(&mut app, KeyCode::F(2));
    assert_eq!(
        app.take_requests(),
        [Request::Daemons, Request::Panel(SESSION.into())]
    );
    app.apply(Event::Panel {
        session: SESSION.into(),
        tasks: vec![TaskInfo {
            id: "t-1".into(),
            session: SESSION.into(),
            command: "kubectl port-forward svc/web 8080:80".into(),
            state: ExecStatus::Running,
            ..TaskInfo::default()
        }],
        changes: vec![
            ChangeInfo {
                id: "c-aa".into(),
                session: SESSION.into(),
                kind: ChangeKind::Edit,
                path: "logrotate.conf".into(),
                ..ChangeInfo::default()
            },
            ChangeInfo {
                id: "c-bb".into(),
                session: SESSION.into(),
                kind: ChangeKind::Create,
                path: "notes.txt".into(),
                reverted_ms: 1,
                ..ChangeInfo::default()
            },
        ],
    });
    app
}

#[test]
fn the_side_panel() {
    let mut app = panel_app();
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Focus::Panel);
    let rows = screen(&mut app, 100, 30);
    assert!(has_row(&rows, "│ ● schedd   down not on the bus"));
    assert!(has_row(&rows, "│ profile default"));
    assert!(has_row(&rows, "│ finished · 2 turns"), "{rows:#?}");
    assert!(has_row(&rows, "│ tokens 12400 in / 860 out"));
    assert!(has_row(&rows, "│ cost ≈ $0.0501 at list prices"));
    assert!(
        has_row(&rows, "│ running kubectl port-forward svc/…"),
        "{rows:#?}"
    );
    assert!(has_row(&rows, "│ › edit logrotate.conf"));
    assert!(has_row(&rows, "│   create notes.txt (reverted)"));
    assert!(has_row(&rows, "● 1 daemon(s) down"));
    assert_snapshot("side_panel", &rows);

    // r reverts the selected change; a reverted one is refused here already.
    typed(&mut app, "r");
    assert_eq!(app.take_requests(), [Request::Revert("c-aa".into())]);
    key(&mut app, KeyCode::Down);
    typed(&mut app, "r");
    assert!(app.take_requests().is_empty());
    assert!(
        app.notice
            .as_ref()
            .unwrap()
            .text
            .contains("already reverted")
    );
}

#[test]
fn the_80x24_layout() {
    let mut app = connected();
    let done = ToolCallInfo {
        decision: Decision::Allow.into(),
        output: "Filesystem      Size  Used Avail Use% Mounted on\n/dev/sda1        40G   37G  3.0G  92% /".into(),
        ..command("c1", "df -h /", "done")
    };
    let waiting = ToolCallInfo {
        approval: "profile".into(),
        ..command("c2", "journalctl --vacuum-size=500M", "waiting-approval")
    };
    attached(
        &mut app,
        "waiting-approval",
        vec![
            message(
                "user",
                "the disk is almost full\n\n<project-context>\n## AGENTS.md\nx\n</project-context>",
                "",
            ),
            message("assistant", "Checking the disk first.", "c1"),
            message("assistant", "The journal takes 14 GiB; vacuuming it.", "c2"),
        ],
        vec![done, waiting],
    );
    key(&mut app, KeyCode::Esc);
    typed(&mut app, "and keep a week of logs");
    let rows = screen(&mut app, 80, 24);
    assert_eq!(rows.len(), 24);
    assert!(rows[0].starts_with(" stakpak  s-0a1b2c3d4e5f · waiting-approval"));
    assert!(rows[0].ends_with("● 1 daemon(s) down"));
    assert!(!has_row(&rows, "project-context"));
    assert!(has_row(&rows, "│ and keep a week of logs"));
    assert_snapshot("layout_80x24", &rows);

    // With the side panel: the chat keeps 44 columns, the panel 36.
    key(&mut app, KeyCode::F(2));
    app.take_requests();
    let rows = screen(&mut app, 80, 24);
    assert!(rows[1].contains("│ Suite"), "{rows:#?}");
    assert!(has_row(&rows, "│ ● sandboxd pid 4102 · up 2h 5m"));
    assert_snapshot("layout_80x24_panel", &rows);
    key(&mut app, KeyCode::F(2));

    // Resized: smaller, larger, tiny and empty terminals all draw.
    for (w, h) in [(40, 10), (120, 40), (39, 9), (1, 1), (0, 0), (300, 2)] {
        let rows = screen(&mut app, w, h);
        assert_eq!(rows.len(), usize::from(h));
        if w >= ui::MIN_WIDTH && h >= ui::MIN_HEIGHT {
            assert!(rows[0].contains("stakpak"), "{w}x{h}: {rows:#?}");
        } else if w > 20 && h > 1 {
            assert!(has_row(&rows, "stakpak needs 40x10"), "{w}x{h}: {rows:#?}");
        }
    }
}

#[test]
fn when_the_suite_is_down_it_says_how_to_start_it() {
    let mut app = App::new(String::new(), String::new(), vec![]);
    app.take_requests();
    app.apply(Event::Down(
        "no running stakpak suite found; start one with `stakpak up`".into(),
    ));
    let rows = screen(&mut app, 80, 24);
    assert!(has_row(&rows, "The stakpak suite is not running."));
    assert!(has_row(&rows, "Start it with `stakpak up`"));
    assert!(rows[0].ends_with("● suite down"));
    assert_snapshot("suite_down", &rows);
    // A prompt is kept, not lost, and the tick looks for the suite again.
    typed(&mut app, "hello");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.input.text(), "hello");
    assert!(app.take_requests().is_empty());
    app.tick();
    assert_eq!(app.take_requests(), [Request::Connect]);
    app.apply(Event::Connected("bus unix:path=/tmp/x".into()));
    assert_eq!(app.suite, Suite::Up("bus unix:path=/tmp/x".into()));
}

#[test]
fn the_shortcuts_popup() {
    let mut app = connected();
    typed(&mut app, "?");
    assert_eq!(app.popup, Some(Popup::Shortcuts));
    let rows = screen(&mut app, 80, 24);
    assert!(has_row(
        &rows,
        "│Space              tick or untick a pending call"
    ));
    assert!(has_row(&rows, "│Ctrl+C twice       quit"));
    assert_snapshot("shortcuts", &rows);
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.popup, None);
}

#[test]
fn a_prompt_starts_a_session_that_is_followed_before_it_starts() {
    let mut app = connected();
    app.workdir = "/srv/app".into();
    typed(&mut app, "check the disk");
    key(&mut app, KeyCode::Enter);
    let requests = app.take_requests();
    let [Request::StartNew(start)] = requests.as_slice() else {
        panic!("{requests:?}");
    };
    assert!(start.new_id.starts_with("s-") && start.new_id.len() == 14);
    assert_eq!(
        *start,
        StartRequest {
            prompt: "check the disk".into(),
            new_id: start.new_id.clone(),
            workdir: "/srv/app".into(),
            ..StartRequest::default()
        }
    );
    let rows = screen(&mut app, 80, 24);
    assert!(has_row(&rows, "› check the disk  (sending…)"));
    // While it runs, another prompt is refused and kept.
    typed(&mut app, "more");
    key(&mut app, KeyCode::Enter);
    assert!(app.take_requests().is_empty());
    assert_eq!(app.input.text(), "more");

    // The agent refuses it: the session that never started goes, the prompt comes back.
    app.input.clear();
    app.apply(Event::StartFailed {
        session: start.new_id.clone(),
        prompt: "check the disk".into(),
        error: "no profile nope in config.toml".into(),
    });
    assert!(app.session.is_none());
    assert_eq!(app.input.text(), "check the disk");
    assert_eq!(
        app.notice.as_ref().unwrap().text,
        "the agent did not start it: no profile nope in config.toml"
    );
}

#[test]
fn commands() {
    let mut app = connected();
    let run = |app: &mut App, line: &str| {
        app.input.clear();
        typed(app, line);
        key(app, KeyCode::Enter);
        app.take_requests()
    };
    assert_eq!(
        run(&mut app, "/sessions"),
        [Request::ListSessions(Purpose::Pick)]
    );
    app.apply(Event::Sessions(
        vec![
            SessionInfo {
                id: "s-1".into(),
                state: SessionState::Finished,
                ..SessionInfo::default()
            },
            SessionInfo {
                id: "s-2".into(),
                state: SessionState::WaitingApproval,
                title: "started by schedule disk".into(),
                ..SessionInfo::default()
            },
        ],
        Purpose::Pick,
    ));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.take_requests(), [Request::Attach("s-2".into())]);
    assert_eq!(
        run(&mut app, "/resume s-9"),
        [Request::Attach("s-9".into())]
    );
    assert_eq!(
        run(&mut app, "/resume"),
        [Request::ListSessions(Purpose::ResumeNewest)]
    );
    app.apply(Event::Sessions(
        vec![SessionInfo {
            id: "s-newest".into(),
            ..SessionInfo::default()
        }],
        Purpose::ResumeNewest,
    ));
    assert_eq!(app.take_requests(), [Request::Attach("s-newest".into())]);
    assert_eq!(run(&mut app, "/status"), [Request::Daemons]);
    assert_eq!(app.popup, Some(Popup::Status));
    key(&mut app, KeyCode::Esc);
    assert!(run(&mut app, "/model openai/gpt-5").is_empty());
    assert_eq!(app.model, "openai/gpt-5");
    assert!(run(&mut app, "/profiles").is_empty());
    assert_eq!(app.popup, Some(Popup::Profiles { cursor: 0 }));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    assert_eq!((app.profile.as_str(), app.model.as_str()), ("local", ""));
    assert_eq!(app.effective_model(), "ollama/qwen3:32b");
    assert!(run(&mut app, "/profiles nope").is_empty());
    assert!(app.notice.as_ref().unwrap().error);
    assert!(run(&mut app, "/help").is_empty());
    assert_eq!(app.popup, Some(Popup::Help));
    key(&mut app, KeyCode::Esc);
    assert!(run(&mut app, "/frobnicate").is_empty());
    assert_eq!(
        app.notice.as_ref().unwrap().text,
        "unknown command /frobnicate: /help lists them"
    );
    assert!(run(&mut app, "/new").is_empty());
    assert!(app.session.is_none());
    assert!(!app.quit);
    run(&mut app, "/quit");
    assert!(app.quit);
}

#[test]
fn ctrl_c_twice_quits() {
    let mut app = connected();
    typed(&mut app, "half a prompt");
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    app.key(ctrl_c);
    assert!(!app.quit);
    assert!(app.input.is_empty());
    // Another key in between disarms it.
    typed(&mut app, "x");
    app.key(ctrl_c);
    assert!(!app.quit);
    app.key(ctrl_c);
    assert!(app.quit);
}

#[test]
fn live_events_of_another_session_and_a_reconnect() {
    let mut app = connected();
    attached(&mut app, "running", vec![], vec![]);
    app.apply(Event::Call(Box::new(ToolCallInfo {
        session: "s-elsewhere".into(),
        ..command("x1", "true", "waiting-approval")
    })));
    assert!(app.pending().is_empty());
    app.apply(Event::Down("the connection to the suite broke".into()));
    app.apply(Event::Connected("embedded suite".into()));
    assert_eq!(
        app.take_requests(),
        [Request::Daemons, Request::Attach(SESSION.into())]
    );
}

#[test]
fn no_snapshot_holds_a_secret() {
    let detector = Detector::new(DetectOptions { privacy: false }).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(snapshot_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().count() >= 24, "{}", path.display());
        assert_eq!(detector.detect(&text), [], "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 7, "{seen} snapshots");
}
