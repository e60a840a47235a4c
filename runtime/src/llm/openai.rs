//! OpenAI Chat Completions (`POST {base}/v1/chat/completions`), also Ollama's `/v1` and any
//! compatible server.

use serde_json::{Map, Value, json};

use super::error::{FailureKind, ProviderError};
use super::types::{ChatRequest, Completion, FinishReason, Part, Role, Usage};

/// The request body for `model`.
pub fn body(model: &str, req: &ChatRequest) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    for m in &req.messages {
        match m.role {
            Role::Tool => {
                // Each tool result is its own message.
                for p in &m.parts {
                    if let Part::ToolResult {
                        call_id, content, ..
                    } = p
                    {
                        messages.push(
                            json!({ "role": "tool", "tool_call_id": call_id, "content": content }),
                        );
                    }
                }
            }
            Role::Assistant => {
                let text: String = m
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                let calls: Vec<Value> = m
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCall {
                            id,
                            name,
                            arguments,
                        } => Some(json!({
                            "id": id, "type": "function",
                            "function": { "name": name, "arguments": arguments.to_string() }
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert(
                    "content".into(),
                    if text.is_empty() && !calls.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(Value::Object(msg));
            }
            Role::User => {
                let only_text = m.parts.iter().all(|p| matches!(p, Part::Text(_)));
                let content = if only_text {
                    json!(
                        m.parts
                            .iter()
                            .filter_map(|p| match p {
                                Part::Text(t) => Some(t.as_str()),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                } else {
                    Value::Array(
                        m.parts
                            .iter()
                            .filter_map(|p| match p {
                                Part::Text(t) => Some(json!({ "type": "text", "text": t })),
                                Part::Image { media_type, data_base64 } => Some(json!({
                                    "type": "image_url",
                                    "image_url": { "url": format!("data:{media_type};base64,{data_base64}") }
                                })),
                                _ => None,
                            })
                            .collect(),
                    )
                };
                messages.push(json!({ "role": "user", "content": content }));
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if !req.tools.is_empty() {
        body.insert(
            "tools".into(),
            Value::Array(
                req.tools
                    .iter()
                    .map(|t| {
                        json!({ "type": "function", "function": {
                            "name": t.name, "description": t.description, "parameters": t.parameters
                        }})
                    })
                    .collect(),
            ),
        );
    }
    Value::Object(body)
}

fn malformed(what: &str) -> ProviderError {
    ProviderError::new(FailureKind::Malformed, format!("OpenAI answer: {what}"))
}

/// Reads a 200 answer.
pub fn parse(answer: &Value) -> Result<Completion, ProviderError> {
    let choice = answer["choices"]
        .get(0)
        .ok_or_else(|| malformed("no choices"))?;
    let message = &choice["message"];
    let mut parts = Vec::new();
    match &message["content"] {
        Value::String(t) if !t.is_empty() => parts.push(Part::Text(t.clone())),
        Value::String(_) | Value::Null => {}
        _ => return Err(malformed("content is neither text nor null")),
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let name = call["function"]["name"]
                .as_str()
                .ok_or_else(|| malformed("tool call without a name"))?;
            let raw = call["function"]["arguments"].as_str().unwrap_or("{}");
            let arguments = serde_json::from_str(raw)
                .map_err(|_| malformed("tool call arguments are not JSON"))?;
            parts.push(Part::ToolCall {
                id: call["id"].as_str().unwrap_or_default().to_string(),
                name: name.to_string(),
                arguments,
            });
        }
    }
    let finish = match choice["finish_reason"].as_str() {
        Some("stop") => FinishReason::Stop,
        Some("tool_calls") => FinishReason::ToolCalls,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    };
    let usage = &answer["usage"];
    Ok(Completion {
        parts,
        finish,
        usage: Usage {
            input_tokens: usage["prompt_tokens"]
                .as_u64()
                .ok_or_else(|| malformed("no usage"))?,
            output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
            cached_input_tokens: usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        },
        model: answer["model"].as_str().unwrap_or_default().to_string(),
    })
}
