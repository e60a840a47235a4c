//! Request ids and the per-request log line.
//!
//! Every request gets an id: a fresh UUID, or — only behind a trusted proxy
//! (`server.trust_proxy_headers`) — the proxy's `X-Request-Id` when it is a sane token, so a
//! caller cannot choose the id that lands in logs and audit rows. The id is echoed in the `X-Request-Id` header, put on the request's tracing span (so every
//! log line of the request carries it) and made available to error bodies through a task-local.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use uuid::Uuid;

use super::error::ApiError;

/// The header that carries the id both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if called while handling one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn accept_incoming(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let sane = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    sane.then(|| s.to_string())
}

/// The middleware: assigns the id, opens the span, logs one line when the request ends, and logs
/// the cause of a 5xx (the only place it is logged).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let trusted = req
        .app_data::<actix_web::web::Data<super::AppState>>()
        .is_some_and(|s| s.auth.peer_is_proxy);
    let id = req
        .headers()
        .get(&HEADER)
        .filter(|_| trusted)
        .and_then(accept_incoming)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "http.request",
        request.id = %id,
        http.method = %req.method(),
        http.path = %req.path(),
    );
    let started = Instant::now();
    let result = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .instrument(span.clone())
        .await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _enter = span.enter();
    match result {
        Ok(mut res) => {
            let status = res.status().as_u16();
            if let Some(err) = res.response().error() {
                if status >= 500 {
                    let cause = err
                        .as_error::<ApiError>()
                        .and_then(ApiError::cause_chain)
                        .unwrap_or_else(|| err.to_string());
                    tracing::error!(http.status = status, duration_ms, error.cause = %cause, "request failed");
                } else {
                    tracing::info!(http.status = status, duration_ms, error = %err, "request rejected");
                }
            } else {
                tracing::info!(http.status = status, duration_ms, "request finished");
            }
            if let Ok(value) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(HEADER, value);
            }
            Ok(res)
        }
        Err(err) => {
            tracing::error!(duration_ms, error.cause = %err, "request failed before a response");
            Err(err)
        }
    }
}
