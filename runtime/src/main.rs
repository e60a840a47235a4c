//! The `konstruct` binary: reads the configuration and runs one subcommand.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use runtime::api::health;
use runtime::app::{Application, Options};
use runtime::auth::password;
use runtime::config::{AuthSettings, Settings};
use runtime::store::{self, Store, bootstrap, users};
use runtime::telemetry;
use runtime::{api, scope};

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
    /// Ask this machine's server whether it is ready (`GET /readyz` on the configured port, at
    /// loopback when it binds every address); exits 0 when it answers 200 within the timeout.
    /// For container health checks: it needs no shell, database or network beyond loopback.
    Healthcheck {
        /// Check this URL instead (plain `http://` only).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Create a platform admin from KONSTRUCT_ADMIN_EMAIL and KONSTRUCT_ADMIN_PASSWORD (or do
    /// nothing if that account exists).
    CreateAdmin,
    /// Measure the scope check on a labelled JSON Lines file (see e2e/scope/README.md); needs
    /// no configuration, database or network.
    ScopeEval {
        /// The labelled messages, one JSON object a line.
        file: PathBuf,
        /// Also write the numbers as JSON to this file.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
        /// Also print every message with its scores (tab-separated), for tuning.
        #[arg(long)]
        cases: bool,
    },
}

fn main() -> ExitCode {
    runtime::llm::install_crypto();
    let cli = Cli::parse();
    // An offline measurement: it needs no settings, so a missing configuration cannot stop it.
    let command = match cli.command {
        Command::ScopeEval { file, json, cases } => {
            return match scope_eval(&file, json.as_deref(), cases) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("konstruct scope-eval: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        command => command,
    };
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
    if let Command::Healthcheck { url, timeout_secs } = &command {
        let url = url
            .clone()
            .unwrap_or_else(|| health::readyz_url(&settings.server));
        return match health::probe(&url, Duration::from_secs(*timeout_secs)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("konstruct healthcheck: {url}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    telemetry::init(&settings.log);
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    // An actix system: the engine's actors live on its arbiter; the HTTP workers run their own.
    let system = actix::System::new();
    match system.block_on(run(command, settings)) {
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
        // Handled in `main`, before the settings load or the runtime starts.
        Command::ScopeEval { .. } | Command::Healthcheck { .. } => Ok(()),
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

/// Judges every line of `file` with the shipped scope check and prints the numbers.
fn scope_eval(file: &Path, json: Option<&Path>, cases: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = scope::eval::parse(&text).with_context(|| format!("{}", file.display()))?;
    let started = Instant::now();
    let check = scope::ScopeCheck::shared().context("loading the scope check")?;
    let setup_ms = started.elapsed().as_secs_f64() * 1000.0;
    let report = scope::eval::evaluate(&check, &parsed, setup_ms);
    let mut printed = String::new();
    if cases {
        printed.push_str(&scope::eval::render_cases(&report));
        printed.push('\n');
    }
    printed.push_str(&scope::eval::render(&report));
    std::io::stdout()
        .lock()
        .write_all(printed.as_bytes())
        .context("writing to standard output")?;
    if let Some(out) = json {
        let body = serde_json::to_string_pretty(&report)?;
        std::fs::write(out, body + "\n").with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
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

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(
        &settings,
        Options {
            start_engine: true,
            jobs: Some((
                runtime::jobs::RunnerSettings::from_config(&settings.jobs),
                runtime::jobs::Registry::builtin()?,
            )),
            ..Options::default()
        },
    )
    .await?;
    if let Err(e) = ensure_admin(&app.store, &settings.auth).await {
        tracing::error!(
            error = format!("{e:#}"),
            "could not create the first platform admin"
        );
    }
    tokio::spawn(api::health::log_redis_persistence(app.redis.clone()));
    app.run_until_stopped().await.context("HTTP server")?;
    Ok(())
}
