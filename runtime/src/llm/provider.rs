//! The one trait every wire format implements. A provider is stateless: it knows where to send a
//! chat request, how to authenticate it, how to shape the body and how to read the answer; the
//! pool does the HTTP, the retries and the bookkeeping.

use reqwest::RequestBuilder;
use serde_json::Value;

use super::error::ProviderError;
use super::types::{ChatRequest, Completion};
use super::{anthropic, openai};

/// A wire format.
pub trait Provider: Send + Sync {
    /// The stable name used in usage records and the price table (`openai`, `anthropic`).
    fn name(&self) -> &'static str;
    /// The chat endpoint under a base URL that has no trailing `/v1`.
    fn chat_url(&self, base: &str) -> String;
    /// Adds the provider's auth headers (and version headers) to a request.
    fn authorize(&self, request: RequestBuilder, key: Option<&str>) -> RequestBuilder;
    /// The JSON body for `model`.
    fn body(&self, model: &str, req: &ChatRequest) -> Value;
    /// Reads a 2xx answer.
    fn parse(&self, answer: &Value) -> Result<Completion, ProviderError>;
}

/// OpenAI Chat Completions (also Ollama's `/v1` and compatible servers).
#[derive(Debug, Clone, Copy)]
pub struct OpenAi;

/// Anthropic Messages.
#[derive(Debug, Clone, Copy)]
pub struct Anthropic;

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn chat_url(&self, base: &str) -> String {
        format!("{base}/v1/chat/completions")
    }

    fn authorize(&self, request: RequestBuilder, key: Option<&str>) -> RequestBuilder {
        match key {
            Some(key) => request.bearer_auth(key),
            // Ollama needs no key.
            None => request,
        }
    }

    fn body(&self, model: &str, req: &ChatRequest) -> Value {
        openai::body(model, req)
    }

    fn parse(&self, answer: &Value) -> Result<Completion, ProviderError> {
        openai::parse(answer)
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn chat_url(&self, base: &str) -> String {
        format!("{base}/v1/messages")
    }

    fn authorize(&self, request: RequestBuilder, key: Option<&str>) -> RequestBuilder {
        request
            .header("x-api-key", key.unwrap_or_default())
            .header("anthropic-version", anthropic::VERSION)
    }

    fn body(&self, model: &str, req: &ChatRequest) -> Value {
        anthropic::body(model, req)
    }

    fn parse(&self, answer: &Value) -> Result<Completion, ProviderError> {
        anthropic::parse(answer)
    }
}
