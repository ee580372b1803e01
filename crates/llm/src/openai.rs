//! The OpenAI chat completions wire format, as OpenAI, Ollama, vLLM, LM Studio and
//! OpenRouter speak it: the request body, the streamed chunks, the plain JSON answer.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Failure, LlmError, shorten, stream_error};
use crate::sse::SseEvent;
use crate::{ChatRequest, ChatResponse, Message, ToolCall, Usage};

/// The request body for `request`. `max_completion_tokens` is OpenAI's own name for the
/// limit (its newer models refuse `max_tokens`); other servers know only `max_tokens`.
pub(crate) fn request_body(request: &ChatRequest, max_completion_tokens: bool) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        messages.push(match message {
            Message::User { text } => json!({"role": "user", "content": text}),
            Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                json!({"role": "assistant", "content": text})
            }
            Message::Assistant { text, tool_calls } => json!({
                "role": "assistant",
                "content": if text.is_empty() { Value::Null } else { json!(text) },
                "tool_calls": tool_calls.iter().map(|call| json!({
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                })).collect::<Vec<_>>(),
            }),
            // The format has no error flag; the prefix tells the model what Anthropic's
            // `is_error` would.
            Message::Tool {
                call_id,
                content,
                is_error,
            } => json!({
                "role": "tool",
                "tool_call_id": call_id,
                "content": if *is_error { format!("error: {content}") } else { content.clone() },
            }),
        });
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let limit = if max_completion_tokens {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    body[limit] = json!(request.max_tokens);
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                })
            })
            .collect();
    }
    body
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    delta: Option<Delta>,
    /// Only in the plain JSON answer.
    message: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    content: Option<String>,
    tool_calls: Option<Vec<ToolDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolDelta {
    index: Option<u64>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// Whether the stream has more to say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    More,
    Done,
}

/// Assembles one streamed turn from its chunks.
#[derive(Debug)]
pub(crate) struct Decoder {
    model: String,
    text: String,
    calls: Vec<ToolCall>,
    /// The wire `index` of each entry of `calls`.
    indexes: Vec<Option<u64>>,
    usage: Usage,
    finish_reason: Option<String>,
    done: bool,
}

impl Decoder {
    pub fn new(model: &str) -> Decoder {
        Decoder {
            model: model.to_owned(),
            text: String::new(),
            calls: Vec::new(),
            indexes: Vec::new(),
            usage: Usage::default(),
            finish_reason: None,
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
        if event.data.trim() == "[DONE]" {
            self.done = true;
            return Ok(Progress::Done);
        }
        let chunk: Chunk = serde_json::from_str(&event.data).map_err(|e| {
            Failure::fatal(LlmError::Malformed(format!(
                "a chunk that is not a chat completion chunk ({e}): {}",
                shorten(event.data.clone())
            )))
        })?;
        if chunk.error.is_some() {
            return Err(stream_error(&event.data, &self.model));
        }
        self.chunk(chunk, on_text);
        Ok(Progress::More)
    }

    fn chunk(&mut self, chunk: Chunk, on_text: &mut (dyn FnMut(&str) + Send)) {
        if let Some(usage) = chunk.usage {
            self.usage = Usage {
                input_tokens: usage.prompt_tokens.unwrap_or(0),
                output_tokens: usage.completion_tokens.unwrap_or(0),
            };
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta.or(choice.message) else {
                continue;
            };
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                on_text(&text);
                self.text.push_str(&text);
            }
            for tool in delta.tool_calls.unwrap_or_default() {
                self.tool_delta(tool);
            }
        }
    }

    fn tool_delta(&mut self, tool: ToolDelta) {
        let id = tool.id.filter(|id| !id.is_empty());
        // Calls are told apart by `index`; servers that omit it send each call whole, told
        // apart by `id`.
        let existing = match (tool.index, &id) {
            (Some(index), _) => self.indexes.iter().position(|i| *i == Some(index)),
            (None, Some(id)) => self.calls.iter().position(|c| c.id == *id),
            (None, None) => self.calls.len().checked_sub(1),
        };
        let position = existing.unwrap_or_else(|| {
            self.calls.push(ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
            self.indexes.push(tool.index);
            self.calls.len() - 1
        });
        let Some(call) = self.calls.get_mut(position) else {
            return;
        };
        if let Some(id) = id.filter(|_| call.id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = tool.function {
            if let Some(name) = function
                .name
                .filter(|n| !n.is_empty() && call.name.is_empty())
            {
                call.name = name;
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    /// The turn, once the stream has ended.
    pub fn finish(self) -> Result<ChatResponse, Failure> {
        if !self.done {
            return Err(Failure::fatal(LlmError::Malformed(
                "the stream ended before its terminator (data: [DONE])".to_owned(),
            )));
        }
        Ok(self.response())
    }

    fn response(mut self) -> ChatResponse {
        for (n, call) in self.calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{n}");
            }
        }
        let stop_reason = match self.finish_reason.as_deref() {
            Some("stop") => "end_turn".to_owned(),
            Some("tool_calls" | "function_call") => "tool_use".to_owned(),
            Some("length") => "max_tokens".to_owned(),
            Some(other) => other.to_owned(),
            None if self.calls.is_empty() => "end_turn".to_owned(),
            None => "tool_use".to_owned(),
        };
        ChatResponse {
            text: self.text,
            tool_calls: self.calls,
            usage: self.usage,
            stop_reason,
            attempts: 0,
        }
    }
}

/// A plain JSON answer (a server that ignored `stream: true`).
pub(crate) fn parse_whole(
    body: &str,
    model: &str,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<ChatResponse, Failure> {
    let chunk: Chunk = serde_json::from_str(body).map_err(|e| {
        Failure::fatal(LlmError::Malformed(format!(
            "an answer that is not a chat completion ({e}): {}",
            shorten(body.to_owned())
        )))
    })?;
    if chunk.error.is_some() {
        return Err(stream_error(body, model));
    }
    if chunk.choices.is_empty() {
        return Err(Failure::fatal(LlmError::Malformed(
            "a chat completion without choices".to_owned(),
        )));
    }
    let mut decoder = Decoder::new(model);
    decoder.chunk(chunk, on_text);
    Ok(decoder.response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::ToolSpec;

    #[test]
    fn messages_in_openai_form() {
        let request = ChatRequest {
            model: "m".to_owned(),
            system: "be brief".to_owned(),
            messages: vec![
                Message::User {
                    text: "hi".to_owned(),
                },
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "c1".to_owned(),
                        name: "run".to_owned(),
                        arguments: "{\"cmd\":\"ls\"".to_owned(),
                    }],
                },
                Message::Tool {
                    call_id: "c1".to_owned(),
                    content: "bad json".to_owned(),
                    is_error: true,
                },
                Message::Assistant {
                    text: "done".to_owned(),
                    tool_calls: vec![],
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
            request_body(&request, false),
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "run", "arguments": "{\"cmd\":\"ls\""}},
                    ]},
                    {"role": "tool", "tool_call_id": "c1", "content": "error: bad json"},
                    {"role": "assistant", "content": "done"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 100,
                "tools": [{"type": "function", "function": {
                    "name": "run", "description": "runs", "parameters": {"type": "object"}}}],
            })
        );
        assert_eq!(
            request_body(&request, true)["max_completion_tokens"],
            json!(100)
        );
    }

    fn decode(events: &[&str]) -> Result<ChatResponse, Failure> {
        let mut decoder = Decoder::new("m");
        let mut deltas = Vec::new();
        for data in events {
            let event = SseEvent {
                event: String::new(),
                data: (*data).to_owned(),
            };
            decoder.event(&event, &mut |t: &str| deltas.push(t.to_owned()))?;
        }
        decoder.finish()
    }

    #[test]
    fn tool_calls_without_index_are_told_apart_by_id() {
        let response = decode(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"x","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"y","arguments":"{\"k\":1}"}}]},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(
            response,
            ChatResponse {
                text: String::new(),
                tool_calls: vec![
                    ToolCall {
                        id: "a".to_owned(),
                        name: "x".to_owned(),
                        arguments: "{}".to_owned()
                    },
                    ToolCall {
                        id: "b".to_owned(),
                        name: "y".to_owned(),
                        arguments: "{\"k\":1}".to_owned()
                    },
                ],
                usage: Usage::default(),
                stop_reason: "tool_use".to_owned(),
                attempts: 0,
            }
        );
    }

    #[test]
    fn an_error_chunk_is_classified() {
        let failure = decode(&[r#"{"error":{"code":502,"message":"upstream died"}}"#]).unwrap_err();
        assert!(failure.retryable);
        assert_eq!(
            failure.error.to_string(),
            "provider error (http 502): upstream died"
        );
    }
}
