//! Partition fences: the epoch of each ingest partition's current lease, kept in Postgres so the
//! commit of a turn's result can check that its node still holds the partition.
//!
//! A node that takes a partition advances its epoch (waiting for transactions that hold the old
//! epoch to finish); every transaction that commits a turn's result locks the row `FOR SHARE` and
//! compares the epoch it was handed with. Once another node has advanced the fence, the old
//! owner's commits fail with `StoreError::Fenced`.

use super::{Store, StoreError, StoreResult, TenantTx};

/// Takes the next epoch of `partition` for `node`; returns it.
pub async fn advance(store: &Store, partition: u32, node: &str) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO partition_fences (partition, epoch, node) VALUES ($1, 1, $2) \
         ON CONFLICT (partition) DO UPDATE \
             SET epoch = partition_fences.epoch + 1, node = EXCLUDED.node, updated_at = now() \
         RETURNING epoch",
    )
    .bind(i32::try_from(partition).unwrap_or(i32::MAX))
    .bind(node)
    .fetch_one(store.pool())
    .await?)
}

/// Fails with `Fenced` unless `partition` is still at `epoch`; holds the row until the
/// transaction ends, so the fence cannot move before this transaction commits.
pub async fn hold(tx: &mut TenantTx, partition: u32, epoch: i64) -> StoreResult<()> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM partition_fences WHERE partition = $1 FOR SHARE")
            .bind(i32::try_from(partition).unwrap_or(i32::MAX))
            .fetch_optional(tx.connection())
            .await?;
    if current == Some(epoch) {
        Ok(())
    } else {
        Err(StoreError::Fenced)
    }
}
