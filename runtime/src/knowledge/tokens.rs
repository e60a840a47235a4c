//! Token counts by the local embedding model's own tokenizer, so a chunk never exceeds what the model reads.
//!
//! The embedder (`pocket-encoder`, paraphrase-MiniLM-L3-v2) reads at most
//! [`ModelTokens::MAX_TOKENS`] WordPiece tokens including its `[CLS]` and `[SEP]`, and
//! silently cuts the rest. Its tokenizer file is private to that crate, so a copy is
//! vendored in `assets/` (a test checks it is byte-for-byte the one the embedder ships)
//! and compiled into the binary: counting needs no file, no network and no model weights.

use std::sync::OnceLock;

use tokenizers::Tokenizer;

use super::chunk::TokenCount;

/// The tokenizer of the embedding model, unchanged from the embedder's crate.
const TOKENIZER_JSON: &[u8] = include_bytes!("../../assets/minilm-tokenizer.json");

/// Why the tokenizer could not be loaded: only a broken build, never bad input.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokensError {
    #[error("the embedding model's tokenizer could not be loaded: {0}")]
    Load(String),
}

pub type Result<T> = std::result::Result<T, TokensError>;

/// Counts tokens exactly as the embedding model sees them: special tokens included, no
/// truncation, no padding.
pub struct ModelTokens {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for ModelTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokens")
            .field("max_tokens", &Self::MAX_TOKENS)
            .finish_non_exhaustive()
    }
}

impl ModelTokens {
    /// The most tokens the embedding model reads, `[CLS]` and `[SEP]` included.
    pub const MAX_TOKENS: usize = 128;

    /// The process-wide counter, parsed on first use (a few milliseconds). A failed load
    /// is remembered: the file is part of the binary, so trying again cannot succeed.
    pub fn shared() -> Result<&'static ModelTokens> {
        static SHARED: OnceLock<std::result::Result<ModelTokens, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| ModelTokens::load().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| TokensError::Load(e.clone()))
    }

    fn load() -> Result<ModelTokens> {
        let mut tokenizer =
            Tokenizer::from_bytes(TOKENIZER_JSON).map_err(|e| TokensError::Load(e.to_string()))?;
        // The file configures truncation at 128 for embedding; counting must see it all.
        tokenizer
            .with_truncation(None)
            .map_err(|e| TokensError::Load(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(ModelTokens { tokenizer })
    }
}

impl TokenCount for ModelTokens {
    fn tokens(&self, text: &str) -> usize {
        match self.tokenizer.encode_fast(text, true) {
            Ok(encoding) => encoding.len(),
            // Never seen for WordPiece; every token covers at least one character, so this
            // bound is safe: a chunk sized by it still fits.
            Err(_) => text.chars().count() + 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_vendored_tokenizer_is_the_one_the_embedder_ships() {
        let digest: String = Sha256::digest(TOKENIZER_JSON)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let info = pocket_encoder::model_info();
        assert_eq!(digest, info.tokenizer_sha256);
        assert_eq!(ModelTokens::MAX_TOKENS, info.max_tokens);
    }

    #[test]
    fn counts_include_the_special_tokens_and_are_not_truncated() {
        let tokens = ModelTokens::shared().unwrap();
        assert_eq!(tokens.tokens(""), 2);
        // "hello" and "world" are single WordPiece tokens, "," one more.
        assert_eq!(tokens.tokens("Hello, world"), 5);
        let long = "word ".repeat(500);
        assert_eq!(tokens.tokens(&long), 502);
    }
}
