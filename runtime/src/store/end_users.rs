//! End users: the people who talk to a tenant's agents through a channel (a Slack user, a
//! WhatsApp number, a portal user in the test chat). Created on their first message; the id that
//! memory, forgetting and the human inbox refer to.

use chrono::{DateTime, Utc};
use shared::EndUserId;
use shared::channel::ChannelKind;
use uuid::Uuid;

use super::{StoreResult, TenantTx};

/// Who wrote an inbound message, as the channel names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndUserKey<'a> {
    pub channel: ChannelKind,
    /// Unique per tenant within the channel kind (see `shared::channel::Sender::id`).
    pub external_id: &'a str,
    pub display_name: Option<&'a str>,
}

/// Whether someone is known as an end user on `channel` (has ever written to an agent).
pub async fn exists(
    tx: &mut TenantTx,
    channel: shared::channel::ChannelKind,
    external_id: &str,
) -> StoreResult<bool> {
    Ok(sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM end_users WHERE channel = $1 AND external_id = $2",
    )
    .bind(channel.as_str())
    .bind(external_id)
    .fetch_optional(tx.connection())
    .await?
    .is_some())
}

/// The end user behind `key`, created on their first message. Reads first and writes only for a
/// newcomer: an existing end user is not locked here, so one person writing in many
/// conversations at once does not serialise them (`seen` moves their last sighting on later).
/// Sightings only move forward: a transaction that began before the row was made (its `now()`
/// is earlier) must not set the last sighting before the first.
pub async fn find_or_create(tx: &mut TenantTx, key: EndUserKey<'_>) -> StoreResult<EndUserId> {
    let found: Option<EndUserId> =
        sqlx::query_scalar("SELECT id FROM end_users WHERE channel = $1 AND external_id = $2")
            .bind(key.channel.as_str())
            .bind(key.external_id)
            .fetch_optional(tx.connection())
            .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    let tenant = tx.tenant();
    Ok(sqlx::query_scalar(
        "INSERT INTO end_users (id, tenant_id, channel, external_id, display_name) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, channel, external_id) \
             DO UPDATE SET last_seen_at = greatest(end_users.last_seen_at, EXCLUDED.last_seen_at) \
         RETURNING id",
    )
    .bind(EndUserId::from_uuid(Uuid::new_v4()))
    .bind(tenant)
    .bind(key.channel.as_str())
    .bind(key.external_id)
    .bind(key.display_name)
    .fetch_one(tx.connection())
    .await?)
}

/// How stale an end user's last sighting may get before a message moves it on: writing it on
/// every message would make one busy person's row the hottest in the database.
const SEEN_PRECISION_SECS: i32 = 60;

/// Moves the end user's last sighting on (and takes the newest display name the channel gave),
/// when it is older than a minute or the name changed. Called as the last step of the message's
/// transaction, so the row is locked only briefly, and only when it needs writing.
pub async fn seen(tx: &mut TenantTx, id: EndUserId, display_name: Option<&str>) -> StoreResult<()> {
    sqlx::query(
        "UPDATE end_users SET last_seen_at = greatest(last_seen_at, now()), \
                display_name = coalesce($2, display_name) \
          WHERE id = $1 \
            AND (last_seen_at < now() - make_interval(secs => $3) \
                 OR ($2 IS NOT NULL AND display_name IS DISTINCT FROM $2))",
    )
    .bind(id)
    .bind(display_name)
    .bind(SEEN_PRECISION_SECS)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// An end user as stored, with how many conversations they had.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EndUserRow {
    pub id: EndUserId,
    #[sqlx(try_from = "String")]
    pub channel: ChannelKind,
    pub external_id: String,
    pub display_name: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub conversations: i64,
}

const SELECT: &str = "SELECT u.id, u.channel, u.external_id, u.display_name, u.first_seen_at, \
                             u.last_seen_at, \
                             (SELECT count(*) FROM conversations c WHERE c.end_user_id = u.id) \
                               AS conversations \
                        FROM end_users u";

/// The tenant's end users, most recently seen first; `search` matches the name or the channel id.
pub async fn list(
    tx: &mut TenantTx,
    search: Option<&str>,
    channel: Option<ChannelKind>,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<EndUserRow>, i64)> {
    let pattern = search.map(|s| format!("%{}%", escape_like(s)));
    let filter = "WHERE ($1::text IS NULL OR u.display_name ILIKE $1 OR u.external_id ILIKE $1) \
                    AND ($2::text IS NULL OR u.channel = $2)";
    let rows = sqlx::query_as::<_, EndUserRow>(sqlx::AssertSqlSafe(format!(
        "{SELECT} {filter} ORDER BY u.last_seen_at DESC, u.id LIMIT $3 OFFSET $4"
    )))
    .bind(pattern.as_deref())
    .bind(channel.map(ChannelKind::as_str))
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM end_users u {filter}"
    )))
    .bind(pattern.as_deref())
    .bind(channel.map(ChannelKind::as_str))
    .fetch_one(tx.connection())
    .await?;
    Ok((rows, total))
}

/// One end user of the tenant.
pub async fn get(tx: &mut TenantTx, id: EndUserId) -> StoreResult<Option<EndUserRow>> {
    Ok(
        sqlx::query_as::<_, EndUserRow>(sqlx::AssertSqlSafe(format!("{SELECT} WHERE u.id = $1")))
            .bind(id)
            .fetch_optional(tx.connection())
            .await?,
    )
}

/// `%`, `_` and `\` match themselves in a search, not as wildcards.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
