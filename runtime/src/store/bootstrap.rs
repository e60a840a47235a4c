//! First-time database setup, run as a superuser: the roles and the database itself.
//!
//! Roles:
//! - the **owner** (login, from `database.owner_url`): owns the database and every object in it;
//!   migrations run as it. Not superuser, no `BYPASSRLS`, so forced row-level security binds it too.
//! - `konstruct_runtime` (no login): the group that holds the runtime's privileges, granted by the
//!   migrations.
//! - the **runtime** login (from `database.url`): a member of `konstruct_runtime`; not superuser,
//!   not owner, `NOBYPASSRLS`.
//! - `konstruct_resolver` (no login, `BYPASSRLS`): owns only the `resolve_channel` function, the one
//!   narrow path across tenants. The owner is a member so migrations can hand the function to it.
//!
//! Everything here is idempotent and re-asserts the attributes, so running it again repairs a role
//! that someone altered by hand. Concurrent runs (parallel tests) serialise on an advisory lock.

use percent_encoding::percent_decode_str;
use sqlx::{Connection, PgConnection};
use url::Url;

use super::{StoreError, StoreResult};

/// The NOLOGIN role that holds the runtime's privileges.
pub const RUNTIME_GROUP: &str = "konstruct_runtime";
/// The NOLOGIN, BYPASSRLS role that owns the channel resolver function.
pub const RESOLVER_ROLE: &str = "konstruct_resolver";

/// A key for `pg_advisory_lock`, shared by everything that creates roles or databases.
const BOOTSTRAP_LOCK: i64 = 0x6b6f_6e73_7472_7563; // "konstruc"

/// A login role and its password, taken from a connection URL.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRole {
    pub name: String,
    password: Option<String>,
}

impl std::fmt::Debug for LoginRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRole")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a connection URL says about the role and database it connects to.
#[derive(Debug, Clone)]
pub struct UrlTarget {
    pub role: LoginRole,
    pub database: String,
}

impl UrlTarget {
    /// Reads the user, password and database name from a `postgres://` URL.
    pub fn parse(url: &str) -> StoreResult<Self> {
        let parsed = Url::parse(url)
            .map_err(|e| StoreError::Config(format!("database URL is not a valid URL: {e}")))?;
        let name = parsed.username().to_string();
        if !is_identifier(&name) {
            return Err(StoreError::Config(
                "database URL must name a user made of lower-case letters, digits and _".into(),
            ));
        }
        let database = parsed.path().trim_start_matches('/').to_string();
        if !is_identifier(&database) {
            return Err(StoreError::Config(
                "database URL must name a database made of lower-case letters, digits and _".into(),
            ));
        }
        let password = parsed
            .password()
            .map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned());
        Ok(Self {
            role: LoginRole { name, password },
            database,
        })
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Creates (or repairs) the roles and creates the database if it does not exist.
pub async fn setup_database(
    admin_url: &str,
    owner_url: &str,
    runtime_url: &str,
) -> StoreResult<()> {
    let owner = UrlTarget::parse(owner_url)?;
    let runtime = UrlTarget::parse(runtime_url)?;
    if owner.database != runtime.database {
        return Err(StoreError::Config(
            "the owner and runtime database URLs must name the same database".into(),
        ));
    }
    if owner.role.name == runtime.role.name {
        return Err(StoreError::Config(
            "the runtime must not connect as the owner: use two different users".into(),
        ));
    }
    let mut admin = PgConnection::connect(admin_url).await?;
    with_lock(&mut admin, async |conn| {
        ensure_roles(conn, &owner.role, &runtime.role).await?;
        ensure_database(conn, &owner.database, &owner.role.name, None).await
    })
    .await?;
    admin.close().await?;
    Ok(())
}

/// Runs `f` while holding the bootstrap advisory lock on `conn`.
pub async fn with_lock<T>(
    conn: &mut PgConnection,
    f: impl AsyncFnOnce(&mut PgConnection) -> StoreResult<T>,
) -> StoreResult<T> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = f(conn).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

/// Creates or repairs the owner, the runtime login and the two group roles. Needs a superuser.
pub async fn ensure_roles(
    conn: &mut PgConnection,
    owner: &LoginRole,
    runtime: &LoginRole,
) -> StoreResult<()> {
    ensure_role(
        conn,
        RUNTIME_GROUP,
        "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS",
        None,
    )
    .await?;
    ensure_role(
        conn,
        RESOLVER_ROLE,
        "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS",
        None,
    )
    .await?;
    ensure_role(
        conn,
        &owner.name,
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS",
        Some(owner.password.as_deref()),
    )
    .await?;
    ensure_role(
        conn,
        &runtime.name,
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS",
        Some(runtime.password.as_deref()),
    )
    .await?;
    ensure_member(conn, RUNTIME_GROUP, &runtime.name).await?;
    ensure_member(conn, RESOLVER_ROLE, &owner.name).await
}

async fn ensure_member(conn: &mut PgConnection, group: &str, member: &str) -> StoreResult<()> {
    let is_member: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m \
                          JOIN pg_roles g ON g.oid = m.roleid \
                          JOIN pg_roles r ON r.oid = m.member \
                         WHERE g.rolname = $1 AND r.rolname = $2)",
    )
    .bind(group)
    .bind(member)
    .fetch_one(&mut *conn)
    .await?;
    if !is_member {
        execute_formatted(conn, "GRANT %I TO %I", &[group, member]).await?;
    }
    Ok(())
}

async fn ensure_role(
    conn: &mut PgConnection,
    name: &str,
    attributes: &str,
    password: Option<Option<&str>>,
) -> StoreResult<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    execute_formatted(conn, &format!("{verb} ROLE %I {attributes}"), &[name]).await?;
    match password {
        Some(Some(pw)) => {
            execute_formatted(conn, "ALTER ROLE %I PASSWORD %L", &[name, pw]).await?;
        }
        Some(None) => execute_formatted(conn, "ALTER ROLE %I PASSWORD NULL", &[name]).await?,
        None => {}
    }
    Ok(())
}

/// Creates `database` owned by `owner` unless it exists, optionally as a copy of `template`.
pub async fn ensure_database(
    conn: &mut PgConnection,
    database: &str,
    owner: &str,
    template: Option<&str>,
) -> StoreResult<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut *conn)
            .await?;
    if exists {
        return Ok(());
    }
    match template {
        Some(template) => {
            execute_formatted(
                conn,
                "CREATE DATABASE %I OWNER %I TEMPLATE %I",
                &[database, owner, template],
            )
            .await
        }
        None => execute_formatted(conn, "CREATE DATABASE %I OWNER %I", &[database, owner]).await,
    }
}

/// Builds a statement with Postgres' own `format()` (`%I` quotes identifiers, `%L` literals), so
/// names and passwords are quoted by the server, then runs it. DDL cannot take bind parameters.
async fn execute_formatted(
    conn: &mut PgConnection,
    template: &str,
    args: &[&str],
) -> StoreResult<()> {
    let mut select = String::from("SELECT format($1");
    for i in 0..args.len() {
        select.push_str(&format!(", ${}", i + 2));
    }
    select.push(')');
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(select)).bind(template);
    for arg in args {
        query = query.bind(*arg);
    }
    let statement = query.fetch_one(&mut *conn).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_target_reads_user_password_and_database() {
        let t = UrlTarget::parse("postgres://konstruct_app:s%40cret@db:5432/konstruct").unwrap();
        assert_eq!(t.role.name, "konstruct_app");
        assert_eq!(t.role.password.as_deref(), Some("s@cret"));
        assert_eq!(t.database, "konstruct");
        assert!(!format!("{t:?}").contains("cret"));
    }

    #[test]
    fn url_target_rejects_odd_names() {
        assert!(UrlTarget::parse("postgres://Robert'--@db/konstruct").is_err());
        assert!(UrlTarget::parse("postgres://app@db/").is_err());
        assert!(UrlTarget::parse("not a url").is_err());
    }
}
