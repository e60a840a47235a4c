//! The audit trail's verification report and exported head.
//!
//! A tenant's trail is a hash chain sealed with a key the database never sees. Verifying it says
//! whether every row is intact and sealed; the head — the newest row's seq and hash — is what an
//! operator keeps outside Konstruct, so that dropping the newest rows (which leaves a shorter
//! chain that is still whole) shows up when the trail is later verified against it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
