//! The schema lint: every table with a `tenant_id` column (and `tenants` itself) must have row-level
//! security enabled and forced, and every policy on it must filter on `app.tenant_id` in both
//! USING and WITH CHECK. A future table that forgets fails here.

use sqlx::PgConnection;

use crate::support::TestDb;

/// Returns one line per problem; empty when the schema is sound.
async fn lint(conn: &mut PgConnection) -> Vec<String> {
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
            AND (c.relname = 'tenants' OR EXISTS ( \
                 SELECT 1 FROM pg_attribute a \
                  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)) \
          ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut problems = Vec::new();
    for (table, enabled, forced) in tables {
        if !enabled {
            problems.push(format!("{table}: row level security is not enabled"));
        }
        if !forced {
            problems.push(format!("{table}: row level security is not forced"));
        }
        let policies: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT policyname::text, cmd::text, qual, with_check FROM pg_policies \
              WHERE schemaname = 'public' AND tablename = $1",
        )
        .bind(&table)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        if policies.is_empty() {
            problems.push(format!("{table}: no policy"));
        }
        for (name, cmd, using, check) in policies {
            let filters = |e: &Option<String>| {
                e.as_deref()
                    .is_some_and(|e| e.contains("current_setting('app.tenant_id'::text, true)"))
            };
            if !filters(&using) {
                problems.push(format!(
                    "{table}.{name}: USING does not filter on app.tenant_id"
                ));
            }
            // A SELECT or DELETE policy has no WITH CHECK; any other must have one.
            if !matches!(cmd.as_str(), "SELECT" | "DELETE") && !filters(&check) {
                problems.push(format!(
                    "{table}.{name}: WITH CHECK does not filter on app.tenant_id"
                ));
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_tenant_owned_table_has_forced_rls_and_a_tenant_policy() {
    let db = TestDb::new().await;
    let mut conn = db.owner_conn().await;
    assert_eq!(lint(&mut conn).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_lint_catches_a_table_that_forgets() {
    let db = TestDb::new().await;
    let mut conn = db.owner_conn().await;
    sqlx::raw_sql(
        "CREATE TABLE forgot_rls (id uuid, tenant_id uuid); \
         CREATE TABLE not_forced (id uuid, tenant_id uuid); \
         ALTER TABLE not_forced ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY p ON not_forced USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid) \
             WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid); \
         CREATE TABLE wide_open (id uuid, tenant_id uuid); \
         ALTER TABLE wide_open ENABLE ROW LEVEL SECURITY; \
         ALTER TABLE wide_open FORCE ROW LEVEL SECURITY; \
         CREATE POLICY everyone ON wide_open USING (true) WITH CHECK (true); \
         CREATE POLICY read_all ON agents FOR SELECT USING (true);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let problems = lint(&mut conn).await;
    for expected in [
        "forgot_rls: row level security is not enabled",
        "forgot_rls: row level security is not forced",
        "forgot_rls: no policy",
        "not_forced: row level security is not forced",
        "wide_open.everyone: USING does not filter on app.tenant_id",
        "wide_open.everyone: WITH CHECK does not filter on app.tenant_id",
        "agents.read_all: USING does not filter on app.tenant_id",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "missing {expected:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 7, "{problems:#?}");
}
