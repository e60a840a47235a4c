//! `/api/admin/impersonate`: a platform admin acts inside one tenant, for a limited time, with
//! every request audited under the real admin's id.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Duration, Utc};
use shared::ErrorBody;
use shared::auth::{ImpersonateRequest, SessionToken};

use super::AppState;
use super::auth::{Authorized, issue};
use super::error::ApiError;
use crate::auth::tokens::ImpersonationClaim;
use crate::auth::{Impersonated, Principal};
use crate::store::audit::{self, Actor, NewEvent};
use crate::store::tenants;

/// Start impersonating a tenant (1–60 minutes, 30 by default). Returns a new session token.
#[utoipa::path(post, path = "/api/admin/impersonate", tag = "admin", request_body = ImpersonateRequest,
    responses((status = 200, body = SessionToken), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_impersonation(
    req: HttpRequest,
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
            action: "impersonation.started",
            target_kind: Some("tenant"),
            target_id: Some(tenant.id.to_string()),
            details: serde_json::json!({ "minutes": minutes, "admin_email": principal.user.email }),
            request_id: super::request_id::current().as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    // The impersonation is a session of its own, so stopping it can revoke it.
    let mut claims = principal.claims.clone();
    claims.sid = uuid::Uuid::new_v4();
    claims.imp = Some(ImpersonationClaim {
        tenant: tenant.id,
        exp: until.timestamp(),
        parent_sid: principal.claims.sid,
    });
    let acting = Principal {
        claims: claims.clone(),
        impersonating: Some(Impersonated {
            tenant: body.tenant_id,
            name: tenant.name,
            active: tenant.status == "active",
            until,
        }),
        ..principal.clone()
    };
    issue(&req, &state, &claims, acting.me())
}

/// Stop impersonating; returns the admin's own session. Harmless when not impersonating.
#[utoipa::path(delete, path = "/api/admin/impersonate", tag = "admin",
    responses((status = 200, body = SessionToken), (status = 401, body = ErrorBody)))]
pub async fn stop_impersonation(
    req: HttpRequest,
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth.principal();
    let mut claims = principal.claims.clone();
    if let (Some(imp), Some(claim)) = (&principal.impersonating, &principal.claims.imp) {
        let tenant = &imp.tenant;
        let mut tx = state.store.tenant_tx(*tenant).await?;
        audit::append(
            &mut tx,
            &NewEvent {
                actor: principal.actor(),
                action: "impersonation.stopped",
                target_kind: Some("tenant"),
                target_id: Some(tenant.to_string()),
                details: serde_json::json!({}),
                request_id: super::request_id::current().as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
        super::auth::revoke(&state, &principal.claims).await?;
        claims.sid = claim.parent_sid;
    }
    claims.imp = None;
    let own = Principal {
        claims: claims.clone(),
        impersonating: None,
        ..principal.clone()
    };
    issue(&req, &state, &claims, own.me())
}
