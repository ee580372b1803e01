//! The chat as rows: the session's messages, its tool calls as cards, the streaming tail and
//! the session's state, each entry wrapped once and cached until it changes.
//!
//! An entry is rebuilt only when its fingerprint (lengths, states, flags) changes, and a
//! frame copies only the rows on screen, so a 10,000-line output costs its wrapping once
//! and then nothing per frame.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
};
use stakpak_proto::{Decision, Role, SessionInfo, SessionState, ToolCallInfo, ToolCallState};

use super::{
    markdown,
    session::Session,
    text::{Styled, sanitize, truncate, wrap, wrap_all},
};

/// Output lines a collapsed card shows.
pub const COLLAPSED_LINES: usize = 5;

/// The rows of the chat, cached per entry.
#[derive(Debug, Default)]
pub struct Transcript {
    width: u16,
    entries: Vec<Entry>,
    height: usize,
}

#[derive(Debug)]
struct Entry {
    key: String,
    fingerprint: u64,
    rows: Vec<Line<'static>>,
}

/// One thing the chat shows, borrowed from the session.
enum Item<'a> {
    Welcome,
    User {
        text: &'a str,
        pending: bool,
    },
    Assistant {
        text: &'a str,
        streaming: bool,
    },
    Card {
        call: &'a ToolCallInfo,
        expanded: bool,
        selected: bool,
    },
    State(&'a SessionInfo),
}

impl Item<'_> {
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        match self {
            Item::Welcome => 0u8.hash(&mut h),
            Item::User { text, pending } => {
                (1u8, text, pending).hash(&mut h);
            }
            // Streaming text only grows, so its length tells it apart; a stored message is
            // hashed whole (a resumed session may store another text at the same place).
            Item::Assistant {
                text,
                streaming: true,
            } => (2u8, text.len()).hash(&mut h),
            Item::Assistant {
                text,
                streaming: false,
            } => (3u8, text).hash(&mut h),
            Item::Card {
                call,
                expanded,
                selected,
            } => {
                (4u8, expanded, selected).hash(&mut h);
                (&call.state, &call.decision, &call.rule, &call.reason).hash(&mut h);
                (&call.approval, call.arguments.len(), call.output.len()).hash(&mut h);
                call.is_error.hash(&mut h);
            }
            Item::State(info) => {
                (5u8, &info.state, &info.reason, info.turns).hash(&mut h);
                (info.input_tokens, info.output_tokens).hash(&mut h);
            }
        }
        h.finish()
    }

    fn lines(&self) -> Vec<Styled> {
        match self {
            Item::Welcome => welcome(),
            Item::User { text, pending } => user(text, *pending),
            Item::Assistant { text, streaming } => assistant(text, *streaming),
            Item::Card {
                call,
                expanded,
                selected,
            } => card(call, *expanded, *selected),
            Item::State(info) => state_line(info),
        }
    }
}

impl Transcript {
    /// Brings the rows up to date with the session, rebuilding only what changed; returns
    /// how many rows were added (so a view scrolled up can stay where it is).
    pub fn update(&mut self, session: Option<&Session>, width: u16) -> usize {
        let before = self.height;
        if width != self.width {
            self.entries.clear();
            self.width = width;
        }
        // Entries of another session never share a key with this one's.
        let id = session.map(|s| s.info.id.as_str()).unwrap_or("");
        let items = items(session);
        let mut old: HashMap<String, Entry> =
            self.entries.drain(..).map(|e| (e.key.clone(), e)).collect();
        for (key, item) in items {
            let key = format!("{id}/{key}");
            let fingerprint = item.fingerprint();
            let entry = match old.remove(&key) {
                Some(e) if e.fingerprint == fingerprint => e,
                _ => {
                    let mut rows = wrap_all(&item.lines(), width);
                    rows.push(Line::default());
                    Entry {
                        key,
                        fingerprint,
                        rows,
                    }
                }
            };
            self.entries.push(entry);
        }
        self.height = self.entries.iter().map(|e| e.rows.len()).sum();
        self.height.saturating_sub(before)
    }

    /// Rows in all.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Up to `count` rows from row `start`.
    pub fn rows(&self, start: usize, count: usize) -> Vec<Line<'static>> {
        let mut out = Vec::with_capacity(count);
        let mut skip = start;
        for e in &self.entries {
            if out.len() >= count {
                break;
            }
            if skip >= e.rows.len() {
                skip -= e.rows.len();
                continue;
            }
            let take = (count - out.len()).min(e.rows.len() - skip);
            out.extend_from_slice(&e.rows[skip..skip + take]);
            skip = 0;
        }
        out
    }

    /// The first row and the row count of a tool card.
    pub fn card_rows(&self, call_id: &str) -> Option<(usize, usize)> {
        let key = format!("/{}", card_key(call_id));
        let mut at = 0;
        for e in &self.entries {
            if e.key.ends_with(&key) {
                return Some((at, e.rows.len()));
            }
            at += e.rows.len();
        }
        None
    }
}

fn card_key(id: &str) -> String {
    format!("c:{id}")
}

/// The entries in display order: stored messages with their calls, calls no stored message
/// names, the prompt on its way, the live turns, and the session's state.
fn items<'a>(session: Option<&'a Session>) -> Vec<(String, Item<'a>)> {
    let Some(s) = session else {
        return vec![("welcome".into(), Item::Welcome)];
    };
    let mut out = Vec::new();
    let mut shown: Vec<&str> = Vec::new();
    let card = |call: &'a ToolCallInfo| Item::Card {
        call,
        expanded: s.expanded.contains(&call.id),
        selected: s.selected.as_deref() == Some(call.id.as_str()),
    };
    for (i, m) in s.messages.iter().enumerate() {
        match m.role {
            Role::User => out.push((
                format!("m:{i}"),
                Item::User {
                    text: &m.text,
                    pending: false,
                },
            )),
            Role::Assistant => {
                if !m.text.trim().is_empty() {
                    out.push((
                        format!("m:{i}"),
                        Item::Assistant {
                            text: &m.text,
                            streaming: false,
                        },
                    ));
                }
                for id in m.tool_calls.iter().filter(|id| !id.is_empty()) {
                    if let Some(call) = s.call(id)
                        && !shown.contains(&id.as_str())
                    {
                        shown.push(&call.id);
                        out.push((card_key(id), card(call)));
                    }
                }
            }
            Role::Tool => {}
        }
    }
    let live: Vec<&str> = s
        .live
        .iter()
        .flat_map(|t| t.calls.iter().map(String::as_str))
        .collect();
    for call in &s.calls {
        if !shown.contains(&call.id.as_str()) && !live.contains(&call.id.as_str()) {
            shown.push(&call.id);
            out.push((card_key(&call.id), card(call)));
        }
    }
    if let Some(p) = &s.pending_prompt {
        out.push((
            "pending".into(),
            Item::User {
                text: p,
                pending: true,
            },
        ));
    }
    for (i, turn) in s.live.iter().enumerate() {
        if !turn.text.is_empty() {
            out.push((
                format!("live:{}:{i}", s.messages.len()),
                Item::Assistant {
                    text: &turn.text,
                    streaming: true,
                },
            ));
        }
        for id in &turn.calls {
            if let Some(call) = s.call(id)
                && !shown.contains(&id.as_str())
            {
                shown.push(&call.id);
                out.push((card_key(id), card(call)));
            }
        }
    }
    out.push(("state".into(), Item::State(&s.info)));
    out
}

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

fn welcome() -> Vec<Styled> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    vec![
        Styled::plain("stakpak · operator's console", bold.fg(Color::Cyan)),
        Styled::blank(),
        Styled::plain(
            "Type a prompt and press Enter to start a session.",
            Style::new(),
        ),
        Styled::plain(
            "/sessions lists every session, also those started by schedules or Slack; /resume attaches to one.",
            Style::new(),
        ),
        Styled::plain(
            "F1 or ? shows the shortcuts, /help the commands, F2 the side panel.",
            dim(),
        ),
    ]
}

/// The prompt as typed: the project context the CLI appends is not shown again.
fn user(text: &str, pending: bool) -> Vec<Styled> {
    let text = text
        .split("\n\n<project-context>")
        .next()
        .unwrap_or(text)
        .trim_end();
    let style = Style::new().fg(Color::White).add_modifier(Modifier::BOLD);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lead = if i == 0 { "› " } else { "  " };
        out.push(Styled {
            hang: 2,
            ..Styled::new(vec![
                Span::styled(lead, Style::new().fg(Color::Cyan)),
                Span::styled(sanitize(line), style),
            ])
        });
    }
    if pending && let Some(last) = out.last_mut() {
        last.spans.push(Span::styled("  (sending…)", dim()));
    }
    out
}

fn assistant(text: &str, streaming: bool) -> Vec<Styled> {
    let mut lines = markdown::render(text);
    if streaming {
        match lines.last_mut() {
            Some(last) => last
                .spans
                .push(Span::styled("▌", Style::new().fg(Color::Cyan))),
            None => lines.push(Styled::plain("▌", Style::new().fg(Color::Cyan))),
        }
    }
    lines
}

fn state_color(state: ToolCallState) -> Color {
    match state {
        ToolCallState::Done | ToolCallState::Approved => Color::Green,
        ToolCallState::Running => Color::Blue,
        ToolCallState::WaitingApproval | ToolCallState::Proposed => Color::Yellow,
        ToolCallState::Denied | ToolCallState::Rejected | ToolCallState::Failed => Color::Red,
    }
}

/// What a call does, in one line: the command, or the tool and its path.
pub fn call_summary(call: &ToolCallInfo) -> String {
    let args: serde_json::Value =
        serde_json::from_str(&call.arguments).unwrap_or(serde_json::Value::Null);
    let field = |k: &str| args.get(k).and_then(|v| v.as_str()).map(sanitize);
    match call.name.as_str() {
        "run_command" | "run_command_task" => match field("command") {
            Some(c) => format!("$ {c}"),
            None => format!("{} {}", call.name, sanitize(&call.arguments)),
        },
        "create" | "str_replace" | "remove" | "view" => {
            let verb = match call.name.as_str() {
                "str_replace" => "edit",
                other => other,
            };
            format!("{verb} {}", field("path").unwrap_or_default())
        }
        _ => {
            let args = sanitize(&call.arguments);
            if args.is_empty() || args == "{}" {
                call.name.clone()
            } else {
                format!("{} {args}", call.name)
            }
        }
    }
}

/// The warden's part of a card: verdict, rule and (when it did not allow) the reason.
pub fn verdict(call: &ToolCallInfo) -> Option<String> {
    let decision = call.decision.get()?;
    let mut v = format!("warden {decision}");
    if !call.rule.is_empty() {
        v.push_str(&format!(" · {}", call.rule));
    }
    if decision != Decision::Allow && !call.reason.is_empty() {
        v.push_str(&format!(": {}", call.reason));
    }
    Some(v)
}

fn card(call: &ToolCallInfo, expanded: bool, selected: bool) -> Vec<Styled> {
    let color = state_color(call.state);
    let bar_style = if selected {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(color)
    };
    let bar = || vec![Span::styled("│ ", bar_style)];
    let mut out = vec![Styled::new(vec![
        Span::styled(if selected { "▶ " } else { "╭ " }, bar_style),
        Span::styled(call.name.clone(), Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(" · ", dim()),
        Span::styled(call.state.as_str(), Style::new().fg(color)),
    ])];
    out.push(Styled::plain(call_summary(call), Style::new().fg(Color::White)).with_prefix(bar()));
    if let Some(v) = verdict(call) {
        let style = match call.decision.get() {
            Some(Decision::Deny) => Style::new().fg(Color::Red),
            Some(Decision::Ask) => Style::new().fg(Color::Yellow),
            Some(Decision::Allow) | None => dim(),
        };
        out.push(Styled::plain(v, style).with_prefix(bar()));
    }
    if call.state == ToolCallState::WaitingApproval && !call.approval.is_empty() {
        out.push(
            Styled::plain(
                format!("needs approval ({})", call.approval),
                Style::new().fg(Color::Yellow),
            )
            .with_prefix(bar()),
        );
    }
    if call.state == ToolCallState::Rejected {
        let why = if call.reason.is_empty() {
            call.state.to_string()
        } else {
            format!("{}: {}", call.state, call.reason)
        };
        out.push(Styled::plain(why, Style::new().fg(Color::Red)).with_prefix(bar()));
        return out;
    }
    if call.output.is_empty() {
        return out;
    }
    let style = if call.is_error {
        Style::new().fg(Color::LightRed)
    } else {
        Style::new().fg(Color::Gray)
    };
    let total = call.output.lines().count();
    let shown = if expanded {
        total
    } else {
        total.min(COLLAPSED_LINES)
    };
    for line in call.output.lines().take(shown) {
        out.push(
            Styled::plain(sanitize(line), style)
                .with_prefix(bar())
                .hard(),
        );
    }
    if total > shown {
        out.push(
            Styled::plain(
                format!("… {} more lines · Ctrl+O expands", total - shown),
                dim(),
            )
            .with_prefix(bar()),
        );
    } else if expanded && total > COLLAPSED_LINES {
        out.push(Styled::plain("Ctrl+O collapses", dim()).with_prefix(bar()));
    }
    out
}

fn state_line(info: &SessionInfo) -> Vec<Styled> {
    let usage = format!(
        "{} turns · {} tokens",
        info.turns,
        info.input_tokens + info.output_tokens
    );
    let (mark, text, color) = match info.state {
        SessionState::Running => ("… ", "working".to_string(), Color::Blue),
        SessionState::WaitingApproval => (
            "⏸ ",
            "waiting for approval: the bar below decides".to_string(),
            Color::Yellow,
        ),
        SessionState::WaitingUser => (
            "? ",
            format!("the agent asks: {} (type your answer)", info.reason),
            Color::Yellow,
        ),
        SessionState::Finished => ("✓ ", format!("{} · {usage}", info.state), Color::Green),
        SessionState::Paused => (
            "⏸ ",
            format!("{}: {} · {usage}", info.state, info.reason),
            Color::Yellow,
        ),
        other @ (SessionState::MaxTurns
        | SessionState::Cancelled
        | SessionState::Failed
        | SessionState::Interrupted) => {
            let reason = if info.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", info.reason)
            };
            ("✗ ", format!("{other}{reason} · {usage}"), Color::Red)
        }
    };
    vec![Styled {
        hang: 2,
        ..Styled::new(vec![
            Span::styled(mark, Style::new().fg(color)),
            Span::styled(sanitize(&text), Style::new().fg(color)),
        ])
    }]
}

/// One line of text cut to `columns`, for places that never wrap.
pub fn one_line(text: &str, columns: usize) -> String {
    truncate(&sanitize(text.lines().next().unwrap_or("")), columns)
}

/// Wraps a plain text into rows (popups, the suite-down notice).
pub fn plain_rows(text: &str, style: Style, columns: u16) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    for line in text.lines() {
        wrap(&Styled::plain(sanitize(line), style), columns, &mut out);
    }
    out
}
