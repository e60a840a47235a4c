//! LLM usage per day and tenants' own provider keys (ciphertext only).

use chrono::{DateTime, NaiveDate, Utc};
use shared::AgentId;
use shared::usage::KeyOwner;

use super::{StoreResult, TenantTx};

/// One call to add to the usage of its quarter hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord<'a> {
    /// When the call was made; its quarter hour is the row (every time zone's day starts on a
    /// quarter hour, so usage adds up by any tenant's calendar).
    pub at: DateTime<Utc>,
    pub agent: Option<AgentId>,
    /// The conversation's channel (`slack`, `whatsapp`, `web`); `None` for calls made for no
    /// conversation (memory summaries).
    pub channel: Option<&'a str>,
    pub key_owner: KeyOwner,
    pub provider: &'a str,
    pub model: &'a str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    /// `None` when the price is unknown.
    pub cost_micro_usd: Option<i64>,
    /// Which of the quarter hour's rows (0–15) to add to; concurrent writers pick different
    /// slots so they do not queue on one row lock. Readers sum the slots.
    pub slot: i16,
}

/// The UTC start of the quarter hour `at` is in.
pub fn bucket_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let secs = at.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(900), 0).unwrap_or(at)
}

pub async fn add_usage(tx: &mut TenantTx, r: &UsageRecord<'_>) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO llm_usage AS u (tenant_id, bucket, agent_id, channel, key_owner, provider, \
             model, slot, calls, input_tokens, output_tokens, cached_input_tokens, cost_micro_usd, \
             unpriced_calls) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, coalesce($12, 0), \
                 CASE WHEN $12 IS NULL THEN 1 ELSE 0 END) \
         ON CONFLICT ON CONSTRAINT llm_usage_key DO UPDATE SET \
             calls = u.calls + 1, \
             input_tokens = u.input_tokens + EXCLUDED.input_tokens, \
             output_tokens = u.output_tokens + EXCLUDED.output_tokens, \
             cached_input_tokens = u.cached_input_tokens + EXCLUDED.cached_input_tokens, \
             cost_micro_usd = u.cost_micro_usd + EXCLUDED.cost_micro_usd, \
             unpriced_calls = u.unpriced_calls + EXCLUDED.unpriced_calls",
    )
    .bind(tenant.as_uuid())
    .bind(bucket_of(r.at))
    .bind(r.agent)
    .bind(r.channel)
    .bind(r.key_owner.as_str())
    .bind(r.provider)
    .bind(r.model)
    .bind(r.slot.clamp(0, 15))
    .bind(r.input_tokens)
    .bind(r.output_tokens)
    .bind(r.cached_input_tokens)
    .bind(r.cost_micro_usd)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// A day's totals (the tenant's calendar day) for one agent, channel, key owner and model.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub day: NaiveDate,
    pub agent_id: Option<AgentId>,
    pub channel: Option<String>,
    pub key_owner: String,
    pub provider: String,
    pub model: String,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cost_micro_usd: i64,
    pub unpriced_calls: i64,
}

/// Every day of the tenant's usage, by its own calendar, newest first.
pub async fn usage(tx: &mut TenantTx) -> StoreResult<Vec<UsageRow>> {
    Ok(sqlx::query_as::<_, UsageRow>(
        "SELECT (u.bucket AT TIME ZONE t.time_zone)::date AS day, u.agent_id, u.channel, \
                u.key_owner, u.provider, u.model, sum(u.calls)::bigint AS calls, \
                sum(u.input_tokens)::bigint AS input_tokens, sum(u.output_tokens)::bigint AS output_tokens, \
                sum(u.cached_input_tokens)::bigint AS cached_input_tokens, \
                sum(u.cost_micro_usd)::bigint AS cost_micro_usd, sum(u.unpriced_calls)::bigint AS unpriced_calls \
           FROM llm_usage u JOIN tenants t ON t.id = u.tenant_id \
          GROUP BY 1, u.agent_id, u.channel, u.key_owner, u.provider, u.model \
          ORDER BY 1 DESC, u.provider, u.model",
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
