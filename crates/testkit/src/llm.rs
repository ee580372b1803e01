//! An LLM provider double: a real HTTP/1.1 server on 127.0.0.1 that speaks OpenAI chat
//! completions (`POST /v1/chat/completions`) and Anthropic Messages (`POST /v1/messages`),
//! streamed as the providers stream them, and answers by a script of turns. Every request
//! is recorded, so a test can assert on exactly what reached the model.
//!
//! Each request consumes the next turn of the script, whether it matches the turn's
//! expectations or not; a request that fails authentication consumes none.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as it reached the double.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request path, e.g. `/v1/messages`.
    pub path: String,
    /// Header names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body parsed, or `Null` if it is not JSON.
    pub json: Value,
    /// `Ok` if the request met its turn's expectations (and the key), else why not.
    pub matched: Result<(), String>,
}

impl Recorded {
    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One step of the script: what the request must contain, and the answer.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Substrings the raw request body must contain.
    pub expect: Vec<String>,
    pub reply: Reply,
    /// How long to wait before answering.
    pub delay: Duration,
}

/// How the double answers a turn, in the wire format of the endpoint that was called.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Text, split into `chunks` deltas when streamed.
    Text { text: String, chunks: usize },
    /// Text (may be empty) and then tool calls: `(name, arguments)` with the arguments as
    /// raw text, valid JSON or not. Each call's arguments stream in two fragments.
    ToolCalls {
        text: String,
        calls: Vec<(String, String)>,
    },
    /// An error status with this body (sent as JSON) and, optionally, `retry-after`.
    Status {
        code: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// 404 naming the requested model, in the provider's own error format.
    UnknownModel,
    /// A stream that starts well and then sends an event whose data is cut-off JSON.
    MalformedSse,
    /// A stream that starts well and ends without its terminator.
    TruncatedStream,
    /// Never answers (not even the status line); the connection stays open.
    Hang,
    /// Starts the stream with this text and then falls silent, connection open.
    Stall { text: String },
}

impl Turn {
    pub fn new(reply: Reply) -> Turn {
        Turn {
            expect: Vec::new(),
            reply,
            delay: Duration::ZERO,
        }
    }

    /// Answers `text` in three deltas (fewer if it is shorter).
    pub fn text(text: impl Into<String>) -> Turn {
        Turn::new(Reply::Text {
            text: text.into(),
            chunks: 3,
        })
    }

    /// Answers several tool calls in one turn; ids are generated.
    pub fn tools(calls: Vec<(&str, Value)>) -> Turn {
        Turn::new(Reply::ToolCalls {
            text: String::new(),
            calls: calls
                .into_iter()
                .map(|(name, arguments)| (name.to_owned(), arguments.to_string()))
                .collect(),
        })
    }

    /// Tool calls whose arguments are sent exactly as given (e.g. invalid JSON).
    pub fn raw_tools(calls: Vec<(&str, &str)>) -> Turn {
        Turn::new(Reply::ToolCalls {
            text: String::new(),
            calls: calls
                .into_iter()
                .map(|(name, arguments)| (name.to_owned(), arguments.to_owned()))
                .collect(),
        })
    }

    /// Answers `code` with `body`.
    pub fn status(code: u16, body: impl Into<String>) -> Turn {
        Turn::new(Reply::Status {
            code,
            body: body.into(),
            retry_after: None,
        })
    }

    pub fn unknown_model() -> Turn {
        Turn::new(Reply::UnknownModel)
    }

    pub fn malformed_sse() -> Turn {
        Turn::new(Reply::MalformedSse)
    }

    pub fn truncated() -> Turn {
        Turn::new(Reply::TruncatedStream)
    }

    pub fn hang() -> Turn {
        Turn::new(Reply::Hang)
    }

    pub fn stall(text: impl Into<String>) -> Turn {
        Turn::new(Reply::Stall { text: text.into() })
    }

    /// The request body must contain `needle`.
    pub fn expecting(mut self, needle: &str) -> Turn {
        self.expect.push(needle.to_owned());
        self
    }

    /// Waits `delay` before answering.
    pub fn after(mut self, delay: Duration) -> Turn {
        self.delay = delay;
        self
    }

    /// Splits a text reply into `chunks` deltas.
    pub fn in_chunks(mut self, chunks: usize) -> Turn {
        if let Reply::Text { chunks: c, .. } = &mut self.reply {
            *c = chunks;
        }
        self
    }

    /// Text before a turn's tool calls.
    pub fn with_text(mut self, text: &str) -> Turn {
        if let Reply::ToolCalls { text: t, .. } = &mut self.reply {
            text.clone_into(t);
        }
        self
    }

    /// Adds `retry-after: value` to a status reply.
    pub fn retry_after(mut self, value: &str) -> Turn {
        if let Reply::Status { retry_after, .. } = &mut self.reply {
            *retry_after = Some(value.to_owned());
        }
        self
    }
}

/// The running double. Dropping it stops the server.
#[derive(Debug)]
pub struct LlmDouble {
    addr: SocketAddr,
    shared: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct State {
    script: VecDeque<Turn>,
    requests: Vec<Recorded>,
    key: Option<String>,
    next_id: u64,
}

impl LlmDouble {
    /// Starts a double that accepts any key (or none).
    pub fn start(script: Vec<Turn>) -> LlmDouble {
        LlmDouble::launch(script, None)
    }

    /// Starts a double that answers 401 unless the request carries `key`
    /// (`Authorization: Bearer` for OpenAI, `x-api-key` for Anthropic). The 401's message
    /// echoes the key it got, as OpenAI's does, so tests can check that clients mask it.
    pub fn with_key(script: Vec<Turn>, key: &str) -> LlmDouble {
        LlmDouble::launch(script, Some(key.to_owned()))
    }

    fn launch(script: Vec<Turn>, key: Option<String>) -> LlmDouble {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let shared = Arc::new(Mutex::new(State {
            script: script.into(),
            requests: Vec::new(),
            key,
            next_id: 0,
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("llm-double".to_owned())
            .spawn(move || {
                let rt = crate::runtime();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("a tokio listener");
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                if let Ok((stream, _)) = accepted {
                                    tokio::spawn(connection(stream, state.clone()));
                                }
                            }
                        }
                    }
                });
                // Dropping the runtime cancels connections still hanging or stalled.
                drop(rt);
            })
            .expect("the double's thread");
        LlmDouble {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL for either provider.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Appends `turn` to the script.
    pub fn push(&self, turn: Turn) {
        self.shared.lock().unwrap().script.push_back(turn);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Turns not consumed yet.
    pub fn remaining(&self) -> usize {
        self.shared.lock().unwrap().script.len()
    }
}

impl Drop for LlmDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The two wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

/// A parsed HTTP request.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The most a request's head may hold.
const MAX_HEAD: usize = 64 << 10;

async fn connection(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let request = match read_request(&mut stream).await {
        Ok(request) => request,
        Err(problem) => {
            let _ = write_json(&mut stream, 400, &json!({"error": problem}), None).await;
            return;
        }
    };
    let (api, turn, body, model) = match decide(&state, request) {
        Decision::Refuse { code, body } => {
            let _ = write_json(&mut stream, code, &body, None).await;
            return;
        }
        Decision::Answer {
            api,
            turn,
            body,
            model,
        } => (api, turn, body, model),
    };
    if !turn.delay.is_zero() {
        tokio::time::sleep(turn.delay).await;
    }
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let id = {
        let mut state = state.lock().unwrap();
        state.next_id += 1;
        state.next_id
    };
    let answer = Answer {
        api,
        model,
        input_tokens: (body.len() / 4) as u64,
        id,
        include_usage: json["stream_options"]["include_usage"] == true,
    };
    let _ = answer
        .reply(&mut stream, &turn.reply, json["stream"] == true)
        .await;
    let _ = stream.shutdown().await;
}

/// What to do with a request.
enum Decision {
    Refuse {
        code: u16,
        body: Value,
    },
    Answer {
        api: Api,
        turn: Turn,
        body: String,
        model: String,
    },
}

/// Records the request and picks its turn, or refuses it.
fn decide(state: &Mutex<State>, request: Request) -> Decision {
    let body = String::from_utf8_lossy(&request.body).into_owned();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let model = json["model"].as_str().unwrap_or_default().to_owned();
    let mut state = state.lock().unwrap();
    let state = &mut *state;
    let refuse = |state: &mut State, code: u16, problem: String, body_json: Value| {
        record_into(state, &request, &body, &json, Err(problem));
        Decision::Refuse {
            code,
            body: body_json,
        }
    };
    let api = match request.path.as_str() {
        "/v1/chat/completions" => Api::OpenAi,
        "/v1/messages" => Api::Anthropic,
        other => {
            let problem = format!("no such endpoint: {other}");
            let body = json!({"error": {"message": problem}});
            return refuse(state, 404, problem, body);
        }
    };
    if request.method != "POST" {
        let problem = format!("method {} not allowed", request.method);
        let body = error_body(api, "invalid_request_error", &problem);
        return refuse(state, 405, problem, body);
    }
    if let Some(key) = &state.key {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let presented = match api {
            Api::OpenAi => {
                header("authorization").map(|v| v.strip_prefix("Bearer ").unwrap_or(&v).to_owned())
            }
            Api::Anthropic => header("x-api-key"),
        };
        if presented.as_deref() != Some(key.as_str()) {
            let message = match presented {
                Some(p) => format!("Incorrect API key provided: {p}"),
                None => "No API key provided".to_owned(),
            };
            let kind = match api {
                Api::OpenAi => "invalid_api_key",
                Api::Anthropic => "authentication_error",
            };
            let body = error_body(api, kind, &message);
            return refuse(state, 401, "unauthorized".to_owned(), body);
        }
    }
    let Some(turn) = state.script.pop_front() else {
        let body = error_body(api, "api_error", "script exhausted");
        return refuse(state, 500, "script exhausted".to_owned(), body);
    };
    if let Some(needle) = turn.expect.iter().find(|n| !body.contains(n.as_str())) {
        let problem = format!("the request does not contain {needle:?}");
        let body = error_body(api, "invalid_request_error", &problem);
        return refuse(state, 400, problem, body);
    }
    record_into(state, &request, &body, &json, Ok(()));
    Decision::Answer {
        api,
        turn,
        body,
        model,
    }
}

fn record_into(
    state: &mut State,
    request: &Request,
    body: &str,
    json: &Value,
    matched: Result<(), String>,
) {
    state.requests.push(Recorded {
        path: request.path.clone(),
        headers: request.headers.clone(),
        body: body.to_owned(),
        json: json.clone(),
        matched,
    });
}

/// An error body in the provider's format.
fn error_body(api: Api, kind: &str, message: &str) -> Value {
    match api {
        Api::OpenAi => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": kind}})
        }
        Api::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
    }
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too long".to_owned());
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request head ended".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = match headers.iter().find(|(n, _)| n == "content-length") {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| "bad content-length".to_owned())?,
        None if headers.iter().any(|(n, _)| n == "transfer-encoding") => {
            return Err("chunked request bodies are not supported".to_owned());
        }
        None => 0,
    };
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 << 10)];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the body ended".to_owned());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn write_json(
    stream: &mut TcpStream,
    code: u16,
    body: &Value,
    retry_after: Option<&str>,
) -> std::io::Result<()> {
    write_raw(stream, code, &body.to_string(), retry_after).await
}

async fn write_raw(
    stream: &mut TcpStream,
    code: u16,
    body: &str,
    retry_after: Option<&str>,
) -> std::io::Result<()> {
    let retry = retry_after
        .map(|v| format!("retry-after: {v}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {retry}connection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

/// `text` in `n` pieces of about equal length (fewer if it has fewer characters).
fn split(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let n = n.clamp(1, chars.len());
    let size = chars.len().div_ceil(n);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// What answering one matched request needs to know.
struct Answer {
    api: Api,
    model: String,
    input_tokens: u64,
    id: u64,
    include_usage: bool,
}

impl Answer {
    async fn reply(
        &self,
        stream: &mut TcpStream,
        reply: &Reply,
        streamed: bool,
    ) -> std::io::Result<()> {
        match reply {
            Reply::Status {
                code,
                body,
                retry_after,
            } => write_raw(stream, *code, body, retry_after.as_deref()).await,
            Reply::UnknownModel => {
                let body = match self.api {
                    Api::OpenAi => json!({"error": {
                        "message": format!("The model `{}` does not exist or you do not have access to it.", self.model),
                        "type": "invalid_request_error", "param": null, "code": "model_not_found"}}),
                    Api::Anthropic => json!({"type": "error", "error": {
                        "type": "not_found_error", "message": format!("model: {}", self.model)}}),
                };
                write_json(stream, 404, &body, None).await
            }
            Reply::Hang => {
                std::future::pending::<()>().await;
                Ok(())
            }
            Reply::Text { text, .. } if !streamed => {
                write_json(stream, 200, &self.whole(text, &[]), None).await
            }
            Reply::ToolCalls { text, calls } if !streamed => {
                write_json(stream, 200, &self.whole(text, calls), None).await
            }
            Reply::Text { text, chunks } => {
                let events = self.events(&split(text, *chunks), &[], text.len());
                self.sse(stream, &events).await
            }
            Reply::ToolCalls { text, calls } => {
                let output = text.len() + calls.iter().map(|(_, a)| a.len()).sum::<usize>();
                let events = self.events(&split(text, 2), calls, output);
                self.sse(stream, &events).await
            }
            Reply::MalformedSse => {
                let mut events = self.events(&["par".to_owned()], &[], 3);
                // Keep the start and the first delta, then a cut-off event.
                events.truncate(self.opening_events() + 1);
                events.push(match self.api {
                    Api::OpenAi => (
                        None,
                        r#"{"choices":[{"index":0,"delta":{"content":"x"#.to_owned(),
                    ),
                    Api::Anthropic => (
                        Some("content_block_delta"),
                        r#"{"type":"content_block_delta","index":0,"#.to_owned(),
                    ),
                });
                self.sse(stream, &events).await
            }
            Reply::TruncatedStream => {
                let mut events = self.events(&["partial ".to_owned(), "answ".to_owned()], &[], 12);
                events.truncate(self.opening_events() + 2);
                self.sse(stream, &events).await
            }
            Reply::Stall { text } => {
                let mut events = self.events(&split(text, 1), &[], text.len());
                events.truncate(self.opening_events() + 1);
                self.sse(stream, &events).await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }

    /// Events before the first text delta.
    fn opening_events(&self) -> usize {
        match self.api {
            Api::OpenAi => 1,    // the role chunk
            Api::Anthropic => 3, // message_start, ping, content_block_start
        }
    }

    /// Writes the SSE head and `events` (an optional `event:` name and the data).
    async fn sse(
        &self,
        stream: &mut TcpStream,
        events: &[(Option<&str>, String)],
    ) -> std::io::Result<()> {
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                  connection: close\r\n\r\n",
            )
            .await?;
        for (name, data) in events {
            let mut frame = String::new();
            if let Some(name) = name {
                frame.push_str(&format!("event: {name}\n"));
            }
            frame.push_str(&format!("data: {data}\n\n"));
            stream.write_all(frame.as_bytes()).await?;
            stream.flush().await?;
        }
        Ok(())
    }

    fn call_id(&self, n: usize) -> String {
        match self.api {
            Api::OpenAi => format!("call_{}_{n}", self.id),
            Api::Anthropic => format!("toolu_{}_{n}", self.id),
        }
    }

    /// The whole streamed answer: text deltas, then tool calls, then the end.
    fn events(
        &self,
        pieces: &[String],
        calls: &[(String, String)],
        output_len: usize,
    ) -> Vec<(Option<&'static str>, String)> {
        let output_tokens = (output_len / 4) as u64;
        let mut events = Vec::new();
        match self.api {
            Api::OpenAi => {
                let chunk = |delta: Value, finish: Value| {
                    json!({
                        "id": format!("chatcmpl-{}", self.id),
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": self.model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    })
                    .to_string()
                };
                events.push((
                    None,
                    chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                ));
                for piece in pieces {
                    events.push((None, chunk(json!({"content": piece}), Value::Null)));
                }
                for (n, (name, arguments)) in calls.iter().enumerate() {
                    events.push((
                        None,
                        chunk(
                            json!({"tool_calls": [{"index": n, "id": self.call_id(n), "type": "function",
                                "function": {"name": name, "arguments": ""}}]}),
                            Value::Null,
                        ),
                    ));
                    for fragment in split(arguments, 2) {
                        events.push((
                            None,
                            chunk(
                                json!({"tool_calls": [{"index": n, "function": {"arguments": fragment}}]}),
                                Value::Null,
                            ),
                        ));
                    }
                }
                let finish = if calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                };
                events.push((None, chunk(json!({}), json!(finish))));
                if self.include_usage {
                    events.push((
                        None,
                        json!({
                            "id": format!("chatcmpl-{}", self.id),
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": self.model,
                            "choices": [],
                            "usage": {"prompt_tokens": self.input_tokens,
                                      "completion_tokens": output_tokens,
                                      "total_tokens": self.input_tokens + output_tokens},
                        })
                        .to_string(),
                    ));
                }
                events.push((None, "[DONE]".to_owned()));
            }
            Api::Anthropic => {
                events.push((
                    Some("message_start"),
                    json!({"type": "message_start", "message": {
                        "id": format!("msg_{}", self.id), "type": "message", "role": "assistant",
                        "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": self.input_tokens, "output_tokens": 1}}})
                    .to_string(),
                ));
                events.push((Some("ping"), json!({"type": "ping"}).to_string()));
                let mut index = 0;
                if !pieces.is_empty() || calls.is_empty() {
                    events.push((
                        Some("content_block_start"),
                        json!({"type": "content_block_start", "index": 0,
                               "content_block": {"type": "text", "text": ""}})
                        .to_string(),
                    ));
                    for piece in pieces {
                        events.push((
                            Some("content_block_delta"),
                            json!({"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": piece}})
                            .to_string(),
                        ));
                    }
                    events.push((
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": 0}).to_string(),
                    ));
                    index = 1;
                }
                for (n, (name, arguments)) in calls.iter().enumerate() {
                    let i = index + n;
                    events.push((
                        Some("content_block_start"),
                        json!({"type": "content_block_start", "index": i, "content_block":
                               {"type": "tool_use", "id": self.call_id(n), "name": name, "input": {}}})
                        .to_string(),
                    ));
                    let mut fragments = vec![String::new()];
                    fragments.extend(split(arguments, 2));
                    for fragment in fragments {
                        events.push((
                            Some("content_block_delta"),
                            json!({"type": "content_block_delta", "index": i,
                                   "delta": {"type": "input_json_delta", "partial_json": fragment}})
                            .to_string(),
                        ));
                    }
                    events.push((
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": i}).to_string(),
                    ));
                }
                let stop = if calls.is_empty() {
                    "end_turn"
                } else {
                    "tool_use"
                };
                events.push((
                    Some("message_delta"),
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": stop, "stop_sequence": null},
                           "usage": {"output_tokens": output_tokens}})
                    .to_string(),
                ));
                events.push((
                    Some("message_stop"),
                    json!({"type": "message_stop"}).to_string(),
                ));
            }
        }
        events
    }

    /// The answer as one JSON document, for `stream: false`.
    fn whole(&self, text: &str, calls: &[(String, String)]) -> Value {
        let output_tokens =
            ((text.len() + calls.iter().map(|(_, a)| a.len()).sum::<usize>()) / 4) as u64;
        match self.api {
            Api::OpenAi => {
                let mut message = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    message["tool_calls"] = calls
                        .iter()
                        .enumerate()
                        .map(|(n, (name, arguments))| {
                            json!({"id": self.call_id(n), "type": "function",
                                   "function": {"name": name, "arguments": arguments}})
                        })
                        .collect();
                }
                json!({
                    "id": format!("chatcmpl-{}", self.id),
                    "object": "chat.completion",
                    "created": 0,
                    "model": self.model,
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
                    "usage": {"prompt_tokens": self.input_tokens, "completion_tokens": output_tokens,
                              "total_tokens": self.input_tokens + output_tokens},
                })
            }
            Api::Anthropic => {
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
                for (n, (name, arguments)) in calls.iter().enumerate() {
                    // The real API only ever sends an object; invalid JSON is kept as a string.
                    let input =
                        serde_json::from_str::<Value>(arguments).unwrap_or(json!(arguments));
                    content.push(json!({"type": "tool_use", "id": self.call_id(n), "name": name, "input": input}));
                }
                json!({
                    "id": format!("msg_{}", self.id),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": content,
                    "stop_reason": if calls.is_empty() { "end_turn" } else { "tool_use" },
                    "stop_sequence": null,
                    "usage": {"input_tokens": self.input_tokens, "output_tokens": output_tokens},
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Posts `body` to `path` with `headers` over a plain socket; the whole response.
    fn post(double: &LlmDouble, path: &str, headers: &[&str], body: &str) -> String {
        let mut stream = std::net::TcpStream::connect(double.addr).unwrap();
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n",
            body.len()
        );
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    fn status_and_body(response: &str) -> (&str, &str) {
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap(), body)
    }

    #[test]
    fn a_request_missing_a_needle_gets_400_and_is_recorded() {
        let double = LlmDouble::start(vec![Turn::text("hi").expecting("kubectl")]);
        let response = post(&double, "/v1/chat/completions", &[], r#"{"model":"m"}"#);
        let (status, body) = status_and_body(&response);
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body["error"]["message"],
            "the request does not contain \"kubectl\""
        );
        let recorded = double.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].path, "/v1/chat/completions");
        assert_eq!(recorded[0].json, json!({"model": "m"}));
        assert_eq!(
            recorded[0].matched,
            Err("the request does not contain \"kubectl\"".to_owned())
        );
        assert_eq!(double.remaining(), 0);
    }

    #[test]
    fn an_exhausted_script_answers_500() {
        let double = LlmDouble::start(vec![]);
        let response = post(&double, "/v1/messages", &[], "{}");
        let (status, body) = status_and_body(&response);
        assert_eq!(status, "HTTP/1.1 500 Internal Server Error");
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"type": "error", "error": {"type": "api_error", "message": "script exhausted"}})
        );
        assert_eq!(
            double.requests()[0].matched,
            Err("script exhausted".to_owned())
        );
    }

    #[test]
    fn a_wrong_key_gets_401_and_consumes_no_turn() {
        let double = LlmDouble::with_key(vec![Turn::text("hi")], "right");
        let cases = [
            (
                "/v1/chat/completions",
                vec!["authorization: Bearer wrong"],
                401,
            ),
            ("/v1/messages", vec!["x-api-key: wrong"], 401),
            ("/v1/messages", vec![], 401),
            ("/v1/messages", vec!["x-api-key: right"], 200),
        ];
        for (path, headers, code) in cases {
            let response = post(&double, path, &headers, r#"{"model":"m","stream":true}"#);
            assert!(
                response.starts_with(&format!("HTTP/1.1 {code} ")),
                "{path} {headers:?}: {response}"
            );
        }
        assert_eq!(double.remaining(), 0);
        let matched: Vec<bool> = double
            .requests()
            .iter()
            .map(|r| r.matched.is_ok())
            .collect();
        assert_eq!(matched, [false, false, false, true]);
    }

    #[test]
    fn openai_stream_and_plain_answers() {
        let double = LlmDouble::start(vec![
            Turn::text("abcdef").in_chunks(2),
            Turn::text("abcdef"),
        ]);
        let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let response = post(&double, "/v1/chat/completions", &[], body);
        let (status, stream) = status_and_body(&response);
        assert_eq!(status, "HTTP/1.1 200 OK");
        let data: Vec<&str> = stream
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        let contents: Vec<Value> = data
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .map(|v| v["choices"][0]["delta"]["content"].clone())
            .collect();
        assert_eq!(
            contents,
            [
                json!(""),
                json!("abc"),
                json!("def"),
                Value::Null,
                Value::Null
            ]
        );
        assert_eq!(data.last(), Some(&"[DONE]"));
        let usage: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": body.len() / 4, "completion_tokens": 1, "total_tokens": body.len() / 4 + 1})
        );

        let response = post(&double, "/v1/chat/completions", &[], r#"{"model":"m"}"#);
        let (_, plain) = status_and_body(&response);
        let plain: Value = serde_json::from_str(plain).unwrap();
        assert_eq!(plain["choices"][0]["message"]["content"], "abcdef");
    }

    #[test]
    fn anthropic_stream_names_its_events() {
        let double = LlmDouble::start(vec![Turn::tools(vec![("run", json!({"cmd": "ls"}))])]);
        let response = post(
            &double,
            "/v1/messages",
            &[],
            r#"{"model":"m","stream":true}"#,
        );
        let (_, stream) = status_and_body(&response);
        let names: Vec<&str> = stream
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("event: "))
            .map(|e| e.split('\n').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn split_keeps_characters_whole() {
        assert_eq!(split("héllo", 2), ["hél", "lo"]);
        assert_eq!(split("ab", 5), ["a", "b"]);
        assert!(split("", 3).is_empty());
    }
}
