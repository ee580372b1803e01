//! The screen's state and everything that changes it: keys from the terminal ([`App::key`])
//! and events from the suite ([`App::apply`]). Nothing here does I/O; what the suite should
//! do is queued as [`Request`]s and taken by the loop ([`App::take_requests`]), which keeps
//! the whole console testable without a terminal or a bus.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use stakpak_proto::{
    ChangeInfo, SessionDetail, SessionInfo, SessionState, StartRequest, TaskInfo, ToolCallInfo,
    ToolCallState,
};

use super::{
    chat::Transcript,
    client::{DaemonRow, Event, Purpose, Request},
    input::{Edit, Input},
    session::Session,
};

/// Whether the suite can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suite {
    Connecting,
    /// Connected; where (e.g. "embedded suite in /run/user/1000/stakpak").
    Up(String),
    /// Not reachable; why.
    Down(String),
}

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Input,
    Approvals,
    Panel,
}

/// A window over the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    Shortcuts,
    Help,
    Status,
    Sessions {
        list: Vec<SessionInfo>,
        cursor: usize,
    },
    Profiles {
        cursor: usize,
    },
}

/// A line in the footer: what just happened, or what went wrong. It gives way to the key
/// hints after [`NOTICE_TIME`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    pub at: Instant,
}

/// How long a notice stays in the footer.
const NOTICE_TIME: Duration = Duration::from_secs(6);

/// The side panel's data.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub daemons: Vec<DaemonRow>,
    pub tasks: Vec<TaskInfo>,
    pub changes: Vec<ChangeInfo>,
    /// The selected change (for revert).
    pub cursor: usize,
}

/// A profile of `config.toml` and its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileEntry {
    pub name: String,
    pub model: String,
}

/// How long the first Ctrl+C waits for the second.
const QUIT_WINDOW: Duration = Duration::from_secs(2);

/// The whole console.
#[derive(Debug)]
pub struct App {
    pub suite: Suite,
    pub session: Option<Session>,
    pub input: Input,
    pub focus: Focus,
    pub panel_open: bool,
    pub panel: Panel,
    /// Pending calls the operator unticked in the approval bar.
    pub unticked: HashSet<String>,
    /// The approval bar's cursor.
    pub approval_cursor: usize,
    pub popup: Option<Popup>,
    pub notice: Option<Notice>,
    /// Profile and model for sessions started here (empty: the defaults).
    pub profile: String,
    pub model: String,
    pub profiles: Vec<ProfileEntry>,
    /// Rows scrolled up from the bottom of the chat; 0 follows new output.
    pub scroll: usize,
    /// Scroll the selected card into view at the next draw.
    pub reveal: bool,
    /// The chat as wrapped rows, cached per entry.
    pub transcript: Transcript,
    /// The working folder given to new sessions.
    pub workdir: String,
    quit_armed: Option<Instant>,
    pub quit: bool,
    requests: Vec<Request>,
    resync_in_flight: bool,
    resync_again: bool,
    /// Rows of the chat at the last draw (for paging).
    pub chat_height: u16,
}

impl App {
    pub fn new(profile: String, model: String, profiles: Vec<ProfileEntry>) -> App {
        App {
            suite: Suite::Connecting,
            session: None,
            input: Input::new(),
            focus: Focus::Input,
            panel_open: false,
            panel: Panel::default(),
            unticked: HashSet::new(),
            approval_cursor: 0,
            popup: None,
            notice: None,
            profile,
            model,
            profiles,
            scroll: 0,
            reveal: false,
            transcript: Transcript::default(),
            workdir: String::new(),
            quit_armed: None,
            quit: false,
            requests: vec![Request::Connect],
            resync_in_flight: false,
            resync_again: false,
            chat_height: 10,
        }
    }

    /// What the suite should do, in order.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    fn request(&mut self, r: Request) {
        self.requests.push(r);
    }

    fn notice(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: false,
            at: Instant::now(),
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: true,
            at: Instant::now(),
        });
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.info.id.as_str())
    }

    pub fn pending(&self) -> Vec<&ToolCallInfo> {
        self.session
            .as_ref()
            .map(Session::pending)
            .unwrap_or_default()
    }

    /// Every two seconds: reconnect when down, refresh the daemons and the panel.
    pub fn tick(&mut self) {
        match &self.suite {
            Suite::Down(_) => self.request(Request::Connect),
            Suite::Up(_) => {
                self.request(Request::Daemons);
                if self.panel_open
                    && let Some(id) = self.session_id()
                {
                    let id = id.to_string();
                    self.request(Request::Panel(id));
                }
            }
            Suite::Connecting => {}
        }
        if self.quit_armed.is_some_and(|t| t.elapsed() > QUIT_WINDOW) {
            self.quit_armed = None;
            if self
                .notice
                .as_ref()
                .is_some_and(|n| n.text.contains("Ctrl+C"))
            {
                self.notice = None;
            }
        }
        if self
            .notice
            .as_ref()
            .is_some_and(|n| n.at.elapsed() > NOTICE_TIME)
        {
            self.notice = None;
        }
    }

    fn resync(&mut self) {
        let Some(id) = self.session_id().map(str::to_string) else {
            return;
        };
        if self.resync_in_flight {
            self.resync_again = true;
        } else {
            self.resync_in_flight = true;
            self.request(Request::Resync(id));
        }
    }

    /// Takes one event from the suite.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Connected(describe) => {
                let was_down = !matches!(self.suite, Suite::Up(_));
                self.suite = Suite::Up(describe);
                self.request(Request::Daemons);
                if was_down && let Some(id) = self.session_id() {
                    let id = id.to_string();
                    self.request(Request::Attach(id));
                }
            }
            Event::Down(why) => {
                self.suite = Suite::Down(why);
                self.resync_in_flight = false;
            }
            Event::Detail { detail, attach } => self.detail(*detail, attach),
            Event::Delta { session, text } => {
                if let Some(s) = self.session.as_mut().filter(|s| s.info.id == session) {
                    s.delta(&text);
                }
            }
            Event::Call(call) => {
                let focus = call.state == ToolCallState::WaitingApproval;
                if let Some(s) = self.session.as_mut().filter(|s| s.info.id == call.session) {
                    let id = call.id.clone();
                    if s.upsert(*call) {
                        s.new_call(&id);
                    }
                    if focus {
                        self.offer_approvals();
                    }
                }
                self.clamp_approvals();
            }
            Event::Changed(info) => {
                if let Some(s) = self.session.as_mut().filter(|s| s.info.id == info.id) {
                    let id = info.id.clone();
                    s.info = *info;
                    self.resync();
                    if self.panel_open {
                        self.request(Request::Panel(id));
                    }
                }
            }
            Event::Sessions(list, Purpose::Pick) => {
                self.popup = Some(Popup::Sessions { list, cursor: 0 });
            }
            Event::Sessions(list, Purpose::ResumeNewest) => match list.first() {
                Some(s) => {
                    let id = s.id.clone();
                    self.attach(&id);
                }
                None => self.notice("no sessions yet: type a prompt to start one"),
            },
            Event::Daemons(rows) => self.panel.daemons = rows,
            Event::Panel {
                session,
                tasks,
                changes,
            } => {
                if self.session_id() == Some(session.as_str()) {
                    self.panel.tasks = tasks;
                    self.panel.changes = changes;
                    self.panel.cursor = self
                        .panel
                        .cursor
                        .min(self.panel.changes.len().saturating_sub(1));
                }
            }
            Event::StartFailed {
                session,
                prompt,
                error,
            } => self.start_failed(&session, &prompt, &error),
            Event::Notice(text) => {
                self.notice(text);
                if let Some(id) = self.session_id() {
                    let id = id.to_string();
                    self.request(Request::Panel(id));
                }
            }
            Event::Error(text) => {
                self.resync_in_flight = false;
                self.error(text);
            }
        }
    }

    fn detail(&mut self, detail: SessionDetail, attach: bool) {
        if attach {
            let id = detail.info.id.clone();
            // The first answer for a session attached just now replaces whatever was shown,
            // unless it is the session already shown (a reconnect): then it is a resync.
            let same = self.session_id() == Some(id.as_str());
            if !same {
                self.session = Some(Session::new(detail.info.clone()));
                self.unticked.clear();
                self.approval_cursor = 0;
                self.scroll = 0;
                self.panel.tasks.clear();
                self.panel.changes.clear();
            }
            if let Some(s) = self.session.as_mut() {
                s.sync(detail);
            }
            self.notice(format!("attached to session {id}"));
            if self.panel_open {
                self.request(Request::Panel(id));
            }
        } else {
            self.resync_in_flight = false;
            if let Some(s) = self
                .session
                .as_mut()
                .filter(|s| s.info.id == detail.info.id)
            {
                s.sync(detail);
            }
            if std::mem::take(&mut self.resync_again) {
                self.resync();
            }
        }
        if !self.pending().is_empty() {
            self.offer_approvals();
        }
        self.clamp_approvals();
    }

    /// Gives the approval bar the keys, unless the operator is typing or reading a popup:
    /// an Enter meant for a prompt must never confirm approvals.
    fn offer_approvals(&mut self) {
        if self.popup.is_none() && self.input.is_empty() && self.focus == Focus::Input {
            self.focus = Focus::Approvals;
        }
    }

    /// A prompt the agent refused: a session that never started is dropped, an existing one
    /// stays as it was; the prompt goes back to the editor.
    fn start_failed(&mut self, session: &str, prompt: &str, error: &str) {
        if let Some(s) = self.session.as_mut().filter(|s| s.info.id == session) {
            if s.messages.is_empty() && s.calls.is_empty() {
                self.session = None;
            } else {
                s.pending_prompt = None;
            }
        }
        if self.input.is_empty() {
            self.input.set_text(prompt);
        }
        self.focus = Focus::Input;
        self.error(format!("the agent did not start it: {error}"));
    }

    fn clamp_approvals(&mut self) {
        let n = self.pending().len();
        if n == 0 {
            if self.focus == Focus::Approvals {
                self.focus = Focus::Input;
            }
            self.approval_cursor = 0;
        } else {
            self.approval_cursor = self.approval_cursor.min(n - 1);
        }
    }

    /// Follows session `id` (its history, then its live events).
    pub fn attach(&mut self, id: &str) {
        self.request(Request::Attach(id.to_string()));
    }

    /// Handles one key.
    pub fn key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if ctrl && key.code == KeyCode::Char('c') {
            self.ctrl_c();
            return;
        }
        self.quit_armed = None;
        if self.popup.is_some() {
            self.popup_key(key);
            return;
        }
        match key.code {
            KeyCode::F(1) => {
                self.popup = Some(Popup::Shortcuts);
                return;
            }
            KeyCode::F(2) => {
                self.toggle_panel();
                return;
            }
            KeyCode::Char('t') if ctrl => {
                self.toggle_panel();
                return;
            }
            // Ctrl+E is also "end of line" while there is text to edit.
            KeyCode::Char('e') if ctrl && (self.focus != Focus::Input || self.input.is_empty()) => {
                self.toggle_expand();
                return;
            }
            KeyCode::Char('o') if ctrl => {
                self.toggle_expand();
                return;
            }
            KeyCode::Up if alt || ctrl => {
                self.select_card(-1);
                return;
            }
            KeyCode::Down if alt || ctrl => {
                self.select_card(1);
                return;
            }
            KeyCode::PageUp => {
                self.scroll += usize::from(self.chat_height.saturating_sub(2).max(1));
                return;
            }
            KeyCode::PageDown => {
                self.scroll = self
                    .scroll
                    .saturating_sub(usize::from(self.chat_height.saturating_sub(2).max(1)));
                return;
            }
            KeyCode::Tab => {
                self.cycle_focus();
                return;
            }
            KeyCode::Esc => {
                self.focus = Focus::Input;
                self.scroll = 0;
                return;
            }
            _ => {}
        }
        match self.focus {
            Focus::Approvals => self.approval_key(key),
            Focus::Panel => self.panel_key(key),
            Focus::Input => self.input_key(key),
        }
    }

    fn ctrl_c(&mut self) {
        if self.popup.take().is_some() {
            return;
        }
        if self.quit_armed.is_some_and(|t| t.elapsed() <= QUIT_WINDOW) {
            self.quit = true;
            return;
        }
        self.input.clear();
        self.quit_armed = Some(Instant::now());
        self.notice("press Ctrl+C again to quit");
    }

    fn toggle_panel(&mut self) {
        self.panel_open = !self.panel_open;
        if self.panel_open {
            self.request(Request::Daemons);
            if let Some(id) = self.session_id() {
                let id = id.to_string();
                self.request(Request::Panel(id));
            }
        } else if self.focus == Focus::Panel {
            self.focus = Focus::Input;
        }
    }

    fn cycle_focus(&mut self) {
        let pending = !self.pending().is_empty();
        let order = [Focus::Input, Focus::Approvals, Focus::Panel];
        let at = order.iter().position(|f| *f == self.focus).unwrap_or(0);
        for step in 1..=order.len() {
            let next = order[(at + step) % order.len()];
            let usable = match next {
                Focus::Input => true,
                Focus::Approvals => pending,
                Focus::Panel => self.panel_open,
            };
            if usable {
                self.focus = next;
                return;
            }
        }
    }

    fn select_card(&mut self, step: isize) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let order = s.card_order();
        if order.is_empty() {
            return;
        }
        let at = s
            .selected
            .as_ref()
            .and_then(|id| order.iter().position(|o| o == id));
        let next = match at {
            None if step < 0 => order.len() - 1,
            None => 0,
            Some(i) => i.saturating_add_signed(step).min(order.len() - 1),
        };
        s.selected = Some(order[next].clone());
        self.reveal = true;
    }

    /// Expands or collapses the selected card (the newest when none is selected).
    fn toggle_expand(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let id = match &s.selected {
            Some(id) => id.clone(),
            None => match s.card_order().last() {
                Some(id) => id.clone(),
                None => return,
            },
        };
        if !s.expanded.remove(&id) {
            s.expanded.insert(id.clone());
        }
        s.selected = Some(id);
        self.reveal = true;
    }

    fn approval_key(&mut self, key: KeyEvent) {
        let ids: Vec<String> = self.pending().iter().map(|c| c.id.clone()).collect();
        if ids.is_empty() {
            self.focus = Focus::Input;
            self.input_key(key);
            return;
        }
        match key.code {
            KeyCode::Up | KeyCode::Left | KeyCode::Char('k') => {
                self.approval_cursor = self.approval_cursor.saturating_sub(1);
            }
            KeyCode::Down | KeyCode::Right | KeyCode::Char('j') => {
                self.approval_cursor = (self.approval_cursor + 1).min(ids.len() - 1);
            }
            KeyCode::Char(' ') => {
                if let Some(id) = ids.get(self.approval_cursor)
                    && !self.unticked.remove(id)
                {
                    self.unticked.insert(id.clone());
                }
            }
            KeyCode::Char('a') => self.unticked.clear(),
            KeyCode::Char('n') => self.unticked.extend(ids.iter().cloned()),
            KeyCode::Enter => self.confirm_approvals(ids),
            _ => {}
        }
    }

    fn confirm_approvals(&mut self, ids: Vec<String>) {
        let Some(session) = self.session_id().map(str::to_string) else {
            return;
        };
        let (reject, approve): (Vec<String>, Vec<String>) =
            ids.into_iter().partition(|id| self.unticked.contains(id));
        self.notice(format!(
            "approved {}, rejected {}",
            approve.len(),
            reject.len()
        ));
        // Shown at once; the agent's signals confirm it.
        if let Some(s) = self.session.as_mut() {
            for c in s.calls.iter_mut() {
                if approve.contains(&c.id) {
                    c.state = ToolCallState::Approved;
                } else if reject.contains(&c.id) {
                    c.state = ToolCallState::Rejected;
                }
            }
        }
        self.request(Request::Decide {
            session,
            approve,
            reject,
        });
        self.unticked.clear();
        self.approval_cursor = 0;
        self.focus = Focus::Input;
    }

    fn panel_key(&mut self, key: KeyEvent) {
        let n = self.panel.changes.len();
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.panel.cursor = self.panel.cursor.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.panel.cursor = (self.panel.cursor + 1).min(n.saturating_sub(1))
            }
            KeyCode::Char('r') => match self.panel.changes.get(self.panel.cursor) {
                Some(c) if c.reverted_ms != 0 => {
                    self.error(format!("{} is already reverted", c.id))
                }
                Some(c) => {
                    let id = c.id.clone();
                    self.request(Request::Revert(id));
                }
                None => self.error("no change to revert"),
            },
            _ => {}
        }
    }

    fn input_key(&mut self, key: KeyEvent) {
        if key.code == KeyCode::Char('?') && self.input.is_empty() && key.modifiers.is_empty() {
            self.popup = Some(Popup::Shortcuts);
            return;
        }
        match self.input.key(key) {
            Edit::Submit(text) => self.submit(text),
            Edit::Changed => {
                if key.code == KeyCode::End && self.input.is_empty() {
                    self.scroll = 0;
                }
            }
            Edit::Ignored => {}
        }
    }

    /// Pasted text goes to the editor whatever has the focus.
    pub fn paste(&mut self, text: &str) {
        self.focus = Focus::Input;
        self.input.insert(text);
    }

    fn submit(&mut self, text: String) {
        let trimmed = text.trim();
        if let Some(command) = trimmed.strip_prefix('/') {
            self.command(command);
            return;
        }
        if !matches!(self.suite, Suite::Up(_)) {
            self.error("the suite is not running: start it with `stakpak up`");
            self.input.set_text(&text);
            return;
        }
        self.scroll = 0;
        match self.session.as_mut() {
            Some(s) if s.info.state.is_stopped() => {
                let request = StartRequest {
                    prompt: text.clone(),
                    session: s.info.id.clone(),
                    profile: self.profile.clone(),
                    model: self.model.clone(),
                    workdir: self.workdir.clone(),
                    ..StartRequest::default()
                };
                s.send_prompt(text);
                self.request(Request::Start(request));
            }
            Some(s) => {
                let state = s.info.state;
                self.input.set_text(&text);
                self.error(format!(
                    "the session is {state}: wait for it, /cancel it, or /new for another"
                ));
            }
            None => {
                let id = match new_session_id() {
                    Ok(id) => id,
                    Err(e) => {
                        self.input.set_text(&text);
                        self.error(format!("cannot start a session: {e}"));
                        return;
                    }
                };
                let mut session = Session::new(SessionInfo {
                    id: id.clone(),
                    title: text.lines().next().unwrap_or("").to_string(),
                    profile: self.profile.clone(),
                    model: self.model.clone(),
                    state: SessionState::Running,
                    ..SessionInfo::default()
                });
                session.pending_prompt = Some(text.clone());
                self.session = Some(session);
                self.panel.tasks.clear();
                self.panel.changes.clear();
                self.request(Request::StartNew(StartRequest {
                    prompt: text,
                    new_id: id,
                    profile: self.profile.clone(),
                    model: self.model.clone(),
                    // AGENTS.md and APPS.md of the folder the console was opened in, as
                    // `stakpak run` gives them.
                    context: crate::run::project_context(std::path::Path::new(&self.workdir)),
                    workdir: self.workdir.clone(),
                    ..StartRequest::default()
                }));
            }
        }
    }

    fn command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or("");
        let arg = words.next();
        match (name, arg) {
            ("help", _) => self.popup = Some(Popup::Help),
            ("quit" | "exit" | "q", _) => self.quit = true,
            ("new", _) => {
                self.session = None;
                self.unticked.clear();
                self.panel.tasks.clear();
                self.panel.changes.clear();
                self.focus = Focus::Input;
                self.scroll = 0;
                self.notice("new session: type a prompt to start it");
            }
            ("sessions", _) => self.request(Request::ListSessions(Purpose::Pick)),
            ("resume" | "attach", Some(id)) => self.attach(id),
            ("resume" | "attach", None) => {
                self.request(Request::ListSessions(Purpose::ResumeNewest))
            }
            ("status", _) => {
                self.popup = Some(Popup::Status);
                self.request(Request::Daemons);
            }
            ("model", Some(model)) => {
                self.model = model.to_string();
                self.notice(format!("model {model} for what is started from here"));
            }
            ("model", None) => {
                let model = self.effective_model();
                self.notice(format!("model: {model} (/model NAME changes it)"));
            }
            ("profiles" | "profile", Some(name)) => self.choose_profile(name),
            ("profiles" | "profile", None) => {
                let cursor = self
                    .profiles
                    .iter()
                    .position(|p| p.name == self.profile)
                    .unwrap_or(0);
                self.popup = Some(Popup::Profiles { cursor });
            }
            ("cancel", _) => match self.session_id() {
                Some(id) => {
                    let id = id.to_string();
                    self.request(Request::Cancel(id));
                }
                None => self.error("no session to cancel"),
            },
            ("panel", _) => self.toggle_panel(),
            _ => self.error(format!("unknown command /{name}: /help lists them")),
        }
    }

    fn choose_profile(&mut self, name: &str) {
        if !self.profiles.is_empty() && !self.profiles.iter().any(|p| p.name == name) {
            self.error(format!("no profile {name} in config.toml"));
            return;
        }
        self.profile = name.to_string();
        self.model.clear();
        self.notice(format!("profile {name} for sessions started from here"));
    }

    /// The model a new session would use: the override, the profile's, or unknown.
    pub fn effective_model(&self) -> String {
        if !self.model.is_empty() {
            return self.model.clone();
        }
        let profile = if self.profile.is_empty() {
            "default"
        } else {
            self.profile.as_str()
        };
        self.profiles
            .iter()
            .find(|p| p.name == profile)
            .map(|p| p.model.clone())
            .unwrap_or_else(|| "the profile's".to_string())
    }

    fn popup_key(&mut self, key: KeyEvent) {
        let Some(popup) = self.popup.as_mut() else {
            return;
        };
        let close = matches!(key.code, KeyCode::Esc | KeyCode::Char('q') | KeyCode::F(1));
        match popup {
            Popup::Sessions { list, cursor } => match key.code {
                KeyCode::Up | KeyCode::Char('k') => *cursor = cursor.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => {
                    *cursor = (*cursor + 1).min(list.len().saturating_sub(1))
                }
                KeyCode::Enter => {
                    let id = list.get(*cursor).map(|s| s.id.clone());
                    self.popup = None;
                    if let Some(id) = id {
                        self.attach(&id);
                    }
                }
                _ if close => self.popup = None,
                _ => {}
            },
            Popup::Profiles { cursor } => match key.code {
                KeyCode::Up | KeyCode::Char('k') => *cursor = cursor.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => {
                    *cursor = (*cursor + 1).min(self.profiles.len().saturating_sub(1))
                }
                KeyCode::Enter => {
                    let name = self.profiles.get(*cursor).map(|p| p.name.clone());
                    self.popup = None;
                    if let Some(name) = name {
                        self.choose_profile(&name);
                    }
                }
                _ if close => self.popup = None,
                _ => {}
            },
            _ => {
                if close || key.code == KeyCode::Enter || key.code == KeyCode::Char('?') {
                    self.popup = None;
                }
            }
        }
    }

    /// Rough dollars for the attached session's tokens at list prices, when the model is
    /// known.
    pub fn cost(&self) -> Option<f64> {
        let info = &self.session.as_ref()?.info;
        let (input, output) = price(&info.model)?;
        Some((info.input_tokens as f64 * input + info.output_tokens as f64 * output) / 1_000_000.0)
    }
}

/// List prices in dollars per million input and output tokens, by model family.
fn price(model: &str) -> Option<(f64, f64)> {
    let m = model.to_ascii_lowercase();
    let table: [(&str, (f64, f64)); 11] = [
        ("opus", (15.0, 75.0)),
        ("sonnet", (3.0, 15.0)),
        ("haiku", (0.8, 4.0)),
        ("gpt-4o-mini", (0.15, 0.6)),
        ("gpt-4o", (2.5, 10.0)),
        ("gpt-4.1-mini", (0.4, 1.6)),
        ("gpt-4.1", (2.0, 8.0)),
        ("gpt-5-mini", (0.25, 2.0)),
        ("gpt-5", (1.25, 10.0)),
        ("o3", (2.0, 8.0)),
        ("o4-mini", (1.1, 4.4)),
    ];
    table
        .iter()
        .find(|(family, _)| m.contains(family))
        .map(|(_, p)| *p)
}

/// `s-` and 12 hex digits, as the CLI names sessions it starts; no randomness is an error,
/// never an all-zero id.
fn new_session_id() -> Result<String, stakpak_util::RandomError> {
    stakpak_util::random::id("s")
}
