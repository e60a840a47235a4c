//! The audit trail: its events as listed and exported, the filters' choices, the
//! verification report and the exported head.
//!
//! A tenant's trail is a hash chain sealed with a key the database never sees. Verifying it says
//! whether every row is intact and sealed; the head — the newest row's seq and hash — is what an
//! operator keeps outside Konstruct, so that dropping the newest rows (which leaves a shorter
//! chain that is still whole) shows up when the trail is later verified against it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::text_enum;

/// One position in the chain: the row at `seq` and its SHA-256 hash in lower-case hex (seq 0
/// and 64 zeros before the first row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainPosition {
    pub seq: i64,
    pub hash: String,
}

/// `GET /api/tenants/{tenant_id}/audit/head`: the newest row, to store outside Konstruct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    /// The newest row covered by a seal that checks; 0 when the newest seal is missing or does
    /// not check (verify the trail to see why).
    pub sealed_through: i64,
    /// The key version of that seal.
    pub key_version: Option<u32>,
    pub exported_at: DateTime<Utc>,
}

/// The verification's outcome in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditVerdict {
    /// Every row is intact and sealed (and the exported head, if given, is still in the chain).
    Intact,
    /// A row, a link or a seal does not check at `first_bad_seq`, or the exported head's row
    /// has another hash now: the trail was changed.
    Broken,
    /// Intact through `sealed_through`, but the rows after it carry no seal: they were written
    /// without an audit key, or their seals were deleted.
    Unsealed,
    /// Intact and sealed, but it ends before the exported head: its newest rows were removed.
    Truncated,
}

/// `GET /api/tenants/{tenant_id}/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// True only when the chain is intact, every seal checks, the newest row is sealed and, if an
    /// exported head was given, the chain still holds it unchanged.
    pub ok: bool,
    pub verdict: AuditVerdict,
    /// Rows whose links and hashes are intact, from seq 1.
    pub rows_checked: i64,
    /// The newest row a checking seal covers (every earlier seal checks too); 0 when none.
    pub sealed_through: i64,
    /// Where the evidence first fails: the row the chain breaks at, the seal that does not check,
    /// the first unsealed row, or where the exported head went missing.
    pub first_bad_seq: Option<i64>,
    /// What is wrong, in words.
    pub problem: Option<String>,
    /// The chain's newest row as stored now.
    pub head: ChainPosition,
    /// The comparison with the exported head given as `?seq=&hash=`.
    pub exported_head: Option<ExportedHeadCheck>,
}

/// Whether a head exported earlier is still in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedHeadCheck {
    pub seq: i64,
    pub hash: String,
    /// The row at `seq` exists and still has `hash`.
    pub contained: bool,
    pub problem: Option<String>,
}

/// Who did what an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditActorKind {
    /// The runtime itself (a pipeline step, a scheduled job).
    System,
    /// A signed-in member of the tenant.
    User,
    /// A platform admin, directly or impersonating (then `impersonator_id` is set too).
    PlatformAdmin,
    /// A Slack or WhatsApp end user (their id only).
    EndUser,
}

text_enum!(AuditActorKind { System => "system", User => "user", PlatformAdmin => "platform_admin", EndUser => "end_user" });

/// One event of the trail, as `GET /api/tenants/{tenant_id}/audit` lists it and the CSV export
/// writes it (one column per field, in this order). What the row holds is content-free by
/// invariant (ids, counts, classes); the actor's name and e-mail are looked up when read, for
/// current members only, and are never stored in the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// The event's place in the tenant's chain, from 1.
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    /// The action's dotted name, e.g. `agent.updated`.
    pub action: String,
    pub actor_kind: AuditActorKind,
    /// The member's, platform admin's or end user's id; none for the system.
    pub actor_id: Option<Uuid>,
    /// The actor's display name, when the actor is a current member of the tenant and has one.
    pub actor_name: Option<String>,
    /// The actor's e-mail address, when the actor is a current member of the tenant.
    pub actor_email: Option<String>,
    /// The platform admin who acted through an impersonation of the tenant.
    pub impersonator_id: Option<Uuid>,
    /// What the event is about (`agent`, `user`, `http`, …) and its id.
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// A summary of ids, counts and reasons (before/after of a change).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
    /// The request that made it, when one did.
    pub request_id: Option<String>,
    /// The row's SHA-256 hash in the chain, lower-case hex.
    pub hash: String,
}

/// `GET /api/tenants/{tenant_id}/audit/filters`: what the trail's filters can be set to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditFilters {
    /// Every action the trail can hold, by name, sorted.
    pub actions: Vec<String>,
    /// The tenant's current members, to filter by who acted (`?actor=` their user id).
    pub members: Vec<AuditMember>,
}

/// A member of the tenant, as an actor to filter by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditMember {
    pub user_id: Uuid,
    pub display_name: String,
    pub email: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_enum::assert_serde_names;

    #[test]
    fn actor_kinds_are_spelled_alike_in_the_database_and_on_the_wire() {
        assert_serde_names(AuditActorKind::ALL, |k| k.as_str());
    }
}
