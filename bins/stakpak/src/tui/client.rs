//! The TUI's side of the bus: one task that owns the connection and turns the screen's
//! [`Request`]s into D-Bus calls, and the signals of the attached session into [`Event`]s.
//!
//! Every call runs as a task of its own, so a slow daemon never freezes the screen. The
//! attached session's signals are subscribed to *before* its history is read, so nothing
//! that happens in between is lost; the screen reconciles the two (`App::apply`).

use std::time::Duration;

use futures_util::StreamExt;
use stakpak_proto::{
    AgentProxy, ChangeInfo, Daemon, DaemonState, SandboxProxy, SessionDetail, SessionInfo,
    StartRequest, TaskInfo, ToolCallInfo, session_path,
};
use tokio::{sync::mpsc, task::JoinHandle};
use zbus::Connection;

use crate::{locate, status, suite::Layout};

/// What the screen asks of the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Find and connect to the suite (again).
    Connect,
    /// Follow a session: its signals, then its history.
    Attach(String),
    /// Read the attached session's history again.
    Resync(String),
    /// Follow a new session and start it (`request.new_id` is its id).
    StartNew(StartRequest),
    /// More of the attached session (a prompt, an answer).
    Start(StartRequest),
    /// The approval bar's verdict: these approved, those rejected.
    Decide {
        session: String,
        approve: Vec<String>,
        reject: Vec<String>,
    },
    Cancel(String),
    ListSessions(Purpose),
    /// Every daemon's `Status()`.
    Daemons,
    /// The side panel's session data: background tasks and the changeset.
    Panel(String),
    Revert(String),
}

/// Why the sessions were listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/sessions`: let the user pick one.
    Pick,
    /// `/resume` without an id: attach the newest.
    ResumeNewest,
}

/// One daemon's line in the side panel and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRow {
    pub name: String,
    /// As the daemon says; none when it did not answer.
    pub state: Option<DaemonState>,
    /// Uptime and pid, or why it did not answer.
    pub detail: String,
}

impl DaemonRow {
    pub fn is_running(&self) -> bool {
        self.state == Some(DaemonState::Running)
    }

    /// The state as the console shows it: the daemon's word, or `down`.
    pub fn state_name(&self) -> &'static str {
        self.state.map_or("down", DaemonState::as_str)
    }
}

/// What the suite told the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Connected(String),
    /// The suite cannot be reached; why.
    Down(String),
    /// A session's history; `attach`: it is the newly attached session.
    Detail {
        detail: Box<SessionDetail>,
        attach: bool,
    },
    Delta {
        session: String,
        text: String,
    },
    Call(Box<ToolCallInfo>),
    Changed(Box<SessionInfo>),
    Sessions(Vec<SessionInfo>, Purpose),
    Daemons(Vec<DaemonRow>),
    Panel {
        session: String,
        tasks: Vec<TaskInfo>,
        changes: Vec<ChangeInfo>,
    },
    /// The agent did not take a prompt; the console gives it back to the editor.
    StartFailed {
        session: String,
        prompt: String,
        error: String,
    },
    Notice(String),
    Error(String),
}

/// The worker: owns the connection and the attached session's signal task.
#[derive(Debug)]
pub struct Worker {
    bus_address: Option<String>,
    layout: Layout,
    conn: Option<Connection>,
    events: mpsc::UnboundedSender<Event>,
    follow: Option<JoinHandle<()>>,
}

/// How long a call may take before the screen says so.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Worker {
    pub fn new(
        bus_address: Option<String>,
        layout: Layout,
        events: mpsc::UnboundedSender<Event>,
    ) -> Worker {
        Worker {
            bus_address,
            layout,
            conn: None,
            events,
            follow: None,
        }
    }

    /// Serves requests until the screen goes away.
    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        while let Some(request) = requests.recv().await {
            self.handle(request).await;
        }
        if let Some(follow) = self.follow.take() {
            follow.abort();
        }
    }

    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    async fn handle(&mut self, request: Request) {
        if request == Request::Connect {
            self.connect().await;
            return;
        }
        let Some(conn) = self.conn.clone() else {
            self.send(Event::Down("not connected to the suite".into()));
            return;
        };
        let events = self.events.clone();
        match request {
            Request::Connect => {}
            Request::Attach(id) => {
                self.follow_session(&conn, &id).await;
                spawn_call(events, async move {
                    let agent = AgentProxy::new(&conn).await?;
                    let detail = agent.show_session(id).await?;
                    Ok(vec![Event::Detail {
                        detail: Box::new(detail),
                        attach: true,
                    }])
                });
            }
            Request::StartNew(start) | Request::Start(start) => {
                if !start.new_id.is_empty() {
                    self.follow_session(&conn, &start.new_id).await;
                }
                spawn_call(events, async move {
                    let agent = AgentProxy::new(&conn).await?;
                    let session = if start.new_id.is_empty() {
                        start.session.clone()
                    } else {
                        start.new_id.clone()
                    };
                    let prompt = start.prompt.clone();
                    Ok(vec![match agent.start(start).await {
                        Ok(info) => Event::Changed(Box::new(info)),
                        Err(e) => Event::StartFailed {
                            session,
                            prompt,
                            error: e.to_string(),
                        },
                    }])
                });
            }
            Request::Resync(id) => spawn_call(events, async move {
                let agent = AgentProxy::new(&conn).await?;
                let detail = agent.show_session(id).await?;
                Ok(vec![Event::Detail {
                    detail: Box::new(detail),
                    attach: false,
                }])
            }),
            Request::Decide {
                session,
                approve,
                reject,
            } => spawn_call(events, async move {
                let agent = AgentProxy::new(&conn).await?;
                match decide(&agent, &session, approve, reject).await {
                    Ok(calls) => Ok(calls
                        .into_iter()
                        .map(|c| Event::Call(Box::new(c)))
                        .collect()),
                    // The screen showed the decision already; put back what the agent has.
                    Err(e) => {
                        let mut out = vec![describe_error(&e)];
                        if let Ok(detail) = agent.show_session(session).await {
                            out.push(Event::Detail {
                                detail: Box::new(detail),
                                attach: false,
                            });
                        }
                        Ok(out)
                    }
                }
            }),
            Request::Cancel(id) => spawn_call(events, async move {
                let agent = AgentProxy::new(&conn).await?;
                let info = agent.cancel(id).await?;
                Ok(vec![Event::Changed(Box::new(info))])
            }),
            Request::ListSessions(purpose) => spawn_call(events, async move {
                let agent = AgentProxy::new(&conn).await?;
                Ok(vec![Event::Sessions(agent.list_sessions().await?, purpose)])
            }),
            Request::Daemons => {
                tokio::spawn(async move {
                    let event = daemons(&conn).await;
                    let _ = events.send(event);
                });
            }
            Request::Panel(session) => spawn_call(events, async move {
                let sandbox = SandboxProxy::new(&conn).await?;
                let tasks = sandbox.list_tasks(session.clone()).await?;
                let changes = sandbox.changes(session.clone()).await?;
                Ok(vec![Event::Panel {
                    session,
                    tasks,
                    changes,
                }])
            }),
            Request::Revert(change) => spawn_call(events, async move {
                let sandbox = SandboxProxy::new(&conn).await?;
                let done = sandbox.revert(change).await?;
                Ok(vec![Event::Notice(format!(
                    "reverted {} ({} {})",
                    done.id, done.kind, done.path
                ))])
            }),
        }
    }

    async fn connect(&mut self) {
        let target = match locate::locate(self.bus_address.as_deref(), &self.layout) {
            Ok(t) => t,
            Err(e) => {
                self.conn = None;
                self.send(Event::Down(format!("{e:#}")));
                return;
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, target.connect()).await {
            Ok(Ok(conn)) => {
                self.conn = Some(conn);
                self.send(Event::Connected(target.describe()));
            }
            Ok(Err(e)) => {
                self.conn = None;
                self.send(Event::Down(format!("{e:#}")));
            }
            Err(_) => {
                self.conn = None;
                self.send(Event::Down(format!("no answer from {}", target.describe())));
            }
        }
    }

    /// Subscribes to a session's signals, replacing the previous subscription; returns once
    /// the bus daemon has the match rules, so no signal sent afterwards is missed.
    async fn follow_session(&mut self, conn: &Connection, id: &str) {
        if let Some(old) = self.follow.take() {
            old.abort();
        }
        let subscribed = async {
            let proxy = AgentProxy::builder(conn)
                .path(session_path(id))
                .build()
                .await?;
            let deltas = proxy.receive_text_delta().await?;
            let calls = proxy.receive_tool_call().await?;
            let changes = proxy.receive_session_changed().await?;
            zbus::Result::Ok((deltas, calls, changes))
        };
        let (mut deltas, mut calls, mut changes) = match subscribed.await {
            Ok(s) => s,
            Err(e) => {
                self.send(Event::Error(format!("cannot follow session {id}: {e}")));
                return;
            }
        };
        let events = self.events.clone();
        self.follow = Some(tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    Some(s) = deltas.next() => s.args().ok().map(|a| Event::Delta {
                        session: a.session.to_string(),
                        text: a.text.to_string(),
                    }),
                    Some(s) = calls.next() => s.args().ok().map(|a| Event::Call(Box::new(a.call))),
                    Some(s) = changes.next() => s.args().ok().map(|a| Event::Changed(Box::new(a.info))),
                    else => break,
                };
                if let Some(event) = event
                    && events.send(event).is_err()
                {
                    break;
                }
            }
        }));
    }
}

/// Approves and rejects by id. An empty list means "all" to the agent, so only what was
/// chosen is sent.
async fn decide(
    agent: &AgentProxy<'_>,
    session: &str,
    approve: Vec<String>,
    reject: Vec<String>,
) -> Result<Vec<ToolCallInfo>, stakpak_proto::Error> {
    let mut out = Vec::new();
    if !approve.is_empty() {
        out.extend(agent.approve(session.to_string(), approve).await?);
    }
    if !reject.is_empty() {
        out.extend(
            agent
                .reject(
                    session.to_string(),
                    reject,
                    "rejected by the operator".into(),
                )
                .await?,
        );
    }
    Ok(out)
}

/// Runs one call as a task; its events, or its error, go to the screen.
fn spawn_call<F>(events: mpsc::UnboundedSender<Event>, call: F)
where
    F: Future<Output = Result<Vec<Event>, stakpak_proto::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let out = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => vec![describe_error(&e)],
            Err(_) => vec![Event::Error(format!(
                "no answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))],
        };
        for event in out {
            let _ = events.send(event);
        }
    });
}

/// A failed call: the suite gone (the screen then says how to start it), a daemon off the
/// bus, or the daemon's own refusal.
fn describe_error(e: &stakpak_proto::Error) -> Event {
    match e {
        stakpak_proto::Error::ZBus(z) if status::is_absent(z) => {
            Event::Error(format!("a daemon of the suite is not running: {z}"))
        }
        stakpak_proto::Error::ZBus(
            z @ (zbus::Error::InputOutput(_) | zbus::Error::Handshake(_) | zbus::Error::Address(_)),
        ) => Event::Down(format!("the connection to the suite broke: {z}")),
        other => Event::Error(other.to_string()),
    }
}

async fn daemons(conn: &Connection) -> Event {
    let mut rows = Vec::new();
    for daemon in Daemon::ALL {
        let row = match status::status_of(conn, daemon).await {
            Ok(s) => DaemonRow {
                name: daemon.short_name().to_string(),
                state: Some(s.state),
                detail: format!("pid {} · up {}", s.pid, uptime(s.uptime_ms)),
            },
            Err(e) => DaemonRow {
                name: daemon.short_name().to_string(),
                state: None,
                detail: e.to_string(),
            },
        };
        rows.push(row);
    }
    // No daemon answering may mean the bus itself is gone (the suite was stopped): then
    // the console says so and looks for the suite again.
    if rows.iter().all(|r| r.state.is_none()) {
        let ping = async { zbus::fdo::DBusProxy::new(conn).await?.get_id().await };
        match tokio::time::timeout(CALL_TIMEOUT, ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Event::Down(format!("the connection to the suite broke: {e}")),
            Err(_) => return Event::Down("the suite's bus does not answer".into()),
        }
    }
    Event::Daemons(rows)
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}
