//! A conversation's state between turns: its memory window and escalation count, kept in Redis
//! under a tenant-namespaced key and rebuilt from Postgres when Redis no longer holds it.

use serde::{Deserialize, Serialize};
use shared::ConversationId;
use shared::channel::{InboundMessage, MessageDirection, ReplyKind};

use super::deps::{EngineDeps, TurnError};
use crate::engine::escalation::EscalationState;
use crate::engine::window::{Speaker, Turn, Window};
use crate::redis::Redis;
use crate::store::conversations;

/// What a conversation actor keeps between turns, in Redis under a tenant-namespaced key: the
/// memory window and the escalation state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    pub window: Window,
    #[serde(default)]
    pub escalation: EscalationState,
    /// The inbound event the state was last saved for: a turn resumed after a crash keeps the
    /// state only if it already includes that turn.
    #[serde(default)]
    pub last_event: Option<String>,
}

/// The Redis key of a conversation's state (namespaced by tenant).
pub fn state_key(redis: &Redis, m: &InboundMessage) -> String {
    key_of(redis, m.tenant_id, m.connection_id, &m.conversation_key())
}

/// The Redis key of the state of the conversation `external_key` on `connection`.
pub fn key_of(
    redis: &Redis,
    tenant: shared::TenantId,
    connection: shared::ConnectionId,
    external_key: &str,
) -> String {
    redis.key(&format!(
        "{tenant}:conversation:{connection}:{external_key}"
    ))
}

/// How many of a conversation's latest messages rebuild a window Redis no longer holds.
const REBUILD_MESSAGES: i64 = 200;

/// The conversation's state: from Redis, or — when Redis does not hold it (expired, Redis
/// restarted, unreadable) — the window rebuilt from the conversation's messages in Postgres, so
/// nothing the customer said is forgotten. (The escalation count starts again in that case.)
pub async fn load(
    deps: &EngineDeps,
    m: &InboundMessage,
    conversation: ConversationId,
) -> Result<ConversationState, TurnError> {
    if let Some(json) = deps.redis.get_string(&state_key(&deps.redis, m)).await? {
        match serde_json::from_str(&json) {
            Ok(state) => return Ok(state),
            Err(e) => tracing::warn!(error = %e, "unreadable conversation state; rebuilding it"),
        }
    }
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    let rows = conversations::recent_turns(
        &mut tx,
        conversation,
        &m.provider_event_id,
        REBUILD_MESSAGES,
    )
    .await?;
    tx.commit().await?;
    let mut state = ConversationState::default();
    for past in rows {
        let (speaker, text) = match (past.direction, past.kind) {
            (MessageDirection::Inbound, _) => (Speaker::User, past.body),
            (MessageDirection::Outbound, Some(ReplyKind::Answer)) => (Speaker::Agent, past.body),
            // A person's replies are part of the conversation the agent continues.
            (MessageDirection::Outbound, Some(ReplyKind::Human)) => (
                Speaker::Agent,
                format!("(a person from the team wrote) {}", past.body),
            ),
            // Notices, apologies and hand-off notes are the platform's, not the agent's words.
            (MessageDirection::Outbound, _) => continue,
        };
        state
            .window
            .push(Turn { speaker, text }, deps.settings.window);
    }
    Ok(state)
}

/// Saves the state after the turn it includes (`last_event`) was recorded.
pub async fn save(
    deps: &EngineDeps,
    m: &InboundMessage,
    state: &ConversationState,
) -> Result<(), TurnError> {
    let state = ConversationState {
        last_event: Some(m.provider_event_id.clone()),
        ..state.clone()
    };
    deps.redis
        .set_string_ex(
            &state_key(&deps.redis, m),
            &serde_json::to_string(&state)?,
            deps.settings.state_ttl.as_secs(),
        )
        .await?;
    Ok(())
}

/// Drops the state unless it already includes the turn of `m` (a turn resumed after a crash
/// between recording its reply and saving the state): the next turn then rebuilds it.
pub async fn keep_only_if_current(deps: &EngineDeps, m: &InboundMessage) -> Result<(), TurnError> {
    let key = state_key(&deps.redis, m);
    let current = deps.redis.get_string(&key).await?;
    let includes_turn = current
        .and_then(|json| serde_json::from_str::<ConversationState>(&json).ok())
        .is_some_and(|s| s.last_event.as_deref() == Some(m.provider_event_id.as_str()));
    if !includes_turn {
        deps.redis.delete(&key).await?;
    }
    Ok(())
}
