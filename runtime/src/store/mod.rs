//! The store: the only module that writes SQL.
//!
//! Every tenant-scoped query runs inside a [`TenantTx`], a transaction that first sets
//! `app.tenant_id` with `set_config(…, true)`. The setting is transaction-local, so a pooled
//! connection can never carry one tenant's id into another tenant's work, and Postgres' row-level
//! security policies do the filtering: a query that forgets a `WHERE tenant_id = …` still sees only
//! its own tenant. Work that spans tenants goes through named, narrow paths
//! ([`Store::resolve_channel`]).
//!
//! A `TenantTx` that appended audit rows seals the last of them as its final statement, in
//! [`TenantTx::commit`], so no caller can forget to (see [`audit`]).

pub mod agents;
pub mod audit;
pub mod bootstrap;
pub mod budgets;
pub mod channel_cache;
pub mod channels;
pub mod conversations;
pub mod end_users;
pub mod fences;
pub mod inbox;
pub mod jobs;
pub mod knowledge;
pub mod llm;
pub mod people;
pub mod tenants;
pub mod tools;
pub mod usage;
pub mod users;

use std::time::Duration;

use shared::channel::{ChannelKind, ConnectionStatus};
use shared::resources::TenantStatus;
use shared::{AgentId, ConnectionId, TenantId};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::config::DatabaseSettings;
use crate::crypto::AuditKeys;

/// The migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or no connection was free in time; retry later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness rule was violated, e.g. a slug that is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The requested row does not exist (or belongs to another tenant).
    #[error("not found")]
    NotFound,
    /// The configuration does not describe a usable database.
    #[error("database configuration: {0}")]
    Config(String),
    /// Applying the migrations failed.
    #[error("migration failed")]
    Migrate(#[from] MigrateError),
    /// A stored value the code does not know (a status no variant names): a bug or a hand edit.
    #[error("unexpected stored value: {0}")]
    Invalid(String),
    /// Any other database error: a bug or a broken invariant.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The ingest partition this work belongs to is held by another node now (its fence moved
    /// on): this node must not commit the work.
    #[error("the partition's lease moved to another node")]
    Fenced,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e)
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().unwrap_or("unique constraint").to_string())
            }
            sqlx::Error::RowNotFound => StoreError::NotFound,
            _ => StoreError::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The runtime's handle on Postgres: a pool of connections as the runtime's own role.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// Seals every transaction's audit rows at commit; empty when no key is configured (then
    /// nothing is sealed and verification reports the rows as unsealed).
    audit_keys: AuditKeys,
    /// Resolved channels, while `channel_cache::listen` keeps them in step (else unused).
    channel_cache: std::sync::Arc<channel_cache::ChannelCache>,
}

/// A transaction bound to one tenant: row-level security limits every statement in it to that
/// tenant's rows. Dropping it without [`TenantTx::commit`] rolls back.
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant: TenantId,
    /// The store's audit keys, to seal with at commit and to verify with.
    audit_keys: AuditKeys,
    /// The audit rows this transaction appended and has not sealed yet.
    unsealed: Option<audit::Unsealed>,
    /// The store's channel cache, told at commit when this transaction changed what
    /// `resolve_channel` answers (other nodes learn it from the config notice).
    channel_cache: std::sync::Arc<channel_cache::ChannelCache>,
    channels_changed: bool,
}

impl TenantTx {
    /// The tenant this transaction is bound to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The connection, for store modules (and tests) to run statements on.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// The keys this transaction seals and verifies the audit chain with.
    pub fn audit_keys(&self) -> &AuditKeys {
        &self.audit_keys
    }

    /// Commits the transaction; the tenant setting ends with it. If it appended audit rows, it
    /// first seals them, as one run (its first and last seq and the last row's hash); the
    /// tenant's chain lock, taken by the first append, is still held, so seals are written in
    /// chain order and the sealed row is the chain's head when this commits.
    pub async fn commit(mut self) -> StoreResult<()> {
        if let Some(run) = self.unsealed.take() {
            audit::seal(&mut self, &run).await?;
        }
        self.tx.commit().await?;
        if self.channels_changed {
            // This node's next delivery sees the change at once, not when the notice arrives.
            self.channel_cache.forget_tenant(self.tenant);
        }
        Ok(())
    }

    /// Notes that this transaction changes what a channel resolves to (a connection, its
    /// agent, the tenant's status): this node's cache forgets the tenant at commit.
    pub fn channels_changed(&mut self) {
        self.channels_changed = true;
    }

    /// Rolls the transaction back explicitly.
    pub async fn rollback(self) -> StoreResult<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

/// What the runtime's login role is allowed to do, read from `pg_roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReport {
    pub name: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    /// Whether the role owns any table in the database (owners may bypass RLS).
    pub owns_tables: bool,
    /// Whether it may create roles: before Postgres 16 such a role may grant itself any
    /// non-superuser role, the ones that bypass RLS included.
    pub create_role: bool,
    /// Roles it is a member of, directly or through others, that are superusers, bypass RLS,
    /// own tables or may create roles: a member can `SET ROLE` to them and do the same.
    pub privileged_memberships: Vec<String>,
}

impl RoleReport {
    /// True when row-level security binds this role and every role it can become.
    pub fn is_safe_runtime_role(&self) -> bool {
        !self.superuser
            && !self.bypass_rls
            && !self.owns_tables
            && !self.create_role
            && self.privileged_memberships.is_empty()
    }

    /// Why the role is unsafe, in words (empty when it is safe).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.superuser {
            problems.push("it is a superuser".to_string());
        }
        if self.bypass_rls {
            problems.push("it has BYPASSRLS".to_string());
        }
        if self.owns_tables {
            problems.push("it owns tables".to_string());
        }
        if self.create_role {
            problems.push("it has CREATEROLE (it could grant itself a role that does)".to_string());
        }
        if !self.privileged_memberships.is_empty() {
            problems.push(format!(
                "it is a member of {}, which can bypass row-level security",
                self.privileged_memberships.join(", ")
            ));
        }
        problems
    }
}

/// Which migrations are applied, compared with the ones embedded in this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub known: usize,
    pub applied: usize,
    /// Embedded migrations not yet applied.
    pub pending: Vec<i64>,
    /// Applied migrations whose checksum differs from the embedded file (edited after applying),
    /// or that did not finish.
    pub mismatched: Vec<i64>,
    /// Applied migrations this binary does not know (the database is newer than the binary).
    pub unknown: Vec<i64>,
}

impl MigrationStatus {
    /// True when the database has exactly the migrations this binary was built with.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.mismatched.is_empty() && self.unknown.is_empty()
    }
}

impl Store {
    /// A pool for the runtime's role. Connections are opened lazily, so the process starts (and
    /// `/readyz` reports the problem) even when Postgres is down.
    pub fn connect_lazy(settings: &DatabaseSettings) -> StoreResult<Self> {
        let options: PgConnectOptions =
            settings.url.expose().parse().map_err(|_| {
                StoreError::Config("database.url is not a valid Postgres URL".into())
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            .connect_lazy_with(options.application_name("konstruct"));
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool (tests build their own). It seals nothing until given keys with
    /// [`Store::with_audit_keys`].
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            audit_keys: AuditKeys::default(),
            channel_cache: std::sync::Arc::default(),
        }
    }

    /// The same store, sealing the audit chain with `keys` (from `KONSTRUCT_AUDIT_KEYS`).
    pub fn with_audit_keys(self, keys: AuditKeys) -> Self {
        Self {
            audit_keys: keys,
            ..self
        }
    }

    /// The resolved channels kept in memory (see [`channel_cache`]).
    pub fn channel_cache(&self) -> &std::sync::Arc<channel_cache::ChannelCache> {
        &self.channel_cache
    }

    /// The keys this store seals and verifies the audit chain with.
    pub fn audit_keys(&self) -> &AuditKeys {
        &self.audit_keys
    }

    /// Opens a transaction bound to `tenant`.
    pub async fn tenant_tx(&self, tenant: TenantId) -> StoreResult<TenantTx> {
        let tx = self.pool.begin().await?;
        self.bind_tenant(tx, tenant).await
    }

    /// Opens a read-only transaction bound to `tenant` whose statements all see one snapshot,
    /// for reads that must agree with each other (verifying the audit chain while others append).
    pub async fn tenant_snapshot(&self, tenant: TenantId) -> StoreResult<TenantTx> {
        let tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        self.bind_tenant(tx, tenant).await
    }

    async fn bind_tenant(
        &self,
        mut tx: Transaction<'static, Postgres>,
        tenant: TenantId,
    ) -> StoreResult<TenantTx> {
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(TenantTx {
            tx,
            tenant,
            audit_keys: self.audit_keys.clone(),
            unsealed: None,
            channel_cache: self.channel_cache.clone(),
            channels_changed: false,
        })
    }

    /// A trivial round trip, for readiness.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Reports the attributes of the role the pool logs in as, and of every role it can become.
    pub async fn role_report(&self) -> StoreResult<RoleReport> {
        let (name, superuser, bypass_rls, owns_tables, create_role, privileged): (
            String,
            bool,
            bool,
            bool,
            bool,
            Vec<String>,
        ) = sqlx::query_as(
            "WITH owners AS ( \
                 SELECT DISTINCT relowner AS oid FROM pg_catalog.pg_class \
                  WHERE relkind IN ('r', 'p')) \
             SELECT r.rolname::text, r.rolsuper, r.rolbypassrls, \
                    r.oid IN (SELECT oid FROM owners), r.rolcreaterole, \
                    coalesce(ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_roles g \
                                    WHERE g.oid <> r.oid \
                                      AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER') \
                                      AND (g.rolsuper OR g.rolbypassrls OR g.rolcreaterole \
                                           OR g.oid IN (SELECT oid FROM owners)) \
                                    ORDER BY 1), '{}') \
               FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RoleReport {
            name,
            superuser,
            bypass_rls,
            owns_tables,
            create_role,
            privileged_memberships: privileged,
        })
    }

    /// Compares the applied migrations with the embedded ones.
    pub async fn migration_status(&self) -> StoreResult<MigrationStatus> {
        let applied: Vec<(i64, bool, Vec<u8>)> = match sqlx::query_as(
            "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        {
            Ok(rows) => rows,
            // No bookkeeping table: nothing was ever migrated.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let known: Vec<_> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .collect();
        let mut status = MigrationStatus {
            known: known.len(),
            applied: applied.len(),
            pending: Vec::new(),
            mismatched: Vec::new(),
            unknown: Vec::new(),
        };
        for m in &known {
            match applied.iter().find(|(v, _, _)| *v == m.version) {
                None => status.pending.push(m.version),
                Some((_, success, checksum)) => {
                    if !success || checksum.as_slice() != &*m.checksum {
                        status.mismatched.push(m.version);
                    }
                }
            }
        }
        for (version, _, _) in &applied {
            if !known.iter().any(|m| m.version == *version) {
                status.unknown.push(*version);
            }
        }
        Ok(status)
    }

    /// Finds the tenant and connection behind a channel's external id (a Slack `team_id`, a
    /// WhatsApp `phone_number_id`) before any tenant is known, with what routing a delivery
    /// needs (its agent and settings, never its secret). The one cross-tenant read the runtime
    /// may make, through the `resolve_channel` SECURITY DEFINER function.
    pub async fn resolve_channel(
        &self,
        kind: ChannelKind,
        external_id: &str,
    ) -> StoreResult<Option<ResolvedChannel>> {
        let (hit, generation) = self.channel_cache.get(kind, external_id);
        if hit.is_some() {
            return Ok(hit);
        }
        let resolved = self.resolve_channel_uncached(kind, external_id).await?;
        if let (Some(resolved), Some(generation)) = (&resolved, generation) {
            self.channel_cache
                .put(kind, external_id, resolved, generation);
        }
        Ok(resolved)
    }

    async fn resolve_channel_uncached(
        &self,
        kind: ChannelKind,
        external_id: &str,
    ) -> StoreResult<Option<ResolvedChannel>> {
        let row: Option<(
            TenantId,
            ConnectionId,
            Option<AgentId>,
            String,
            String,
            serde_json::Value,
        )> = sqlx::query_as(
            "SELECT tenant_id, connection_id, agent_id, tenant_status, connection_status, \
                        settings \
                   FROM resolve_channel($1, $2)",
        )
        .bind(kind.as_str())
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(tenant, connection, agent, tenant_status, connection_status, settings)| {
                ResolvedChannel {
                    tenant,
                    connection_id: connection,
                    agent_id: agent,
                    active: tenant_status == TenantStatus::Active.as_str()
                        && connection_status == ConnectionStatus::Active.as_str(),
                    settings,
                }
            },
        ))
    }

    /// The underlying pool, for tests that must inspect connections directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The result of [`Store::resolve_channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedChannel {
    pub tenant: TenantId,
    pub connection_id: ConnectionId,
    pub agent_id: Option<AgentId>,
    /// False when the tenant is suspended or the connection disabled: acknowledge, do not process.
    pub active: bool,
    /// The connection's settings as stored (the channel adapter reads them).
    pub settings: serde_json::Value,
}

/// Applies the embedded migrations as the owner role.
pub async fn migrate(owner_url: &str) -> StoreResult<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(owner_url)
        .await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}
