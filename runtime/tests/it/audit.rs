//! The audit trail: append-only for the runtime, and a hash chain that exposes tampering done
//! behind the trigger's back.

use runtime::store::TenantTx;
use runtime::store::audit::{self, Action, Actor, ChainReport, NewEvent, Target};
use shared::TenantId;
use sqlx::{Acquire, Executor, PgConnection};
use uuid::Uuid;

use crate::fixtures::seed_tenant;
use crate::support::TestDb;

fn event(action: Action, n: usize) -> NewEvent {
    NewEvent {
        actor: Actor::System,
        action,
        target: Target::Request(format!("agent-{n}")),
        details: serde_json::json!({ "n": n }),
        request_id: None,
    }
}

async fn verify(store: &runtime::store::Store, tenant: TenantId) -> ChainReport {
    let mut tx: TenantTx = store.tenant_tx(tenant).await.unwrap();
    audit::verify_chain(&mut tx).await.unwrap()
}

/// Runs `sql` as the owner with the append-only trigger disabled: what an attacker with the
/// owner's password (or a careless migration) could do.
async fn tamper(db: &TestDb, tenant: TenantId, sql: &str) {
    let mut conn: PgConnection = db.owner_conn().await;
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
        .await
        .unwrap();
    let affected = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert!(affected > 0, "tampering statement changed nothing: {sql}");
    tx.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn seeded_chain(n: usize) -> (TestDb, runtime::store::Store, TenantId) {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = seed_tenant(&store, "a").await; // one event already
    let mut tx = store.tenant_tx(a.tenant).await.unwrap();
    for i in 1..n {
        let appended = audit::append(&mut tx, &event(Action::AgentUpdated, i))
            .await
            .unwrap();
        assert_eq!(appended.seq, i as i64 + 1);
    }
    tx.commit().await.unwrap();
    (db, store, a.tenant)
}

#[tokio::test]
async fn chains_are_per_tenant_and_verify() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = seed_tenant(&store, "a").await;
    let b = seed_tenant(&store, "b").await;
    for (tenant, extra) in [(a.tenant, 4), (b.tenant, 2)] {
        let mut tx = store.tenant_tx(tenant).await.unwrap();
        for i in 0..extra {
            audit::append(&mut tx, &event(Action::AgentUpdated, i))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let ra = verify(&store, a.tenant).await;
    let rb = verify(&store, b.tenant).await;
    assert!(ra.ok && rb.ok, "{ra:?} {rb:?}");
    assert_eq!((ra.rows_checked, rb.rows_checked), (5, 3));
    assert_ne!(ra.head_hash, rb.head_hash);
    assert_eq!(ra.head_hash.len(), 32);
}

#[tokio::test]
async fn callers_cannot_choose_seq_hash_or_time() {
    let (_db, store, tenant) = seeded_chain(2).await;
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let (seq, created_year): (i64, f64) = sqlx::query_as(
        "INSERT INTO audit_events (tenant_id, seq, actor_kind, action, created_at, prev_hash, hash) \
         VALUES ($1, 999, 'system', 'forged.entry', '1999-01-01', \
                 decode(repeat('ab', 32), 'hex'), decode(repeat('cd', 32), 'hex')) \
         RETURNING seq, extract(year FROM created_at)::float8",
    )
    .bind(tenant.as_uuid())
    .fetch_one(tx.connection())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seq, 3);
    assert!(created_year >= 2026.0);
    assert!(verify(&store, tenant).await.ok);
}

#[tokio::test]
async fn the_runtime_can_neither_update_nor_delete_nor_truncate_audit_rows() {
    let (db, store, tenant) = seeded_chain(3).await;
    for stmt in [
        "UPDATE audit_events SET action = 'nothing.happened'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let mut tx = store.tenant_tx(tenant).await.unwrap();
        let err = tx.connection().execute(stmt).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{stmt}: {err}"
        );
    }
    // Even the owner is stopped by the trigger.
    let mut conn = db.owner_conn().await;
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = tx.execute("DELETE FROM audit_events").await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    drop(tx);
    assert_eq!(verify(&store, tenant).await.rows_checked, 3);
}

#[tokio::test]
async fn verification_finds_a_row_edited_behind_the_triggers_back() {
    let (db, store, tenant) = seeded_chain(5).await;
    tamper(
        &db,
        tenant,
        "UPDATE audit_events SET details = '{\"n\": 42}' WHERE seq = 3",
    )
    .await;
    let report = verify(&store, tenant).await;
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(3));
    assert!(report.problem.unwrap().contains("edited"));
    assert_eq!(report.rows_checked, 2);
}

#[tokio::test]
async fn verification_finds_an_edit_whose_hash_was_recomputed() {
    let (db, store, tenant) = seeded_chain(5).await;
    // A careful forger recomputes the edited row's hash; the next row's link then breaks.
    tamper(
        &db,
        tenant,
        "UPDATE audit_events SET action = 'agent.viewed', hash = audit_row_hash(prev_hash, tenant_id, seq, \
            actor_kind, actor_id, impersonator_id, 'agent.viewed', target_kind, target_id, details, \
            request_id, created_at) WHERE seq = 2",
    )
    .await;
    let report = verify(&store, tenant).await;
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(3));
    assert!(report.problem.unwrap().contains("prev_hash"));
}

#[tokio::test]
async fn verification_finds_a_deleted_row() {
    let (db, store, tenant) = seeded_chain(5).await;
    tamper(&db, tenant, "DELETE FROM audit_events WHERE seq = 2").await;
    let report = verify(&store, tenant).await;
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(3));
    assert!(report.problem.unwrap().contains("deleted"));
}

#[tokio::test]
async fn verification_finds_reordered_rows() {
    let (db, store, tenant) = seeded_chain(5).await;
    tamper(
        &db,
        tenant,
        // Three steps, because (tenant_id, seq) is unique at every statement.
        "UPDATE audit_events SET seq = -3 WHERE seq = 3; \
         UPDATE audit_events SET seq = 3 WHERE seq = 4; \
         UPDATE audit_events SET seq = 4 WHERE seq = -3;",
    )
    .await;
    let report = verify(&store, tenant).await;
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(3));
}

#[tokio::test]
async fn concurrent_appends_for_one_tenant_form_one_unbroken_chain() {
    let (_db, store, tenant) = seeded_chain(1).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let mut tx = store.tenant_tx(tenant).await.unwrap();
                audit::append(
                    &mut tx,
                    &NewEvent {
                        actor: Actor::User(Uuid::new_v4()),
                        action: Action::AgentUpdated,
                        target: Target::None,
                        details: serde_json::json!({ "worker": w, "i": i }),
                        request_id: None,
                    },
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = verify(&store, tenant).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows_checked, 81);
}
