//! A Slack double: the Web API methods the Slack channel calls and a Socket Mode WebSocket,
//! on 127.0.0.1, scripted from the test and recording every call and acknowledgement.
//!
//! The Web API speaks Slack's shapes (`{"ok":true,…}`, `{"ok":false,"error":"invalid_auth"}`
//! with HTTP 200), so a real client library talks to it unchanged once pointed at
//! [`SlackDouble::api_url`]. `apps.connections.open` (app token) hands out a `ws://` URL of
//! the double's own Socket Mode server, which greets with `hello`, delivers `events_api` and
//! `interactive` envelopes and records the client's acks by `envelope_id`.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;

/// The team, app and bot user the double pretends to be.
pub const SLACK_TEAM_ID: &str = "T0DOUBLE";
pub const SLACK_APP_ID: &str = "A0DOUBLE";
pub const SLACK_BOT_USER_ID: &str = "U0BOT";
const BOT_ID: &str = "B0BOT";
const TEAM_ID: &str = SLACK_TEAM_ID;
const APP_ID: &str = SLACK_APP_ID;
const BOT_USER_ID: &str = SLACK_BOT_USER_ID;

/// One Web API call as the double received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// `chat.postMessage`, `apps.connections.open`, …
    pub method: String,
    /// The bearer token it came with, if any.
    pub token: Option<String>,
    /// The arguments: the JSON body, or the form/query fields as a JSON object of strings.
    pub args: Value,
    /// Whether the double answered `ok: true`.
    pub ok: bool,
}

/// A message the double holds, as `chat.postMessage` made it and `chat.update` changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Option<Value>,
}

#[derive(Debug)]
enum Command {
    Send(String),
    /// Drop the TCP connection without a close frame, as a network failure would.
    Drop,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<ApiCall>,
    acks: Vec<Value>,
    posted: Vec<Posted>,
    /// Live Socket Mode connections, oldest first.
    connections: Vec<(u64, mpsc::UnboundedSender<Command>)>,
    connections_opened: u32,
    /// Tickets handed out by `apps.connections.open` and not used yet.
    tickets: Vec<String>,
    next_id: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    bot_token: String,
    app_token: String,
    ws_addr: SocketAddr,
    /// The `ts` clock of posted messages.
    ts_base: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self) -> u64 {
        let mut state = self.lock();
        state.next_id += 1;
        state.next_id
    }

    fn next_ts(&self) -> String {
        let n = self.next_id();
        format!("{}.{:06}", self.ts_base, n)
    }
}

/// The Slack double; stops when dropped.
#[derive(Debug)]
pub struct SlackDouble {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SlackDouble {
    /// Starts the double accepting `bot_token` (`xoxb-…`) on the Web API and `app_token`
    /// (`xapp-…`) on `apps.connections.open`.
    pub fn start(bot_token: &str, app_token: &str) -> SlackDouble {
        let std_api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_ws = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_api.set_nonblocking(true).unwrap();
        std_ws.set_nonblocking(true).unwrap();
        let api_addr = std_api.local_addr().unwrap();
        let ws_addr = std_ws.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            bot_token: bot_token.to_owned(),
            app_token: app_token.to_owned(),
            ws_addr,
            ts_base: 1_700_000_000,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("slack-double".into())
            .spawn(move || {
                let rt = crate::runtime();
                rt.block_on(async move {
                    let api = TcpListener::from_std(std_api).unwrap();
                    let ws = TcpListener::from_std(std_ws).unwrap();
                    let api_task = tokio::spawn(serve_api(api, thread_shared.clone()));
                    let ws_task = tokio::spawn(serve_ws(ws, thread_shared));
                    let _ = stopped.await;
                    api_task.abort();
                    ws_task.abort();
                });
            })
            .unwrap();
        SlackDouble {
            shared,
            api_addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The Web API base URL, without a trailing slash: `http://127.0.0.1:PORT/api`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.api_addr)
    }

    /// Every Web API call so far, in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.shared.lock().calls.clone()
    }

    /// The calls of one method, in order.
    pub fn calls_to(&self, method: &str) -> Vec<ApiCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Every acknowledgement the client sent on the socket (the JSON it sent), in order.
    pub fn acks(&self) -> Vec<Value> {
        self.shared.lock().acks.clone()
    }

    /// Whether the envelope `envelope_id` was acknowledged.
    pub fn acked(&self, envelope_id: &str) -> bool {
        self.acks()
            .iter()
            .any(|a| a["envelope_id"].as_str() == Some(envelope_id))
    }

    /// The messages posted (and updated) so far.
    pub fn posted(&self) -> Vec<Posted> {
        self.shared.lock().posted.clone()
    }

    /// Successful `apps.connections.open` calls so far.
    pub fn connections_opened(&self) -> u32 {
        self.shared.lock().connections_opened
    }

    /// Socket Mode connections currently open.
    pub fn live_connections(&self) -> usize {
        self.shared.lock().connections.len()
    }

    /// Waits until `cond` holds, polling; panics with `what` after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&SlackDouble) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            if Instant::now() > deadline {
                panic!(
                    "slack double: timed out waiting for {what}; calls: {:#?}",
                    self.calls()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the `n`th (1-based) call of `method` and returns it.
    pub fn wait_call(&self, method: &str, n: usize, timeout: Duration) -> ApiCall {
        self.wait_until(&format!("{n} call(s) to {method}"), timeout, |d| {
            d.calls_to(method).len() >= n
        });
        self.calls_to(method)[n - 1].clone()
    }

    /// Sends an `events_api` envelope carrying `event` (the inner event, e.g. from
    /// [`app_mention`] or [`message_im`]) on the newest live connection, waiting up to 10 s
    /// for one; returns the envelope id.
    pub fn send_event(&self, event: Value) -> String {
        let envelope_id = format!("env-{}", self.shared.next_id());
        let event_id = format!("Ev{:08}", self.shared.next_id());
        let envelope = json!({
            "envelope_id": envelope_id,
            "type": "events_api",
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": {
                "token": "verification-token",
                "team_id": TEAM_ID,
                "api_app_id": APP_ID,
                "event": event,
                "type": "event_callback",
                "event_id": event_id,
                "event_time": 1_700_000_000,
                "authorizations": [{
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": true,
                    "is_enterprise_install": false
                }],
                "is_ext_shared_channel": false
            }
        });
        self.send_raw(envelope.to_string());
        envelope_id
    }

    /// Presses a button: an `interactive` envelope with a `block_actions` payload for the
    /// message `message_ts` in `channel`; returns the envelope id.
    pub fn press_button(
        &self,
        action_id: &str,
        value: &str,
        channel: &str,
        message_ts: &str,
        user: &str,
    ) -> String {
        let envelope_id = format!("env-{}", self.shared.next_id());
        let message = self
            .posted()
            .into_iter()
            .find(|p| p.channel == channel && p.ts == message_ts);
        let mut payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user, "name": user, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": false
            },
            "trigger_id": format!("{}.trigger", self.shared.next_id()),
            "team": {"id": TEAM_ID, "domain": "double"},
            "channel": {"id": channel, "name": "double"},
            "response_url": format!("http://{}/response", self.api_addr),
            "actions": [{
                "type": "button",
                "action_id": action_id,
                "block_id": "approval",
                "text": {"type": "plain_text", "text": action_id, "emoji": true},
                "value": value,
                "action_ts": format!("{}.000000", 1_700_000_100)
            }]
        });
        if let Some(m) = message {
            let mut msg = json!({
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "ts": m.ts,
                "text": m.text,
            });
            if let Some(blocks) = m.blocks {
                msg["blocks"] = blocks;
            }
            if let Some(t) = m.thread_ts {
                msg["thread_ts"] = Value::String(t);
            }
            payload["message"] = msg;
        }
        let envelope = json!({
            "envelope_id": envelope_id,
            "type": "interactive",
            "accepts_response_payload": false,
            "payload": payload
        });
        self.send_raw(envelope.to_string());
        envelope_id
    }

    /// Sends Slack's `disconnect` message (`refresh_requested`) on every live connection.
    pub fn send_disconnect(&self) {
        let message = json!({
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": {"host": "slack-double"}
        })
        .to_string();
        for (_, tx) in self.shared.lock().connections.iter() {
            let _ = tx.send(Command::Send(message.clone()));
        }
    }

    /// Drops every live Socket Mode connection without a close frame.
    pub fn drop_connection(&self) {
        let mut state = self.shared.lock();
        for (_, tx) in state.connections.drain(..) {
            let _ = tx.send(Command::Drop);
        }
    }

    /// Sends `text` as it is on the newest live connection, waiting up to 10 s for one.
    pub fn send_raw(&self, text: String) {
        self.wait_until(
            "a live socket mode connection",
            Duration::from_secs(10),
            |d| d.live_connections() > 0,
        );
        let state = self.shared.lock();
        if let Some((_, tx)) = state.connections.last() {
            let _ = tx.send(Command::Send(text));
        }
    }
}

impl Drop for SlackDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An `app_mention` event: `text` by `user` in `channel` at `ts`, in the thread `thread_ts`
/// when it is a reply.
pub fn app_mention(
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
) -> Value {
    message_event(
        "app_mention",
        channel,
        user,
        &format!("<@{BOT_USER_ID}> {text}"),
        ts,
        thread_ts,
    )
}

/// A `message` event in a direct message (`channel_type` `im`).
pub fn message_im(
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
) -> Value {
    let mut event = message_event("message", channel, user, text, ts, thread_ts);
    event["channel_type"] = Value::String("im".to_owned());
    event
}

/// The fields every message-like event carries, with `thread_ts` when it is in a thread.
fn message_event(
    kind: &str,
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
) -> Value {
    let mut event = json!({
        "type": kind,
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM_ID,
    });
    if let Some(t) = thread_ts {
        event["thread_ts"] = Value::String(t.to_owned());
    }
    event
}

async fn serve_api(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_api(req, &shared).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn parse_form(text: &str) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(percent_decode(k), Value::String(percent_decode(v)));
    }
    map
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && s.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error(code: &str) -> Value {
    json!({"ok": false, "error": code})
}

async fn handle_api(req: Request<hyper::body::Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut args = serde_json::Map::new();
    args.extend(parse_form(&query));
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) {
            args.extend(map);
        }
    } else if !body.is_empty() {
        args.extend(parse_form(&String::from_utf8_lossy(&body)));
    }
    // Slack also accepts the token as an argument.
    let token = token.or_else(|| args.get("token").and_then(Value::as_str).map(str::to_owned));
    let method = path.strip_prefix("/api/").unwrap_or(&path).to_owned();
    let args = Value::Object(args);
    let reply = answer(&method, token.as_deref(), &args, shared);
    let ok = reply["ok"].as_bool().unwrap_or(false);
    shared.lock().calls.push(ApiCall {
        method,
        token,
        args,
        ok,
    });
    json_response(reply)
}

fn answer(method: &str, token: Option<&str>, args: &Value, shared: &Shared) -> Value {
    if method == "apps.connections.open" {
        if token != Some(shared.app_token.as_str()) {
            return error(if token.is_some_and(|t| t.starts_with("xapp-")) {
                "invalid_auth"
            } else {
                "not_allowed_token_type"
            });
        }
        let ticket = format!("ticket-{}", shared.next_id());
        let mut state = shared.lock();
        state.connections_opened += 1;
        state.tickets.push(ticket.clone());
        return json!({
            "ok": true,
            "url": format!("ws://{}/socket?ticket={ticket}&app_id={APP_ID}", shared.ws_addr)
        });
    }
    match token {
        None => return error("not_authed"),
        Some(t) if t != shared.bot_token => return error("invalid_auth"),
        Some(_) => {}
    }
    let str_arg = |name: &str| args.get(name).and_then(Value::as_str).map(str::to_owned);
    match method {
        "auth.test" => json!({
            "ok": true,
            "url": "https://double.slack.com/",
            "team": "Double",
            "user": "stakpak",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": false
        }),
        "chat.postMessage" => {
            let Some(channel) = str_arg("channel") else {
                return error("channel_not_found");
            };
            let text = str_arg("text").unwrap_or_default();
            let blocks = args.get("blocks").cloned().filter(|b| !b.is_null());
            if text.is_empty() && blocks.is_none() {
                return error("no_text");
            }
            let ts = shared.next_ts();
            let thread_ts = str_arg("thread_ts");
            shared.lock().posted.push(Posted {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts: thread_ts.clone(),
                text: text.clone(),
                blocks: blocks.clone(),
            });
            let mut message = json!({
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "text": text,
                "ts": ts,
                "team": TEAM_ID,
            });
            if let Some(b) = blocks {
                message["blocks"] = b;
            }
            if let Some(t) = thread_ts {
                message["thread_ts"] = Value::String(t);
            }
            json!({"ok": true, "channel": channel, "ts": ts, "message": message})
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (str_arg("channel"), str_arg("ts")) else {
                return error("invalid_arguments");
            };
            let text = str_arg("text").unwrap_or_default();
            let blocks = args.get("blocks").cloned().filter(|b| !b.is_null());
            let mut state = shared.lock();
            let Some(posted) = state
                .posted
                .iter_mut()
                .find(|p| p.channel == channel && p.ts == ts)
            else {
                return error("message_not_found");
            };
            posted.text = text.clone();
            posted.blocks = blocks.clone();
            let mut message = json!({"text": text, "user": BOT_USER_ID, "bot_id": BOT_ID});
            if let Some(b) = blocks {
                message["blocks"] = b;
            }
            json!({"ok": true, "channel": channel, "ts": ts, "text": text, "message": message})
        }
        "reactions.add" => {
            if str_arg("channel").is_none() || str_arg("timestamp").is_none() {
                return error("invalid_arguments");
            }
            if str_arg("name").is_none() {
                return error("invalid_name");
            }
            json!({"ok": true})
        }
        "conversations.replies" => {
            let (Some(channel), Some(ts)) = (str_arg("channel"), str_arg("ts")) else {
                return error("invalid_arguments");
            };
            let state = shared.lock();
            let messages: Vec<Value> = state
                .posted
                .iter()
                .filter(|p| p.channel == channel && (p.ts == ts || p.thread_ts.as_deref() == Some(&ts)))
                .map(|p| {
                    json!({
                        "type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID,
                        "text": p.text, "ts": p.ts, "thread_ts": p.thread_ts.clone().unwrap_or_else(|| p.ts.clone())
                    })
                })
                .collect();
            json!({"ok": true, "messages": messages, "has_more": false})
        }
        _ => error("unknown_method"),
    }
}

async fn serve_ws(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move { socket(stream, shared).await });
    }
}

/// One Socket Mode connection: checks the ticket, says hello, then forwards the test's
/// commands and records what the client sends.
async fn socket(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut ticket_ok = false;
    // The error type is tungstenite's, sized as it is.
    #[allow(clippy::result_large_err)]
    let check =
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            let query = req.uri().query().unwrap_or("");
            let ticket = parse_form(query)
                .get("ticket")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_default();
            let mut state = shared.lock();
            if let Some(i) = state.tickets.iter().position(|t| *t == ticket) {
                state.tickets.remove(i);
                ticket_ok = true;
                Ok(resp)
            } else {
                let mut refused =
                    tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(Some(
                        "invalid ticket".into(),
                    ));
                *refused.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                Err(refused)
            }
        };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    if !ticket_ok {
        return;
    }
    let (mut tx, mut rx) = ws.split();
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let id = shared.next_id();
    let num = {
        let mut state = shared.lock();
        state.connections.push((id, cmd_tx));
        state.connections.len()
    };
    let hello = json!({
        "type": "hello",
        "num_connections": num,
        "debug_info": {"host": "slack-double", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": APP_ID}
    });
    if tx
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        forget(&shared, id);
        return;
    }
    loop {
        tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                Some(Command::Send(text)) => {
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Command::Drop) | None => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(value) = serde_json::from_str::<Value>(text.as_str()) {
                        shared.lock().acks.push(value);
                    }
                }
                Some(Ok(Message::Ping(body))) => {
                    let _ = tx.send(Message::Pong(body)).await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    forget(&shared, id);
}

fn forget(shared: &Shared, id: u64) {
    shared.lock().connections.retain(|(c, _)| *c != id);
}
