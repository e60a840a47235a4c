//! The append-only audit trail and its per-tenant hash chain.
//!
//! The database assigns `seq`, `prev_hash`, `hash` and `created_at` in a trigger, so a caller can
//! only describe *what* happened; it cannot place or date the row. `verify_chain` walks the chain
//! with the SQL function `audit_verify_chain` and reports the first row that was edited, removed
//! or moved. Truncating the newest rows cannot be seen from the chain alone: compare the returned
//! head hash with one recorded elsewhere to detect that.

use serde_json::Value;
use uuid::Uuid;

use super::{StoreResult, TenantTx};

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The runtime itself (a pipeline step, a scheduled job).
    System,
    /// A signed-in operator.
    User(Uuid),
    /// A platform admin acting inside the tenant; `admin` is the real person.
    PlatformAdmin { admin: Uuid },
    /// A platform admin acting through an impersonation of the tenant: `impersonator_id` holds
    /// the real admin's id, which marks the row as done under impersonation.
    Impersonating { admin: Uuid },
    /// A Slack or WhatsApp end user, by the internal id of their conversation.
    EndUser(Uuid),
}

impl Actor {
    fn columns(self) -> (&'static str, Option<Uuid>, Option<Uuid>) {
        match self {
            Actor::System => ("system", None, None),
            Actor::User(id) => ("user", Some(id), None),
            Actor::PlatformAdmin { admin } => ("platform_admin", Some(admin), None),
            Actor::Impersonating { admin } => ("platform_admin", Some(admin), Some(admin)),
            Actor::EndUser(id) => ("end_user", Some(id), None),
        }
    }
}

/// One thing that happened, to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub actor: Actor,
    /// Dotted, lower-case, e.g. `agent.created`.
    pub action: &'a str,
    pub target_kind: Option<&'a str>,
    pub target_id: Option<String>,
    /// A JSON object with a secret-free summary (e.g. before/after of the changed fields).
    pub details: Value,
    pub request_id: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    /// An event about one target, with no request behind it (the engine's events).
    pub fn about(
        actor: Actor,
        action: &'a str,
        target_kind: &'a str,
        target_id: impl ToString,
        details: Value,
    ) -> Self {
        Self {
            actor,
            action,
            target_kind: Some(target_kind),
            target_id: Some(target_id.to_string()),
            details,
            request_id: None,
        }
    }
}

/// Where an appended event landed in its tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// The outcome of walking a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub ok: bool,
    pub rows_checked: i64,
    /// The first row that failed, when `ok` is false.
    pub first_bad_seq: Option<i64>,
    /// Why it failed, in words.
    pub problem: Option<String>,
    /// The hash of the last good row (all zeros for an empty chain).
    pub head_hash: Vec<u8>,
}

/// Appends an event to the tenant's chain inside `tx`. `seq`, `prev_hash`, `hash` and
/// `created_at` are filled in by the database's trigger (NOT NULL is checked after it runs).
pub async fn append(tx: &mut TenantTx, event: &NewEvent<'_>) -> StoreResult<Appended> {
    let tenant = tx.tenant();
    let (actor_kind, actor_id, impersonator_id) = event.actor.columns();
    let (seq, hash): (i64, Vec<u8>) = sqlx::query_as(
        "INSERT INTO audit_events (tenant_id, actor_kind, actor_id, impersonator_id, action, \
                                   target_kind, target_id, details, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING seq, hash",
    )
    .bind(tenant.as_uuid())
    .bind(actor_kind)
    .bind(actor_id)
    .bind(impersonator_id)
    .bind(event.action)
    .bind(event.target_kind)
    .bind(event.target_id.as_deref())
    .bind(&event.details)
    .bind(event.request_id)
    .fetch_one(tx.connection())
    .await?;
    Ok(Appended { seq, hash })
}

/// Verifies the chain of the transaction's tenant.
pub async fn verify_chain(tx: &mut TenantTx) -> StoreResult<ChainReport> {
    let tenant = tx.tenant();
    let (ok, rows_checked, first_bad_seq, problem, head_hash): (
        bool,
        i64,
        Option<i64>,
        Option<String>,
        Vec<u8>,
    ) = sqlx::query_as(
        "SELECT ok, rows_checked, first_bad_seq, problem, head_hash FROM audit_verify_chain($1)",
    )
    .bind(tenant.as_uuid())
    .fetch_one(tx.connection())
    .await?;
    Ok(ChainReport {
        ok,
        rows_checked,
        first_bad_seq,
        problem,
        head_hash,
    })
}
