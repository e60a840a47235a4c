//! A fake LLM provider that speaks both OpenAI Chat Completions (`POST /v1/chat/completions`, also
//! what Ollama serves) and Anthropic Messages (`POST /v1/messages`).
//!
//! It behaves like the real services where it matters to a client: it checks the auth header
//! (`Authorization: Bearer …` or `x-api-key` + `anthropic-version`), validates the request shape,
//! answers with the documented bodies (errors included) and can be scripted per request to answer
//! text or a tool call, fail with any status (429 with `Retry-After`, 401, 500, 529), be slow,
//! hang, or return a malformed body. Every request it receives is recorded for assertions.
//!
//! A client that goes away (a timeout drops its connection) ends its request, as it would on a
//! real server: `in_flight` counts the requests clients still hold open, so a hang that the
//! client gave up on no longer counts.
//!
//! Like a real account it can hold several keys (`accept_key`) and have one revoked while the
//! others keep working (`revoke_key`: that key gets the provider's 401). `start_open` is a server
//! that needs no key at all, like Ollama.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// What the fake does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Answer with this text.
    Text(String),
    /// Answer with a call to this tool with these arguments.
    ToolCall { name: String, arguments: Value },
    /// Answer with several tool calls in one step, in this order.
    ToolCalls(Vec<(String, Value)>),
    /// Fail with this status and the provider's error body; `retry_after` sets the header.
    Fail {
        status: u16,
        retry_after: Option<u64>,
        message: String,
    },
    /// Wait, then behave as the inner behavior.
    Delay(Duration, Box<Behavior>),
    /// Never answer (until the client gives up).
    Hang,
    /// Answer 200 with a body that is not the documented shape.
    Malformed,
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `openai` or `anthropic`.
    pub api: &'static str,
    pub path: String,
    pub auth: Option<String>,
    pub body: Value,
}

#[derive(Debug, Default)]
struct State {
    /// The keys it accepts.
    api_keys: Vec<String>,
    /// Accept any key or none (Ollama does not check).
    open: bool,
    script: VecDeque<Behavior>,
    /// Used when the script is empty; `None` echoes the last user message.
    fallback: Option<Behavior>,
    received: Vec<Received>,
    counter: u64,
    /// Requests being answered right now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    /// Texts embedded so far (`/v1/embeddings`, `/api/embed`); kept apart from `received`.
    embedded: Vec<String>,
}

/// A running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeLlm {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stopping is async; let it run in the background.
        // Outside a runtime (a test unwinding after its runtime ended) the server's threads
        // end with the process.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(runtime.spawn(async move { handle.stop(false).await }));
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn accepts(&self, key: Option<&str>) -> bool {
        self.open || key.is_some_and(|k| self.api_keys.iter().any(|a| a == k))
    }
}

impl FakeLlm {
    /// Starts a fake on a free port of 127.0.0.1 that accepts `api_key`.
    pub fn start(api_key: &str) -> std::io::Result<FakeLlm> {
        Self::start_on("127.0.0.1:0", api_key)
    }

    /// Starts a fake that needs no key, like Ollama: any `Authorization` header, or none, is
    /// accepted (and recorded).
    pub fn start_open() -> std::io::Result<FakeLlm> {
        let fake = Self::start_on("127.0.0.1:0", "")?;
        lock(&fake.state).open = true;
        Ok(fake)
    }

    /// Starts a fake on `addr`.
    pub fn start_on(addr: &str, api_key: &str) -> std::io::Result<FakeLlm> {
        let listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            api_keys: vec![api_key.to_string()],
            ..State::default()
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(20 * 1024 * 1024))
                .route("/v1/chat/completions", web::post().to(openai))
                .route("/v1/messages", web::post().to(anthropic))
                .route("/v1/models", web::get().to(models))
                .route("/v1/embeddings", web::post().to(openai_embeddings))
                .route("/api/embed", web::post().to(ollama_embed))
        })
        .workers(1)
        // A closed connection drops its pending handler (actix keeps it running by default).
        .h1_allow_half_closed(false)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        drop(tokio::spawn(server));
        Ok(FakeLlm {
            base_url: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        })
    }

    /// Accepts `key` too, as another key of the same account.
    pub fn accept_key(&self, key: &str) {
        lock(&self.state).api_keys.push(key.to_string());
    }

    /// Refuses `key` from now on, as the provider does with a revoked key (401 with its usual
    /// error body); the other keys keep working.
    pub fn revoke_key(&self, key: &str) {
        lock(&self.state).api_keys.retain(|k| k != key);
    }

    /// Queues behaviors for the next requests, in order.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        lock(&self.state).script.extend(behaviors);
    }

    /// What to do once the script is used up (default: echo).
    pub fn set_fallback(&self, behavior: Option<Behavior>) {
        lock(&self.state).fallback = behavior;
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// The most requests the fake was answering at the same time.
    pub fn max_concurrent(&self) -> usize {
        lock(&self.state).max_in_flight
    }

    /// How many requests are being answered right now (a delayed one counts until it answers).
    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }

    /// How many requests were received.
    pub fn calls(&self) -> usize {
        lock(&self.state).received.len()
    }

    /// Every text embedded so far, in order (embedding requests are not in `received`).
    pub fn embedded(&self) -> Vec<String> {
        lock(&self.state).embedded.clone()
    }
}

/// The fake's embedding space: 64 coordinates, one per hashed word, unit length. Texts that
/// share words are close; the same text always lands on the same vector.
pub const EMBEDDING_DIMENSION: usize = 64;

/// The fake's vector for `text`.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; EMBEDDING_DIMENSION];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let h = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        v[(h % EMBEDDING_DIMENSION as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v[0] = 1.0;
        return v;
    }
    v.into_iter().map(|x| x / norm).collect()
}

/// `input` as OpenAI and Ollama take it: one string or an array of strings.
fn inputs(body: &Value) -> Option<Vec<String>> {
    match body.get("input")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

async fn openai_embeddings(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let bearer = header(&req, "authorization");
    if !lock(&state).accepts(bearer.as_deref().and_then(|b| b.strip_prefix("Bearer "))) {
        return openai_error(
            401,
            "invalid_request_error",
            "Incorrect API key provided.",
            Some("invalid_api_key"),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            400,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
            None,
        );
    };
    let (Some(model), Some(texts)) = (body.get("model").and_then(Value::as_str), inputs(&body))
    else {
        return openai_error(
            400,
            "invalid_request_error",
            "'model' and 'input' are required.",
            None,
        );
    };
    if texts.is_empty() || texts.len() > 2048 || texts.iter().any(|t| t.is_empty()) {
        return openai_error(
            400,
            "invalid_request_error",
            "'input' must be 1 to 2048 non-empty strings.",
            None,
        );
    }
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({ "object": "embedding", "index": i, "embedding": fake_embedding(t) }))
        .collect();
    lock(&state).embedded.extend(texts);
    HttpResponse::Ok().json(json!({
        "object": "list", "data": data, "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
}

async fn ollama_embed(body: web::Bytes, state: web::Data<Mutex<State>>) -> HttpResponse {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({ "error": "invalid JSON" }));
    };
    let (Some(model), Some(texts)) = (body.get("model").and_then(Value::as_str), inputs(&body))
    else {
        return HttpResponse::BadRequest().json(json!({ "error": "model and input are required" }));
    };
    let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| fake_embedding(t)).collect();
    lock(&state).embedded.extend(texts);
    HttpResponse::Ok().json(json!({ "model": model, "embeddings": embeddings }))
}

/// Records a request as it arrives, before any check, so tests see every call a client made.
fn arrive(
    state: &Mutex<State>,
    api: &'static str,
    req: &HttpRequest,
    auth: Option<String>,
    body: &[u8],
) {
    lock(state).received.push(Received {
        api,
        path: req.path().to_string(),
        auth,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
}

fn next_behavior(state: &Mutex<State>, body: &Value) -> (Behavior, u64) {
    let mut s = lock(state);
    s.counter += 1;
    let behavior = s
        .script
        .pop_front()
        .or_else(|| s.fallback.clone())
        .unwrap_or_else(|| unscripted(body));
    (behavior, s.counter)
}

/// What the fake does unscripted, a little like a model: after tool results it answers with
/// them; offered a tool whose name's first word (`order` of `order_status`) the customer used,
/// it calls it with the message's first number (else the whole message) as the tool's one
/// required argument; otherwise it echoes the last user message.
fn unscripted(body: &Value) -> Behavior {
    let results = last_tool_results(body);
    if !results.is_empty() {
        return Behavior::Text(format!("Here is what I found: {}", results.join(" ")));
    }
    let text = last_user_text(body);
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for tool in body["tools"].as_array().into_iter().flatten() {
        // OpenAI nests the function; Anthropic does not.
        let (name, schema) = match tool.get("function") {
            Some(f) => (f["name"].as_str(), &f["parameters"]),
            None => (tool["name"].as_str(), &tool["input_schema"]),
        };
        let Some(name) = name else { continue };
        let stem = name.split('_').next().unwrap_or(name).to_lowercase();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if required.len() != 1 || !words.contains(&stem.as_str()) {
            continue;
        }
        let number = words
            .iter()
            .find(|w| w.chars().all(|c| c.is_ascii_digit()))
            .map(|w| w.to_string());
        let value = match (&schema["properties"][required[0]]["type"], number) {
            (Value::String(t), Some(n)) if t == "integer" || t == "number" => {
                json!(n.parse::<u64>().unwrap_or(0))
            }
            (_, Some(n)) => json!(n),
            (_, None) => json!(text),
        };
        return Behavior::ToolCall {
            name: name.to_string(),
            arguments: json!({ required[0]: value }),
        };
    }
    Behavior::Text(format!("echo: {text}"))
}

/// The tool results the request ends with (OpenAI `tool` messages; an Anthropic user message
/// of `tool_result` blocks), in order.
fn last_tool_results(body: &Value) -> Vec<String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for m in messages.iter().rev() {
        if m["role"] == "tool" {
            out.push(m["content"].as_str().unwrap_or_default().to_string());
            continue;
        }
        if m["role"] == "user"
            && let Some(blocks) = m["content"].as_array()
        {
            for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
                out.push(match &b["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
        }
        break;
    }
    out.reverse();
    out
}

fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for m in messages.iter().rev() {
        if m["role"] != "user" {
            continue;
        }
        match &m["content"] {
            Value::String(s) => return s.clone(),
            Value::Array(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter(|p| p["type"] == "text")
                    .filter_map(|p| p["text"].as_str())
                    .collect();
                if !texts.is_empty() {
                    return texts.join(" ");
                }
            }
            _ => {}
        }
    }
    String::new()
}

/// Whitespace-separated words, a stand-in for tokens that is stable for tests.
fn count_tokens(body: &Value) -> u64 {
    body.to_string().split_whitespace().count() as u64 + 1
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Counts a request as in flight while it is being answered.
struct InFlight<'a>(&'a Mutex<State>);

impl<'a> InFlight<'a> {
    fn enter(state: &'a Mutex<State>) -> Self {
        let mut s = lock(state);
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.0).in_flight -= 1;
    }
}

async fn resolve(behavior: Behavior) -> Behavior {
    let mut behavior = behavior;
    loop {
        match behavior {
            Behavior::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                behavior = *inner;
            }
            Behavior::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                behavior = Behavior::Malformed;
            }
            other => return other,
        }
    }
}

/// Adds `Retry-After: secs` when given, as the providers do on 429 and 529.
fn with_retry_after(mut res: HttpResponse, retry_after: Option<u64>) -> HttpResponse {
    if let Some(secs) = retry_after
        && let Ok(v) = secs.to_string().parse()
    {
        res.headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, v);
    }
    res
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

// ---------------------------------------------------------------------------------------------
// OpenAI Chat Completions
// ---------------------------------------------------------------------------------------------

fn openai_error(code: u16, kind: &str, message: &str, error_code: Option<&str>) -> HttpResponse {
    HttpResponse::build(status(code)).json(json!({
        "error": { "message": message, "type": kind, "param": null, "code": error_code }
    }))
}

fn validate_openai(body: &Value) -> Result<(), String> {
    if !body["model"].is_string() {
        return Err("you must provide a model parameter".into());
    }
    let messages = body["messages"]
        .as_array()
        .ok_or("'messages' is a required property")?;
    if messages.is_empty() {
        return Err("'messages' must contain at least one message".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        match role {
            "system" | "user" | "assistant" => {}
            "tool" => {
                if !m["tool_call_id"].is_string() {
                    return Err(format!(
                        "messages[{i}].tool_call_id is required for role tool"
                    ));
                }
            }
            _ => return Err(format!("messages[{i}].role is invalid")),
        }
        match &m["content"] {
            Value::String(_) => {}
            Value::Null if role == "assistant" && m["tool_calls"].is_array() => {}
            Value::Array(parts) => {
                for p in parts {
                    match p["type"].as_str() {
                        Some("text") if p["text"].is_string() => {}
                        Some("image_url") if p["image_url"]["url"].is_string() => {}
                        _ => return Err(format!("messages[{i}].content has an invalid part")),
                    }
                }
            }
            _ => return Err(format!("messages[{i}].content is invalid")),
        }
    }
    if let Some(tools) = body.get("tools") {
        for t in tools.as_array().ok_or("'tools' must be an array")? {
            if t["type"] != "function" || !t["function"]["name"].is_string() {
                return Err("each tool must be {type: function, function: {name, …}}".into());
            }
        }
    }
    Ok(())
}

async fn openai(
    req: HttpRequest,
    state: web::Data<Mutex<State>>,
    body: web::Bytes,
) -> HttpResponse {
    let auth = header(&req, "authorization");
    arrive(&state, "openai", &req, auth.clone(), &body);
    let key = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
    if !lock(&state).accepts(key) {
        return openai_error(
            401,
            "invalid_request_error",
            "Incorrect API key provided.",
            Some("invalid_api_key"),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            400,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
            None,
        );
    };
    if let Err(message) = validate_openai(&body) {
        return openai_error(400, "invalid_request_error", &message, None);
    }
    let (behavior, n) = next_behavior(&state, &body);
    let _in_flight = InFlight::enter(&state);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let prompt_tokens = count_tokens(&body["messages"]);
    let (message, finish) = match resolve(behavior).await {
        Behavior::Text(text) => (json!({ "role": "assistant", "content": text }), "stop"),
        Behavior::ToolCall { name, arguments } => openai_calls(n, vec![(name, arguments)]),
        Behavior::ToolCalls(calls) => openai_calls(n, calls),
        Behavior::Fail {
            status: code,
            retry_after,
            message,
        } => {
            let (kind, error_code) = match code {
                429 => ("requests", Some("rate_limit_exceeded")),
                400 => ("invalid_request_error", None),
                401 => ("invalid_request_error", Some("invalid_api_key")),
                _ => ("server_error", None),
            };
            return with_retry_after(openai_error(code, kind, &message, error_code), retry_after);
        }
        Behavior::Malformed | Behavior::Delay(..) | Behavior::Hang => {
            return HttpResponse::Ok()
                .json(json!({ "object": "chat.completion", "choices": "oops" }));
        }
    };
    let completion_tokens = count_tokens(&message);
    HttpResponse::Ok().json(json!({
        "id": format!("chatcmpl-fake-{n}"),
        "object": "chat.completion",
        "created": 1_700_000_000 + n,
        "model": model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": { "cached_tokens": 0 }
        }
    }))
}

/// An assistant message with these tool calls, ids unique per request and position.
fn openai_calls(n: u64, calls: Vec<(String, Value)>) -> (Value, &'static str) {
    let calls: Vec<Value> = calls
        .into_iter()
        .enumerate()
        .map(|(i, (name, arguments))| {
            json!({
                "id": format!("call_{n}_{i}"),
                "type": "function",
                "function": { "name": name, "arguments": arguments.to_string() }
            })
        })
        .collect();
    (
        json!({ "role": "assistant", "content": null, "tool_calls": calls }),
        "tool_calls",
    )
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages
// ---------------------------------------------------------------------------------------------

fn anthropic_calls(n: u64, calls: Vec<(String, Value)>) -> (Value, &'static str) {
    let blocks: Vec<Value> = calls
        .into_iter()
        .enumerate()
        .map(|(i, (name, input))| {
            json!({ "type": "tool_use", "id": format!("toolu_{n}_{i}"), "name": name, "input": input })
        })
        .collect();
    (Value::Array(blocks), "tool_use")
}

fn anthropic_error(code: u16, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status(code)).json(json!({
        "type": "error",
        "error": { "type": kind, "message": message }
    }))
}

fn validate_anthropic(body: &Value) -> Result<(), String> {
    if !body["model"].is_string() {
        return Err("model: Field required".into());
    }
    if !body["max_tokens"].is_u64() {
        return Err("max_tokens: Field required".into());
    }
    let messages = body["messages"]
        .as_array()
        .ok_or("messages: Field required")?;
    if messages.is_empty() || messages[0]["role"] != "user" {
        return Err("messages: the first message must use the \"user\" role".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        if i > 0 && messages[i - 1]["role"] == m["role"] {
            return Err("messages: roles must alternate between \"user\" and \"assistant\"".into());
        }
        match &m["content"] {
            Value::String(_) => {}
            Value::Array(blocks) => {
                for b in blocks {
                    let ok = match b["type"].as_str() {
                        Some("text") => b["text"].is_string(),
                        Some("image") => {
                            b["source"]["type"] == "base64"
                                && b["source"]["media_type"].is_string()
                                && b["source"]["data"].is_string()
                        }
                        Some("tool_use") => {
                            role == "assistant" && b["id"].is_string() && b["input"].is_object()
                        }
                        Some("tool_result") => role == "user" && b["tool_use_id"].is_string(),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("messages.{i}.content: invalid block {b}"));
                    }
                }
            }
            _ => return Err(format!("messages.{i}.content: Field required")),
        }
    }
    if let Some(system) = body.get("system")
        && !system.is_string()
        && !system.is_array()
    {
        return Err("system: Input should be a valid string".into());
    }
    if let Some(tools) = body.get("tools") {
        for t in tools
            .as_array()
            .ok_or("tools: Input should be a valid list")?
        {
            if !t["name"].is_string() || !t["input_schema"].is_object() {
                return Err("tools: each tool needs name and input_schema".into());
            }
        }
    }
    Ok(())
}

async fn anthropic(
    req: HttpRequest,
    state: web::Data<Mutex<State>>,
    body: web::Bytes,
) -> HttpResponse {
    let key = header(&req, "x-api-key");
    arrive(&state, "anthropic", &req, key.clone(), &body);
    if !lock(&state).accepts(key.as_deref()) {
        return anthropic_error(401, "authentication_error", "invalid x-api-key");
    }
    if header(&req, "anthropic-version").as_deref() != Some("2023-06-01") {
        return anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_error(
            400,
            "invalid_request_error",
            "request body is not valid JSON",
        );
    };
    if let Err(message) = validate_anthropic(&body) {
        return anthropic_error(400, "invalid_request_error", &message);
    }
    let (behavior, n) = next_behavior(&state, &body);
    let _in_flight = InFlight::enter(&state);
    let input_tokens = count_tokens(&body["messages"]) + count_tokens(&body["system"]);
    let (content, stop) = match resolve(behavior).await {
        Behavior::Text(text) => (json!([{ "type": "text", "text": text }]), "end_turn"),
        Behavior::ToolCall { name, arguments } => anthropic_calls(n, vec![(name, arguments)]),
        Behavior::ToolCalls(calls) => anthropic_calls(n, calls),
        Behavior::Fail {
            status: code,
            retry_after,
            message,
        } => {
            let kind = match code {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                401 => "authentication_error",
                403 => "permission_error",
                400 => "invalid_request_error",
                _ => "api_error",
            };
            return with_retry_after(anthropic_error(code, kind, &message), retry_after);
        }
        Behavior::Malformed | Behavior::Delay(..) | Behavior::Hang => {
            return HttpResponse::Ok().json(json!({ "type": "message", "content": 42 }));
        }
    };
    let output_tokens = count_tokens(&content);
    HttpResponse::Ok().json(json!({
        "id": format!("msg_fake_{n}"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// GET /v1/models: the cheap authenticated call used to check a key. Either auth style works,
// as the real services each accept their own.
// ---------------------------------------------------------------------------------------------

async fn models(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    let bearer = header(&req, "authorization");
    let x_api_key = header(&req, "x-api-key");
    let (api, auth) = match (&bearer, &x_api_key) {
        (_, Some(_)) => ("anthropic", x_api_key.clone()),
        _ => ("openai", bearer.clone()),
    };
    arrive(&state, api, &req, auth, b"");
    let ok = {
        let s = lock(&state);
        s.accepts(bearer.as_deref().and_then(|b| b.strip_prefix("Bearer ")))
            || s.accepts(x_api_key.as_deref())
    };
    if !ok {
        return if api == "anthropic" {
            anthropic_error(401, "authentication_error", "invalid x-api-key")
        } else {
            openai_error(
                401,
                "invalid_request_error",
                "Incorrect API key provided.",
                Some("invalid_api_key"),
            )
        };
    }
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": [{ "id": "test-model", "object": "model", "created": 1_700_000_000, "owned_by": "fake" }]
    }))
}
