//! Provider webhooks: one generic handler, instantiated once per channel kind. They
//! authenticate by the provider's signature, not by a session, so they live outside the route
//! table. Each answers fast: the adapter verifies and reads the delivery, each event is routed to
//! its connection and normalised, enqueued durably, then 200.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use shared::ErrorCode;

use super::AppState;
use super::error::ApiError;
use crate::channels::{
    ConnectionSettings, Inbound, InboundError, Receive, ResolvedConnection, WebhookRequest,
};
use crate::engine::ingest::Enqueued;

/// What the API answers for a refused delivery.
fn refused(kind: &str, e: InboundError) -> ApiError {
    match e {
        InboundError::NotConfigured(why) => ApiError::new(ErrorCode::Unavailable, why),
        InboundError::Unauthenticated(why) => {
            tracing::warn!(channel = kind, reason = %why, "refused a webhook delivery");
            ApiError::new(
                ErrorCode::Unauthenticated,
                format!("This request is not from the provider: {why}."),
            )
        }
        InboundError::Forbidden(why) => {
            tracing::warn!(channel = kind, reason = %why, "refused a webhook delivery");
            ApiError::forbidden(why)
        }
        InboundError::Malformed(why) => ApiError::new(ErrorCode::ValidationFailed, why),
    }
}

/// Handles one delivery for the adapter `A` (chosen by the route).
pub async fn receive<A: Receive>(
    adapter: &A,
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let kind = adapter.kind();
    let request = WebhookRequest {
        headers: req.headers(),
        query: req.query_string(),
        body,
        now: Utc::now().timestamp(),
    };
    let events = match adapter
        .inbound(&request)
        .map_err(|e| refused(kind.as_str(), e))?
    {
        Inbound::Respond { content_type, body } => {
            return Ok(HttpResponse::Ok().content_type(content_type).body(body));
        }
        Inbound::Ignore(reason) => {
            tracing::info!(channel = kind.as_str(), reason, "webhook delivery ignored");
            return Ok(HttpResponse::Ok().finish());
        }
        Inbound::Events(events) => events,
    };
    let retry = request.header("x-slack-retry-num").map(str::to_string);
    for routed in events {
        let event_id = routed.event_id.clone();
        // Unknown, disconnected or suspended: acknowledged (so the provider stops retrying), not
        // processed.
        let resolved = state
            .store
            .resolve_channel(kind, &routed.external_id)
            .await?;
        let Some(resolved) = resolved.filter(|r| r.active) else {
            tracing::info!(channel = kind.as_str(), channel.external_id = %routed.external_id, event = %event_id, "event for an unknown, disconnected or suspended connection; dropped");
            continue;
        };
        let settings =
            ConnectionSettings::parse(kind, &resolved.settings).map_err(ApiError::internal)?;
        let connection = ResolvedConnection {
            tenant: resolved.tenant,
            id: resolved.connection_id,
            agent_id: resolved.agent_id,
            active: resolved.active,
            settings,
        };
        let message = match adapter.accept(routed, &connection, Utc::now()) {
            Ok(message) => message,
            Err(reason) => {
                tracing::debug!(channel = kind.as_str(), event = %event_id, reason, "event not answered");
                continue;
            }
        };
        match state.ingest.enqueue(&message).await {
            Ok(Enqueued::Queued { .. }) => {
                tracing::info!(tenant.id = %connection.tenant, channel = kind.as_str(), event = %event_id, retry, "message queued");
            }
            Ok(Enqueued::Duplicate) => {
                tracing::info!(channel = kind.as_str(), event = %event_id, retry, "retry of a queued event; acknowledged");
            }
            // Not acknowledged: the provider retries, and nothing is lost (what was queued
            // before is deduplicated when it comes again).
            Err(e) => return Err(ApiError::unavailable(e)),
        }
    }
    Ok(HttpResponse::Ok().finish())
}

/// `POST /webhooks/slack/events`: the Slack Events API.
pub async fn slack_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let adapter = state.channels.slack.clone();
    receive(adapter.as_ref(), &req, &state, &body).await
}
