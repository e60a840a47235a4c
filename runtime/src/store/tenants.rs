//! Tenant rows. A tenant's own row is visible only inside a transaction bound to it; the platform
//! admin's list goes through the `platform_list_tenants` function.

use chrono::{DateTime, Utc};
use shared::TenantId;
use shared::resources::TenantStatus;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, TenantTx};

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, slug, name, status, created_at, updated_at";

/// Creates a tenant with a fresh id inside a transaction bound to that id, so the row-level
/// security policy's `WITH CHECK` accepts it like any other tenant-scoped write. The caller
/// commits (and may add its audit event first).
pub async fn create(store: &Store, slug: &str, name: &str) -> StoreResult<(TenantRow, TenantTx)> {
    let id = TenantId::from_uuid(Uuid::new_v4());
    let mut tx = store.tenant_tx(id).await?;
    let row = sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    )))
    .bind(id.as_uuid())
    .bind(slug)
    .bind(name)
    .fetch_one(tx.connection())
    .await?;
    Ok((row, tx))
}

/// The tenant the transaction is bound to, if it exists.
pub async fn current(tx: &mut TenantTx) -> StoreResult<Option<TenantRow>> {
    let id = tx.tenant();
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenants WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(tx.connection())
    .await?)
}

/// Updates the transaction's tenant; `None` fields stay as they are.
pub async fn update(
    tx: &mut TenantTx,
    name: Option<&str>,
    slug: Option<&str>,
    status: Option<TenantStatus>,
) -> StoreResult<Option<TenantRow>> {
    let id = tx.tenant();
    if status.is_some() {
        tx.channels_changed();
    }
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET name = coalesce($2, name), slug = coalesce($3, slug), \
                status = coalesce($4, status), updated_at = now() \
          WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id.as_uuid())
    .bind(name)
    .bind(slug)
    .bind(status.map(TenantStatus::as_str))
    .fetch_optional(tx.connection())
    .await?)
}

/// Deletes the transaction's tenant and, by cascade, its members, agents, channels,
/// conversations and messages. Its audit trail stays.
pub async fn delete(tx: &mut TenantTx) -> StoreResult<bool> {
    tx.channels_changed();
    let id = tx.tenant();
    let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(id.as_uuid())
        .execute(tx.connection())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A row of `platform_list_tenants`: the tenant and the total across pages.
type ListedTenant = (
    TenantId,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
);

/// Every tenant, newest first, optionally filtered by a search on name and slug. For platform
/// admins only: the caller checks.
pub async fn list_all(
    store: &Store,
    search: Option<&str>,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<TenantRow>, i64)> {
    let rows: Vec<ListedTenant> = sqlx::query_as(
        "SELECT id, slug, name, status, created_at, updated_at, total \
               FROM platform_list_tenants($1, $2, $3)",
    )
    .bind(search)
    .bind(i32::try_from(limit).unwrap_or(i32::MAX))
    .bind(i32::try_from(offset).unwrap_or(i32::MAX))
    .fetch_all(store.pool())
    .await?;
    let total = match rows.first() {
        Some(row) => row.6,
        // An empty page past the end still needs the total.
        None if offset > 0 => {
            sqlx::query_scalar(
                "SELECT coalesce(max(total), 0) FROM platform_list_tenants($1, 1, 0)",
            )
            .bind(search)
            .fetch_one(store.pool())
            .await?
        }
        None => 0,
    };
    let rows = rows
        .into_iter()
        .map(|(id, slug, name, status, created_at, updated_at, _)| {
            Ok(TenantRow {
                id,
                slug,
                name,
                status: TenantStatus::try_from(status)
                    .map_err(|e| StoreError::Config(e.to_string()))?,
                created_at,
                updated_at,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((rows, total))
}

/// A tenant's own rate limits, `(per_minute, burst)`; `None` where the platform default applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnLimits {
    pub tenant: Option<(u32, u32)>,
    pub per_connection: Option<(u32, u32)>,
}

type LimitColumns = (Option<i32>, Option<i32>, Option<i32>, Option<i32>);

fn own_limits((rate, burst, c_rate, c_burst): LimitColumns) -> OwnLimits {
    let pair = |a: Option<i32>, b: Option<i32>| match (a, b) {
        (Some(a), Some(b)) => Some((u32::try_from(a).ok()?, u32::try_from(b).ok()?)),
        _ => None,
    };
    OwnLimits {
        tenant: pair(rate, burst),
        per_connection: pair(c_rate, c_burst),
    }
}

/// The transaction's tenant's own rate limits; `None` if the tenant does not exist.
pub async fn limits(tx: &mut TenantTx) -> StoreResult<Option<OwnLimits>> {
    let id = tx.tenant();
    let row: Option<LimitColumns> = sqlx::query_as(
        "SELECT rate_per_minute, rate_burst, connection_rate_per_minute, connection_rate_burst \
           FROM tenants WHERE id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(tx.connection())
    .await?;
    Ok(row.map(own_limits))
}

/// Replaces the transaction's tenant's own rate limits; `None` if the tenant does not exist.
pub async fn set_limits(tx: &mut TenantTx, limits: OwnLimits) -> StoreResult<Option<OwnLimits>> {
    let id = tx.tenant();
    let int = |v: Option<(u32, u32)>, second: bool| {
        v.and_then(|(a, b)| i32::try_from(if second { b } else { a }).ok())
    };
    let row: Option<LimitColumns> = sqlx::query_as(
        "UPDATE tenants SET rate_per_minute = $2, rate_burst = $3, \
                connection_rate_per_minute = $4, connection_rate_burst = $5, updated_at = now() \
          WHERE id = $1 \
          RETURNING rate_per_minute, rate_burst, connection_rate_per_minute, connection_rate_burst",
    )
    .bind(id.as_uuid())
    .bind(int(limits.tenant, false))
    .bind(int(limits.tenant, true))
    .bind(int(limits.per_connection, false))
    .bind(int(limits.per_connection, true))
    .fetch_optional(tx.connection())
    .await?;
    Ok(row.map(own_limits))
}

/// A tenant's calendar and language.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantSettingsRow {
    /// An IANA zone name (validated by the runtime before it is stored).
    pub time_zone: String,
    pub locale: String,
}

/// The transaction's tenant's settings; `None` if the tenant does not exist.
pub async fn settings(tx: &mut TenantTx) -> StoreResult<Option<TenantSettingsRow>> {
    let id = tx.tenant();
    Ok(sqlx::query_as::<_, TenantSettingsRow>(
        "SELECT time_zone, locale FROM tenants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(tx.connection())
    .await?)
}

/// The transaction's tenant's calendar: its time zone, UTC if it has none (or an unknown one).
pub async fn zone(tx: &mut TenantTx) -> StoreResult<crate::time::TenantZone> {
    Ok(settings(tx)
        .await?
        .and_then(|s| crate::time::TenantZone::parse(&s.time_zone))
        .unwrap_or_default())
}

/// Replaces the transaction's tenant's settings; `None` if the tenant does not exist.
pub async fn set_settings(
    tx: &mut TenantTx,
    settings: &TenantSettingsRow,
) -> StoreResult<Option<TenantSettingsRow>> {
    let id = tx.tenant();
    Ok(sqlx::query_as::<_, TenantSettingsRow>(
        "UPDATE tenants SET time_zone = $2, locale = $3, updated_at = now() WHERE id = $1 \
         RETURNING time_zone, locale",
    )
    .bind(id)
    .bind(&settings.time_zone)
    .bind(&settings.locale)
    .fetch_optional(tx.connection())
    .await?)
}
