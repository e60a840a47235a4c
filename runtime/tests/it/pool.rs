//! Thousands of interleaved tenant transactions on a small pool: none ever sees another tenant's
//! rows, and the tenant setting never outlives its transaction (commit, rollback or error).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use runtime::store::Store;
use uuid::Uuid;

use crate::support::TestDb;

const TENANTS: usize = 12;
const OPERATIONS: usize = 3_000;
const CONCURRENCY: usize = 24;
const POOL_SIZE: u32 = 3;

#[derive(Debug, Default)]
struct Tally {
    committed: AtomicU64,
    rolled_back: AtomicU64,
    failed_mid_way: AtomicU64,
    untenanted_checks: AtomicU64,
}

#[tokio::test]
async fn interleaved_tenant_transactions_on_a_small_pool_never_leak() {
    let db = TestDb::new().await;
    let store = Store::from_pool(db.app_pool(POOL_SIZE).await);

    // Tenant i owns i + 1 agents, so a count identifies whose rows a transaction saw.
    let mut tenants = Vec::new();
    for i in 0..TENANTS {
        let (t, tx) =
            runtime::store::tenants::create(&store, &format!("pool-{i}"), &format!("Pool {i}"))
                .await
                .unwrap();
        tx.commit().await.unwrap();
        let id = t.id;
        let mut tx = store.tenant_tx(id).await.unwrap();
        for n in 0..=i {
            sqlx::query("INSERT INTO agents (id, tenant_id, name) VALUES ($1, $2, $3)")
                .bind(Uuid::new_v4())
                .bind(id.as_uuid())
                .bind(format!("agent {n}"))
                .execute(tx.connection())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        tenants.push((id, i as i64 + 1));
    }
    let tenants = Arc::new(tenants);
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();

    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (store, tenants, tally, next) =
            (store.clone(), tenants.clone(), tally.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < OPERATIONS as u64 {
                let (pick, fate, untenanted) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(0..tenants.len()),
                        rng.random_range(0..4u8),
                        rng.random_ratio(1, 8),
                    )
                };
                if untenanted {
                    // A plain pool query between tenant transactions sees no tenant and no rows.
                    let (setting, rows): (Option<String>, i64) = sqlx::query_as(
                        "SELECT NULLIF(current_setting('app.tenant_id', true), ''), \
                                (SELECT count(*) FROM agents)",
                    )
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
                    assert_eq!(
                        setting, None,
                        "a tenant setting leaked out of a transaction"
                    );
                    assert_eq!(rows, 0, "rows visible without a tenant");
                    tally.untenanted_checks.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let (tenant, expected) = tenants[pick];
                let mut tx = store.tenant_tx(tenant).await.unwrap();
                let setting: String = sqlx::query_scalar("SELECT current_setting('app.tenant_id')")
                    .fetch_one(tx.connection())
                    .await
                    .unwrap();
                assert_eq!(setting, tenant.to_string());
                tokio::task::yield_now().await;
                let seen: Vec<(Uuid, i64)> =
                    sqlx::query_as("SELECT tenant_id, count(*) FROM agents GROUP BY tenant_id")
                        .fetch_all(tx.connection())
                        .await
                        .unwrap();
                assert_eq!(
                    seen,
                    vec![(*tenant.as_uuid(), expected)],
                    "saw another tenant's rows"
                );
                match fate {
                    0 => {
                        tx.rollback().await.unwrap();
                        tally.rolled_back.fetch_add(1, Ordering::Relaxed);
                    }
                    1 => {
                        // An error aborts the transaction; dropping it must still clean up.
                        assert!(
                            sqlx::query("SELECT 1 / 0")
                                .execute(tx.connection())
                                .await
                                .is_err()
                        );
                        drop(tx);
                        tally.failed_mid_way.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        tx.commit().await.unwrap();
                        tally.committed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let t = &*tally;
    let total = t.committed.load(Ordering::Relaxed)
        + t.rolled_back.load(Ordering::Relaxed)
        + t.failed_mid_way.load(Ordering::Relaxed)
        + t.untenanted_checks.load(Ordering::Relaxed);
    assert_eq!(total, OPERATIONS as u64);
    assert!(
        t.failed_mid_way.load(Ordering::Relaxed) > 0
            && t.untenanted_checks.load(Ordering::Relaxed) > 0
    );
    eprintln!(
        "pool: {OPERATIONS} operations over {TENANTS} tenants on {POOL_SIZE} connections in {:.0} ms \
         ({:?}); no leak",
        elapsed.as_secs_f64() * 1000.0,
        tally
    );
}
