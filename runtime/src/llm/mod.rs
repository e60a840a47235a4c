//! The LLM backend pool: OpenAI-compatible (OpenAI, Ollama, …) and Anthropic providers behind
//! one router with retries, fallback and cooldown.
//!
//! `types` is the provider-neutral request and answer; `openai` and `anthropic` shape them for
//! each wire format; `error` classifies failures; `pool` decides what to try next.

pub mod anthropic;
pub mod error;
pub mod openai;
pub mod pool;
pub mod types;

/// Installs the process's TLS crypto provider (ring, like the rest of the stack). Idempotent;
/// call before building any HTTP client.
pub fn install_crypto() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client for provider calls: pooled connections, no global timeout (each deployment
/// sets its own per request).
pub fn http_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
