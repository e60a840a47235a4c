//! The schema lint: every table with a `tenant_id` column (and `tenants` itself) must have row-level
//! security enabled and forced, and every policy on it must be exactly the tenant filter — its
//! tenant column equal to `app.tenant_id` — in both USING and WITH CHECK (not merely mention the
//! setting: `tenant_id = … OR true` mentions it and lets everything through); and every function
//! in `public` must pin its `search_path` to exactly `pg_catalog, pg_temp` (names of our own are
//! schema-qualified), so nothing — an object someone created in `public`, or a temporary one,
//! searched first unless named — can shadow what it calls. A future table or function
//! that forgets fails here.

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

/// One line per function in `public` whose `search_path` is not pinned to exactly
/// `pg_catalog, pg_temp`. Extensions' functions are theirs to answer for.
async fn function_lint(conn: &mut PgConnection) -> Vec<String> {
    let functions: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.proconfig \
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
          WHERE n.nspname = 'public' \
            AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                             WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid \
                               AND d.deptype = 'e') \
          ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut problems = Vec::new();
    for (function, config) in functions {
        let path = config
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| c.strip_prefix("search_path=").map(str::to_string));
        match path {
            None => problems.push(format!("{function}: does not set search_path")),
            Some(path) => {
                let entries: Vec<&str> = path.split(',').map(str::trim).collect();
                if entries != ["pg_catalog", "pg_temp"] {
                    problems.push(format!(
                        "{function}: search_path {path} is not pg_catalog, pg_temp"
                    ));
                }
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_function_pins_its_search_path_to_pg_catalog_then_pg_temp() {
    let db = TestDb::new().await;
    let mut conn = db.owner_conn().await;
    assert_eq!(function_lint(&mut conn).await, Vec::<String>::new());
    // The lint looked at something: the audit and resolver functions are in public.
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
          WHERE n.nspname = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(count >= 10, "{count}");
}

#[tokio::test]
async fn the_lint_catches_a_function_that_forgets() {
    let db = TestDb::new().await;
    let mut conn = db.owner_conn().await;
    sqlx::raw_sql(
        "CREATE FUNCTION forgot_path() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; \
         CREATE FUNCTION public_last() RETURNS int LANGUAGE sql \
             SET search_path = pg_catalog, public AS $$ SELECT 1 $$; \
         CREATE FUNCTION temp_first(p int) RETURNS int LANGUAGE sql \
             SET search_path = pg_temp, pg_catalog AS $$ SELECT p $$; \
         CREATE FUNCTION public_then_temp() RETURNS int LANGUAGE sql \
             SET search_path = public, pg_temp AS $$ SELECT 1 $$; \
         CREATE FUNCTION pinned() RETURNS int LANGUAGE sql \
             SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let problems = function_lint(&mut conn).await;
    assert_eq!(
        problems,
        vec![
            "forgot_path(): does not set search_path".to_string(),
            "public_last(): search_path pg_catalog, public is not pg_catalog, pg_temp".to_string(),
            "public_then_temp(): search_path public, pg_temp is not pg_catalog, pg_temp"
                .to_string(),
            "temp_first(integer): search_path pg_temp, pg_catalog is not pg_catalog, pg_temp"
                .to_string(),
        ]
    );
}
