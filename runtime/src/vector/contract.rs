//! The behaviour every [`VectorStore`] must show, written once and run against each backend
//! (the embedded store always, a Qdrant server when one is configured).
//!
//! Each case makes its own collections under a fresh model id, so cases can share one
//! server, and drops them when it passes.

use uuid::Uuid;

use super::{Collection, Hit, Kind, Point, Search, Selector, VectorError, VectorStore};
use shared::TenantId;

/// Generates one `#[tokio::test]` per contract case. `$make` names an async function (in the invoking module) returning
/// `Option<(guard, store)>`; `None` skips the case (the maker says why).
macro_rules! contract_tests {
    ($make:ident) => {
        crate::vector::contract::contract_tests!(@cases $make;
            tenants_with_identical_vectors_see_only_their_own,
            results_are_cosine_best_first_and_limited,
            kind_separates_chunks_from_memories,
            sources_restrict_hits,
            empty_sources_match_nothing,
            min_score_drops_weaker_hits,
            delete_points_only_touches_that_tenant,
            delete_source_only_touches_that_tenant,
            delete_kind_only_touches_that_tenant,
            delete_tenant_only_touches_that_tenant,
            dimension_mismatch_is_a_typed_error,
            count_and_count_all,
            collections_are_independent,
            ensure_is_idempotent,
            upsert_replaces_but_never_takes_over_another_tenants_point,
            a_missing_collection_is_reported,
        );
    };
    (@cases $make:ident; $($case:ident),* $(,)?) => {
        mod contract_cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some((_guard, store)) = super::$make().await {
                        crate::vector::contract::$case(&store).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use contract_tests;

const DIM: usize = 4;

fn collection() -> Collection {
    Collection::new(format!("contract-{}", Uuid::new_v4()), DIM).unwrap()
}

fn tenant() -> TenantId {
    TenantId::from(Uuid::new_v4())
}

fn point(kind: Kind, source: Uuid, vector: [f32; DIM]) -> Point {
    Point {
        id: Uuid::new_v4(),
        kind,
        source,
        vector: vector.to_vec(),
    }
}

fn ids(hits: &[Hit]) -> Vec<Uuid> {
    hits.iter().map(|h| h.id).collect()
}

async fn ready(store: &dyn VectorStore) -> Collection {
    let c = collection();
    store.ensure(&c).await.unwrap();
    c
}

async fn search(store: &dyn VectorStore, c: &Collection, q: Search) -> Vec<Hit> {
    store.search(c, &q).await.unwrap()
}

const X: [f32; DIM] = [1.0, 0.0, 0.0, 0.0];
const Y: [f32; DIM] = [0.0, 1.0, 0.0, 0.0];
const XY: [f32; DIM] = [1.0, 1.0, 0.0, 0.0];

pub(crate) async fn tenants_with_identical_vectors_see_only_their_own(store: &dyn VectorStore) {
    let c = ready(store).await;
    let (a, b) = (tenant(), tenant());
    let source = Uuid::new_v4();
    let pa = point(Kind::Chunk, source, X);
    let pb = point(Kind::Chunk, source, X);
    store.upsert(&c, a, vec![pa.clone()]).await.unwrap();
    store.upsert(&c, b, vec![pb.clone()]).await.unwrap();

    let hits_a = search(store, &c, Search::new(a, Kind::Chunk, X.to_vec(), 10)).await;
    let hits_b = search(store, &c, Search::new(b, Kind::Chunk, X.to_vec(), 10)).await;
    assert_eq!(ids(&hits_a), vec![pa.id]);
    assert_eq!(ids(&hits_b), vec![pb.id]);
    let stranger = search(
        store,
        &c,
        Search::new(tenant(), Kind::Chunk, X.to_vec(), 10),
    )
    .await;
    assert!(stranger.is_empty());
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn results_are_cosine_best_first_and_limited(store: &dyn VectorStore) {
    let c = ready(store).await;
    let t = tenant();
    let source = Uuid::new_v4();
    // Stored vectors of different lengths: cosine ignores length.
    let exact = point(Kind::Chunk, source, [3.0, 0.0, 0.0, 0.0]);
    let diagonal = point(Kind::Chunk, source, XY);
    let orthogonal = point(Kind::Chunk, source, Y);
    let points = vec![orthogonal.clone(), exact.clone(), diagonal.clone()];
    store.upsert(&c, t, points).await.unwrap();

    let hits = search(
        store,
        &c,
        Search::new(t, Kind::Chunk, vec![2.0, 0.0, 0.0, 0.0], 10),
    )
    .await;
    assert_eq!(ids(&hits), vec![exact.id, diagonal.id, orthogonal.id]);
    assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
    assert!((hits[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-4);
    assert!(hits[2].score.abs() < 1e-4);
    assert!(hits.iter().all(|h| h.source == source));

    let top2 = search(store, &c, Search::new(t, Kind::Chunk, X.to_vec(), 2)).await;
    assert_eq!(ids(&top2), vec![exact.id, diagonal.id]);
    let none = search(store, &c, Search::new(t, Kind::Chunk, X.to_vec(), 0)).await;
    assert!(none.is_empty());
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn kind_separates_chunks_from_memories(store: &dyn VectorStore) {
    let c = ready(store).await;
    let t = tenant();
    let chunk = point(Kind::Chunk, Uuid::new_v4(), X);
    let memory = point(Kind::Memory, Uuid::new_v4(), X);
    store
        .upsert(&c, t, vec![chunk.clone(), memory.clone()])
        .await
        .unwrap();

    let chunks = search(store, &c, Search::new(t, Kind::Chunk, X.to_vec(), 10)).await;
    let memories = search(store, &c, Search::new(t, Kind::Memory, X.to_vec(), 10)).await;
    assert_eq!(ids(&chunks), vec![chunk.id]);
    assert_eq!(ids(&memories), vec![memory.id]);
    assert_eq!(memories[0].source, memory.source);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn sources_restrict_hits(store: &dyn VectorStore) {
    let c = ready(store).await;
    let t = tenant();
    let (doc1, doc2, doc3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let p1 = point(Kind::Chunk, doc1, X);
    let p2 = point(Kind::Chunk, doc2, XY);
    let p3 = point(Kind::Chunk, doc3, X);
    store
        .upsert(&c, t, vec![p1.clone(), p2.clone(), p3.clone()])
        .await
        .unwrap();

    let q = Search::new(t, Kind::Chunk, X.to_vec(), 10).sources(vec![doc1, doc2]);
    assert_eq!(ids(&search(store, &c, q).await), vec![p1.id, p2.id]);
    // A source of another tenant's document id matches nothing of this tenant.
    let other = tenant();
    store
        .upsert(&c, other, vec![point(Kind::Chunk, doc3, X)])
        .await
        .unwrap();
    let q = Search::new(t, Kind::Chunk, X.to_vec(), 10).sources(vec![doc3]);
    assert_eq!(ids(&search(store, &c, q).await), vec![p3.id]);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn empty_sources_match_nothing(store: &dyn VectorStore) {
    let c = ready(store).await;
    let t = tenant();
    store
        .upsert(&c, t, vec![point(Kind::Chunk, Uuid::new_v4(), X)])
        .await
        .unwrap();

    let q = Search::new(t, Kind::Chunk, X.to_vec(), 10).sources(Vec::new());
    assert!(search(store, &c, q).await.is_empty());
    let unrestricted = Search::new(t, Kind::Chunk, X.to_vec(), 10);
    assert_eq!(search(store, &c, unrestricted).await.len(), 1);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn min_score_drops_weaker_hits(store: &dyn VectorStore) {
    let c = ready(store).await;
    let t = tenant();
    let source = Uuid::new_v4();
    let exact = point(Kind::Memory, source, X);
    let diagonal = point(Kind::Memory, source, XY);
    let orthogonal = point(Kind::Memory, source, Y);
    let points = vec![exact.clone(), diagonal.clone(), orthogonal.clone()];
    store.upsert(&c, t, points).await.unwrap();

    let q = Search::new(t, Kind::Memory, X.to_vec(), 10).min_score(0.5);
    let hits = search(store, &c, q).await;
    assert_eq!(ids(&hits), vec![exact.id, diagonal.id]);
    assert!(hits.iter().all(|h| h.score >= 0.5));
    let q = Search::new(t, Kind::Memory, X.to_vec(), 10).min_score(0.9);
    assert_eq!(ids(&search(store, &c, q).await), vec![exact.id]);
    let q = Search::new(t, Kind::Memory, X.to_vec(), 10).min_score(-1.0);
    assert_eq!(search(store, &c, q).await.len(), 3);
    store.drop_collection(&c).await.unwrap();
}

/// Two tenants, each with a chunk and a memory from the same two sources; returns them as
/// `(tenant, [chunk of s1, memory of s1, chunk of s2])` pairs plus the sources.
async fn two_tenants(
    store: &dyn VectorStore,
    c: &Collection,
) -> ([(TenantId, [Point; 3]); 2], Uuid, Uuid) {
    let (s1, s2) = (Uuid::new_v4(), Uuid::new_v4());
    let mut out = Vec::new();
    for t in [tenant(), tenant()] {
        let points = [
            point(Kind::Chunk, s1, X),
            point(Kind::Memory, s1, XY),
            point(Kind::Chunk, s2, Y),
        ];
        store.upsert(c, t, points.to_vec()).await.unwrap();
        out.push((t, points));
    }
    let [a, b]: [(TenantId, [Point; 3]); 2] = out.try_into().unwrap();
    ([a, b], s1, s2)
}

/// The ids `t` still has (chunks and memories).
async fn remaining(store: &dyn VectorStore, c: &Collection, t: TenantId) -> Vec<Uuid> {
    let mut all = Vec::new();
    for kind in [Kind::Chunk, Kind::Memory] {
        all.extend(ids(&search(
            store,
            c,
            Search::new(t, kind, X.to_vec(), 100),
        )
        .await));
    }
    all.sort();
    all
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

pub(crate) async fn delete_points_only_touches_that_tenant(store: &dyn VectorStore) {
    let c = ready(store).await;
    let ([(a, pa), (b, pb)], _, _) = two_tenants(store, &c).await;
    // Tenant a names one of its own points and one of b's: only its own goes.
    let what = Selector::Points(vec![pa[0].id, pb[0].id]);
    store.delete(&c, a, what).await.unwrap();
    assert_eq!(
        remaining(store, &c, a).await,
        sorted(vec![pa[1].id, pa[2].id])
    );
    assert_eq!(
        remaining(store, &c, b).await,
        sorted(pb.iter().map(|p| p.id).collect())
    );
    // An empty list deletes nothing.
    store
        .delete(&c, a, Selector::Points(Vec::new()))
        .await
        .unwrap();
    assert_eq!(store.count(&c, a).await.unwrap(), 2);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn delete_source_only_touches_that_tenant(store: &dyn VectorStore) {
    let c = ready(store).await;
    let ([(a, pa), (b, pb)], s1, _) = two_tenants(store, &c).await;
    store.delete(&c, a, Selector::Source(s1)).await.unwrap();
    assert_eq!(remaining(store, &c, a).await, vec![pa[2].id]);
    assert_eq!(
        remaining(store, &c, b).await,
        sorted(pb.iter().map(|p| p.id).collect())
    );
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn delete_kind_only_touches_that_tenant(store: &dyn VectorStore) {
    let c = ready(store).await;
    let ([(a, pa), (b, pb)], _, _) = two_tenants(store, &c).await;
    store
        .delete(&c, a, Selector::Kind(Kind::Chunk))
        .await
        .unwrap();
    assert_eq!(remaining(store, &c, a).await, vec![pa[1].id]);
    assert_eq!(
        remaining(store, &c, b).await,
        sorted(pb.iter().map(|p| p.id).collect())
    );
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn delete_tenant_only_touches_that_tenant(store: &dyn VectorStore) {
    let c = ready(store).await;
    let ([(a, _), (b, pb)], _, _) = two_tenants(store, &c).await;
    store.delete(&c, a, Selector::Tenant).await.unwrap();
    assert!(remaining(store, &c, a).await.is_empty());
    assert_eq!(store.count(&c, a).await.unwrap(), 0);
    assert_eq!(
        remaining(store, &c, b).await,
        sorted(pb.iter().map(|p| p.id).collect())
    );
    assert_eq!(store.count_all(&c).await.unwrap(), 3);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn dimension_mismatch_is_a_typed_error(store: &dyn VectorStore) {
    let c = ready(store).await;
    let t = tenant();
    let good = point(Kind::Chunk, Uuid::new_v4(), X);
    let mut bad = point(Kind::Chunk, Uuid::new_v4(), X);
    bad.vector.push(0.0);
    let err = store.upsert(&c, t, vec![good, bad]).await.unwrap_err();
    assert!(
        matches!(
            err,
            VectorError::Dimension {
                expected: DIM,
                got: 5
            }
        ),
        "{err:?}"
    );
    // Nothing of the batch was written.
    assert_eq!(store.count(&c, t).await.unwrap(), 0);

    let q = Search::new(t, Kind::Chunk, vec![1.0, 0.0], 3);
    let err = store.search(&c, &q).await.unwrap_err();
    assert!(
        matches!(
            err,
            VectorError::Dimension {
                expected: DIM,
                got: 2
            }
        ),
        "{err:?}"
    );
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn count_and_count_all(store: &dyn VectorStore) {
    let c = ready(store).await;
    let (a, b) = (tenant(), tenant());
    assert_eq!(store.count_all(&c).await.unwrap(), 0);
    let points_a: Vec<Point> = (0..3)
        .map(|_| point(Kind::Chunk, Uuid::new_v4(), X))
        .collect();
    store.upsert(&c, a, points_a.clone()).await.unwrap();
    store
        .upsert(&c, b, vec![point(Kind::Memory, Uuid::new_v4(), Y)])
        .await
        .unwrap();
    assert_eq!(store.count(&c, a).await.unwrap(), 3);
    assert_eq!(store.count(&c, b).await.unwrap(), 1);
    assert_eq!(store.count(&c, tenant()).await.unwrap(), 0);
    assert_eq!(store.count_all(&c).await.unwrap(), 4);
    // Re-upserting the same ids replaces, it does not add.
    store.upsert(&c, a, points_a).await.unwrap();
    assert_eq!(store.count(&c, a).await.unwrap(), 3);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn collections_are_independent(store: &dyn VectorStore) {
    let small = ready(store).await;
    let wide = Collection::new(format!("contract-wide-{}", Uuid::new_v4()), 6).unwrap();
    store.ensure(&wide).await.unwrap();
    assert_ne!(small.name(), wide.name());
    let t = tenant();
    let p_small = point(Kind::Chunk, Uuid::new_v4(), X);
    let p_wide = Point {
        vector: vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ..point(Kind::Chunk, Uuid::new_v4(), X)
    };
    store
        .upsert(&small, t, vec![p_small.clone()])
        .await
        .unwrap();
    store.upsert(&wide, t, vec![p_wide.clone()]).await.unwrap();

    let hits = search(
        store,
        &wide,
        Search::new(t, Kind::Chunk, p_wide.vector.clone(), 10),
    )
    .await;
    assert_eq!(ids(&hits), vec![p_wide.id]);
    assert_eq!(store.count_all(&small).await.unwrap(), 1);
    store.delete(&small, t, Selector::Tenant).await.unwrap();
    assert_eq!(store.count(&small, t).await.unwrap(), 0);
    assert_eq!(store.count(&wide, t).await.unwrap(), 1);
    store.drop_collection(&small).await.unwrap();
    assert_eq!(store.count_all(&wide).await.unwrap(), 1);
    store.drop_collection(&wide).await.unwrap();
}

pub(crate) async fn ensure_is_idempotent(store: &dyn VectorStore) {
    let c = ready(store).await;
    let t = tenant();
    store
        .upsert(&c, t, vec![point(Kind::Chunk, Uuid::new_v4(), X)])
        .await
        .unwrap();
    store.ensure(&c).await.unwrap();
    store.ensure(&c.clone()).await.unwrap();
    assert_eq!(store.count(&c, t).await.unwrap(), 1);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn upsert_replaces_but_never_takes_over_another_tenants_point(
    store: &dyn VectorStore,
) {
    let c = ready(store).await;
    let (a, b) = (tenant(), tenant());
    let original = point(Kind::Chunk, Uuid::new_v4(), X);
    store.upsert(&c, a, vec![original.clone()]).await.unwrap();
    // The owner may move its point.
    let moved = Point {
        vector: Y.to_vec(),
        ..original.clone()
    };
    store.upsert(&c, a, vec![moved]).await.unwrap();
    let hits = search(store, &c, Search::new(a, Kind::Chunk, Y.to_vec(), 1)).await;
    assert_eq!(ids(&hits), vec![original.id]);
    assert!((hits[0].score - 1.0).abs() < 1e-4);

    // Another tenant reusing the id gets nothing and changes nothing.
    let hijack = Point {
        source: Uuid::new_v4(),
        ..original.clone()
    };
    store.upsert(&c, b, vec![hijack]).await.unwrap();
    assert_eq!(store.count(&c, b).await.unwrap(), 0);
    let hits = search(store, &c, Search::new(a, Kind::Chunk, Y.to_vec(), 1)).await;
    assert_eq!(ids(&hits), vec![original.id]);
    assert_eq!(hits[0].source, original.source);
    store.drop_collection(&c).await.unwrap();
}

pub(crate) async fn a_missing_collection_is_reported(store: &dyn VectorStore) {
    let c = collection();
    let t = tenant();
    let q = Search::new(t, Kind::Chunk, X.to_vec(), 3);
    assert!(matches!(
        store.search(&c, &q).await,
        Err(VectorError::MissingCollection { .. })
    ));
    assert!(matches!(
        store.count_all(&c).await,
        Err(VectorError::MissingCollection { .. })
    ));
    let upsert = store.upsert(&c, t, vec![point(Kind::Chunk, Uuid::new_v4(), X)]);
    assert!(matches!(
        upsert.await,
        Err(VectorError::MissingCollection { .. })
    ));
    // Dropping what does not exist is not an error.
    store.drop_collection(&c).await.unwrap();
}
