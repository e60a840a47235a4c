//! `/api/tenants/{tenant_id}/settings`: the tenant's own settings — its time zone (its days,
//! months and business hours) and locale — which its customer admins change; and
//! `/api/time-zones`, the zones to choose from.

use actix_web::web;
use chrono::Utc;
use shared::ErrorBody;
use shared::resources::{TenantSettings, TenantSettingsInput};

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, record};
use crate::store::audit::{Action, Target};
use crate::store::tenants::{self as store_tenants, TenantSettingsRow};
use crate::time::{self, TenantZone};

fn to_dto(row: TenantSettingsRow) -> TenantSettings {
    let zone = TenantZone::parse(&row.time_zone).unwrap_or_default();
    TenantSettings {
        local_time: zone.local_time(Utc::now()),
        time_zone: row.time_zone,
        locale: row.locale,
    }
}

/// The tenant's settings, with its local time now.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/settings", tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = TenantSettings), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<TenantSettings>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = store_tenants::settings(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    Ok(web::Json(to_dto(row)))
}

/// Change the tenant's time zone and locale.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/settings", tag = "tenants",
    params(("tenant_id" = Uuid, Path)), request_body = TenantSettingsInput,
    responses((status = 200, body = TenantSettings), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<TenantSettingsInput>,
) -> Result<web::Json<TenantSettings>, ApiError> {
    let input = body.into_inner();
    let mut errors = Errors::default();
    let zone = TenantZone::parse(input.time_zone.trim());
    if zone.is_none() {
        errors.add(
            "time_zone",
            "not a time zone we know: use an IANA name such as Europe/Berlin (see GET /api/time-zones)",
        );
    }
    if !time::is_locale(input.locale.trim()) {
        errors.add(
            "locale",
            "a language, optionally with a region: en, en-GB, pt-BR",
        );
    }
    errors.finish()?;
    let wanted = TenantSettingsRow {
        time_zone: zone.map(|z| z.name().to_string()).unwrap_or_default(),
        locale: input.locale.trim().to_string(),
    };
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let before = store_tenants::settings(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    let after = store_tenants::set_settings(&mut tx, &wanted)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    record(
        &mut tx,
        &auth,
        Action::TenantSettingsChanged,
        Target::Tenant(auth.tenant()?),
        serde_json::json!({
            "before": { "time_zone": before.time_zone, "locale": before.locale },
            "after": { "time_zone": after.time_zone, "locale": after.locale },
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(to_dto(after)))
}

/// Every time zone a tenant can choose (IANA names, sorted).
#[utoipa::path(get, path = "/api/time-zones", tag = "tenants",
    responses((status = 200, body = Vec<String>), (status = 401, body = ErrorBody)))]
pub async fn time_zones(_auth: Authorized) -> web::Json<Vec<&'static str>> {
    web::Json(time::zone_names())
}
