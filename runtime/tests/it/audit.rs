//! The audit trail: append-only for the runtime, a hash chain that exposes tampering done
//! behind the trigger's back, and the keyed seal that exposes a forger who recomputes the chain.

use reqwest::Method;
use runtime::config::Secret;
use runtime::crypto::AuditKeys;
use runtime::store::audit::{
    self, Action, Actor, ChainHead, ChainReport, NewEvent, Target, Verification,
};
use runtime::store::{Store, TenantTx};
use shared::TenantId;
use shared::audit::{AuditHead, AuditVerdict, AuditVerification};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Acquire, Executor, PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::fixtures::seed_tenant;
use crate::support::{TestApp, TestDb, field_errors};
use crate::world::World;

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
async fn concurrent_appends_for_one_tenant_form_one_unbroken_sealed_chain() {
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
    // Every transaction sealed its own row, in chain order, while it held the chain.
    let full = full_verify(&store, tenant).await;
    assert!(full.ok, "{full:?}");
    assert_eq!((full.sealed_through, full.head.seq), (81, 81));
    assert_eq!(
        seal_seqs(&store, tenant).await,
        (1..=81).collect::<Vec<i64>>()
    );
}

// ---------------------------------------------------------------------------------------------
// The seal
// ---------------------------------------------------------------------------------------------

async fn full_verify(store: &Store, tenant: TenantId) -> Verification {
    audit::verify(store, tenant, None).await.unwrap()
}

fn keys(spec: &str) -> AuditKeys {
    AuditKeys::parse(Some(&Secret::new(spec.to_string()))).unwrap()
}

fn key_spec(version: u32, byte: &str) -> String {
    format!("{version}:{}", byte.repeat(32))
}

async fn seal_seqs(store: &Store, tenant: TenantId) -> Vec<i64> {
    seal_runs(store, tenant)
        .await
        .into_iter()
        .map(|(_, last)| last)
        .collect()
}

/// The runs of rows the seals cover, (first seq, last seq), in order.
async fn seal_runs(store: &Store, tenant: TenantId) -> Vec<(i64, i64)> {
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    sqlx::query_as("SELECT first_seq, seq FROM audit_seals ORDER BY seq")
        .fetch_all(tx.connection())
        .await
        .unwrap()
}

async fn append_n(store: &Store, tenant: TenantId, n: usize) {
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    for i in 0..n {
        audit::append(&mut tx, &event(Action::AgentUpdated, i))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

/// A transaction as the owner inside `tenant`, with both append-only triggers off: what a
/// forger with the owner's password can do.
async fn forger(db: &TestDb, tenant: TenantId) -> Transaction<'static, Postgres> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.owner_url())
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.execute(
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only; \
         ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only;",
    )
    .await
    .unwrap();
    tx
}

async fn forger_done(mut tx: Transaction<'static, Postgres>) {
    tx.execute(
        "ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only; \
         ALTER TABLE audit_seals ENABLE TRIGGER audit_seals_append_only;",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Edits the details of the row at `from` and recomputes every hash from it to the head with the
/// database's own function, so that the SQL chain verifies again.
async fn rewrite_chain_from(tx: &mut Transaction<'static, Postgres>, from: i64) {
    sqlx::query("UPDATE audit_events SET details = '{\"n\": 42}' WHERE seq = $1")
        .bind(from)
        .execute(&mut **tx)
        .await
        .unwrap();
    let mut prev: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
        .bind(from - 1)
        .fetch_one(&mut **tx)
        .await
        .unwrap();
    let head: i64 = sqlx::query_scalar("SELECT max(seq) FROM audit_events")
        .fetch_one(&mut **tx)
        .await
        .unwrap();
    for seq in from..=head {
        prev = sqlx::query_scalar(
            "UPDATE audit_events SET prev_hash = $2, hash = audit_row_hash($2, tenant_id, seq, \
                 actor_kind, actor_id, impersonator_id, action, target_kind, target_id, details, \
                 request_id, created_at) \
              WHERE seq = $1 RETURNING hash",
        )
        .bind(seq)
        .bind(&prev)
        .fetch_one(&mut **tx)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_forger_who_recomputes_the_chain_after_an_edit_is_caught_by_the_seal() {
    // Seals at seq 1 (the fixture's transaction) and at seq 5 (the other four rows).
    let (db, store, tenant) = seeded_chain(5).await;
    assert_eq!(seal_runs(&store, tenant).await, vec![(1, 1), (2, 5)]);
    assert!(full_verify(&store, tenant).await.ok);

    let mut tx = forger(&db, tenant).await;
    rewrite_chain_from(&mut tx, 3).await;
    forger_done(tx).await;
    // The forger's goal: the hash chain alone is whole again.
    let chain = verify(&store, tenant).await;
    assert!(chain.ok && chain.rows_checked == 5, "{chain:?}");

    let report = full_verify(&store, tenant).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.verdict, AuditVerdict::Broken);
    assert_eq!(report.first_bad_seq, Some(5));
    assert_eq!(
        report.sealed_through, 1,
        "the seal before the edit still holds"
    );
    assert!(
        report.problem.as_deref().unwrap().contains("rewritten"),
        "{report:?}"
    );

    // Making the seal name the new hash does not help: the forger cannot compute its HMAC.
    let mut tx = forger(&db, tenant).await;
    tx.execute(
        "UPDATE audit_seals s SET row_hash = e.hash FROM audit_events e \
                 WHERE e.tenant_id = s.tenant_id AND e.seq = s.seq AND s.seq = 5",
    )
    .await
    .unwrap();
    forger_done(tx).await;
    let report = full_verify(&store, tenant).await;
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(5));
    assert!(
        report
            .problem
            .as_deref()
            .unwrap()
            .contains("does not check"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_forger_who_also_deletes_the_seals_leaves_unsealed_rows_that_verification_reports() {
    let (db, store, tenant) = seeded_chain(5).await;
    let mut tx = forger(&db, tenant).await;
    rewrite_chain_from(&mut tx, 3).await;
    tx.execute("DELETE FROM audit_seals WHERE seq >= 3")
        .await
        .unwrap();
    forger_done(tx).await;
    assert!(verify(&store, tenant).await.ok, "the SQL chain verifies");
    let report = full_verify(&store, tenant).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.verdict, AuditVerdict::Unsealed);
    assert_eq!((report.sealed_through, report.first_bad_seq), (1, Some(2)));
    assert!(
        report
            .problem
            .as_deref()
            .unwrap()
            .contains("rows 2 to 5 are not sealed"),
        "{report:?}"
    );

    // With every seal gone, nothing is vouched for.
    let mut tx = forger(&db, tenant).await;
    tx.execute("DELETE FROM audit_seals").await.unwrap();
    forger_done(tx).await;
    let report = full_verify(&store, tenant).await;
    assert!(!report.ok);
    assert_eq!((report.sealed_through, report.first_bad_seq), (0, Some(1)));
}

#[tokio::test]
async fn a_seal_under_an_old_key_version_still_verifies_after_a_new_key_is_added() {
    let db = TestDb::new().await;
    let pool = db.app_pool(2).await;
    let old = Store::from_pool(pool.clone()).with_audit_keys(keys(&key_spec(1, "a1")));
    let tenant = seed_tenant(&old, "a").await.tenant;
    append_n(&old, tenant, 2).await;

    let rotated = Store::from_pool(pool.clone()).with_audit_keys(keys(&format!(
        "{},{}",
        key_spec(1, "a1"),
        key_spec(2, "b2")
    )));
    let report = full_verify(&rotated, tenant).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.sealed_through, 3);

    // New rows are sealed with the newest key; the old seals keep checking.
    append_n(&rotated, tenant, 2).await;
    let mut tx = rotated.tenant_tx(tenant).await.unwrap();
    let versions: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, key_version FROM audit_seals ORDER BY seq")
            .fetch_all(tx.connection())
            .await
            .unwrap();
    drop(tx);
    assert_eq!(versions, vec![(1, 1), (3, 1), (5, 2)]);
    let report = full_verify(&rotated, tenant).await;
    assert!(report.ok && report.sealed_through == 5, "{report:?}");
    let head = audit::head(&rotated, tenant).await.unwrap();
    assert_eq!(
        (head.head.seq, head.sealed_through, head.key_version),
        (5, 5, Some(2))
    );

    // A node that still has only the old key cannot vouch for the new seal.
    let report = full_verify(&old, tenant).await;
    assert!(!report.ok);
    assert_eq!((report.sealed_through, report.first_bad_seq), (3, Some(5)));
    assert!(
        report
            .problem
            .as_deref()
            .unwrap()
            .contains("key version 2, which is not configured"),
        "{report:?}"
    );
}

#[tokio::test]
async fn seals_do_not_check_under_a_wrong_key_and_without_a_key_nothing_passes() {
    let (db, _store, tenant) = seeded_chain(3).await;
    let pool = db.app_pool(2).await;
    let wrong = Store::from_pool(pool.clone()).with_audit_keys(keys(&key_spec(1, "ee")));
    let report = full_verify(&wrong, tenant).await;
    assert!(!report.ok);
    assert_eq!((report.sealed_through, report.first_bad_seq), (0, Some(1)));
    assert!(
        report
            .problem
            .as_deref()
            .unwrap()
            .contains("does not match under key version 1")
    );

    let keyless = Store::from_pool(pool);
    let report = full_verify(&keyless, tenant).await;
    assert!(
        !report.ok,
        "without a key verification never passes: {report:?}"
    );
    assert_eq!((report.sealed_through, report.first_bad_seq), (0, Some(1)));
    assert!(
        report
            .problem
            .as_deref()
            .unwrap()
            .contains("no audit key is configured")
    );
    assert_eq!(report.rows_checked, 3, "the chain itself is still walked");
}

#[tokio::test]
async fn a_runtime_without_an_audit_key_seals_nothing_and_its_rows_show_as_unsealed() {
    let (db, store, tenant) = seeded_chain(2).await;
    let keyless = Store::from_pool(db.app_pool(2).await);
    append_n(&keyless, tenant, 2).await;
    assert_eq!(seal_seqs(&store, tenant).await, vec![1, 2]);
    let report = full_verify(&store, tenant).await;
    assert!(!report.ok);
    assert_eq!((report.sealed_through, report.first_bad_seq), (2, Some(3)));
    assert!(
        report
            .problem
            .as_deref()
            .unwrap()
            .contains("rows 3 to 4 are not sealed")
    );
    // A later sealed transaction vouches only for its own rows: nobody can tell rows written
    // without a key from rows whose seals were deleted, so they stay reported.
    append_n(&store, tenant, 1).await;
    let report = full_verify(&store, tenant).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!((report.sealed_through, report.first_bad_seq), (2, Some(3)));
    assert!(
        report
            .problem
            .as_deref()
            .unwrap()
            .contains("rows 3 to 4 have no seal although later rows do"),
        "{report:?}"
    );
}

#[tokio::test]
async fn seals_are_append_only_for_the_runtime_and_for_the_owner() {
    let (db, store, tenant) = seeded_chain(2).await;
    for stmt in [
        "UPDATE audit_seals SET key_version = 9",
        "DELETE FROM audit_seals",
        "TRUNCATE audit_seals",
    ] {
        let mut tx = store.tenant_tx(tenant).await.unwrap();
        let err = tx.connection().execute(stmt).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{stmt}: {err}"
        );
    }
    for stmt in [
        "UPDATE audit_seals SET key_version = 9",
        "DELETE FROM audit_seals",
        "TRUNCATE audit_seals",
    ] {
        let mut conn = db.owner_conn().await;
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = tx.execute(stmt).await.unwrap_err();
        assert!(
            err.to_string().contains("audit_seals is append-only"),
            "{stmt}: {err}"
        );
    }
    assert_eq!(seal_seqs(&store, tenant).await, vec![1, 2]);
    assert!(full_verify(&store, tenant).await.ok);
}

async fn api_verify(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    head: Option<&AuditHead>,
) -> AuditVerification {
    let query = head.map_or(String::new(), |h| format!("?seq={}&hash={}", h.seq, h.hash));
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{tenant}/audit/verify{query}"),
            Some(token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn dropping_the_newest_rows_with_their_seals_is_caught_against_a_head_exported_before() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    append_n(&app.store, w.a, 1).await;
    append_n(&app.store, w.a, 2).await;
    let head: AuditHead = app
        .get_json(&format!("/api/tenants/{}/audit/head", w.a), &admin)
        .await;
    assert_eq!(head.sealed_through, head.seq);
    assert_eq!((head.hash.len(), head.key_version), (64, Some(1)));
    let report = api_verify(&app, &admin, w.a, Some(&head)).await;
    assert!(report.ok, "{report:?}");
    assert!(report.exported_head.unwrap().contained);

    // The forger drops the last transaction's two rows and its seal: the trail that is left is
    // whole and sealed, so on its own it verifies.
    let mut tx = forger(&app.db, w.a).await;
    let dropped_from = head.seq - 1;
    sqlx::query("DELETE FROM audit_seals WHERE seq >= $1")
        .bind(dropped_from)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE seq >= $1")
        .bind(dropped_from)
        .execute(&mut *tx)
        .await
        .unwrap();
    forger_done(tx).await;
    let alone = api_verify(&app, &admin, w.a, None).await;
    assert!(alone.ok, "{alone:?}");
    assert_eq!(alone.verdict, AuditVerdict::Intact);
    assert_eq!(alone.head.seq, head.seq - 2);

    let against = api_verify(&app, &admin, w.a, Some(&head)).await;
    assert!(!against.ok, "{against:?}");
    assert_eq!(against.verdict, AuditVerdict::Truncated);
    assert_eq!(against.first_bad_seq, Some(dropped_from));
    let check = against.exported_head.unwrap();
    assert!(!check.contained);
    assert!(check.problem.unwrap().contains("newest rows were removed"));
    assert!(
        against
            .problem
            .unwrap()
            .contains("newest rows were removed")
    );
}

#[tokio::test]
async fn verifying_through_the_api_reports_the_first_broken_link() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    append_n(&app.store, w.a, 4).await;
    let intact = api_verify(&app, &admin, w.a, None).await;
    assert!(intact.ok, "{intact:?}");
    let newest = intact.head.seq;
    assert!(newest >= 5, "{intact:?}");
    // Two rows edited behind the trigger's back: the report names the earlier one.
    let (first, later) = (newest - 3, newest - 1);
    tamper(
        &app.db,
        w.a,
        &format!(
            "UPDATE audit_events SET details = '{{\"n\": 42}}' WHERE seq IN ({first}, {later})"
        ),
    )
    .await;
    let report = api_verify(&app, &admin, w.a, None).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.verdict, AuditVerdict::Broken);
    assert_eq!(report.first_bad_seq, Some(first));
    assert_eq!(report.rows_checked, first - 1);
    assert!(report.problem.unwrap().contains("edited"));
}

#[tokio::test]
async fn the_audit_api_answers_operators_and_hides_the_trail_from_other_tenants() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let operator = app.token_for(w.operator_a, None).await;
    let admin_b = app.token_for(w.admin_b, None).await;

    let head: AuditHead = app
        .get_json(&format!("/api/tenants/{}/audit/head", w.a), &operator)
        .await;
    assert!(head.seq >= 1);
    let report = api_verify(&app, &operator, w.a, Some(&head)).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.head.seq, head.seq);
    assert_eq!(report.head.hash, head.hash);

    for path in ["head", "verify"] {
        let res = app
            .request(
                Method::GET,
                &format!("/api/tenants/{}/audit/{path}", w.a),
                Some(&admin_b),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let res = app
            .request(
                Method::GET,
                &format!("/api/tenants/{}/audit/{path}", w.a),
                None,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
    }
    // Tenant B's admin sees B's own trail, which is not A's.
    let b: AuditHead = app
        .get_json(&format!("/api/tenants/{}/audit/head", w.b), &admin_b)
        .await;
    assert_ne!(b.hash, head.hash);

    // A malformed exported head is refused field by field.
    let bad = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/audit/verify?seq=-1&hash=xyz", w.a),
            Some(&operator),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(field_errors(bad).await, ["seq", "hash"]);
    let half = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/audit/verify?seq=3", w.a),
            Some(&operator),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(field_errors(half).await, ["hash"]);
}

#[tokio::test]
async fn verification_against_an_exported_head_finds_a_rewritten_chain() {
    let (db, store, tenant) = seeded_chain(4).await;
    let exported = audit::head(&store, tenant).await.unwrap().head;
    let mut tx = forger(&db, tenant).await;
    rewrite_chain_from(&mut tx, 2).await;
    forger_done(tx).await;
    let report = audit::verify(&store, tenant, Some(&exported))
        .await
        .unwrap();
    assert!(!report.ok);
    let check = report.exported.unwrap();
    assert!(!check.contained);
    assert!(
        check
            .problem
            .unwrap()
            .contains("no longer has the exported hash")
    );
    // Unchanged chains hold their exported heads, old ones included.
    let (_db, store, tenant) = seeded_chain(2).await;
    let early = audit::head(&store, tenant).await.unwrap().head;
    append_n(&store, tenant, 3).await;
    let report = audit::verify(&store, tenant, Some(&early)).await.unwrap();
    assert!(report.ok, "{report:?}");
    let genesis = ChainHead {
        seq: 0,
        hash: vec![0; 32],
    };
    assert!(
        audit::verify(&store, tenant, Some(&genesis))
            .await
            .unwrap()
            .ok
    );
}

/// A forger who rewrites rows and deletes their seals only has to wait for the runtime's next
/// append (every LLM call makes one): its seal must not vouch for the forged rows.
#[tokio::test]
async fn a_rewrite_whose_seals_were_deleted_stays_caught_after_the_next_honest_append() {
    let (db, store, tenant) = seeded_chain(5).await;
    let mut tx = forger(&db, tenant).await;
    rewrite_chain_from(&mut tx, 3).await;
    tx.execute("DELETE FROM audit_seals WHERE seq >= 3")
        .await
        .unwrap();
    forger_done(tx).await;
    assert!(
        !full_verify(&store, tenant).await.ok,
        "caught while unsealed"
    );
    // Business as usual: the runtime appends more rows and seals them.
    append_n(&store, tenant, 2).await;
    let report = full_verify(&store, tenant).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.verdict, AuditVerdict::Unsealed, "{report:?}");
    // The seal of rows 2 to 5 went with the rewrite of row 3.
    assert_eq!(
        (report.sealed_through, report.first_bad_seq),
        (1, Some(2)),
        "{report:?}"
    );
}

/// A verification walks the whole trail on one database connection: one tenant's operators
/// cannot run many at once and tie up the connections every tenant needs.
#[tokio::test]
async fn verifications_are_rationed_per_tenant_and_in_all() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let operator_a = app.token_for(w.operator_a, None).await;
    let admin_b = app.token_for(w.admin_b, None).await;
    let verify = |tenant: TenantId, token: &str| {
        app.request(
            Method::GET,
            &format!("/api/tenants/{tenant}/audit/verify"),
            Some(token),
        )
        .send()
    };
    // A's trail is being verified (the place a long walk would hold).
    let running = app.app.verifications.try_start(w.a).unwrap();
    let res = verify(w.a, &operator_a).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    // B is not held up by it.
    let res = verify(w.b, &admin_b).await.unwrap();
    assert_eq!(res.status(), 200);
    // A few at once in all: other tenants take the remaining places, then nobody starts one.
    let mut others = Vec::new();
    while let Some(place) = app
        .app
        .verifications
        .try_start(TenantId::from_uuid(Uuid::new_v4()))
    {
        others.push(place);
        assert!(others.len() < 100, "no limit in all");
    }
    assert_eq!(others.len() + 1, runtime::api::audit::VERIFICATIONS_AT_ONCE);
    assert_eq!(verify(w.b, &admin_b).await.unwrap().status(), 503);
    drop((running, others));
    let res = verify(w.a, &operator_a).await.unwrap();
    assert_eq!(res.status(), 200, "its place was given back");
}

/// A trail whose first rows were written while no audit key was configured (a deployment that
/// upgrades to sealing, a node started without the key for a while) keeps a gap at its start;
/// a rewrite of the sealed rows after it must still be reported as a rewrite, not hidden behind
/// the gap with the report of the honest trail.
#[tokio::test]
async fn a_rewrite_after_a_keyless_period_is_reported_as_a_rewrite() {
    let db = TestDb::new().await;
    let keyless = Store::from_pool(db.app_pool(2).await);
    let store = db.store().await;
    let tenant = seed_tenant(&keyless, "a").await.tenant; // seq 1, unsealed
    append_n(&store, tenant, 4).await; // seq 2 to 5, sealed as one run
    let before = full_verify(&store, tenant).await;
    assert_eq!(
        (before.verdict, before.first_bad_seq),
        (AuditVerdict::Unsealed, Some(1)),
        "{before:?}"
    );

    let mut tx = forger(&db, tenant).await;
    rewrite_chain_from(&mut tx, 3).await;
    forger_done(tx).await;
    let after = full_verify(&store, tenant).await;
    assert_eq!(
        (after.verdict, after.first_bad_seq),
        (AuditVerdict::Broken, Some(5)),
        "the seal of rows 2 to 5 no longer checks: {after:?}"
    );
}

/// The exported head says how far the trail is sealed; after a rewrite whose seals were deleted
/// and an honest append, it must not claim more than the verification does.
#[tokio::test]
async fn the_exported_head_does_not_vouch_for_rows_behind_a_gap() {
    let (db, store, tenant) = seeded_chain(5).await; // seals (1,1) (2,5)
    let mut tx = forger(&db, tenant).await;
    rewrite_chain_from(&mut tx, 3).await;
    tx.execute("DELETE FROM audit_seals WHERE seq >= 3")
        .await
        .unwrap();
    forger_done(tx).await;
    append_n(&store, tenant, 1).await; // an honest seal (6,6)
    let report = full_verify(&store, tenant).await;
    assert_eq!(report.sealed_through, 1, "{report:?}");
    let head = audit::head(&store, tenant).await.unwrap();
    assert_eq!((head.head.seq, head.sealed_through), (6, 1), "{head:?}");
}
