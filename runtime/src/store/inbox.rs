//! Conversations as the inbox sees them: ownership (the AI, the queue, a person), inbox status,
//! people's replies, private notes, hand-offs and hand-backs, and the transcript.
//!
//! Ownership is enforced here, at the row: every change of owner locks the conversation's row
//! and withholds the AI parts still pending in the same statement's transaction, and the engine
//! asks [`may_send`] (which locks the row `FOR SHARE`) before each part it sends. So an AI part
//! either was cleared to go before a person's claim or reply committed, or it is never sent.

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::channel::{ChannelKind, DeliveryStatus, MessageDirection, ReplyKind, ReplyTarget};
use shared::inbox::{
    ConversationQuery, ConversationSummary, HandoffPacket, InboxCounts, InboxStatus, Owner,
    TranscriptItem,
};
use shared::{ConnectionId, ConversationId};
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx};

fn parse<T: TryFrom<String, Error = shared::text_enum::UnknownVariant>>(
    text: String,
) -> StoreResult<T> {
    T::try_from(text).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// The inbox status a conversation shows: a snooze that has run out is open again.
const EFFECTIVE_STATUS: &str = "CASE WHEN c.inbox_status = 'snoozed' AND c.snoozed_until <= now() \
     THEN 'open' ELSE c.inbox_status END";

fn summary_select() -> String {
    format!(
        "SELECT c.id, cc.kind AS channel, c.channel_connection_id AS connection_id, c.agent_id, \
            a.name AS agent_name, c.end_user_id, \
            coalesce(nullif(eu.display_name, ''), eu.external_id, c.external_key) AS customer, \
            c.owner, c.assignee_id, \
            coalesce(nullif(u.display_name, ''), u.email, c.owner_name) AS owner_name, \
            {EFFECTIVE_STATUS} AS status, c.snoozed_until, c.created_at, c.last_message_at, \
            coalesce((SELECT left(m.body, 140) FROM messages m \
                       WHERE m.conversation_id = c.id AND m.status IS DISTINCT FROM 'withheld' \
                       ORDER BY m.seq DESC LIMIT 1), '') AS preview, \
            c.handed_off_at, \
            (SELECT e.reason FROM escalations e WHERE e.conversation_id = c.id \
              ORDER BY e.created_at DESC LIMIT 1) AS handoff_reason, \
            extract(epoch FROM c.first_human_reply_at - c.handed_off_at)::bigint \
                AS first_response_secs, \
            extract(epoch FROM c.resolved_at - c.handed_off_at)::bigint AS resolution_secs \
       FROM conversations c \
       JOIN channel_connections cc ON cc.id = c.channel_connection_id \
       LEFT JOIN agents a ON a.id = c.agent_id \
       LEFT JOIN end_users eu ON eu.id = c.end_user_id \
       LEFT JOIN users u ON u.id = c.assignee_id"
    )
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: ConversationId,
    channel: String,
    connection_id: ConnectionId,
    agent_id: Option<shared::AgentId>,
    agent_name: Option<String>,
    end_user_id: Option<shared::EndUserId>,
    customer: String,
    owner: String,
    assignee_id: Option<Uuid>,
    owner_name: Option<String>,
    status: String,
    snoozed_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    last_message_at: DateTime<Utc>,
    preview: String,
    handed_off_at: Option<DateTime<Utc>>,
    handoff_reason: Option<String>,
    first_response_secs: Option<i64>,
    resolution_secs: Option<i64>,
}

fn summary(r: SummaryRow) -> StoreResult<ConversationSummary> {
    let status: InboxStatus = parse(r.status)?;
    Ok(ConversationSummary {
        id: r.id,
        channel: parse(r.channel)?,
        connection_id: r.connection_id,
        agent_id: r.agent_id,
        agent_name: r.agent_name,
        end_user_id: r.end_user_id,
        customer: r.customer,
        owner: parse(r.owner)?,
        assignee_id: r.assignee_id,
        owner_name: r.owner_name,
        snoozed_until: if status == InboxStatus::Snoozed {
            r.snoozed_until
        } else {
            None
        },
        status,
        created_at: r.created_at,
        last_message_at: r.last_message_at,
        preview: r.preview,
        handed_off_at: r.handed_off_at,
        handoff_reason: r.handoff_reason,
        first_response_secs: r.first_response_secs,
        resolution_secs: r.resolution_secs,
    })
}

/// One page of the tenant's conversations, newest activity first, and how many match in all.
pub async fn list(
    tx: &mut TenantTx,
    query: &ConversationQuery,
    me: Uuid,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<ConversationSummary>, u64)> {
    let filter = format!(
        " WHERE ($1::text IS NULL OR cc.kind = $1) AND ($2::uuid IS NULL OR c.agent_id = $2) \
            AND ($3::text IS NULL OR {EFFECTIVE_STATUS} = $3) \
            AND ($4::text IS NULL OR c.owner = $4) \
            AND (NOT $5 OR (c.assignee_id = $6 AND c.owner = 'person')) \
            AND ($7::text IS NULL OR EXISTS ( \
                 SELECT 1 FROM messages m WHERE m.conversation_id = c.id \
                    AND to_tsvector('simple', m.body) @@ plainto_tsquery('simple', $7)))"
    );
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let rows: Vec<SummaryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{}{filter} ORDER BY c.last_message_at DESC, c.id LIMIT $8 OFFSET $9",
        summary_select()
    )))
    .bind(query.channel.map(|c| c.as_str()))
    .bind(query.agent)
    .bind(query.status.map(|s| s.as_str()))
    .bind(query.owner.map(|o| o.as_str()))
    .bind(query.mine)
    .bind(me)
    .bind(q)
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM conversations c \
           JOIN channel_connections cc ON cc.id = c.channel_connection_id{filter}"
    )))
    .bind(query.channel.map(|c| c.as_str()))
    .bind(query.agent)
    .bind(query.status.map(|s| s.as_str()))
    .bind(query.owner.map(|o| o.as_str()))
    .bind(query.mine)
    .bind(me)
    .bind(q)
    .fetch_one(tx.connection())
    .await?;
    let items = rows.into_iter().map(summary).collect::<StoreResult<_>>()?;
    Ok((items, u64::try_from(total).unwrap_or(0)))
}

/// One conversation's summary.
pub async fn get(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<Option<ConversationSummary>> {
    let row: Option<SummaryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} WHERE c.id = $1",
        summary_select()
    )))
    .bind(conversation)
    .fetch_optional(tx.connection())
    .await?;
    row.map(summary).transpose()
}

/// The badge: conversations waiting in the queue (not resolved or snoozed), and `me`'s own open
/// ones.
pub async fn counts(tx: &mut TenantTx, me: Uuid) -> StoreResult<InboxCounts> {
    let (queue, mine): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FILTER (WHERE c.owner = 'queue'), \
                count(*) FILTER (WHERE c.owner = 'person' AND c.assignee_id = $1) \
           FROM conversations c \
          WHERE c.owner <> 'ai' AND {EFFECTIVE_STATUS} IN ('open', 'pending')"
    )))
    .bind(me)
    .fetch_one(tx.connection())
    .await?;
    Ok(InboxCounts {
        queue: u64::try_from(queue).unwrap_or(0),
        mine: u64::try_from(mine).unwrap_or(0),
    })
}

/// What the engine and the API need of one conversation to act on it, read under a lock.
#[derive(Debug, Clone)]
pub struct Locked {
    pub id: ConversationId,
    pub owner: Owner,
    pub assignee_id: Option<Uuid>,
    pub status: InboxStatus,
    pub channel: ChannelKind,
    pub connection_id: ConnectionId,
    pub agent_id: Option<shared::AgentId>,
    pub end_user_id: Option<shared::EndUserId>,
    pub reply_target: Option<ReplyTarget>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub handed_off_at: Option<DateTime<Utc>>,
    /// The conversation's key within its connection (its state's Redis key is made from it).
    pub external_key: String,
}

/// Locks a conversation's row for a change of owner or status (`FOR UPDATE`).
pub async fn lock(tx: &mut TenantTx, conversation: ConversationId) -> StoreResult<Option<Locked>> {
    type Row = (
        ConversationId,
        String,
        Option<Uuid>,
        String,
        String,
        ConnectionId,
        Option<shared::AgentId>,
        Option<shared::EndUserId>,
        Option<Value>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        String,
    );
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.owner, c.assignee_id, {EFFECTIVE_STATUS}, cc.kind, c.channel_connection_id, \
                c.agent_id, c.end_user_id, c.reply_target, c.last_inbound_at, c.handed_off_at, \
                c.external_key \
           FROM conversations c JOIN channel_connections cc ON cc.id = c.channel_connection_id \
          WHERE c.id = $1 FOR UPDATE OF c"
    )))
    .bind(conversation)
    .fetch_optional(tx.connection())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Locked {
        id: r.0,
        owner: parse(r.1)?,
        assignee_id: r.2,
        status: parse(r.3)?,
        channel: parse(r.4)?,
        connection_id: r.5,
        agent_id: r.6,
        end_user_id: r.7,
        reply_target: r.8.and_then(|v| serde_json::from_value(v).ok()),
        last_inbound_at: r.9,
        handed_off_at: r.10,
        external_key: r.11,
    }))
}

/// Who takes a conversation.
#[derive(Debug, Clone, Copy)]
pub enum Taker<'a> {
    /// A member (their user id).
    Member(Uuid),
    /// A colleague who answered in the channel itself, by name.
    Colleague(&'a str),
}

/// Gives the conversation to a person (or, with `None`, back to the queue), withholding the AI
/// parts still pending; the conversation is open again unless it was pending on the customer.
/// Returns how many AI parts were withheld.
pub async fn set_owner(
    tx: &mut TenantTx,
    conversation: ConversationId,
    taker: Option<Taker<'_>>,
) -> StoreResult<u64> {
    let (owner, assignee, name) = match taker {
        Some(Taker::Member(id)) => ("person", Some(id), None),
        Some(Taker::Colleague(name)) => ("person", None, Some(name.chars().take(200).collect())),
        None => ("queue", None, None::<String>),
    };
    sqlx::query(
        "UPDATE conversations SET owner = $2, assignee_id = $3, owner_name = $4, \
                inbox_status = CASE WHEN inbox_status = 'pending' THEN 'pending' ELSE 'open' END, \
                snoozed_until = NULL, resolved_at = NULL, handback_reason = NULL \
          WHERE id = $1",
    )
    .bind(conversation)
    .bind(owner)
    .bind(assignee)
    .bind(name)
    .execute(tx.connection())
    .await?;
    withhold_ai_parts(tx, conversation).await
}

/// Marks the AI parts of `conversation` still pending as withheld: they are never sent (a
/// hand-off's notice included: a person is answering now).
pub async fn withhold_ai_parts(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<u64> {
    Ok(sqlx::query(
        "UPDATE messages SET status = 'withheld', status_updated_at = now() \
          WHERE conversation_id = $1 AND direction = 'outbound' AND status = 'pending' \
            AND kind <> 'human'",
    )
    .bind(conversation)
    .execute(tx.connection())
    .await?
    .rows_affected())
}

/// Whether the engine may send this part now: it is still pending, and it is a person's reply,
/// the notice of the hand-off while the conversation waits in the queue for a person, or the
/// AI owns the conversation. Holds the conversation's row `FOR SHARE` until the caller
/// commits, so no claim can commit in between.
pub async fn may_send(tx: &mut TenantTx, part: Uuid) -> StoreResult<bool> {
    let ok: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id \
          WHERE m.id = $1 AND m.status = 'pending' \
            AND (m.kind = 'human' OR (m.kind = 'handoff' AND c.owner = 'queue') \
                 OR c.owner = 'ai') \
          FOR SHARE OF c",
    )
    .bind(part)
    .fetch_optional(tx.connection())
    .await?;
    Ok(ok.is_some())
}

/// The conversation's owner, holding its row `FOR SHARE` until the caller commits (a turn
/// recording its result reads it so).
pub async fn owner_for_share(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<Owner> {
    let owner: String =
        sqlx::query_scalar("SELECT owner FROM conversations WHERE id = $1 FOR SHARE")
            .bind(conversation)
            .fetch_one(tx.connection())
            .await?;
    parse(owner)
}

/// Notes a person's reply: the first one after a hand-off starts the first-response time.
pub async fn note_human_reply(tx: &mut TenantTx, conversation: ConversationId) -> StoreResult<()> {
    sqlx::query(
        "UPDATE conversations SET first_human_reply_at = coalesce(first_human_reply_at, now()), \
                last_message_at = now() \
          WHERE id = $1",
    )
    .bind(conversation)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Sets who wrote the parts of a person's reply.
pub async fn set_author(
    tx: &mut TenantTx,
    event: &str,
    author: Option<Uuid>,
    name: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE messages SET author_id = $2, author_name = $3 WHERE reply_to = $1")
        .bind(event)
        .bind(author)
        .bind(name.chars().take(200).collect::<String>())
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// Records a colleague's reply written in the channel itself (already delivered there) once per
/// provider event; `false` when it was recorded before.
pub async fn record_channel_reply(
    tx: &mut TenantTx,
    conversation: ConversationId,
    event: &str,
    author_name: &str,
    body: &str,
) -> StoreResult<bool> {
    let tenant = tx.tenant();
    let done = sqlx::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, sender, body, \
             provider_event_id, reply_to, part, kind, status, sent_at, author_name) \
         VALUES ($1, $2, $3, 'outbound', 'person', $4, $5, $5, 0, 'human', 'sent', now(), $6) \
         ON CONFLICT (tenant_id, provider_event_id) WHERE provider_event_id IS NOT NULL DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(tenant)
    .bind(conversation)
    .bind(body)
    .bind(event)
    .bind(author_name.chars().take(200).collect::<String>())
    .execute(tx.connection())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets the inbox status (`snoozed_until` only with `Snoozed`); resolving records when.
pub async fn set_status(
    tx: &mut TenantTx,
    conversation: ConversationId,
    status: InboxStatus,
    snoozed_until: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE conversations SET inbox_status = $2, snoozed_until = $3, \
                resolved_at = CASE WHEN $2 = 'resolved' THEN now() ELSE NULL END \
          WHERE id = $1",
    )
    .bind(conversation)
    .bind(status.as_str())
    .bind(snoozed_until.filter(|_| status == InboxStatus::Snoozed))
    .execute(tx.connection())
    .await?;
    if status == InboxStatus::Resolved {
        resolve_escalations(tx, conversation).await?;
    }
    Ok(())
}

/// Returns the conversation to the AI, with a dated marker of what the person did: the reason
/// of the latest hand-off is kept so the same rule does not hand it off again at once.
pub async fn hand_back(
    tx: &mut TenantTx,
    conversation: ConversationId,
    note: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE conversations SET owner = 'ai', assignee_id = NULL, owner_name = NULL, \
                inbox_status = 'open', snoozed_until = NULL, handed_back_at = now(), \
                handback_note = $2, \
                handback_reason = (SELECT e.reason FROM escalations e \
                                    WHERE e.conversation_id = $1 ORDER BY e.created_at DESC LIMIT 1) \
          WHERE id = $1",
    )
    .bind(conversation)
    .bind(note.chars().take(2000).collect::<String>())
    .execute(tx.connection())
    .await?;
    resolve_escalations(tx, conversation).await
}

/// Marks the conversation's open escalations resolved (by a resolution or a hand-back).
async fn resolve_escalations(tx: &mut TenantTx, conversation: ConversationId) -> StoreResult<()> {
    sqlx::query(
        "UPDATE escalations SET resolved_at = now() \
          WHERE conversation_id = $1 AND resolved_at IS NULL",
    )
    .bind(conversation)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Clears the hand-back's protection once the AI answered after it.
pub async fn clear_handback_reason(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE conversations SET handback_reason = NULL \
          WHERE id = $1 AND handback_reason IS NOT NULL",
    )
    .bind(conversation)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// The latest hand-back, as the AI's prompt reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandBack {
    pub at: DateTime<Utc>,
    pub note: String,
    /// The reason of the hand-off it ended, while it still protects the conversation.
    pub reason: Option<String>,
    /// What people replied while they had it (newest last, at most five).
    pub replies: Vec<String>,
}

/// How long a hand-back's marker stays in the agent's prompt.
pub const HAND_BACK_MARKER_HOURS: i64 = 24;

/// The conversation's latest hand-back, if it has one from the last
/// [`HAND_BACK_MARKER_HOURS`] (after that the window carries the conversation on its own).
pub async fn latest_hand_back(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<Option<HandBack>> {
    type Row = (Option<DateTime<Utc>>, Option<String>, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT handed_back_at, handback_note, handback_reason FROM conversations \
          WHERE id = $1 AND handed_back_at > now() - make_interval(hours => $2::int)",
    )
    .bind(conversation)
    .bind(HAND_BACK_MARKER_HOURS as i32)
    .fetch_optional(tx.connection())
    .await?;
    let Some((Some(at), note, reason)) = row else {
        return Ok(None);
    };
    let mut replies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM messages \
          WHERE conversation_id = $1 AND kind = 'human' AND part = 0 AND created_at <= $2 \
          ORDER BY seq DESC LIMIT 5",
    )
    .bind(conversation)
    .bind(at)
    .fetch_all(tx.connection())
    .await?;
    replies.reverse();
    Ok(Some(HandBack {
        at,
        note: note.unwrap_or_default(),
        reason,
        replies,
    }))
}

/// Appends an event to the conversation's history; a note's text goes in `body`.
pub async fn add_event(
    tx: &mut TenantTx,
    conversation: ConversationId,
    kind: &str,
    actor: Option<Uuid>,
    actor_name: Option<&str>,
    body: &str,
    details: Value,
) -> StoreResult<(Uuid, DateTime<Utc>)> {
    let tenant = tx.tenant();
    Ok(sqlx::query_as(
        "INSERT INTO conversation_events (id, tenant_id, conversation_id, kind, actor_id, \
                                          actor_name, body, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(tenant)
    .bind(conversation)
    .bind(kind)
    .bind(actor)
    .bind(actor_name.map(|n| n.chars().take(200).collect::<String>()))
    .bind(body)
    .bind(details)
    .fetch_one(tx.connection())
    .await?)
}

/// A member's name as the inbox shows it (display name, else email), if they are a member.
pub async fn member_name(tx: &mut TenantTx, user: Uuid) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(nullif(u.display_name, ''), u.email) FROM tenant_members tm \
           JOIN users u ON u.id = tm.user_id WHERE tm.user_id = $1",
    )
    .bind(user)
    .fetch_optional(tx.connection())
    .await?)
}

/// The name of a member who can take conversations (a customer admin), if `user` is one.
pub async fn assignable_name(tx: &mut TenantTx, user: Uuid) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(nullif(u.display_name, ''), u.email) FROM tenant_members tm \
           JOIN users u ON u.id = tm.user_id \
          WHERE tm.user_id = $1 AND tm.role = 'customer_admin' AND u.status = 'active'",
    )
    .bind(user)
    .fetch_optional(tx.connection())
    .await?)
}

/// The latest hand-off's packet.
pub async fn latest_packet(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<Option<HandoffPacket>> {
    let packet: Option<Value> = sqlx::query_scalar(
        "SELECT packet FROM escalations WHERE conversation_id = $1 AND packet <> '{}' \
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(conversation)
    .fetch_optional(tx.connection())
    .await?;
    Ok(packet.and_then(|p| serde_json::from_value(p).ok()))
}

/// Stores the packet of a hand-off.
pub async fn set_packet(
    tx: &mut TenantTx,
    escalation: Uuid,
    packet: &HandoffPacket,
) -> StoreResult<()> {
    sqlx::query("UPDATE escalations SET packet = $2 WHERE id = $1")
        .bind(escalation)
        .bind(serde_json::to_value(packet).map_err(|e| StoreError::Invalid(e.to_string()))?)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// The most entries a transcript shows (the newest).
pub const TRANSCRIPT_LIMIT: i64 = 500;

/// The conversation's messages, tool calls and events, oldest first (the newest
/// [`TRANSCRIPT_LIMIT`] of each); `true` when older ones were left out.
pub async fn transcript(
    tx: &mut TenantTx,
    conversation: ConversationId,
    agent_name: Option<&str>,
    customer: &str,
) -> StoreResult<(Vec<TranscriptItem>, bool)> {
    type MessageRow = (
        Uuid,
        DateTime<Utc>,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<Value>,
    );
    let messages: Vec<MessageRow> = sqlx::query_as(
        "SELECT id, created_at, direction, kind, author_name, body, status, failure, citations \
           FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(conversation)
    .bind(TRANSCRIPT_LIMIT + 1)
    .fetch_all(tx.connection())
    .await?;
    let tools: Vec<(Uuid, DateTime<Utc>, String, String)> = sqlx::query_as(
        "SELECT id, created_at, name, outcome FROM tool_calls \
          WHERE conversation_id = $1 ORDER BY created_at DESC LIMIT $2",
    )
    .bind(conversation)
    .bind(TRANSCRIPT_LIMIT)
    .fetch_all(tx.connection())
    .await?;
    type EventRow = (Uuid, DateTime<Utc>, String, Option<String>, String, Value);
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT id, created_at, kind, actor_name, body, details FROM conversation_events \
              WHERE conversation_id = $1 ORDER BY created_at DESC LIMIT $2",
    )
    .bind(conversation)
    .bind(TRANSCRIPT_LIMIT)
    .fetch_all(tx.connection())
    .await?;
    let truncated = messages.len() as i64 > TRANSCRIPT_LIMIT;
    let mut items = Vec::with_capacity(messages.len() + tools.len() + events.len());
    for (id, at, direction, kind, author, body, status, failure, citations) in
        messages.into_iter().take(TRANSCRIPT_LIMIT as usize)
    {
        let direction: MessageDirection = parse(direction)?;
        let kind: Option<ReplyKind> = kind.map(parse).transpose()?;
        let author = match (direction, kind) {
            (MessageDirection::Inbound, _) => Some(customer.to_string()),
            (_, Some(ReplyKind::Human)) => author,
            _ => agent_name.map(str::to_string),
        };
        items.push(TranscriptItem::Message {
            id,
            at,
            direction,
            kind,
            author,
            body,
            delivery: status.map(parse::<DeliveryStatus>).transpose()?,
            failure,
            citations: citations
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default(),
        });
    }
    for (id, at, name, outcome) in tools {
        items.push(TranscriptItem::ToolCall {
            id,
            at,
            name,
            outcome,
        });
    }
    for (id, at, kind, actor, body, details) in events {
        items.push(TranscriptItem::Event {
            id,
            at,
            kind,
            actor,
            body,
            details,
        });
    }
    items.sort_by_key(|item| match item {
        TranscriptItem::Message { at, .. }
        | TranscriptItem::ToolCall { at, .. }
        | TranscriptItem::Event { at, .. } => *at,
    });
    Ok((items, truncated))
}

/// Members who asked to be emailed about hand-offs: (user id, email, name).
pub async fn handoff_recipients(tx: &mut TenantTx) -> StoreResult<Vec<(Uuid, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT u.id, u.email, u.display_name FROM tenant_members tm \
           JOIN users u ON u.id = tm.user_id \
          WHERE tm.notify_handoffs AND u.status = 'active' ORDER BY u.email LIMIT 200",
    )
    .fetch_all(tx.connection())
    .await?)
}

/// A member's own notification choice.
pub async fn notify_handoffs(tx: &mut TenantTx, user: Uuid) -> StoreResult<Option<bool>> {
    Ok(
        sqlx::query_scalar("SELECT notify_handoffs FROM tenant_members WHERE user_id = $1")
            .bind(user)
            .fetch_optional(tx.connection())
            .await?,
    )
}

/// Sets a member's own notification choice; `false` when they are not a member.
pub async fn set_notify_handoffs(tx: &mut TenantTx, user: Uuid, on: bool) -> StoreResult<bool> {
    Ok(
        sqlx::query("UPDATE tenant_members SET notify_handoffs = $2 WHERE user_id = $1")
            .bind(user)
            .bind(on)
            .execute(tx.connection())
            .await?
            .rows_affected()
            == 1,
    )
}

/// The tenant's hand-off settings: (business hours JSON, Slack channel).
pub async fn handoff_settings(tx: &mut TenantTx) -> StoreResult<(Option<Value>, Option<String>)> {
    let tenant = tx.tenant();
    Ok(
        sqlx::query_as("SELECT business_hours, handoff_slack_channel FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(tx.connection())
            .await?
            .unwrap_or((None, None)),
    )
}

/// Replaces the tenant's hand-off settings.
pub async fn set_handoff_settings(
    tx: &mut TenantTx,
    business_hours: Option<Value>,
    slack_channel: Option<&str>,
) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query("UPDATE tenants SET business_hours = $2, handoff_slack_channel = $3 WHERE id = $1")
        .bind(tenant)
        .bind(business_hours)
        .bind(slack_channel)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// Where a person's reply goes and who it is for.
#[derive(Debug, Clone)]
pub struct DeliveryTarget {
    pub channel: ChannelKind,
    pub connection_id: ConnectionId,
    pub agent_id: Option<shared::AgentId>,
    pub reply_target: Option<ReplyTarget>,
    /// The customer's id in the channel and their name.
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub last_inbound_at: Option<DateTime<Utc>>,
}

/// The conversation's delivery address, if it exists.
pub async fn delivery(
    tx: &mut TenantTx,
    conversation: ConversationId,
) -> StoreResult<Option<DeliveryTarget>> {
    type Row = (
        String,
        ConnectionId,
        Option<shared::AgentId>,
        Option<Value>,
        Option<String>,
        Option<String>,
        Option<DateTime<Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT cc.kind, c.channel_connection_id, c.agent_id, c.reply_target, eu.external_id, \
                eu.display_name, c.last_inbound_at \
           FROM conversations c JOIN channel_connections cc ON cc.id = c.channel_connection_id \
           LEFT JOIN end_users eu ON eu.id = c.end_user_id \
          WHERE c.id = $1",
    )
    .bind(conversation)
    .fetch_optional(tx.connection())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(DeliveryTarget {
        channel: parse(r.0)?,
        connection_id: r.1,
        agent_id: r.2,
        reply_target: r.3.and_then(|v| serde_json::from_value(v).ok()),
        customer_id: r.4,
        customer_name: r.5,
        last_inbound_at: r.6,
    }))
}
