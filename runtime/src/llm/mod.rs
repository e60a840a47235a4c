//! The LLM backend pool: OpenAI-compatible (OpenAI, Ollama, …) and Anthropic providers behind
//! one router with retries, fallback and cooldown.
//!
//! `types` is the provider-neutral request and answer; `openai` and `anthropic` shape them for
//! each wire format; `error` classifies failures; `pool` decides what to try next.

pub mod anthropic;
pub mod budget;
pub mod cost;
pub mod error;
pub mod openai;
pub mod pool;
pub mod provider;
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

pub mod metering;

/// Checks a key with the cheapest authenticated call each provider has (`GET /v1/models`), before
/// a tenant's key is stored.
#[derive(Debug, Clone)]
pub struct KeyValidator {
    http: reqwest::Client,
    openai_base: String,
    anthropic_base: String,
}

impl KeyValidator {
    pub fn from_settings(llm: &crate::config::LlmSettings) -> Self {
        Self {
            http: http_client(),
            openai_base: llm
                .openai_base_url
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string(),
            anthropic_base: llm
                .anthropic_base_url
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string(),
        }
    }

    /// `Ok` when the provider accepts the key.
    pub async fn check(
        &self,
        provider: shared::resources::LlmProvider,
        key: &str,
    ) -> Result<(), error::ProviderError> {
        use shared::resources::LlmProvider;
        let request = match provider {
            LlmProvider::Openai => self
                .http
                .get(format!("{}/v1/models", self.openai_base))
                .bearer_auth(key),
            LlmProvider::Anthropic => self
                .http
                .get(format!("{}/v1/models", self.anthropic_base))
                .header("x-api-key", key)
                .header("anthropic-version", anthropic::VERSION),
        };
        let response = request
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| error::ProviderError::from_transport(&e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let after = error::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(error::ProviderError::from_status(
            status,
            after,
            &text.replace(key, "[redacted]"),
        ))
    }
}
