//! `Application::build`: the one way the server is put together from its settings. `konstruct
//! serve`, the integration tests and the benchmarks all build it here, so what the tests prove is
//! what runs.
//!
//! Start-up order: connect (lazily) to Postgres and Redis, bind and start the HTTP server (so
//! `/healthz` answers and `/readyz` says what it is waiting for), then verify the database role —
//! retrying while Postgres is down, refusing to serve if the role could bypass row-level
//! security — and only then start the message engine.

use std::sync::Arc;
use std::time::Duration;

use crate::api::health::{RoleCheck, Startup};
use crate::api::{self, AppState, AuthState};
use crate::channels::Channels;
use crate::config::Settings;
use crate::crypto::{AuditKeys, CryptoError, Keyring};
use crate::engine::consumer::{self, Engine};
use crate::engine::ingest::{Ingest, IngestSettings};
use crate::engine::turn::{EngineDeps, EngineSettings};
use crate::jobs::{JobContext, Registry as JobRegistry, Runner, RunnerSettings};
use crate::llm::pool::Pool;
use crate::redis::{Redis, RedisError};
use crate::store::{Store, StoreError};

/// Why the server could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Keys(#[from] CryptoError),
    #[error("binding the HTTP listener: {0}")]
    Bind(#[from] std::io::Error),
    #[error("building the outbound HTTP client: {0}")]
    Outbound(#[from] crate::outbound::OutboundError),
    #[error("setting up mail: {0}")]
    Mail(#[from] crate::mail::MailConfigError),
    #[error("opening the vector index: {0}")]
    Vectors(#[from] crate::vector::VectorError),
    #[error(
        "refusing to serve: database role {role} could bypass row-level security ({problems}); \
         connect as the runtime role"
    )]
    UnsafeRole { role: String, problems: String },
}

/// What the caller chooses beyond the settings (tests and benchmarks).
#[derive(Debug, Default)]
pub struct Options {
    /// Run the message engine (needs an actix `System`).
    pub start_engine: bool,
    /// The engine's tuning; from the settings when `None`.
    pub engine: Option<EngineSettings>,
    /// The queue's behaviour; from the settings when `None`.
    pub ingest: Option<IngestSettings>,
    /// The keys sealing tenants' secrets; from the settings when `None`.
    pub keyring: Option<Keyring>,
    /// This node's name (partition leases, fences); a random one when `None`.
    pub node: Option<String>,
    /// Run the durable job runner with these settings and handlers (`serve` runs the built-in
    /// handlers with the configured settings).
    pub jobs: Option<(RunnerSettings, JobRegistry)>,
}

/// A built, running server.
pub struct Application {
    pub port: u16,
    pub store: Store,
    pub redis: Redis,
    pub ingest: Ingest,
    pub keyring: Arc<Keyring>,
    pub channels: Channels,
    pub pool: Arc<Pool>,
    /// Sessions and sign-in (shared with the HTTP workers: the same hasher, the same keys).
    pub auth: AuthState,
    /// The audit verifications running now (shared with the API, which rations them).
    pub verifications: api::audit::Verifications,
    /// The engine's dependencies (its events, its snapshots), also when it does not run.
    pub deps: EngineDeps,
    /// The running engine, when started.
    pub engine: Option<Engine>,
    /// The running job runner, when started.
    pub jobs: Option<Runner>,
    /// How long a graceful stop waits for running jobs (one lease).
    jobs_grace: Duration,
    pub node: String,
    /// The mail sender and links (shared with the API and the mail jobs).
    pub people: crate::people::People,
    /// The one client for URLs tenants supply.
    pub outbound: crate::outbound::Outbound,
    knowledge: crate::knowledge::Knowledge,
    server: actix_web::dev::ServerHandle,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// How long to wait between two attempts to verify the database role while Postgres is down.
const ROLE_RETRY_MAX: Duration = Duration::from_secs(10);

impl Application {
    /// Builds and starts everything the settings describe.
    pub async fn build(settings: &Settings, options: Options) -> Result<Self, AppError> {
        let store = Store::connect_lazy(&settings.database)?.with_audit_keys(audit_keys(settings)?);
        crate::store::channel_cache::listen(store.clone());
        let (redis, _connecting) = Redis::connect(&settings.redis)?;
        let ingest = Ingest::new(
            redis.clone(),
            options
                .ingest
                .unwrap_or_else(|| IngestSettings::from_config(&settings.engine)),
        );
        let pool = Arc::new(llm_pool(settings));
        let keyring = Arc::new(match options.keyring {
            Some(keyring) => keyring,
            None => Keyring::parse(settings.secrets.encryption_keys.as_ref())?,
        });
        if keyring.is_empty() {
            tracing::warn!(
                "KONSTRUCT_ENCRYPTION_KEYS is not set: tenants cannot store their own LLM keys \
                 or connect channels"
            );
        }
        let channels = Channels::new(&settings.slack, &settings.whatsapp);
        let outbound = crate::outbound::Outbound::from_settings(&settings.outbound)?;
        let knowledge = knowledge(settings, &store, &keyring, &outbound).await?;
        let deps = EngineDeps::new(
            store.clone(),
            redis.clone(),
            ingest.clone(),
            pool.clone(),
            keyring.clone(),
            channels.sinks(),
            options
                .engine
                .unwrap_or_else(|| EngineSettings::from_config(&settings.engine)),
        )
        .with_knowledge(knowledge.clone())
        .with_outbound(outbound.clone());
        let listener = std::net::TcpListener::bind((settings.server.host, settings.server.port))?;
        let port = listener.local_addr()?.port();
        let public_url = match &settings.server.public_url {
            Some(url) => crate::links::PublicUrl::parse(url).map_err(|why| {
                AppError::Bind(std::io::Error::other(format!("server.public_url {why}")))
            })?,
            None => {
                let url = crate::links::PublicUrl::parse(&format!(
                    "http://{}",
                    std::net::SocketAddr::new(settings.server.host, port)
                ))
                .map_err(|why| AppError::Bind(std::io::Error::other(why)))?;
                tracing::warn!(
                    public_url = url.base(),
                    "KONSTRUCT_PUBLIC_URL is not set: links the product writes point at this \
                     address, which only this machine may reach, and session cookies are not \
                     marked Secure. Behind a TLS proxy set KONSTRUCT_PUBLIC_URL=https://…"
                );
                url
            }
        };
        let startup = Arc::new(Startup::default());
        let verifications = api::audit::Verifications::default();
        let auth = AuthState::from_settings(&settings.auth, &settings.server);
        let mailer = crate::mail::Mailer::from_settings(&settings.mail)?;
        if mailer.is_none() {
            tracing::warn!(
                "KONSTRUCT_SMTP_URL is not set: invitation and password-reset mails wait until a \
                 mail server is configured"
            );
        }
        let people = crate::people::People {
            mailer,
            public_url: public_url.clone(),
            links: auth.links.clone(),
            settings: settings.people.clone(),
        };
        let state = AppState {
            store: store.clone(),
            redis: redis.clone(),
            auth: auth.clone(),
            llm: pool.clone(),
            keyring: keyring.clone(),
            key_validator: crate::llm::KeyValidator::from_settings(&settings.llm),
            ingest: ingest.clone(),
            default_limits: api::limits::DefaultLimits::from_config(&settings.engine),
            chat_limits: api::chat::ChatLimits::from_config(&settings.engine),
            channels: channels.clone(),
            startup: startup.clone(),
            public_url,
            outbound: outbound.clone(),
            verifications: verifications.clone(),
            knowledge: Some(knowledge.clone()),
            turn_caps: api::tools::TurnCaps {
                steps: deps.settings.tool_steps,
                deadline_secs: deps.settings.turn_deadline.as_secs(),
            },
            clock: deps.settings.clock.clone(),
            people: people.clone(),
            inbox: crate::inbox::live::Hub::start(store.clone()),
        };
        let bound = api::bind_listener(listener, &settings.server, state)?;
        let server = bound.server.handle();
        let serving = tokio::spawn(bound.server);
        tracing::info!(
            url = format!("http://{}:{}/", settings.server.host, bound.port),
            "Konstruct is serving"
        );
        if let Err(e) = verify_role(&store, &startup).await {
            server.stop(false).await;
            return Err(e);
        }
        let node = options
            .node
            .unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4().simple()));
        let engine = options.start_engine.then(|| {
            let engine = consumer::start(deps.clone(), &node);
            tracing::info!(engine.node = %node, partitions = ingest.partitions(), "message engine started");
            engine
        });
        let jobs_grace = options
            .jobs
            .as_ref()
            .map_or(Duration::ZERO, |(settings, _)| settings.lease);
        let jobs = options.jobs.map(|(settings, registry)| {
            let context = JobContext {
                store: store.clone(),
                redis: redis.clone(),
                knowledge: Some(knowledge.clone()),
                llm: Some(pool.clone()),
                people: Some(people.clone()),
                ingest: Some(ingest.clone()),
                channels: Some(channels.clone()),
                keyring: Some(keyring.clone()),
                outbound: Some(outbound.clone()),
            };
            Runner::start(context, registry, settings, &node)
        });
        Ok(Self {
            knowledge,
            port: bound.port,
            store,
            redis,
            ingest,
            keyring,
            channels,
            pool,
            auth,
            verifications,
            deps,
            engine,
            jobs,
            jobs_grace,
            node,
            people,
            outbound,
            server,
            serving,
        })
    }

    /// Serves until the server is stopped (a signal, or `stop`), then stops the engine and gives
    /// its partitions back.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = match self.serving.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        };
        tracing::info!("HTTP server stopped; stopping the engine and the jobs");
        if let Some(engine) = &self.engine {
            // Give the partitions back so another node takes over at once, then let that happen.
            engine.stop();
            if !engine.stopped(Duration::from_secs(10)).await {
                tracing::warn!(
                    "the engine did not give its partitions back within 10 s; they lapse after a lease"
                );
            }
        }
        if let Some(jobs) = self.jobs {
            // Running jobs finish (within a lease; after that another node runs them again).
            jobs.shutdown(self.jobs_grace).await;
        }
        // Closing Redis politely must not hold the exit up: whatever is left is unacknowledged
        // and another node claims it.
        if tokio::time::timeout(Duration::from_secs(2), self.redis.quit())
            .await
            .is_err()
        {
            tracing::warn!("Redis did not close within 2 s; exiting anyway");
        }
        tracing::info!("stopped");
        served
    }

    /// Sessions and sign-in as the server uses them.
    /// The knowledge base and memory service.
    pub fn knowledge(&self) -> &crate::knowledge::Knowledge {
        &self.knowledge
    }

    pub fn auth_state(&self) -> &AuthState {
        &self.auth
    }

    /// Stops the HTTP server (gracefully) and the engine.
    pub async fn stop(&self) {
        if let Some(engine) = &self.engine {
            engine.stop();
        }
        self.server.stop(true).await;
    }
}

fn audit_keys(settings: &Settings) -> Result<AuditKeys, CryptoError> {
    let keys = AuditKeys::parse(settings.secrets.audit_keys.as_ref())?;
    if keys.is_empty() {
        tracing::warn!(
            "KONSTRUCT_AUDIT_KEYS is not set: THE AUDIT TRAIL IS NOT SEALED. Anyone who can write \
             to the database can rewrite it undetected, and verification reports every row as \
             unsealed. Set KONSTRUCT_AUDIT_KEYS=1:<64 hex characters> (keep it out of the database)"
        );
    } else {
        tracing::info!(audit.key_versions = ?keys.versions(), "audit trail sealing is on");
    }
    Ok(keys)
}

/// The knowledge service: the embedded vector engine under the data directory, or the Qdrant
/// server the settings name; the embedding providers the operator configured are reachable
/// through a client of their own (they may live on a private network), documents' URLs only
/// through the shared one. The embedded index is brought up to date with Postgres in the
/// background.
async fn knowledge(
    settings: &Settings,
    store: &Store,
    keyring: &Arc<Keyring>,
    outbound: &crate::outbound::Outbound,
) -> Result<crate::knowledge::Knowledge, AppError> {
    let k = &settings.knowledge;
    let vectors: Arc<dyn crate::vector::VectorStore> = match &k.qdrant_url {
        Some(url) => Arc::new(crate::vector::server::QdrantServer::connect(
            url,
            k.qdrant_api_key.as_ref().map(|s| s.expose().clone()),
        )?),
        None => Arc::new(crate::vector::edge::EdgeStore::open(
            k.data_dir.join("vectors"),
        )?),
    };
    let mut providers = settings.outbound.clone();
    for url in [
        Some(&settings.llm.openai_base_url),
        settings.llm.ollama_url.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(u) = url::Url::parse(url)
            && let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default())
        {
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            providers.allow.push(format!("{host}:{port}"));
        }
    }
    let service = crate::knowledge::Knowledge::new(
        store.clone(),
        vectors,
        k.clone(),
        settings.llm.clone(),
        keyring.clone(),
        outbound.clone(),
        crate::outbound::Outbound::from_settings(&providers)?,
    );
    if k.qdrant_url.is_none() {
        let syncing = service.clone();
        tokio::spawn(async move {
            if let Err(e) = syncing.sync_all().await {
                tracing::warn!(error = %e, "the embedded vector index could not be brought up to date");
            }
        });
    }
    Ok(service)
}

fn llm_pool(settings: &Settings) -> Pool {
    let pool = Pool::from_settings(&settings.llm);
    let groups: Vec<&str> = pool.groups().iter().map(|g| g.name.as_str()).collect();
    if groups.is_empty() {
        tracing::warn!(
            "no LLM provider configured: set KONSTRUCT_ANTHROPIC_API_KEY, KONSTRUCT_OPENAI_API_KEY \
             or KONSTRUCT_OLLAMA_URL; agents will apologise instead of answering"
        );
    } else {
        tracing::info!(llm.groups = ?groups, "LLM pool ready");
    }
    pool
}

/// Verifies that the database role cannot bypass row-level security, retrying while Postgres
/// does not answer. Until it is verified `/readyz` says so.
async fn verify_role(store: &Store, startup: &Startup) -> Result<(), AppError> {
    let mut wait = Duration::from_millis(250);
    let mut warned = false;
    loop {
        match store.role_report().await {
            Ok(role) if role.is_safe_runtime_role() => {
                // Ready first, then said: whoever reads the line finds the server ready.
                startup.set_role(RoleCheck::Verified(role.name.clone()));
                tracing::info!(db.role = %role.name, "connected to Postgres as the runtime role");
                return Ok(());
            }
            Ok(role) => {
                let problems = role.problems().join("; ");
                startup.set_role(RoleCheck::Refused(format!(
                    "database role {} could bypass row-level security: {problems}",
                    role.name
                )));
                return Err(AppError::UnsafeRole {
                    role: role.name,
                    problems,
                });
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "Postgres not reachable yet; retrying (/readyz reports it)");
                    warned = true;
                }
                startup.set_role(RoleCheck::Pending(e.to_string()));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(ROLE_RETRY_MAX);
            }
        }
    }
}
