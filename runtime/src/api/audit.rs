//! `/api/tenants/{tenant_id}/audit`: verifying the tenant's audit trail and exporting its head.
//! Both are reads (`AuditRead`: customer admins and operators). The head is what an operator
//! keeps outside Konstruct; verifying against it later shows whether the newest rows were
//! dropped, which the chain and its seals alone cannot.

use actix_web::web;
use chrono::Utc;
use serde::Deserialize;
use shared::ErrorBody;
use shared::audit::{AuditHead, AuditVerification, ChainPosition, ExportedHeadCheck};

use super::AppState;
use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use crate::store::audit::{self, ChainHead};

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
              (status = 422, description = "The exported head is malformed", body = ErrorBody)))]
pub async fn verify(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<VerifyQuery>,
) -> Result<web::Json<AuditVerification>, ApiError> {
    let exported = query.exported()?;
    let report = audit::verify(&state.store, auth.tenant()?, exported.as_ref()).await?;
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
