//! `/api/tenants/{tenant_id}/jobs`: the tenant's background jobs — what ran, what waits, what
//! failed and why — and queuing a failed one again. Payloads are never shown.

use actix_web::web;
use serde::Deserialize;
use shared::resources::{Job, JobStatus, Page};
use shared::{ErrorBody, ErrorCode};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, PageQuery, record};
use crate::store::StoreError;
use crate::store::audit::{Action, Target};
use crate::store::jobs::{self as store_jobs, JobRow, Requeue};

/// `?status=&kind=` filters, plus paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct JobQuery {
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// A job kind, e.g. `tenant.purge_redis`.
    pub kind: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

fn to_dto(row: JobRow) -> Result<Job, ApiError> {
    let status = row.status()?;
    Ok(Job {
        id: row.id,
        kind: row.kind,
        status,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        max_attempts: u32::try_from(row.max_attempts).unwrap_or(0),
        run_at: row.run_at,
        last_error: row.last_error,
        created_at: row.created_at,
        finished_at: row.finished_at,
    })
}

/// The tenant's jobs, newest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/jobs", tag = "jobs",
    params(("tenant_id" = Uuid, Path), JobQuery),
    responses((status = 200, body = Page<Job>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<JobQuery>,
) -> Result<web::Json<Page<Job>>, ApiError> {
    let query = query.into_inner();
    let mut errors = Errors::default();
    let status = match query
        .status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => {
            let parsed = JobStatus::parse(s);
            if parsed.is_none() {
                errors.add(
                    "status",
                    "must be queued, running, succeeded, failed or cancelled",
                );
            }
            parsed
        }
    };
    let kind = query
        .kind
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if kind.is_some_and(|k| !crate::jobs::is_valid_kind(k)) {
        errors.add("kind", "must be a job kind, like tenant.purge_redis");
    }
    errors.finish()?;
    let paging = PageQuery {
        page: query.page,
        per_page: query.per_page,
    }
    .resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) =
        store_jobs::list(&mut tx, status, kind, paging.limit(), paging.offset()).await?;
    let items = rows
        .into_iter()
        .map(to_dto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(web::Json(paging.page(items, total)))
}

/// One of the tenant's jobs.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/jobs/{job_id}", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("job_id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Job>, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = store_jobs::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The job"))?;
    Ok(web::Json(to_dto(row)?))
}

/// Queue a failed or cancelled job again, at once, with as many attempts again as it was first
/// given (customer admin).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/jobs/{job_id}/retry", tag = "jobs",
    params(("tenant_id" = Uuid, Path), ("job_id" = Uuid, Path)),
    responses((status = 200, description = "queued again", body = Job),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "the job is not failed or cancelled, or an equivalent job is already queued", body = ErrorBody)))]
pub async fn retry(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Job>, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = match store_jobs::requeue(&mut tx, id).await {
        Ok(Requeue::Queued(row)) => row,
        Ok(Requeue::NotRetryable(status)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "Only a failed or cancelled job can be retried; this one is {}.",
                    status.as_str()
                ),
            ));
        }
        Ok(Requeue::NotFound) => return Err(ApiError::not_found("The job")),
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "An equivalent job is already queued or running.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    record(
        &mut tx,
        &auth,
        Action::JobRetried,
        Target::Job(row.id),
        serde_json::json!({ "kind": row.kind }),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(to_dto(row)?))
}
