//! Local sentence embeddings: one small model compiled into the binary, loaded once per process.
//!
//! The model (paraphrase-MiniLM-L3-v2, 384 coordinates, shipped inside the `pocket-encoder`
//! crate) needs no download, no model cache and no network, so it works the same on a
//! laptop, in CI and in production. It is English-first: other languages embed, but less well.
//! Loading expands the weights once (a fraction of a second in release builds); a process
//! that never embeds never pays for it, because nothing loads until the first
//! [`LocalEmbedder::shared`] call.
//!
//! Everything here is blocking CPU work: async callers go through `spawn_blocking`.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Why text could not be embedded. Never carries the text itself (it may be a customer's).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// The bundled model or tokenizer could not be loaded (a broken build, not bad input).
    #[error("the local embedding model could not be loaded: {0}")]
    Load(String),
    /// The input broke one of the model's bounds: blank text, more than 4096 texts, more
    /// than 64 KiB in one text or 4 MiB in all.
    #[error("text not embeddable: {0}")]
    Input(&'static str),
    /// Inference failed on valid input.
    #[error("embedding failed: {0}")]
    Inference(String),
    /// A provider's embedding endpoint failed; `retryable` when another attempt may work (a
    /// timeout, a 429 or a 5xx). The reason is ours, never the provider's text.
    #[error("the embedding provider failed: {reason}")]
    Provider { reason: String, retryable: bool },
}

impl EmbedError {
    /// Whether trying again later may work.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EmbedError::Provider {
                retryable: true,
                ..
            }
        )
    }
}

pub type Result<T> = std::result::Result<T, EmbedError>;

/// The identity of the coordinate space. Vectors from different models (or different
/// quantisations of one) must never be compared; stored vectors keep this id beside them.
pub const MODEL_ID: &str = "pocket-encoder/minilm-l3-q4-g32-v1";

/// The shipped embedding model. Clones share one set of weights.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    encoder: pocket_encoder::Encoder,
    info: pocket_encoder::ModelInfo,
}

impl fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model", &self.inner.info.id)
            .field("dimension", &self.inner.info.dimensions)
            .finish()
    }
}

impl LocalEmbedder {
    /// The process-wide embedder, loaded on the first call. A failed load is remembered:
    /// the weights are part of the binary, so trying again cannot succeed.
    pub fn shared() -> Result<LocalEmbedder> {
        static SHARED: OnceLock<std::result::Result<LocalEmbedder, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                pocket_encoder::Encoder::new()
                    .map(|encoder| LocalEmbedder {
                        inner: Arc::new(Inner {
                            encoder,
                            info: pocket_encoder::model_info(),
                        }),
                    })
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(EmbedError::Load)
    }

    /// One unit-length vector per text, in order. Blocking (CPU-bound, a few milliseconds per
    /// short text in a release build). Texts longer than 128 tokens are cut at the end, so
    /// long documents should be split first.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.inner.encoder.embed(texts).map_err(|e| match e {
            pocket_encoder::Error::Input(why) => EmbedError::Input(why),
            pocket_encoder::Error::Inference(why) => EmbedError::Inference(why),
        })
    }

    /// The number of coordinates of every vector.
    pub fn dimension(&self) -> usize {
        self.inner.info.dimensions
    }

    /// The coordinate space's identity, to store beside persisted vectors.
    pub fn model_id(&self) -> &'static str {
        MODEL_ID
    }

    /// The full identity of the model (weights' and tokenizer's checksums, pooling), for
    /// callers that persist vectors and must refuse to mix spaces.
    pub fn model_info(&self) -> &pocket_encoder::ModelInfo {
        &self.inner.info
    }
}

/// The cosine similarity of two unit-length vectors (their dot product); 0 when the lengths
/// differ, which only happens when vectors from different models are mixed up.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_unit_vectors_is_their_dot_product() {
        let a = [0.6, 0.8];
        let b = [0.8, 0.6];
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-6);
        assert!((cosine(&a, &b) - 0.96).abs() < 1e-6);
        assert_eq!(cosine(&a, &[1.0]), 0.0);
    }

    #[test]
    fn the_model_id_names_the_shipped_model() {
        // Metadata only: this does not load the weights.
        assert_eq!(pocket_encoder::model_info().id, MODEL_ID);
        assert_eq!(pocket_encoder::model_info().dimensions, 384);
    }
}
