//! The Anthropic Messages wire format: the request body (system apart, tool results as
//! `tool_result` blocks of user messages), the streamed events, the plain JSON answer.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Failure, LlmError, shorten, stream_error};
use crate::openai::Progress;
use crate::sse::SseEvent;
use crate::{ChatRequest, ChatResponse, Message, ToolCall, Usage};

/// The request body for `request`.
pub(crate) fn request_body(request: &ChatRequest) -> Value {
    // (role, content blocks); consecutive messages of one role become one, as the API
    // wants roles to alternate.
    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message {
            Message::User { text } => ("user", text_block(text)),
            Message::Assistant { text, tool_calls } => {
                let mut blocks = text_block(text);
                blocks.extend(tool_calls.iter().map(|call| {
                    json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": tool_input(&call.arguments),
                    })
                }));
                ("assistant", blocks)
            }
            Message::Tool {
                call_id,
                content,
                is_error,
            } => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": content,
                    "is_error": is_error,
                })],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, mut blocks)| {
            // Tool results must open the user message that answers the tool calls.
            blocks.sort_by_key(|b| b["type"] != "tool_result");
            json!({"role": role, "content": blocks})
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "stream": true,
        "messages": messages,
    });
    if !request.system.is_empty() {
        body["system"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
    }
    body
}

/// The API refuses empty text blocks.
fn text_block(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "text", "text": text})]
    }
}

/// A `tool_use` block's `input` must be an object; arguments the model wrote that are not
/// one are sent back wrapped, so the model still sees what it wrote.
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({"invalid_arguments": arguments}),
    }
}

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    index: Option<u64>,
    message: Option<WholeMessage>,
    content_block: Option<Block>,
    delta: Option<Delta>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WholeMessage {
    usage: Option<WireUsage>,
    #[serde(default)]
    content: Vec<Block>,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Input tokens including those read from or written to the prompt cache, if the
    /// event counted input at all.
    fn input(&self) -> Option<u64> {
        self.input_tokens.map(|n| {
            n + self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0)
        })
    }
}

/// A content block being streamed.
#[derive(Debug)]
enum Open {
    Text,
    Tool {
        id: String,
        name: String,
        start_input: Option<Value>,
        json: String,
    },
    /// Thinking and blocks we do not use.
    Other,
}

/// Assembles one streamed turn from its events.
#[derive(Debug)]
pub(crate) struct Decoder {
    model: String,
    text: String,
    blocks: Vec<(u64, Open)>,
    usage: Usage,
    stop_reason: Option<String>,
    done: bool,
}

impl Decoder {
    pub fn new(model: &str) -> Decoder {
        Decoder {
            model: model.to_owned(),
            text: String::new(),
            blocks: Vec::new(),
            usage: Usage::default(),
            stop_reason: None,
            done: false,
        }
    }

    pub fn event(
        &mut self,
        event: &SseEvent,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Progress, Failure> {
        if self.done {
            return Ok(Progress::Done);
        }
        let parsed: Event = serde_json::from_str(&event.data).map_err(|e| {
            malformed(format!(
                "an event that is not a Messages event ({e}): {}",
                shorten(event.data.clone())
            ))
        })?;
        match parsed.kind.as_str() {
            "message_start" => {
                if let Some(usage) = parsed.message.and_then(|m| m.usage) {
                    self.count(&usage);
                }
            }
            "content_block_start" => {
                let (Some(index), Some(block)) = (parsed.index, parsed.content_block) else {
                    return Err(malformed("content_block_start without index or block"));
                };
                self.open(index, block, on_text);
            }
            "content_block_delta" => {
                let (Some(index), Some(delta)) = (parsed.index, parsed.delta) else {
                    return Err(malformed("content_block_delta without index or delta"));
                };
                let Some(position) = self.blocks.iter().position(|(i, _)| *i == index) else {
                    return Err(malformed(format!(
                        "a delta for content block {index}, which never started"
                    )));
                };
                match (delta.kind.as_deref(), &mut self.blocks[position].1) {
                    (Some("text_delta"), Open::Text) => {
                        if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                            self.text(&text, on_text);
                        }
                    }
                    (Some("input_json_delta"), Open::Tool { json, .. }) => {
                        json.push_str(delta.partial_json.as_deref().unwrap_or(""));
                    }
                    (Some("text_delta" | "input_json_delta"), _) => {
                        return Err(malformed(format!(
                            "a delta that does not fit content block {index}"
                        )));
                    }
                    _ => {} // thinking, signatures, citations
                }
            }
            "message_delta" => {
                if let Some(reason) = parsed.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                if let Some(usage) = parsed.usage {
                    self.count(&usage);
                }
            }
            "message_stop" => self.done = true,
            "error" => return Err(stream_error(&event.data, &self.model)),
            _ => {} // ping, content_block_stop, and events added later
        }
        Ok(if self.done {
            Progress::Done
        } else {
            Progress::More
        })
    }

    /// Starts content block `index`, streamed or whole: text already in it goes out at
    /// once, a tool call waits for its input.
    fn open(&mut self, index: u64, block: Block, on_text: &mut (dyn FnMut(&str) + Send)) {
        let open = match block.kind.as_str() {
            "text" => {
                if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                    self.text(&text, on_text);
                }
                Open::Text
            }
            "tool_use" => Open::Tool {
                id: block.id.unwrap_or_default(),
                name: block.name.unwrap_or_default(),
                start_input: block.input,
                json: String::new(),
            },
            _ => Open::Other,
        };
        self.blocks.push((index, open));
    }

    fn text(&mut self, text: &str, on_text: &mut (dyn FnMut(&str) + Send)) {
        on_text(text);
        self.text.push_str(text);
    }

    /// Counts are cumulative: a later event's count replaces an earlier one.
    fn count(&mut self, usage: &WireUsage) {
        if let Some(input) = usage.input() {
            self.usage.input_tokens = input;
        }
        if let Some(output) = usage.output_tokens {
            self.usage.output_tokens = output;
        }
    }

    /// The turn, once the stream has ended.
    pub fn finish(self) -> Result<ChatResponse, Failure> {
        if !self.done {
            return Err(malformed(
                "the stream ended before its terminator (message_stop)",
            ));
        }
        Ok(self.response())
    }

    fn response(self) -> ChatResponse {
        let tool_calls = self
            .blocks
            .into_iter()
            .filter_map(|(_, block)| match block {
                Open::Tool {
                    id,
                    name,
                    start_input,
                    json,
                } => Some(ToolCall {
                    id,
                    name,
                    arguments: if !json.is_empty() {
                        json
                    } else {
                        match start_input {
                            Some(input) if !input.is_null() => input.to_string(),
                            _ => "{}".to_owned(),
                        }
                    },
                }),
                _ => None,
            })
            .collect::<Vec<_>>();
        let stop_reason = self.stop_reason.unwrap_or_else(|| {
            if tool_calls.is_empty() {
                "end_turn".to_owned()
            } else {
                "tool_use".to_owned()
            }
        });
        ChatResponse {
            text: self.text,
            tool_calls,
            usage: self.usage,
            stop_reason,
            attempts: 0,
        }
    }
}

fn malformed(message: impl Into<String>) -> Failure {
    Failure::fatal(LlmError::Malformed(message.into()))
}

/// A plain JSON answer (a server that ignored `stream: true`).
pub(crate) fn parse_whole(
    body: &str,
    model: &str,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<ChatResponse, Failure> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        malformed(format!(
            "an answer that is not JSON ({e}): {}",
            shorten(body.to_owned())
        ))
    })?;
    if value["type"] == "error" {
        return Err(stream_error(body, model));
    }
    let message: WholeMessage = serde_json::from_value(value).map_err(|e| {
        malformed(format!(
            "an answer that is not a message ({e}): {}",
            shorten(body.to_owned())
        ))
    })?;
    let mut decoder = Decoder::new(model);
    if let Some(usage) = &message.usage {
        decoder.count(usage);
    }
    decoder.stop_reason = message.stop_reason;
    for (index, block) in (0u64..).zip(message.content) {
        decoder.open(index, block, on_text);
    }
    Ok(decoder.response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::ToolSpec;

    #[test]
    fn messages_in_anthropic_form() {
        let call = |id: &str, arguments: &str| ToolCall {
            id: id.to_owned(),
            name: "run".to_owned(),
            arguments: arguments.to_owned(),
        };
        let result = |id: &str, is_error: bool| Message::Tool {
            call_id: id.to_owned(),
            content: format!("out {id}"),
            is_error,
        };
        let request = ChatRequest {
            model: "claude".to_owned(),
            system: "be brief".to_owned(),
            messages: vec![
                Message::User {
                    text: "hi".to_owned(),
                },
                Message::Assistant {
                    text: "on it".to_owned(),
                    tool_calls: vec![call("a", "{\"cmd\":\"ls\"}"), call("b", "{oops")],
                },
                result("a", false),
                result("b", true),
                Message::User {
                    text: "and then?".to_owned(),
                },
            ],
            tools: vec![ToolSpec {
                name: "run".to_owned(),
                description: "runs".to_owned(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
        };
        assert_eq!(
            request_body(&request),
            json!({
                "model": "claude",
                "max_tokens": 100,
                "stream": true,
                "system": "be brief",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "on it"},
                        {"type": "tool_use", "id": "a", "name": "run", "input": {"cmd": "ls"}},
                        {"type": "tool_use", "id": "b", "name": "run",
                         "input": {"invalid_arguments": "{oops"}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "a", "content": "out a", "is_error": false},
                        {"type": "tool_result", "tool_use_id": "b", "content": "out b", "is_error": true},
                        {"type": "text", "text": "and then?"},
                    ]},
                ],
                "tools": [{"name": "run", "description": "runs", "input_schema": {"type": "object"}}],
            })
        );
    }

    #[test]
    fn a_tool_without_input_deltas_keeps_its_start_input() {
        let mut decoder = Decoder::new("m");
        let events = [
            r#"{"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":10,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"now","input":{}}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        for data in events {
            let event = SseEvent {
                event: String::new(),
                data: data.to_owned(),
            };
            decoder.event(&event, &mut |_: &str| {}).unwrap();
        }
        assert_eq!(
            decoder.finish().unwrap(),
            ChatResponse {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "t".to_owned(),
                    name: "now".to_owned(),
                    arguments: "{}".to_owned()
                }],
                usage: Usage {
                    input_tokens: 15,
                    output_tokens: 7
                },
                stop_reason: "tool_use".to_owned(),
                attempts: 0,
            }
        );
    }
}
