//! The knowledge base, memories and vectors in Postgres (the truth every vector index is built
//! from): documents and their indexing state, their passages, what agents remember about end
//! users, every vector by model, and which model each tenant's index uses.

use chrono::{DateTime, Utc};
use shared::knowledge::{DocumentSource, DocumentStatus};
use shared::{AgentId, ConversationId, EndUserId};
use uuid::Uuid;

use super::{StoreResult, TenantTx};

/// A document as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: Uuid,
    pub title: String,
    #[sqlx(try_from = "String")]
    pub source: DocumentSource,
    pub url: Option<String>,
    pub filename: Option<String>,
    pub format: Option<String>,
    pub size_bytes: i64,
    pub sha256: Option<Vec<u8>>,
    #[sqlx(try_from = "String")]
    pub status: DocumentStatus,
    pub error: Option<String>,
    pub progress_done: i32,
    pub progress_total: i32,
    pub chunks: i32,
    pub pages: Option<i32>,
    pub agent_ids: Option<Vec<Uuid>>,
    pub embedded_last: i32,
    pub reused_last: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
}

const DOCUMENT: &str = "SELECT id, title, source, url, filename, format, size_bytes, sha256, status, \
                        error, progress_done, progress_total, chunks, pages, agent_ids, \
                        embedded_last, reused_last, created_at, updated_at, ready_at \
                        FROM knowledge_documents";

/// A document to add.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    pub id: Uuid,
    pub title: &'a str,
    pub source: DocumentSource,
    pub url: Option<&'a str>,
    pub filename: Option<&'a str>,
    pub size_bytes: i64,
    pub agent_ids: Option<&'a [AgentId]>,
    pub created_by: Option<Uuid>,
}

fn uuids(agents: Option<&[AgentId]>) -> Option<Vec<Uuid>> {
    agents.map(|a| a.iter().map(|id| *id.as_uuid()).collect())
}

/// Adds a queued document.
pub async fn insert_document(tx: &mut TenantTx, d: &NewDocument<'_>) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO knowledge_documents (id, tenant_id, title, source, url, filename, size_bytes, \
                                          agent_ids, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(d.id)
    .bind(tenant)
    .bind(d.title)
    .bind(d.source.as_str())
    .bind(d.url)
    .bind(d.filename)
    .bind(d.size_bytes)
    .bind(uuids(d.agent_ids))
    .bind(d.created_by)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// A page of the tenant's documents, newest first, and how many there are in all.
pub async fn list_documents(
    tx: &mut TenantTx,
    status: Option<DocumentStatus>,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<DocumentRow>, i64)> {
    let rows = sqlx::query_as::<_, DocumentRow>(sqlx::AssertSqlSafe(format!(
        "{DOCUMENT} WHERE ($1::text IS NULL OR status = $1) \
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    )))
    .bind(status.map(DocumentStatus::as_str))
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM knowledge_documents WHERE ($1::text IS NULL OR status = $1)",
    )
    .bind(status.map(DocumentStatus::as_str))
    .fetch_one(tx.connection())
    .await?;
    Ok((rows, total))
}

/// One document.
pub async fn get_document(tx: &mut TenantTx, id: Uuid) -> StoreResult<Option<DocumentRow>> {
    Ok(
        sqlx::query_as::<_, DocumentRow>(sqlx::AssertSqlSafe(format!("{DOCUMENT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(tx.connection())
            .await?,
    )
}

/// Moves a document to `status` with its progress (and clears any error).
pub async fn set_status(
    tx: &mut TenantTx,
    id: Uuid,
    status: DocumentStatus,
    done: u32,
    total: u32,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE knowledge_documents SET status = $2, progress_done = $3, progress_total = $4, \
                error = NULL, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(i32::try_from(done).unwrap_or(i32::MAX))
    .bind(i32::try_from(total).unwrap_or(i32::MAX))
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// What extraction learnt about the original.
pub async fn set_extracted(
    tx: &mut TenantTx,
    id: Uuid,
    format: &str,
    pages: Option<u32>,
    size_bytes: i64,
    sha256: &[u8],
    title: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE knowledge_documents SET format = $2, pages = $3, size_bytes = $4, sha256 = $5, \
                title = coalesce($6, title), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(format)
    .bind(pages.map(|p| i32::try_from(p).unwrap_or(i32::MAX)))
    .bind(size_bytes)
    .bind(sha256)
    .bind(title)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// The document is searchable: `chunks` passages, `embedded` of them embedded by this run and
/// `reused` kept from before.
pub async fn set_ready(
    tx: &mut TenantTx,
    id: Uuid,
    chunks: u32,
    embedded: u32,
    reused: u32,
) -> StoreResult<()> {
    let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    sqlx::query(
        "UPDATE knowledge_documents SET status = 'ready', error = NULL, chunks = $2, \
                progress_done = $2, progress_total = $2, embedded_last = $3, reused_last = $4, \
                ready_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(n(chunks))
    .bind(n(embedded))
    .bind(n(reused))
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// The document failed for `reason` (our own words).
pub async fn set_failed(tx: &mut TenantTx, id: Uuid, reason: &str) -> StoreResult<()> {
    let reason: String = reason.chars().take(500).collect();
    sqlx::query(
        "UPDATE knowledge_documents SET status = 'failed', error = $2, updated_at = now() \
          WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// An attempt failed for `reason` and will be retried: the document waits in the queue with
/// the reason shown.
pub async fn set_retrying(tx: &mut TenantTx, id: Uuid, reason: &str) -> StoreResult<()> {
    let reason: String = reason.chars().take(500).collect();
    sqlx::query(
        "UPDATE knowledge_documents SET status = 'queued', error = $2, updated_at = now() \
          WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Changes a document's title and the agents that use it. `false` when there is no such
/// document.
pub async fn update_document(
    tx: &mut TenantTx,
    id: Uuid,
    title: &str,
    agent_ids: Option<&[AgentId]>,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE knowledge_documents SET title = $2, agent_ids = $3, updated_at = now() \
          WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .bind(uuids(agent_ids))
    .execute(tx.connection())
    .await?
    .rows_affected()
        == 1)
}

/// Deletes a document with its passages and their vectors. `false` when there was none.
pub async fn delete_document(tx: &mut TenantTx, id: Uuid) -> StoreResult<bool> {
    sqlx::query("DELETE FROM embeddings WHERE source = $1 AND kind = 'chunk'")
        .bind(id)
        .execute(tx.connection())
        .await?;
    Ok(sqlx::query("DELETE FROM knowledge_documents WHERE id = $1")
        .bind(id)
        .execute(tx.connection())
        .await?
        .rows_affected()
        == 1)
}

/// The ready documents `agent` uses (every agent's when `None`).
pub async fn ready_sources(tx: &mut TenantTx, agent: Option<AgentId>) -> StoreResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM knowledge_documents \
          WHERE status = 'ready' AND ($1::uuid IS NULL OR agent_ids IS NULL OR $1 = ANY (agent_ids)) \
          ORDER BY id LIMIT 5000",
    )
    .bind(agent)
    .fetch_all(tx.connection())
    .await?)
}

/// A stored passage.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChunkRow {
    pub id: Uuid,
    pub ordinal: i32,
    pub heading: String,
    pub text: String,
    pub hash: Vec<u8>,
}

/// A document's passages, in order.
pub async fn chunks_of(tx: &mut TenantTx, document: Uuid) -> StoreResult<Vec<ChunkRow>> {
    Ok(sqlx::query_as(
        "SELECT id, ordinal, heading, text, hash FROM knowledge_chunks \
          WHERE document_id = $1 ORDER BY ordinal",
    )
    .bind(document)
    .fetch_all(tx.connection())
    .await?)
}

/// Replaces a document's passages with `chunks` (ids kept for passages that did not change):
/// passages not among them are deleted with their vectors.
pub async fn replace_chunks(
    tx: &mut TenantTx,
    document: Uuid,
    chunks: &[ChunkRow],
) -> StoreResult<()> {
    let keep: Vec<Uuid> = chunks.iter().map(|c| c.id).collect();
    sqlx::query(
        "DELETE FROM embeddings WHERE kind = 'chunk' AND source = $1 AND NOT (id = ANY ($2))",
    )
    .bind(document)
    .bind(&keep)
    .execute(tx.connection())
    .await?;
    sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1 AND NOT (id = ANY ($2))")
        .bind(document)
        .bind(&keep)
        .execute(tx.connection())
        .await?;
    let tenant = tx.tenant();
    for c in chunks {
        sqlx::query(
            "INSERT INTO knowledge_chunks (id, tenant_id, document_id, ordinal, heading, text, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET ordinal = EXCLUDED.ordinal, heading = EXCLUDED.heading",
        )
        .bind(c.id)
        .bind(tenant)
        .bind(document)
        .bind(c.ordinal)
        .bind(&c.heading)
        .bind(&c.text)
        .bind(&c.hash)
        .execute(tx.connection())
        .await?;
    }
    Ok(())
}

/// A passage with its document, for a prompt or a citation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PassageRow {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub title: String,
    pub url: Option<String>,
    pub heading: String,
    pub text: String,
}

/// The passages with these ids that still exist (in no particular order).
pub async fn passages(tx: &mut TenantTx, ids: &[Uuid]) -> StoreResult<Vec<PassageRow>> {
    Ok(sqlx::query_as(
        "SELECT c.id AS chunk_id, c.document_id, d.title, d.url, c.heading, c.text \
           FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id \
          WHERE c.id = ANY ($1) AND d.status = 'ready'",
    )
    .bind(ids)
    .fetch_all(tx.connection())
    .await?)
}

/// What a vector embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorKind {
    Chunk,
    Memory,
}

impl VectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VectorKind::Chunk => "chunk",
            VectorKind::Memory => "memory",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "chunk" => Some(VectorKind::Chunk),
            "memory" => Some(VectorKind::Memory),
            _ => None,
        }
    }
}

/// One vector to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRow {
    pub id: Uuid,
    pub kind: VectorKind,
    pub source: Uuid,
    pub vector: Vec<f32>,
}

/// Keeps vectors made by `model` (replacing any of the same ids).
pub async fn put_embeddings(
    tx: &mut TenantTx,
    model: &str,
    rows: &[EmbeddingRow],
) -> StoreResult<()> {
    let tenant = tx.tenant();
    for r in rows {
        sqlx::query(
            "INSERT INTO embeddings (tenant_id, model, id, kind, source, vector) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, model, id) DO UPDATE SET vector = EXCLUDED.vector, \
                 source = EXCLUDED.source, kind = EXCLUDED.kind",
        )
        .bind(tenant)
        .bind(model)
        .bind(r.id)
        .bind(r.kind.as_str())
        .bind(r.source)
        .bind(&r.vector)
        .execute(tx.connection())
        .await?;
    }
    Ok(())
}

/// The vectors `model` made for these ids.
pub async fn embeddings(
    tx: &mut TenantTx,
    model: &str,
    ids: &[Uuid],
) -> StoreResult<Vec<EmbeddingRow>> {
    let rows: Vec<(Uuid, String, Uuid, Vec<f32>)> = sqlx::query_as(
        "SELECT id, kind, source, vector FROM embeddings WHERE model = $1 AND id = ANY ($2)",
    )
    .bind(model)
    .bind(ids)
    .fetch_all(tx.connection())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, kind, source, vector)| {
            Some(EmbeddingRow {
                id,
                kind: VectorKind::parse(&kind)?,
                source,
                vector,
            })
        })
        .collect())
}

/// Every id the tenant has a vector for under `model`.
pub async fn embedded_ids(tx: &mut TenantTx, model: &str) -> StoreResult<Vec<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM embeddings WHERE model = $1 ORDER BY id")
            .bind(model)
            .fetch_all(tx.connection())
            .await?,
    )
}

/// Deletes every vector the tenant has under `model`.
pub async fn delete_model_embeddings(tx: &mut TenantTx, model: &str) -> StoreResult<u64> {
    Ok(sqlx::query("DELETE FROM embeddings WHERE model = $1")
        .bind(model)
        .execute(tx.connection())
        .await?
        .rows_affected())
}

/// One page of every tenant's vectors of `model`, after `(tenant, id)`, for rebuilding a node's
/// embedded index (through `embeddings_for_rebuild`, the one path across tenants).
pub async fn rebuild_page(
    store: &super::Store,
    model: &str,
    after: (Uuid, Uuid),
    limit: i32,
) -> StoreResult<Vec<(Uuid, EmbeddingRow)>> {
    let rows: Vec<(Uuid, Uuid, String, Uuid, Vec<f32>)> = sqlx::query_as(
        "SELECT tenant_id, id, kind, source, vector FROM embeddings_for_rebuild($1, $2, $3, $4)",
    )
    .bind(model)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(tenant, id, kind, source, vector)| {
            Some((
                tenant,
                EmbeddingRow {
                    id,
                    kind: VectorKind::parse(&kind)?,
                    source,
                    vector,
                },
            ))
        })
        .collect())
}

/// How many vectors of `model` there are across tenants.
pub async fn count_for_rebuild(store: &super::Store, model: &str) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT embeddings_count($1)")
        .bind(model)
        .fetch_one(store.pool())
        .await?)
}

/// Which model a tenant's vectors are in, and a rebuild under way.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IndexRow {
    pub model: String,
    pub dimension: i32,
    pub building: Option<String>,
    /// The full model id and dimension of the index being built, once known.
    pub building_model: Option<String>,
    pub building_dimension: Option<i32>,
    pub building_done: i32,
    pub building_total: i32,
    pub building_error: Option<String>,
}

/// The tenant's index row (none: the platform's default model).
pub async fn index(tx: &mut TenantTx) -> StoreResult<Option<IndexRow>> {
    Ok(sqlx::query_as(
        "SELECT model, dimension, building, building_model, building_dimension, building_done, \
                building_total, building_error \
           FROM knowledge_index",
    )
    .fetch_optional(tx.connection())
    .await?)
}

/// The tenant's index model, locked until the transaction ends: shared by writers of vectors
/// (so a swap to another model waits for them), exclusive for the swap itself.
pub async fn lock_index(tx: &mut TenantTx, exclusive: bool) -> StoreResult<Option<String>> {
    let sql = if exclusive {
        "SELECT model FROM knowledge_index FOR UPDATE"
    } else {
        "SELECT model FROM knowledge_index FOR SHARE"
    };
    Ok(sqlx::query_scalar(sql)
        .fetch_optional(tx.connection())
        .await?)
}

/// The tenant's passages and memories that have no vector of `model` yet.
pub async fn missing_vectors(
    tx: &mut TenantTx,
    model: &str,
) -> StoreResult<Vec<(Uuid, String, Uuid, String)>> {
    Ok(sqlx::query_as(
        "SELECT c.id, 'chunk', c.document_id, c.text FROM knowledge_chunks c \
          WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = $1 AND e.id = c.id) \
         UNION ALL \
         SELECT m.id, 'memory', m.end_user_id, m.text FROM memories m \
          WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = $1 AND e.id = m.id)",
    )
    .bind(model)
    .fetch_all(tx.connection())
    .await?)
}

/// Records the tenant's current index and a rebuild with `building` (the model spec), or none.
pub async fn put_index(tx: &mut TenantTx, row: &IndexRow) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO knowledge_index (tenant_id, model, dimension, building, building_done, \
                                      building_total, building_error, building_model, \
                                      building_dimension) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id) DO UPDATE SET model = EXCLUDED.model, \
             dimension = EXCLUDED.dimension, building = EXCLUDED.building, \
             building_model = EXCLUDED.building_model, \
             building_dimension = EXCLUDED.building_dimension, \
             building_done = EXCLUDED.building_done, building_total = EXCLUDED.building_total, \
             building_error = EXCLUDED.building_error, updated_at = now()",
    )
    .bind(tenant)
    .bind(&row.model)
    .bind(row.dimension)
    .bind(&row.building)
    .bind(row.building_done)
    .bind(row.building_total)
    .bind(&row.building_error)
    .bind(&row.building_model)
    .bind(row.building_dimension)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Every passage of the tenant's documents, for a rebuild with another model.
pub async fn all_chunks(tx: &mut TenantTx) -> StoreResult<Vec<(Uuid, Uuid, String)>> {
    Ok(
        sqlx::query_as("SELECT c.id, c.document_id, c.text FROM knowledge_chunks c ORDER BY c.id")
            .fetch_all(tx.connection())
            .await?,
    )
}

/// Every memory of the tenant, for a rebuild with another model.
pub async fn all_memories(tx: &mut TenantTx) -> StoreResult<Vec<(Uuid, EndUserId, String)>> {
    Ok(
        sqlx::query_as("SELECT id, end_user_id, text FROM memories ORDER BY id")
            .fetch_all(tx.connection())
            .await?,
    )
}

/// A memory as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemoryRow {
    pub id: Uuid,
    pub end_user_id: EndUserId,
    pub conversation_id: Option<ConversationId>,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// Whether the end user has any memory.
pub async fn has_memories(tx: &mut TenantTx, end_user: EndUserId) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM memories WHERE end_user_id = $1)")
            .bind(end_user)
            .fetch_one(tx.connection())
            .await?,
    )
}

/// Keeps a memory of an end user.
pub async fn insert_memory(
    tx: &mut TenantTx,
    id: Uuid,
    end_user: EndUserId,
    conversation: Option<ConversationId>,
    text: &str,
) -> StoreResult<()> {
    let tenant = tx.tenant();
    sqlx::query(
        "INSERT INTO memories (id, tenant_id, end_user_id, conversation_id, text) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant)
    .bind(end_user)
    .bind(conversation)
    .bind(text)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// An end user's memories, newest first, and how many there are.
pub async fn memories_of(
    tx: &mut TenantTx,
    end_user: EndUserId,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<MemoryRow>, i64)> {
    let rows = sqlx::query_as(
        "SELECT id, end_user_id, conversation_id, text, created_at FROM memories \
          WHERE end_user_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
    )
    .bind(end_user)
    .bind(limit)
    .bind(offset)
    .fetch_all(tx.connection())
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM memories WHERE end_user_id = $1")
        .bind(end_user)
        .fetch_one(tx.connection())
        .await?;
    Ok((rows, total))
}

/// Keeps an end user's newest `keep` memories; returns the ids of those deleted (with their
/// vectors) so the index can drop them too.
pub async fn trim_memories(
    tx: &mut TenantTx,
    end_user: EndUserId,
    keep: i64,
) -> StoreResult<Vec<Uuid>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "DELETE FROM memories WHERE id IN ( \
             SELECT id FROM memories WHERE end_user_id = $1 \
              ORDER BY created_at DESC, id OFFSET $2) RETURNING id",
    )
    .bind(end_user)
    .bind(keep)
    .fetch_all(tx.connection())
    .await?;
    if !ids.is_empty() {
        sqlx::query("DELETE FROM embeddings WHERE kind = 'memory' AND id = ANY ($1)")
            .bind(&ids)
            .execute(tx.connection())
            .await?;
    }
    Ok(ids)
}

/// The memories with these ids that still exist.
pub async fn memories_by_id(tx: &mut TenantTx, ids: &[Uuid]) -> StoreResult<Vec<MemoryRow>> {
    Ok(sqlx::query_as(
        "SELECT id, end_user_id, conversation_id, text, created_at FROM memories \
          WHERE id = ANY ($1)",
    )
    .bind(ids)
    .fetch_all(tx.connection())
    .await?)
}

/// Deletes one memory of `end_user` with its vectors. `false` when there was none.
pub async fn delete_memory(tx: &mut TenantTx, end_user: EndUserId, id: Uuid) -> StoreResult<bool> {
    let deleted = sqlx::query("DELETE FROM memories WHERE id = $1 AND end_user_id = $2")
        .bind(id)
        .bind(end_user)
        .execute(tx.connection())
        .await?
        .rows_affected()
        == 1;
    if deleted {
        sqlx::query("DELETE FROM embeddings WHERE id = $1 AND kind = 'memory'")
            .bind(id)
            .execute(tx.connection())
            .await?;
    }
    Ok(deleted)
}

/// Records the citations and recalled memories of a reply (on its first part).
pub async fn annotate_reply(
    tx: &mut TenantTx,
    event_id: &str,
    citations: &serde_json::Value,
    recalled: &[Uuid],
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE messages SET citations = $2, recalled = $3 WHERE reply_to = $1 AND part = 0",
    )
    .bind(event_id)
    .bind(citations)
    .bind(recalled)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// What erasing an end user removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    pub conversations: u64,
    pub messages: u64,
    pub memories: u64,
    /// `(connection, external key)` of each conversation, for its cached state in Redis.
    pub conversation_keys: Vec<(Uuid, String)>,
}

/// Erases an end user: their conversations (with every message in them, both ways), any other
/// message they wrote, their memories and vectors, and the end user. `None` when there is none.
pub async fn erase_end_user(tx: &mut TenantTx, end_user: EndUserId) -> StoreResult<Option<Erased>> {
    let exists: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM end_users WHERE id = $1 FOR UPDATE")
            .bind(end_user)
            .fetch_optional(tx.connection())
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let conversation_keys: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT channel_connection_id, external_key FROM conversations WHERE end_user_id = $1",
    )
    .bind(end_user)
    .fetch_all(tx.connection())
    .await?;
    let messages = sqlx::query(
        "DELETE FROM messages WHERE end_user_id = $1 \
            OR conversation_id IN (SELECT id FROM conversations WHERE end_user_id = $1)",
    )
    .bind(end_user)
    .execute(tx.connection())
    .await?
    .rows_affected();
    let conversations = sqlx::query("DELETE FROM conversations WHERE end_user_id = $1")
        .bind(end_user)
        .execute(tx.connection())
        .await?
        .rows_affected();
    let memories = sqlx::query("DELETE FROM memories WHERE end_user_id = $1")
        .bind(end_user)
        .execute(tx.connection())
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM embeddings WHERE kind = 'memory' AND source = $1")
        .bind(end_user)
        .execute(tx.connection())
        .await?;
    sqlx::query("DELETE FROM end_users WHERE id = $1")
        .bind(end_user)
        .execute(tx.connection())
        .await?;
    Ok(Some(Erased {
        conversations,
        messages,
        memories,
        conversation_keys,
    }))
}
