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
    Accepted, ConnectionSettings, DeliveryReport, Inbound, InboundError, Receive,
    ResolvedConnection, WebhookRequest, whatsapp,
};
use crate::engine::ingest::Enqueued;
use crate::store::audit;
use crate::store::conversations::{self, DeliveryUpdate};

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

/// A delivery's raw body, or its typed refusal: larger than the server takes (the app's
/// `PayloadConfig`, `server.json_limit_bytes`), or cut off on the way.
fn body_of(body: Result<web::Bytes, actix_web::Error>) -> Result<web::Bytes, ApiError> {
    use actix_web::error::PayloadError;
    body.map_err(|e| match e.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "The request body is larger than this server takes.",
        ),
        _ => ApiError::new(ErrorCode::BadRequest, "The request body could not be read."),
    })
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
    // A dependency that is slow to answer (a pool with no connection to give while Postgres is
    // down) must not hold the provider past its own timeout, which it counts as a failure of
    // ours: what is not done by then is refused as unavailable, to be sent again. What was
    // queued before is deduplicated when it comes again; a transaction cut off rolls back.
    tokio::time::timeout(DEADLINE, route_all(adapter, state, events, retry))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                "This delivery could not be taken in time; send it again.",
            )
        })?
}

/// How long a delivery may take before it is refused: under Slack's 3 s (Meta allows more).
const DEADLINE: std::time::Duration = std::time::Duration::from_millis(2_500);

/// Routes, records and enqueues each event of one delivery; 200 once all are taken.
async fn route_all<A: Receive>(
    adapter: &A,
    state: &AppState,
    events: Vec<crate::channels::Routed<A::Event>>,
    retry: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let kind = adapter.kind();
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
        // Received on the engine's clock, which judges WhatsApp's window from it.
        let message = match adapter.accept(routed, &connection, state.clock.now()) {
            Ok(Accepted::Message(message)) => message,
            Ok(Accepted::Delivery(report)) => {
                apply_delivery(state, &connection, &report).await?;
                continue;
            }
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

/// Applies a provider's report on one of our messages: the part's delivery status moves on, and
/// a failure is audited with the provider's error code (never its text).
async fn apply_delivery(
    state: &AppState,
    connection: &ResolvedConnection,
    report: &DeliveryReport,
) -> Result<(), ApiError> {
    let failure = report.error_code.map(|code| match &report.error_title {
        Some(title) => format!("{code}: {title}"),
        None => code.to_string(),
    });
    let mut tx = state.store.tenant_tx(connection.tenant).await?;
    let update = conversations::record_delivery(
        &mut tx,
        connection.id,
        &report.provider_message_id,
        report.status,
        failure.as_deref(),
    )
    .await?;
    if let DeliveryUpdate::Applied {
        status: shared::channel::DeliveryStatus::Failed,
        ..
    } = &update
    {
        tracing::warn!(tenant.id = %connection.tenant, error_code = ?report.error_code, "the provider reported a reply undeliverable");
        audit::append(
            &mut tx,
            &crate::engine::reply::failed_event(
                connection.id,
                Some(&report.provider_message_id),
                report.error_code,
            ),
        )
        .await?;
    }
    tx.commit().await?;
    tracing::debug!(tenant.id = %connection.tenant, status = report.status.as_str(), update = ?update, "delivery report");
    Ok(())
}

/// `POST /webhooks/slack/events`: the Slack Events API.
pub async fn slack_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let body = body_of(body)?;
    let adapter = state.channels.slack.clone();
    receive(adapter.as_ref(), &req, &state, &body).await
}

/// Answers Meta's verification of a webhook: the challenge, or 403.
fn verification(query: &str, expected: &str) -> HttpResponse {
    match whatsapp::verification_challenge(query, expected) {
        Some(challenge) => HttpResponse::Ok()
            .content_type("text/plain")
            .body(challenge),
        None => {
            tracing::warn!("refused a WhatsApp webhook verification");
            HttpResponse::Forbidden().finish()
        }
    }
}

/// `GET /webhooks/whatsapp`: Meta verifies the platform app's webhook.
pub async fn whatsapp_verify(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let expected = state.channels.whatsapp.verify_token().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "WhatsApp is not configured on this server (KONSTRUCT_WHATSAPP_VERIFY_TOKEN).",
        )
    })?;
    Ok(verification(req.query_string(), expected.expose()))
}

/// `POST /webhooks/whatsapp`: the platform app's webhooks (any tenant's numbers, in one POST).
pub async fn whatsapp_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let body = body_of(body)?;
    let adapter = state.channels.whatsapp.clone();
    receive(adapter.as_ref(), &req, &state, &body).await
}

/// The own Meta app of the connection of `phone_number_id`, if it has one.
async fn own_app(
    state: &AppState,
    phone_number_id: &str,
) -> Result<Option<(shared::TenantId, shared::ConnectionId, whatsapp::OwnApp)>, ApiError> {
    if phone_number_id.is_empty()
        || phone_number_id.len() > 32
        || !phone_number_id.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(None);
    }
    let Some(resolved) = state
        .store
        .resolve_channel(shared::channel::ChannelKind::Whatsapp, phone_number_id)
        .await?
    else {
        return Ok(None);
    };
    let settings =
        ConnectionSettings::parse(shared::channel::ChannelKind::Whatsapp, &resolved.settings)
            .map_err(ApiError::internal)?;
    Ok(match settings {
        ConnectionSettings::Whatsapp(s) => s
            .own_app
            .map(|app| (resolved.tenant, resolved.connection_id, app)),
        _ => None,
    })
}

/// `GET /webhooks/whatsapp/{phone_number_id}`: Meta verifies a tenant's own app's webhook.
pub async fn whatsapp_own_verify(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match own_app(&state, &path).await? {
        Some((_, _, app)) => Ok(verification(req.query_string(), &app.verify_token)),
        None => Ok(HttpResponse::Forbidden().finish()),
    }
}

/// `POST /webhooks/whatsapp/{phone_number_id}`: a tenant's own app's webhooks, signed with
/// that app's secret, for that one number.
pub async fn whatsapp_own_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let body = body_of(body)?;
    let Some((tenant, connection, app)) = own_app(&state, &path).await? else {
        // The same answer as a bad signature: which numbers use their own app is not told.
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "This request is not from the provider: the signature does not match.",
        ));
    };
    let sealed = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &app.app_secret_sealed,
    )
    .map_err(ApiError::internal)?;
    let secret = state
        .keyring
        .open(tenant, &whatsapp::app_secret_slot(connection), &sealed)
        .map_err(ApiError::unavailable)?;
    let adapter = state.channels.whatsapp.own_app(secret, path.into_inner());
    receive(&adapter, &req, &state, &body).await
}
