//! Tenant isolation, proven by the database as the runtime's own role, over every tenant-owned
//! table: tenant A can neither read, insert into, update nor delete tenant B's rows, and with no
//! tenant set every table reads as empty.

use std::collections::BTreeSet;

use shared::channel::ChannelKind;
use sqlx::{Connection, PgConnection};

use crate::fixtures::seed_tenant;
use crate::support::TestDb;

/// Every tenant-owned table and the column that holds its tenant. The first test proves this list
/// is complete, so a new table cannot escape the suite below.
const TENANT_TABLES: &[(&str, &str)] = &[
    ("tenants", "id"),
    ("tenant_members", "tenant_id"),
    ("agents", "tenant_id"),
    ("channel_connections", "tenant_id"),
    ("conversations", "tenant_id"),
    ("messages", "tenant_id"),
    ("audit_events", "tenant_id"),
    ("audit_seals", "tenant_id"),
    ("llm_usage", "tenant_id"),
    ("tenant_llm_keys", "tenant_id"),
    ("escalations", "tenant_id"),
    ("end_users", "tenant_id"),
    ("jobs", "tenant_id"),
    ("channel_health", "tenant_id"),
    ("scope_declines_daily", "tenant_id"),
    ("early_delivery_reports", "tenant_id"),
    ("knowledge_documents", "tenant_id"),
    ("knowledge_chunks", "tenant_id"),
    ("memories", "tenant_id"),
    ("embeddings", "tenant_id"),
    ("knowledge_index", "tenant_id"),
    ("tools", "tenant_id"),
    ("tool_calls", "tenant_id"),
    ("invitations", "tenant_id"),
    ("conversation_events", "tenant_id"),
    ("budgets", "tenant_id"),
    ("budget_periods", "tenant_id"),
    ("budget_reservations", "tenant_id"),
    ("budget_alerts", "tenant_id"),
];

/// Tables whose rows the runtime may neither delete nor move to another tenant, by privilege:
/// the audit trail and its seals (append-only) and jobs (it updates only their status columns).
const APPEND_ONLY: &[&str] = &["audit_events", "audit_seals", "jobs"];

async fn tables_with_tenant_column(conn: &mut PgConnection) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT table_name::text FROM information_schema.columns \
          WHERE table_schema = 'public' AND column_name = 'tenant_id'",
    )
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

fn sqlstate(err: &sqlx::Error) -> (String, String) {
    match err {
        sqlx::Error::Database(db) => (
            db.code().map(|c| c.to_string()).unwrap_or_default(),
            db.message().to_string(),
        ),
        other => (String::new(), other.to_string()),
    }
}

#[tokio::test]
async fn the_suite_covers_every_table_with_a_tenant_id() {
    let db = TestDb::new().await;
    let mut conn = db.owner_conn().await;
    let expected: BTreeSet<String> = TENANT_TABLES
        .iter()
        .filter(|(_, col)| *col == "tenant_id")
        .map(|(t, _)| t.to_string())
        .collect();
    assert_eq!(
        tables_with_tenant_column(&mut conn).await,
        expected,
        "a table with tenant_id was added: add it to TENANT_TABLES and to the fixtures"
    );
}

#[tokio::test]
async fn tests_connect_as_the_runtime_role() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(user, "konstruct_app");
}

#[tokio::test]
async fn tenant_a_cannot_read_write_or_delete_tenant_b_rows_in_any_table() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = seed_tenant(&store, "a").await;
    let b = seed_tenant(&store, "b").await;

    for (table, col) in TENANT_TABLES {
        let b_id = b.tenant.as_uuid();

        // Reads: only A's rows, none of B's even when asked for by id.
        let mut tx = store.tenant_tx(a.tenant).await.unwrap();
        let visible: Vec<uuid::Uuid> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {col} FROM {table}")))
                .fetch_all(tx.connection())
                .await
                .unwrap();
        assert!(!visible.is_empty(), "{table}: A sees its own rows");
        assert!(
            visible.iter().all(|t| t == a.tenant.as_uuid()),
            "{table}: A sees only its own rows"
        );
        let of_b: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {col} = $1"
        )))
        .bind(b_id)
        .fetch_one(tx.connection())
        .await
        .unwrap();
        assert_eq!(of_b, 0, "{table}: A cannot select B's rows");

        if APPEND_ONLY.contains(table) {
            for stmt in [
                format!("UPDATE {table} SET {col} = {col} WHERE {col} = $1"),
                format!("DELETE FROM {table} WHERE {col} = $1"),
            ] {
                let mut tx = store.tenant_tx(a.tenant).await.unwrap();
                let err = sqlx::query(sqlx::AssertSqlSafe(stmt.clone()))
                    .bind(b_id)
                    .execute(tx.connection())
                    .await
                    .unwrap_err();
                let (code, msg) = sqlstate(&err);
                assert_eq!(code, "42501", "{stmt}: {msg}");
                assert!(msg.contains("permission denied"), "{stmt}: {msg}");
            }
        } else {
            // Updates and deletes aimed at B touch nothing.
            let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {col} = {col} WHERE {col} = $1"
            )))
            .bind(b_id)
            .execute(tx.connection())
            .await
            .unwrap()
            .rows_affected();
            assert_eq!(updated, 0, "{table}: A cannot update B's rows");
            let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE {col} = $1"
            )))
            .bind(b_id)
            .execute(tx.connection())
            .await
            .unwrap()
            .rows_affected();
            assert_eq!(deleted, 0, "{table}: A cannot delete B's rows");

            // Moving one of A's own rows to B is refused by WITH CHECK.
            let mut tx = store.tenant_tx(a.tenant).await.unwrap();
            let err = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {col} = $1 WHERE {col} = $2"
            )))
            .bind(b_id)
            .bind(a.tenant.as_uuid())
            .execute(tx.connection())
            .await
            .unwrap_err();
            let (code, msg) = sqlstate(&err);
            assert_eq!(code, "42501", "{table}: moving a row to B: {msg}");
            assert!(msg.contains("row-level security"), "{table}: {msg}");
        }
        // Nothing above may persist: the transactions roll back when dropped.
        drop(tx);

        // Inserting a row that claims to be B's is refused by WITH CHECK. The row is a copy of
        // one of A's with a fresh id (and slug), so only the tenant differs.
        let mut tx = store.tenant_tx(a.tenant).await.unwrap();
        let err = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, \
               to_jsonb(x) || jsonb_build_object('id', gen_random_uuid(), \
                                                 'slug', 'copy-' || substr(md5(random()::text), 1, 8)) \
                           || jsonb_build_object('{col}', $1::text))).* \
             FROM {table} x LIMIT 1"
        )))
        .bind(b_id)
        .execute(tx.connection())
        .await
        .unwrap_err();
        let (code, msg) = sqlstate(&err);
        assert_eq!(code, "42501", "{table}: inserting B's row: {msg}");
        assert!(msg.contains("row-level security"), "{table}: {msg}");
    }

    // B's data is all still there, untouched.
    let mut tx = store.tenant_tx(b.tenant).await.unwrap();
    for (table, col) in TENANT_TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {col} = $1"
        )))
        .bind(b.tenant.as_uuid())
        .fetch_one(tx.connection())
        .await
        .unwrap();
        assert_eq!(n, 1, "{table}: B still has its row");
    }
}

#[tokio::test]
async fn with_no_tenant_set_every_table_reads_empty_and_refuses_writes() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = seed_tenant(&store, "a").await;
    seed_tenant(&store, "b").await;

    let mut conn = PgConnection::connect(&db.app_url()).await.unwrap();
    // Never set, then set and ended by a committed transaction (which leaves '' behind), then
    // explicitly empty: all three must match nothing.
    for phase in ["never set", "after a tenant transaction", "set to empty"] {
        match phase {
            "after a tenant transaction" => {
                let mut tx = conn.begin().await.unwrap();
                sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                    .bind(a.tenant.to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            "set to empty" => {
                sqlx::query("SELECT set_config('app.tenant_id', '', false)")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            _ => {}
        }
        for (table, _) in TENANT_TABLES {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert_eq!(n, 0, "{table} must read empty with the tenant {phase}");
        }
    }
    let err =
        sqlx::query("INSERT INTO agents (id, tenant_id, name) VALUES (gen_random_uuid(), $1, 'x')")
            .bind(a.tenant.as_uuid())
            .execute(&mut conn)
            .await
            .unwrap_err();
    assert_eq!(sqlstate(&err).0, "42501");
}

#[tokio::test]
async fn the_runtime_role_is_not_superuser_not_owner_and_cannot_bypass_rls() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let role = store.role_report().await.unwrap();
    assert_eq!(role.name, "konstruct_app");
    assert!(!role.superuser, "runtime role is a superuser");
    assert!(!role.bypass_rls, "runtime role has BYPASSRLS");
    assert!(!role.owns_tables, "runtime role owns tables");
    assert!(role.is_safe_runtime_role());

    // The database owner is someone else, and no table belongs to the runtime.
    let mut conn = PgConnection::connect(&db.app_url()).await.unwrap();
    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(owner, "konstruct_owner");
    let (create_db, create_role, inherit_bypass): (bool, bool, bool) = sqlx::query_as(
        "SELECT r.rolcreatedb, r.rolcreaterole, \
                EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolbypassrls AND pg_has_role(r.oid, g.oid, 'MEMBER')) \
           FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        !create_db && !create_role,
        "runtime role may not create databases or roles"
    );
    assert!(
        !inherit_bypass,
        "runtime role is not a member of any BYPASSRLS role"
    );

    // A superuser pool is reported as unsafe, which `konstruct serve` refuses to run with.
    let su = runtime::store::Store::from_pool(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&db.superuser_url())
            .await
            .unwrap(),
    );
    assert!(!su.role_report().await.unwrap().is_safe_runtime_role());
}

#[tokio::test]
async fn channels_resolve_to_their_tenant_through_the_narrow_resolver_only() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = seed_tenant(&store, "a").await;
    let b = seed_tenant(&store, "b").await;

    let found = store
        .resolve_channel(ChannelKind::Slack, &b.connection_external_id)
        .await
        .unwrap()
        .expect("B's workspace resolves");
    assert_eq!(found.tenant, b.tenant);
    assert_eq!(found.connection_id, b.connection);
    assert!(found.active);
    assert!(
        store
            .resolve_channel(ChannelKind::Slack, "T_UNKNOWN")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .resolve_channel(ChannelKind::Whatsapp, &a.connection_external_id)
            .await
            .unwrap()
            .is_none(),
        "the kind is part of the key"
    );

    // A suspended tenant still resolves, marked inactive, so webhooks can acknowledge and skip.
    let mut tx = store.tenant_tx(a.tenant).await.unwrap();
    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = $1")
        .bind(a.tenant.as_uuid())
        .execute(tx.connection())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let found = store
        .resolve_channel(ChannelKind::Slack, &a.connection_external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.tenant, a.tenant);
    assert!(!found.active);

    // Outside the function the runtime still sees nothing across tenants.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM channel_connections")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}
