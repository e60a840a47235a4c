//! The `konstruct` binary: reads the configuration and runs one subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use runtime::api::{self, AppState, AuthState};
use runtime::auth::password;
use runtime::config::{AuthSettings, Settings};
use runtime::engine::consumer;
use runtime::engine::ingest::{Ingest, IngestSettings};
use runtime::engine::turn::{EngineDeps, EngineSettings};
use runtime::jobs;
use runtime::llm::pool::Pool;
use runtime::redis::Redis;
use runtime::store::{self, Store, bootstrap, users};
use runtime::telemetry;
use std::sync::Arc;

/// Konstruct: AI employees on Slack and WhatsApp, run from a web portal.
#[derive(Debug, Parser)]
#[command(name = "konstruct", version)]
struct Cli {
    /// A TOML configuration file (else $KONSTRUCT_CONFIG, else defaults and environment only).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and the portal.
    Serve,
    /// Apply pending database migrations (as the owner role).
    Migrate,
    /// Create or repair the database roles and the database (as a superuser); idempotent.
    SetupDb,
    /// Load and validate the configuration, print it with secrets redacted, and exit.
    CheckConfig,
    /// Create a platform admin from KONSTRUCT_ADMIN_EMAIL and KONSTRUCT_ADMIN_PASSWORD (or do
    /// nothing if that account exists).
    CreateAdmin,
}

fn main() -> ExitCode {
    runtime::llm::install_crypto();
    let cli = Cli::parse();
    // Test builds only: stop at a named point of the reply protocol (see `failpoint`).
    #[cfg(debug_assertions)]
    if let Ok(name) = std::env::var(runtime::config::FAILPOINT_VAR) {
        runtime::failpoint::arm(&name);
    }
    let (settings, warnings) = match Settings::from_process_env(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("konstruct: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    // An actix system: the engine's actors live on its arbiter; the HTTP workers run their own.
    let system = actix::System::new();
    match system.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "konstruct failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            store::migrate(settings.database.owner_url.expose())
                .await
                .context("applying migrations as the owner role")?;
            tracing::info!(
                migrations = store::MIGRATOR.iter().count(),
                "database is up to date"
            );
            Ok(())
        }
        Command::SetupDb => {
            let db = &settings.database;
            bootstrap::setup_database(
                db.admin_url.expose(),
                db.owner_url.expose(),
                db.url.expose(),
            )
            .await
            .context("setting up roles and database (needs a superuser in database.admin_url)")?;
            tracing::info!("database roles and database are in place");
            Ok(())
        }
        Command::CreateAdmin => {
            let store = Store::connect_lazy(&settings.database)?;
            if !ensure_admin(&store, &settings.auth).await? {
                anyhow::bail!("set KONSTRUCT_ADMIN_EMAIL and KONSTRUCT_ADMIN_PASSWORD");
            }
            Ok(())
        }
        Command::CheckConfig => {
            #[expect(
                clippy::print_stdout,
                reason = "printing the configuration is the command"
            )]
            {
                println!("{settings:#?}");
            }
            Ok(())
        }
    }
}

/// Creates the platform admin named in the settings unless that account exists. Returns false
/// when the settings name none.
async fn ensure_admin(store: &Store, auth: &AuthSettings) -> anyhow::Result<bool> {
    let (Some(email), Some(password)) = (&auth.admin_email, &auth.admin_password) else {
        return Ok(false);
    };
    if users::get_by_email(store, email).await?.is_some() {
        tracing::info!("the configured admin account exists");
        return Ok(true);
    }
    if password.expose().chars().count() < password::MIN_LENGTH {
        anyhow::bail!(
            "KONSTRUCT_ADMIN_PASSWORD must have at least {} characters",
            password::MIN_LENGTH
        );
    }
    let pw = password.expose().clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let user = users::create(store, email, "Platform admin", &hash, true).await?;
    tracing::info!(user.id = %user.id, "created the first platform admin");
    Ok(true)
}

fn keyring(settings: &Settings) -> anyhow::Result<runtime::crypto::Keyring> {
    let keyring = runtime::crypto::Keyring::parse(settings.secrets.encryption_keys.as_ref())?;
    if keyring.is_empty() {
        tracing::warn!(
            "KONSTRUCT_ENCRYPTION_KEYS is not set: tenants cannot store their own LLM keys"
        );
    }
    Ok(keyring)
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

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let store = Store::connect_lazy(&settings.database)?;
    match store.role_report().await {
        Ok(role) if !role.is_safe_runtime_role() => {
            anyhow::bail!(
                "refusing to serve: database role {} bypasses row-level security \
                 (superuser={}, bypassrls={}, owns tables={}); connect as the runtime role",
                role.name,
                role.superuser,
                role.bypass_rls,
                role.owns_tables
            );
        }
        Ok(role) => {
            tracing::info!(db.role = %role.name, "connected to Postgres as the runtime role")
        }
        Err(e) => tracing::warn!(error = %e, "Postgres not reachable yet; /readyz will report it"),
    }
    if let Err(e) = ensure_admin(&store, &settings.auth).await {
        tracing::error!(
            error = format!("{e:#}"),
            "could not create the first platform admin"
        );
    }
    let (redis, _redis_task) = Redis::connect(&settings.redis)?;
    tokio::spawn(api::health::log_redis_persistence(redis.clone()));
    let ingest = Ingest::new(redis.clone(), IngestSettings::from_config(&settings.engine));
    let llm = Arc::new(llm_pool(&settings));
    let keyring = Arc::new(keyring(&settings)?);
    let sinks = runtime::channels::sinks(&store, &keyring, &settings.slack.api_base_url);
    let deps = EngineDeps::new(
        store.clone(),
        redis.clone(),
        ingest.clone(),
        llm.clone(),
        keyring.clone(),
        sinks,
        EngineSettings::from_config(&settings.engine),
    );
    let node = format!("node-{}", uuid::Uuid::new_v4().simple());
    let engine = consumer::start(deps, &node);
    tracing::info!(engine.node = %node, partitions = ingest.partitions(), "message engine started");
    let job_settings = jobs::RunnerSettings::from_config(&settings.jobs);
    let job_grace = job_settings.lease;
    let job_runner = jobs::Runner::start(
        jobs::JobContext {
            store: store.clone(),
            redis: redis.clone(),
        },
        jobs::Registry::builtin()?,
        job_settings,
        &node,
    );
    let state = AppState {
        store,
        redis: redis.clone(),
        auth: AuthState::from_settings(&settings.auth),
        llm,
        keyring,
        key_validator: runtime::llm::KeyValidator::from_settings(&settings.llm),
        ingest,
        default_limits: api::limits::DefaultLimits::from_config(&settings.engine),
        chat_limits: api::chat::ChatLimits::from_config(&settings.engine),
        slack_signing_secret: settings.slack.signing_secret.clone(),
        trust_proxy_headers: settings.server.trust_proxy_headers,
        slack_api: runtime::channels::slack::SlackApi::new(&settings.slack.api_base_url),
    };
    let bound = api::bind(&settings.server, state).context("binding the HTTP listener")?;
    tracing::info!(
        url = format!("http://{}:{}/", settings.server.host, bound.port),
        "Konstruct is serving"
    );
    bound.server.await.context("HTTP server")?;
    // Give the partitions back so another node takes over at once, then let that happen.
    engine.stop();
    // Running jobs finish (within a lease; after that another node runs them again).
    job_runner.shutdown(job_grace).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    redis.quit().await;
    Ok(())
}
