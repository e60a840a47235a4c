//! `/api/admin/impersonate`: a platform admin acts inside one tenant, for a limited time, with
//! every request audited under the real admin's id.
//!
//! An impersonation is a session of its own, next to the admin's: the browser keeps it in a
//! cookie of its own (`konstruct_impersonation`), an API client gets its token in the answer. The
//! admin's own session is never touched, and nothing here ever signs a token without the
//! impersonation: stopping only ends the impersonation (the admin carries on with the session
//! they already had), so an impersonation token cannot be traded for a platform session.

use actix_web::{HttpResponse, web};
use chrono::{Duration, Utc};
use shared::ErrorBody;
use shared::auth::{ImpersonateRequest, SessionToken};
use shared::resources::TenantStatus;

use super::AppState;
use super::auth::{Authorized, issue, removal_cookie};
use super::error::ApiError;
use crate::auth::tokens::ImpersonationClaim;
use crate::auth::{Impersonated, Principal};
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::tenants;

/// Start impersonating a tenant (1–60 minutes, 30 by default). Returns the impersonation's
/// session token (and sets its cookie); the admin's own session stays as it was.
#[utoipa::path(post, path = "/api/admin/impersonate", tag = "admin", request_body = ImpersonateRequest,
    responses((status = 200, body = SessionToken), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_impersonation(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<ImpersonateRequest>,
) -> Result<HttpResponse, ApiError> {
    let minutes = body.minutes.unwrap_or(30);
    if !(1..=60).contains(&minutes) {
        return Err(ApiError::invalid_field(
            "minutes",
            "must be between 1 and 60",
        ));
    }
    let principal = auth.principal();
    let mut tx = state.store.tenant_tx(body.tenant_id).await?;
    let tenant = tenants::current(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    let until = Utc::now() + Duration::minutes(i64::from(minutes));
    audit::append(
        &mut tx,
        &NewEvent {
            actor: Actor::PlatformAdmin {
                admin: principal.user.id,
            },
            action: Action::ImpersonationStarted,
            target: Target::Tenant(tenant.id),
            details: serde_json::json!({ "minutes": minutes }),
            request_id: super::request_id::current(),
        },
    )
    .await?;
    tx.commit().await?;
    let mut claims = principal.claims.clone();
    claims.sid = uuid::Uuid::new_v4();
    claims.imp = Some(ImpersonationClaim {
        tenant: *tenant.id.as_uuid(),
        exp: until.timestamp(),
        parent_sid: principal.claims.sid,
    });
    let acting = Principal {
        claims: claims.clone(),
        impersonating: Some(Impersonated {
            tenant: body.tenant_id,
            name: tenant.name,
            active: tenant.status == TenantStatus::Active,
            until,
        }),
        ..principal.clone()
    };
    issue(&state, &claims, acting.me())
}

/// Stop impersonating: the impersonation's session ends (and its cookie is cleared); nothing
/// else changes and no token is returned — the admin's own session carries on. Harmless when not
/// impersonating.
#[utoipa::path(delete, path = "/api/admin/impersonate", tag = "admin",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn stop_impersonation(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth.principal();
    if let Some(imp) = &principal.impersonating {
        let mut tx = state.store.tenant_tx(imp.tenant).await?;
        audit::append(
            &mut tx,
            &NewEvent {
                actor: principal.actor(),
                action: Action::ImpersonationStopped,
                target: Target::Tenant(imp.tenant),
                details: serde_json::json!({}),
                request_id: super::request_id::current(),
            },
        )
        .await?;
        tx.commit().await?;
        super::auth::revoke(&state, principal.claims.sid, &principal.claims).await?;
    }
    let mut res = HttpResponse::NoContent();
    res.cookie(removal_cookie(super::auth::IMPERSONATION_COOKIE));
    Ok(res.finish())
}
