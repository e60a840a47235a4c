//! The knowledge base's durable jobs: indexing a document (`knowledge.index`), removing a
//! source's vectors from the index (`knowledge.unindex`), rebuilding a tenant's index with
//! another model (`knowledge.reindex`), summarising a conversation into memories of its end user
//! (`memory.summarise`) and removing a deleted tenant's vectors (`tenant.purge_vectors`).
//!
//! Each is safe to run again: indexing compares passage hashes with what is stored and embeds
//! only what changed; removals of what is gone are no-ops; a summary starts after the last
//! message summarised before.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::knowledge::{DocumentSource, DocumentStatus};
use shared::{ConversationId, TenantId};
use uuid::Uuid;

use super::chunk::{self, Chunk};
use super::extract::{self, ExtractError, Limits};
use super::{Knowledge, KnowledgeError, WriteSpace};
use crate::embed::ModelSpec;
use crate::jobs::{Job, JobContext, JobError, JobHandler};
use crate::store::jobs::{self as store_jobs, NewJob};
use crate::store::knowledge::{self as kstore, ChunkRow, EmbeddingRow, IndexRow, VectorKind};
use crate::store::{StoreResult, TenantTx};
use crate::vector::{Collection, Selector};

pub const INDEX: &str = "knowledge.index";
pub const UNINDEX: &str = "knowledge.unindex";
pub const REINDEX: &str = "knowledge.reindex";
pub const SUMMARISE: &str = "memory.summarise";
pub const PURGE_TENANT: &str = "tenant.purge_vectors";

/// Passages embedded (and their progress recorded) per step.
const STEP: usize = 32;

/// The most characters a passage keeps (the model reads ~128 tokens; this only stops a text
/// of enormous "words" from reaching the prompt whole).
const MAX_CHUNK_CHARS: usize = 2000;

/// Queues the indexing of a document (a no-op while one is queued or running for it).
pub async fn enqueue_index(tx: &mut TenantTx, document: Uuid) -> StoreResult<Option<Uuid>> {
    let key = document.to_string();
    let mut job = NewJob::new(INDEX, json!({ "document": document }));
    job.dedupe_key = Some(&key);
    job.max_attempts = Some(6);
    store_jobs::enqueue(tx, &job).await
}

/// Queues the removal of a source's vectors from the index (after its rows are deleted), and
/// of its original when the source is a document.
pub async fn enqueue_unindex(
    tx: &mut TenantTx,
    source: Uuid,
    document: bool,
) -> StoreResult<Option<Uuid>> {
    store_jobs::enqueue(
        tx,
        &NewJob::new(UNINDEX, json!({ "source": source, "document": document })),
    )
    .await
}

/// Queues a rebuild of the tenant's index with `spec`.
pub async fn enqueue_reindex(tx: &mut TenantTx, spec: &str) -> StoreResult<Option<Uuid>> {
    let mut job = NewJob::new(REINDEX, json!({ "model": spec }));
    job.dedupe_key = Some("index");
    job.max_attempts = Some(6);
    store_jobs::enqueue(tx, &job).await
}

/// Queues the summary of a conversation's new messages after `delay` (one queued per
/// conversation: later turns ride on it).
pub async fn enqueue_summary(
    tx: &mut TenantTx,
    conversation: ConversationId,
    delay: std::time::Duration,
) -> StoreResult<Option<Uuid>> {
    let key = conversation.to_string();
    let mut job = NewJob::new(SUMMARISE, json!({ "conversation": conversation }));
    job.dedupe_key = Some(&key);
    job.delay = Some(delay);
    job.max_attempts = Some(5);
    store_jobs::enqueue(tx, &job).await
}

/// Queues the removal of a deleted tenant's vectors from the collections it used, inside the
/// transaction that deletes it (the rows go with the tenant; the index is told by this job).
pub async fn enqueue_tenant_purge(tx: &mut TenantTx) -> StoreResult<Option<Uuid>> {
    let mut models: Vec<Value> = Vec::new();
    if let Some(row) = kstore::index(tx).await? {
        models.push(json!([row.model, row.dimension]));
        if let (Some(m), Some(d)) = (row.building_model, row.building_dimension) {
            models.push(json!([m, d]));
        }
    }
    store_jobs::enqueue(tx, &NewJob::new(PURGE_TENANT, json!({ "models": models }))).await
}

fn knowledge(ctx: &JobContext) -> Result<&Knowledge, JobError> {
    ctx.knowledge
        .as_ref()
        .ok_or_else(|| JobError::retry("the knowledge service is not running on this node"))
}

fn tenant_of(job: &Job) -> Result<TenantId, JobError> {
    job.tenant
        .ok_or_else(|| JobError::permanent("the job names no tenant"))
}

fn uuid_field(job: &Job, field: &str) -> Result<Uuid, JobError> {
    job.payload
        .get(field)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| JobError::permanent(format!("the job names no {field}")))
}

/// A failure of the knowledge service as a job outcome: the database, the index or a provider
/// may come back; a model that is not available will not.
fn job_error(e: KnowledgeError) -> JobError {
    match e {
        KnowledgeError::Embed(e)
            if !e.is_retryable() && !matches!(e, crate::embed::EmbedError::Provider { .. }) =>
        {
            JobError::permanent(e.to_string())
        }
        KnowledgeError::ModelUnavailable(_) => JobError::permanent(e.to_string()),
        other => JobError::retry(other.to_string()),
    }
}

/// `knowledge.index`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexDocument;

impl JobHandler for IndexDocument {
    fn kind(&self) -> &'static str {
        INDEX
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let k = knowledge(ctx)?;
            let tenant = tenant_of(job)?;
            let document = uuid_field(job, "document")?;
            let last = job.attempt >= job.max_attempts;
            match index_document(k, tenant, document).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Shown on the document at once: never "queued" with no word of why.
                    let final_failure = last || matches!(e, JobError::Permanent { .. });
                    let reason = e.to_string();
                    let mut tx = k
                        .store()
                        .tenant_tx(tenant)
                        .await
                        .map_err(|e| JobError::retry(e.to_string()))?;
                    if final_failure {
                        kstore::set_failed(&mut tx, document, &reason).await
                    } else {
                        kstore::set_retrying(&mut tx, document, &reason).await
                    }
                    .map_err(|e| JobError::retry(e.to_string()))?;
                    tx.commit()
                        .await
                        .map_err(|e| JobError::retry(e.to_string()))?;
                    Err(e)
                }
            }
        })
    }
}

async fn set_status(
    k: &Knowledge,
    tenant: TenantId,
    document: Uuid,
    status: DocumentStatus,
    done: usize,
    total: usize,
) -> Result<(), JobError> {
    let run = async {
        let mut tx = k.store().tenant_tx(tenant).await?;
        kstore::set_status(&mut tx, document, status, done as u32, total as u32).await?;
        tx.commit().await
    };
    run.await.map_err(|e| JobError::retry(e.to_string()))
}

fn store_err(e: crate::store::StoreError) -> JobError {
    JobError::retry(e.to_string())
}

/// Reads the original (the kept upload, or the URL fetched now through the outbound client).
async fn original(
    k: &Knowledge,
    tenant: TenantId,
    doc: &kstore::DocumentRow,
) -> Result<(Vec<u8>, Option<String>), JobError> {
    let max = k.settings().max_document_bytes;
    match doc.source {
        DocumentSource::Upload => {
            let path = k.original_path(tenant, doc.id);
            tokio::fs::read(&path)
                .await
                .map(|b| (b, None))
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        JobError::permanent("the uploaded file is no longer kept on this server")
                    } else {
                        JobError::retry("the uploaded file could not be read")
                    }
                })
        }
        DocumentSource::Url => {
            let url = doc
                .url
                .as_deref()
                .ok_or_else(|| JobError::permanent("the document has no URL"))?;
            let request = crate::outbound::OutboundRequest::get(url)
                .max_bytes(max)
                .timeout(std::time::Duration::from_secs(30));
            let response = k.http().send(request).await.map_err(|e| match e {
                crate::outbound::OutboundError::Timeout { .. }
                | crate::outbound::OutboundError::Http(_)
                | crate::outbound::OutboundError::Unresolvable { .. } => {
                    JobError::retry(format!("fetching the URL failed: {e}"))
                }
                other => JobError::permanent(format!("fetching the URL failed: {other}")),
            })?;
            let status = response.status.as_u16();
            if !(200..300).contains(&status) {
                let reason = format!("the URL answered HTTP {status}");
                return Err(if status == 429 || status >= 500 {
                    JobError::retry(reason)
                } else {
                    JobError::permanent(reason)
                });
            }
            let content_type = response
                .headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((response.body, content_type))
        }
    }
}

fn extract_error(e: ExtractError) -> JobError {
    JobError::permanent(e.to_string())
}

async fn index_document(k: &Knowledge, tenant: TenantId, document: Uuid) -> Result<(), JobError> {
    let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
    let Some(doc) = kstore::get_document(&mut tx, document)
        .await
        .map_err(store_err)?
    else {
        // Deleted since it was queued.
        return Ok(());
    };
    let stored = kstore::chunks_of(&mut tx, document)
        .await
        .map_err(store_err)?;
    drop(tx);
    set_status(k, tenant, document, DocumentStatus::Extracting, 0, 0).await?;
    let (bytes, content_type) = original(k, tenant, &doc).await?;
    let sha: Vec<u8> = Sha256::digest(&bytes).to_vec();
    let format = extract::sniff(&bytes, content_type.as_deref()).map_err(extract_error)?;
    let limits = Limits {
        max_bytes: usize::try_from(k.settings().max_document_bytes).unwrap_or(usize::MAX),
        ..Limits::default()
    };
    let bytes_len = bytes.len();
    let extracted = tokio::task::spawn_blocking(move || extract::extract(&bytes, format, &limits))
        .await
        .map_err(|_| JobError::retry("extraction stopped"))?
        .map_err(extract_error)?;
    let space = k.space_for_writing(tenant).await.map_err(job_error)?;
    let max_tokens = space.embedder.max_tokens();
    let pages = extracted.pages;
    let title = extracted.title.clone();
    let chunks = tokio::task::spawn_blocking(move || -> Result<Vec<Chunk>, JobError> {
        let counter =
            super::tokens::ModelTokens::shared().map_err(|e| JobError::permanent(e.to_string()))?;
        Ok(chunk::chunk(&extracted, counter, max_tokens))
    })
    .await
    .map_err(|_| JobError::retry("chunking stopped"))??;
    if chunks.is_empty() {
        return Err(JobError::permanent("the document has no text to index"));
    }
    {
        let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
        // A title given by hand wins over the document's own.
        let keep_title = doc.title != default_title(&doc);
        kstore::set_extracted(
            &mut tx,
            document,
            format.as_str(),
            pages,
            i64::try_from(bytes_len).unwrap_or(i64::MAX),
            &sha,
            if keep_title { None } else { title.as_deref() },
        )
        .await
        .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
    }
    // Passages whose text is unchanged keep their id and their vector.
    let mut by_hash: HashMap<Vec<u8>, Uuid> =
        stored.iter().map(|c| (c.hash.clone(), c.id)).collect();
    let rows: Vec<ChunkRow> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| ChunkRow {
            id: by_hash
                .remove(c.hash.as_slice())
                .unwrap_or_else(Uuid::new_v4),
            ordinal: i32::try_from(i).unwrap_or(i32::MAX),
            // A PDF's passages have no headings: their page stands in, for citations.
            heading: match (c.heading.is_empty(), c.page) {
                (true, Some(page)) => format!("page {page}"),
                _ => c.heading.clone(),
            },
            // Bounded in characters too: one unknown "word" is one token, whatever its length.
            text: c.text.chars().take(MAX_CHUNK_CHARS).collect(),
            hash: c.hash.to_vec(),
        })
        .collect();
    let model = space.embedder.model().to_string();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
    let have: std::collections::HashSet<Uuid> = kstore::embeddings(&mut tx, &model, &ids)
        .await
        .map_err(store_err)?
        .into_iter()
        .map(|e| e.id)
        .collect();
    drop(tx);
    let todo: Vec<&ChunkRow> = rows.iter().filter(|r| !have.contains(&r.id)).collect();
    let total = todo.len();
    set_status(k, tenant, document, DocumentStatus::Embedding, 0, total).await?;
    let mut collection: Option<Collection> = space
        .known
        .as_ref()
        .and_then(|(m, d)| Collection::new(m.clone(), *d).ok());
    for (step, batch) in todo.chunks(STEP).enumerate() {
        let texts: Vec<String> = batch.iter().map(|r| r.text.clone()).collect();
        let (c, vectors) = k
            .embed_for(tenant, &space, &texts)
            .await
            .map_err(job_error)?;
        let embedded: Vec<EmbeddingRow> = batch
            .iter()
            .zip(vectors)
            .map(|(r, vector)| EmbeddingRow {
                id: r.id,
                kind: VectorKind::Chunk,
                source: document,
                vector,
            })
            .collect();
        let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
        kstore::put_embeddings(&mut tx, &model, &embedded)
            .await
            .map_err(store_err)?;
        let done = (step * STEP + batch.len()).min(total);
        kstore::set_status(
            &mut tx,
            document,
            DocumentStatus::Embedding,
            done as u32,
            total as u32,
        )
        .await
        .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        collection = Some(c);
    }
    let collection = match collection {
        Some(c) => c,
        None => {
            // Nothing new to embed and no index recorded: make the collection from a probe.
            let (c, _) = k
                .embed_for(tenant, &space, &[rows[0].text.clone()])
                .await
                .map_err(job_error)?;
            c
        }
    };
    // The passages replace the old ones; the index gets every current vector (unchanged ones
    // too: a lost or rebuilt index heals here) and loses the removed ones.
    let removed: Vec<Uuid> = stored
        .iter()
        .map(|c| c.id)
        .filter(|id| !ids.contains(id))
        .collect();
    let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
    kstore::replace_chunks(&mut tx, document, &rows)
        .await
        .map_err(store_err)?;
    let vectors = kstore::embeddings(&mut tx, &model, &ids)
        .await
        .map_err(store_err)?;
    tx.commit().await.map_err(store_err)?;
    k.index_points(tenant, &collection, &vectors)
        .await
        .map_err(job_error)?;
    k.unindex_points(tenant, removed).await.map_err(job_error)?;
    let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
    // Deleted while it was being indexed: take its vectors back out.
    if kstore::get_document(&mut tx, document)
        .await
        .map_err(store_err)?
        .is_none()
    {
        drop(tx);
        k.unindex_source(tenant, document)
            .await
            .map_err(job_error)?;
        return Ok(());
    }
    kstore::set_ready(
        &mut tx,
        document,
        rows.len() as u32,
        total as u32,
        (rows.len() - total) as u32,
    )
    .await
    .map_err(store_err)?;
    tx.commit().await.map_err(store_err)?;
    tracing::info!(tenant.id = %tenant, document.id = %document, chunks = rows.len(), embedded = total, "document indexed");
    Ok(())
}

/// The title a document is given before its own is known.
pub fn default_title(doc: &kstore::DocumentRow) -> String {
    doc.filename
        .clone()
        .or_else(|| doc.url.clone())
        .unwrap_or_else(|| "Untitled".into())
        .chars()
        .take(300)
        .collect()
}

/// `knowledge.unindex`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unindex;

impl JobHandler for Unindex {
    fn kind(&self) -> &'static str {
        UNINDEX
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let k = knowledge(ctx)?;
            let tenant = tenant_of(job)?;
            let source = uuid_field(job, "source")?;
            k.unindex_source(tenant, source).await.map_err(job_error)?;
            // Only a document has an original to delete.
            if job.payload.get("document").and_then(Value::as_bool) == Some(true) {
                k.drop_original(tenant, source).await.map_err(job_error)?;
            }
            Ok(())
        })
    }
}

/// `tenant.purge_vectors`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurgeTenantVectors;

impl JobHandler for PurgeTenantVectors {
    fn kind(&self) -> &'static str {
        PURGE_TENANT
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let k = knowledge(ctx)?;
            let tenant = tenant_of(job)?;
            let models: Vec<(String, usize)> = job
                .payload
                .get("models")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|m| {
                            Some((
                                m.get(0)?.as_str()?.to_string(),
                                m.get(1)?.as_u64()? as usize,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            k.unindex_tenant(tenant, &models).await.map_err(job_error)?;
            match tokio::fs::remove_dir_all(k.originals_dir(tenant)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(_) => Err(JobError::retry(
                    "the tenant's originals could not be deleted",
                )),
            }
        })
    }
}

/// `knowledge.reindex`: embeds every passage and memory of the tenant with the new model into a
/// collection of its own, then swaps the tenant over and deletes the old vectors. Until the
/// swap, searches use the old index; vectors of two models are never mixed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reindex;

impl JobHandler for Reindex {
    fn kind(&self) -> &'static str {
        REINDEX
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let k = knowledge(ctx)?;
            let tenant = tenant_of(job)?;
            let spec_text = job
                .payload
                .get("model")
                .and_then(Value::as_str)
                .ok_or_else(|| JobError::permanent("the job names no model"))?;
            let spec = ModelSpec::parse(spec_text)
                .ok_or_else(|| JobError::permanent("the model is not one this platform knows"))?;
            let last = job.attempt >= job.max_attempts;
            match reindex(k, tenant, &spec).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    if last || matches!(e, JobError::Permanent { .. }) {
                        let reason = e.to_string();
                        let run = async {
                            let mut tx = k.store().tenant_tx(tenant).await?;
                            if let Some(mut row) = kstore::index(&mut tx).await? {
                                row.building = None;
                                row.building_error = Some(reason.chars().take(500).collect());
                                kstore::put_index(&mut tx, &row).await?;
                            }
                            tx.commit().await
                        };
                        run.await.map_err(store_err)?;
                    }
                    Err(e)
                }
            }
        })
    }
}

async fn reindex(k: &Knowledge, tenant: TenantId, spec: &ModelSpec) -> Result<(), JobError> {
    let embedder = k.embedder(tenant, spec).await.map_err(job_error)?;
    let model = embedder.model().to_string();
    let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
    let Some(mut row) = kstore::index(&mut tx).await.map_err(store_err)? else {
        drop(tx);
        return Ok(());
    };
    if row.model == model {
        row.building = None;
        kstore::put_index(&mut tx, &row).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        return Ok(());
    }
    let old = Collection::new(row.model.clone(), row.dimension.max(1) as usize)
        .map_err(|e| job_error(e.into()))?;
    let chunks = kstore::all_chunks(&mut tx).await.map_err(store_err)?;
    let memories = kstore::all_memories(&mut tx).await.map_err(store_err)?;
    drop(tx);
    let items: Vec<(Uuid, VectorKind, Uuid, String)> = chunks
        .into_iter()
        .map(|(id, doc, text)| (id, VectorKind::Chunk, doc, text))
        .chain(
            memories
                .into_iter()
                .map(|(id, user, text)| (id, VectorKind::Memory, *user.as_uuid(), text)),
        )
        .collect();
    let total = items.len();
    let space = WriteSpace {
        spec: spec.clone(),
        embedder,
        known: None,
    };
    let mut collection: Option<Collection> = None;
    let mut done = 0usize;
    for batch in items.chunks(STEP) {
        let texts: Vec<String> = batch.iter().map(|i| i.3.clone()).collect();
        let vectors = space
            .embedder
            .embed(&texts)
            .await
            .map_err(|e| job_error(e.into()))?;
        let dim = vectors.first().map_or(1, Vec::len);
        let c = Collection::new(model.clone(), dim).map_err(|e| job_error(e.into()))?;
        k.vectors()
            .ensure(&c)
            .await
            .map_err(|e| job_error(e.into()))?;
        let rows: Vec<EmbeddingRow> = batch
            .iter()
            .zip(vectors)
            .map(|(i, vector)| EmbeddingRow {
                id: i.0,
                kind: i.1,
                source: i.2,
                vector,
            })
            .collect();
        let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
        kstore::put_embeddings(&mut tx, &model, &rows)
            .await
            .map_err(store_err)?;
        done += batch.len();
        row.building = Some(spec.name());
        row.building_model = Some(model.clone());
        row.building_dimension = Some(i32::try_from(dim).unwrap_or(i32::MAX));
        row.building_done = i32::try_from(done).unwrap_or(i32::MAX);
        row.building_total = i32::try_from(total).unwrap_or(i32::MAX);
        row.building_error = None;
        kstore::put_index(&mut tx, &row).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        k.index_points(tenant, &c, &rows).await.map_err(job_error)?;
        collection = Some(c);
    }
    let dim = collection
        .as_ref()
        .map_or(row.dimension.max(1) as usize, Collection::dimension);
    // The swap: from here on the tenant's searches use the new index.
    let mut tx = k.store().tenant_tx(tenant).await.map_err(store_err)?;
    let swapped = IndexRow {
        model: model.clone(),
        dimension: i32::try_from(dim).unwrap_or(i32::MAX),
        building: None,
        building_model: None,
        building_dimension: None,
        building_done: 0,
        building_total: 0,
        building_error: None,
    };
    kstore::put_index(&mut tx, &swapped)
        .await
        .map_err(store_err)?;
    kstore::delete_model_embeddings(&mut tx, old.model())
        .await
        .map_err(store_err)?;
    tx.commit().await.map_err(store_err)?;
    k.vectors()
        .delete(&old, tenant, Selector::Tenant)
        .await
        .map_err(|e| job_error(e.into()))?;
    tracing::info!(tenant.id = %tenant, model = %model, vectors = total, "knowledge index rebuilt and swapped");
    Ok(())
}

/// `memory.summarise`: the facts worth keeping about the conversation's end user, from the
/// messages since the last summary, asked of the LLM (metered like any call), embedded and kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summarise;

impl JobHandler for Summarise {
    fn kind(&self) -> &'static str {
        SUMMARISE
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let k = knowledge(ctx)?;
            let tenant = tenant_of(job)?;
            let conversation = ConversationId::from_uuid(uuid_field(job, "conversation")?);
            let pool = ctx
                .llm
                .as_ref()
                .ok_or_else(|| JobError::retry("the LLM pool is not running on this node"))?;
            super::memory::summarise(k, pool, ctx, tenant, conversation).await
        })
    }
}
