//! `tenant.purge_redis`: deletes a deleted tenant's Redis keys (conversation windows, dedupe
//! keys, parked messages, counters), everything under `{prefix}:{tenant}:`. Enqueued in the
//! transaction that deletes the tenant, so the purge cannot be forgotten, and retried while Redis
//! is down. Deleting keys that are already gone is harmless, so running it again is too.

use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::{Job, JobContext, JobError, JobHandler};
use crate::store::jobs::{self as store_jobs, NewJob};
use crate::store::{StoreResult, TenantTx};

/// The job's kind.
pub const KIND: &str = "tenant.purge_redis";

/// Enqueues the purge of the transaction's tenant's Redis keys, inside that transaction. The
/// payload is empty: the job's tenant is the one to purge.
pub async fn enqueue(tx: &mut TenantTx) -> StoreResult<Option<Uuid>> {
    store_jobs::enqueue(tx, &NewJob::new(KIND, serde_json::json!({}))).await
}

/// Deletes the job's tenant's keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurgeRedis;

impl JobHandler for PurgeRedis {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let tenant = job
                .tenant
                .ok_or_else(|| JobError::permanent("the job names no tenant to purge"))?;
            let pattern = ctx.redis.key(&format!("{tenant}:*"));
            match ctx.redis.delete_matching(&pattern).await {
                Ok(n) => {
                    tracing::info!(tenant.id = %tenant, redis.keys = n, "deleted the tenant's Redis keys");
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, error = %e, "could not delete the tenant's Redis keys");
                    Err(JobError::retry(
                        "Redis could not be reached to delete the tenant's keys",
                    ))
                }
            }
        })
    }
}
