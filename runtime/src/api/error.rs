//! `ApiError`: how every failure leaves the API, as `{code, message, request_id}`.
//!
//! The status for each code is decided in [`status_for`], one exhaustive `match` with no
//! catch-all. Bodies of 5xx answers are opaque: the cause goes to the log once, by the request
//! middleware, under the request id the client also sees.

use std::error::Error as StdError;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use shared::{ErrorBody, ErrorCode, FieldError};

use crate::store::StoreError;

use super::request_id;

type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after_secs: Option<u64>,
    fields: Vec<FieldError>,
    cause: Option<Cause>,
}

/// The HTTP status of each error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

const INTERNAL_MESSAGE: &str =
    "Something went wrong on our side. Quote the request id if you contact support.";
const UNAVAILABLE_MESSAGE: &str =
    "A service Konstruct depends on is unavailable right now. Please retry shortly.";

impl ApiError {
    /// An error the client caused, with a message safe to show.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
            fields: Vec::new(),
            cause: None,
        }
    }

    /// `validation_failed` with one entry per invalid field.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            ErrorCode::ValidationFailed,
            "Some fields are not valid; see `fields`.",
        );
        e.fields = fields;
        e
    }

    /// `validation_failed` for one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// 401: no session, or it is invalid, expired or revoked.
    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::Unauthenticated,
            "Your session is missing, has expired or was ended. Please sign in.",
        )
    }

    /// 403: signed in, but the permission is missing.
    pub fn forbidden(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, what)
    }

    /// A failure on our side; `cause` is logged, never sent.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::new(ErrorCode::Internal, INTERNAL_MESSAGE).with_cause(cause)
    }

    /// A dependency is down; `cause` is logged, never sent.
    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        Self::new(ErrorCode::Unavailable, UNAVAILABLE_MESSAGE).with_cause(cause)
    }

    /// No such resource (or another tenant's: the same answer, so existence never leaks).
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} was not found."))
    }

    /// Attaches the underlying error, for the log.
    pub fn with_cause(mut self, cause: impl Into<Cause>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Sets `Retry-After` on the answer.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The cause chain as one line, for the log.
    pub fn cause_chain(&self) -> Option<String> {
        let mut cause: Option<&(dyn StdError + 'static)> = self
            .cause
            .as_deref()
            .map(|c| c as &(dyn StdError + 'static));
        let mut parts = Vec::new();
        while let Some(c) = cause {
            parts.push(c.to_string());
            cause = c.source();
        }
        (!parts.is_empty()).then(|| parts.join(": "))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn StdError + 'static))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_for(self.code)
    }

    fn error_response(&self) -> HttpResponse {
        let body = ErrorBody {
            code: self.code,
            message: self.message.clone(),
            request_id: request_id::current().unwrap_or_default(),
            fields: self.fields.clone(),
        };
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(body)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::unavailable(e),
            StoreError::NotFound => ApiError::not_found("The resource"),
            StoreError::Conflict(ref what) => ApiError::new(
                ErrorCode::Conflict,
                format!("This conflicts with an existing record ({what})."),
            ),
            StoreError::Config(_)
            | StoreError::Invalid(_)
            | StoreError::Migrate(_)
            | StoreError::Database(_)
            | StoreError::Fenced => ApiError::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_only_two_are_server_errors() {
        let server_errors: Vec<_> = ErrorCode::ALL
            .into_iter()
            .filter(|c| status_for(*c).is_server_error())
            .collect();
        assert_eq!(
            server_errors,
            vec![ErrorCode::Unavailable, ErrorCode::Internal]
        );
        for code in ErrorCode::ALL {
            assert!(status_for(code).is_client_error() || status_for(code).is_server_error());
        }
    }

    #[test]
    fn internal_errors_keep_the_cause_out_of_the_message() {
        let e = ApiError::internal(std::io::Error::other("disk on fire at /var/secret"));
        assert!(!e.to_string().contains("disk on fire"));
        assert_eq!(
            e.cause_chain().as_deref(),
            Some("disk on fire at /var/secret")
        );
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
