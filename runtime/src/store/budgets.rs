//! Budgets: a tenant's monthly caps over its LLM spend. Before a call its worst-case cost is
//! reserved against each budget that applies (`reserve`), under the lock of the budget's period
//! row, so concurrent calls of one tenant are admitted one at a time; after the call its real
//! cost is settled (`settle`, in the transaction that records the call) and the reservation
//! deleted. A reservation a crashed turn never settled lapses at `expires_at`. A month's spend
//! lives under its key (`YYYY-MM` of the tenant's calendar): a new month starts at zero without
//! any reset.

use chrono::{DateTime, Utc};
use shared::AgentId;
use uuid::Uuid;

use super::{StoreResult, TenantTx};

/// A budget as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BudgetRow {
    pub id: Uuid,
    /// `None`: the whole tenant's spend.
    pub agent_id: Option<AgentId>,
    pub monthly_micro_usd: i64,
    pub thresholds: Vec<i16>,
    pub policy: String,
    pub downgrade_group: Option<String>,
    pub count_own_keys: bool,
    pub webhook_url: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, agent_id, monthly_micro_usd, thresholds, policy, downgrade_group, \
                       count_own_keys, webhook_url, updated_at";

/// What a budget is set to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBudget<'a> {
    pub agent: Option<AgentId>,
    pub monthly_micro_usd: i64,
    pub thresholds: &'a [i16],
    pub policy: &'a str,
    pub downgrade_group: Option<&'a str>,
    pub count_own_keys: bool,
    pub webhook_url: Option<&'a str>,
}

/// The tenant's budgets, the tenant-wide one first.
pub async fn list(tx: &mut TenantTx) -> StoreResult<Vec<BudgetRow>> {
    Ok(sqlx::query_as::<_, BudgetRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM budgets ORDER BY agent_id NULLS FIRST, id"
    )))
    .fetch_all(tx.connection())
    .await?)
}

/// Sets the budget of its scope (the tenant, or one agent), replacing one set before.
pub async fn put(tx: &mut TenantTx, b: &NewBudget<'_>) -> StoreResult<BudgetRow> {
    let tenant = tx.tenant();
    Ok(sqlx::query_as::<_, BudgetRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO budgets (id, tenant_id, agent_id, monthly_micro_usd, thresholds, policy, \
                              downgrade_group, count_own_keys, webhook_url) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT ON CONSTRAINT budgets_scope DO UPDATE SET \
             monthly_micro_usd = EXCLUDED.monthly_micro_usd, thresholds = EXCLUDED.thresholds, \
             policy = EXCLUDED.policy, downgrade_group = EXCLUDED.downgrade_group, \
             count_own_keys = EXCLUDED.count_own_keys, webhook_url = EXCLUDED.webhook_url, \
             updated_at = now() \
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(tenant.as_uuid())
    .bind(b.agent)
    .bind(b.monthly_micro_usd)
    .bind(b.thresholds)
    .bind(b.policy)
    .bind(b.downgrade_group)
    .bind(b.count_own_keys)
    .bind(b.webhook_url)
    .fetch_one(tx.connection())
    .await?)
}

/// Removes the budget of a scope (its months, reservations and alerts with it); returns whether
/// there was one.
pub async fn delete(tx: &mut TenantTx, agent: Option<AgentId>) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM budgets WHERE agent_id IS NOT DISTINCT FROM $1")
        .bind(agent)
        .execute(tx.connection())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Where a budget stands for one more call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// There was room: the reservation is held.
    Reserved,
    /// Settled spend is below the amount but calls in flight hold the rest: once they settle
    /// there may be room again. Nothing was reserved.
    HeldByCallsInFlight,
    /// Settled spend has reached the amount. Nothing was reserved.
    Spent,
    /// The budget was removed (a configuration snapshot still named it): it caps nothing.
    Gone,
}

/// Reserves `amount` (a call's worst-case cost) against `budget` in `period`, if the budget is
/// not spent: admitted while settled spend plus live reservations is below the amount, so a
/// month can overshoot by at most one call's worth. Locks the period row until the caller's
/// transaction ends, which makes check and hold one step for concurrent callers; reservations
/// that expired by `now` are swept on the way. The caller commits.
pub async fn reserve(
    tx: &mut TenantTx,
    reservation: Uuid,
    budget: &BudgetRow,
    period: &str,
    amount: i64,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<Standing> {
    let tenant = tx.tenant();
    if !lock_budget(tx, budget.id).await? {
        return Ok(Standing::Gone);
    }
    open_period(tx, budget, period).await?;
    let spent = lock_period(tx, budget.id, period).await?;
    sqlx::query(
        "DELETE FROM budget_reservations \
          WHERE budget_id = $1 AND period = $2 AND expires_at <= $3",
    )
    .bind(budget.id)
    .bind(period)
    .bind(now)
    .execute(tx.connection())
    .await?;
    let held: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::bigint FROM budget_reservations \
          WHERE budget_id = $1 AND period = $2",
    )
    .bind(budget.id)
    .bind(period)
    .fetch_one(tx.connection())
    .await?;
    if spent >= budget.monthly_micro_usd {
        return Ok(Standing::Spent);
    }
    if spent.saturating_add(held) >= budget.monthly_micro_usd {
        return Ok(Standing::HeldByCallsInFlight);
    }
    sqlx::query(
        "INSERT INTO budget_reservations (id, tenant_id, budget_id, period, amount, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(reservation)
    .bind(tenant.as_uuid())
    .bind(budget.id)
    .bind(period)
    .bind(amount.max(0))
    .bind(expires_at)
    .execute(tx.connection())
    .await?;
    Ok(Standing::Reserved)
}

/// What a call of a model without a price is charged per million input and output tokens
/// (as `llm::budget` charges it).
const UNPRICED_PER_MTOK: (i64, i64) = (
    crate::llm::budget::UNPRICED_INPUT_MICRO_USD_PER_MTOK,
    crate::llm::budget::UNPRICED_OUTPUT_MICRO_USD_PER_MTOK,
);

/// Holds the budget's row against removal until the transaction ends (a removal waits for the
/// calls settling against it, and the locks are always taken budget first, then its month);
/// `false` if the budget is gone.
async fn lock_budget(tx: &mut TenantTx, budget: Uuid) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM budgets WHERE id = $1 FOR KEY SHARE")
            .bind(budget)
            .fetch_optional(tx.connection())
            .await?
            .is_some(),
    )
}

/// Opens the budget's month if it has no row yet, with what the month has spent so far (a
/// budget set mid-month starts from the month's real spend, not from zero): the usage recorded
/// since the month's first instant in the tenant's calendar, the agent's only for an agent's
/// budget, the platform's keys only unless the budget counts the tenant's own; calls without a
/// price at the default price.
pub async fn open_period(tx: &mut TenantTx, budget: &BudgetRow, period: &str) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO budget_periods (tenant_id, budget_id, period, spent_micro_usd) \
         SELECT $1, $2, $3, coalesce(( \
                  SELECT sum(CASE WHEN u.unpriced_calls > 0 \
                                  THEN (u.input_tokens::numeric * $6 \
                                        + u.output_tokens::numeric * $7) / 1000000 \
                                  ELSE u.cost_micro_usd END)::bigint \
                    FROM llm_usage u \
                   WHERE u.bucket >= m.start AND u.bucket < m.next \
                     AND ($4::uuid IS NULL OR u.agent_id = $4) \
                     AND ($5 OR u.key_owner = 'platform')), 0) \
           FROM (SELECT ((($3 || '-01')::date)::timestamp AT TIME ZONE t.time_zone) AS start, \
                        ((($3 || '-01')::date + interval '1 month')::timestamp \
                            AT TIME ZONE t.time_zone) AS next \
                   FROM tenants t WHERE t.id = $1) m \
          WHERE NOT EXISTS (SELECT 1 FROM budget_periods p \
                             WHERE p.budget_id = $2 AND p.period = $3) \
            AND EXISTS (SELECT 1 FROM budgets b WHERE b.id = $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_uuid())
    .bind(budget.id)
    .bind(period)
    .bind(budget.agent_id)
    .bind(budget.count_own_keys)
    .bind(UNPRICED_PER_MTOK.0)
    .bind(UNPRICED_PER_MTOK.1)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Locks the budget's month row (which exists: `open_period` or `settle` made it) and returns
/// its settled spend.
async fn lock_period(tx: &mut TenantTx, budget: Uuid, period: &str) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT spent_micro_usd FROM budget_periods \
          WHERE budget_id = $1 AND period = $2 FOR UPDATE",
    )
    .bind(budget)
    .bind(period)
    .fetch_one(tx.connection())
    .await?)
}

/// Settles a call against a budget: deletes its reservation (if it still has one: an expired
/// one may be gone) and adds what the call really cost to the month. Returns the month's spend
/// before and after, `None` if the budget was removed meanwhile. Runs in the transaction that
/// records the call, so a call is settled exactly when it is recorded.
pub async fn settle(
    tx: &mut TenantTx,
    reservation: Option<Uuid>,
    budget: Uuid,
    period: &str,
    charged: i64,
) -> StoreResult<Option<(i64, i64)>> {
    // The same lock order as `reserve`: the budget, its month, then the reservation.
    if !lock_budget(tx, budget).await? {
        return Ok(None);
    }
    // Reserving made the month's row; should it be missing, it starts at zero here (opening it
    // from usage would count this call, recorded in this transaction, twice).
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO budget_periods (tenant_id, budget_id, period) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_uuid())
    .bind(budget)
    .bind(period)
    .execute(tx.connection())
    .await?;
    let before = lock_period(tx, budget, period).await?;
    if let Some(id) = reservation {
        release(tx, id, budget).await?;
    }
    let after: i64 = sqlx::query_scalar(
        "UPDATE budget_periods SET spent_micro_usd = spent_micro_usd + $3 \
          WHERE budget_id = $1 AND period = $2 RETURNING spent_micro_usd",
    )
    .bind(budget)
    .bind(period)
    .bind(charged.max(0))
    .fetch_one(tx.connection())
    .await?;
    Ok(Some((before, after)))
}

/// Lets go of a reservation whose call cost nothing (it failed before the provider answered).
pub async fn release(tx: &mut TenantTx, reservation: Uuid, budget: Uuid) -> StoreResult<()> {
    sqlx::query("DELETE FROM budget_reservations WHERE id = $1 AND budget_id = $2")
        .bind(reservation)
        .bind(budget)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// A budget's month: settled spend and what live reservations hold at `now`.
pub async fn standing(
    tx: &mut TenantTx,
    budget: Uuid,
    period: &str,
    now: DateTime<Utc>,
) -> StoreResult<(i64, i64)> {
    Ok(sqlx::query_as::<_, (i64, i64)>(
        "SELECT coalesce((SELECT spent_micro_usd FROM budget_periods \
                           WHERE budget_id = $1 AND period = $2), 0), \
                coalesce((SELECT sum(amount) FROM budget_reservations \
                           WHERE budget_id = $1 AND period = $2 AND expires_at > $3), 0)::bigint",
    )
    .bind(budget)
    .bind(period)
    .bind(now)
    .fetch_one(tx.connection())
    .await?)
}

/// The thresholds (percentages of `monthly`) that spend passing from `before` to `after`
/// crosses: those with `before < t% of monthly <= after`.
pub fn crossed(thresholds: &[i16], monthly: i64, before: i64, after: i64) -> Vec<i16> {
    let mut crossed: Vec<i16> = thresholds
        .iter()
        .copied()
        .filter(|&t| {
            let line = i128::from(monthly) * i128::from(t);
            i128::from(before) * 100 < line && line <= i128::from(after) * 100
        })
        .collect();
    crossed.sort_unstable();
    crossed.dedup();
    crossed
}

/// Records that `threshold` was crossed in `period`; returns the new alert's id, or `None` if
/// this threshold was already crossed this month (so each alerts once).
pub async fn record_alert(
    tx: &mut TenantTx,
    budget: &BudgetRow,
    period: &str,
    threshold: i16,
    spent: i64,
) -> StoreResult<Option<Uuid>> {
    let tenant = tx.tenant();
    Ok(sqlx::query_scalar(
        "INSERT INTO budget_alerts (id, tenant_id, budget_id, period, threshold, \
                                    spent_micro_usd, monthly_micro_usd) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tenant_id, budget_id, period, threshold) DO NOTHING RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(tenant.as_uuid())
    .bind(budget.id)
    .bind(period)
    .bind(threshold)
    .bind(spent)
    .bind(budget.monthly_micro_usd)
    .fetch_optional(tx.connection())
    .await?)
}

/// The thresholds of `budget` already crossed in `period`, lowest first.
pub async fn crossed_in(tx: &mut TenantTx, budget: Uuid, period: &str) -> StoreResult<Vec<i16>> {
    Ok(sqlx::query_scalar(
        "SELECT threshold FROM budget_alerts WHERE budget_id = $1 AND period = $2 \
          ORDER BY threshold",
    )
    .bind(budget)
    .bind(period)
    .fetch_all(tx.connection())
    .await?)
}

/// A crossed threshold as stored, with its budget's scope and policy.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertRow {
    pub id: Uuid,
    pub budget_id: Uuid,
    pub agent_id: Option<AgentId>,
    pub agent_name: Option<String>,
    pub period: String,
    pub threshold: i16,
    pub spent_micro_usd: i64,
    pub monthly_micro_usd: i64,
    pub policy: String,
    pub webhook_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub mailed: Option<i32>,
    pub webhook_status: Option<i32>,
}

const ALERT_COLUMNS: &str = "a.id, a.budget_id, b.agent_id, g.name AS agent_name, a.period, \
                             a.threshold, a.spent_micro_usd, a.monthly_micro_usd, b.policy, \
                             b.webhook_url, a.created_at, a.mailed, a.webhook_status";

const ALERT_FROM: &str = "FROM budget_alerts a JOIN budgets b ON b.id = a.budget_id \
                          LEFT JOIN agents g ON g.id = b.agent_id";

/// The tenant's alerts, newest first: `limit` of them from before `before` (a page's last
/// `created_at`, with its id to break ties).
pub async fn alerts(
    tx: &mut TenantTx,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> StoreResult<Vec<AlertRow>> {
    let (at, id) = before.map_or((None, None), |(at, id)| (Some(at), Some(id)));
    Ok(sqlx::query_as::<_, AlertRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLUMNS} {ALERT_FROM} \
          WHERE $1::timestamptz IS NULL OR (a.created_at, a.id) < ($1, $2) \
          ORDER BY a.created_at DESC, a.id DESC LIMIT $3"
    )))
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(tx.connection())
    .await?)
}

/// One alert, for its job.
pub async fn alert(tx: &mut TenantTx, id: Uuid) -> StoreResult<Option<AlertRow>> {
    Ok(sqlx::query_as::<_, AlertRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLUMNS} {ALERT_FROM} WHERE a.id = $1"
    )))
    .bind(id)
    .fetch_optional(tx.connection())
    .await?)
}

/// Records that the alert's mail went to `mailed` admins.
pub async fn mark_mailed(tx: &mut TenantTx, id: Uuid, mailed: i32) -> StoreResult<()> {
    sqlx::query("UPDATE budget_alerts SET mailed = $2 WHERE id = $1")
        .bind(id)
        .bind(mailed)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// Records the webhook's answer to the alert.
pub async fn mark_posted(tx: &mut TenantTx, id: Uuid, status: i32) -> StoreResult<()> {
    sqlx::query("UPDATE budget_alerts SET webhook_status = $2 WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(tx.connection())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_is_crossed_by_the_call_that_reaches_it_and_by_no_other() {
        let t = [50, 80, 100];
        assert_eq!(crossed(&t, 1000, 0, 499), Vec::<i16>::new());
        assert_eq!(crossed(&t, 1000, 499, 500), vec![50]);
        assert_eq!(crossed(&t, 1000, 500, 799), Vec::<i16>::new());
        // One expensive call may cross several.
        assert_eq!(crossed(&t, 1000, 700, 1200), vec![80, 100]);
        assert_eq!(crossed(&t, 1000, 1200, 5000), Vec::<i16>::new());
        // No overflow near the top of the range.
        assert_eq!(crossed(&[100], i64::MAX, 0, i64::MAX), vec![100]);
    }
}
