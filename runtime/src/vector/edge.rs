//! The embedded vector store: Qdrant's engine (`qdrant-edge`) in-process, one shard
//! directory per collection under the runtime's data directory (`<dir>/<collection name>/`).
//!
//! The shards are a cache of what Postgres holds. Writes reach disk on [`VectorStore::flush`]
//! (and when the store is dropped); the engine does not replay its write-ahead log on load,
//! so a crash loses what was written since the last flush and the rebuild from Postgres
//! restores it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures_util::future::BoxFuture;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition, ConditionalInsertOperation, CountRequest, CreateIndex, DEFAULT_VECTOR_NAME,
    Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder, FieldCondition,
    FieldIndexOperations, Filter, JsonPath, KeywordIndexParams, Match, NamedQuery, OperationError,
    PayloadFieldSchema, PayloadSchemaParams, PointId, PointInsertOperations, PointOperations,
    PointStruct, QueryEnum, QueryRequest, ScoredPoint, ScoringQuery, UpdateOperation,
    WithPayloadInterface, WithVector,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    Collection, Hit, KIND_KEY, Point, SOURCE_KEY, Scope, Search, Selector, TENANT_KEY, VectorError,
    VectorResult, VectorStore, check_points,
};
use shared::TenantId;

/// The file in each shard directory that records the collection's model and dimension.
const META_FILE: &str = "konstruct_collection.json";
/// The file the engine writes once a shard exists; its presence means "load, don't create".
const ENGINE_CONFIG_FILE: &str = "edge_config.json";

/// One open shard. `None` once the collection has been dropped, so a task that picked the
/// slot up just before the drop fails cleanly instead of writing into a deleted directory.
///
/// Reads share the lock; writes and flushes take it exclusively, because the engine's
/// flush panics when it finds its write-ahead log busy.
type Slot = RwLock<Option<EdgeShard>>;

/// Vector store on the embedded engine. Cheap to share behind an `Arc`; all engine calls
/// run on tokio's blocking pool.
#[derive(Clone)]
pub struct EdgeStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The shards' own debug output is their whole configuration: name them only. Never
        // wait for the map here; a shard may be loading on a blocking thread.
        let open: Vec<String> = self
            .inner
            .shards
            .try_lock()
            .map(|shards| shards.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("EdgeStore")
            .field("dir", &self.inner.dir)
            .field("open", &open)
            .finish()
    }
}

struct Inner {
    /// The data directory; each collection is a subdirectory named [`Collection::name`].
    dir: PathBuf,
    /// Open shards by collection name. Locked on blocking threads only (the `Debug` impl
    /// merely tries), and held while a shard opens, so no directory is ever opened twice.
    shards: Mutex<HashMap<String, Arc<Slot>>>,
}

impl EdgeStore {
    /// A store keeping its shards under `dir`, which is created if missing. Shards are
    /// opened lazily, on first use of their collection.
    pub fn open(dir: impl Into<PathBuf>) -> VectorResult<EdgeStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                shards: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `work` on the blocking pool; a panic inside the engine becomes an error.
    async fn blocking<T, F>(&self, work: F) -> VectorResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> VectorResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|err| VectorError::Engine(format!("engine task failed: {err}")))?
    }
}

impl Inner {
    /// The open shard of `c`, loading it from disk if its directory holds one. With
    /// `create`, a missing shard is created (with its payload indexes); without, it is a
    /// [`VectorError::MissingCollection`].
    fn slot(&self, c: &Collection, create: bool) -> VectorResult<Arc<Slot>> {
        let name = c.name();
        let mut shards = self.shards.lock().map_err(|_| poisoned())?;
        if let Some(slot) = shards.get(&name) {
            return Ok(Arc::clone(slot));
        }
        let path = self.dir.join(&name);
        let shard = if path.join(ENGINE_CONFIG_FILE).exists() {
            load_shard(&path, c)?
        } else if create {
            create_shard(&path, c)?
        } else {
            return Err(VectorError::MissingCollection { name });
        };
        let slot = Arc::new(RwLock::new(Some(shard)));
        shards.insert(name, Arc::clone(&slot));
        Ok(slot)
    }

    /// Runs `read` on the open shard of `c`.
    fn read<T>(
        &self,
        c: &Collection,
        read: impl FnOnce(&EdgeShard) -> VectorResult<T>,
    ) -> VectorResult<T> {
        let slot = self.slot(c, false)?;
        let guard = slot.read().map_err(|_| poisoned())?;
        let shard = guard.as_ref().ok_or_else(|| missing(c))?;
        read(shard)
    }

    /// Applies `operation` to the open shard of `c`.
    fn write(&self, c: &Collection, operation: UpdateOperation) -> VectorResult<()> {
        let slot = self.slot(c, false)?;
        let guard = slot.write().map_err(|_| poisoned())?;
        let shard = guard.as_ref().ok_or_else(|| missing(c))?;
        shard.update(operation).map_err(engine)
    }
}

/// Creates a shard for `c` at `path`, with its payload indexes and a record of its model.
fn create_shard(path: &Path, c: &Collection) -> VectorResult<EdgeShard> {
    std::fs::create_dir_all(path)?;
    let config = EdgeConfigBuilder::new()
        .on_disk_payload(true)
        .vector(
            DEFAULT_VECTOR_NAME,
            EdgeVectorParamsBuilder::new(c.dimension(), Distance::Cosine)
                .on_disk(true)
                .build(),
        )
        .build();
    let shard = EdgeShard::new(path, config).map_err(engine)?;
    for (key, tenant) in [(TENANT_KEY, true), (SOURCE_KEY, false), (KIND_KEY, false)] {
        let params = KeywordIndexParams {
            is_tenant: tenant.then_some(true),
            ..KeywordIndexParams::default()
        };
        let index = CreateIndex {
            field_name: json_key(key)?,
            field_schema: Some(PayloadFieldSchema::FieldParams(
                PayloadSchemaParams::Keyword(params),
            )),
        };
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(index),
            ))
            .map_err(engine)?;
    }
    write_meta(path, c)?;
    Ok(shard)
}

/// Loads the shard at `path` and checks it was made for `c`.
fn load_shard(path: &Path, c: &Collection) -> VectorResult<EdgeShard> {
    let shard = EdgeShard::load(path, None).map_err(engine)?;
    let fits = shard
        .config()
        .vectors
        .get(DEFAULT_VECTOR_NAME)
        .is_some_and(|v| v.size == c.dimension() && v.distance == Distance::Cosine);
    let recorded = match std::fs::read(path.join(META_FILE)) {
        Ok(bytes) => Some(
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|err| VectorError::Engine(format!("unreadable {META_FILE}: {err}")))?,
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err.into()),
    };
    let same_model = recorded.as_ref().is_none_or(|meta| {
        meta.get("model").and_then(|m| m.as_str()) == Some(c.model())
            && meta.get("dimension").and_then(|d| d.as_u64()) == Some(c.dimension() as u64)
    });
    if !fits || !same_model {
        return Err(VectorError::CollectionMismatch { name: c.name() });
    }
    if recorded.is_none() {
        // Created by a process that stopped before recording the model: record it now.
        write_meta(path, c)?;
    }
    Ok(shard)
}

/// Records `c`'s model and dimension next to the shard (written to a temporary file and
/// renamed, so a crash never leaves half a record).
fn write_meta(path: &Path, c: &Collection) -> VectorResult<()> {
    let meta = json!({ "model": c.model(), "dimension": c.dimension() });
    let tmp = path.join(format!("{META_FILE}.tmp"));
    std::fs::write(&tmp, meta.to_string())?;
    std::fs::rename(&tmp, path.join(META_FILE))?;
    Ok(())
}

/// The engine's filter for `scope`: the one place the embedded store builds filters, so the
/// tenant condition is always the first `must` clause.
fn filter(scope: &Scope<'_>) -> VectorResult<Filter> {
    let mut must = vec![keyword(TENANT_KEY, scope.tenant.to_string())?];
    if let Some(kind) = scope.kind {
        must.push(keyword(KIND_KEY, kind.as_str().to_owned())?);
    }
    if let Some(sources) = scope.sources {
        let any: Vec<String> = sources.iter().map(Uuid::to_string).collect();
        must.push(Condition::Field(FieldCondition::new_match(
            json_key(SOURCE_KEY)?,
            Match::from(any),
        )));
    }
    if let Some(points) = scope.points {
        must.push(Condition::HasId(
            points.iter().map(|id| PointId::Uuid(*id)).collect(),
        ));
    }
    Ok(Filter {
        must: Some(must),
        ..Filter::new()
    })
}

/// `key == value` on a keyword payload field.
fn keyword(key: &str, value: String) -> VectorResult<Condition> {
    Ok(Condition::Field(FieldCondition::new_match(
        json_key(key)?,
        Match::from(value),
    )))
}

/// A payload key as the engine's path type.
fn json_key(key: &str) -> VectorResult<JsonPath> {
    key.parse()
        .map_err(|()| VectorError::Engine(format!("invalid payload key {key}")))
}

/// The engine's point for `point`, stamped with `tenant`.
fn engine_point(tenant: TenantId, point: Point) -> PointStruct {
    let payload = json!({
        TENANT_KEY: tenant.to_string(),
        KIND_KEY: point.kind.as_str(),
        SOURCE_KEY: point.source.to_string(),
    });
    PointStruct::new(PointId::Uuid(point.id), point.vector, payload)
}

/// The engine's request for `q` (restricted by `filter`).
fn query_request(q: &Search, filter: Filter) -> VectorResult<QueryRequest> {
    Ok(QueryRequest {
        prefetches: Vec::new(),
        query: Some(ScoringQuery::Vector(QueryEnum::Nearest(
            // The engine normalises the query for cosine itself (the contract checks
            // scores with an unnormalised query).
            NamedQuery::default_dense(q.vector().to_vec()),
        ))),
        filter: Some(filter),
        score_threshold: q.score_floor().map(OrderedFloat),
        limit: q.limit(),
        offset: 0,
        params: None,
        with_vector: WithVector::Bool(false),
        with_payload: WithPayloadInterface::Fields(vec![json_key(SOURCE_KEY)?]),
    })
}

/// A hit from the engine's scored point.
fn hit(point: ScoredPoint) -> VectorResult<Hit> {
    let PointId::Uuid(id) = point.id else {
        return Err(VectorError::Engine("a point has a numeric id".to_owned()));
    };
    let source = point
        .payload
        .as_ref()
        .and_then(|payload| payload.0.get(SOURCE_KEY))
        .and_then(|value| value.as_str())
        .and_then(|text| Uuid::parse_str(text).ok())
        .ok_or_else(|| VectorError::Engine(format!("point {id} has no valid source")))?;
    Ok(Hit {
        id,
        source,
        score: point.score,
    })
}

fn engine(err: OperationError) -> VectorError {
    VectorError::Engine(err.to_string())
}

fn poisoned() -> VectorError {
    VectorError::Engine("an earlier engine call panicked".to_owned())
}

fn missing(c: &Collection) -> VectorError {
    VectorError::MissingCollection { name: c.name() }
}

impl VectorStore for EdgeStore {
    fn ensure<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<()>> {
        let c = c.clone();
        Box::pin(self.blocking(move |inner| inner.slot(&c, true).map(drop)))
    }

    fn upsert<'a>(
        &'a self,
        c: &'a Collection,
        tenant: TenantId,
        points: Vec<Point>,
    ) -> BoxFuture<'a, VectorResult<()>> {
        Box::pin(async move {
            check_points(c, &points)?;
            if points.is_empty() {
                return Ok(());
            }
            let condition = filter(&Scope::tenant(tenant))?;
            let points_op = PointInsertOperations::PointsList(
                points
                    .into_iter()
                    .map(|point| engine_point(tenant, point).into())
                    .collect(),
            );
            // Conditional: an id that exists under another tenant is left alone.
            let operation = UpdateOperation::PointOperation(
                PointOperations::UpsertPointsConditional(ConditionalInsertOperation {
                    points_op,
                    condition,
                    update_mode: None,
                }),
            );
            let c = c.clone();
            self.blocking(move |inner| inner.write(&c, operation)).await
        })
    }

    fn delete<'a>(
        &'a self,
        c: &'a Collection,
        tenant: TenantId,
        what: Selector,
    ) -> BoxFuture<'a, VectorResult<()>> {
        Box::pin(async move {
            let scope = Scope::of_selector(tenant, &what);
            let operation = if scope.is_empty() {
                None
            } else {
                Some(UpdateOperation::PointOperation(
                    PointOperations::DeletePointsByFilter(filter(&scope)?),
                ))
            };
            let c = c.clone();
            self.blocking(move |inner| match operation {
                Some(operation) => inner.write(&c, operation),
                // Nothing to delete, but a missing collection is still reported.
                None => inner.read(&c, |_| Ok(())),
            })
            .await
        })
    }

    fn search<'a>(
        &'a self,
        c: &'a Collection,
        q: &'a Search,
    ) -> BoxFuture<'a, VectorResult<Vec<Hit>>> {
        Box::pin(async move {
            c.check(q.vector())?;
            let scope = Scope::of_search(q);
            let request = if scope.is_empty() || q.limit() == 0 {
                None
            } else {
                Some(query_request(q, filter(&scope)?)?)
            };
            let c = c.clone();
            self.blocking(move |inner| {
                inner.read(&c, |shard| match request {
                    Some(request) => shard
                        .query(request)
                        .map_err(engine)?
                        .into_iter()
                        .map(hit)
                        .collect(),
                    None => Ok(Vec::new()),
                })
            })
            .await
        })
    }

    fn count<'a>(
        &'a self,
        c: &'a Collection,
        tenant: TenantId,
    ) -> BoxFuture<'a, VectorResult<u64>> {
        Box::pin(async move {
            let filter = filter(&Scope::tenant(tenant))?;
            let c = c.clone();
            self.blocking(move |inner| inner.read(&c, |shard| count(shard, Some(filter))))
                .await
        })
    }

    fn count_all<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<u64>> {
        let c = c.clone();
        Box::pin(self.blocking(move |inner| inner.read(&c, |shard| count(shard, None))))
    }

    fn drop_collection<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<()>> {
        let c = c.clone();
        Box::pin(self.blocking(move |inner| {
            let name = c.name();
            let slot = inner
                .shards
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
            if let Some(slot) = slot {
                // Dropping the shard closes its files; only then may the directory go.
                let shard = slot.write().unwrap_or_else(PoisonError::into_inner).take();
                drop(shard);
            }
            match std::fs::remove_dir_all(inner.dir.join(&name)) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(err.into()),
            }
        }))
    }

    fn flush<'a>(&'a self) -> BoxFuture<'a, VectorResult<()>> {
        Box::pin(self.blocking(|inner| {
            let slots: Vec<Arc<Slot>> = inner
                .shards
                .lock()
                .map_err(|_| poisoned())?
                .values()
                .cloned()
                .collect();
            for slot in slots {
                let guard = slot.write().map_err(|_| poisoned())?;
                if let Some(shard) = guard.as_ref() {
                    shard.flush();
                }
            }
            Ok(())
        }))
    }
}

/// Exact count of the points matching `filter` (all points without one).
fn count(shard: &EdgeShard, filter: Option<Filter>) -> VectorResult<u64> {
    let n = shard
        .count(CountRequest {
            filter,
            exact: true,
        })
        .map_err(engine)?;
    u64::try_from(n).map_err(|_| VectorError::Engine("count overflow".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::contract;
    use crate::vector::{Kind, MAX_DIMENSION};

    /// A fresh data directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let path = std::env::temp_dir().join(format!("konstruct-vector-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store() -> (TempDir, EdgeStore) {
        let dir = TempDir::new();
        let store = EdgeStore::open(&dir.0).unwrap();
        (dir, store)
    }

    fn must_conditions(filter: &Filter) -> &[Condition] {
        filter.must.as_deref().unwrap()
    }

    fn is_tenant_condition(condition: &Condition, tenant: TenantId) -> bool {
        let Condition::Field(field) = condition else {
            return false;
        };
        field.key == json_key(TENANT_KEY).unwrap()
            && field.r#match == Some(Match::from(tenant.to_string()))
    }

    #[test]
    fn every_filter_starts_with_the_tenant_condition() {
        let tenant = TenantId::from(Uuid::new_v4());
        let source = Uuid::new_v4();
        let searches = [
            Search::new(tenant, Kind::Chunk, vec![1.0], 3),
            Search::new(tenant, Kind::Memory, vec![1.0], 3).sources(vec![source]),
            Search::new(tenant, Kind::Chunk, vec![1.0], 3).min_score(0.5),
        ];
        let selectors = [
            Selector::Points(vec![Uuid::new_v4()]),
            Selector::Source(source),
            Selector::Kind(Kind::Memory),
            Selector::Tenant,
        ];
        let mut scopes: Vec<Scope<'_>> = searches.iter().map(Scope::of_search).collect();
        scopes.extend(selectors.iter().map(|s| Scope::of_selector(tenant, s)));
        scopes.push(Scope::tenant(tenant));
        for scope in &scopes {
            let built = filter(scope).unwrap();
            let must = must_conditions(&built);
            assert!(is_tenant_condition(&must[0], tenant), "{scope:?}");
            assert!(built.should.is_none() && built.must_not.is_none());
            assert!(built.min_should.is_none());
        }
    }

    #[test]
    fn filters_narrow_by_kind_source_and_points() {
        let tenant = TenantId::from(Uuid::new_v4());
        let source = Uuid::new_v4();
        let search = Search::new(tenant, Kind::Memory, vec![1.0], 3).sources(vec![source]);
        let built = filter(&Scope::of_search(&search)).unwrap();
        let must = must_conditions(&built);
        assert_eq!(must.len(), 3);
        assert_eq!(
            must[1],
            keyword(KIND_KEY, "memory".to_owned()).unwrap(),
            "kind condition"
        );
        assert_eq!(
            must[2],
            Condition::Field(FieldCondition::new_match(
                json_key(SOURCE_KEY).unwrap(),
                Match::from(vec![source.to_string()])
            ))
        );
        let id = Uuid::new_v4();
        let points = Selector::Points(vec![id]);
        let built = filter(&Scope::of_selector(tenant, &points)).unwrap();
        let must = must_conditions(&built);
        assert_eq!(must.len(), 2);
        assert_eq!(
            must[1],
            Condition::HasId([PointId::Uuid(id)].into_iter().collect())
        );
    }

    /// The shared behaviour suite, on a fresh data directory per case.
    async fn fresh_store() -> Option<(TempDir, EdgeStore)> {
        Some(store())
    }

    contract::contract_tests!(fresh_store);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_survives_a_restart() {
        let dir = TempDir::new();
        let c = Collection::new("restart-model", 4).unwrap();
        let tenant = TenantId::from(Uuid::new_v4());
        let point = Point {
            id: Uuid::new_v4(),
            kind: Kind::Chunk,
            source: Uuid::new_v4(),
            vector: vec![0.0, 1.0, 0.0, 0.0],
        };
        {
            let store = EdgeStore::open(&dir.0).unwrap();
            store.ensure(&c).await.unwrap();
            store.upsert(&c, tenant, vec![point.clone()]).await.unwrap();
            store.flush().await.unwrap();
        }
        let store = EdgeStore::open(&dir.0).unwrap();
        // No `ensure`: an existing shard directory is found and loaded on first use.
        let q = Search::new(tenant, Kind::Chunk, vec![0.0, 1.0, 0.0, 0.0], 5);
        let hits = store.search(&c, &q).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].id, hits[0].source), (point.id, point.source));
        assert_eq!(store.count_all(&c).await.unwrap(), 1);
        // Tenant isolation (the payload index and filter) still holds after the reload.
        let other = Search::new(
            TenantId::from(Uuid::new_v4()),
            Kind::Chunk,
            vec![0.0, 1.0, 0.0, 0.0],
            5,
        );
        assert!(store.search(&c, &other).await.unwrap().is_empty());
        // And the reloaded shard still takes writes.
        store.ensure(&c).await.unwrap();
        store
            .upsert(
                &c,
                tenant,
                vec![Point {
                    id: Uuid::new_v4(),
                    ..point
                }],
            )
            .await
            .unwrap();
        assert_eq!(store.count(&c, tenant).await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_searches_and_flushes_all_land() {
        // The engine's flush panics if it meets a write in progress; the store must
        // serialise them.
        let (_dir, store) = store();
        let c = Collection::new("busy-model", 4).unwrap();
        store.ensure(&c).await.unwrap();
        let tenant = TenantId::from(Uuid::new_v4());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16u8 {
            let (store, c) = (store.clone(), c.clone());
            tasks.spawn(async move {
                let point = Point {
                    id: Uuid::new_v4(),
                    kind: Kind::Chunk,
                    source: Uuid::new_v4(),
                    vector: vec![1.0, f32::from(i), 0.0, 0.0],
                };
                store.upsert(&c, tenant, vec![point]).await.unwrap();
                store.flush().await.unwrap();
                let q = Search::new(tenant, Kind::Chunk, vec![1.0, 0.0, 0.0, 0.0], 1);
                assert_eq!(store.search(&c, &q).await.unwrap().len(), 1);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(store.count(&c, tenant).await.unwrap(), 16);
        assert!(format!("{store:?}").contains(&c.name()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_store_on_the_same_directory_is_refused_while_the_first_is_open() {
        let (dir, store) = store();
        let c = Collection::new("locked-model", 4).unwrap();
        store.ensure(&c).await.unwrap();
        let second = EdgeStore::open(&dir.0).unwrap();
        assert!(matches!(
            second.count_all(&c).await,
            Err(VectorError::Engine(_))
        ));
        drop(store);
        assert_eq!(second.count_all(&c).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_collection_removes_the_directory_and_the_data() {
        let (dir, store) = store();
        let c = Collection::new("drop-model", 4).unwrap();
        let tenant = TenantId::from(Uuid::new_v4());
        store.ensure(&c).await.unwrap();
        store
            .upsert(
                &c,
                tenant,
                vec![Point {
                    id: Uuid::new_v4(),
                    kind: Kind::Memory,
                    source: Uuid::new_v4(),
                    vector: vec![1.0, 0.0, 0.0, 0.0],
                }],
            )
            .await
            .unwrap();
        let shard_dir = dir.0.join(c.name());
        assert!(shard_dir.join(META_FILE).exists());
        store.drop_collection(&c).await.unwrap();
        assert!(!shard_dir.exists());
        assert!(matches!(
            store.count_all(&c).await,
            Err(VectorError::MissingCollection { .. })
        ));
        // Dropping twice is fine, and the collection can be made again, empty.
        store.drop_collection(&c).await.unwrap();
        store.ensure(&c).await.unwrap();
        assert_eq!(store.count_all(&c).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shard_recorded_for_another_model_is_refused() {
        let (dir, store) = store();
        let c = Collection::new("real-model", 4).unwrap();
        store.ensure(&c).await.unwrap();
        store.flush().await.unwrap();
        drop(store);
        let meta = json!({ "model": "someone-else", "dimension": 4 });
        std::fs::write(dir.0.join(c.name()).join(META_FILE), meta.to_string()).unwrap();
        let store = EdgeStore::open(&dir.0).unwrap();
        assert!(matches!(
            store.ensure(&c).await,
            Err(VectorError::CollectionMismatch { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_largest_dimension_works() {
        let (_dir, store) = store();
        let c = Collection::new("wide", MAX_DIMENSION).unwrap();
        store.ensure(&c).await.unwrap();
        let tenant = TenantId::from(Uuid::new_v4());
        let mut vector = vec![0.0; MAX_DIMENSION];
        vector[MAX_DIMENSION - 1] = 1.0;
        let id = Uuid::new_v4();
        let point = Point {
            id,
            kind: Kind::Chunk,
            source: Uuid::new_v4(),
            vector: vector.clone(),
        };
        store.upsert(&c, tenant, vec![point]).await.unwrap();
        let hits = store
            .search(&c, &Search::new(tenant, Kind::Chunk, vector, 1))
            .await
            .unwrap();
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![id]);
    }
}
