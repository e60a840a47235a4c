//! The one error contract every API answer uses: `{code, message, request_id}`.
//!
//! The codes are the stable, machine-readable part; messages are for humans and may change. The
//! mapping from code to HTTP status lives in the runtime's `api` module (the only place that knows
//! HTTP), as one exhaustive `match`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every error code the API can answer with.
///
/// Adding a variant forces the runtime's status mapping to be extended (the match has no
/// catch-all), so a new code can never silently become a 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be parsed (malformed JSON, wrong content type, bad query string).
    BadRequest,
    /// The request was well-formed but a field failed validation.
    ValidationFailed,
    /// No session, or the session is invalid or expired.
    Unauthenticated,
    /// The caller is signed in but lacks the permission the endpoint requires.
    Forbidden,
    /// No such resource, or it belongs to another tenant (never leak which).
    NotFound,
    /// The method is not supported on this resource.
    MethodNotAllowed,
    /// The request conflicts with the current state (duplicate slug, stale version, …).
    Conflict,
    /// The request body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The request body has a content type the endpoint does not accept.
    UnsupportedMediaType,
    /// Too many requests; retry after the time given in `Retry-After`.
    RateLimited,
    /// A dependency (database, cache) is not reachable right now; retry later.
    Unavailable,
    /// Something failed on our side; the details are in the server log under the request id.
    Internal,
}

impl ErrorCode {
    /// All codes, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::ValidationFailed,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The snake_case wire name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Machine-readable code; clients branch on this.
    pub code: ErrorCode,
    /// Human-readable explanation, safe to show to the user. Never contains internals.
    pub message: String,
    /// The id of the request, also sent as the `X-Request-Id` header and logged with every line
    /// the request produced, so support can find the cause.
    pub request_id: String,
    /// With `validation_failed`: one entry per invalid field, so a form can show each inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// Why one field is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's path in the request body, e.g. `name` or `escalation_rules[1].trigger.threshold`.
    pub field: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serialises_to_its_wire_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn error_body_round_trips() {
        let body = ErrorBody {
            code: ErrorCode::NotFound,
            message: "no such agent".into(),
            request_id: "r-1".into(),
            fields: Vec::new(),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["code"], "not_found");
        assert_eq!(serde_json::from_value::<ErrorBody>(json).unwrap(), body);
    }
}
