//! A tenant's HTTP tools and the tool calls agents make (kept with their conversation).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::tools::{HttpMethod, ToolCall, ToolOutcome};
use shared::{AgentId, ConversationId};
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx};

/// A header as stored: a secret one's value lives in the tool's sealed `secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHeader {
    pub name: String,
    pub value: Option<String>,
    pub secret: bool,
    pub hint: Option<String>,
}

/// An HTTP tool as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ToolRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub parameters: Value,
    pub method: String,
    pub url: String,
    pub headers: Value,
    /// The secret header values, as a sealed JSON object `{name: value}`.
    pub secrets: Option<Vec<u8>>,
    pub secrets_key_version: Option<i32>,
    pub max_response_bytes: i32,
    pub timeout_ms: i32,
    pub needs_confirmation: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ToolRow {
    pub fn method(&self) -> HttpMethod {
        HttpMethod::parse(&self.method).unwrap_or(HttpMethod::Get)
    }

    pub fn stored_headers(&self) -> Vec<StoredHeader> {
        serde_json::from_value(self.headers.clone()).unwrap_or_default()
    }
}

const TOOL_COLUMNS: &str = "id, name, description, parameters, method, url, headers, secrets, \
                            secrets_key_version, max_response_bytes, timeout_ms, \
                            needs_confirmation, created_at, updated_at";

/// The slot a tool's secret headers are sealed under.
pub fn secrets_slot(id: Uuid) -> String {
    format!("tool_headers:{id}")
}

pub async fn list(tx: &mut TenantTx) -> StoreResult<Vec<ToolRow>> {
    Ok(sqlx::query_as::<_, ToolRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {TOOL_COLUMNS} FROM tools ORDER BY lower(name), id LIMIT 1000"
    )))
    .fetch_all(tx.connection())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> StoreResult<Option<ToolRow>> {
    Ok(sqlx::query_as::<_, ToolRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {TOOL_COLUMNS} FROM tools WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(tx.connection())
    .await?)
}

/// How many HTTP tools the tenant has, counted under a lock on the tenant's row so two
/// concurrent creations cannot both pass the cap.
pub async fn count_locked(tx: &mut TenantTx) -> StoreResult<i64> {
    let tenant = tx.tenant();
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(tenant)
        .execute(tx.connection())
        .await?;
    Ok(sqlx::query_scalar("SELECT count(*) FROM tools")
        .fetch_one(tx.connection())
        .await?)
}

/// Inserts or replaces the tool (by id). A name taken by another of the tenant's tools is
/// `StoreError::Conflict`.
pub async fn save(tx: &mut TenantTx, row: &ToolRow) -> StoreResult<ToolRow> {
    let tenant = tx.tenant();
    let saved = sqlx::query_as::<_, ToolRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tools (id, tenant_id, name, description, parameters, method, url, headers, \
                            secrets, secrets_key_version, max_response_bytes, timeout_ms, \
                            needs_confirmation) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description, \
             parameters = EXCLUDED.parameters, method = EXCLUDED.method, url = EXCLUDED.url, \
             headers = EXCLUDED.headers, secrets = EXCLUDED.secrets, \
             secrets_key_version = EXCLUDED.secrets_key_version, \
             max_response_bytes = EXCLUDED.max_response_bytes, \
             timeout_ms = EXCLUDED.timeout_ms, needs_confirmation = EXCLUDED.needs_confirmation, \
             updated_at = now() \
         RETURNING {TOOL_COLUMNS}"
    )))
    .bind(row.id)
    .bind(tenant)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.parameters)
    .bind(&row.method)
    .bind(&row.url)
    .bind(&row.headers)
    .bind(&row.secrets)
    .bind(row.secrets_key_version)
    .bind(row.max_response_bytes)
    .bind(row.timeout_ms)
    .bind(row.needs_confirmation)
    .fetch_one(tx.connection())
    .await;
    match saved {
        Ok(row) => Ok(row),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
            format!("a tool named {:?} exists", row.name),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the tool and takes it off every agent that had it. False if there was none.
pub async fn delete(tx: &mut TenantTx, id: Uuid) -> StoreResult<bool> {
    let gone = sqlx::query("DELETE FROM tools WHERE id = $1")
        .bind(id)
        .execute(tx.connection())
        .await?
        .rows_affected()
        > 0;
    if gone {
        sqlx::query(
            "UPDATE agents SET tools = tools - $1::text, updated_at = now() WHERE tools ? $1::text",
        )
        .bind(id.to_string())
        .execute(tx.connection())
        .await?;
    }
    Ok(gone)
}

/// The agents a tool is assigned to, by tool id.
pub async fn assignments(tx: &mut TenantTx) -> StoreResult<Vec<(String, AgentId)>> {
    Ok(sqlx::query_as::<_, (String, AgentId)>(
        "SELECT t.id, a.id FROM agents a, jsonb_array_elements_text(a.tools) AS t(id) \
         ORDER BY a.created_at, a.id",
    )
    .fetch_all(tx.connection())
    .await?)
}

// ---------------------------------------------------------------------------------------------
// Tool calls
// ---------------------------------------------------------------------------------------------

/// A tool call as the turn records it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CallRow {
    pub id: Uuid,
    pub conversation_id: ConversationId,
    pub event_id: String,
    pub agent_id: Option<AgentId>,
    pub end_user_id: Option<shared::EndUserId>,
    pub step: i16,
    pub position: i16,
    pub call_id: String,
    pub tool_id: Option<String>,
    pub name: String,
    pub arguments: Value,
    /// The real arguments, sealed, when they differ from the stored ones.
    pub sealed_arguments: Option<Vec<u8>>,
    pub step_text: String,
    pub outcome: String,
    pub result: String,
    pub passages: Option<Value>,
    pub duration_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    /// The event whose turn confirmed and ran it, for a call that waited for a yes.
    pub confirmed_event: Option<String>,
}

impl CallRow {
    /// The inbound event whose reply the call belongs with: the one that ran it.
    pub fn shown_with(&self) -> &str {
        self.confirmed_event.as_deref().unwrap_or(&self.event_id)
    }

    pub fn outcome(&self) -> ToolOutcome {
        ToolOutcome::parse(&self.outcome).unwrap_or(ToolOutcome::Failed)
    }

    pub fn view(&self) -> ToolCall {
        ToolCall {
            id: self.id,
            conversation_id: self.conversation_id,
            agent_id: self.agent_id,
            tool_id: self.tool_id.clone(),
            name: self.name.clone(),
            step: u16::try_from(self.step).unwrap_or(0),
            arguments: self.arguments.clone(),
            outcome: self.outcome(),
            result: self.result.clone(),
            duration_ms: self.duration_ms.and_then(|d| u64::try_from(d).ok()),
            created_at: self.created_at,
        }
    }
}

const CALL_COLUMNS: &str = "id, conversation_id, event_id, agent_id, end_user_id, step, \
                            position, call_id, tool_id, name, arguments, sealed_arguments, \
                            step_text, outcome, result, passages, duration_ms, created_at, \
                            confirmed_event";

/// The slot a call's real arguments are sealed under.
pub fn arguments_slot(id: Uuid) -> String {
    format!("tool_call:{id}")
}

/// Records the calls the model proposed in one step (with the outcome of those that will not
/// run). A step recorded before (a resumed turn racing an old owner) is left as it was.
pub async fn record_step(tx: &mut TenantTx, calls: &[CallRow]) -> StoreResult<()> {
    let tenant = tx.tenant();
    for c in calls {
        sqlx::query(
            "INSERT INTO tool_calls (id, tenant_id, conversation_id, event_id, agent_id, \
                                     end_user_id, step, position, call_id, tool_id, name, \
                                     arguments, sealed_arguments, step_text, outcome, result, \
                                     duration_ms, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                     $17, CASE WHEN $15 = 'running' THEN NULL ELSE now() END) \
             ON CONFLICT (tenant_id, event_id, step, position) DO NOTHING",
        )
        .bind(c.id)
        .bind(tenant)
        .bind(c.conversation_id)
        .bind(&c.event_id)
        .bind(c.agent_id)
        .bind(c.end_user_id)
        .bind(c.step)
        .bind(c.position)
        .bind(&c.call_id)
        .bind(&c.tool_id)
        .bind(&c.name)
        .bind(&c.arguments)
        .bind(&c.sealed_arguments)
        .bind(&c.step_text)
        .bind(&c.outcome)
        .bind(&c.result)
        .bind(c.duration_ms)
        .execute(tx.connection())
        .await?;
    }
    Ok(())
}

/// Records a call's result. Only a call still `running` (or awaiting confirmation) changes:
/// the first result recorded is the one every later reader uses.
pub async fn finish(
    tx: &mut TenantTx,
    id: Uuid,
    outcome: ToolOutcome,
    result: &str,
    passages: Option<&Value>,
    duration_ms: i32,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE tool_calls SET outcome = $2, result = $3, passages = $4, duration_ms = $5, \
                               finished_at = now(), sealed_arguments = NULL \
         WHERE id = $1 AND outcome IN ('running', 'awaiting_confirmation')",
    )
    .bind(id)
    .bind(outcome.as_str())
    .bind(result)
    .bind(passages)
    .bind(duration_ms)
    .execute(tx.connection())
    .await?
    .rows_affected()
        > 0)
}

/// The calls recorded for one inbound event's turn, in order.
pub async fn for_event(tx: &mut TenantTx, event_id: &str) -> StoreResult<Vec<CallRow>> {
    Ok(sqlx::query_as::<_, CallRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM tool_calls WHERE event_id = $1 ORDER BY step, position"
    )))
    .bind(event_id)
    .fetch_all(tx.connection())
    .await?)
}

/// The call of the conversation waiting for `end_user`'s confirmation, if any (the newest).
pub async fn awaiting_confirmation(
    tx: &mut TenantTx,
    conversation: ConversationId,
    end_user: shared::EndUserId,
) -> StoreResult<Option<CallRow>> {
    Ok(sqlx::query_as::<_, CallRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM tool_calls \
         WHERE conversation_id = $1 AND outcome = 'awaiting_confirmation' \
           AND (end_user_id IS NULL OR end_user_id = $2) \
         ORDER BY created_at DESC, step DESC, position DESC LIMIT 1"
    )))
    .bind(conversation)
    .bind(end_user)
    .fetch_optional(tx.connection())
    .await?)
}

/// Takes the customer's answer to a call waiting for confirmation: `Some(event)` confirms it
/// for the turn of `event` (which runs it), `None` declines it. False if it was not waiting
/// any more.
pub async fn settle_confirmation(
    tx: &mut TenantTx,
    id: Uuid,
    confirmed_by: Option<&str>,
) -> StoreResult<bool> {
    let query = match confirmed_by {
        Some(_) => {
            "UPDATE tool_calls SET outcome = 'running', confirmed_event = $2 \
             WHERE id = $1 AND outcome = 'awaiting_confirmation'"
        }
        None => {
            "UPDATE tool_calls SET outcome = 'declined', finished_at = now(), \
                    sealed_arguments = NULL, \
                    result = 'The customer did not confirm; it did not run.' \
             WHERE id = $1 AND outcome = 'awaiting_confirmation' AND $2::text IS NULL"
        }
    };
    Ok(sqlx::query(query)
        .bind(id)
        .bind(confirmed_by)
        .execute(tx.connection())
        .await?
        .rows_affected()
        > 0)
}

/// The call a turn confirmed (see `settle_confirmation`), if any.
pub async fn confirmed_by(tx: &mut TenantTx, event_id: &str) -> StoreResult<Option<CallRow>> {
    Ok(sqlx::query_as::<_, CallRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM tool_calls WHERE confirmed_event = $1 LIMIT 1"
    )))
    .bind(event_id)
    .fetch_optional(tx.connection())
    .await?)
}

/// Which calls to list.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub tool_id: Option<String>,
    pub agent: Option<AgentId>,
    pub conversation: Option<ConversationId>,
}

/// A page of calls, newest first, and how many match in all.
pub async fn page(
    tx: &mut TenantTx,
    filter: &CallFilter,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<CallRow>, i64)> {
    let condition = "($1::text IS NULL OR tool_id = $1) AND ($2::uuid IS NULL OR agent_id = $2) \
                     AND ($3::uuid IS NULL OR conversation_id = $3)";
    let rows = sqlx::query_as::<_, CallRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM tool_calls WHERE {condition} \
         ORDER BY created_at DESC, step DESC, position DESC, id DESC LIMIT $4 OFFSET $5"
    )))
    .bind(&filter.tool_id)
    .bind(filter.agent)
    .bind(filter.conversation)
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM tool_calls WHERE {condition}"
    )))
    .bind(&filter.tool_id)
    .bind(filter.agent)
    .bind(filter.conversation)
    .fetch_one(tx.connection())
    .await?;
    Ok((rows, total))
}

/// The calls made for (or confirmed by) each of these inbound events — the replies of a
/// conversation view — in order.
pub async fn for_events(tx: &mut TenantTx, event_ids: &[String]) -> StoreResult<Vec<CallRow>> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as::<_, CallRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM tool_calls \
         WHERE event_id = ANY($1) OR confirmed_event = ANY($1) \
         ORDER BY created_at, step, position"
    )))
    .bind(event_ids)
    .fetch_all(tx.connection())
    .await?)
}
