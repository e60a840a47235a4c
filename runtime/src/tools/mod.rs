//! Tools: what an agent can do besides talking. A [`Tool`] has a stable id, the name the model
//! calls, a description, a JSON Schema for its arguments and an async `call` with its own
//! timeout. Built-in tools (`builtin`) ship with the platform; a tenant adds its own HTTP tools
//! (`http`). An agent is offered only the tools assigned to it ([`Toolbox`]), and every call's
//! arguments are checked against the tool's schema (`schema`) before it runs. The loop that
//! runs them inside a turn is `engine::turn::tool_loop`.

pub mod builtin;
pub mod http;
pub mod schema;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use shared::knowledge::Passage;
use shared::tools::{ToolInfo, ToolKind, ToolOutcome};
use shared::{AgentId, ConversationId, EndUserId, TenantId};
use uuid::Uuid;

use crate::knowledge::Knowledge;
use crate::llm::types::ToolDefinition;
use crate::outbound::Outbound;
use crate::time::TenantZone;

/// What every tool is, for the model and for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// A built-in tool's name, or an HTTP tool's uuid: what agents are assigned.
    pub id: String,
    pub kind: ToolKind,
    /// What the model calls (`^[A-Za-z0-9_-]{1,64}$`).
    pub name: String,
    pub description: String,
    /// The JSON Schema of the arguments (an object schema).
    pub parameters: Value,
    /// The longest one call may take (the turn's deadline may cut it shorter).
    pub timeout: Duration,
    /// The customer must say yes before it runs.
    pub needs_confirmation: bool,
}

/// What a call may use besides its arguments.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub tenant: TenantId,
    pub agent: Option<AgentId>,
    pub conversation: ConversationId,
    pub end_user: Option<EndUserId>,
    /// The recorded call's id: the same when a resumed turn runs an interrupted call again, so
    /// tools that change something send it as their idempotency key.
    pub key: Uuid,
    pub now: DateTime<Utc>,
    pub zone: TenantZone,
    pub knowledge: Option<Knowledge>,
    pub outbound: Option<Outbound>,
    /// Sources the turn has numbered already: a search numbers its passages after them.
    pub sources_before: usize,
}

/// What a call returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// What goes back to the model.
    pub content: String,
    /// Knowledge-base passages it found (numbered after the turn's earlier sources).
    pub passages: Vec<Passage>,
    /// The agent asked for a person, with this reason.
    pub handoff: Option<String>,
    /// The HTTP status its server answered, for an HTTP tool.
    pub status: Option<u16>,
}

/// Why a call did not return a result; `message` goes back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub outcome: ToolOutcome,
    pub message: String,
    pub status: Option<u16>,
}

impl Failure {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            outcome: ToolOutcome::Failed,
            message: message.into(),
            status: None,
        }
    }
}

/// A tool.
pub trait Tool: Send + Sync + fmt::Debug {
    fn spec(&self) -> &Spec;

    /// Runs with arguments that match the schema. The caller holds it to `spec().timeout`.
    fn call<'a>(
        &'a self,
        cx: &'a CallContext,
        arguments: Value,
    ) -> BoxFuture<'a, Result<Output, Failure>>;

    /// Secret values the tool sends (header values): never stored or shown, so results that
    /// echo them are redacted.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A tool with its compiled argument schema. Cheap to clone.
#[derive(Clone)]
pub struct Registered {
    tool: Arc<dyn Tool>,
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("id", &self.spec().id)
            .finish_non_exhaustive()
    }
}

impl Registered {
    /// Compiles the tool's schema.
    pub fn new(tool: Arc<dyn Tool>) -> Result<Self, Vec<schema::SchemaProblem>> {
        let validator = schema::compile(&tool.spec().parameters)?;
        Ok(Self {
            tool,
            validator: Arc::new(validator),
        })
    }

    pub fn spec(&self) -> &Spec {
        self.tool.spec()
    }

    /// The problems with `arguments`, if any (each with its JSON Pointer).
    pub fn check(&self, arguments: &Value) -> Result<(), Vec<schema::ArgumentProblem>> {
        schema::check(&self.validator, arguments)
    }

    /// Runs the call within its timeout and `deadline` (whichever is sooner). Arguments must
    /// have been checked.
    pub async fn run(
        &self,
        cx: &CallContext,
        arguments: Value,
        deadline: Duration,
    ) -> Result<Output, Failure> {
        let limit = self.spec().timeout.min(deadline);
        match tokio::time::timeout(limit, self.tool.call(cx, arguments)).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                outcome: ToolOutcome::Timeout,
                message: format!("The tool did not answer within {} ms.", limit.as_millis()),
                status: None,
            }),
        }
    }

    /// What the model is told about it.
    pub fn definition(&self) -> ToolDefinition {
        let spec = self.spec();
        ToolDefinition {
            name: spec.name.clone(),
            description: spec.description.clone(),
            parameters: spec.parameters.clone(),
        }
    }

    pub fn info(&self) -> ToolInfo {
        let spec = self.spec();
        ToolInfo {
            id: spec.id.clone(),
            kind: spec.kind,
            name: spec.name.clone(),
            description: spec.description.clone(),
            parameters: spec.parameters.clone(),
            needs_confirmation: spec.needs_confirmation,
        }
    }

    pub fn secrets(&self) -> Vec<String> {
        self.tool.secrets()
    }
}

/// The built-in tools, compiled once.
pub fn builtins() -> &'static [Registered] {
    static BUILTINS: OnceLock<Vec<Registered>> = OnceLock::new();
    BUILTINS.get_or_init(|| {
        builtin::all()
            .into_iter()
            .filter_map(|tool| match Registered::new(tool) {
                Ok(r) => Some(r),
                // A built-in's schema comes from its Rust type: the unit tests compile each.
                Err(problems) => {
                    tracing::error!(?problems, "a built-in tool's schema does not compile");
                    None
                }
            })
            .collect()
    })
}

/// The built-in tool with this id.
pub fn builtin(id: &str) -> Option<&'static Registered> {
    builtins().iter().find(|t| t.spec().id == id)
}

/// Whether `name` is a built-in tool's (no HTTP tool may take it).
pub fn is_builtin_name(name: &str) -> bool {
    builtins()
        .iter()
        .any(|t| t.spec().name.eq_ignore_ascii_case(name))
}

/// The built-in tools as `GET /api/tools` lists them.
pub fn registry() -> Vec<shared::resources::Tool> {
    builtins()
        .iter()
        .map(|t| shared::resources::Tool {
            id: t.spec().id.clone(),
            name: t.spec().name.clone(),
            description: t.spec().description.clone(),
        })
        .collect()
}

/// The tools one agent may use in a turn, by the name the model calls.
#[derive(Debug, Clone, Default)]
pub struct Toolbox {
    by_name: HashMap<String, Registered>,
    /// In the order the agent lists them (what the model is offered).
    order: Vec<String>,
}

impl Toolbox {
    /// The agent's assigned tools: built-in ids and the tenant's HTTP tools (by uuid). Ids that
    /// name nothing (a tool deleted since) are skipped.
    pub fn assigned(ids: &[String], http_tools: &HashMap<Uuid, Registered>) -> Self {
        let mut out = Self::default();
        for id in ids {
            let tool = builtin(id).cloned().or_else(|| {
                Uuid::parse_str(id)
                    .ok()
                    .and_then(|u| http_tools.get(&u).cloned())
            });
            if let Some(tool) = tool {
                let name = tool.spec().name.clone();
                if !out.by_name.contains_key(&name) {
                    out.order.push(name.clone());
                    out.by_name.insert(name, tool);
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The tool the model named, if the agent has it.
    pub fn get(&self, name: &str) -> Option<&Registered> {
        self.by_name.get(name)
    }

    pub fn definitions(&self) -> Vec<ToolDefinition> {
        self.order
            .iter()
            .filter_map(|n| self.by_name.get(n))
            .map(Registered::definition)
            .collect()
    }

    /// Every secret value the agent's tools send.
    pub fn secrets(&self) -> Vec<String> {
        self.by_name
            .values()
            .flat_map(Registered::secrets)
            .collect()
    }
}

/// What is stored and shown of a text that may contain the tools' secrets: each secret value
/// (of four characters or more), and each word of eight or more of a secret value (the token of
/// `Bearer <token>` echoed alone), replaced by `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut targets: Vec<&str> = Vec::new();
    for secret in secrets {
        if secret.chars().count() >= 4 {
            targets.push(secret);
        }
        targets.extend(secret.split_whitespace().filter(|w| w.chars().count() >= 8));
    }
    // Longest first, so a whole value goes before its words.
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let mut out = text.to_string();
    for target in targets {
        if out.contains(target) {
            out = out.replace(target, "[redacted]");
        }
    }
    out
}

/// Argument keys whose values are kept out of storage: what a customer might type as a
/// credential.
const SECRET_KEYS: [&str; 8] = [
    "password",
    "passcode",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cvv",
];

/// The string values under credential-like keys of `arguments` (a customer's password echoed
/// back by a tool is redacted from its result too).
pub fn credential_values(arguments: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match arguments {
        Value::Object(map) => {
            for (k, v) in map {
                let lower = k.to_ascii_lowercase();
                match v {
                    Value::String(s) if SECRET_KEYS.iter().any(|k| lower.contains(k)) => {
                        out.push(s.clone());
                    }
                    other => out.extend(credential_values(other)),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| out.extend(credential_values(v))),
        _ => {}
    }
    out
}

/// The arguments as stored and shown: values under credential-like keys, and the tools'
/// secrets anywhere, redacted.
pub fn redact_arguments(arguments: &Value, secrets: &[String]) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_KEYS.iter().any(|s| lower.contains(s)) {
                        (k.clone(), Value::String("[redacted]".into()))
                    } else {
                        (k.clone(), redact_arguments(v, secrets))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_arguments(v, secrets)).collect())
        }
        Value::String(s) => Value::String(redact(s, secrets)),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_builtin_compiles_and_has_an_object_schema() {
        let ids: Vec<&str> = builtins().iter().map(|t| t.spec().id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["knowledge_base_search", "handoff_to_human", "current_time"]
        );
        for t in builtins() {
            assert_eq!(t.spec().parameters["type"], "object", "{}", t.spec().id);
            assert!(schema::is_valid_name(&t.spec().name));
        }
    }

    #[test]
    fn an_agent_gets_only_its_own_tools_once_each() {
        let ids = vec![
            "current_time".to_string(),
            "nonexistent".to_string(),
            "current_time".to_string(),
            Uuid::new_v4().to_string(),
        ];
        let toolbox = Toolbox::assigned(&ids, &HashMap::new());
        let names: Vec<String> = toolbox.definitions().into_iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["current_time"]);
        assert!(toolbox.get("knowledge_base_search").is_none());
    }

    #[test]
    fn secrets_are_redacted_from_results_and_credential_arguments() {
        let secrets = vec!["s3cr3t-value".to_string(), "ab".to_string()];
        assert_eq!(
            redact("got s3cr3t-value back, ab stays", &secrets),
            "got [redacted] back, ab stays"
        );
        let bearer = vec!["Bearer tok-0123456789".to_string()];
        assert_eq!(
            redact("auth: Bearer tok-0123456789; token=tok-0123456789", &bearer),
            "auth: [redacted]; token=[redacted]"
        );
        let args = json!({"order_id": "1", "Password": "hunter2", "note": ["s3cr3t-value"]});
        assert_eq!(
            redact_arguments(&args, &secrets),
            json!({"order_id": "1", "Password": "[redacted]", "note": ["[redacted]"]})
        );
    }
}
