//! `/api/tenants/{tenant_id}/audit`: verifying the tenant's audit trail and exporting its head
//! (here), listing and exporting its events (`events`). All are reads (`AuditRead`: customer
//! admins and operators). The head is what an operator
//! keeps outside Konstruct; verifying against it later shows whether the newest rows were
//! dropped, which the chain and its seals alone cannot.
//!
//! A verification walks the whole trail on one database connection, so they are rationed
//! ([`Verifications`]): one at a time per tenant and a few at once in all, so no tenant's
//! operators can tie up the connections every tenant's traffic needs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::web;
use chrono::Utc;
use serde::Deserialize;
use shared::ErrorBody;
use shared::audit::{AuditHead, AuditVerification, ChainPosition, ExportedHeadCheck};
use shared::{ErrorCode, TenantId};

use super::AppState;
use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use crate::store::audit::{self, ChainHead};

mod csv;
pub mod events;

/// How many verifications may run at once, over every tenant.
pub const VERIFICATIONS_AT_ONCE: usize = 2;

/// The verifications running now: at most one per tenant and [`VERIFICATIONS_AT_ONCE`] in all.
#[derive(Debug, Clone)]
pub struct Verifications {
    slots: Arc<tokio::sync::Semaphore>,
    running: Arc<Mutex<HashSet<TenantId>>>,
}

impl Default for Verifications {
    fn default() -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(VERIFICATIONS_AT_ONCE)),
            running: Arc::default(),
        }
    }
}

/// A running verification of one tenant's trail; its place is given back when dropped.
#[derive(Debug)]
pub struct Verifying {
    _slot: tokio::sync::OwnedSemaphorePermit,
    tenant: TenantId,
    running: Arc<Mutex<HashSet<TenantId>>>,
}

impl Drop for Verifying {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.tenant);
    }
}

impl Verifications {
    /// A place for verifying `tenant`'s trail now, or `None` when its trail is being verified
    /// already or every place is taken (the caller answers "try again").
    pub fn try_start(&self, tenant: TenantId) -> Option<Verifying> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains(&tenant) {
            return None;
        }
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        running.insert(tenant);
        Some(Verifying {
            _slot: slot,
            tenant,
            running: self.running.clone(),
        })
    }
}

/// `?seq=&hash=`: a head exported earlier, to check the chain still holds it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct VerifyQuery {
    /// The exported head's seq (0 or more).
    pub seq: Option<String>,
    /// The exported head's hash: 64 hexadecimal characters.
    pub hash: Option<String>,
}

impl VerifyQuery {
    /// The exported head, if one was given; both parts or neither.
    fn exported(&self) -> Result<Option<ChainHead>, ApiError> {
        let seq = self.seq.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let hash = self
            .hash
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty());
        if seq.is_none() && hash.is_none() {
            return Ok(None);
        }
        let mut errors = Errors::default();
        let seq = match seq {
            None => {
                errors.add("seq", "is required with hash");
                None
            }
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                _ => {
                    errors.add("seq", "must be a whole number, 0 or more");
                    None
                }
            },
        };
        let hash = match hash {
            None => {
                errors.add("hash", "is required with seq");
                None
            }
            Some(h) => match hex::decode(h) {
                Ok(bytes) if bytes.len() == 32 => Some(bytes),
                _ => {
                    errors.add("hash", "must be 64 hexadecimal characters");
                    None
                }
            },
        };
        errors.finish()?;
        Ok(seq.zip(hash).map(|(seq, hash)| ChainHead { seq, hash }))
    }
}

fn position(head: &ChainHead) -> ChainPosition {
    ChainPosition {
        seq: head.seq,
        hash: hex::encode(&head.hash),
    }
}

/// The tenant's current head, to store outside Konstruct.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/audit/head", tag = "audit",
    params(("tenant_id" = uuid::Uuid, Path)),
    responses((status = 200, body = AuditHead), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn head(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<AuditHead>, ApiError> {
    let export = audit::head(&state.store, auth.tenant()?).await?;
    Ok(web::Json(AuditHead {
        seq: export.head.seq,
        hash: hex::encode(&export.head.hash),
        sealed_through: export.sealed_through,
        key_version: export.key_version,
        exported_at: Utc::now(),
    }))
}

/// Verify the tenant's trail: the hash chain, every seal, that the newest row is sealed, and,
/// given `?seq=&hash=` from an earlier export, that the chain still holds that head.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/audit/verify", tag = "audit",
    params(("tenant_id" = uuid::Uuid, Path), VerifyQuery),
    responses((status = 200, description = "The report; `ok` is false when anything failed", body = AuditVerification),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "The exported head is malformed", body = ErrorBody),
              (status = 503, description = "This trail is being verified already, or too many are; retry", body = ErrorBody)))]
pub async fn verify(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<VerifyQuery>,
) -> Result<web::Json<AuditVerification>, ApiError> {
    let exported = query.exported()?;
    let tenant = auth.tenant()?;
    let Some(_verifying) = state.verifications.try_start(tenant) else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "A verification of this trail, or too many others, is running. Try again in a few \
             seconds.",
        )
        .with_retry_after(5));
    };
    let report = audit::verify(&state.store, tenant, exported.as_ref()).await?;
    Ok(web::Json(AuditVerification {
        ok: report.ok,
        verdict: report.verdict,
        rows_checked: report.rows_checked,
        sealed_through: report.sealed_through,
        first_bad_seq: report.first_bad_seq,
        problem: report.problem,
        head: position(&report.head),
        exported_head: report.exported.map(|e| ExportedHeadCheck {
            seq: e.head.seq,
            hash: hex::encode(&e.head.hash),
            contained: e.contained,
            problem: e.problem,
        }),
    }))
}
