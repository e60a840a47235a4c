//! Tools on the wire: what an agent can be given (built-in tools and the tenant's own HTTP
//! tools), the HTTP tool editor's input, a tool's test run, and the calls agents made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{AgentId, ConversationId, text_enum};

/// The most HTTP tools one tenant may have.
pub const MAX_HTTP_TOOLS: usize = 100;
/// An HTTP tool's response cap and timeout: defaults and the most they may be.
pub const DEFAULT_RESPONSE_BYTES: u32 = 16 * 1024;
pub const MAX_RESPONSE_BYTES: u32 = 256 * 1024;
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
pub const MAX_TIMEOUT_MS: u32 = 30_000;

/// Whether a tool ships with the platform or is the tenant's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    Builtin,
    Http,
}

text_enum!(ToolKind { Builtin => "builtin", Http => "http" });

/// A tool an agent can be assigned (`GET /api/tenants/{t}/tools`): the id goes into the
/// agent's `tools`, the name is what the model calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolInfo {
    /// A built-in tool's id (`knowledge_base_search`), or an HTTP tool's uuid.
    pub id: String,
    pub kind: ToolKind,
    pub name: String,
    pub description: String,
    /// The JSON Schema of its arguments.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub parameters: Value,
    /// It waits for the customer's "yes" before it runs.
    pub needs_confirmation: bool,
}

/// The HTTP methods an HTTP tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

text_enum!(HttpMethod { Get => "GET", Post => "POST", Put => "PUT", Patch => "PATCH", Delete => "DELETE" });

impl HttpMethod {
    /// Whether the call sends the arguments not used in the URL as a JSON body (else they go
    /// into the query string).
    pub fn has_body(self) -> bool {
        matches!(self, Self::Post | Self::Put | Self::Patch)
    }
}

/// A header an HTTP tool sends. A secret one is sealed and never shown again: the tool shows
/// its hint, and an edit that leaves `value` out keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderInput {
    pub name: String,
    /// Required for a new header; for a secret one already set, omit it to keep it.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

/// The editable fields of an HTTP tool (`POST` creates, `PUT` replaces).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpToolInput {
    /// What the model calls it: letters, digits, `_` and `-`, at most 64.
    pub name: String,
    /// What it does and when to use it, for the model.
    pub description: String,
    /// The JSON Schema of its arguments (an object schema).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub parameters: Value,
    pub method: HttpMethod,
    /// `https://…` (plain http only for a host the platform allowlists); `{name}` is replaced
    /// by the argument `name`, percent-encoded.
    pub url: String,
    #[serde(default)]
    pub headers: Vec<HeaderInput>,
    /// The largest response the tool may return, in bytes: a larger one fails the call (and the
    /// model is told so).
    #[serde(default = "default_response_bytes")]
    pub max_response_bytes: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// The agent asks the customer to confirm before it runs (for tools that change things).
    #[serde(default)]
    pub needs_confirmation: bool,
}

fn default_response_bytes() -> u32 {
    DEFAULT_RESPONSE_BYTES
}

fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}

/// A header as shown: a secret one's value is never returned, only its hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeaderView {
    pub name: String,
    /// The value of a header that is not secret.
    pub value: Option<String>,
    pub secret: bool,
    /// The last characters of a secret value.
    pub hint: Option<String>,
}

/// A tenant's HTTP tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpTool {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub parameters: Value,
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<HeaderView>,
    pub max_response_bytes: u32,
    pub timeout_ms: u32,
    pub needs_confirmation: bool,
    /// Agents it is assigned to.
    pub agents: Vec<AgentId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST …/tools/{id}/test`: sample arguments, checked against the tool's schema first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolTest {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub arguments: Value,
}

/// What a test run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolTestResult {
    pub outcome: ToolOutcome,
    /// The HTTP status the tool's server answered, if it answered.
    pub status: Option<u16>,
    /// What the model would see (capped; secret header values redacted).
    pub content: String,
    pub duration_ms: u64,
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    /// Proposed and not finished yet (or interrupted: it finishes when the turn resumes).
    Running,
    Ok,
    /// The tool ran and failed (an HTTP error status, an unreachable server).
    Failed,
    /// It ran out of time.
    Timeout,
    /// The arguments did not match the schema; it did not run and the model was told why.
    InvalidArguments,
    /// The model named a tool its agent was not given; it did not run.
    NotAssigned,
    /// The outbound client refused the address (private, loopback, not https…).
    Refused,
    /// Waiting for the customer to confirm.
    AwaitingConfirmation,
    /// The customer did not confirm; it did not run.
    Declined,
}

text_enum!(ToolOutcome {
    Running => "running",
    Ok => "ok",
    Failed => "failed",
    Timeout => "timeout",
    InvalidArguments => "invalid_arguments",
    NotAssigned => "not_assigned",
    Refused => "refused",
    AwaitingConfirmation => "awaiting_confirmation",
    Declined => "declined",
});

/// One call an agent made, kept with its conversation (arguments and result with secrets
/// redacted; never in the audit trail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolCall {
    pub id: Uuid,
    pub conversation_id: ConversationId,
    pub agent_id: Option<AgentId>,
    /// The tool's id and the name the model used.
    pub tool_id: Option<String>,
    pub name: String,
    /// The step of the turn's loop (0 is the first LLM answer).
    pub step: u16,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub arguments: Value,
    pub outcome: ToolOutcome,
    /// What went back to the model.
    pub result: String,
    pub duration_ms: Option<u64>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_enum::assert_serde_names;

    #[test]
    fn stored_names_are_the_wire_names() {
        assert_serde_names(ToolKind::ALL, |v| v.as_str());
        assert_serde_names(HttpMethod::ALL, |v| v.as_str());
        assert_serde_names(ToolOutcome::ALL, |v| v.as_str());
    }

    #[test]
    fn an_http_tool_input_gets_the_documented_defaults() {
        let input: HttpToolInput = serde_json::from_value(serde_json::json!({
            "name": "order_status",
            "description": "Looks up an order",
            "parameters": {"type": "object"},
            "method": "GET",
            "url": "https://shop.example/orders/{id}",
        }))
        .unwrap();
        assert_eq!(input.max_response_bytes, 16 * 1024);
        assert_eq!(input.timeout_ms, 10_000);
        assert!(!input.needs_confirmation);
        assert!(input.headers.is_empty());
    }
}
