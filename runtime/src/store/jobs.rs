//! Durable jobs: enqueueing inside a tenant's transaction, the runners' claim / renew / complete /
//! fail calls (the `jobs_*` SECURITY DEFINER functions, the one path across tenants), and a
//! tenant's own list.
//!
//! A claimed job carries its attempt number: it is the lease's epoch. Every call a worker makes
//! about a claimed job names the worker and the attempt, and the database accepts it only while
//! both still match the row, so once another worker has claimed the job again (possible only
//! after the lease expired) the first one can record nothing more for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::TenantId;
use shared::resources::JobStatus;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, TenantTx};

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// A dotted name, e.g. `tenant.purge_redis`.
    pub kind: &'a str,
    /// Ids and parameters only: never message text or personal data beyond what the job needs.
    pub payload: Value,
    /// When set, the enqueue is a no-op while a job of this kind with this key is queued or
    /// running for the same tenant.
    pub dedupe_key: Option<&'a str>,
    /// `None`: the table's default (8); at most [`MAX_ATTEMPTS`].
    pub max_attempts: Option<u32>,
    /// Run no earlier than this long from now; `None`: at once.
    pub delay: Option<Duration>,
}

impl<'a> NewJob<'a> {
    /// A job of `kind` with this payload, run at once, deduplicated by nothing.
    pub fn new(kind: &'a str, payload: Value) -> Self {
        Self {
            kind,
            payload,
            dedupe_key: None,
            max_attempts: None,
            delay: None,
        }
    }
}

/// The most attempts a job may be given when it is enqueued.
pub const MAX_ATTEMPTS: u32 = 100;

fn attempts_column(max_attempts: Option<u32>) -> Option<i32> {
    max_attempts.map(|n| i32::try_from(n.clamp(1, MAX_ATTEMPTS)).unwrap_or(1))
}

fn delay_secs(delay: Option<Duration>) -> f64 {
    delay.map_or(0.0, |d| d.as_secs_f64())
}

/// Enqueues a job of the transaction's tenant; it commits (and wakes the runners) with the
/// transaction, or not at all. Returns its id, or `None` when its dedupe key is already queued or
/// running.
pub async fn enqueue(tx: &mut TenantTx, job: &NewJob<'_>) -> StoreResult<Option<Uuid>> {
    let tenant = tx.tenant();
    Ok(sqlx::query_scalar(
        "INSERT INTO jobs (id, tenant_id, kind, payload, dedupe_key, max_attempts, budget, run_at) \
         VALUES ($1, $2, $3, $4, $5, coalesce($6, 8), coalesce($6, 8), \
                 now() + make_interval(secs => $7)) \
         ON CONFLICT (tenant_id, kind, dedupe_key) \
             WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running') \
             DO NOTHING \
         RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(tenant.as_uuid())
    .bind(job.kind)
    .bind(&job.payload)
    .bind(job.dedupe_key)
    .bind(attempts_column(job.max_attempts))
    .bind(delay_secs(job.delay))
    .fetch_optional(tx.connection())
    .await?)
}

/// Enqueues a platform job (no tenant), through `jobs_enqueue_platform`. `None` when deduplicated.
pub async fn enqueue_platform(store: &Store, job: &NewJob<'_>) -> StoreResult<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT jobs_enqueue_platform($1, $2, $3, $4, $5, $6) AS id")
            .bind(Uuid::new_v4())
            .bind(job.kind)
            .bind(&job.payload)
            .bind(job.dedupe_key)
            .bind(attempts_column(job.max_attempts))
            .bind(delay_secs(job.delay))
            .fetch_one(store.pool())
            .await?,
    )
}

/// A job a worker claimed: its lease is the worker's for `attempt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: Uuid,
    /// `None` for a platform job.
    pub tenant: Option<TenantId>,
    pub kind: String,
    pub payload: Value,
    /// 1 for the first run; the lease's epoch. Counted on across retries by hand.
    pub attempt: u32,
    pub max_attempts: u32,
    /// The attempts each run of it is given (at enqueue, and again by each retry by hand).
    pub budget: u32,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn attempt_column(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

/// A row of `jobs_claim`: id, tenant, kind, payload, attempts, max_attempts, budget.
type ClaimedRow = (Uuid, Option<Uuid>, String, Value, i32, i32, i32);

/// Claims up to `limit` due jobs for `worker`, leased for `lease`, fair across tenants (see the
/// `jobs_claim` function).
pub async fn claim(
    store: &Store,
    worker: &str,
    limit: usize,
    lease: Duration,
) -> StoreResult<Vec<Claimed>> {
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "SELECT id, tenant_id, kind, payload, attempts, max_attempts, budget \
           FROM jobs_claim($1, $2, $3)",
    )
    .bind(worker)
    .bind(i32::try_from(limit).unwrap_or(i32::MAX))
    .bind(secs(lease))
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, tenant, kind, payload, attempts, max_attempts, budget)| Claimed {
                id,
                tenant: tenant.map(TenantId::from_uuid),
                kind,
                payload,
                attempt: u32::try_from(attempts).unwrap_or(0),
                max_attempts: u32::try_from(max_attempts).unwrap_or(0),
                budget: u32::try_from(budget).unwrap_or(0),
            },
        )
        .collect())
}

/// Renews the lease for another `lease`; false when it is no longer `worker`'s for `attempt`.
pub async fn extend(
    store: &Store,
    worker: &str,
    id: Uuid,
    attempt: u32,
    lease: Duration,
) -> StoreResult<bool> {
    Ok(sqlx::query_scalar("SELECT jobs_extend($1, $2, $3, $4)")
        .bind(id)
        .bind(worker)
        .bind(attempt_column(attempt))
        .bind(secs(lease))
        .fetch_one(store.pool())
        .await?)
}

/// Marks the job succeeded; false when its lease is no longer `worker`'s for `attempt`.
pub async fn complete(store: &Store, worker: &str, id: Uuid, attempt: u32) -> StoreResult<bool> {
    Ok(sqlx::query_scalar("SELECT jobs_complete($1, $2, $3)")
        .bind(id)
        .bind(worker)
        .bind(attempt_column(attempt))
        .fetch_one(store.pool())
        .await?)
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Queued again for a later attempt.
    Requeued,
    /// Failed for good (a permanent error, or no attempts left).
    Final,
}

/// Records a failed attempt with our own short `error`: queued again after `retry_after`, or
/// failed for good when that is `None` or no attempts are left. `None` when the lease is no
/// longer `worker`'s for `attempt` (nothing was recorded).
pub async fn fail(
    store: &Store,
    worker: &str,
    id: Uuid,
    attempt: u32,
    error: &str,
    retry_after: Option<Duration>,
) -> StoreResult<Option<Failed>> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT jobs_fail($1, $2, $3, $4, $5) AS status")
            .bind(id)
            .bind(worker)
            .bind(attempt_column(attempt))
            .bind(error)
            .bind(retry_after.map(secs))
            .fetch_one(store.pool())
            .await?;
    Ok(status.map(|s| {
        if s == JobStatus::Queued.as_str() {
            Failed::Requeued
        } else {
            Failed::Final
        }
    }))
}

/// The channel the `jobs` triggers notify when a job becomes due now.
pub const CHANNEL: &str = "konstruct_jobs";

/// A connection listening on [`CHANNEL`]: each notice means a job was queued (its payload is the
/// kind). A dropped connection reconnects on the next receive.
pub async fn listener(store: &Store) -> StoreResult<PgListener> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// How long until the runners should look again: the earliest due time of a queued job or lease
/// end of a running one, over every tenant (zero when already due); `None` when nothing waits.
/// Measured by the database's clock, like the due times themselves.
pub async fn next_due_in(store: &Store) -> StoreResult<Option<Duration>> {
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM (due - clock_timestamp()))::float8 FROM jobs_next_due() AS due",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(secs.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)))
}

/// A job as its tenant sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    pub fn status(&self) -> StoreResult<JobStatus> {
        JobStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown job status {}", self.status).into(),
            ))
        })
    }
}

const COLUMNS: &str =
    "id, kind, status, attempts, max_attempts, run_at, last_error, created_at, finished_at";

/// The transaction's tenant's jobs, newest first, optionally of one status and kind, with the
/// total across pages.
pub async fn list(
    tx: &mut TenantTx,
    status: Option<JobStatus>,
    kind: Option<&str>,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<JobRow>, i64)> {
    let filter = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2)";
    let status = status.map(JobStatus::as_str);
    let rows = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE {filter} \
          ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    )))
    .bind(status)
    .bind(kind)
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM jobs WHERE {filter}"
    )))
    .bind(status)
    .bind(kind)
    .fetch_one(tx.connection())
    .await?;
    Ok((rows, total))
}

/// One job of the transaction's tenant.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> StoreResult<Option<JobRow>> {
    Ok(sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(tx.connection())
    .await?)
}

/// The result of [`requeue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// Queued again to run at once, with as many attempts ahead of it as it had at first.
    Queued(JobRow),
    /// The job is in this status, which cannot be queued again (only failed or cancelled can).
    NotRetryable(JobStatus),
    NotFound,
}

/// Queues a failed or cancelled job of the transaction's tenant again, to run at once with as
/// many attempts ahead of it as it was first given; its last error stays until the next attempt.
/// Attempts are counted on, not reset: the attempt number is the lease's epoch, so a run from
/// before the retry (whose lease lapsed, on this very node perhaps) can never record its result
/// as one after it. `Conflict` when an equivalent job (same kind and dedupe key) is queued or
/// running already.
pub async fn requeue(tx: &mut TenantTx, id: Uuid) -> StoreResult<Requeue> {
    let row = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET status = 'queued', max_attempts = attempts + budget, \
                run_at = now(), finished_at = NULL, updated_at = now() \
          WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(tx.connection())
    .await?;
    if let Some(row) = row {
        return Ok(Requeue::Queued(row));
    }
    Ok(match get(tx, id).await? {
        Some(row) => Requeue::NotRetryable(row.status()?),
        None => Requeue::NotFound,
    })
}
