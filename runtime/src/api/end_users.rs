//! `/api/tenants/{tenant_id}/end-users`: the people who talk to the tenant's agents, most
//! recently seen first, searchable by name or channel id; what the agents remember about each,
//! and erasing one.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use shared::channel::ChannelKind;
use shared::knowledge::Memory;
use shared::resources::{EndUser, Page};
use shared::{EndUserId, ErrorBody};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::{AppState, PageQuery, record};
use crate::store::audit::{Action, Target};
use crate::store::end_users::{self, EndUserRow};
use crate::store::knowledge as kstore;

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

fn memory_dto(row: kstore::MemoryRow) -> Memory {
    Memory {
        id: row.id,
        end_user_id: row.end_user_id,
        text: row.text,
        conversation_id: row.conversation_id,
        created_at: row.created_at,
    }
}

/// What the agents remember about an end user, newest first (customer admin).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/end-users/{end_user_id}/memories", tag = "end_users",
    params(("tenant_id" = Uuid, Path), ("end_user_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Memory>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn memories(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, EndUserId)>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<Memory>>, ApiError> {
    let (_, id) = path.into_inner();
    let paging = query.resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    if end_users::get(&mut tx, id).await?.is_none() {
        return Err(ApiError::not_found("The end user"));
    }
    let (rows, total) = kstore::memories_of(&mut tx, id, paging.limit(), paging.offset()).await?;
    Ok(web::Json(
        paging.page(rows.into_iter().map(memory_dto).collect(), total),
    ))
}

/// Delete one memory: it is never recalled again (customer admin).
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/end-users/{end_user_id}/memories/{memory_id}", tag = "end_users",
    params(("tenant_id" = Uuid, Path), ("end_user_id" = Uuid, Path), ("memory_id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_memory(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, EndUserId, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (_, end_user, id) = path.into_inner();
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    if !kstore::delete_memory(&mut tx, end_user, id).await? {
        return Err(ApiError::not_found("The memory"));
    }
    record(
        &mut tx,
        &auth,
        Action::MemoryDeleted,
        Target::Memory(id),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    if let Some(k) = state.knowledge.as_ref()
        && let Err(e) = k.unindex_points(tenant, vec![id]).await
    {
        // Postgres no longer has it, so it is never recalled; the index heals on rebuild.
        tracing::warn!(tenant.id = %tenant, error = %e, "memory vector not removed from the index yet");
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Erase an end user: their conversations and messages, memories, vectors and cached state,
/// everywhere in the tenant (customer admin). The audit trail keeps that it happened, with
/// counts, never content.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/end-users/{end_user_id}", tag = "end_users",
    params(("tenant_id" = Uuid, Path), ("end_user_id" = Uuid, Path)),
    responses((status = 204, description = "erased"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn erase(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, EndUserId)>,
) -> Result<HttpResponse, ApiError> {
    let (_, id) = path.into_inner();
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let erased = kstore::erase_end_user(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The end user"))?;
    // The index follows by this job should the removal below fail.
    crate::knowledge::jobs::enqueue_unindex(&mut tx, *id.as_uuid(), false).await?;
    record(
        &mut tx,
        &auth,
        Action::EndUserErased,
        Target::EndUser(id),
        serde_json::json!({
            "conversations": erased.conversations,
            "messages": erased.messages,
            "memories": erased.memories,
        }),
    )
    .await?;
    tx.commit().await?;
    for (connection, key) in &erased.conversation_keys {
        let redis_key = state
            .redis
            .key(&format!("{tenant}:conversation:{connection}:{key}"));
        if let Err(e) = state.redis.delete(&redis_key).await {
            tracing::warn!(tenant.id = %tenant, error = %e, "a conversation's cached state was not deleted; it expires");
        }
    }
    if let Some(k) = state.knowledge.as_ref()
        && let Err(e) = k.unindex_source(tenant, *id.as_uuid()).await
    {
        tracing::warn!(tenant.id = %tenant, error = %e, "memory vectors left for the unindex job");
    }
    Ok(HttpResponse::NoContent().finish())
}
