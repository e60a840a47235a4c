//! Channel connections: a Slack workspace, a WhatsApp number or an agent's web test chat, each
//! belonging to one tenant. Secrets are stored sealed (the caller seals and opens).

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::channel::{ChannelKind, ConnectionStatus};
use shared::resources::ChannelHealth;
use shared::{AgentId, ConnectionId};

use super::{StoreError, StoreResult, TenantTx};

/// A connection as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: ConnectionId,
    #[sqlx(try_from = "String")]
    pub kind: ChannelKind,
    pub external_id: String,
    pub display_name: String,
    pub agent_id: Option<AgentId>,
    #[sqlx(try_from = "String")]
    pub status: ConnectionStatus,
    pub settings: Value,
    pub secret_ciphertext: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, kind, external_id, display_name, agent_id, status, settings, \
                       secret_ciphertext, created_at";

/// A connection to create or refresh (a reinstall brings a new token).
#[derive(Debug, Clone)]
pub struct NewConnection<'a> {
    pub id: ConnectionId,
    pub kind: ChannelKind,
    pub external_id: &'a str,
    pub display_name: &'a str,
    pub agent_id: AgentId,
    pub settings: Value,
    pub secret_ciphertext: &'a [u8],
    pub secret_key_version: u32,
}

/// The tenant's connection of `kind` with this external id, if any (active or not).
pub async fn find(
    tx: &mut TenantTx,
    kind: ChannelKind,
    external_id: &str,
) -> StoreResult<Option<ConnectionRow>> {
    Ok(
        sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM channel_connections WHERE kind = $1 AND external_id = $2"
        )))
        .bind(kind.as_str())
        .bind(external_id)
        .fetch_optional(tx.connection())
        .await?,
    )
}

pub async fn get(tx: &mut TenantTx, id: ConnectionId) -> StoreResult<Option<ConnectionRow>> {
    Ok(
        sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM channel_connections WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(tx.connection())
        .await?,
    )
}

/// Creates the connection. `Conflict` when another tenant already connected this external id.
pub async fn insert(tx: &mut TenantTx, c: &NewConnection<'_>) -> StoreResult<ConnectionRow> {
    tx.channels_changed();
    let tenant = tx.tenant();
    let version = i32::try_from(c.secret_key_version).map_err(|_| StoreError::NotFound)?;
    Ok(sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO channel_connections (id, tenant_id, kind, external_id, display_name, agent_id, \
                                          settings, secret_ciphertext, secret_key_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    )))
    .bind(c.id)
    .bind(tenant)
    .bind(c.kind.as_str())
    .bind(c.external_id)
    .bind(c.display_name)
    .bind(c.agent_id)
    .bind(&c.settings)
    .bind(c.secret_ciphertext)
    .bind(version)
    .fetch_one(tx.connection())
    .await?)
}

/// Refreshes an existing connection of the tenant (new token, agent, settings) and activates it.
pub async fn refresh(tx: &mut TenantTx, c: &NewConnection<'_>) -> StoreResult<ConnectionRow> {
    tx.channels_changed();
    let version = i32::try_from(c.secret_key_version).map_err(|_| StoreError::NotFound)?;
    Ok(sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE channel_connections SET display_name = $2, agent_id = $3, settings = $4, \
                secret_ciphertext = $5, secret_key_version = $6, status = 'active', updated_at = now() \
          WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(c.id)
    .bind(c.display_name)
    .bind(c.agent_id)
    .bind(&c.settings)
    .bind(c.secret_ciphertext)
    .bind(version)
    .fetch_one(tx.connection())
    .await?)
}

/// The tenant's connections of one kind, newest first.
pub async fn list(
    tx: &mut TenantTx,
    kind: ChannelKind,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<ConnectionRow>, i64)> {
    let rows = sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM channel_connections WHERE kind = $1 \
          ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    )))
    .bind(kind.as_str())
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM channel_connections WHERE kind = $1")
        .bind(kind.as_str())
        .fetch_one(tx.connection())
        .await?;
    Ok((rows, total))
}

/// Disconnects: the connection stops being answered, its secret is erased and its external id
/// is freed (kept in `settings.team_id`) so the workspace can be connected again, by anyone who
/// holds its token; its conversations stay. `None` when there is no such connection of this kind.
pub async fn disconnect(
    tx: &mut TenantTx,
    id: ConnectionId,
    kind: ChannelKind,
) -> StoreResult<Option<ConnectionRow>> {
    tx.channels_changed();
    Ok(
        sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(format!(
            "UPDATE channel_connections SET status = 'disabled', secret_ciphertext = NULL, \
                secret_key_version = NULL, updated_at = now(), \
                settings = (settings - 'own_app') \
                    || CASE WHEN kind = 'slack' THEN jsonb_build_object('team_id', external_id) \
                            ELSE '{{}}'::jsonb END, \
                external_id = 'disconnected:' || id::text \
          WHERE id = $1 AND kind = $2 AND status IN ('active', 'failed') RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(kind.as_str())
        .fetch_optional(tx.connection())
        .await?,
    )
}

/// Every connection of the tenant, with its sealed secret (the engine's configuration snapshot).
pub async fn all(tx: &mut TenantTx) -> StoreResult<Vec<ConnectionRow>> {
    Ok(
        sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM channel_connections ORDER BY created_at, id"
        )))
        .fetch_all(tx.connection())
        .await?,
    )
}

/// A connection's id, last inbound time, last error and its time.
type HealthRow = (
    ConnectionId,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// How the given connections are doing (those with no record yet are absent).
pub async fn health(
    tx: &mut TenantTx,
    ids: &[ConnectionId],
) -> StoreResult<std::collections::HashMap<ConnectionId, ChannelHealth>> {
    let rows: Vec<HealthRow> = sqlx::query_as(
        "SELECT connection_id, last_inbound_at, last_error, last_error_at FROM channel_health \
              WHERE connection_id = ANY($1)",
    )
    .bind(ids.iter().map(|id| *id.as_uuid()).collect::<Vec<_>>())
    .fetch_all(tx.connection())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, last_received_at, last_error, last_error_at)| {
            (
                id,
                ChannelHealth {
                    last_received_at,
                    last_error,
                    last_error_at,
                },
            )
        })
        .collect())
}

/// Whether `agent` answers a WhatsApp number that is connected (active, or failed until an admin
/// connects it again).
pub async fn answers_whatsapp(tx: &mut TenantTx, agent: shared::AgentId) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM channel_connections \
                         WHERE agent_id = $1 AND kind = 'whatsapp' AND status <> 'disabled')",
    )
    .bind(agent)
    .fetch_one(tx.connection())
    .await?)
}

/// Notes that a message came in on the connection (to the minute: at most one write a minute
/// per connection).
pub async fn note_inbound(tx: &mut TenantTx, id: ConnectionId) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO channel_health (tenant_id, connection_id, last_inbound_at) \
         VALUES ($1, $2, date_trunc('minute', now())) \
         ON CONFLICT (tenant_id, connection_id) DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at \
          WHERE channel_health.last_inbound_at IS DISTINCT FROM EXCLUDED.last_inbound_at",
    )
    .bind(tenant)
    .bind(id)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Records what last went wrong sending through the connection (`None` clears it, and writes
/// nothing when there was nothing to clear).
pub async fn note_error(
    tx: &mut TenantTx,
    id: ConnectionId,
    error: Option<&str>,
) -> StoreResult<()> {
    let tenant = tx.tenant();
    match error {
        Some(error) => {
            let error: String = error.chars().take(500).collect();
            sqlx::query(
                "INSERT INTO channel_health (tenant_id, connection_id, last_error, last_error_at) \
                 VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (tenant_id, connection_id) DO UPDATE \
                    SET last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at",
            )
            .bind(tenant)
            .bind(id)
            .bind(error)
            .execute(tx.connection())
            .await?;
        }
        None => {
            sqlx::query(
                "UPDATE channel_health SET last_error = NULL, last_error_at = NULL \
                  WHERE connection_id = $1 AND last_error IS NOT NULL",
            )
            .bind(id)
            .execute(tx.connection())
            .await?;
        }
    }
    Ok(())
}

/// Marks an active connection failed for good (its credentials were refused); `true` when it
/// was active until now.
pub async fn fail(tx: &mut TenantTx, id: ConnectionId) -> StoreResult<bool> {
    tx.channels_changed();
    let done = sqlx::query(
        "UPDATE channel_connections SET status = 'failed', updated_at = now() \
          WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .execute(tx.connection())
    .await?;
    Ok(done.rows_affected() == 1)
}
