//! The web channel: the portal's test chat. A message goes through exactly the same pipeline as
//! Slack and WhatsApp (durable ingest, tenant and conversation actors, the LLM pool); the portal
//! polls the conversation for the reply. Sending needs `ChatSend` and is limited per user and per
//! tenant, because every message costs an LLM call; polling needs only `AgentsRead`.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use shared::channel::{
    ChannelKind, ChatAccepted, ChatMessage, ChatSend, InboundMessage, ReplyTarget, Sender,
};
use shared::{AgentId, ConnectionId, ErrorBody, ErrorCode, TenantId};
use uuid::Uuid;

use super::AppState;
use super::auth::Authorized;
use super::error::ApiError;
use crate::engine::ingest::Enqueued;
use crate::store::{agents, conversations};

/// How many test-chat messages may be sent per minute: by one user (across tenants), and by all
/// of one tenant's users together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    pub per_user_per_minute: u32,
    pub per_tenant_per_minute: u32,
}

impl ChatLimits {
    /// From the runtime's `[engine]` settings.
    pub fn from_config(c: &crate::config::EngineConfig) -> Self {
        Self {
            per_user_per_minute: c.chat_per_user_per_minute,
            per_tenant_per_minute: c.chat_per_tenant_per_minute,
        }
    }
}

/// The limits count in fixed windows of a minute.
const LIMIT_WINDOW_SECS: u64 = 60;

/// Counts one message against the sender's and the tenant's limits, or refuses it with 429 and
/// `Retry-After`. A refused message counts against neither, so one user over their limit does
/// not use up their colleagues' share of the tenant's.
async fn within_limits(state: &AppState, user: Uuid, tenant: TenantId) -> Result<(), ApiError> {
    let limits = state.chat_limits;
    let counters = [
        (
            state.redis.key(&format!("chat:sent:user:{user}")),
            u64::from(limits.per_user_per_minute),
        ),
        (
            state.redis.key(&format!("chat:sent:tenant:{tenant}")),
            u64::from(limits.per_tenant_per_minute),
        ),
    ];
    let refused = state
        .redis
        .count_within_limits(&counters, LIMIT_WINDOW_SECS)
        .await
        .map_err(ApiError::unavailable)?;
    let Some((which, secs)) = refused else {
        return Ok(());
    };
    let secs = secs.clamp(1, LIMIT_WINDOW_SECS);
    let message = if which == 0 {
        format!(
            "You have sent {} test messages this minute, the most allowed. Try again in {secs} seconds.",
            limits.per_user_per_minute
        )
    } else {
        format!(
            "Your organisation has sent {} test messages this minute, the most allowed. Try again in {secs} seconds.",
            limits.per_tenant_per_minute
        )
    };
    Err(ApiError::new(ErrorCode::RateLimited, message).with_retry_after(secs))
}

/// `?conversation=` on the poll.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConversationQuery {
    pub conversation: String,
}

fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks the agent exists in the tenant; returns its web connection, created when `create`.
async fn web_connection(
    state: &AppState,
    auth: &Authorized,
    agent: AgentId,
    create: bool,
) -> Result<Option<ConnectionId>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    agents::get(&mut tx, agent)
        .await?
        .ok_or_else(|| ApiError::not_found("The agent"))?;
    let connection = if create {
        Some(conversations::ensure_web_connection(&mut tx, agent).await?)
    } else {
        conversations::web_connection(&mut tx, agent).await?
    };
    tx.commit().await?;
    Ok(connection)
}

/// Send a test message to an agent; the reply arrives in the conversation.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/agents/{agent_id}/messages", tag = "chat",
    params(("tenant_id" = Uuid, Path), ("agent_id" = Uuid, Path)), request_body = ChatSend,
    responses((status = 202, body = ChatAccepted),
              (status = 403, description = "The role may not send (customer operators watch only)", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, description = "Over the per-user or per-tenant limit; see Retry-After", body = ErrorBody)))]
pub async fn send(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, AgentId)>,
    body: web::Json<ChatSend>,
) -> Result<HttpResponse, ApiError> {
    let (_, agent) = path.into_inner();
    let body = body.into_inner();
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > 4000 {
        return Err(ApiError::invalid_field(
            "text",
            "must be 1 to 4000 characters",
        ));
    }
    let conversation = match body.conversation {
        Some(key) if valid_key(&key) => key,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "conversation",
                "use 1–64 letters, digits, - and _",
            ));
        }
        None => Uuid::new_v4().simple().to_string(),
    };
    let connection = web_connection(&state, &auth, agent, true)
        .await?
        .ok_or_else(|| ApiError::not_found("The agent"))?;
    let principal = auth.principal();
    within_limits(&state, principal.user.id, auth.tenant()?).await?;
    let event_id = format!("web-{}", Uuid::new_v4().simple());
    let message = InboundMessage {
        tenant_id: auth.tenant()?,
        channel: ChannelKind::Web,
        connection_id: connection,
        agent_id: Some(agent),
        reply_to: ReplyTarget::Web {
            conversation: conversation.clone(),
        },
        sender: Sender {
            id: format!("user:{}", principal.user.id),
            display_name: Some(principal.user.display_name.clone()),
        },
        text: text.to_string(),
        attachments: Vec::new(),
        unsupported: None,
        provider_event_id: event_id.clone(),
        received_at: Utc::now(),
        origin: shared::channel::Origin::Customer,
    };
    match state.ingest.enqueue(&message).await {
        Ok(Enqueued::Queued { .. }) | Ok(Enqueued::Duplicate) => {}
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "The message could not be queued; nothing was sent. Please retry.",
            )
            .with_cause(e));
        }
    }
    Ok(HttpResponse::Accepted().json(ChatAccepted {
        conversation,
        event_id,
    }))
}

/// The messages of a test conversation, oldest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/agents/{agent_id}/messages", tag = "chat",
    params(("tenant_id" = Uuid, Path), ("agent_id" = Uuid, Path), ConversationQuery),
    responses((status = 200, body = Vec<ChatMessage>), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, AgentId)>,
    query: web::Query<ConversationQuery>,
) -> Result<web::Json<Vec<ChatMessage>>, ApiError> {
    let (_, agent) = path.into_inner();
    if !valid_key(&query.conversation) {
        return Err(ApiError::invalid_field(
            "conversation",
            "use 1–64 letters, digits, - and _",
        ));
    }
    // Polling reads only: an agent never chatted with has no conversations yet.
    let Some(connection) = web_connection(&state, &auth, agent, false).await? else {
        return Ok(web::Json(Vec::new()));
    };
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let rows = conversations::messages(&mut tx, connection, &query.conversation, 500).await?;
    // The memories recalled, as they are now: a memory deleted since is not shown.
    let recalled: Vec<Uuid> = rows
        .iter()
        .flat_map(|r| r.recalled.iter().flatten().copied())
        .collect();
    let memories: std::collections::HashMap<Uuid, String> =
        crate::store::knowledge::memories_by_id(&mut tx, &recalled)
            .await?
            .into_iter()
            .map(|m| (m.id, m.text))
            .collect();
    // The tools called on the way to each reply, shown with its first part.
    let answered: Vec<String> = rows
        .iter()
        .filter(|r| r.part == 0)
        .filter_map(|r| r.reply_to.clone())
        .collect();
    let mut calls: std::collections::HashMap<String, Vec<shared::tools::ToolCall>> =
        std::collections::HashMap::new();
    for call in crate::store::tools::for_events(&mut tx, &answered).await? {
        calls
            .entry(call.shown_with().to_string())
            .or_default()
            .push(call.view());
    }
    tx.commit().await?;
    Ok(web::Json(
        rows.into_iter()
            .map(|r| ChatMessage {
                tool_calls: r
                    .reply_to
                    .as_ref()
                    .filter(|_| r.part == 0)
                    .and_then(|event| calls.remove(event))
                    .unwrap_or_default(),
                id: r.id,
                direction: r.direction,
                text: r.body,
                created_at: r.created_at,
                citations: r
                    .citations
                    .and_then(|c| serde_json::from_value(c).ok())
                    .unwrap_or_default(),
                memories: r
                    .recalled
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|id| memories.get(id).cloned())
                    .collect(),
            })
            .collect(),
    ))
}
