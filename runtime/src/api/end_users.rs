//! `/api/tenants/{tenant_id}/end-users`: the people who talk to the tenant's agents, most
//! recently seen first, searchable by name or channel id.

use actix_web::web;
use serde::Deserialize;
use shared::channel::ChannelKind;
use shared::resources::{EndUser, Page};
use shared::{EndUserId, ErrorBody};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::{AppState, PageQuery};
use crate::store::end_users::{self, EndUserRow};

/// `?q=&channel=` plus paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EndUserQuery {
    /// Matches the display name or the channel id, case-insensitive.
    pub q: Option<String>,
    pub channel: Option<ChannelKind>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

fn to_dto(row: EndUserRow) -> EndUser {
    EndUser {
        id: row.id,
        channel: row.channel,
        external_id: row.external_id,
        display_name: row.display_name,
        first_seen_at: row.first_seen_at,
        last_seen_at: row.last_seen_at,
        conversations: u64::try_from(row.conversations).unwrap_or(0),
    }
}

/// The tenant's end users.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/end-users", tag = "end_users",
    params(("tenant_id" = Uuid, Path), EndUserQuery),
    responses((status = 200, body = Page<EndUser>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<EndUserQuery>,
) -> Result<web::Json<Page<EndUser>>, ApiError> {
    let paging = PageQuery {
        page: query.page,
        per_page: query.per_page,
    }
    .resolve()?;
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if search.is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::invalid_field("q", "at most 200 characters"));
    }
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) = end_users::list(
        &mut tx,
        search,
        query.channel,
        paging.limit(),
        paging.offset(),
    )
    .await?;
    Ok(web::Json(
        paging.page(rows.into_iter().map(to_dto).collect(), total),
    ))
}

/// One end user.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/end-users/{end_user_id}", tag = "end_users",
    params(("tenant_id" = Uuid, Path), ("end_user_id" = Uuid, Path)),
    responses((status = 200, body = EndUser), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, EndUserId)>,
) -> Result<web::Json<EndUser>, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = end_users::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The end user"))?;
    Ok(web::Json(to_dto(row)))
}
