//! Vector memory behind one [`VectorStore`] trait: the embedded Qdrant engine by default
//! ([`EdgeStore`]), a Qdrant server at scale ([`QdrantServer`]).
//!
//! Postgres holds the truth (documents, chunks, memories and their vectors); an embedded
//! shard is a cache each node rebuilds from it, which is why the trait offers
//! [`VectorStore::count_all`] and [`VectorStore::drop_collection`]. There is one collection
//! per embedding model, so vectors of different models never mix.
//!
//! Tenant isolation lives here, not in the callers: every point is stamped with its tenant
//! by [`VectorStore::upsert`], a [`Search`] cannot be built without a tenant, every delete
//! and count takes one, and each backend turns a [`Scope`] (which always names one tenant)
//! into its filter in exactly one function.

pub mod edge;
pub mod server;

#[cfg(test)]
mod contract;

use std::fmt;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use shared::TenantId;

pub use edge::EdgeStore;
pub use server::QdrantServer;

/// Result of a vector store operation.
pub type VectorResult<T> = Result<T, VectorError>;

/// What can go wrong in a vector store. Messages never contain point payloads or vectors.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// Reading or writing the embedded store's files failed.
    #[error("vector store i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded engine refused or failed an operation.
    #[error("embedded vector engine failed: {0}")]
    Engine(String),
    /// The Qdrant server refused or failed a request, or could not be reached.
    #[error("qdrant server request failed: {0}")]
    Server(String),
    /// A vector's length does not match its collection's dimension.
    #[error("vector has {got} dimensions, the collection expects {expected}")]
    Dimension {
        /// The collection's dimension.
        expected: usize,
        /// The offending vector's length.
        got: usize,
    },
    /// A vector holds NaN or an infinity, which would poison cosine scores.
    #[error("vector has a component that is not a finite number")]
    NotFinite,
    /// A collection was described with an empty model id or an unsupported dimension.
    #[error("invalid collection: {0}")]
    InvalidCollection(&'static str),
    /// The collection has not been created (or was dropped).
    #[error("vector collection {name} does not exist")]
    MissingCollection {
        /// The collection's derived name.
        name: String,
    },
    /// A collection with this name exists but records another model or dimension.
    #[error("vector collection {name} exists with a different model or dimension")]
    CollectionMismatch {
        /// The collection's derived name.
        name: String,
    },
    /// The store was configured with something unusable (for example a bad server URL).
    #[error("invalid vector store configuration: {0}")]
    Config(String),
}

/// The largest embedding dimension a collection accepts.
pub const MAX_DIMENSION: usize = 8192;

/// The longest readable model slug inside a collection name.
const SLUG_MAX: usize = 40;

/// Payload key holding the tenant UUID of every point.
pub(crate) const TENANT_KEY: &str = "tenant_id";
/// Payload key holding the point's [`Kind`].
pub(crate) const KIND_KEY: &str = "kind";
/// Payload key holding the document id (chunks) or end-user id (memories).
pub(crate) const SOURCE_KEY: &str = "source";

/// One embedding model's vector space: its model id and dimension.
///
/// Vectors of different models are never comparable, so each model gets its own collection,
/// named after both the model and the dimension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Collection {
    model: String,
    dimension: usize,
}

impl Collection {
    /// Describes the collection for `model` producing `dimension`-long vectors.
    ///
    /// The model id must not be blank; the dimension must be in `1..=8192`.
    pub fn new(model: impl Into<String>, dimension: usize) -> VectorResult<Self> {
        let model = model.into();
        if model.trim().is_empty() {
            return Err(VectorError::InvalidCollection("the model id is empty"));
        }
        if dimension == 0 || dimension > MAX_DIMENSION {
            return Err(VectorError::InvalidCollection(
                "the dimension must be between 1 and 8192",
            ));
        }
        Ok(Self { model, dimension })
    }

    /// The embedding model id, as given.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The length of every vector in this collection.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The collection's name in the engine and its directory name on disk.
    ///
    /// `k_<slug>_<8 hex of sha256(model)>_<dimension>`: the slug keeps it readable, the hash
    /// keeps two models with the same slug apart, and only `[a-z0-9_]` appears, so it is
    /// safe as a path component and a Qdrant collection name. The same model and
    /// dimension always give the same name.
    pub fn name(&self) -> String {
        let digest = Sha256::digest(self.model.as_bytes());
        let hash: String = digest
            .iter()
            .take(4)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("k_{}_{hash}_{}", slug(&self.model), self.dimension)
    }

    /// Checks that `vector` belongs in this collection.
    pub(crate) fn check(&self, vector: &[f32]) -> VectorResult<()> {
        if vector.len() != self.dimension {
            return Err(VectorError::Dimension {
                expected: self.dimension,
                got: vector.len(),
            });
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(VectorError::NotFinite);
        }
        Ok(())
    }
}

/// Lower-case ASCII letters and digits of `model`, every other run of characters turned
/// into one `_`, trimmed, at most [`SLUG_MAX`] characters; `model` when nothing is left.
fn slug(model: &str) -> String {
    let mut out = String::new();
    for c in model.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        if out.len() >= SLUG_MAX {
            break;
        }
    }
    let trimmed = out.trim_end_matches('_');
    if trimmed.is_empty() {
        "model".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// What a vector stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A chunk of a knowledge document; its source is the document id.
    Chunk,
    /// A long-term memory about an end user; its source is the end-user id.
    Memory,
}

impl Kind {
    /// The payload value stored with each point.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chunk => "chunk",
            Self::Memory => "memory",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One vector to store. The tenant is not part of it: [`VectorStore::upsert`] stamps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The point id: the chunk's or memory's row id in Postgres.
    pub id: Uuid,
    /// What the vector stands for.
    pub kind: Kind,
    /// The document id for chunks, the end-user id for memories.
    pub source: Uuid,
    /// The embedding; its length must match the collection's dimension.
    pub vector: Vec<f32>,
}

/// A similarity search within one tenant. The fields are private so that no search can
/// exist without a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    tenant: TenantId,
    kind: Kind,
    vector: Vec<f32>,
    limit: usize,
    sources: Option<Vec<Uuid>>,
    min_score: Option<f32>,
}

impl Search {
    /// The `limit` points of `kind` owned by `tenant` nearest to `vector` (cosine).
    pub fn new(tenant: TenantId, kind: Kind, vector: Vec<f32>, limit: usize) -> Self {
        Self {
            tenant,
            kind,
            vector,
            limit,
            sources: None,
            min_score: None,
        }
    }

    /// Only points whose source is one of `sources`. An empty list matches nothing: a caller
    /// that computed "the documents this agent may read" and got none must not see all.
    pub fn sources(mut self, sources: Vec<Uuid>) -> Self {
        self.sources = Some(sources);
        self
    }

    /// Only hits scoring at least `min_score` (cosine similarity, -1.0 to 1.0).
    pub fn min_score(mut self, min_score: f32) -> Self {
        self.min_score = Some(min_score);
        self
    }

    /// The tenant the search is confined to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The kind of points searched.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The query vector.
    pub fn vector(&self) -> &[f32] {
        &self.vector
    }

    /// The most hits returned.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The allowed sources, when restricted.
    pub fn allowed_sources(&self) -> Option<&[Uuid]> {
        self.sources.as_deref()
    }

    /// The lowest score returned, when set.
    pub fn score_floor(&self) -> Option<f32> {
        self.min_score
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The point id.
    pub id: Uuid,
    /// The point's source (document or end user).
    pub source: Uuid,
    /// Cosine similarity to the query, higher is closer.
    pub score: f32,
}

/// What to delete, always within the one tenant passed alongside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// These points (ids of other tenants are left alone). An empty list deletes nothing.
    Points(Vec<Uuid>),
    /// Every point of this source: a deleted document's chunks, a forgotten user's memories.
    Source(Uuid),
    /// Every point of this kind.
    Kind(Kind),
    /// Everything the tenant has in the collection.
    Tenant,
}

/// The set of points one operation may touch: always exactly one tenant, optionally
/// narrowed. Each backend translates it into its filter in one function, so the tenant
/// condition cannot be left out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scope<'a> {
    tenant: TenantId,
    kind: Option<Kind>,
    sources: Option<&'a [Uuid]>,
    points: Option<&'a [Uuid]>,
}

impl<'a> Scope<'a> {
    /// Everything of `tenant`.
    pub(crate) fn tenant(tenant: TenantId) -> Self {
        Self {
            tenant,
            kind: None,
            sources: None,
            points: None,
        }
    }

    /// The points `search` may return.
    pub(crate) fn of_search(search: &'a Search) -> Self {
        Self {
            kind: Some(search.kind),
            sources: search.sources.as_deref(),
            ..Self::tenant(search.tenant)
        }
    }

    /// The points `selector` deletes for `tenant`.
    pub(crate) fn of_selector(tenant: TenantId, selector: &'a Selector) -> Self {
        let all = Self::tenant(tenant);
        match selector {
            Selector::Points(ids) => Self {
                points: Some(ids),
                ..all
            },
            Selector::Source(source) => Self {
                sources: Some(std::slice::from_ref(source)),
                ..all
            },
            Selector::Kind(kind) => Self {
                kind: Some(*kind),
                ..all
            },
            Selector::Tenant => all,
        }
    }

    /// True when an explicit empty list of sources or points makes the scope empty; the
    /// stores then skip the engine call instead of relying on how it reads an empty list.
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_some_and(<[Uuid]>::is_empty) || self.points.is_some_and(<[Uuid]>::is_empty)
    }
}

/// A store of tenant-scoped vectors, one collection per embedding model.
///
/// Every method that reads or deletes points is confined to one tenant; only
/// [`count_all`](Self::count_all) and [`drop_collection`](Self::drop_collection) look at the
/// whole collection, for the cache-rebuild check.
pub trait VectorStore: Send + Sync + fmt::Debug {
    /// Creates the collection with its `tenant_id`, `source` and `kind` payload indexes if
    /// it does not exist yet; does nothing when it does.
    fn ensure<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<()>>;

    /// Inserts or replaces `points` as `tenant`'s. Every vector must have the collection's
    /// dimension (nothing is written otherwise). A point id that already belongs to another
    /// tenant is left untouched.
    fn upsert<'a>(
        &'a self,
        c: &'a Collection,
        tenant: TenantId,
        points: Vec<Point>,
    ) -> BoxFuture<'a, VectorResult<()>>;

    /// Deletes what `what` selects among `tenant`'s points.
    fn delete<'a>(
        &'a self,
        c: &'a Collection,
        tenant: TenantId,
        what: Selector,
    ) -> BoxFuture<'a, VectorResult<()>>;

    /// The search's tenant's nearest points by cosine similarity, best first, each scoring
    /// at least the search's `min_score`.
    fn search<'a>(
        &'a self,
        c: &'a Collection,
        q: &'a Search,
    ) -> BoxFuture<'a, VectorResult<Vec<Hit>>>;

    /// How many points `tenant` has in the collection.
    fn count<'a>(&'a self, c: &'a Collection, tenant: TenantId)
    -> BoxFuture<'a, VectorResult<u64>>;

    /// How many points the collection holds over all tenants. Only for deciding whether a
    /// cache must be rebuilt from Postgres; never for answering a tenant.
    fn count_all<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<u64>>;

    /// Removes the collection and its data; does nothing if it does not exist.
    fn drop_collection<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<()>>;

    /// Makes everything written so far durable (embedded store); a no-op for a server,
    /// which acknowledges writes only once applied.
    fn flush<'a>(&'a self) -> BoxFuture<'a, VectorResult<()>>;
}

/// Checks every point's vector before anything is written.
pub(crate) fn check_points(c: &Collection, points: &[Point]) -> VectorResult<()> {
    points.iter().try_for_each(|point| c.check(&point.vector))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::from(Uuid::new_v4())
    }

    #[test]
    fn collection_rejects_blank_model_and_bad_dimensions() {
        assert!(matches!(
            Collection::new("  ", 384),
            Err(VectorError::InvalidCollection(_))
        ));
        assert!(Collection::new("m", 0).is_err());
        assert!(Collection::new("m", MAX_DIMENSION + 1).is_err());
        assert!(Collection::new("m", MAX_DIMENSION).is_ok());
        assert!(Collection::new("m", 1).is_ok());
    }

    #[test]
    fn collection_name_is_safe_stable_and_readable() {
        let c = Collection::new("sentence-transformers/paraphrase-MiniLM-L3-v2", 384).unwrap();
        let name = c.name();
        assert_eq!(name, c.clone().name());
        assert!(name.starts_with("k_sentence_transformers_paraphrase_minil"));
        assert!(name.ends_with("_384"));
        assert!(
            name.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        );
        // "k_" + slug (<= 40) + "_" + 8 hex + "_" + up to 4 digits.
        assert!(name.len() <= 2 + SLUG_MAX + 1 + 8 + 1 + 4, "{name}");
        let hash = name.rsplit('_').nth(1).unwrap();
        assert_eq!(hash.len(), 8);
        assert!(hash.chars().all(|ch| ch.is_ascii_hexdigit()));
    }

    #[test]
    fn collection_names_differ_by_model_and_by_dimension() {
        let a = Collection::new("BAAI/bge-small", 384).unwrap().name();
        let b = Collection::new("baai-bge-small", 384).unwrap().name();
        let c = Collection::new("BAAI/bge-small", 768).unwrap().name();
        assert_ne!(a, b, "same slug, different model");
        assert_ne!(a, c, "same model, different dimension");
    }

    #[test]
    fn slug_of_symbols_only_falls_back() {
        assert_eq!(slug("///"), "model");
        assert_eq!(slug("Ünïcode--Model__v2"), "n_code_model_v2");
        assert_eq!(slug(&"a".repeat(100)).len(), SLUG_MAX);
        assert_eq!(
            Collection::new("???", 8).unwrap().name().split('_').nth(1),
            Some("model")
        );
    }

    #[test]
    fn collection_check_reports_dimension_and_non_finite() {
        let c = Collection::new("m", 3).unwrap();
        assert!(c.check(&[0.0, 1.0, 0.0]).is_ok());
        assert!(matches!(
            c.check(&[1.0, 0.0]),
            Err(VectorError::Dimension {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            c.check(&[1.0, f32::NAN, 0.0]),
            Err(VectorError::NotFinite)
        ));
    }

    #[test]
    fn every_scope_names_the_tenant() {
        let t = tenant();
        let source = Uuid::new_v4();
        let search = Search::new(t, Kind::Memory, vec![1.0], 5).sources(vec![source]);
        let selectors = [
            Selector::Points(vec![Uuid::new_v4()]),
            Selector::Source(source),
            Selector::Kind(Kind::Chunk),
            Selector::Tenant,
        ];
        assert_eq!(Scope::of_search(&search).tenant, t);
        assert_eq!(Scope::of_search(&search).kind, Some(Kind::Memory));
        for selector in &selectors {
            assert_eq!(Scope::of_selector(t, selector).tenant, t);
        }
        assert_eq!(
            Scope::of_selector(t, &Selector::Source(source)).sources,
            Some(&[source][..])
        );
    }

    #[test]
    fn empty_lists_make_an_empty_scope() {
        let t = tenant();
        let empty_sources = Search::new(t, Kind::Chunk, vec![1.0], 5).sources(vec![]);
        assert!(Scope::of_search(&empty_sources).is_empty());
        assert!(Scope::of_selector(t, &Selector::Points(vec![])).is_empty());
        assert!(!Scope::of_selector(t, &Selector::Tenant).is_empty());
        assert!(!Scope::of_search(&Search::new(t, Kind::Chunk, vec![1.0], 5)).is_empty());
    }
}
