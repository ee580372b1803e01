//! Drawing the console: header, chat, approval bar, prompt, footer, the side panel and the
//! popups. Every size is derived from the frame, so any terminal size draws (a tiny one
//! gets a one-line notice instead of a layout).

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Padding, Paragraph},
};

use stakpak_proto::{DaemonState, Decision, ExecStatus, SessionState};

use super::{
    app::{App, Focus, Popup, Suite},
    chat::{call_summary, one_line, plain_rows},
    text::truncate,
};

/// Smallest terminal the layout is drawn in.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 10;
/// Width of the side panel.
const PANEL_WIDTH: u16 = 36;
/// Rows of pending calls the approval bar shows at once.
const BAR_ROWS: usize = 6;
/// Rows of text the prompt grows to.
const INPUT_ROWS: usize = 5;

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

fn focus_border(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Cyan)
    } else {
        dim()
    }
}

/// Draws the whole console.
pub fn draw(frame: &mut Frame<'_>, app: &mut App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "stakpak needs {MIN_WIDTH}x{MIN_HEIGHT} at least; this terminal is {}x{}",
            area.width, area.height
        );
        let rows = plain_rows(&text, Style::new().fg(Color::Yellow), area.width.max(1));
        frame.render_widget(Paragraph::new(rows), area);
        return;
    }
    let pending = app.pending().len();
    let bar_height = if pending == 0 {
        0
    } else {
        u16::try_from(pending.min(BAR_ROWS) + 2).unwrap_or(8)
    };
    // Borders and a column of padding on each side.
    let inner_width = area.width.saturating_sub(4);
    let (input_rows, _) = app.input.layout(inner_width);
    let input_height = u16::try_from(input_rows.len().clamp(1, INPUT_ROWS) + 2).unwrap_or(3);
    let [header, body, bar, input, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(bar_height),
        Constraint::Length(input_height),
        Constraint::Length(1),
    ])
    .areas(area);

    draw_header(frame, app, header);
    let (chat, panel) = if app.panel_open {
        if body.width < PANEL_WIDTH * 2 {
            (Rect::default(), body)
        } else {
            let [c, p] = Layout::horizontal([Constraint::Min(20), Constraint::Length(PANEL_WIDTH)])
                .areas(body);
            (c, p)
        }
    } else {
        (body, Rect::default())
    };
    if chat.area() > 0 {
        draw_chat(frame, app, chat);
    }
    if panel.area() > 0 {
        draw_panel(frame, app, panel);
    }
    if bar_height > 0 {
        draw_approvals(frame, app, bar);
    }
    draw_input(frame, app, input);
    draw_footer(frame, app, footer);
    if app.popup.is_some() {
        draw_popup(frame, app, area);
    }
}

fn draw_header(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (suite, color) = match &app.suite {
        Suite::Up(_) => {
            let down = app.panel.daemons.iter().filter(|d| !d.is_running()).count();
            if down == 0 {
                ("suite up".to_string(), Color::Green)
            } else {
                (format!("{down} daemon(s) down"), Color::Yellow)
            }
        }
        Suite::Down(_) => ("suite down".to_string(), Color::Red),
        Suite::Connecting => ("connecting…".to_string(), Color::Yellow),
    };
    let right = format!(" ● {suite} ");
    let left_room = usize::from(area.width).saturating_sub(right.chars().count());
    let mut left = vec![Span::styled(
        " stakpak ",
        Style::new()
            .fg(Color::Black)
            .bg(Color::Cyan)
            .add_modifier(Modifier::BOLD),
    )];
    let used = 9;
    let session = match &app.session {
        Some(s) => {
            let mut t = format!(" {} · {}", s.info.id, s.info.state);
            if !s.info.title.is_empty() {
                t.push_str(&format!(" · {}", s.info.title));
            }
            t
        }
        None => " new session".to_string(),
    };
    let session = one_line(&session, left_room.saturating_sub(used));
    let fill = left_room.saturating_sub(used + super::text::width(&session));
    left.push(Span::raw(session));
    left.push(Span::raw(" ".repeat(fill)));
    left.push(Span::styled(right, Style::new().fg(color)));
    frame.render_widget(Paragraph::new(Line::from(left)), area);
}

fn draw_chat(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    app.chat_height = area.height;
    if !matches!(app.suite, Suite::Up(_)) && app.session.is_none() {
        draw_suite_notice(frame, app, area);
        return;
    }
    let width = area.width.saturating_sub(1).max(1);
    let added = app.transcript.update(app.session.as_ref(), width);
    // Scrolled up to read: new rows below do not move what is being read.
    if app.scroll > 0 {
        app.scroll += added;
    }
    let total = app.transcript.height();
    let height = usize::from(area.height);
    let max_scroll = total.saturating_sub(height);
    app.scroll = app.scroll.min(max_scroll);
    if std::mem::take(&mut app.reveal)
        && let Some(id) = app.session.as_ref().and_then(|s| s.selected.clone())
        && let Some((start, len)) = app.transcript.card_rows(&id)
    {
        let mut top = max_scroll - app.scroll;
        if start < top || len > height {
            top = start;
        } else if start + len > top + height {
            top = start + len - height;
        }
        app.scroll = max_scroll - top.min(max_scroll);
    }
    let top = max_scroll - app.scroll;
    let rows = app.transcript.rows(top, height);
    let chat = Rect {
        x: area.x + 1,
        width,
        ..area
    };
    frame.render_widget(Paragraph::new(rows), chat);
}

fn draw_suite_notice(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let width = area.width.saturating_sub(4).clamp(10, 72);
    let mut rows: Vec<Line<'static>> = Vec::new();
    match &app.suite {
        Suite::Down(why) => {
            rows.extend(plain_rows(
                "The stakpak suite is not running.",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                width,
            ));
            rows.push(Line::default());
            rows.extend(plain_rows(why, dim(), width).into_iter().take(4));
            rows.push(Line::default());
            rows.extend(plain_rows(
                "Start it with `stakpak up` (installed: `sudo systemctl start stakpak.target`). This screen connects by itself once it runs.",
                Style::new(),
                width,
            ));
        }
        _ => rows.extend(plain_rows("Connecting to the suite…", dim(), width)),
    }
    let height = u16::try_from(rows.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let rect = centered(area, width + 4, height);
    frame.render_widget(
        Paragraph::new(rows).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(dim())
                .padding(Padding::horizontal(1))
                .title(" suite "),
        ),
        rect,
    );
}

fn draw_approvals(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let pending = app.pending();
    let focused = app.focus == Focus::Approvals;
    let n = pending.len();
    let ticked = pending
        .iter()
        .filter(|c| !app.unticked.contains(&c.id))
        .count();
    let title = format!(" {n} call(s) wait for approval · {ticked} ticked ");
    let hint = if focused {
        " Space toggles · ↑↓ move · Enter confirms "
    } else {
        " Tab: approvals "
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(focus_border(focused).fg(Color::Yellow))
        .title(title)
        .title_bottom(Line::from(hint).right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = usize::from(inner.height);
    let first = app
        .approval_cursor
        .saturating_sub(rows.saturating_sub(1))
        .min(n.saturating_sub(rows));
    let width = usize::from(inner.width);
    let mut lines = Vec::new();
    for (i, call) in pending.iter().enumerate().skip(first).take(rows) {
        let tick = if app.unticked.contains(&call.id) {
            "[ ] "
        } else {
            "[x] "
        };
        let cursor = if focused && i == app.approval_cursor {
            "› "
        } else {
            "  "
        };
        let why = if call.decision.get() == Some(Decision::Ask) {
            let mut w = format!("warden ask · {}", call.rule);
            if !call.reason.is_empty() {
                w.push_str(&format!(": {}", call.reason));
            }
            w
        } else if call.approval.is_empty() {
            String::new()
        } else {
            format!("needs approval ({})", call.approval)
        };
        let head = format!("{cursor}{tick}{}", call_summary(call));
        let head_cut = truncate(&head, width);
        let rest = width.saturating_sub(super::text::width(&head_cut));
        let why = if why.is_empty() || rest < 6 {
            String::new()
        } else {
            truncate(&format!("  {why}"), rest)
        };
        let style = if focused && i == app.approval_cursor {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(head_cut, style),
            Span::styled(why, Style::new().fg(Color::Yellow)),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let focused = app.focus == Focus::Input && app.popup.is_none();
    let title = match app.session.as_ref().map(|s| s.info.state) {
        Some(SessionState::WaitingUser) => " answer ",
        Some(_) => " prompt · this session ",
        None => " prompt · new session ",
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(focus_border(focused))
        .padding(Padding::horizontal(1))
        .title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (rows, (cx, cy)) = app.input.layout(inner.width);
    let height = usize::from(inner.height.max(1));
    let first = usize::from(cy).saturating_sub(height - 1);
    let lines: Vec<Line<'static>> = if app.input.is_empty() && !focused {
        vec![Line::styled("Tab or Esc to type", dim())]
    } else if app.input.is_empty() {
        vec![Line::styled(
            "Ask the agent, or /help · Alt+Enter adds a line",
            dim(),
        )]
    } else {
        rows.into_iter()
            .skip(first)
            .take(height)
            .map(Line::from)
            .collect()
    };
    frame.render_widget(Paragraph::new(lines), inner);
    if focused {
        let y = u16::try_from(usize::from(cy) - first).unwrap_or(0);
        frame.set_cursor_position((
            inner.x + cx.min(inner.width.saturating_sub(1)),
            inner.y + y.min(inner.height.saturating_sub(1)),
        ));
    }
}

fn draw_footer(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let width = usize::from(area.width);
    let line = match &app.notice {
        Some(n) => Line::styled(
            one_line(&n.text, width),
            if n.error {
                Style::new().fg(Color::Red)
            } else {
                Style::new().fg(Color::Green)
            },
        ),
        None => {
            let mut hint = match app.focus {
                Focus::Approvals => "Space toggle · Enter confirm · Tab focus · F1 keys",
                Focus::Panel => "↑↓ select change · r revert · Tab focus · F1 keys",
                Focus::Input => "Enter send · F2 panel · Ctrl+O expand · F1 keys · Ctrl+C×2 quit",
            }
            .to_string();
            if app.scroll > 0 {
                hint = format!(
                    "scrolled up {} rows (Esc: back to the end) · {hint}",
                    app.scroll
                );
            }
            Line::styled(one_line(&hint, width), dim())
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn section(title: &str) -> Line<'static> {
    Line::styled(
        title.to_string(),
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
    )
}

/// Green when running, red when it did not answer, yellow in between.
fn daemon_color(state: Option<DaemonState>) -> Color {
    match state {
        Some(DaemonState::Running) => Color::Green,
        None => Color::Red,
        Some(_) => Color::Yellow,
    }
}

/// The side panel's rows for a width.
pub fn panel_lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let mut lines = vec![section("Suite")];
    if app.panel.daemons.is_empty() {
        lines.push(Line::styled(
            match &app.suite {
                Suite::Down(_) => "down: start it with `stakpak up`",
                _ => "asking the daemons…",
            },
            dim(),
        ));
    }
    for d in &app.panel.daemons {
        let detail = if d.is_running() {
            d.detail.clone()
        } else {
            format!("{} {}", d.state_name(), d.detail)
        };
        lines.push(Line::from(vec![
            Span::styled("● ", Style::new().fg(daemon_color(d.state))),
            Span::raw(format!("{:<9}", d.name)),
            Span::styled(truncate(&detail, width.saturating_sub(11)), dim()),
        ]));
    }
    lines.push(Line::default());
    lines.push(section("Session"));
    match &app.session {
        Some(s) => {
            let i = &s.info;
            let profile = if i.profile.is_empty() {
                "default"
            } else {
                &i.profile
            };
            lines.push(Line::raw(truncate(&i.id, width)));
            lines.push(Line::raw(truncate(
                &format!("{} · {} turns", i.state, i.turns),
                width,
            )));
            lines.push(Line::raw(truncate(&format!("profile {profile}"), width)));
            lines.push(Line::raw(truncate(
                &format!(
                    "model {}",
                    if i.model.is_empty() {
                        "(profile's)"
                    } else {
                        &i.model
                    }
                ),
                width,
            )));
            lines.push(Line::raw(truncate(
                &format!("tokens {} in / {} out", i.input_tokens, i.output_tokens),
                width,
            )));
            lines.push(match app.cost() {
                Some(c) => Line::raw(truncate(&format!("cost ≈ ${c:.4} at list prices"), width)),
                None => Line::styled("cost: no price for this model", dim()),
            });
        }
        None => {
            let profile = if app.profile.is_empty() {
                "default"
            } else {
                &app.profile
            };
            lines.push(Line::styled("none attached", dim()));
            lines.push(Line::raw(truncate(&format!("profile {profile}"), width)));
            lines.push(Line::raw(truncate(
                &format!("model {}", app.effective_model()),
                width,
            )));
        }
    }
    lines.push(Line::default());
    lines.push(section(&format!("Tasks ({})", app.panel.tasks.len())));
    for t in &app.panel.tasks {
        let color = if t.state == ExecStatus::Running {
            Color::Blue
        } else {
            Color::Gray
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", t.state), Style::new().fg(color)),
            Span::raw(truncate(
                &one_line(&t.command, width),
                width.saturating_sub(t.state.as_str().len() + 1),
            )),
        ]));
    }
    lines.push(Line::default());
    lines.push(section(&format!("Changes ({})", app.panel.changes.len())));
    let focused = app.focus == Focus::Panel;
    for (i, c) in app.panel.changes.iter().enumerate() {
        let mark = if focused && i == app.panel.cursor {
            "› "
        } else {
            "  "
        };
        let reverted = if c.reverted_ms != 0 {
            " (reverted)"
        } else {
            ""
        };
        let style = if focused && i == app.panel.cursor {
            Style::new().add_modifier(Modifier::REVERSED)
        } else if c.reverted_ms != 0 {
            dim()
        } else {
            Style::new()
        };
        lines.push(Line::styled(
            truncate(&format!("{mark}{} {}{reverted}", c.kind, c.path), width),
            style,
        ));
    }
    if !app.panel.changes.is_empty() {
        lines.push(Line::styled("Tab, ↑↓ then r reverts", dim()));
    }
    lines
}

fn draw_panel(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default()
        .borders(Borders::LEFT)
        .border_style(focus_border(app.focus == Focus::Panel));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let inner = Rect {
        x: inner.x + 1,
        width: inner.width.saturating_sub(1),
        ..inner
    };
    let lines = panel_lines(app, usize::from(inner.width));
    frame.render_widget(Paragraph::new(lines), inner);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

const SHORTCUTS: &[(&str, &str)] = &[
    ("Enter", "send the prompt / confirm approvals"),
    ("Alt+Enter, Ctrl+J", "new line in the prompt"),
    ("↑ ↓", "prompt history (first / last line)"),
    ("Tab", "focus: prompt, approvals, panel"),
    ("Space", "tick or untick a pending call"),
    ("PgUp PgDn", "scroll the chat; Esc back to the end"),
    ("Alt+↑ Alt+↓", "select a tool card"),
    ("Ctrl+O", "expand or collapse the card"),
    ("F2, Ctrl+T", "side panel"),
    ("r", "revert the selected change (panel)"),
    ("F1, ?", "this list"),
    ("Ctrl+C twice", "quit"),
];

const COMMANDS: &[(&str, &str)] = &[
    ("/sessions", "pick a session to attach to"),
    ("/resume [ID]", "attach to a session (newest)"),
    ("/new", "start over with a new session"),
    ("/status", "the five daemons"),
    ("/model [NAME]", "model for sessions started here"),
    ("/profiles [NAME]", "pick the profile"),
    ("/cancel", "stop the attached session"),
    ("/panel", "side panel"),
    ("/help", "this list"),
    ("/quit", "leave (sessions keep running)"),
];

fn table(rows: &[(&str, &str)], width: usize) -> Vec<Line<'static>> {
    let key_width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<key_width$}  "), Style::new().fg(Color::Cyan)),
                Span::raw(truncate(v, width.saturating_sub(key_width + 2))),
            ])
        })
        .collect()
}

/// A list to pick from, the cursor's row reversed.
fn pick_list(
    rows: impl Iterator<Item = String>,
    cursor: usize,
    empty: &'static str,
    width: usize,
) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = rows
        .enumerate()
        .map(|(i, text)| {
            let style = if i == cursor {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            Line::styled(one_line(&text, width), style)
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(empty, dim()));
    }
    lines
}

fn draw_popup(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(popup) = &app.popup else {
        return;
    };
    let width = area.width.saturating_sub(4).min(72);
    let inner_width = usize::from(width.saturating_sub(2));
    let (title, lines): (&str, Vec<Line<'static>>) = match popup {
        Popup::Shortcuts => (" shortcuts ", table(SHORTCUTS, inner_width)),
        Popup::Help => (" commands ", table(COMMANDS, inner_width)),
        Popup::Status => {
            let mut lines = Vec::new();
            match &app.suite {
                Suite::Up(where_) => lines.push(Line::raw(truncate(where_, inner_width))),
                Suite::Down(why) => lines.push(Line::styled(
                    truncate(why, inner_width),
                    Style::new().fg(Color::Red),
                )),
                Suite::Connecting => lines.push(Line::raw("connecting…")),
            }
            for d in &app.panel.daemons {
                lines.push(Line::from(vec![
                    Span::styled("● ", Style::new().fg(daemon_color(d.state))),
                    Span::raw(format!("{:<9} {:<8} ", d.name, d.state_name())),
                    Span::styled(truncate(&d.detail, inner_width.saturating_sub(20)), dim()),
                ]));
            }
            (" status ", lines)
        }
        Popup::Sessions { list, cursor } => {
            // `as_str`: the enum's `Display` writes its name without the padding.
            let rows = list
                .iter()
                .map(|s| format!("{:<15} {:<16} {}", s.id, s.state.as_str(), s.title));
            let lines = pick_list(rows, *cursor, "no sessions yet", inner_width);
            (" sessions · Enter attaches ", lines)
        }
        Popup::Profiles { cursor } => {
            let rows = app.profiles.iter().map(|p| {
                let current = if p.name == app.profile { "*" } else { " " };
                format!("{current} {:<14} {}", p.name, p.model)
            });
            let lines = pick_list(rows, *cursor, "no profiles in config.toml", inner_width);
            (" profiles · Enter chooses ", lines)
        }
    };
    let max_rows = usize::from(area.height.saturating_sub(4));
    let cursor = match popup {
        Popup::Sessions { cursor, .. } | Popup::Profiles { cursor } => *cursor,
        _ => 0,
    };
    let first = cursor.saturating_sub(max_rows.saturating_sub(1));
    let lines: Vec<Line<'static>> = lines.into_iter().skip(first).take(max_rows).collect();
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::new().fg(Color::Cyan))
                .title(title)
                .title_bottom(Line::from(" Esc closes ").right_aligned()),
        ),
        rect,
    );
}
