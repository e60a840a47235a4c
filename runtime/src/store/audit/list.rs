//! Reading a tenant's trail newest first: the events a filter selects, a page at a time by seq
//! (a keyset: rows only ever arrive at the top, so a cursor never shifts under a reader), with
//! the acting member's name and e-mail looked up as it is read. The trail itself never holds
//! them (see the parent module): a member who left shows by id only.

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::audit::AuditActorKind;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::Action;
use crate::store::{StoreResult, TenantTx};

impl Action {
    /// The action stored under `name`, if it is one.
    pub fn named(name: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == name)
    }
}

/// Whose events to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorFilter {
    /// The runtime's own.
    System,
    /// One actor's, by id: a member, a platform admin (directly or impersonating) or an end user.
    Id(Uuid),
}

/// Which events to list; every part given narrows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub action: Option<Action>,
    pub actor: Option<ActorFilter>,
    /// From this instant, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Up to this instant, exclusive.
    pub to: Option<DateTime<Utc>>,
    /// Only rows older than this seq (the cursor).
    pub before: Option<i64>,
}

/// One event as read, with the acting member's account when the actor is a current member.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub action: String,
    #[sqlx(try_from = "String")]
    pub actor_kind: AuditActorKind,
    pub actor_id: Option<Uuid>,
    pub impersonator_id: Option<Uuid>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub details: Value,
    pub request_id: Option<String>,
    pub hash: Vec<u8>,
    /// The member's display name ('' when they set none); none when not a current member.
    pub actor_name: Option<String>,
    pub actor_email: Option<String>,
}

/// `FROM … WHERE …` for `filter`, bound into `query`. The tenant is named as well as enforced by
/// row-level security, so the planner can use the `(tenant_id, …)` indexes.
fn push_where(query: &mut QueryBuilder<Postgres>, tenant: Uuid, filter: &EventFilter) {
    query.push(" FROM audit_events e WHERE e.tenant_id = ");
    query.push_bind(tenant);
    if let Some(action) = filter.action {
        query.push(" AND e.action = ").push_bind(action.as_str());
    }
    match filter.actor {
        None => {}
        Some(ActorFilter::System) => {
            query
                .push(" AND e.actor_kind = ")
                .push_bind(AuditActorKind::System.as_str());
        }
        Some(ActorFilter::Id(id)) => {
            query.push(" AND e.actor_id = ").push_bind(id);
        }
    }
    if let Some(from) = filter.from {
        query.push(" AND e.created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND e.created_at < ").push_bind(to);
    }
    if let Some(before) = filter.before {
        query.push(" AND e.seq < ").push_bind(before);
    }
}

/// Up to `limit` of the events `filter` selects, newest (highest seq) first. The query is built
/// for the filters given rather than with `$n IS NULL OR …` for every one, so each shape gets a
/// plan that uses its index.
pub async fn list(
    tx: &mut TenantTx,
    filter: &EventFilter,
    limit: i64,
) -> StoreResult<Vec<EventRow>> {
    let tenant = *tx.tenant().as_uuid();
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT e.seq, e.created_at, e.action, e.actor_kind, e.actor_id, e.impersonator_id, \
                e.target_kind, e.target_id, e.details, e.request_id, e.hash, \
                u.display_name AS actor_name, u.email AS actor_email \
           FROM (SELECT e.*",
    );
    push_where(&mut query, tenant, filter);
    query.push(" ORDER BY e.seq DESC LIMIT ").push_bind(limit);
    // Only members' accounts are looked up, and only for rows a member did: an end user's or a
    // platform admin's id never reaches `users` here.
    query.push(
        ") e \
         LEFT JOIN tenant_members m \
                ON e.actor_kind = 'user' AND m.tenant_id = e.tenant_id AND m.user_id = e.actor_id \
         LEFT JOIN users u ON u.id = m.user_id \
         ORDER BY e.seq DESC",
    );
    Ok(query
        .build_query_as::<EventRow>()
        .fetch_all(tx.connection())
        .await?)
}

/// The seq of the event `offset` places after the newest one `filter` selects (0 is the newest),
/// if there are that many: whether a bounded read would leave rows out, without counting them
/// all.
pub async fn nth_seq(
    tx: &mut TenantTx,
    filter: &EventFilter,
    offset: i64,
) -> StoreResult<Option<i64>> {
    let tenant = *tx.tenant().as_uuid();
    let mut query = QueryBuilder::<Postgres>::new("SELECT e.seq");
    push_where(&mut query, tenant, filter);
    query
        .push(" ORDER BY e.seq DESC OFFSET ")
        .push_bind(offset)
        .push(" LIMIT 1");
    Ok(query
        .build_query_scalar::<i64>()
        .fetch_optional(tx.connection())
        .await?)
}

/// The newest seq in the tenant's trail (0 when it is empty): where an export that must not grow
/// while it is read starts.
pub async fn newest_seq(tx: &mut TenantTx) -> StoreResult<i64> {
    let tenant = *tx.tenant().as_uuid();
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM audit_events WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(tx.connection())
            .await?,
    )
}
