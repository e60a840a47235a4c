//! `/api/tenants/{tenant_id}/knowledge`: the tenant's knowledge base — upload or import
//! documents, follow their indexing, retry, assign to agents, delete, search as an agent would —
//! and its embedding index (rebuild with another model).

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use shared::knowledge::{
    Document, DocumentSource, DocumentStatus, DocumentUpdate, KnowledgeIndex, KnowledgeIndexChange,
    KnowledgeQuery, KnowledgeResults, UrlImport,
};
use shared::resources::Page;
use shared::{AgentId, ErrorBody, ErrorCode};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, PageQuery, record};
use crate::embed::ModelSpec;
use crate::knowledge::{Knowledge, jobs as kjobs};
use crate::store::TenantTx;
use crate::store::audit::{Action, Target};
use crate::store::knowledge::{self as kstore, DocumentRow, NewDocument};

fn service(state: &AppState) -> Result<&Knowledge, ApiError> {
    state.knowledge.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "The knowledge base is not available on this server.",
        )
    })
}

fn to_dto(row: DocumentRow) -> Document {
    let n = |v: i32| u32::try_from(v).unwrap_or(0);
    Document {
        id: row.id,
        title: row.title,
        source: row.source,
        url: row.url,
        filename: row.filename,
        format: row.format,
        size_bytes: u64::try_from(row.size_bytes).unwrap_or(0),
        status: row.status,
        error: row.error,
        progress_done: n(row.progress_done),
        progress_total: n(row.progress_total),
        chunks: n(row.chunks),
        pages: row.pages.map(n),
        agent_ids: row
            .agent_ids
            .map(|ids| ids.into_iter().map(AgentId::from_uuid).collect()),
        created_at: row.created_at,
        updated_at: row.updated_at,
        ready_at: row.ready_at,
    }
}

/// `?status=` plus paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DocumentQuery {
    /// `queued`, `extracting`, `embedding`, `ready` or `failed`.
    pub status: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

/// The tenant's documents, newest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/knowledge", tag = "knowledge",
    params(("tenant_id" = Uuid, Path), DocumentQuery),
    responses((status = 200, body = Page<Document>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<DocumentQuery>,
) -> Result<web::Json<Page<Document>>, ApiError> {
    let status = match query
        .status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(DocumentStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "status",
                "must be queued, extracting, embedding, ready or failed",
            )
        })?),
    };
    let paging = PageQuery {
        page: query.page,
        per_page: query.per_page,
    }
    .resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) =
        kstore::list_documents(&mut tx, status, paging.limit(), paging.offset()).await?;
    Ok(web::Json(
        paging.page(rows.into_iter().map(to_dto).collect(), total),
    ))
}

/// One document.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/knowledge/{document_id}", tag = "knowledge",
    params(("tenant_id" = Uuid, Path), ("document_id" = Uuid, Path)),
    responses((status = 200, body = Document), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Document>, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = kstore::get_document(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The document"))?;
    Ok(web::Json(to_dto(row)))
}

/// `?filename=&title=` of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file's name, shown in the list (its type is read from the content, not the name).
    pub filename: Option<String>,
    /// Shown in citations; the document's own title (or the file name) when absent.
    pub title: Option<String>,
}

fn clean_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            format!("at most {max} characters, no control characters"),
        ));
    }
    Ok(Some(v.to_string()))
}

/// The agents named exist in the tenant (unknown ids are a field error, never a silent drop).
async fn check_agents(
    tx: &mut TenantTx,
    agents: Option<&[AgentId]>,
) -> Result<Option<Vec<AgentId>>, ApiError> {
    let Some(agents) = agents else {
        return Ok(None);
    };
    if agents.len() > 200 {
        return Err(ApiError::invalid_field("agent_ids", "at most 200 agents"));
    }
    let mut out: Vec<AgentId> = agents.to_vec();
    out.sort();
    out.dedup();
    for id in &out {
        if crate::store::agents::get(tx, *id).await?.is_none() {
            return Err(ApiError::invalid_field(
                "agent_ids",
                "names an agent that does not exist",
            ));
        }
    }
    Ok(Some(out))
}

/// Adds the document row, enqueues its indexing and audits it, in the caller's transaction.
async fn add(tx: &mut TenantTx, auth: &Authorized, doc: &NewDocument<'_>) -> Result<(), ApiError> {
    kstore::insert_document(tx, doc).await?;
    kjobs::enqueue_index(tx, doc.id).await?;
    record(
        tx,
        auth,
        Action::DocumentAdded,
        Target::Document(doc.id),
        serde_json::json!({ "source": doc.source.as_str(), "size_bytes": doc.size_bytes }),
    )
    .await
}

/// Upload a document: the raw bytes as the body (Markdown, plain text, HTML or PDF, sniffed
/// from the content), indexed in the background (customer admin). Answers 202 with the
/// document in `queued`.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/knowledge", tag = "knowledge",
    params(("tenant_id" = Uuid, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 202, body = Document), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn upload(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<UploadQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let k = service(&state)?;
    let filename = clean_text("filename", query.filename.as_deref(), 255)?;
    let title = clean_text("title", query.title.as_deref(), 300)?;
    let max = k.settings().max_document_bytes;
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "The upload was interrupted."))?;
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("A document may be at most {} MB.", max / (1024 * 1024)),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(ApiError::invalid_field("body", "the file is empty"));
    }
    // Refused now rather than queued to fail: the type is read from the content.
    match crate::knowledge::extract::sniff(&bytes, None) {
        Ok(_) => {}
        Err(crate::knowledge::extract::ExtractError::Empty) => {
            return Err(ApiError::invalid_field("body", "the file has no text"));
        }
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                e.to_string(),
            ));
        }
    }
    let tenant = auth.tenant()?;
    let id = Uuid::new_v4();
    k.keep_original(tenant, id, &bytes)
        .await
        .map_err(ApiError::internal)?;
    let title = title
        .or_else(|| filename.clone())
        .unwrap_or_else(|| "Untitled".into());
    let mut tx = state.store.tenant_tx(tenant).await?;
    let doc = NewDocument {
        id,
        title: &title,
        source: DocumentSource::Upload,
        url: None,
        filename: filename.as_deref(),
        size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        agent_ids: None,
        created_by: Some(auth.principal().user.id),
    };
    let added = add(&mut tx, &auth, &doc).await;
    if let Err(e) = added {
        let _ = k.drop_original(tenant, id).await;
        return Err(e);
    }
    accepted(tx, id).await
}

/// 202 with the document as this transaction leaves it (queued), then committed: a runner may
/// be at work on it before the answer arrives.
async fn accepted(mut tx: TenantTx, id: Uuid) -> Result<HttpResponse, ApiError> {
    let row = kstore::get_document(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The document"))?;
    tx.commit().await?;
    Ok(HttpResponse::Accepted().json(to_dto(row)))
}

/// Import a document from a public URL, fetched in the background through the outbound client
/// (customer admin). Addresses of our own network are refused now and at every redirect.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/knowledge/import", tag = "knowledge",
    params(("tenant_id" = Uuid, Path)), request_body = UrlImport,
    responses((status = 202, body = Document), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<UrlImport>,
) -> Result<HttpResponse, ApiError> {
    let k = service(&state)?;
    let body = body.into_inner();
    let mut errors = Errors::default();
    let url = body.url.trim().to_string();
    if url.is_empty() || url.len() > 2048 {
        errors.add(
            "url",
            "must be an http or https URL of at most 2048 characters",
        );
    }
    let title = match clean_text("title", Some(&body.title), 300) {
        Ok(t) => t,
        Err(_) => {
            errors.add("title", "at most 300 characters, no control characters");
            None
        }
    };
    if url::Url::parse(&url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
        errors.add("url", "must not carry a user name or password");
    }
    errors.finish()?;
    if let Err(e) = k.http().check(&url).await {
        return Err(ApiError::invalid_field("url", e.to_string()));
    }
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let agents = check_agents(&mut tx, body.agent_ids.as_deref()).await?;
    let id = Uuid::new_v4();
    let shown = title.unwrap_or_else(|| display_url(&url));
    let doc = NewDocument {
        id,
        title: &shown,
        source: DocumentSource::Url,
        url: Some(&url),
        filename: None,
        size_bytes: 0,
        agent_ids: agents.as_deref(),
        created_by: Some(auth.principal().user.id),
    };
    add(&mut tx, &auth, &doc).await?;
    accepted(tx, id).await
}

/// A URL as a title: host and path, never its query or credentials.
fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}{}", u.host_str().unwrap_or(""), u.path())
            .chars()
            .take(300)
            .collect(),
        Err(_) => "Imported page".into(),
    }
}

/// Change a document's title and the agents that use it (customer admin).
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/knowledge/{document_id}", tag = "knowledge",
    params(("tenant_id" = Uuid, Path), ("document_id" = Uuid, Path)), request_body = DocumentUpdate,
    responses((status = 200, body = Document), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<DocumentUpdate>,
) -> Result<web::Json<Document>, ApiError> {
    let (_, id) = path.into_inner();
    let body = body.into_inner();
    let title = clean_text("title", Some(&body.title), 300)?
        .ok_or_else(|| ApiError::invalid_field("title", "must not be empty"))?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let agents = check_agents(&mut tx, body.agent_ids.as_deref()).await?;
    if !kstore::update_document(&mut tx, id, &title, agents.as_deref()).await? {
        return Err(ApiError::not_found("The document"));
    }
    record(
        &mut tx,
        &auth,
        Action::DocumentUpdated,
        Target::Document(id),
        serde_json::json!({ "agents": agents.as_ref().map(Vec::len) }),
    )
    .await?;
    let row = kstore::get_document(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The document"))?;
    tx.commit().await?;
    Ok(web::Json(to_dto(row)))
}

/// Index a failed document again (customer admin).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/knowledge/{document_id}/retry", tag = "knowledge",
    params(("tenant_id" = Uuid, Path), ("document_id" = Uuid, Path)),
    responses((status = 202, body = Document), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (_, id) = path.into_inner();
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let row = kstore::get_document(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The document"))?;
    // A ready URL document may be imported again (it re-embeds only what changed).
    let again = row.status == DocumentStatus::Failed
        || (row.status == DocumentStatus::Ready && row.source == DocumentSource::Url);
    if !again {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "Only a failed document (or a ready imported one) can be indexed again; this one is {}.",
                row.status.as_str()
            ),
        ));
    }
    kstore::set_status(&mut tx, id, DocumentStatus::Queued, 0, 0).await?;
    if kjobs::enqueue_index(&mut tx, id).await?.is_none() {
        // Its last attempt is still finishing: it will say how it went.
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "This document is being indexed right now; try again once it has finished.",
        ));
    }
    record(
        &mut tx,
        &auth,
        Action::DocumentRetried,
        Target::Document(id),
        serde_json::json!({}),
    )
    .await?;
    accepted(tx, id).await
}

/// Delete a document with its passages, vectors and original (customer admin).
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/knowledge/{document_id}", tag = "knowledge",
    params(("tenant_id" = Uuid, Path), ("document_id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (_, id) = path.into_inner();
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    if !kstore::delete_document(&mut tx, id).await? {
        return Err(ApiError::not_found("The document"));
    }
    // The index and the original follow: at once below, and by the job should that fail.
    kjobs::enqueue_unindex(&mut tx, id, true).await?;
    record(
        &mut tx,
        &auth,
        Action::DocumentDeleted,
        Target::Document(id),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    if let Some(k) = state.knowledge.as_ref() {
        if let Err(e) = k.unindex_source(tenant, id).await {
            tracing::warn!(tenant.id = %tenant, error = %e, "document vectors left for the unindex job");
        }
        if let Err(e) = k.drop_original(tenant, id).await {
            tracing::warn!(tenant.id = %tenant, error = %e, "original left for the unindex job");
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

/// What an agent would retrieve for a message: the passages above the relevance floor, best
/// first, with their scores.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/knowledge/search", tag = "knowledge",
    params(("tenant_id" = Uuid, Path)), request_body = KnowledgeQuery,
    responses((status = 200, body = KnowledgeResults), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn search(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<KnowledgeQuery>,
) -> Result<web::Json<KnowledgeResults>, ApiError> {
    let k = service(&state)?;
    let body = body.into_inner();
    let q = body.q.trim();
    if q.is_empty() || q.chars().count() > 2000 {
        return Err(ApiError::invalid_field("q", "must be 1 to 2000 characters"));
    }
    let limit = body.limit.unwrap_or(5);
    if !(1..=20).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be between 1 and 20"));
    }
    let tenant = auth.tenant()?;
    if let Some(agent) = body.agent_id {
        let mut tx = state.store.tenant_tx(tenant).await?;
        if crate::store::agents::get(&mut tx, agent).await?.is_none() {
            return Err(ApiError::invalid_field("agent_id", "no such agent"));
        }
    }
    let results = k
        .search(tenant, body.agent_id, q, limit as usize)
        .await
        .map_err(knowledge_error)?;
    Ok(web::Json(results))
}

fn knowledge_error(e: crate::knowledge::KnowledgeError) -> ApiError {
    use crate::knowledge::KnowledgeError as E;
    match e {
        E::Store(e) => e.into(),
        E::ModelUnavailable(_) => ApiError::new(ErrorCode::Unavailable, e.to_string()),
        E::Embed(inner) if inner.is_retryable() => ApiError::unavailable(inner),
        other => ApiError::internal(other),
    }
}

async fn index_dto(k: &Knowledge, tx: &mut TenantTx) -> Result<KnowledgeIndex, ApiError> {
    let row = kstore::index(tx).await?;
    let (model, dimension) = match &row {
        Some(r) => (r.model.clone(), u32::try_from(r.dimension).unwrap_or(0)),
        None => match k.default_model() {
            ModelSpec::Local => (crate::embed::LOCAL.to_string(), 384),
            other => (other.name(), 0),
        },
    };
    let model = if model.starts_with("pocket-encoder/") {
        crate::embed::LOCAL.to_string()
    } else {
        model
    };
    let n = |v: i32| u32::try_from(v).unwrap_or(0);
    Ok(KnowledgeIndex {
        model,
        dimension,
        building: row.as_ref().and_then(|r| r.building.clone()),
        building_done: row.as_ref().map_or(0, |r| n(r.building_done)),
        building_total: row.as_ref().map_or(0, |r| n(r.building_total)),
        building_error: row.as_ref().and_then(|r| r.building_error.clone()),
        available: k.available(),
    })
}

/// The tenant's embedding index: its model, and a rebuild under way.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/knowledge/index", tag = "knowledge",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = KnowledgeIndex), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn index(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<KnowledgeIndex>, ApiError> {
    let k = service(&state)?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    Ok(web::Json(index_dto(k, &mut tx).await?))
}

/// Rebuild the index with another embedding model (customer admin): the new index is built
/// beside the current one, which keeps answering until the new one is complete.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/knowledge/index", tag = "knowledge",
    params(("tenant_id" = Uuid, Path)), request_body = KnowledgeIndexChange,
    responses((status = 202, body = KnowledgeIndex), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn change_index(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<KnowledgeIndexChange>,
) -> Result<HttpResponse, ApiError> {
    let k = service(&state)?;
    let spec = ModelSpec::parse(&body.model)
        .filter(|s| k.available().contains(&s.name()))
        .ok_or_else(|| ApiError::invalid_field("model", "must be one of the available models"))?;
    let tenant = auth.tenant()?;
    // The model must work before anything is rebuilt with it (a tenant's own key, a server).
    let embedder = k
        .embedder(tenant, &spec)
        .await
        .map_err(|e| ApiError::invalid_field("model", e.to_string()))?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let current = kstore::index(&mut tx).await?;
    match current {
        None => {
            // Nothing embedded yet: the tenant's first vectors are made with this model.
            drop(tx);
            let space = crate::knowledge::WriteSpace {
                spec: spec.clone(),
                embedder,
                known: None,
            };
            k.embed_for(tenant, &space, &["Konstruct".to_string()])
                .await
                .map_err(knowledge_error)?;
            tx = state.store.tenant_tx(tenant).await?;
        }
        Some(mut row) => {
            if row.building.is_some() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "A rebuild is already under way; wait for it to finish.",
                ));
            }
            if row.model != embedder.model() {
                row.building = Some(spec.name());
                row.building_done = 0;
                row.building_total = 0;
                row.building_error = None;
                kstore::put_index(&mut tx, &row).await?;
                if kjobs::enqueue_reindex(&mut tx, &spec.name())
                    .await?
                    .is_none()
                {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "The last rebuild is still finishing; try again in a moment.",
                    ));
                }
            }
        }
    }
    record(
        &mut tx,
        &auth,
        Action::IndexRebuildStarted,
        Target::None,
        serde_json::json!({ "model": spec.name() }),
    )
    .await?;
    let dto = index_dto(k, &mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Accepted().json(dto))
}
