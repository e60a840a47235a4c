//! Conversations and their messages, and the web channel's connections.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{StoreResult, TenantTx};

/// The web channel connection of an agent (the portal's test chat), if it was ever used.
pub async fn web_connection(tx: &mut TenantTx, agent: Uuid) -> StoreResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM channel_connections WHERE kind = 'web' AND external_id = $1",
    )
    .bind(format!("agent:{agent}"))
    .fetch_optional(tx.connection())
    .await?)
}

/// The web channel connection of an agent, created on first use. Reads first, so the common case
/// writes nothing.
pub async fn ensure_web_connection(tx: &mut TenantTx, agent: Uuid) -> StoreResult<Uuid> {
    if let Some(id) = web_connection(tx, agent).await? {
        return Ok(id);
    }
    let tenant = tx.tenant();
    let created: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO channel_connections (id, tenant_id, kind, external_id, display_name, agent_id) \
         VALUES ($1, $2, 'web', $3, 'Test chat', $4) \
         ON CONFLICT (kind, external_id) DO NOTHING \
         RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(tenant.as_uuid())
    .bind(format!("agent:{agent}"))
    .bind(agent)
    .fetch_optional(tx.connection())
    .await?;
    match created {
        Some(id) => Ok(id),
        // Created by a concurrent request in the meantime.
        None => web_connection(tx, agent)
            .await?
            .ok_or(super::StoreError::NotFound),
    }
}

/// Like `upsert`, also returning the conversation's status (`open`, `handed_off`, `closed`).
pub async fn upsert_with_status(
    tx: &mut TenantTx,
    connection: Uuid,
    agent: Option<Uuid>,
    external_key: &str,
) -> StoreResult<(Uuid, String)> {
    let tenant = tx.tenant();
    Ok(sqlx::query_as(
        "INSERT INTO conversations (id, tenant_id, channel_connection_id, agent_id, external_key) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, channel_connection_id, external_key) \
             DO UPDATE SET last_message_at = now() \
         RETURNING id, status",
    )
    .bind(Uuid::new_v4())
    .bind(tenant.as_uuid())
    .bind(connection)
    .bind(agent)
    .bind(external_key)
    .fetch_one(tx.connection())
    .await?)
}

/// The conversation for (connection, external key), created on its first message.
pub async fn upsert(
    tx: &mut TenantTx,
    connection: Uuid,
    agent: Option<Uuid>,
    external_key: &str,
) -> StoreResult<Uuid> {
    Ok(upsert_with_status(tx, connection, agent, external_key)
        .await?
        .0)
}

/// Records a message; `false` when a message with the same provider event id exists (a retry).
pub async fn insert_message(
    tx: &mut TenantTx,
    conversation: Uuid,
    direction: &str,
    sender: &str,
    body: &str,
    provider_event_id: &str,
) -> StoreResult<bool> {
    let tenant = tx.tenant();
    let done = sqlx::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, sender, body, provider_event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tenant_id, provider_event_id) WHERE provider_event_id IS NOT NULL DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(tenant.as_uuid())
    .bind(conversation)
    .bind(direction)
    .bind(sender)
    .bind(body)
    .bind(provider_event_id)
    .execute(tx.connection())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether a message with this provider event id was recorded.
pub async fn message_exists(tx: &mut TenantTx, provider_event_id: &str) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages WHERE provider_event_id = $1)")
            .bind(provider_event_id)
            .fetch_one(tx.connection())
            .await?,
    )
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub direction: String,
    pub sender: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// The messages of one conversation on one connection, oldest first.
pub async fn messages(
    tx: &mut TenantTx,
    connection: Uuid,
    external_key: &str,
    limit: i64,
) -> StoreResult<Vec<MessageRow>> {
    Ok(sqlx::query_as::<_, MessageRow>(
        "SELECT m.id, m.direction, m.sender, m.body, m.created_at \
           FROM messages m JOIN conversations c ON c.id = m.conversation_id \
          WHERE c.channel_connection_id = $1 AND c.external_key = $2 \
          ORDER BY m.created_at, m.id LIMIT $3",
    )
    .bind(connection)
    .bind(external_key)
    .bind(limit)
    .fetch_all(tx.connection())
    .await?)
}

/// Hands a conversation to a human: records the escalation and marks the conversation.
pub async fn hand_off(
    tx: &mut TenantTx,
    conversation: Uuid,
    reason: &str,
    handoff_target: Option<&str>,
) -> StoreResult<Uuid> {
    let tenant = tx.tenant();
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO escalations (id, tenant_id, conversation_id, reason, handoff_target) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant.as_uuid())
    .bind(conversation)
    .bind(reason)
    .bind(handoff_target)
    .execute(tx.connection())
    .await?;
    sqlx::query("UPDATE conversations SET status = 'handed_off' WHERE id = $1")
        .bind(conversation)
        .execute(tx.connection())
        .await?;
    Ok(id)
}
