//! Anthropic Messages (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version: 2023-06-01`).

use serde_json::{Map, Value, json};

use super::error::{FailureKind, ProviderError};
use super::types::{ChatRequest, Completion, FinishReason, Message, Part, Role, Usage};

pub const VERSION: &str = "2023-06-01";

fn block(p: &Part) -> Value {
    match p {
        Part::Text(t) => json!({ "type": "text", "text": t }),
        Part::Image {
            media_type,
            data_base64,
        } => json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data_base64 }
        }),
        Part::ToolCall {
            id,
            name,
            arguments,
        } => {
            json!({ "type": "tool_use", "id": id, "name": name, "input": arguments })
        }
        Part::ToolResult {
            call_id,
            content,
            is_error,
        } => json!({
            "type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error
        }),
    }
}

/// Anthropic has no tool role: tool results travel in a user message. Consecutive messages of
/// the same role are merged, since the API requires user and assistant to alternate.
fn messages(history: &[Message]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in history {
        let role = match m.role {
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let blocks: Vec<Value> = m.parts.iter().map(block).collect();
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    out.into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect()
}

/// The request body for `model`.
pub fn body(model: &str, req: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(system) = &req.system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(messages(&req.messages)));
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if !req.tools.is_empty() {
        body.insert(
            "tools".into(),
            Value::Array(
                req.tools
                    .iter()
                    .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.parameters }))
                    .collect(),
            ),
        );
    }
    Value::Object(body)
}

fn malformed(what: &str) -> ProviderError {
    ProviderError::new(FailureKind::Malformed, format!("Anthropic answer: {what}"))
}

/// Reads a 200 answer.
pub fn parse(answer: &Value) -> Result<Completion, ProviderError> {
    let blocks = answer["content"]
        .as_array()
        .ok_or_else(|| malformed("content is not a list"))?;
    let mut parts = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => parts.push(Part::Text(
                b["text"].as_str().unwrap_or_default().to_string(),
            )),
            Some("tool_use") => parts.push(Part::ToolCall {
                id: b["id"].as_str().unwrap_or_default().to_string(),
                name: b["name"]
                    .as_str()
                    .ok_or_else(|| malformed("tool_use without a name"))?
                    .to_string(),
                arguments: b["input"].clone(),
            }),
            // Thinking and other blocks carry nothing the caller uses.
            _ => {}
        }
    }
    let finish = match answer["stop_reason"].as_str() {
        Some("end_turn") | Some("stop_sequence") => FinishReason::Stop,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens") => FinishReason::Length,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    };
    let usage = &answer["usage"];
    let cached = usage["cache_read_input_tokens"].as_u64().unwrap_or(0);
    Ok(Completion {
        parts,
        finish,
        usage: Usage {
            // Anthropic reports cached input separately; ours counts it inside input.
            input_tokens: usage["input_tokens"]
                .as_u64()
                .ok_or_else(|| malformed("no usage"))?
                + cached,
            output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
            cached_input_tokens: cached,
        },
        model: answer["model"].as_str().unwrap_or_default().to_string(),
    })
}
