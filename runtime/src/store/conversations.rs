//! Conversations and their messages, and the web channel's connections.

use chrono::{DateTime, Utc};
use shared::channel::{DeliveryStatus, MessageDirection, ReplyKind, ReplyTarget};
use shared::inbox::Owner;
use shared::{AgentId, ConnectionId, ConversationId, EndUserId};
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx};

/// The web channel connection of an agent (the portal's test chat), if it was ever used.
pub async fn web_connection(
    tx: &mut TenantTx,
    agent: AgentId,
) -> StoreResult<Option<ConnectionId>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM channel_connections WHERE kind = 'web' AND external_id = $1",
    )
    .bind(format!("agent:{agent}"))
    .fetch_optional(tx.connection())
    .await?)
}

/// The web channel connection of an agent, created on first use. Reads first, so the common case
/// writes nothing.
pub async fn ensure_web_connection(tx: &mut TenantTx, agent: AgentId) -> StoreResult<ConnectionId> {
    if let Some(id) = web_connection(tx, agent).await? {
        return Ok(id);
    }
    let tenant = tx.tenant();
    let created: Option<ConnectionId> = sqlx::query_scalar(
        "INSERT INTO channel_connections (id, tenant_id, kind, external_id, display_name, agent_id) \
         VALUES ($1, $2, 'web', $3, 'Test chat', $4) \
         ON CONFLICT (kind, external_id) DO NOTHING \
         RETURNING id",
    )
    .bind(ConnectionId::from_uuid(Uuid::new_v4()))
    .bind(tenant)
    .bind(format!("agent:{agent}"))
    .bind(agent)
    .fetch_optional(tx.connection())
    .await?;
    match created {
        Some(id) => Ok(id),
        // Created by a concurrent request in the meantime.
        None => web_connection(tx, agent).await?.ok_or(StoreError::NotFound),
    }
}

/// The conversation for (connection, external key), created on its first message with its end
/// user; every message reopens it in the inbox and keeps where replies go. Returns its id and
/// owner.
pub async fn upsert_with_owner(
    tx: &mut TenantTx,
    connection: ConnectionId,
    agent: Option<AgentId>,
    target: &ReplyTarget,
    end_user: Option<EndUserId>,
) -> StoreResult<(ConversationId, Owner)> {
    let tenant = tx.tenant();
    let reply_target =
        serde_json::to_value(target).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let (id, owner): (ConversationId, String) = sqlx::query_as(
        "INSERT INTO conversations (id, tenant_id, channel_connection_id, agent_id, external_key, \
                                    end_user_id, reply_target) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tenant_id, channel_connection_id, external_key) \
             DO UPDATE SET last_message_at = now(), \
                 end_user_id = coalesce(conversations.end_user_id, EXCLUDED.end_user_id), \
                 reply_target = EXCLUDED.reply_target, \
                 inbox_status = 'open', snoozed_until = NULL, resolved_at = NULL \
         RETURNING id, owner",
    )
    .bind(ConversationId::from_uuid(Uuid::new_v4()))
    .bind(tenant)
    .bind(connection)
    .bind(agent)
    .bind(target.conversation_key())
    .bind(end_user)
    .bind(reply_target)
    .fetch_one(tx.connection())
    .await?;
    Ok((id, parse(owner)?))
}

/// Notes new activity in a conversation (the inbox sorts by it).
pub async fn touch(tx: &mut TenantTx, conversation: ConversationId) -> StoreResult<()> {
    sqlx::query(
        "UPDATE conversations SET last_message_at = now(), inbox_status = 'open', \
                snoozed_until = NULL, resolved_at = NULL WHERE id = $1",
    )
    .bind(conversation)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// An existing conversation for (connection, key), with its owner and its end user's channel
/// id; `None` when there is none (a Slack thread the agent was never part of).
pub async fn find(
    tx: &mut TenantTx,
    connection: ConnectionId,
    external_key: &str,
) -> StoreResult<Option<(ConversationId, Owner, Option<String>)>> {
    let row: Option<(ConversationId, String, Option<String>)> = sqlx::query_as(
        "SELECT c.id, c.owner, eu.external_id FROM conversations c \
           LEFT JOIN end_users eu ON eu.id = c.end_user_id \
          WHERE c.channel_connection_id = $1 AND c.external_key = $2",
    )
    .bind(connection)
    .bind(external_key)
    .fetch_optional(tx.connection())
    .await?;
    row.map(|(id, owner, who)| Ok((id, parse(owner)?, who)))
        .transpose()
}

fn parse<T: TryFrom<String, Error = shared::text_enum::UnknownVariant>>(
    text: String,
) -> StoreResult<T> {
    T::try_from(text).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Records an inbound message; `false` when one with the same provider event id exists (a
/// redelivery).
pub async fn insert_inbound(
    tx: &mut TenantTx,
    conversation: ConversationId,
    sender: &str,
    end_user: Option<EndUserId>,
    body: &str,
    provider_event_id: &str,
) -> StoreResult<bool> {
    let tenant = tx.tenant();
    let done = sqlx::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, sender, end_user_id, \
                               body, provider_event_id) \
         VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7) \
         ON CONFLICT (tenant_id, provider_event_id) WHERE provider_event_id IS NOT NULL DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(tenant)
    .bind(conversation)
    .bind(sender)
    .bind(end_user)
    .bind(body)
    .bind(provider_event_id)
    .execute(tx.connection())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One recorded part of the reply to an inbound event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPart {
    pub id: Uuid,
    pub part: i16,
    pub kind: ReplyKind,
    pub body: String,
    pub status: DeliveryStatus,
}

/// The recorded parts of the reply to `event` (the inbound provider event id), in order; empty
/// when no reply was recorded yet.
pub async fn reply_parts(tx: &mut TenantTx, event: &str) -> StoreResult<Vec<ReplyPart>> {
    let rows: Vec<(Uuid, i16, String, String, String)> = sqlx::query_as(
        "SELECT id, part, kind, body, status FROM messages \
          WHERE reply_to = $1 ORDER BY part",
    )
    .bind(event)
    .fetch_all(tx.connection())
    .await?;
    rows.into_iter()
        .map(|(id, part, kind, body, status)| {
            Ok(ReplyPart {
                id,
                part,
                kind: parse(kind)?,
                body,
                status: parse(status)?,
            })
        })
        .collect()
}

/// Records the reply to `event` as pending, one row per part, created `at` (the engine's clock).
/// Fails with a conflict when a reply to that event is recorded already (another node got there
/// first).
pub async fn record_reply(
    tx: &mut TenantTx,
    conversation: ConversationId,
    event: &str,
    kind: ReplyKind,
    parts: &[String],
    at: chrono::DateTime<chrono::Utc>,
    status: DeliveryStatus,
) -> StoreResult<Vec<Uuid>> {
    let sender = if kind == ReplyKind::Human {
        "person"
    } else {
        "agent"
    };
    let tenant = tx.tenant();
    let mut ids = Vec::with_capacity(parts.len());
    for (i, body) in parts.iter().enumerate() {
        let id = Uuid::new_v4();
        let part = i16::try_from(i).unwrap_or(i16::MAX);
        let provider_event_id = if part == 0 {
            format!("reply:{event}")
        } else {
            format!("reply:{event}#{part}")
        };
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, conversation_id, direction, sender, body, \
                 provider_event_id, reply_to, part, kind, status, created_at) \
             VALUES ($1, $2, $3, 'outbound', $10, $4, $5, $6, $7, $8, $11, $9)",
        )
        .bind(id)
        .bind(tenant)
        .bind(conversation)
        .bind(body)
        .bind(provider_event_id)
        .bind(event)
        .bind(part)
        .bind(kind.as_str())
        .bind(at)
        .bind(sender)
        .bind(status.as_str())
        .execute(tx.connection())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("the reply is recorded already".into())
            }
            _ => e.into(),
        })?;
        ids.push(id);
    }
    Ok(ids)
}

/// Marks one part sent, with the provider's id for the message when it gave one. A delivery
/// report that arrived for that id before this mark (`record_delivery`) is applied now; returns
/// the part's status and, for a failure, the provider's error code.
pub async fn mark_sent(
    tx: &mut TenantTx,
    message: Uuid,
    provider_message_id: Option<&str>,
) -> StoreResult<(DeliveryStatus, Option<i64>)> {
    if let Some(id) = provider_message_id {
        lock_delivery(tx, id).await?;
    }
    let (status, failure): (String, Option<String>) = sqlx::query_as(
        "WITH early AS ( \
             DELETE FROM early_delivery_reports WHERE provider_message_id = $2 \
             RETURNING status, failure) \
         UPDATE messages SET status = coalesce((SELECT status FROM early), 'sent'), \
                failure = (SELECT failure FROM early), provider_message_id = $2, sent_at = now(), \
                status_updated_at = now() \
          WHERE id = $1 RETURNING status, failure",
    )
    .bind(message)
    .bind(provider_message_id)
    .fetch_one(tx.connection())
    .await?;
    // A failure is recorded as "{code}: {title}".
    let code = failure
        .as_deref()
        .and_then(|f| f.split(':').next())
        .and_then(|c| c.trim().parse().ok());
    Ok((parse(status)?, code))
}

/// Serialises the mark of a part and a report about it: a report that finds no part waits for
/// a mark in progress (then applies to it), or is kept where that mark will see it.
async fn lock_delivery(tx: &mut TenantTx, provider_message_id: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7001))")
        .bind(provider_message_id)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// Marks one part as never deliverable, with the reason (ours, not the user's words).
pub async fn mark_failed(tx: &mut TenantTx, message: Uuid, reason: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE messages SET status = 'failed', failure = $2, status_updated_at = now() \
          WHERE id = $1",
    )
    .bind(message)
    .bind(reason.chars().take(300).collect::<String>())
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// What a delivery report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryUpdate {
    /// The part moved on to the reported status.
    Applied {
        message: Uuid,
        conversation: ConversationId,
        status: DeliveryStatus,
    },
    /// The part is further along already (reports can arrive out of order), or the report
    /// repeats one applied before.
    Stale,
    /// No part has this id yet: kept until the part is marked sent.
    Early,
}

const RANK: &str =
    "array_position(ARRAY['pending', 'sent', 'delivered', 'read', 'failed'], status)";

/// Applies the provider's report on one of our messages; a part never moves backwards.
pub async fn record_delivery(
    tx: &mut TenantTx,
    connection: ConnectionId,
    provider_message_id: &str,
    status: DeliveryStatus,
    failure: Option<&str>,
) -> StoreResult<DeliveryUpdate> {
    let failure: Option<String> = failure.map(|f| f.chars().take(300).collect());
    lock_delivery(tx, provider_message_id).await?;
    let applied: Option<(Uuid, ConversationId)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE messages SET status = $2, failure = coalesce($3, failure), \
                status_updated_at = now() \
          WHERE provider_message_id = $1 AND direction = 'outbound' \
            AND {RANK} < array_position(ARRAY['pending', 'sent', 'delivered', 'read', 'failed'], $2) \
            AND conversation_id IN (SELECT id FROM conversations WHERE channel_connection_id = $4) \
         RETURNING id, conversation_id"
    )))
    .bind(provider_message_id)
    .bind(status.as_str())
    .bind(&failure)
    .bind(connection)
    .fetch_optional(tx.connection())
    .await?;
    if let Some((message, conversation)) = applied {
        return Ok(DeliveryUpdate::Applied {
            message,
            conversation,
            status,
        });
    }
    let known: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM messages WHERE provider_message_id = $1 AND direction = 'outbound' LIMIT 1",
    )
    .bind(provider_message_id)
    .fetch_optional(tx.connection())
    .await?;
    if known.is_some() {
        return Ok(DeliveryUpdate::Stale);
    }
    let tenant = tx.tenant();
    // Bounded: reports for ids we never mark (another system's messages) leave after a day.
    sqlx::query("DELETE FROM early_delivery_reports WHERE received_at < now() - interval '1 day'")
        .execute(tx.connection())
        .await?;
    sqlx::query(
        "INSERT INTO early_delivery_reports (tenant_id, provider_message_id, status, failure) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, provider_message_id) DO UPDATE \
            SET status = EXCLUDED.status, failure = coalesce(EXCLUDED.failure, early_delivery_reports.failure) \
          WHERE array_position(ARRAY['pending', 'sent', 'delivered', 'read', 'failed'], early_delivery_reports.status) \
              < array_position(ARRAY['pending', 'sent', 'delivered', 'read', 'failed'], EXCLUDED.status)"
    )
    .bind(tenant)
    .bind(provider_message_id)
    .bind(status.as_str())
    .bind(&failure)
    .execute(tx.connection())
    .await?;
    Ok(DeliveryUpdate::Early)
}

/// When the platform last replied in the conversation (any kind of reply), if ever.
pub async fn last_reply_at(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT created_at FROM messages \
          WHERE conversation_id = $1 AND direction = 'outbound' \
          ORDER BY seq DESC LIMIT 1",
    )
    .bind(conversation)
    .fetch_optional(tx.connection())
    .await?)
}

/// Notes that the customer wrote in the conversation at `at` (only ever moving it forward: a
/// provider's late retry of an older message does not move it back).
pub async fn note_inbound(
    tx: &mut TenantTx,
    conversation: ConversationId,
    at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE conversations SET last_inbound_at = GREATEST(last_inbound_at, $2) WHERE id = $1",
    )
    .bind(conversation)
    .bind(at)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// When the customer last wrote in the conversation, if ever.
pub async fn last_inbound_at(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT last_inbound_at FROM conversations WHERE id = $1")
            .bind(conversation)
            .fetch_optional(tx.connection())
            .await?
            .flatten(),
    )
}

/// One message of the history a memory window is rebuilt from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastMessage {
    pub direction: MessageDirection,
    /// For outbound messages, what kind of reply it was.
    pub kind: Option<ReplyKind>,
    pub body: String,
}

/// The latest messages of a conversation before the one with `except_event`, oldest first. Used
/// to rebuild a memory window that Redis no longer holds.
pub async fn recent_turns(
    tx: &mut TenantTx,
    conversation: ConversationId,
    except_event: &str,
    limit: i64,
) -> StoreResult<Vec<PastMessage>> {
    let mut rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT direction, kind, body FROM messages \
          WHERE conversation_id = $1 AND provider_event_id IS DISTINCT FROM $2 \
            AND (reply_to IS NULL OR reply_to <> $2) AND status IS DISTINCT FROM 'withheld' \
          ORDER BY seq DESC LIMIT $3",
    )
    .bind(conversation)
    .bind(except_event)
    .bind(limit)
    .fetch_all(tx.connection())
    .await?;
    rows.reverse();
    rows.into_iter()
        .map(|(direction, kind, body)| {
            Ok(PastMessage {
                direction: parse(direction)?,
                kind: kind.map(parse).transpose()?,
                body,
            })
        })
        .collect()
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub direction: MessageDirection,
    pub sender: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The sources a reply cited (a JSON array of citations).
    pub citations: Option<serde_json::Value>,
    /// The memories recalled for a reply.
    pub recalled: Option<Vec<Uuid>>,
    /// The inbound event a reply answers, and which part of the reply it is.
    pub reply_to: Option<String>,
    pub part: i16,
}

/// The messages of one conversation on one connection, oldest first.
pub async fn messages(
    tx: &mut TenantTx,
    connection: ConnectionId,
    external_key: &str,
    limit: i64,
) -> StoreResult<Vec<MessageRow>> {
    Ok(sqlx::query_as::<_, MessageRow>(
        "SELECT m.id, m.direction, m.sender, m.body, m.created_at, m.citations, m.recalled, \
                m.reply_to, m.part \
           FROM messages m JOIN conversations c ON c.id = m.conversation_id \
          WHERE c.channel_connection_id = $1 AND c.external_key = $2 \
          ORDER BY m.seq LIMIT $3",
    )
    .bind(connection)
    .bind(external_key)
    .bind(limit)
    .fetch_all(tx.connection())
    .await?)
}

/// Hands a conversation to the queue of people: records the escalation (with its packet) and
/// the event, and gives the conversation to the queue, open, with its hand-off time.
pub async fn hand_off(
    tx: &mut TenantTx,
    conversation: ConversationId,
    reason: &str,
    handoff_target: Option<&str>,
    note: Option<&str>,
    packet: &shared::inbox::HandoffPacket,
) -> StoreResult<Uuid> {
    let tenant = tx.tenant();
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO escalations (id, tenant_id, conversation_id, reason, handoff_target, note, \
                                  packet) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(tenant)
    .bind(conversation)
    .bind(reason)
    .bind(handoff_target)
    .bind(note)
    .bind(serde_json::to_value(packet).map_err(|e| StoreError::Invalid(e.to_string()))?)
    .execute(tx.connection())
    .await?;
    sqlx::query(
        "UPDATE conversations SET owner = 'queue', assignee_id = NULL, owner_name = NULL, \
                inbox_status = 'open', snoozed_until = NULL, handed_off_at = now(), \
                first_human_reply_at = NULL, resolved_at = NULL, handback_reason = NULL \
          WHERE id = $1",
    )
    .bind(conversation)
    .execute(tx.connection())
    .await?;
    super::inbox::add_event(
        tx,
        conversation,
        "handed_off",
        None,
        None,
        "",
        serde_json::json!({ "reason": reason, "escalation": id }),
    )
    .await?;
    Ok(id)
}
