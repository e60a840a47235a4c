//! Sentence embeddings behind one trait: the model shipped inside the binary by default
//! ([`LocalEmbedder`]), or a provider's embedding endpoint (OpenAI `/v1/embeddings`, Ollama
//! `/api/embed`), with the platform's key or a tenant's own.
//!
//! A model is named by a spec: `local`, `openai:<model>` or `ollama:<model>`. Vectors carry the
//! model's full identity ([`Embedder::model`]) wherever they are kept, and vectors of two models
//! are never compared or stored in one collection.

mod local;
pub mod provider;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use local::{EmbedError, LocalEmbedder, MODEL_ID as LOCAL_MODEL_ID, Result, cosine};
pub use provider::{ProviderEmbedder, ProviderKind};

/// Texts to vectors, with one model.
pub trait Embedder: Send + Sync + fmt::Debug {
    /// The coordinate space's identity, stored beside every vector it makes.
    fn model(&self) -> &str;

    /// The tokens one input may have before the model cuts it off; chunks are sized to it.
    fn max_tokens(&self) -> usize;

    /// One vector per text, in order (unit length for the local model; providers' as they come).
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>>;
}

/// The spec of the shipped model.
pub const LOCAL: &str = "local";

/// What a model spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Local,
    Provider { kind: ProviderKind, model: String },
}

impl ModelSpec {
    /// `local`, `openai:<model>` or `ollama:<model>` (model names: letters, digits, `.-_:/`,
    /// at most 100 characters).
    pub fn parse(spec: &str) -> Option<ModelSpec> {
        let spec = spec.trim();
        if spec == LOCAL {
            return Some(ModelSpec::Local);
        }
        let (kind, model) = spec.split_once(':')?;
        let kind = match kind {
            "openai" => ProviderKind::OpenAi,
            "ollama" => ProviderKind::Ollama,
            _ => return None,
        };
        let valid = !model.is_empty()
            && model.len() <= 100
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'));
        valid.then(|| ModelSpec::Provider {
            kind,
            model: model.to_string(),
        })
    }

    /// The spec as written.
    pub fn name(&self) -> String {
        match self {
            ModelSpec::Local => LOCAL.to_string(),
            ModelSpec::Provider { kind, model } => format!("{}:{model}", kind.as_str()),
        }
    }
}

/// The shipped model behind the trait: blocking inference on the blocking pool, in batches.
#[derive(Debug, Clone)]
pub struct Local(LocalEmbedder);

impl Local {
    /// The process's shared model (loaded on first use).
    pub fn shared() -> Result<Local> {
        LocalEmbedder::shared().map(Local)
    }

    /// The model itself, for callers that run on the blocking pool already.
    pub fn inner(&self) -> &LocalEmbedder {
        &self.0
    }
}

/// Texts embedded in one call of the local model.
const LOCAL_BATCH: usize = 64;

impl Embedder for Local {
    fn model(&self) -> &str {
        self.0.model_id()
    }

    fn max_tokens(&self) -> usize {
        self.0.model_info().max_tokens
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for batch in texts.chunks(LOCAL_BATCH) {
                let model = self.0.clone();
                let batch = batch.to_vec();
                let vectors = tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                    model.embed(&refs)
                })
                .await
                .map_err(|e| EmbedError::Inference(format!("the embedding task stopped: {e}")))??;
                out.extend(vectors);
            }
            Ok(out)
        })
    }
}

/// A shared embedder.
pub type SharedEmbedder = Arc<dyn Embedder>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_parse_and_print_back() {
        assert_eq!(ModelSpec::parse("local"), Some(ModelSpec::Local));
        let openai = ModelSpec::parse("openai:text-embedding-3-small");
        assert_eq!(
            openai,
            Some(ModelSpec::Provider {
                kind: ProviderKind::OpenAi,
                model: "text-embedding-3-small".into()
            })
        );
        assert_eq!(
            openai.map(|s| s.name()).as_deref(),
            Some("openai:text-embedding-3-small")
        );
        for bad in ["", "openai:", "cohere:embed", "openai:a b", "ollama:x\ty"] {
            assert_eq!(ModelSpec::parse(bad), None, "{bad:?}");
        }
    }
}
