//! Invitations (tenant-owned; found across tenants only by a token's hash, through
//! `invitation_tenant`) and password resets (global, as accounts are).

use chrono::{DateTime, Utc};
use shared::TenantId;
use shared::auth::TenantRole;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, TenantTx};

/// An invitation as stored, with its inviter's name and its current mail job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvitationRow {
    pub id: Uuid,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: TenantRole,
    /// `pending`, `accepted` or `revoked` (expiry is read off `expires_at`).
    pub status: String,
    pub generation: i32,
    pub token_hash: Vec<u8>,
    pub invited_by: Option<Uuid>,
    pub inviter: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub mail_job_id: Option<Uuid>,
    pub job_status: Option<String>,
    pub job_attempts: Option<i32>,
    pub job_last_error: Option<String>,
    pub job_run_at: Option<DateTime<Utc>>,
}

const INVITATION_SELECT: &str = "SELECT i.id, i.email, i.role, i.status, i.generation, \
        i.token_hash, i.invited_by, \
        nullif(coalesce(nullif(u.display_name, ''), u.email), '') AS inviter, \
        i.created_at, i.expires_at, i.sent_at, i.mail_job_id, \
        j.status AS job_status, j.attempts AS job_attempts, j.last_error AS job_last_error, \
        j.run_at AS job_run_at \
   FROM invitations i \
   LEFT JOIN users u ON u.id = i.invited_by \
   LEFT JOIN jobs j ON j.id = i.mail_job_id";

/// A new invitation.
#[derive(Debug, Clone)]
pub struct NewInvitation<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub role: TenantRole,
    pub token_hash: &'a [u8],
    pub invited_by: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

/// Stores an invitation (generation 1). `Conflict` when one is already pending for the address.
pub async fn create(tx: &mut TenantTx, new: &NewInvitation<'_>) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO invitations (id, tenant_id, email, role, token_hash, invited_by, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new.id)
    .bind(tenant.as_uuid())
    .bind(super::users::normalise_email(new.email))
    .bind(new.role.as_str())
    .bind(new.token_hash)
    .bind(new.invited_by)
    .bind(new.expires_at)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Notes the job that mails the invitation's current link.
pub async fn set_mail_job(tx: &mut TenantTx, id: Uuid, job: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE invitations SET mail_job_id = $2 WHERE id = $1")
        .bind(id)
        .bind(job)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// The tenant's open invitations (pending, expired or not), newest first, and their count.
pub async fn list_pending(
    tx: &mut TenantTx,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<InvitationRow>, i64)> {
    let rows = sqlx::query_as::<_, InvitationRow>(sqlx::AssertSqlSafe(format!(
        "{INVITATION_SELECT} WHERE i.status = 'pending' \
         ORDER BY i.created_at DESC, i.id DESC LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM invitations WHERE status = 'pending'")
        .fetch_one(tx.connection())
        .await?;
    Ok((rows, total))
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> StoreResult<Option<InvitationRow>> {
    Ok(
        sqlx::query_as::<_, InvitationRow>(sqlx::AssertSqlSafe(format!(
            "{INVITATION_SELECT} WHERE i.id = $1"
        )))
        .bind(id)
        .fetch_optional(tx.connection())
        .await?,
    )
}

/// The invitation a token's hash names, locked until the transaction ends.
pub async fn by_token(tx: &mut TenantTx, hash: &[u8]) -> StoreResult<Option<InvitationRow>> {
    let id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM invitations WHERE token_hash = $1 FOR UPDATE")
            .bind(hash)
            .fetch_optional(tx.connection())
            .await?;
    match id {
        Some(id) => get(tx, id).await,
        None => Ok(None),
    }
}

/// The tenant of the invitation a token's hash names: the one path across tenants.
pub async fn tenant_of_token(store: &Store, hash: &[u8]) -> StoreResult<Option<TenantId>> {
    let tenant: Option<Uuid> = sqlx::query_scalar("SELECT invitation_tenant($1)")
        .bind(hash)
        .fetch_one(store.pool())
        .await?;
    Ok(tenant.map(TenantId::from_uuid))
}

/// Gives a pending invitation a new link (the next generation, whose token hashes to
/// `new_hash`, which the caller made for `generation + 1`) and a new expiry; the mail is to be
/// sent again. `None` when it is not pending (or is gone).
pub async fn renew(
    tx: &mut TenantTx,
    id: Uuid,
    generation: i32,
    new_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE invitations SET generation = generation + 1, token_hash = $3, expires_at = $4, \
                sent_at = NULL, mail_job_id = NULL \
          WHERE id = $1 AND generation = $2 AND status = 'pending'",
    )
    .bind(id)
    .bind(generation)
    .bind(new_hash)
    .bind(expires_at)
    .execute(tx.connection())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes a pending invitation; false when it is not pending.
pub async fn revoke(tx: &mut TenantTx, id: Uuid) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE invitations SET status = 'revoked', revoked_at = now() \
          WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(tx.connection())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a pending, unexpired invitation accepted by `user`; false when it no longer is.
pub async fn accept(tx: &mut TenantTx, id: Uuid, user: Uuid) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE invitations SET status = 'accepted', accepted_at = now(), accepted_by = $2 \
          WHERE id = $1 AND status = 'pending' AND expires_at > now()",
    )
    .bind(id)
    .bind(user)
    .execute(tx.connection())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that the mail server took generation `generation`'s mail.
pub async fn mark_sent(tx: &mut TenantTx, id: Uuid, generation: i32) -> StoreResult<()> {
    sqlx::query("UPDATE invitations SET sent_at = now() WHERE id = $1 AND generation = $2")
        .bind(id)
        .bind(generation)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// Whether an invitation to this email is pending in the transaction's tenant (expired or not).
pub async fn is_pending_email(tx: &mut TenantTx, email: &str) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM invitations WHERE email = $1 AND status = 'pending')",
    )
    .bind(super::users::normalise_email(email))
    .fetch_one(tx.connection())
    .await?)
}

/// Whether an account with this email is a member of the transaction's tenant.
pub async fn is_member_email(tx: &mut TenantTx, email: &str) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tenant_members m JOIN users u ON u.id = m.user_id \
                         WHERE u.email = $1)",
    )
    .bind(super::users::normalise_email(email))
    .fetch_one(tx.connection())
    .await?)
}

/// A password reset, with its account's email.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ResetRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

const RESET_SELECT: &str = "SELECT r.id, r.user_id, u.email, r.token_hash, r.expires_at, r.used_at \
                              FROM password_resets r JOIN users u ON u.id = r.user_id";

/// Stores a reset of `user`'s password.
pub async fn create_reset(
    store: &Store,
    id: Uuid,
    user: Uuid,
    hash: &[u8],
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO password_resets (id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(user)
    .bind(hash)
    .bind(expires_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Deletes a reset whose mail could not be queued.
pub async fn delete_reset(store: &Store, id: Uuid) -> StoreResult<()> {
    sqlx::query("DELETE FROM password_resets WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

pub async fn reset(store: &Store, id: Uuid) -> StoreResult<Option<ResetRow>> {
    Ok(sqlx::query_as::<_, ResetRow>(sqlx::AssertSqlSafe(format!(
        "{RESET_SELECT} WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(store.pool())
    .await?)
}

pub async fn reset_by_token(store: &Store, hash: &[u8]) -> StoreResult<Option<ResetRow>> {
    Ok(sqlx::query_as::<_, ResetRow>(sqlx::AssertSqlSafe(format!(
        "{RESET_SELECT} WHERE r.token_hash = $1"
    )))
    .bind(hash)
    .fetch_optional(store.pool())
    .await?)
}

/// Records that the mail server took a reset's mail.
pub async fn mark_reset_sent(store: &Store, id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE password_resets SET sent_at = now() WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Uses a reset: in one transaction, the reset (if still unused and unexpired) is spent, the
/// account gets `password_hash` and a new `auth_version` (every session of it ends), and every
/// other open reset of the account is spent too. Returns the account, or `None` when the reset
/// can no longer be used.
pub async fn use_reset(store: &Store, id: Uuid, password_hash: &str) -> StoreResult<Option<Uuid>> {
    let mut tx = store.pool().begin().await?;
    let user: Option<Uuid> = sqlx::query_scalar(
        "UPDATE password_resets SET used_at = now() \
          WHERE id = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(user) = user else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE users SET password_hash = $2, auth_version = auth_version + 1, updated_at = now() \
          WHERE id = $1",
    )
    .bind(user)
    .bind(password_hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Some(user))
}
