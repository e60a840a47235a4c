//! AI employees. Rows are read and written only inside a `TenantTx`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::{AgentId, TenantId};
use uuid::Uuid;

use super::{StoreResult, TenantTx};

/// An agent as stored; `tools` and `escalation_rules` are JSON arrays validated by the API.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AgentRow {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub name: String,
    pub job_title: String,
    pub persona: String,
    pub system_prompt: String,
    pub job_description: String,
    pub model_preference: String,
    pub business_function: String,
    pub tools: Value,
    pub escalation_rules: Value,
    pub scope_guard: String,
    pub in_scope_examples: Value,
    pub ai_disclosure: String,
    pub cite_or_handoff: bool,
    pub long_term_memory: bool,
    pub max_tool_steps: Option<i32>,
    pub turn_deadline_secs: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The editable fields.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFields<'a> {
    pub name: &'a str,
    pub job_title: &'a str,
    pub persona: &'a str,
    pub system_prompt: &'a str,
    pub job_description: &'a str,
    pub model_preference: &'a str,
    pub business_function: &'a str,
    pub tools: Value,
    pub escalation_rules: Value,
    pub scope_guard: &'a str,
    pub in_scope_examples: Value,
    pub ai_disclosure: &'a str,
    pub cite_or_handoff: bool,
    pub long_term_memory: bool,
    pub max_tool_steps: Option<i32>,
    pub turn_deadline_secs: Option<i32>,
}

const COLUMNS: &str = "id, tenant_id, name, job_title, persona, system_prompt, job_description, \
                       model_preference, business_function, tools, escalation_rules, scope_guard, \
                       in_scope_examples, ai_disclosure, cite_or_handoff, long_term_memory, \
                       max_tool_steps, turn_deadline_secs, created_at, updated_at";

pub async fn list(tx: &mut TenantTx, limit: i64, offset: i64) -> StoreResult<(Vec<AgentRow>, i64)> {
    let rows = sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agents ORDER BY created_at, id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM agents")
        .fetch_one(tx.connection())
        .await?;
    Ok((rows, total))
}

/// Every agent of the tenant (the engine's configuration snapshot).
pub async fn all(tx: &mut TenantTx) -> StoreResult<Vec<AgentRow>> {
    Ok(sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agents ORDER BY created_at, id"
    )))
    .fetch_all(tx.connection())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: AgentId) -> StoreResult<Option<AgentRow>> {
    Ok(sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agents WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(tx.connection())
    .await?)
}

type AgentQuery<'q> = sqlx::query::QueryAs<
    'q,
    sqlx::Postgres,
    AgentRow,
    <sqlx::Postgres as sqlx::Database>::Arguments,
>;

/// Binds the editable fields, in the order both statements below expect them after their
/// leading parameters.
fn bind_fields<'q>(query: AgentQuery<'q>, f: &'q AgentFields<'q>) -> AgentQuery<'q> {
    query
        .bind(f.name)
        .bind(f.job_title)
        .bind(f.persona)
        .bind(f.system_prompt)
        .bind(f.job_description)
        .bind(f.model_preference)
        .bind(f.business_function)
        .bind(&f.tools)
        .bind(&f.escalation_rules)
        .bind(f.scope_guard)
        .bind(&f.in_scope_examples)
        .bind(f.ai_disclosure)
        .bind(f.cite_or_handoff)
        .bind(f.long_term_memory)
        .bind(f.max_tool_steps)
        .bind(f.turn_deadline_secs)
}

pub async fn create(tx: &mut TenantTx, f: &AgentFields<'_>) -> StoreResult<AgentRow> {
    let tenant = tx.tenant();
    let query = sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO agents (id, tenant_id, name, job_title, persona, system_prompt, \
                             job_description, model_preference, business_function, tools, \
                             escalation_rules, scope_guard, in_scope_examples, ai_disclosure, \
                             cite_or_handoff, long_term_memory, max_tool_steps, \
                             turn_deadline_secs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18) \
         RETURNING {COLUMNS}"
    )))
    .bind(AgentId::from_uuid(Uuid::new_v4()))
    .bind(tenant);
    Ok(bind_fields(query, f).fetch_one(tx.connection()).await?)
}

pub async fn update(
    tx: &mut TenantTx,
    id: AgentId,
    f: &AgentFields<'_>,
) -> StoreResult<Option<AgentRow>> {
    let query = sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE agents SET name = $2, job_title = $3, persona = $4, system_prompt = $5, \
                job_description = $6, model_preference = $7, business_function = $8, \
                tools = $9, escalation_rules = $10, scope_guard = $11, \
                in_scope_examples = $12, ai_disclosure = $13, cite_or_handoff = $14, \
                long_term_memory = $15, max_tool_steps = $16, turn_deadline_secs = $17, \
                updated_at = now() \
          WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id);
    Ok(bind_fields(query, f)
        .fetch_optional(tx.connection())
        .await?)
}

pub async fn delete(tx: &mut TenantTx, id: AgentId) -> StoreResult<bool> {
    // Its connections lose their agent (ON DELETE SET NULL).
    tx.channels_changed();
    let done = sqlx::query("DELETE FROM agents WHERE id = $1")
        .bind(id)
        .execute(tx.connection())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts one request the agent declined as outside its business function, on the tenant's
/// calendar day.
pub async fn count_decline(
    tx: &mut TenantTx,
    id: AgentId,
    day: chrono::NaiveDate,
) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO scope_declines_daily (tenant_id, agent_id, day, declined) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (tenant_id, agent_id, day) DO UPDATE \
            SET declined = scope_declines_daily.declined + 1",
    )
    .bind(tenant)
    .bind(id)
    .bind(day)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Requests each of the tenant's agents declined as outside its business function, since `from`.
pub async fn declines_since(
    tx: &mut TenantTx,
    from: chrono::NaiveDate,
) -> StoreResult<std::collections::HashMap<AgentId, i64>> {
    let rows: Vec<(AgentId, i64)> = sqlx::query_as(
        "SELECT agent_id, sum(declined)::bigint FROM scope_declines_daily WHERE day >= $1 \
          GROUP BY agent_id",
    )
    .bind(from)
    .fetch_all(tx.connection())
    .await?;
    Ok(rows.into_iter().collect())
}
