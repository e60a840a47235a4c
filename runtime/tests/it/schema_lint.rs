//! The schema lint: every table with a `tenant_id` column (and `tenants` itself) must have row-level
//! security enabled and forced, and every policy on it must be exactly the tenant filter — its
//! tenant column equal to `app.tenant_id` — in both USING and WITH CHECK. Not "mentions the
//! setting": an expression such as `tenant_id = … OR true` mentions it and lets everything
//! through. A future table that forgets fails here.

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
        // Postgres stores the policy as it deparses it; this is the tenant filter, deparsed.
        let column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let filter = format!(
            "({column} = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)"
        );
        for (name, cmd, using, check) in policies {
            let filters = |e: &Option<String>| e.as_deref() == Some(filter.as_str());
            if !filters(&using) {
                problems.push(format!(
                    "{table}.{name}: USING is not exactly the tenant filter: {}",
                    using.as_deref().unwrap_or("(none)")
                ));
            }
            // A SELECT or DELETE policy has no WITH CHECK; any other must have one.
            if !matches!(cmd.as_str(), "SELECT" | "DELETE") && !filters(&check) {
                problems.push(format!(
                    "{table}.{name}: WITH CHECK is not exactly the tenant filter: {}",
                    check.as_deref().unwrap_or("(none)")
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
         CREATE POLICY read_all ON agents FOR SELECT USING (true); \
         CREATE POLICY sneaky ON messages \
             USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid OR true) \
             WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid); \
         CREATE TABLE other_column (id uuid, tenant_id uuid, owner_id uuid); \
         ALTER TABLE other_column ENABLE ROW LEVEL SECURITY; \
         ALTER TABLE other_column FORCE ROW LEVEL SECURITY; \
         CREATE POLICY by_owner ON other_column \
             USING (owner_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid) \
             WITH CHECK (owner_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);",
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
        "wide_open.everyone: USING is not exactly the tenant filter",
        "wide_open.everyone: WITH CHECK is not exactly the tenant filter",
        "agents.read_all: USING is not exactly the tenant filter",
        "messages.sneaky: USING is not exactly the tenant filter",
        "other_column.by_owner: USING is not exactly the tenant filter",
        "other_column.by_owner: WITH CHECK is not exactly the tenant filter",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 10, "{problems:#?}");
}
