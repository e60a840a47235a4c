//! A provider's embedding endpoint: OpenAI `POST {base}/v1/embeddings` (`{model, input: [..]}` →
//! `{data: [{index, embedding}]}`) or Ollama `POST {base}/api/embed` (`{model, input: [..]}` →
//! `{embeddings: [[..]]}`), through the shared outbound client.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use super::{EmbedError, Embedder, Result};
use crate::outbound::{Outbound, OutboundError, OutboundRequest};

/// Which API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Ollama,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Ollama => "ollama",
        }
    }
}

/// Texts per request (OpenAI accepts up to 2048; smaller requests fail and retry cheaper).
const BATCH: usize = 128;
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Inputs are chunked to this many tokens of the local tokenizer: well within every provider
/// model's own limit (8191 for OpenAI's, 512 and up for Ollama's), whose tokenizers we do not
/// ship.
const PROVIDER_TOKENS: usize = 256;

/// One provider model, with the key it is called with.
#[derive(Clone)]
pub struct ProviderEmbedder {
    kind: ProviderKind,
    base_url: String,
    /// The provider's own name for the model.
    remote_model: String,
    /// `openai:<model>` or `ollama:<model>`: what its vectors are stored as.
    spec: String,
    key: Option<String>,
    http: Outbound,
}

impl fmt::Debug for ProviderEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEmbedder")
            .field("model", &self.spec)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl ProviderEmbedder {
    pub fn new(
        kind: ProviderKind,
        base_url: &str,
        model: &str,
        key: Option<String>,
        http: Outbound,
    ) -> Self {
        Self {
            kind,
            base_url: base_url.trim_end_matches('/').to_string(),
            remote_model: model.to_string(),
            spec: format!("{}:{model}", kind.as_str()),
            key,
            http,
        }
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let (path, body) = match self.kind {
            ProviderKind::OpenAi => (
                "/v1/embeddings",
                json!({ "model": self.remote_model, "input": texts, "encoding_format": "float" }),
            ),
            ProviderKind::Ollama => (
                "/api/embed",
                json!({ "model": self.remote_model, "input": texts }),
            ),
        };
        let mut request =
            OutboundRequest::new(reqwest::Method::POST, format!("{}{path}", self.base_url))
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.to_string())
                .timeout(TIMEOUT)
                .max_redirects(0);
        if let Some(key) = &self.key {
            let value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| provider("the API key is not a valid header value", false))?;
            request = request.header(AUTHORIZATION, value);
        }
        let response = self.http.send(request).await.map_err(|e| match e {
            OutboundError::Timeout { .. } => provider("the request timed out", true),
            OutboundError::Http(_) => provider("the provider could not be reached", true),
            other => provider(&other.to_string(), false),
        })?;
        let status = response.status.as_u16();
        match status {
            200..=299 => {}
            401 | 403 => return Err(provider("the provider refused the API key", false)),
            404 => return Err(provider("the provider does not know this model", false)),
            429 => return Err(provider("the provider is rate limiting", true)),
            500..=599 => return Err(provider(&format!("the provider answered {status}"), true)),
            _ => return Err(provider(&format!("the provider answered {status}"), false)),
        }
        let value: Value = serde_json::from_slice(&response.body)
            .map_err(|_| provider("the provider's answer is not JSON", true))?;
        let vectors = match self.kind {
            ProviderKind::OpenAi => openai_vectors(&value, texts.len()),
            ProviderKind::Ollama => ollama_vectors(&value),
        }
        .ok_or_else(|| provider("the provider's answer is not the documented shape", true))?;
        if vectors.len() != texts.len() {
            return Err(provider(
                "the provider returned a different number of vectors",
                true,
            ));
        }
        let dimension = vectors.first().map_or(0, Vec::len);
        if dimension == 0 || vectors.iter().any(|v| v.len() != dimension) {
            return Err(provider(
                "the provider returned vectors of mixed sizes",
                true,
            ));
        }
        Ok(vectors)
    }
}

fn provider(reason: &str, retryable: bool) -> EmbedError {
    EmbedError::Provider {
        reason: reason.to_string(),
        retryable,
    }
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

/// `data[].embedding`, put in `index` order.
fn openai_vectors(value: &Value, n: usize) -> Option<Vec<Vec<f32>>> {
    let data = value.get("data")?.as_array()?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for (i, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(i, |x| x as usize);
        *out.get_mut(index)? = Some(floats(item.get("embedding")?)?);
    }
    out.into_iter().collect()
}

fn ollama_vectors(value: &Value) -> Option<Vec<Vec<f32>>> {
    value
        .get("embeddings")?
        .as_array()?
        .iter()
        .map(floats)
        .collect()
}

impl Embedder for ProviderEmbedder {
    fn model(&self) -> &str {
        &self.spec
    }

    fn max_tokens(&self) -> usize {
        PROVIDER_TOKENS
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for batch in texts.chunks(BATCH) {
                out.extend(self.call(batch).await?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_vectors_are_put_in_index_order() {
        let body = json!({ "data": [
            { "index": 1, "embedding": [0.0, 1.0] },
            { "index": 0, "embedding": [1.0, 0.0] },
        ]});
        assert_eq!(
            openai_vectors(&body, 2),
            Some(vec![vec![1.0, 0.0], vec![0.0, 1.0]])
        );
        assert_eq!(openai_vectors(&body, 1), None, "an index out of range");
        assert_eq!(
            openai_vectors(&json!({ "data": [{ "index": 0 }] }), 1),
            None
        );
        assert_eq!(
            ollama_vectors(&json!({ "embeddings": [[0.5, 0.5]] })),
            Some(vec![vec![0.5, 0.5]])
        );
        assert_eq!(ollama_vectors(&json!({ "embedding": [0.5] })), None);
    }
}
