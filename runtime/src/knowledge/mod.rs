//! The knowledge base and long-term memory: documents turned into passages and vectors, the
//! passages a message retrieves (with their sources), and what agents remember about each end
//! user.
//!
//! Postgres holds the truth (`store::knowledge`): documents, passages, memories and every vector
//! by model. The [`VectorStore`] is an index over those vectors — the embedded engine on this
//! node (rebuilt from Postgres when it is missing or behind, see [`Knowledge::sync_index`]) or a
//! shared Qdrant server. Whatever the index returns is read back through Postgres, so a vector
//! whose document or memory is gone is never used, even before the index has caught up.
//!
//! Each tenant's vectors are in one model's space (`knowledge_index`); changing the model builds
//! the new space beside the old one and swaps when it is complete (`jobs`).

pub mod chunk;
pub mod extract;
pub mod jobs;
pub mod memory;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shared::knowledge::{KnowledgeResults, Passage};
use shared::resources::LlmProvider;
use shared::{AgentId, EndUserId, TenantId};
use uuid::Uuid;

use crate::config::{KnowledgeSettings, LlmSettings};
use crate::crypto::Keyring;
use crate::embed::{EmbedError, Local, ModelSpec, ProviderEmbedder, ProviderKind, SharedEmbedder};
use crate::outbound::Outbound;
use crate::store::knowledge::{self as kstore, EmbeddingRow, IndexRow, VectorKind};
use crate::store::{Store, StoreError, TenantTx};
use crate::vector::{Collection, Hit, Kind, Point, Search, Selector, VectorError, VectorStore};

/// Why knowledge work failed. Messages are ours, never a document's or a provider's text.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("the vector index failed: {0}")]
    Vector(#[from] VectorError),
    #[error("the embedding model {0:?} is not available on this platform")]
    ModelUnavailable(String),
    #[error("the original could not be kept: {0}")]
    Io(#[from] std::io::Error),
}

pub type KnowledgeResult<T> = Result<T, KnowledgeError>;

/// A tenant's vector space: the model spec, its embedder, and its collection.
#[derive(Debug, Clone)]
pub struct Space {
    pub spec: ModelSpec,
    pub embedder: SharedEmbedder,
    pub collection: Collection,
}

/// A memory recalled for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalled {
    pub id: Uuid,
    pub text: String,
}

/// The knowledge base and memory service (cheap to clone).
#[derive(Clone)]
pub struct Knowledge {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    vectors: Arc<dyn VectorStore>,
    settings: KnowledgeSettings,
    llm: LlmSettings,
    keyring: Arc<Keyring>,
    /// Fetches documents' URLs: public addresses only (and the operator's allowlist).
    http: Outbound,
    /// Reaches the embedding providers the operator configured.
    providers: Outbound,
    default: ModelSpec,
    /// One rebuild of this node's index at a time.
    syncing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field("vectors", &self.inner.vectors)
            .field("default_model", &self.inner.default)
            .finish_non_exhaustive()
    }
}

impl Knowledge {
    /// The service over `vectors`. `http` fetches documents' URLs; `providers` reaches the
    /// embedding endpoints the operator configured (which may be on a private network).
    pub fn new(
        store: Store,
        vectors: Arc<dyn VectorStore>,
        settings: KnowledgeSettings,
        llm: LlmSettings,
        keyring: Arc<Keyring>,
        http: Outbound,
        providers: Outbound,
    ) -> Self {
        let default = ModelSpec::parse(&settings.embedding_model).unwrap_or(ModelSpec::Local);
        Self {
            inner: Arc::new(Inner {
                store,
                vectors,
                settings,
                llm,
                keyring,
                http,
                providers,
                default,
                syncing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn settings(&self) -> &KnowledgeSettings {
        &self.inner.settings
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn vectors(&self) -> &Arc<dyn VectorStore> {
        &self.inner.vectors
    }

    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    pub fn http(&self) -> &Outbound {
        &self.inner.http
    }

    /// The model of tenants that chose none.
    pub fn default_model(&self) -> &ModelSpec {
        &self.inner.default
    }

    /// The models this platform can embed with: the shipped one, and each configured provider's
    /// (with the platform's key, or a tenant's own OpenAI key).
    pub fn available(&self) -> Vec<String> {
        let mut out = vec![crate::embed::LOCAL.to_string()];
        out.push("openai:text-embedding-3-small".into());
        if self.inner.llm.ollama_url.is_some() {
            out.push("ollama:nomic-embed-text".into());
        }
        let default = self.inner.default.name();
        if !out.contains(&default) {
            out.push(default);
        }
        out
    }

    /// Where `tenant`'s originals are kept.
    pub fn originals_dir(&self, tenant: TenantId) -> PathBuf {
        self.inner
            .settings
            .data_dir
            .join("knowledge")
            .join(tenant.to_string())
    }

    /// The path of one original.
    pub fn original_path(&self, tenant: TenantId, document: Uuid) -> PathBuf {
        self.originals_dir(tenant).join(document.to_string())
    }

    /// Keeps an original (written to a temporary name, then renamed into place).
    pub async fn keep_original(
        &self,
        tenant: TenantId,
        document: Uuid,
        bytes: &[u8],
    ) -> KnowledgeResult<()> {
        let dir = self.originals_dir(tenant);
        tokio::fs::create_dir_all(&dir).await?;
        let path = self.original_path(tenant, document);
        let partial = dir.join(format!("{document}.partial"));
        tokio::fs::write(&partial, bytes).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(())
    }

    /// Deletes an original; a missing file is not an error.
    pub async fn drop_original(&self, tenant: TenantId, document: Uuid) -> KnowledgeResult<()> {
        remove_file(&self.original_path(tenant, document)).await
    }

    /// The embedder for `spec`, with `tenant`'s own OpenAI key where it has one.
    pub async fn embedder(
        &self,
        tenant: TenantId,
        spec: &ModelSpec,
    ) -> KnowledgeResult<SharedEmbedder> {
        match spec {
            ModelSpec::Local => Ok(Arc::new(Local::shared()?)),
            ModelSpec::Provider {
                kind: ProviderKind::OpenAi,
                model,
            } => {
                // As the engine does with chat: a tenant's own key is preferred; one that cannot
                // be read is logged and the platform's is used.
                let own = match crate::llm::metering::tenant_credentials(
                    &self.inner.store,
                    &self.inner.keyring,
                    tenant,
                )
                .await
                {
                    Ok(c) => c.key(LlmProvider::Openai).map(|k| k.expose().clone()),
                    Err(e) => {
                        tracing::error!(tenant.id = %tenant, error = %e, "tenant LLM keys unreadable; using the platform's");
                        None
                    }
                };
                let key = own.or_else(|| {
                    self.inner
                        .llm
                        .openai_api_key
                        .as_ref()
                        .map(|k| k.expose().clone())
                });
                let Some(key) = key else {
                    return Err(KnowledgeError::ModelUnavailable(spec.name()));
                };
                Ok(Arc::new(ProviderEmbedder::new(
                    ProviderKind::OpenAi,
                    &self.inner.llm.openai_base_url,
                    model,
                    Some(key),
                    self.inner.providers.clone(),
                )))
            }
            ModelSpec::Provider {
                kind: ProviderKind::Ollama,
                model,
            } => {
                let Some(url) = &self.inner.llm.ollama_url else {
                    return Err(KnowledgeError::ModelUnavailable(spec.name()));
                };
                Ok(Arc::new(ProviderEmbedder::new(
                    ProviderKind::Ollama,
                    url,
                    model,
                    None,
                    self.inner.providers.clone(),
                )))
            }
        }
    }

    /// The tenant's current space, if it has embedded anything yet.
    pub async fn space(&self, tx: &mut TenantTx) -> KnowledgeResult<Option<Space>> {
        let Some(row) = kstore::index(tx).await? else {
            return Ok(None);
        };
        let spec = spec_of_row(&row, &self.inner.default);
        let embedder = self.embedder(tx.tenant(), &spec).await?;
        // Never compare a query from one model with vectors of another (a new build's local
        // model, an id this build does not know): the index must be rebuilt first.
        if embedder.model() != row.model {
            return Err(KnowledgeError::ModelUnavailable(row.model.clone()));
        }
        let collection = Collection::new(row.model.clone(), dimension(row.dimension))?;
        Ok(Some(Space {
            spec,
            embedder,
            collection,
        }))
    }

    /// The tenant's space to write new vectors into: its current one, or (for its first
    /// vectors) the platform default's, recorded once the dimension is known.
    pub async fn space_for_writing(&self, tenant: TenantId) -> KnowledgeResult<WriteSpace> {
        let mut tx = self.inner.store.tenant_tx(tenant).await?;
        let row = kstore::index(&mut tx).await?;
        drop(tx);
        let spec = row.as_ref().map_or_else(
            || self.inner.default.clone(),
            |r| spec_of_row(r, &self.inner.default),
        );
        let embedder = self.embedder(tenant, &spec).await?;
        Ok(WriteSpace {
            spec,
            embedder,
            known: row.map(|r| (r.model, dimension(r.dimension))),
        })
    }

    /// Embeds `texts` in `space` and makes sure the collection exists; records the tenant's
    /// index the first time.
    pub async fn embed_for(
        &self,
        tenant: TenantId,
        space: &WriteSpace,
        texts: &[String],
    ) -> KnowledgeResult<(Collection, Vec<Vec<f32>>)> {
        let vectors = space.embedder.embed(texts).await?;
        let dim = vectors
            .first()
            .map(Vec::len)
            .or(space.known.as_ref().map(|k| k.1))
            .unwrap_or(1);
        let model = space.embedder.model().to_string();
        if let Some((known, known_dim)) = &space.known
            && (known != &model || *known_dim != dim)
        {
            return Err(KnowledgeError::Vector(VectorError::Dimension {
                expected: *known_dim,
                got: dim,
            }));
        }
        let collection = Collection::new(model.clone(), dim)?;
        self.inner.vectors.ensure(&collection).await?;
        if space.known.is_none() {
            let mut tx = self.inner.store.tenant_tx(tenant).await?;
            if kstore::index(&mut tx).await?.is_none() {
                kstore::put_index(
                    &mut tx,
                    &IndexRow {
                        model,
                        dimension: i32::try_from(dim).unwrap_or(i32::MAX),
                        building: None,
                        building_model: None,
                        building_dimension: None,
                        building_done: 0,
                        building_total: 0,
                        building_error: None,
                    },
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok((collection, vectors))
    }

    /// Puts vectors kept in Postgres into the index.
    pub async fn index_points(
        &self,
        tenant: TenantId,
        collection: &Collection,
        rows: &[EmbeddingRow],
    ) -> KnowledgeResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let points = rows.iter().map(point_of).collect();
        self.inner
            .vectors
            .upsert(collection, tenant, points)
            .await?;
        Ok(())
    }

    /// Removes everything of `source` (a document's passages or an end user's memories) from
    /// every collection the tenant may have vectors in.
    pub async fn unindex_source(&self, tenant: TenantId, source: Uuid) -> KnowledgeResult<()> {
        for collection in self.collections_of(tenant).await? {
            self.delete_points(&collection, tenant, Selector::Source(source))
                .await?;
        }
        Ok(())
    }

    /// Deletes from one collection; a collection this node never had holds nothing to delete.
    async fn delete_points(
        &self,
        collection: &Collection,
        tenant: TenantId,
        what: Selector,
    ) -> KnowledgeResult<()> {
        match self.inner.vectors.delete(collection, tenant, what).await {
            Ok(()) | Err(VectorError::MissingCollection { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.vectors.flush().await?;
        Ok(())
    }

    /// Removes these points from every collection the tenant may have vectors in.
    pub async fn unindex_points(&self, tenant: TenantId, ids: Vec<Uuid>) -> KnowledgeResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        for collection in self.collections_of(tenant).await? {
            self.delete_points(&collection, tenant, Selector::Points(ids.clone()))
                .await?;
        }
        Ok(())
    }

    /// Removes all of a tenant's points (the tenant was deleted) from the collections this
    /// platform knows.
    pub async fn unindex_tenant(
        &self,
        tenant: TenantId,
        models: &[(String, usize)],
    ) -> KnowledgeResult<()> {
        for (model, dim) in models {
            let collection = Collection::new(model.clone(), *dim)?;
            self.delete_points(&collection, tenant, Selector::Tenant)
                .await?;
        }
        Ok(())
    }

    /// The collections a tenant's vectors may be in: its current one and one being built.
    async fn collections_of(&self, tenant: TenantId) -> KnowledgeResult<Vec<Collection>> {
        let mut tx = self.inner.store.tenant_tx(tenant).await?;
        let row = kstore::index(&mut tx).await?;
        drop(tx);
        let mut out = Vec::new();
        if let Some(row) = row {
            out.push(Collection::new(
                row.model.clone(),
                dimension(row.dimension),
            )?);
            if let (Some(model), Some(dim)) = (&row.building_model, row.building_dimension) {
                out.push(Collection::new(model.clone(), dimension(dim))?);
            }
        }
        Ok(out)
    }

    /// The passages a message would retrieve for `agent` (every document when `None`): best
    /// first, at or above the relevance floor, read back through Postgres.
    pub async fn search(
        &self,
        tenant: TenantId,
        agent: Option<AgentId>,
        text: &str,
        limit: usize,
    ) -> KnowledgeResult<KnowledgeResults> {
        let floor = self.inner.settings.relevance_floor;
        let mut tx = self.inner.store.tenant_tx(tenant).await?;
        let Some(space) = self.space(&mut tx).await? else {
            return Ok(KnowledgeResults {
                passages: Vec::new(),
                floor,
                model: self.inner.default.name(),
            });
        };
        let sources = kstore::ready_sources(&mut tx, agent).await?;
        drop(tx);
        let model = space.spec.name();
        if sources.is_empty() || text.trim().is_empty() {
            return Ok(KnowledgeResults {
                passages: Vec::new(),
                floor,
                model,
            });
        }
        let query = query_vector(&space, text).await?;
        let search = Search::new(tenant, Kind::Chunk, query, limit)
            .sources(sources)
            .min_score(floor);
        let hits = self.search_index(&space.collection, &search).await?;
        let mut tx = self.inner.store.tenant_tx(tenant).await?;
        let ids: Vec<Uuid> = hits.iter().map(|h| h.id).collect();
        let rows = kstore::passages(&mut tx, &ids).await?;
        drop(tx);
        let passages = in_hit_order(&hits, rows, |r| r.chunk_id)
            .into_iter()
            .map(|(hit, r)| Passage {
                document_id: r.document_id,
                chunk_id: r.chunk_id,
                title: r.title,
                url: r.url,
                // The passage's text opens with its heading path (so it embeds with it); shown
                // and cited, the heading is its own field.
                text: r
                    .text
                    .strip_prefix(r.heading.as_str())
                    .filter(|_| !r.heading.is_empty())
                    .map_or_else(|| r.text.clone(), |rest| rest.trim_start().to_string()),
                heading: r.heading,
                score: hit.score,
            })
            .collect();
        Ok(KnowledgeResults {
            passages,
            floor,
            model,
        })
    }

    /// The memories of `end_user` most related to `text`, read back through Postgres (a deleted
    /// memory is never recalled, whatever the index still holds).
    pub async fn recall(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        text: &str,
        limit: usize,
    ) -> KnowledgeResult<Vec<Recalled>> {
        if limit == 0 || text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.inner.store.tenant_tx(tenant).await?;
        // Most people have no memories yet: then there is nothing to embed the message for.
        if !kstore::has_memories(&mut tx, end_user).await? {
            return Ok(Vec::new());
        }
        let Some(space) = self.space(&mut tx).await? else {
            return Ok(Vec::new());
        };
        drop(tx);
        let query = query_vector(&space, text).await?;
        let search = Search::new(tenant, Kind::Memory, query, limit)
            .sources(vec![*end_user.as_uuid()])
            // Memories are few and all about this person: a low floor keeps the relevant ones.
            .min_score(-1.0);
        let hits = self.search_index(&space.collection, &search).await?;
        let mut tx = self.inner.store.tenant_tx(tenant).await?;
        let ids: Vec<Uuid> = hits.iter().map(|h| h.id).collect();
        let rows = kstore::memories_by_id(&mut tx, &ids).await?;
        drop(tx);
        Ok(in_hit_order(&hits, rows, |r| r.id)
            .into_iter()
            .filter(|(_, r)| r.end_user_id == end_user)
            .map(|(_, r)| Recalled {
                id: r.id,
                text: r.text,
            })
            .collect())
    }

    /// Searches the index; a collection this node does not have yet (a new node, a lost data
    /// directory) is rebuilt from Postgres first.
    async fn search_index(
        &self,
        collection: &Collection,
        search: &Search,
    ) -> KnowledgeResult<Vec<Hit>> {
        match self.inner.vectors.search(collection, search).await {
            Err(VectorError::MissingCollection { .. }) => {
                self.sync_index(collection.model(), collection.dimension())
                    .await?;
                Ok(self.inner.vectors.search(collection, search).await?)
            }
            other => Ok(other?),
        }
    }

    /// Brings this node's embedded index up to date for every model tenants use.
    pub async fn sync_all(&self) -> KnowledgeResult<u64> {
        let models: Vec<(String, i32)> =
            sqlx::query_as("SELECT model, dimension FROM embeddings_models()")
                .fetch_all(self.inner.store.pool())
                .await
                .map_err(StoreError::from)?;
        let mut loaded = 0;
        for (model, dim) in models {
            loaded += self.sync_index(&model, dimension(dim)).await?;
        }
        Ok(loaded)
    }

    /// Makes this node's embedded index hold every vector Postgres has for `model`: when the
    /// counts differ (a fresh node, a lost data directory, changes made on another node), the
    /// collection is rebuilt from Postgres. A shared Qdrant server is fed by every node's
    /// writes and needs no rebuild.
    pub async fn sync_index(&self, model: &str, dim: usize) -> KnowledgeResult<u64> {
        let _one_at_a_time = self.inner.syncing.lock().await;
        let collection = Collection::new(model.to_string(), dim)?;
        let truth = kstore::count_for_rebuild(&self.inner.store, model).await?;
        self.inner.vectors.ensure(&collection).await?;
        let held = self.inner.vectors.count_all(&collection).await?;
        if i64::try_from(held).unwrap_or(i64::MAX) == truth {
            return Ok(0);
        }
        tracing::info!(
            model,
            held,
            truth,
            "rebuilding the vector index from Postgres"
        );
        self.inner.vectors.drop_collection(&collection).await?;
        self.inner.vectors.ensure(&collection).await?;
        let mut after = (Uuid::nil(), Uuid::nil());
        let mut loaded = 0u64;
        loop {
            let page = kstore::rebuild_page(&self.inner.store, model, after, 1000).await?;
            let Some((last_tenant, last)) = page.last() else {
                break;
            };
            after = (*last_tenant, last.id);
            let mut by_tenant: std::collections::BTreeMap<Uuid, Vec<Point>> = Default::default();
            for (tenant, row) in &page {
                if row.vector.len() == dim {
                    by_tenant.entry(*tenant).or_default().push(point_of(row));
                }
            }
            for (tenant, points) in by_tenant {
                loaded += points.len() as u64;
                self.inner
                    .vectors
                    .upsert(&collection, TenantId::from_uuid(tenant), points)
                    .await?;
            }
        }
        self.inner.vectors.flush().await?;
        Ok(loaded)
    }
}

/// A space to write into, with what the tenant's index row says (if it has one).
#[derive(Debug, Clone)]
pub struct WriteSpace {
    pub spec: ModelSpec,
    pub embedder: SharedEmbedder,
    /// The recorded model id and dimension.
    pub known: Option<(String, usize)>,
}

fn dimension(d: i32) -> usize {
    usize::try_from(d).unwrap_or(1).max(1)
}

/// The spec a stored model id comes from: the local model's id, or `openai:…` / `ollama:…`.
fn spec_of_row(row: &IndexRow, default: &ModelSpec) -> ModelSpec {
    ModelSpec::parse(&row.model).unwrap_or_else(|| {
        if row.model.starts_with("pocket-encoder/") {
            ModelSpec::Local
        } else {
            default.clone()
        }
    })
}

fn point_of(row: &EmbeddingRow) -> Point {
    Point {
        id: row.id,
        kind: match row.kind {
            VectorKind::Chunk => Kind::Chunk,
            VectorKind::Memory => Kind::Memory,
        },
        source: row.source,
        vector: row.vector.clone(),
    }
}

async fn query_vector(space: &Space, text: &str) -> KnowledgeResult<Vec<f32>> {
    // The query is cut like a passage: the model reads only so many tokens.
    let text: String = text.chars().take(2000).collect();
    let mut vectors = space.embedder.embed(&[text]).await?;
    vectors
        .pop()
        .ok_or_else(|| KnowledgeError::Embed(EmbedError::Inference("no vector".into())))
}

/// `rows` in the order of `hits`, paired with their hit; rows without a hit are dropped.
fn in_hit_order<R>(hits: &[Hit], rows: Vec<R>, id: impl Fn(&R) -> Uuid) -> Vec<(Hit, R)> {
    let mut by_id: std::collections::HashMap<Uuid, R> =
        rows.into_iter().map(|r| (id(&r), r)).collect();
    hits.iter()
        .filter_map(|h| by_id.remove(&h.id).map(|r| (h.clone(), r)))
        .collect()
}

async fn remove_file(path: &Path) -> KnowledgeResult<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}
