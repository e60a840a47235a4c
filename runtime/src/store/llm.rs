//! LLM usage per day and tenants' own provider keys (ciphertext only).

use chrono::{DateTime, NaiveDate, Utc};
use shared::AgentId;

use super::{StoreResult, TenantTx};

/// One call to add to the day's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord<'a> {
    pub day: NaiveDate,
    pub agent: Option<AgentId>,
    pub provider: &'a str,
    pub model: &'a str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    /// `None` when the price is unknown.
    pub cost_micro_usd: Option<i64>,
    /// Which of the day's rows (0–15) to add to; concurrent writers pick different slots so they
    /// do not queue on one row lock. Readers sum the slots.
    pub slot: i16,
}

pub async fn add_usage(tx: &mut TenantTx, r: &UsageRecord<'_>) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO llm_usage_daily AS u (tenant_id, day, agent_id, provider, model, calls, \
             input_tokens, output_tokens, cached_input_tokens, cost_micro_usd, unpriced_calls, slot) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, coalesce($9, 0), CASE WHEN $9 IS NULL THEN 1 ELSE 0 END, $10) \
         ON CONFLICT ON CONSTRAINT llm_usage_daily_key DO UPDATE SET \
             calls = u.calls + 1, \
             input_tokens = u.input_tokens + EXCLUDED.input_tokens, \
             output_tokens = u.output_tokens + EXCLUDED.output_tokens, \
             cached_input_tokens = u.cached_input_tokens + EXCLUDED.cached_input_tokens, \
             cost_micro_usd = u.cost_micro_usd + EXCLUDED.cost_micro_usd, \
             unpriced_calls = u.unpriced_calls + EXCLUDED.unpriced_calls",
    )
    .bind(tenant.as_uuid())
    .bind(r.day)
    .bind(r.agent)
    .bind(r.provider)
    .bind(r.model)
    .bind(r.input_tokens)
    .bind(r.output_tokens)
    .bind(r.cached_input_tokens)
    .bind(r.cost_micro_usd)
    .bind(r.slot.clamp(0, 15))
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// A day's totals for one agent and model.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub day: NaiveDate,
    pub agent_id: Option<AgentId>,
    pub provider: String,
    pub model: String,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cost_micro_usd: i64,
    pub unpriced_calls: i64,
}

pub async fn usage(tx: &mut TenantTx) -> StoreResult<Vec<UsageRow>> {
    Ok(sqlx::query_as::<_, UsageRow>(
        "SELECT day, agent_id, provider, model, sum(calls)::bigint AS calls, \
                sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens, \
                sum(cached_input_tokens)::bigint AS cached_input_tokens, \
                sum(cost_micro_usd)::bigint AS cost_micro_usd, sum(unpriced_calls)::bigint AS unpriced_calls \
           FROM llm_usage_daily GROUP BY day, agent_id, provider, model \
          ORDER BY day DESC, provider, model",
    )
    .fetch_all(tx.connection())
    .await?)
}

/// A stored key: sealed bytes and what may be shown about it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    pub provider: String,
    pub ciphertext: Vec<u8>,
    pub key_version: i32,
    pub hint: String,
    pub updated_at: DateTime<Utc>,
    /// When the provider began refusing the key; cleared when the key is saved again.
    pub refused_at: Option<DateTime<Utc>>,
    /// Our own short classification of the refusal.
    pub refused_reason: Option<String>,
}

const KEY_COLUMNS: &str =
    "provider, ciphertext, key_version, hint, updated_at, refused_at, refused_reason";

pub async fn keys(tx: &mut TenantTx) -> StoreResult<Vec<KeyRow>> {
    Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM tenant_llm_keys ORDER BY provider"
    )))
    .fetch_all(tx.connection())
    .await?)
}

pub async fn put_key(
    tx: &mut TenantTx,
    provider: &str,
    ciphertext: &[u8],
    key_version: i32,
    hint: &str,
) -> StoreResult<KeyRow> {
    let tenant = tx.tenant();
    // Saving a key again ends any refusal episode: the operator has fixed or replaced it.
    Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenant_llm_keys (tenant_id, provider, ciphertext, key_version, hint) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, provider) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, \
             key_version = EXCLUDED.key_version, hint = EXCLUDED.hint, updated_at = now(), \
             refused_at = NULL, refused_reason = NULL \
         RETURNING {KEY_COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(provider)
    .bind(ciphertext)
    .bind(key_version)
    .bind(hint)
    .fetch_one(tx.connection())
    .await?)
}

pub async fn delete_key(tx: &mut TenantTx, provider: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM tenant_llm_keys WHERE provider = $1")
        .bind(provider)
        .execute(tx.connection())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the key for `provider` as refused, unless it already is; returns whether this started a
/// refusal episode (so the caller audits it once, however many calls are refused).
pub async fn mark_key_refused(
    tx: &mut TenantTx,
    provider: &str,
    reason: &str,
) -> StoreResult<bool> {
    let marked: Option<String> = sqlx::query_scalar(
        "UPDATE tenant_llm_keys SET refused_at = now(), refused_reason = $2 \
          WHERE provider = $1 AND refused_at IS NULL RETURNING provider",
    )
    .bind(provider)
    .bind(reason)
    .fetch_optional(tx.connection())
    .await?;
    Ok(marked.is_some())
}
