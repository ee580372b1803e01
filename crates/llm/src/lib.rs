//! LLM provider clients: one streamed model turn against an OpenAI-compatible chat
//! completions endpoint (OpenAI, Ollama, vLLM, LM Studio, OpenRouter) or the Anthropic
//! Messages API, behind one API ([`Client::chat`]).
//!
//! The model's output is hostile input: nothing here interprets it beyond the wire format.
//! Tool-call arguments come back exactly as the model wrote them, valid JSON or not.

mod anthropic;
mod client;
mod config;
mod error;
mod openai;
mod sse;

use serde::{Deserialize, Serialize};

pub use client::Client;
pub use config::{ProviderConfig, ProviderKind};
pub use error::LlmError;

/// One model turn: the whole conversation so far, the tools the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    /// The system prompt; empty means none.
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

/// A message of the conversation, independent of any provider's wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    User {
        text: String,
    },
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, answering the assistant's call `call_id`.
    Tool {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON schema object describing the arguments.
    pub parameters: serde_json::Value,
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (may be invalid JSON; the caller decides).
    pub arguments: String,
}

/// What one model turn produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    /// All text deltas of the turn, concatenated.
    pub text: String,
    /// The tool calls of the turn, in the order the model made them.
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// Why the model stopped, in Anthropic's words whatever the provider: `end_turn`,
    /// `tool_use`, `max_tokens`, `stop_sequence`; anything else as the provider said it.
    pub stop_reason: String,
    /// HTTP requests made for this turn (1 when the first one succeeded).
    pub attempts: u32,
}

/// Tokens the provider counted for the turn. `input_tokens` includes tokens read from or
/// written to a prompt cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}
