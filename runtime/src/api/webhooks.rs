//! Provider webhooks. They authenticate by the provider's signature, not by a session, so they
//! live outside the route table. Each answers fast: verify, normalise, enqueue durably, 200.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use shared::ErrorCode;
use shared::channel::{ChannelKind, InboundMessage, Sender};

use super::AppState;
use super::error::ApiError;
use crate::channels::slack::{self, Envelope};
use crate::engine::ingest::Enqueued;
use crate::store::channels;

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `POST /webhooks/slack/events`: the Slack Events API.
pub async fn slack_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = &state.slack_signing_secret else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "Slack is not configured on this server (KONSTRUCT_SLACK_SIGNING_SECRET).",
        ));
    };
    if let Err(e) = slack::verify_signature(
        secret.expose(),
        header(&req, "x-slack-request-timestamp"),
        header(&req, "x-slack-signature"),
        &body,
        Utc::now().timestamp(),
    ) {
        tracing::warn!(reason = %e, "refused a Slack delivery");
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            format!("This request is not from Slack: {e}."),
        ));
    }
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            ErrorCode::ValidationFailed,
            "The body is not a Slack Events API envelope.",
        )
    })?;
    match envelope.kind.as_str() {
        "url_verification" => {
            let challenge = envelope.challenge.unwrap_or_default();
            return Ok(HttpResponse::Ok().json(serde_json::json!({ "challenge": challenge })));
        }
        "event_callback" => {}
        other => {
            tracing::info!(slack.type = other, "ignored a Slack delivery type");
            return Ok(HttpResponse::Ok().finish());
        }
    }
    let retry = header(&req, "x-slack-retry-num").map(str::to_string);
    let (Some(team_id), Some(event_id), Some(event)) =
        (envelope.team_id, envelope.event_id, envelope.event)
    else {
        return Err(ApiError::new(
            ErrorCode::ValidationFailed,
            "The event callback lacks team_id, event_id or event.",
        ));
    };
    // Unknown, disconnected or suspended: acknowledged (so Slack stops retrying), not processed.
    let resolved = state.store.resolve_channel("slack", &team_id).await?;
    let Some(resolved) = resolved.filter(|r| r.active) else {
        tracing::info!(slack.team = %team_id, slack.event = %event_id, "event for an unknown, disconnected or suspended workspace; dropped");
        return Ok(HttpResponse::Ok().finish());
    };
    let mut tx = state.store.tenant_tx(resolved.tenant).await?;
    let connection = channels::get(&mut tx, resolved.connection_id).await?;
    tx.commit().await?;
    let Some(connection) = connection else {
        return Ok(HttpResponse::Ok().finish());
    };
    let bot_user_id = connection.settings["bot_user_id"]
        .as_str()
        .unwrap_or_default();
    let accepted = match slack::accept(&event, bot_user_id) {
        Ok(a) => a,
        Err(reason) => {
            tracing::debug!(slack.event = %event_id, reason, "Slack event not answered");
            return Ok(HttpResponse::Ok().finish());
        }
    };
    let message = InboundMessage {
        tenant_id: resolved.tenant,
        channel: ChannelKind::Slack,
        connection_id: connection.id,
        agent_id: connection.agent_id,
        conversation_key: slack::conversation_key(&accepted.channel, &accepted.thread_ts),
        sender: Sender {
            id: accepted.user,
            display_name: None,
        },
        text: accepted.text,
        attachments: Vec::new(),
        provider_event_id: event_id.clone(),
        received_at: Utc::now(),
    };
    match state.ingest.enqueue(&message).await {
        Ok(Enqueued::Queued { .. }) => {
            tracing::info!(tenant.id = %resolved.tenant, slack.event = %event_id, slack.retry = retry, "Slack message queued");
        }
        Ok(Enqueued::Duplicate) => {
            tracing::info!(slack.event = %event_id, slack.retry = retry, "Slack retry of a queued event; acknowledged");
        }
        Err(e) => {
            // Not acknowledged: Slack retries, and nothing is lost.
            return Err(ApiError::unavailable(e));
        }
    }
    Ok(HttpResponse::Ok().finish())
}
