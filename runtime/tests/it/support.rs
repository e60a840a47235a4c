//! Test harness: a fresh database per test, the real server on port 0, and fixtures.
//!
//! Databases are copies of a template that was migrated once (named by a hash of the embedded
//! migrations), so a new database costs one `CREATE DATABASE … TEMPLATE`, not a migration run.
//! Every test connects as the runtime's own role (`konstruct_app`) unless it says otherwise; a
//! superuser would silently bypass row-level security and prove nothing.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{Duration, Utc};
use runtime::api::AuthState;
use runtime::app::{Application, Options};
use runtime::auth::TokenKeys;
use runtime::auth::tokens::ImpersonationClaim;
use runtime::config::{Secret, Settings};
use runtime::redis::Redis;
use runtime::store::bootstrap::{self, UrlTarget};
use runtime::store::{MIGRATOR, Store};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

const HOST: &str = "127.0.0.1:5432";
const OWNER: &str = "konstruct_owner";
const APP: &str = "konstruct_app";
/// Test databases older than this are dropped by the next test run (one still in use cannot be
/// dropped and is left alone), so a run leaves at most a few hundred megabytes behind.
const STALE_AFTER_SECS: u64 = 15 * 60;

fn admin_url() -> String {
    std::env::var("KONSTRUCT_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| format!("postgres://postgres@{HOST}/postgres"))
}

fn url_for(role: &str, database: &str) -> String {
    format!("postgres://{role}:{role}@{HOST}/{database}")
}

pub fn redis_url() -> String {
    std::env::var("KONSTRUCT_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh, migrated database of its own.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// A new database copied from the migrated template.
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// A new database with no migrations applied.
    pub async fn unmigrated() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrated: bool) -> TestDb {
        let name = format!("konstruct_test_{}_{}", now_secs(), Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("connect as superuser");
        let owner = UrlTarget::parse(&url_for(OWNER, "x")).unwrap().role;
        let app = UrlTarget::parse(&url_for(APP, "x")).unwrap().role;
        let db_name = name.clone();
        bootstrap::with_lock(&mut admin, async move |conn| {
            bootstrap::ensure_roles(conn, &owner, &app).await?;
            drop_stale(conn).await;
            let template = if migrated {
                Some(ensure_template(conn).await)
            } else {
                None
            };
            bootstrap::ensure_database(conn, &db_name, OWNER, template.as_deref()).await
        })
        .await
        .expect("create test database");
        admin.close().await.unwrap();
        TestDb { name }
    }

    pub fn app_url(&self) -> String {
        url_for(APP, &self.name)
    }

    pub fn owner_url(&self) -> String {
        url_for(OWNER, &self.name)
    }

    /// A pool as the runtime's role.
    pub async fn app_pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect(&self.app_url())
            .await
            .expect("connect as the runtime role")
    }

    /// The store, as the runtime builds it (sealing the audit chain with [`AUDIT_KEYS`]).
    pub async fn store(&self) -> Store {
        Store::from_pool(self.app_pool(4).await).with_audit_keys(audit_keys())
    }

    /// A single connection as the owner role (migrations, tampering tests).
    pub async fn owner_conn(&self) -> PgConnection {
        PgConnection::connect(&self.owner_url())
            .await
            .expect("connect as owner")
    }

    /// The superuser's URL for this database.
    pub fn superuser_url(&self) -> String {
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&self.name);
        url.to_string()
    }
}

/// Migrates a template database once per set of migrations; returns its name.
async fn ensure_template(conn: &mut PgConnection) -> String {
    let mut hasher = DefaultHasher::new();
    for m in MIGRATOR.iter() {
        m.version.hash(&mut hasher);
        m.checksum.hash(&mut hasher);
    }
    let template = format!("konstruct_tmpl_{:016x}", hasher.finish());
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    if !exists {
        // Migrate under a temporary name and rename at the end, so a failed migration never
        // leaves a half-built template behind.
        let building = format!("{template}_building");
        drop_database(conn, &building).await;
        bootstrap::ensure_database(conn, &building, OWNER, None)
            .await
            .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url_for(OWNER, &building))
            .await
            .unwrap();
        MIGRATOR
            .run(&pool)
            .await
            .expect("migrations apply to an empty database");
        pool.close().await;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
        )))
        .await
        .unwrap();
        // Templates of older migration sets are no longer needed.
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'konstruct\\_tmpl\\_%' AND datname <> $1",
        )
        .bind(&template)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for name in old {
            drop_database(conn, &name).await;
        }
    }
    template
}

/// Drops test databases (and the smoke test's) left by earlier runs. Best effort: a database
/// still in use is left for the next run.
async fn drop_stale(conn: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database \
          WHERE datname LIKE 'konstruct\\_test\\_%' OR datname LIKE 'konstruct\\_smoke\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    let cutoff = now_secs().saturating_sub(STALE_AFTER_SECS);
    for name in names {
        let created = name
            .strip_prefix("konstruct_test_")
            .or_else(|| name.strip_prefix("konstruct_smoke_"))
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            drop_database(conn, &name).await;
        }
    }
}

async fn drop_database(conn: &mut PgConnection, name: &str) {
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\""
        )))
        .await;
}

/// The real server on a free port, with a fresh database and a portal folder of its own.
#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub portal_dir: PathBuf,
    pub db: TestDb,
    pub store: Store,
    /// The server's signing keys, so tests can mint (and forge) tokens.
    pub keys: TokenKeys,
    /// The fake OpenAI/Anthropic server the platform's LLM settings point at; it accepts
    /// `TENANT_LLM_KEY` (a tenant's own key, for the BYO-key API).
    pub llm: e2e::llm::FakeLlm,
    pub keyring: std::sync::Arc<runtime::crypto::Keyring>,
    /// The platform's `ollama` group, when asked for (`AppOptions::ollama`): a fake that needs
    /// no key, like Ollama.
    pub ollama: Option<e2e::llm::FakeLlm>,
    /// The fake Slack Web API the Slack sink posts to.
    pub slack: e2e::slack::FakeSlack,
    /// The fake Graph API the WhatsApp sink sends through; its webhooks go to this server,
    /// signed with [`WHATSAPP_APP_SECRET`].
    pub whatsapp: e2e::whatsapp::FakeGraph,
    /// The durable queue, as a channel webhook would use it.
    pub ingest: runtime::engine::ingest::Ingest,
    /// The server's Redis connection (its own key prefix).
    pub redis: Redis,
    /// The engine, when it runs.
    pub engine: Option<runtime::engine::consumer::Engine>,
    /// The engine's dependencies: its events (`wait_finished`), its snapshots.
    pub deps: runtime::engine::turn::EngineDeps,
    pub app: Application,
    /// The job runner, when it runs (`AppOptions::jobs`).
    pub jobs: Option<runtime::jobs::Runner>,
}

/// The Slack app's signing secret in tests.
pub const SLACK_SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// The platform Meta app's secret in tests (it signs the fake's webhooks).
pub const WHATSAPP_APP_SECRET: &str = "3b1f0c9e2d7a4e6b9a8e3c2b1a0f9e8d";

/// What Meta's webhook verification must present in tests.
pub const WHATSAPP_VERIFY_TOKEN: &str = "verify-me-konstruct-test-0001";

/// The fields a 422 answer names, in order (the status is asserted).
pub async fn field_errors(res: reqwest::Response) -> Vec<String> {
    assert_eq!(res.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let body: shared::ErrorBody = res.json().await.unwrap();
    body.fields.into_iter().map(|f| f.field).collect()
}

/// The provider key the fake LLM accepts.
pub const TENANT_LLM_KEY: &str = "sk-tenant-valid-a1b2";

/// The secret test servers sign sessions with.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

/// The key test stores and servers seal the audit chain with (`KONSTRUCT_AUDIT_KEYS`).
pub const AUDIT_KEYS: &str = "1:5e4c0a1f9d2b7e36a8c4f1d0b9e2a7c65e4c0a1f9d2b7e36a8c4f1d0b9e2a7c6";

/// [`AUDIT_KEYS`], parsed.
pub fn audit_keys() -> runtime::crypto::AuditKeys {
    runtime::crypto::AuditKeys::parse(Some(&Secret::new(AUDIT_KEYS.into()))).unwrap()
}

/// How to build a [`TestApp`].
#[derive(Debug, Default)]
pub struct AppOptions {
    /// Point Redis at this URL instead of the local server (e.g. a closed port).
    pub redis_url: Option<String>,
    /// Use a database without migrations.
    pub unmigrated: bool,
    pub login_failures_per_account: Option<u32>,
    pub login_failures_per_address: Option<u32>,
    pub login_failures_per_account_total: Option<u32>,
    /// Behind a trusted proxy: accept `X-Request-Id` and `X-Forwarded-For`.
    pub trust_proxy_headers: bool,
    /// Further trusted proxies (CIDR networks) in `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
    /// Password hashes at once (the default is one per core).
    pub password_hash_concurrency: Option<u32>,
    /// The public base URL (else the server's own address).
    pub public_url: Option<String>,
    /// How the queue behaves (retry schedule, time to live of dedupe keys, …).
    pub ingest: Option<runtime::engine::ingest::IngestSettings>,
    /// Start the message engine (needs an actix system: use `#[actix_rt::test]`).
    pub engine: Option<runtime::engine::turn::EngineSettings>,
    /// Configure an `ollama` group too, served by `TestApp::ollama`.
    pub ollama: bool,
    /// Test-chat sends allowed per minute (per user, per tenant); generous unless a test sets
    /// them, since pipeline tests send dozens of messages in a second.
    pub chat_limits: Option<runtime::api::chat::ChatLimits>,
    /// Start a job runner (worker `test-node`) with these settings and handlers.
    pub jobs: Option<(runtime::jobs::RunnerSettings, runtime::jobs::Registry)>,
    /// The knowledge settings; the default keeps everything under a data directory of the
    /// test's own and summarises conversations into memories only after an hour (so no test
    /// but the memory tests sees the summariser's LLM calls).
    pub knowledge: Option<runtime::config::KnowledgeSettings>,
    /// Use this data directory (a restart test reuses one); a fresh one when `None`.
    pub data_dir: Option<PathBuf>,
    /// Hosts (`host:port`) the outbound client may reach on our own network.
    pub outbound_allow: Vec<String>,
    /// Send mail through this SMTP URL instead of the test mail server (e.g. a closed port).
    pub smtp_url: Option<String>,
    /// Trust this authority for the mail server's certificate.
    pub smtp_ca_file: Option<PathBuf>,
    /// Invitation and password-reset settings (expiries, rate limits).
    pub people: Option<runtime::config::PeopleSettings>,
    /// The LLM pool's tuning (timeout, retries, cooldown, requests open per deployment); its
    /// providers and keys are always the fakes'.
    pub llm: Option<runtime::config::LlmSettings>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(AppOptions::default()).await
    }

    pub async fn spawn_with(options: AppOptions) -> TestApp {
        runtime::llm::install_crypto();
        // `KONSTRUCT_TEST_LOG=debug cargo test …` shows the server's logs with a test's output.
        if let Ok(filter) = std::env::var("KONSTRUCT_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let db = if options.unmigrated {
            TestDb::unmigrated().await
        } else {
            TestDb::new().await
        };
        let portal_dir = std::env::temp_dir().join(format!("konstruct-portal-{}", Uuid::new_v4()));
        std::fs::create_dir_all(portal_dir.join("assets")).unwrap();
        std::fs::write(
            portal_dir.join("index.html"),
            "<!doctype html><title>Konstruct</title><body>portal</body>",
        )
        .unwrap();
        std::fs::write(portal_dir.join("assets/app-1234.css"), "body{margin:0}").unwrap();

        let mut settings = Settings::default();
        settings.server.port = 0;
        settings.server.workers = Some(1);
        settings.server.portal_dir = portal_dir.clone();
        settings.server.json_limit_bytes = 64 * 1024;
        settings.server.trust_proxy_headers = options.trust_proxy_headers;
        settings.server.trusted_proxies = options.trusted_proxies;
        settings.server.public_url = options.public_url;
        if let Some(n) = options.password_hash_concurrency {
            settings.auth.password_hash_concurrency = n;
        }
        settings.database.url = Secret::new(db.app_url());
        settings.redis.url = Secret::new(options.redis_url.unwrap_or_else(redis_url));
        // A key space of its own, like the database: no test sees another's counters.
        settings.redis.key_prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
        settings.auth.jwt_secret = Some(Secret::new(JWT_SECRET.into()));
        settings.auth.login_failures_per_account = options.login_failures_per_account.unwrap_or(5);
        settings.auth.login_failures_per_address = options.login_failures_per_address.unwrap_or(30);
        if let Some(n) = options.login_failures_per_account_total {
            settings.auth.login_failures_per_account_total = n;
        }
        settings.llm = options.llm.unwrap_or_default();
        let llm = e2e::llm::FakeLlm::start(TENANT_LLM_KEY).unwrap();
        settings.llm.openai_base_url = llm.base_url.clone();
        settings.llm.anthropic_base_url = llm.base_url.clone();
        // The platform's own "openai" group is the fake too, so agents can answer.
        settings.llm.openai_api_key = Some(Secret::new(TENANT_LLM_KEY.into()));
        let ollama = options
            .ollama
            .then(|| e2e::llm::FakeLlm::start_open().unwrap());
        settings.llm.ollama_url = ollama.as_ref().map(|o| o.base_url.clone());
        let slack = e2e::slack::FakeSlack::start().unwrap();
        settings.slack.signing_secret = Some(Secret::new(SLACK_SIGNING_SECRET.into()));
        settings.slack.app_id = Some(e2e::slack::APP_ID.into());
        settings.slack.api_base_url = slack.api_base.clone();
        let whatsapp = e2e::whatsapp::FakeGraph::start().unwrap();
        settings.whatsapp.graph_url = whatsapp.base_url.clone();
        settings.whatsapp.graph_version = e2e::whatsapp::GRAPH_VERSION.into();
        settings.whatsapp.app_secret = Some(Secret::new(WHATSAPP_APP_SECRET.into()));
        settings.whatsapp.verify_token = Some(Secret::new(WHATSAPP_VERIFY_TOKEN.into()));
        // Generous unless a test sets them: pipeline tests send dozens of messages in a second.
        let chat = options
            .chat_limits
            .unwrap_or(runtime::api::chat::ChatLimits {
                per_user_per_minute: 1000,
                per_tenant_per_minute: 1000,
            });
        settings.engine.chat_per_user_per_minute = chat.per_user_per_minute;
        settings.engine.chat_per_tenant_per_minute = chat.per_tenant_per_minute;
        settings.secrets.audit_keys = Some(Secret::new(AUDIT_KEYS.into()));
        settings.knowledge =
            options
                .knowledge
                .unwrap_or_else(|| runtime::config::KnowledgeSettings {
                    memory_delay_secs: 3600,
                    ..Default::default()
                });
        let data_dir = options.data_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("konstruct-data-{}", Uuid::new_v4()))
        });
        settings.knowledge.data_dir = data_dir.clone();
        settings.outbound.allow = options.outbound_allow;
        settings.mail.smtp_url = Some(Secret::new(
            options.smtp_url.unwrap_or_else(crate::mailbox::smtp_url),
        ));
        settings.mail.from = "Konstruct <no-reply@konstruct.test>".into();
        settings.mail.smtp_ca_file = options.smtp_ca_file;
        if let Some(people) = options.people {
            settings.people = people;
        }
        let keys = AuthState::from_settings(&settings.auth, &settings.server).keys;
        let start_engine = options.engine.is_some();
        let mut app = Application::build(
            &settings,
            Options {
                start_engine,
                engine: options.engine,
                ingest: options.ingest,
                keyring: Some(runtime::crypto::Keyring::random()),
                node: Some("test-node".into()),
                jobs: options.jobs,
            },
        )
        .await
        .unwrap();
        whatsapp.webhook(
            format!("http://127.0.0.1:{}/webhooks/whatsapp", app.port),
            WHATSAPP_APP_SECRET,
        );
        TestApp {
            base: format!("http://127.0.0.1:{}", app.port),
            http: reqwest::Client::new(),
            portal_dir,
            db,
            store: app.store.clone(),
            keys,
            llm,
            keyring: app.keyring.clone(),
            ollama,
            slack,
            whatsapp,
            ingest: app.ingest.clone(),
            redis: app.redis.clone(),
            engine: app.engine.clone(),
            jobs: app.jobs.take(),
            deps: app.deps.clone(),
            app,
        }
    }

    /// What job handlers reach, as this server's runner has it.
    pub fn job_context(&self) -> runtime::jobs::JobContext {
        runtime::jobs::JobContext {
            store: self.store.clone(),
            redis: self.redis.clone(),
            knowledge: Some(self.app.knowledge().clone()),
            llm: Some(self.app.pool.clone()),
            people: Some(self.app.people.clone()),
            ingest: Some(self.app.ingest.clone()),
            channels: Some(self.app.channels.clone()),
            keyring: Some(self.app.keyring.clone()),
            outbound: Some(self.app.outbound.clone()),
        }
    }

    /// Listens to the engine's events from now on (subscribe before the action you wait for).
    pub fn events(&self) -> Events {
        Events(self.deps.subscribe())
    }

    /// Returns once the running tenant actor has reloaded its configuration; a change committed
    /// before the call is in force afterwards. (A tenant with no actor yet loads fresh anyway.)
    pub async fn config_applied(&self, tenant: shared::TenantId) {
        let engine = self.engine.as_ref().expect("the engine runs");
        engine
            .registry
            .send(runtime::engine::actors::Reload(tenant))
            .await
            .unwrap();
    }

    /// A client that calls as `token` (or anonymously).
    pub fn client(&self, token: Option<String>) -> Client<'_> {
        Client { app: self, token }
    }

    /// This server's Redis keys matching `pattern` (after its prefix), e.g. `login:*`.
    pub async fn redis_keys_matching(&self, pattern: &str) -> Vec<String> {
        self.redis
            .keys_matching(&self.redis.key(pattern))
            .await
            .unwrap()
    }

    /// A Redis key's time to live (-1: none, -2: absent).
    pub async fn redis_ttl(&self, key: &str) -> i64 {
        self.redis.ttl(key).await.unwrap()
    }

    /// How many messages were appended to the ingest queue, over every partition.
    pub async fn queued(&self) -> u64 {
        let mut total = 0;
        for partition in 0..self.ingest.partitions() {
            let stream = self.ingest.stream(partition);
            total += self.redis.stream_len(&stream).await.unwrap();
        }
        total
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// A valid session token for `user`, as sign-in would issue (optionally impersonating).
    pub async fn token_for(&self, user: Uuid, impersonate: Option<shared::TenantId>) -> String {
        let row = runtime::store::users::get(&self.store, user)
            .await
            .unwrap()
            .unwrap();
        let now = Utc::now();
        let mut claims = self.keys.new_session(user, row.auth_version, now);
        let parent_sid = claims.sid;
        claims.imp = impersonate.map(|t| ImpersonationClaim {
            tenant: *t.as_uuid(),
            exp: (now + Duration::minutes(30)).timestamp(),
            parent_sid,
        });
        self.keys.sign(&self.keys.renew(&claims, now)).unwrap()
    }

    /// `GET path` with `token`, read as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
        self.request(reqwest::Method::GET, path, Some(token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The tenant's audit trail in order: action, actor id, impersonator id.
    pub async fn audit_trail(
        &self,
        tenant: shared::TenantId,
    ) -> Vec<(String, Option<Uuid>, Option<Uuid>)> {
        let mut tx = self.store.tenant_tx(tenant).await.unwrap();
        sqlx::query_as("SELECT action, actor_id, impersonator_id FROM audit_events ORDER BY seq")
            .fetch_all(tx.connection())
            .await
            .unwrap()
    }

    /// The tenant's audit events as `{action, details}`, in order.
    pub async fn audit_events(&self, tenant: shared::TenantId) -> Vec<serde_json::Value> {
        let mut tx = self.store.tenant_tx(tenant).await.unwrap();
        let rows: Vec<(String, serde_json::Value)> =
            sqlx::query_as("SELECT action, details FROM audit_events ORDER BY seq")
                .fetch_all(tx.connection())
                .await
                .unwrap();
        rows.into_iter()
            .map(|(action, details)| serde_json::json!({ "action": action, "details": details }))
            .collect()
    }

    /// The actions of the tenant's audit trail, in order.
    pub async fn audit_actions(&self, tenant: shared::TenantId) -> Vec<String> {
        self.audit_trail(tenant)
            .await
            .into_iter()
            .map(|(action, _, _)| action)
            .collect()
    }

    /// A request with `token` as bearer (or none).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.portal_dir);
    }
}

/// The engine's events, as a test waits for them.
#[derive(Debug)]
pub struct Events(tokio::sync::broadcast::Receiver<runtime::engine::turn::EngineEvent>);

impl Events {
    /// Waits until `tenant`'s actor has loaded its configuration snapshot again (after a
    /// change's notice reached it).
    pub async fn config_loaded(&mut self, tenant: shared::TenantId) {
        use runtime::engine::turn::EngineEvent;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let event = tokio::time::timeout_at(deadline, self.0.recv())
                .await
                .expect("the tenant's configuration was never reloaded")
                .expect("the engine's events");
            if event == (EngineEvent::ConfigLoaded { tenant }) {
                return;
            }
        }
    }

    /// Waits until `count` entries of `tenant` left the engine (acknowledged, parked or
    /// dead-lettered); returns their event ids and how each left, in order.
    pub async fn finished(
        &mut self,
        tenant: shared::TenantId,
        count: usize,
    ) -> Vec<(String, runtime::engine::turn::Outcome)> {
        use runtime::engine::turn::EngineEvent;
        let mut done = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while done.len() < count {
            let event = tokio::time::timeout_at(deadline, self.0.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of {count} finished: {done:?}", done.len()))
                .expect("the engine's events");
            if let EngineEvent::Finished {
                tenant: t,
                event_id,
                outcome,
            } = event
                && t == tenant
            {
                done.push((event_id, outcome));
            }
        }
        done
    }
}

/// An answer: its status and its body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: serde_json::Value,
}

impl Answer {
    /// The body as `T` (the status is the caller's to check first).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.body))
    }

    /// The fields a 422 names, in order.
    pub fn fields(&self) -> Vec<String> {
        assert_eq!(
            self.status,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            self.body
        );
        self.json::<shared::ErrorBody>()
            .fields
            .into_iter()
            .map(|f| f.field)
            .collect()
    }
}

/// A typed client for one caller (`World::as_…` makes one per role).
#[derive(Debug, Clone)]
pub struct Client<'a> {
    app: &'a TestApp,
    token: Option<String>,
}

impl Client<'_> {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut req = self.app.request(method, path, self.token.as_deref());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into())
            })
        };
        Answer { status, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> Answer {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
}
