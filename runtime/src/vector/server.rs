//! The vector store on a Qdrant server or cluster (gRPC, `qdrant-client`), shared by every
//! runtime node when configured instead of the embedded engine.
//!
//! Each collection is created with cosine distance, the model and dimension in its
//! metadata, and keyword indexes on `tenant_id` (marked `is_tenant`, so Qdrant co-locates a
//! tenant's points), `source` and `kind`.

use std::collections::HashMap;
use std::fmt;

use futures_util::future::BoxFuture;
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::value::Kind as ValueKind;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeleteCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter,
    KeywordIndexParamsBuilder, PayloadIncludeSelector, PointId, PointStruct, Query,
    QueryPointsBuilder, RepeatedStrings, ScoredPoint, UpsertPointsBuilder, Value,
    VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use uuid::Uuid;

use super::{
    Collection, Hit, KIND_KEY, Point, SOURCE_KEY, Scope, Search, Selector, TENANT_KEY, VectorError,
    VectorResult, VectorStore, check_points,
};
use shared::TenantId;

/// gRPC status `NOT_FOUND` (a stable wire code): the collection does not exist.
const GRPC_NOT_FOUND: i32 = 5;
/// gRPC status `ALREADY_EXISTS`: another node created the collection first.
const GRPC_ALREADY_EXISTS: i32 = 6;

/// Metadata keys recorded on each collection.
const META_MODEL: &str = "model";
const META_DIMENSION: &str = "dimension";

/// Vector store on a Qdrant server. Cheap to clone; the client pools its connections.
#[derive(Clone)]
pub struct QdrantServer {
    /// The gRPC client; it connects lazily, on the first request.
    client: Qdrant,
    /// The server's gRPC URL, kept for diagnostics (never the API key).
    url: String,
}

impl fmt::Debug for QdrantServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl QdrantServer {
    /// A client for the server at `url` (its gRPC endpoint, normally port 6334), sending
    /// `api_key` with every request when given. Nothing is sent until the first call, so
    /// this succeeds while the server is still starting.
    pub fn connect(url: &str, api_key: Option<String>) -> VectorResult<QdrantServer> {
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(VectorError::Config(
                "the Qdrant URL must start with http:// or https://".to_owned(),
            ));
        }
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            // The version check would send a request here, and only warns anyway.
            .skip_compatibility_check()
            .build()
            .map_err(|err| VectorError::Config(err.to_string()))?;
        Ok(Self {
            client,
            url: url.to_owned(),
        })
    }

    /// Verifies that an existing collection holds cosine vectors of `c`'s dimension and,
    /// when it records one, `c`'s model.
    async fn check_existing(&self, c: &Collection) -> VectorResult<()> {
        let name = c.name();
        let info = self
            .client
            .collection_info(name.as_str())
            .await
            .map_err(|err| server_error(err, c))?;
        let config = info.result.and_then(|info| info.config);
        let vectors = config
            .as_ref()
            .and_then(|config| config.params.as_ref())
            .and_then(|params| params.vectors_config.as_ref())
            .and_then(|vectors| vectors.config.as_ref());
        let fits = matches!(
            vectors,
            Some(VectorsConfigKind::Params(params))
                if usize::try_from(params.size).ok() == Some(c.dimension())
                    && params.distance == Distance::Cosine as i32
        );
        let same_model = config
            .as_ref()
            .and_then(|config| config.metadata.get(META_MODEL))
            .is_none_or(|model| string_value(model) == Some(c.model()));
        if fits && same_model {
            Ok(())
        } else {
            Err(VectorError::CollectionMismatch { name })
        }
    }
}

/// The server's filter for `scope`: the one place this backend builds filters, so the
/// tenant condition is always the first `must` clause.
fn filter(scope: &Scope<'_>) -> Filter {
    let mut must = vec![keyword(TENANT_KEY, scope.tenant.to_string())];
    if let Some(kind) = scope.kind {
        must.push(keyword(KIND_KEY, kind.as_str().to_owned()));
    }
    if let Some(sources) = scope.sources {
        let strings = sources.iter().map(Uuid::to_string).collect();
        must.push(Condition::matches(
            SOURCE_KEY,
            MatchValue::Keywords(RepeatedStrings { strings }),
        ));
    }
    if let Some(points) = scope.points {
        must.push(Condition::has_id(points.iter().map(|id| point_id(*id))));
    }
    Filter::must(must)
}

/// `key == value` on a keyword payload field (always an exact keyword match, never the
/// full-text match the client picks for strings with spaces).
fn keyword(key: &str, value: String) -> Condition {
    Condition::matches(key, MatchValue::Keyword(value))
}

fn point_id(id: Uuid) -> PointId {
    PointId::from(id.to_string())
}

fn string_value(value: &Value) -> Option<&str> {
    match &value.kind {
        Some(ValueKind::StringValue(text)) => Some(text),
        _ => None,
    }
}

/// The server's point for `point`, stamped with `tenant`.
fn server_point(tenant: TenantId, point: Point) -> PointStruct {
    let payload = Payload::from([
        (TENANT_KEY, Value::from(tenant.to_string())),
        (KIND_KEY, Value::from(point.kind.as_str())),
        (SOURCE_KEY, Value::from(point.source.to_string())),
    ]);
    PointStruct::new(point_id(point.id), point.vector, payload)
}

/// A hit from the server's scored point.
fn hit(point: ScoredPoint) -> VectorResult<Hit> {
    let id = match point.id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Uuid(text)) => Uuid::parse_str(&text).ok(),
        _ => None,
    }
    .ok_or_else(|| VectorError::Server("a point has no UUID id".to_owned()))?;
    let source = point
        .payload
        .get(SOURCE_KEY)
        .and_then(string_value)
        .and_then(|text| Uuid::parse_str(text).ok())
        .ok_or_else(|| VectorError::Server(format!("point {id} has no valid source")))?;
    Ok(Hit {
        id,
        source,
        score: point.score,
    })
}

/// The gRPC status code of a server response error.
fn grpc_code(err: &QdrantError) -> Option<i32> {
    match err {
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => Some(i32::from(status.code())),
        _ => None,
    }
}

/// Maps a client error; "not found" means `c` does not exist. Only the status code and
/// the server's message are kept (no request metadata).
fn server_error(err: QdrantError, c: &Collection) -> VectorError {
    if grpc_code(&err) == Some(GRPC_NOT_FOUND) {
        return VectorError::MissingCollection { name: c.name() };
    }
    match err {
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => {
            VectorError::Server(format!("{}: {}", status.code(), status.message()))
        }
        other => VectorError::Server(other.to_string()),
    }
}

impl QdrantServer {
    async fn ensure_collection(&self, c: &Collection) -> VectorResult<()> {
        let name = c.name();
        let exists = self
            .client
            .collection_exists(name.as_str())
            .await
            .map_err(|err| server_error(err, c))?;
        if exists {
            self.check_existing(c).await?;
        } else {
            let dimension = u64::try_from(c.dimension())
                .map_err(|_| VectorError::InvalidCollection("dimension too large"))?;
            let mut request = CreateCollectionBuilder::new(name.as_str())
                .vectors_config(VectorParamsBuilder::new(dimension, Distance::Cosine))
                .build();
            request.metadata = HashMap::from([
                (META_MODEL.to_owned(), Value::from(c.model())),
                (META_DIMENSION.to_owned(), Value::from(dimension as i64)),
            ]);
            match self.client.create_collection(request).await {
                Ok(_) => {}
                // Another node won the race: check that it made the same collection.
                Err(err) if grpc_code(&err) == Some(GRPC_ALREADY_EXISTS) => {
                    self.check_existing(c).await?;
                }
                Err(err) => return Err(server_error(err, c)),
            }
        }
        // Creating an index that exists with the same schema is a no-op on the server, so
        // this also repairs a collection whose creator stopped before indexing it.
        for (key, is_tenant) in [(TENANT_KEY, true), (SOURCE_KEY, false), (KIND_KEY, false)] {
            let mut params = KeywordIndexParamsBuilder::default();
            if is_tenant {
                params = params.is_tenant(true);
            }
            let index =
                CreateFieldIndexCollectionBuilder::new(name.as_str(), key, FieldType::Keyword)
                    .field_index_params(params.build())
                    .wait(true);
            self.client
                .create_field_index(index)
                .await
                .map_err(|err| server_error(err, c))?;
        }
        Ok(())
    }

    /// Fails with [`VectorError::MissingCollection`] unless `c` exists.
    async fn require(&self, c: &Collection) -> VectorResult<()> {
        let exists = self
            .client
            .collection_exists(c.name())
            .await
            .map_err(|err| server_error(err, c))?;
        if exists {
            Ok(())
        } else {
            Err(VectorError::MissingCollection { name: c.name() })
        }
    }

    async fn count_filtered(&self, c: &Collection, filter: Option<Filter>) -> VectorResult<u64> {
        let mut request = CountPointsBuilder::new(c.name()).exact(true);
        if let Some(filter) = filter {
            request = request.filter(filter);
        }
        let response = self
            .client
            .count(request)
            .await
            .map_err(|err| server_error(err, c))?;
        response
            .result
            .map(|result| result.count)
            .ok_or_else(|| VectorError::Server("count response without a result".to_owned()))
    }
}

impl VectorStore for QdrantServer {
    fn ensure<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<()>> {
        Box::pin(self.ensure_collection(c))
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
            let points: Vec<PointStruct> = points
                .into_iter()
                .map(|point| server_point(tenant, point))
                .collect();
            // An existing id is updated only if it is this tenant's; new ids are inserted.
            let request = UpsertPointsBuilder::new(c.name(), points)
                .update_filter(filter(&Scope::tenant(tenant)))
                .wait(true);
            self.client
                .upsert_points(request)
                .await
                .map_err(|err| server_error(err, c))?;
            Ok(())
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
            if scope.is_empty() {
                // Nothing to delete, but a missing collection is still reported.
                return self.require(c).await;
            }
            let request = DeletePointsBuilder::new(c.name())
                .points(filter(&scope))
                .wait(true);
            self.client
                .delete_points(request)
                .await
                .map_err(|err| server_error(err, c))?;
            Ok(())
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
            if scope.is_empty() || q.limit() == 0 {
                // Still report a missing collection, as the embedded store does.
                self.require(c).await?;
                return Ok(Vec::new());
            }
            let mut request = QueryPointsBuilder::new(c.name())
                .query(Query::new_nearest(q.vector().to_vec()))
                .filter(filter(&scope))
                .limit(u64::try_from(q.limit()).unwrap_or(u64::MAX))
                .with_payload(PayloadIncludeSelector::new(vec![SOURCE_KEY.to_owned()]));
            if let Some(min_score) = q.score_floor() {
                request = request.score_threshold(min_score);
            }
            let response = self
                .client
                .query(request)
                .await
                .map_err(|err| server_error(err, c))?;
            response.result.into_iter().map(hit).collect()
        })
    }

    fn count<'a>(
        &'a self,
        c: &'a Collection,
        tenant: TenantId,
    ) -> BoxFuture<'a, VectorResult<u64>> {
        Box::pin(self.count_filtered(c, Some(filter(&Scope::tenant(tenant)))))
    }

    fn count_all<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<u64>> {
        Box::pin(self.count_filtered(c, None))
    }

    fn drop_collection<'a>(&'a self, c: &'a Collection) -> BoxFuture<'a, VectorResult<()>> {
        Box::pin(async move {
            match self
                .client
                .delete_collection(DeleteCollectionBuilder::new(c.name()))
                .await
            {
                Ok(_) => Ok(()),
                Err(err) if grpc_code(&err) == Some(GRPC_NOT_FOUND) => Ok(()),
                Err(err) => Err(server_error(err, c)),
            }
        })
    }

    fn flush<'a>(&'a self) -> BoxFuture<'a, VectorResult<()>> {
        // Writes are sent with `wait`, so they are applied before they return.
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::condition::ConditionOneOf;

    use super::*;
    use crate::vector::Kind;
    use crate::vector::contract;

    fn tenant_of(condition: &Condition) -> Option<&str> {
        let Some(ConditionOneOf::Field(field)) = &condition.condition_one_of else {
            return None;
        };
        if field.key != TENANT_KEY {
            return None;
        }
        match field.r#match.as_ref()?.match_value.as_ref()? {
            MatchValue::Keyword(value) => Some(value),
            _ => None,
        }
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
        let expected = tenant.to_string();
        for scope in &scopes {
            let built = filter(scope);
            assert_eq!(
                tenant_of(&built.must[0]),
                Some(expected.as_str()),
                "{scope:?}"
            );
            assert!(built.should.is_empty() && built.must_not.is_empty());
            assert!(built.min_should.is_none());
        }
    }

    #[test]
    fn filters_narrow_by_kind_source_and_points() {
        let tenant = TenantId::from(Uuid::new_v4());
        let (s1, s2) = (Uuid::new_v4(), Uuid::new_v4());
        let search = Search::new(tenant, Kind::Memory, vec![1.0], 3).sources(vec![s1, s2]);
        let built = filter(&Scope::of_search(&search));
        assert_eq!(built.must.len(), 3);
        assert_eq!(built.must[1], keyword(KIND_KEY, "memory".to_owned()));
        assert_eq!(
            built.must[2],
            Condition::matches(
                SOURCE_KEY,
                MatchValue::Keywords(RepeatedStrings {
                    strings: vec![s1.to_string(), s2.to_string()]
                })
            )
        );
        let id = Uuid::new_v4();
        let points = Selector::Points(vec![id]);
        let built = filter(&Scope::of_selector(tenant, &points));
        assert_eq!(built.must.len(), 2);
        assert_eq!(built.must[1], Condition::has_id([point_id(id)]));
    }

    #[test]
    fn server_points_carry_tenant_kind_and_source() {
        let tenant = TenantId::from(Uuid::new_v4());
        let point = Point {
            id: Uuid::new_v4(),
            kind: Kind::Chunk,
            source: Uuid::new_v4(),
            vector: vec![1.0, 0.0],
        };
        let built = server_point(tenant, point.clone());
        let text = |key: &str| {
            built
                .payload
                .get(key)
                .and_then(string_value)
                .map(str::to_owned)
        };
        assert_eq!(text(TENANT_KEY), Some(tenant.to_string()));
        assert_eq!(text(KIND_KEY), Some("chunk".to_owned()));
        assert_eq!(text(SOURCE_KEY), Some(point.source.to_string()));
        assert_eq!(built.id, Some(point_id(point.id)));
    }

    #[tokio::test]
    async fn connect_checks_the_url_and_never_shows_the_key() {
        assert!(matches!(
            QdrantServer::connect("qdrant:6334", None),
            Err(VectorError::Config(_))
        ));
        let server =
            QdrantServer::connect("http://127.0.0.1:6334", Some("key-7f3a".to_owned())).unwrap();
        let shown = format!("{server:?}");
        assert!(shown.contains("127.0.0.1:6334"));
        assert!(!shown.contains("key-7f3a"));
    }

    /// A server from `KONSTRUCT_TEST_QDRANT_URL` (and `KONSTRUCT_TEST_QDRANT_API_KEY`), or a
    /// skip note when none is configured.
    async fn configured_server() -> Option<((), QdrantServer)> {
        let Ok(url) = std::env::var("KONSTRUCT_TEST_QDRANT_URL") else {
            eprintln!("skipped: set KONSTRUCT_TEST_QDRANT_URL to run against a Qdrant server");
            return None;
        };
        let key = std::env::var("KONSTRUCT_TEST_QDRANT_API_KEY").ok();
        Some(((), QdrantServer::connect(&url, key).unwrap()))
    }

    contract::contract_tests!(configured_server);
}
