//! Frame times of the console with a 10,000-line tool output in the chat.
//!
//! ```text
//! cargo bench -p stakpak --bench tui_frames      # or scripts/bench-tui.sh
//! FRAMES=500 WIDTH=200 HEIGHT=60 cargo bench -p stakpak --bench tui_frames
//! ```
//!
//! Each frame is the whole of what the console does per redraw: the layout, the chat's rows
//! (wrapping what changed), the widgets, the diff against the previous frame and its escape
//! sequences, written through crossterm into a byte counter instead of a terminal. Scenarios:
//! the output collapsed (the usual case); expanded, the first frame (all 10,000 lines
//! wrapped) and then paging through it; streaming text arriving under the expanded card;
//! and a resize every frame (everything wrapped again each time).
//!
//! Target (issue 9): under 16 ms per frame.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    cell::Cell,
    io::Write,
    rc::Rc,
    time::{Duration, Instant},
};

use ratatui::{
    Terminal, TerminalOptions, Viewport,
    backend::CrosstermBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    layout::Rect,
};
use stakpak::tui::{App, client::Event, ui};
use stakpak_proto::{
    Decision, MessageInfo, Role, SessionDetail, SessionInfo, SessionState, ToolCallInfo,
    ToolCallState,
};

/// Counts what would go to the terminal.
#[derive(Default, Clone)]
struct Counter(Rc<Cell<usize>>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.set(self.0.get() + buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn env(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SESSION: &str = "s-bench0000000";

/// A console attached to a finished session whose one tool call printed 10,000 lines.
fn app() -> App {
    let output: String = (0..10_000)
        .map(|i| {
            format!(
                "2026-11-27T06:{:02}:{:02}Z web[{i}]: GET /api/items/{i} 200 {} ms upstream=10.0.0.{}:8080\n",
                i / 60 % 60,
                i % 60,
                i % 97,
                i % 250
            )
        })
        .collect();
    let call = ToolCallInfo {
        id: "c1".into(),
        session: SESSION.into(),
        name: "run_command".into(),
        arguments: r#"{"command":"journalctl -u web -n 10000"}"#.into(),
        state: ToolCallState::Done,
        decision: Decision::Allow.into(),
        output,
        ..ToolCallInfo::default()
    };
    let mut app = App::new(String::new(), String::new(), vec![]);
    app.take_requests();
    app.apply(Event::Connected("bench".into()));
    app.apply(Event::Detail {
        detail: Box::new(SessionDetail {
            info: SessionInfo {
                id: SESSION.into(),
                state: SessionState::Running,
                ..SessionInfo::default()
            },
            messages: vec![
                MessageInfo {
                    role: Role::User,
                    text: "why is web slow?".into(),
                    ..MessageInfo::default()
                },
                MessageInfo {
                    role: Role::Assistant,
                    text: "Reading the **last 10,000** lines of its log.".into(),
                    tool_calls: vec!["c1".into()],
                    ..MessageInfo::default()
                },
            ],
            tool_calls: vec![call],
        }),
        attach: true,
    });
    app.take_requests();
    app
}

fn terminal(counter: &Counter, width: u16, height: u16) -> Terminal<CrosstermBackend<Counter>> {
    Terminal::with_options(
        CrosstermBackend::new(counter.clone()),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, width, height)),
        },
    )
    .unwrap()
}

struct Stats {
    times: Vec<Duration>,
    bytes: usize,
}

fn frames(
    name: &str,
    count: u32,
    width: u16,
    height: u16,
    app: &mut App,
    mut before: impl FnMut(&mut App, &mut Terminal<CrosstermBackend<Counter>>, u32),
) -> Stats {
    let counter = Counter::default();
    let mut term = terminal(&counter, width, height);
    let mut times = Vec::with_capacity(count as usize);
    for i in 0..count {
        before(app, &mut term, i);
        let start = Instant::now();
        term.draw(|f| ui::draw(f, app)).unwrap();
        times.push(start.elapsed());
    }
    let bytes = counter.0.get();
    let stats = Stats { times, bytes };
    report(name, &stats, count);
    stats
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, stats: &Stats, count: u32) {
    let mut sorted = stats.times.clone();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let mean = sorted.iter().sum::<Duration>() / count.max(1);
    let max = sorted.last().copied().unwrap_or_default();
    println!(
        "{name:<34} {count:>5} frames  mean {:>7.3} ms  p50 {:>7.3}  p99 {:>7.3}  max {:>7.3}  {:>6} B/frame  {}",
        ms(mean),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(max),
        stats.bytes / count.max(1) as usize,
        if max < Duration::from_millis(16) {
            "ok (< 16 ms)"
        } else {
            "OVER 16 ms"
        }
    );
}

fn key(app: &mut App, code: KeyCode, modifiers: KeyModifiers) {
    app.key(KeyEvent::new(code, modifiers));
}

fn main() {
    let count = env("FRAMES", 300);
    let width = u16::try_from(env("WIDTH", 120)).unwrap();
    let height = u16::try_from(env("HEIGHT", 40)).unwrap();
    println!("console frames at {width}x{height} with a 10,000-line tool output");

    let mut app = app();
    frames(
        "collapsed, idle",
        count,
        width,
        height,
        &mut app,
        |_, _, _| {},
    );
    // Expand the card: the first frame wraps all 10,000 lines.
    key(&mut app, KeyCode::Char('o'), KeyModifiers::CONTROL);
    frames(
        "expanded, first frame",
        1,
        width,
        height,
        &mut app,
        |_, _, _| {},
    );
    frames(
        "expanded, paging down through it",
        count,
        width,
        height,
        &mut app,
        |app, _, _| key(app, KeyCode::PageDown, KeyModifiers::NONE),
    );
    key(&mut app, KeyCode::Esc, KeyModifiers::NONE);
    frames(
        "expanded, text streaming in",
        count,
        width,
        height,
        &mut app,
        |app, _, i| {
            app.apply(Event::Delta {
                session: SESSION.into(),
                text: format!("The p99 latency rises at line {i}; "),
            })
        },
    );
    frames(
        "expanded, resized every frame",
        count.min(50),
        width,
        height,
        &mut app,
        |_, term, i| {
            let w = width - u16::try_from(i % 2).unwrap();
            term.resize(Rect::new(0, 0, w, height)).unwrap();
        },
    );
    let mut small = self::app();
    key(&mut small, KeyCode::Char('o'), KeyModifiers::CONTROL);
    frames(
        "80x24, expanded, first frame",
        1,
        80,
        24,
        &mut small,
        |_, _, _| {},
    );
    frames(
        "80x24, expanded, paging down",
        count,
        80,
        24,
        &mut small,
        |app, _, _| key(app, KeyCode::PageDown, KeyModifiers::NONE),
    );
}
