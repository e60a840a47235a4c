//! Accounts (global) and their memberships (tenant-owned, read across tenants only through the
//! `user_memberships` function).

use serde::{Deserialize, Serialize};
use shared::TenantId;
use shared::auth::TenantRole;
use shared::resources::TenantStatus;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, TenantTx};

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Disabled,
}

shared::text_enum!(UserStatus { Active => "active", Disabled => "disabled" });

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_platform_admin: bool,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    pub auth_version: i32,
}

/// An account with its password hash, for sign-in only.
#[derive(Clone, sqlx::FromRow)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    pub auth_version: i32,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One membership of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRow {
    pub tenant: TenantId,
    pub role: TenantRole,
    pub tenant_slug: String,
    pub tenant_name: String,
    pub tenant_status: TenantStatus,
}

const USER_COLUMNS: &str = "id, email, display_name, is_platform_admin, status, auth_version";

/// Normalises an email for storage and lookup.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub async fn credentials_by_email(store: &Store, email: &str) -> StoreResult<Option<Credentials>> {
    Ok(sqlx::query_as::<_, Credentials>(
        "SELECT id, password_hash, status, auth_version FROM users WHERE email = $1",
    )
    .bind(normalise_email(email))
    .fetch_optional(store.pool())
    .await?)
}

pub async fn get(store: &Store, id: Uuid) -> StoreResult<Option<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(store.pool())
    .await?)
}

pub async fn get_by_email(store: &Store, email: &str) -> StoreResult<Option<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
    )))
    .bind(normalise_email(email))
    .fetch_optional(store.pool())
    .await?)
}

/// The user's memberships in every tenant, through the narrow `user_memberships` function.
pub async fn memberships(store: &Store, user: Uuid) -> StoreResult<Vec<MembershipRow>> {
    let rows: Vec<(Uuid, String, String, String, String)> = sqlx::query_as(
        "SELECT tenant_id, role, tenant_slug, tenant_name, tenant_status FROM user_memberships($1)",
    )
    .bind(user)
    .fetch_all(store.pool())
    .await?;
    rows.into_iter()
        .map(|(tenant, role, slug, name, status)| {
            let role = TenantRole::parse(&role).ok_or_else(|| {
                StoreError::Invalid(format!("unknown role {role} in tenant_members"))
            })?;
            Ok(MembershipRow {
                tenant: TenantId::from_uuid(tenant),
                role,
                tenant_slug: slug,
                tenant_name: name,
                tenant_status: TenantStatus::try_from(status)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            })
        })
        .collect()
}

/// Creates an account. `password_hash` is an argon2 PHC string (never a password).
pub async fn create(
    store: &Store,
    email: &str,
    display_name: &str,
    password_hash: &str,
    platform_admin: bool,
) -> StoreResult<UserRow> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, email, display_name, password_hash, is_platform_admin) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(normalise_email(email))
    .bind(display_name.trim())
    .bind(password_hash)
    .bind(platform_admin)
    .fetch_one(store.pool())
    .await?)
}

/// Like `create`, inside a tenant's transaction, so the account and its membership are made
/// together or not at all. (`users` is global, not under row-level security.)
pub async fn create_in(
    tx: &mut TenantTx,
    email: &str,
    display_name: &str,
    password_hash: &str,
) -> StoreResult<UserRow> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, email, display_name, password_hash, is_platform_admin) \
         VALUES ($1, $2, $3, $4, false) RETURNING {USER_COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(normalise_email(email))
    .bind(display_name.trim())
    .bind(password_hash)
    .fetch_one(tx.connection())
    .await?)
}

/// Notes a sign-in of the account now (shown as "last sign-in" to its tenants' admins).
pub async fn record_sign_in(store: &Store, id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE users SET last_sign_in_at = now() WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Sets an account's password (an argon2 PHC string) and moves its `auth_version` on, so every
/// session issued before ends; returns the new version.
pub async fn set_password(store: &Store, id: Uuid, password_hash: &str) -> StoreResult<i32> {
    sqlx::query_scalar(
        "UPDATE users SET password_hash = $2, auth_version = auth_version + 1, updated_at = now() \
          WHERE id = $1 RETURNING auth_version",
    )
    .bind(id)
    .bind(password_hash)
    .fetch_optional(store.pool())
    .await?
    .ok_or(StoreError::NotFound)
}

/// An account's password hash, to check its current password.
pub async fn password_hash(store: &Store, id: Uuid) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(store.pool())
            .await?
            .flatten(),
    )
}

/// Whether any platform admin exists.
pub async fn platform_admin_exists(store: &Store) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE is_platform_admin)")
            .fetch_one(store.pool())
            .await?,
    )
}

/// Deletes an account everywhere (its memberships go with it).
pub async fn delete(store: &Store, id: Uuid) -> StoreResult<()> {
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A tenant's members, with their accounts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: TenantRole,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_sign_in_at: Option<chrono::DateTime<chrono::Utc>>,
}

const MEMBER_SELECT: &str = "SELECT m.user_id, u.email, u.display_name, m.role, m.created_at, \
                                    u.last_sign_in_at \
                             FROM tenant_members m JOIN users u ON u.id = m.user_id";

pub async fn list_members(
    tx: &mut TenantTx,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<MemberRow>, i64)> {
    let rows = sqlx::query_as::<_, MemberRow>(sqlx::AssertSqlSafe(format!(
        "{MEMBER_SELECT} ORDER BY u.email LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_members")
        .fetch_one(tx.connection())
        .await?;
    Ok((rows, total))
}

pub async fn get_member(tx: &mut TenantTx, user: Uuid) -> StoreResult<Option<MemberRow>> {
    Ok(sqlx::query_as::<_, MemberRow>(sqlx::AssertSqlSafe(format!(
        "{MEMBER_SELECT} WHERE m.user_id = $1"
    )))
    .bind(user)
    .fetch_optional(tx.connection())
    .await?)
}

pub async fn add_member(tx: &mut TenantTx, user: Uuid, role: TenantRole) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query("INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(tenant.as_uuid())
        .bind(user)
        .bind(role.as_str())
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// Changes a member's role; false when the user is not a member.
pub async fn set_member_role(tx: &mut TenantTx, user: Uuid, role: TenantRole) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE tenant_members SET role = $2 WHERE user_id = $1")
        .bind(user)
        .bind(role.as_str())
        .execute(tx.connection())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a member; false when the user is not a member.
pub async fn remove_member(tx: &mut TenantTx, user: Uuid) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM tenant_members WHERE user_id = $1")
        .bind(user)
        .execute(tx.connection())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Serialises membership changes within the tenant until the transaction ends, so two admins
/// demoting each other at once cannot both pass the last-admin check.
pub async fn lock_members(tx: &mut TenantTx) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('konstruct.members:' || $1, 0))")
        .bind(tenant.to_string())
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// How many customer admins the tenant has (the last one cannot be demoted or removed).
pub async fn count_admins(tx: &mut TenantTx) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM tenant_members WHERE role = 'customer_admin'")
            .fetch_one(tx.connection())
            .await?,
    )
}
