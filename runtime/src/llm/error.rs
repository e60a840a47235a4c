//! How a provider call failed, classified so the pool knows whether to retry, fall back or stop.

use std::time::Duration;

/// The class of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection could not be made.
    Connect,
    /// No answer within the deployment's timeout.
    Timeout,
    /// The provider failed (5xx, or 529 overloaded).
    Server(u16),
    /// Rate limited (429), with the provider's `Retry-After` if it sent one.
    RateLimited(Option<Duration>),
    /// The key was refused or lacks access (401/403), or the model does not exist for it (404).
    Auth(u16),
    /// The key's account is out of quota or credit (OpenAI's 429 `insufficient_quota`,
    /// Anthropic's "credit balance is too low"): waiting a few seconds will not help.
    QuotaExceeded,
    /// The prompt is longer than the model's context.
    ContextTooLong,
    /// The provider refused the content.
    ContentPolicy,
    /// The provider rejected the request as malformed (400): a bug on our side.
    BadRequest,
    /// A 2xx answer we could not read.
    Malformed,
}

impl FailureKind {
    /// Worth trying the same deployment again after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FailureKind::Connect
                | FailureKind::Timeout
                | FailureKind::Server(_)
                | FailureKind::RateLimited(_)
                | FailureKind::Malformed
        )
    }

    /// The deployment (not the request) is at fault, so another deployment may succeed.
    pub fn is_deployment_fault(&self) -> bool {
        self.is_retryable() || self.is_key_fault()
    }

    /// The key itself is at fault (refused, without access to the model, out of quota): the
    /// same key will fail again, so it cools down at once and its owner should hear of it.
    pub fn is_key_fault(&self) -> bool {
        matches!(self, FailureKind::Auth(_) | FailureKind::QuotaExceeded)
    }

    /// A stable name for logs and audit records.
    pub fn name(&self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Server(_) => "server_error",
            FailureKind::RateLimited(_) => "rate_limited",
            FailureKind::Auth(_) => "auth",
            FailureKind::QuotaExceeded => "quota_exceeded",
            FailureKind::ContextTooLong => "context_too_long",
            FailureKind::ContentPolicy => "content_policy",
            FailureKind::BadRequest => "bad_request",
            FailureKind::Malformed => "malformed",
        }
    }
}

/// One failed provider call. `detail` is the provider's own message (never our key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct ProviderError {
    pub kind: FailureKind,
    pub detail: String,
}

impl ProviderError {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// Classifies a transport error from reqwest.
    pub fn from_transport(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            FailureKind::Timeout
        } else if e.is_connect() {
            FailureKind::Connect
        } else if e.is_decode() || e.is_body() {
            FailureKind::Malformed
        } else {
            FailureKind::Connect
        };
        // reqwest's message names the URL, which carries no secret (keys travel in headers).
        Self::new(kind, e.to_string())
    }

    /// Classifies a non-2xx answer from its status, `Retry-After` and body text.
    pub fn from_status(status: u16, retry_after: Option<Duration>, body: &str) -> Self {
        let lower = body.to_lowercase();
        let kind = match status {
            429 if lower.contains("insufficient_quota") => FailureKind::QuotaExceeded,
            429 => FailureKind::RateLimited(retry_after),
            400 if lower.contains("credit balance") => FailureKind::QuotaExceeded,
            401 | 403 | 404 => FailureKind::Auth(status),
            400 | 413 | 422
                if lower.contains("context_length")
                    || lower.contains("context length")
                    || lower.contains("prompt is too long")
                    || lower.contains("too many tokens") =>
            {
                FailureKind::ContextTooLong
            }
            400 if lower.contains("content_policy") || lower.contains("content policy") => {
                FailureKind::ContentPolicy
            }
            400 | 413 | 422 => FailureKind::BadRequest,
            408 | 409 => FailureKind::Server(status),
            s if s >= 500 => FailureKind::Server(s),
            _ => FailureKind::BadRequest,
        };
        let detail: String = body.chars().take(300).collect();
        Self::new(kind, format!("HTTP {status}: {detail}"))
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these APIs and treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_what_the_pool_should_do() {
        let c = |s, body: &str| ProviderError::from_status(s, None, body).kind;
        assert_eq!(c(429, ""), FailureKind::RateLimited(None));
        assert_eq!(c(401, ""), FailureKind::Auth(401));
        assert_eq!(c(500, ""), FailureKind::Server(500));
        assert_eq!(c(529, ""), FailureKind::Server(529));
        assert_eq!(
            c(400, r#"{"error":{"code":"context_length_exceeded"}}"#),
            FailureKind::ContextTooLong
        );
        assert_eq!(
            c(400, "prompt is too long: 300000 tokens"),
            FailureKind::ContextTooLong
        );
        assert_eq!(
            c(400, "content_policy_violation"),
            FailureKind::ContentPolicy
        );
        assert_eq!(c(400, "bad"), FailureKind::BadRequest);
        assert_eq!(
            c(
                429,
                r#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#
            ),
            FailureKind::QuotaExceeded
        );
        assert_eq!(
            c(
                400,
                "Your credit balance is too low to access the Anthropic API."
            ),
            FailureKind::QuotaExceeded
        );
        assert!(FailureKind::QuotaExceeded.is_key_fault());
        assert!(!FailureKind::QuotaExceeded.is_retryable());
        assert!(!FailureKind::RateLimited(None).is_key_fault());
        assert!(FailureKind::Timeout.is_retryable());
        assert!(!FailureKind::Auth(401).is_retryable());
        assert!(FailureKind::Auth(401).is_deployment_fault());
        assert!(!FailureKind::ContextTooLong.is_deployment_fault());
    }
}
