//! `/api/tenants`: the platform admin's tenant management, and a tenant's own record.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use shared::resources::{Page, Tenant, TenantCreate, TenantUpdate};
use shared::{ErrorBody, ErrorCode, TenantId};

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::{self, Errors};
use super::{AppState, PageQuery, record};
use crate::jobs::tenant_purge;
use crate::store::StoreError;
use crate::store::audit::{Action, Target};
use crate::store::tenants::{self as store_tenants, TenantRow};

/// `?q=` search on name and slug, plus paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TenantQuery {
    /// Matches name or slug, case-insensitive.
    pub q: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

/// `?confirm=` for deletion: the tenant's slug, typed by the operator.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    pub confirm: Option<String>,
}

pub(crate) fn to_dto(row: TenantRow) -> Tenant {
    Tenant {
        id: row.id,
        slug: row.slug,
        name: row.name,
        status: row.status,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn slug_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => ApiError::new(
            ErrorCode::Conflict,
            "Another tenant already uses this slug.",
        ),
        other => other.into(),
    }
}

/// List every tenant (platform admin), newest first.
#[utoipa::path(get, path = "/api/tenants", tag = "tenants", params(TenantQuery),
    responses((status = 200, body = Page<Tenant>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    _auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<TenantQuery>,
) -> Result<web::Json<Page<Tenant>>, ApiError> {
    let paging = PageQuery {
        page: query.page,
        per_page: query.per_page,
    }
    .resolve()?;
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let (rows, total) =
        store_tenants::list_all(&state.store, search, paging.limit(), paging.offset()).await?;
    Ok(web::Json(
        paging.page(rows.into_iter().map(to_dto).collect(), total),
    ))
}

/// Create a tenant (platform admin).
#[utoipa::path(post, path = "/api/tenants", tag = "tenants", request_body = TenantCreate,
    responses((status = 201, body = Tenant), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<TenantCreate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = body.name.trim().to_string();
    let slug = body.slug.unwrap_or_else(|| validate::slugify(&name));
    let mut errors = Errors::default();
    errors.text("name", &name, true, 200);
    if !validate::is_slug(&slug) {
        errors.add(
            "slug",
            "use 1–63 lower-case letters, digits and inner dashes",
        );
    }
    errors.finish()?;
    let (row, mut tx) = store_tenants::create(&state.store, &slug, &name)
        .await
        .map_err(slug_conflict)?;
    record(
        &mut tx,
        &auth,
        Action::TenantCreated,
        Target::Tenant(row.id),
        serde_json::json!({ "after": { "name": row.name, "slug": row.slug } }),
    )
    .await?;
    tx.commit().await.map_err(slug_conflict)?;
    Ok(HttpResponse::Created().json(to_dto(row)))
}

/// Read one tenant (its members and platform admins).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<Tenant>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = store_tenants::current(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    Ok(web::Json(to_dto(row)))
}

/// Rename, re-slug, suspend or reactivate a tenant (platform admin).
#[utoipa::path(patch, path = "/api/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = uuid::Uuid, Path)), request_body = TenantUpdate,
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<uuid::Uuid>,
    body: web::Json<TenantUpdate>,
) -> Result<web::Json<Tenant>, ApiError> {
    let body = body.into_inner();
    let mut errors = Errors::default();
    if let Some(name) = &body.name {
        errors.text("name", name, true, 200);
    }
    if let Some(slug) = &body.slug
        && !validate::is_slug(slug)
    {
        errors.add(
            "slug",
            "use 1–63 lower-case letters, digits and inner dashes",
        );
    }
    errors.finish()?;
    let tenant = TenantId::from_uuid(path.into_inner());
    let mut tx = state.store.tenant_tx(tenant).await?;
    let before = store_tenants::current(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    let after = store_tenants::update(
        &mut tx,
        body.name.as_deref().map(str::trim),
        body.slug.as_deref(),
        body.status,
    )
    .await
    .map_err(slug_conflict)?
    .ok_or_else(|| ApiError::not_found("The tenant"))?;
    record(
        &mut tx,
        &auth,
        Action::TenantUpdated,
        Target::Tenant(after.id),
        serde_json::json!({
            "before": { "name": before.name, "slug": before.slug, "status": before.status },
            "after": { "name": after.name, "slug": after.slug, "status": after.status },
        }),
    )
    .await?;
    tx.commit().await.map_err(slug_conflict)?;
    Ok(web::Json(to_dto(after)))
}

/// Delete a tenant (platform admin). Pass `?confirm=<the tenant's slug>`. Its members' access,
/// agents, channel connections, conversations and messages are erased at once; accounts stay
/// (they may belong to other tenants); the audit trail is kept, append-only, ending with
/// `tenant.deleted`. Its Redis keys are deleted by the `tenant.purge_redis` job, enqueued in the
/// same transaction.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = uuid::Uuid, Path), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody),
              (status = 422, description = "confirm is missing or is not the slug", body = ErrorBody)))]
pub async fn delete(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<uuid::Uuid>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = TenantId::from_uuid(path.into_inner());
    let mut tx = state.store.tenant_tx(tenant).await?;
    let row = store_tenants::current(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    if query.confirm.as_deref() != Some(row.slug.as_str()) {
        return Err(ApiError::invalid_field(
            "confirm",
            format!("type the tenant's slug ({}) to confirm deletion", row.slug),
        ));
    }
    record(
        &mut tx,
        &auth,
        Action::TenantDeleted,
        Target::Tenant(row.id),
        serde_json::json!({ "before": { "name": row.name, "slug": row.slug } }),
    )
    .await?;
    // Its vectors leave the shared index and its originals the disk the same way (the job
    // needs the models it used, read before the rows go).
    crate::knowledge::jobs::enqueue_tenant_purge(&mut tx).await?;
    store_tenants::delete(&mut tx).await?;
    // Its conversation windows, dedupe keys and parked messages go too, by a durable job that
    // commits with the deletion: it cannot be forgotten, and it is retried while Redis is down.
    tenant_purge::enqueue(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
