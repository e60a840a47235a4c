//! The provider-neutral request and answer. Rich enough for system prompts, multi-turn history,
//! images, tool definitions, tool calls and their results, so later features need no rewrite.

use std::time::Duration;

use serde_json::Value;

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// The result of a tool call, sent back to the model.
    Tool,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// An image, inline.
    Image {
        media_type: String,
        data_base64: String,
    },
    /// The model asked to call a tool (in an assistant message).
    ToolCall {
        id: String,
        name: String,
        arguments: Value,
    },
    /// What a tool returned (in a tool message).
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            parts: vec![Part::Text(text.into())],
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            parts: vec![Part::Text(text.into())],
        }
    }
}

/// A tool the model may call, with a JSON Schema for its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A chat request, before it is shaped for a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDefinition>,
    pub temperature: Option<f32>,
    pub max_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    ToolCalls,
    Length,
    ContentFilter,
    Other,
}

/// Tokens used by one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (part of `input_tokens`).
    pub cached_input_tokens: u64,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer's parts: text and/or tool calls.
    pub parts: Vec<Part>,
    pub finish: FinishReason,
    pub usage: Usage,
    /// The model the provider says answered.
    pub model: String,
}

impl Completion {
    /// All text parts, joined.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("")
    }
}

/// What the pool reports about a successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    pub completion: Completion,
    pub provider: &'static str,
    pub group: String,
    pub deployment: String,
    pub model: String,
    /// The whole call as the pool saw it, retries included.
    pub latency: Duration,
    /// How many HTTP attempts it took.
    pub attempts: u32,
    /// Whether the tenant's own key was used.
    pub byo_key: bool,
    /// The tenant's own keys refused on the way to the answer (by another group or deployment),
    /// for the caller to record.
    pub key_failures: Vec<super::pool::KeyFailure>,
}
