//! `/api/tenants/{tenant_id}/limits`: a tenant's message rate limits. Members read what is in
//! force; platform admins set a tenant's own limits (its plan), or clear them back to the
//! platform defaults. The engine picks a change up at once (see `engine::config`).

use actix_web::web;
use shared::resources::{RateLimit, TenantLimits, TenantLimitsInput};
use shared::{ErrorBody, TenantId};

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, record};
use crate::store::audit::{Action, Target};
use crate::store::tenants::{self as store_tenants, OwnLimits};

/// The platform's default limits, from the runtime's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLimits {
    pub tenant: RateLimit,
    pub per_connection: RateLimit,
}

impl DefaultLimits {
    /// From the runtime's `[engine]` settings.
    pub fn from_config(c: &crate::config::EngineConfig) -> Self {
        Self {
            tenant: RateLimit {
                per_minute: c.rate_per_minute,
                burst: c.rate_burst,
            },
            per_connection: RateLimit {
                per_minute: c.connection_rate_per_minute,
                burst: c.connection_rate_burst,
            },
        }
    }
}

fn in_force(own: OwnLimits, defaults: DefaultLimits) -> TenantLimits {
    let limit = |own: Option<(u32, u32)>, default: RateLimit| {
        own.map_or(default, |(per_minute, burst)| RateLimit {
            per_minute,
            burst,
        })
    };
    TenantLimits {
        tenant: limit(own.tenant, defaults.tenant),
        per_connection: limit(own.per_connection, defaults.per_connection),
        tenant_is_default: own.tenant.is_none(),
        per_connection_is_default: own.per_connection.is_none(),
    }
}

fn check(errors: &mut Errors, field: &str, limit: Option<RateLimit>) {
    if let Some(l) = limit {
        if !(1..=100_000).contains(&l.per_minute) {
            errors.add(format!("{field}.per_minute"), "must be 1 to 100000");
        }
        if !(1..=10_000).contains(&l.burst) {
            errors.add(format!("{field}.burst"), "must be 1 to 10000");
        }
    }
}

/// The rate limits in force for the tenant.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/limits", tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = TenantLimits), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<TenantLimits>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let own = store_tenants::limits(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("This tenant"))?;
    Ok(web::Json(in_force(own, state.default_limits)))
}

/// Set the tenant's own rate limits (platform admin); `null` restores the platform default.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/limits", tag = "tenants",
    params(("tenant_id" = Uuid, Path)), request_body = TenantLimitsInput,
    responses((status = 200, body = TenantLimits), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<uuid::Uuid>,
    body: web::Json<TenantLimitsInput>,
) -> Result<web::Json<TenantLimits>, ApiError> {
    // A platform route: the tenant comes from the path, not from a membership.
    let tenant = TenantId::from_uuid(path.into_inner());
    let input = body.into_inner();
    let mut errors = Errors::default();
    check(&mut errors, "tenant", input.tenant);
    check(&mut errors, "per_connection", input.per_connection);
    errors.finish()?;
    let pair = |l: Option<RateLimit>| l.map(|l| (l.per_minute, l.burst));
    let mut tx = state.store.tenant_tx(tenant).await?;
    let before = store_tenants::limits(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("This tenant"))?;
    let own = OwnLimits {
        tenant: pair(input.tenant),
        per_connection: pair(input.per_connection),
    };
    let after = store_tenants::set_limits(&mut tx, own)
        .await?
        .ok_or_else(|| ApiError::not_found("This tenant"))?;
    record(
        &mut tx,
        &auth,
        Action::TenantLimitsChanged,
        Target::Tenant(tenant),
        serde_json::json!({
            "before": { "tenant": before.tenant, "per_connection": before.per_connection },
            "after": { "tenant": after.tenant, "per_connection": after.per_connection },
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(in_force(after, state.default_limits)))
}
