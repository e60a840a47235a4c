//! Tenant rows. A tenant's own row is visible only inside a transaction bound to it.

use chrono::{DateTime, Utc};
use shared::TenantId;
use uuid::Uuid;

use super::{Store, StoreResult, TenantTx};

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Creates a tenant with a fresh id. The insert runs in a transaction bound to the new id, so the
/// row-level security policy's `WITH CHECK` accepts it like any other tenant-scoped write.
pub async fn create(store: &Store, slug: &str, name: &str) -> StoreResult<TenantRow> {
    let id = TenantId::from_uuid(Uuid::new_v4());
    let mut tx = store.tenant_tx(id).await?;
    let row = sqlx::query_as::<_, TenantRow>(
        "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) \
         RETURNING id, slug, name, status, created_at",
    )
    .bind(id.as_uuid())
    .bind(slug)
    .bind(name)
    .fetch_one(tx.connection())
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The tenant the transaction is bound to.
pub async fn current(tx: &mut TenantTx) -> StoreResult<TenantRow> {
    let id = tx.tenant();
    Ok(sqlx::query_as::<_, TenantRow>(
        "SELECT id, slug, name, status, created_at FROM tenants WHERE id = $1",
    )
    .bind(id.as_uuid())
    .fetch_one(tx.connection())
    .await?)
}
