//! Typed settings: defaults, then an optional TOML file, then `KONSTRUCT_…` environment variables.
//!
//! Loading is a pure function of the file text and the environment it is handed, so tests never
//! touch the process environment. Secrets are wrapped in [`Secret`], whose `Debug` never prints
//! the value. Environment variables that start with `KONSTRUCT_` but are not known are reported as
//! warnings (a typo such as `KONSTRUCT_DATABSE_URL` would otherwise be silently ignored).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The prefix every environment variable of ours carries.
pub const ENV_PREFIX: &str = "KONSTRUCT_";

/// The variable that names the optional configuration file.
pub const CONFIG_FILE_VAR: &str = "KONSTRUCT_CONFIG";

/// A value that must never appear in logs, error messages or API responses.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; call only where it is handed to the thing that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Everything the runtime can be configured with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub llm: LlmSettings,
    pub secrets: SecretSettings,
    pub engine: EngineConfig,
    pub slack: SlackSettings,
    pub jobs: JobsSettings,
}

/// The durable job runner each node runs (`jobs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsSettings {
    /// Jobs this node runs at once.
    pub concurrency: u32,
    /// How long a claimed job stays this node's without renewal; renewed every third of it, so
    /// another node takes a job over this long after its node died.
    pub lease_secs: u64,
    /// How often the runner looks for due work without being told (retries, a missed notice).
    pub poll_secs: u64,
    /// The first retry's delay; it doubles with each attempt, with jitter, up to `retry_max_secs`.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease_secs: 60,
            poll_secs: 5,
            retry_base_secs: 2,
            retry_max_secs: 600,
        }
    }
}

/// The one Slack app Konstruct runs (installed into many workspaces).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackSettings {
    /// Verifies that events come from Slack. Without it the events endpoint answers 503.
    pub signing_secret: Option<Secret<String>>,
    /// For the OAuth installation flow.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret<String>>,
    /// The Web API base, e.g. `https://slack.com/api` (tests point it at a fake).
    pub api_base_url: String,
}

impl Default for SlackSettings {
    fn default() -> Self {
        Self {
            signing_secret: None,
            client_id: None,
            client_secret: None,
            api_base_url: "https://slack.com/api".into(),
        }
    }
}

/// The message engine's defaults. A tenant's own rate limits (set by a platform admin through
/// `PUT /api/tenants/{id}/limits`) take precedence over these.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Messages per minute a tenant may send across all its channels, and the burst above it.
    pub rate_per_minute: u32,
    pub rate_burst: u32,
    /// Messages per minute one channel connection (a Slack workspace, a WhatsApp number) may send.
    pub connection_rate_per_minute: u32,
    pub connection_rate_burst: u32,
    /// A conversation with no message for this long leaves memory; its window stays in Redis.
    pub conversation_idle_secs: u64,
    /// How long a node's claim on an ingest partition lasts without renewal.
    pub partition_lease_secs: u64,
    /// How long a message whose reply cannot be delivered (its channel's API is down) is retried
    /// before it is dead-lettered.
    pub retry_horizon_secs: u64,
    /// The longest wait between two retries of a parked message.
    pub retry_max_delay_secs: u64,
    /// How long a conversation's memory window stays in Redis without a turn; after that (or a
    /// Redis restart) it is rebuilt from the conversation's messages in Postgres.
    pub conversation_state_ttl_secs: u64,
    /// How long a provider event id is remembered in Redis to drop the provider's retries.
    pub dedupe_ttl_secs: u64,
    /// How long dead letters are kept.
    pub dead_letter_ttl_secs: u64,
    /// Entries handed to the actors and not finished yet, at most; the consumer waits for room.
    pub max_in_flight: u32,
    /// Test-chat messages one user may send per minute, and one tenant's users together. Each
    /// costs an LLM call, so a script or a stuck key cannot run up a bill.
    pub chat_per_user_per_minute: u32,
    pub chat_per_tenant_per_minute: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            rate_per_minute: 600,
            rate_burst: 60,
            connection_rate_per_minute: 120,
            connection_rate_burst: 20,
            conversation_idle_secs: 600,
            partition_lease_secs: 15,
            retry_horizon_secs: 3600,
            retry_max_delay_secs: 60,
            conversation_state_ttl_secs: 7 * 24 * 3600,
            dedupe_ttl_secs: 3600,
            dead_letter_ttl_secs: 7 * 24 * 3600,
            max_in_flight: 1024,
            chat_per_user_per_minute: 20,
            chat_per_tenant_per_minute: 120,
        }
    }
}

/// Keys that seal tenants' secrets at rest (see `crypto`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSettings {
    /// `1:<64 hex chars>[,2:<64 hex chars>…]`; the highest version seals new secrets.
    pub encryption_keys: Option<Secret<String>>,
}

/// The platform's LLM providers. Each one configured becomes a model group named after it
/// (`anthropic`, `openai`, `ollama`), tried in that order; an agent's model preference names the
/// group to try first.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    pub anthropic_api_key: Option<Secret<String>>,
    pub anthropic_base_url: String,
    pub anthropic_model: String,
    pub openai_api_key: Option<Secret<String>>,
    pub openai_base_url: String,
    pub openai_model: String,
    /// An Ollama server, e.g. `http://127.0.0.1:11434` (its OpenAI-compatible `/v1` is used).
    pub ollama_url: Option<String>,
    pub ollama_model: String,
    pub timeout_secs: u64,
    pub max_retries: u32,
    pub cooldown_secs: u64,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            anthropic_api_key: None,
            anthropic_base_url: "https://api.anthropic.com".into(),
            anthropic_model: "claude-3-5-haiku-latest".into(),
            openai_api_key: None,
            openai_base_url: "https://api.openai.com".into(),
            openai_model: "gpt-4o-mini".into(),
            ollama_url: None,
            ollama_model: "llama3.2".into(),
            timeout_secs: 60,
            max_retries: 2,
            cooldown_secs: 30,
        }
    }
}

/// Sessions, sign-in limits and the first platform admin.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC key for session tokens, at least 32 bytes. When unset a random key is made at start,
    /// so sessions end when the process restarts (fine for a laptop, wrong for production).
    pub jwt_secret: Option<Secret<String>>,
    /// Lifetime of one session token; cookies are re-issued as they age, API clients call
    /// `POST /api/auth/refresh`.
    pub token_minutes: u32,
    /// A session ends this long after sign-in, however active.
    pub session_max_hours: u32,
    /// Mark cookies `Secure`. When unset, they are secure if the request came over HTTPS.
    pub cookie_secure: Option<bool>,
    /// The first platform admin, created at start if no platform admin exists.
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret<String>>,
    /// Failed sign-ins allowed per account, and per client address, in one window.
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_window_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_minutes: 15,
            session_max_hours: 12,
            cookie_secure: None,
            admin_email: None,
            admin_password: None,
            login_failures_per_account: 5,
            login_failures_per_address: 30,
            login_window_secs: 900,
        }
    }
}

/// The HTTP listener and the portal's static files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind; `127.0.0.1` by default so a development machine exposes nothing.
    pub host: IpAddr,
    /// Port to bind; `0` picks a free one (tests).
    pub port: u16,
    /// Folder with the portal's built files (`trunk build` output), served at `/`.
    pub portal_dir: PathBuf,
    /// Largest JSON body accepted, in bytes.
    pub json_limit_bytes: usize,
    /// HTTP worker threads; one per core when unset.
    pub workers: Option<usize>,
    /// Trust `X-Request-Id` and `X-Forwarded-For` from the client: set it only behind a proxy
    /// that sets them itself. Off, every request gets a fresh id and the socket peer is the
    /// client address (for sign-in limits).
    pub trust_proxy_headers: bool,
}

/// Postgres: the runtime's own role, the owner (migrations) and a superuser (first setup only).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The runtime's role: not superuser, not owner, `NOBYPASSRLS`.
    pub url: Secret<String>,
    /// The owner of the schema; only `konstruct migrate` uses it.
    pub owner_url: Secret<String>,
    /// A superuser, used only by `konstruct setup-db` to create the roles and the database.
    pub admin_url: Secret<String>,
    /// Size of the runtime's connection pool.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing as `unavailable`.
    pub acquire_timeout_ms: u64,
}

/// Redis: streams, dedupe keys, memory windows, leases.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Secret<String>,
    /// Prepended to every key, so deployments (or test runs) sharing one Redis stay apart.
    pub key_prefix: String,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// An `EnvFilter` directive, e.g. `info,runtime=debug`.
    pub filter: String,
    /// Pretty lines for a terminal, JSON lines for machines, or chosen by whether stdout is a
    /// terminal.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            portal_dir: PathBuf::from("portal-leptos/dist"),
            json_limit_bytes: 256 * 1024,
            workers: None,
            trust_proxy_headers: false,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new(
                "postgres://konstruct_app:konstruct_app@127.0.0.1:5432/konstruct".into(),
            ),
            owner_url: Secret::new(
                "postgres://konstruct_owner:konstruct_owner@127.0.0.1:5432/konstruct".into(),
            ),
            admin_url: Secret::new("postgres://postgres@127.0.0.1:5432/postgres".into()),
            max_connections: 16,
            acquire_timeout_ms: 3_000,
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("redis://127.0.0.1:6379".into()),
            key_prefix: "konstruct".into(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

/// Why the settings could not be loaded. Messages name the variable or file, never a value
/// (values may be secrets).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is invalid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("environment variable {var} is invalid: {reason}")]
    InvalidEnv { var: &'static str, reason: String },
}

/// Something worth telling the operator that does not stop the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A `KONSTRUCT_` variable that no setting reads (probably a typo).
    UnknownVariable { name: String },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownVariable { name } => write!(
                f,
                "environment variable {name} is not a known setting and is ignored (known: {})",
                known_variables().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

type Apply = fn(&mut Settings, &str) -> Result<(), String>;

/// Every environment variable, with how it changes the settings. This table is the single list
/// of variables: the loader applies it and the unknown-variable check reads it.
const ENV_VARS: &[(&str, Apply)] = &[
    ("KONSTRUCT_HOST", |s, v| {
        s.server.host = v.parse().map_err(|_| "not an IP address".to_string())?;
        Ok(())
    }),
    ("KONSTRUCT_PORT", |s, v| {
        s.server.port = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_PORTAL_DIR", |s, v| {
        s.server.portal_dir = PathBuf::from(v);
        Ok(())
    }),
    ("KONSTRUCT_JSON_LIMIT_BYTES", |s, v| {
        s.server.json_limit_bytes = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_WORKERS", |s, v| {
        let workers: usize = parse_number(v)?;
        if workers == 0 {
            return Err("must be at least 1".into());
        }
        s.server.workers = Some(workers);
        Ok(())
    }),
    ("KONSTRUCT_TRUST_PROXY_HEADERS", |s, v| {
        s.server.trust_proxy_headers = match v {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err("expected true or false".into()),
        };
        Ok(())
    }),
    ("KONSTRUCT_DATABASE_URL", |s, v| {
        s.database.url = Secret::new(non_empty(v)?);
        Ok(())
    }),
    ("KONSTRUCT_DATABASE_OWNER_URL", |s, v| {
        s.database.owner_url = Secret::new(non_empty(v)?);
        Ok(())
    }),
    ("KONSTRUCT_DATABASE_ADMIN_URL", |s, v| {
        s.database.admin_url = Secret::new(non_empty(v)?);
        Ok(())
    }),
    ("KONSTRUCT_DATABASE_MAX_CONNECTIONS", |s, v| {
        s.database.max_connections = parse_number(v)?;
        if s.database.max_connections == 0 {
            return Err("must be at least 1".into());
        }
        Ok(())
    }),
    ("KONSTRUCT_DATABASE_ACQUIRE_TIMEOUT_MS", |s, v| {
        s.database.acquire_timeout_ms = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_REDIS_URL", |s, v| {
        s.redis.url = Secret::new(non_empty(v)?);
        Ok(())
    }),
    ("KONSTRUCT_JWT_SECRET", |s, v| {
        if v.len() < 32 {
            return Err("must be at least 32 characters".into());
        }
        s.auth.jwt_secret = Some(Secret::new(v.to_string()));
        Ok(())
    }),
    ("KONSTRUCT_TOKEN_MINUTES", |s, v| {
        s.auth.token_minutes = parse_number(v)?;
        if s.auth.token_minutes == 0 {
            return Err("must be at least 1".into());
        }
        Ok(())
    }),
    ("KONSTRUCT_SESSION_MAX_HOURS", |s, v| {
        s.auth.session_max_hours = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_COOKIE_SECURE", |s, v| {
        s.auth.cookie_secure = Some(match v {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err("expected true or false".into()),
        });
        Ok(())
    }),
    ("KONSTRUCT_ADMIN_EMAIL", |s, v| {
        s.auth.admin_email = Some(non_empty(v)?);
        Ok(())
    }),
    ("KONSTRUCT_ADMIN_PASSWORD", |s, v| {
        s.auth.admin_password = Some(Secret::new(non_empty(v)?));
        Ok(())
    }),
    ("KONSTRUCT_LOGIN_FAILURES_PER_ACCOUNT", |s, v| {
        s.auth.login_failures_per_account = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_LOGIN_FAILURES_PER_ADDRESS", |s, v| {
        s.auth.login_failures_per_address = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_LOGIN_WINDOW_SECS", |s, v| {
        s.auth.login_window_secs = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_REDIS_KEY_PREFIX", |s, v| {
        s.redis.key_prefix = non_empty(v)?;
        Ok(())
    }),
    ("KONSTRUCT_ANTHROPIC_API_KEY", |s, v| {
        s.llm.anthropic_api_key = Some(Secret::new(non_empty(v)?));
        Ok(())
    }),
    ("KONSTRUCT_ANTHROPIC_BASE_URL", |s, v| {
        s.llm.anthropic_base_url = non_empty(v)?;
        Ok(())
    }),
    ("KONSTRUCT_ANTHROPIC_MODEL", |s, v| {
        s.llm.anthropic_model = non_empty(v)?;
        Ok(())
    }),
    ("KONSTRUCT_OPENAI_API_KEY", |s, v| {
        s.llm.openai_api_key = Some(Secret::new(non_empty(v)?));
        Ok(())
    }),
    ("KONSTRUCT_OPENAI_BASE_URL", |s, v| {
        s.llm.openai_base_url = non_empty(v)?;
        Ok(())
    }),
    ("KONSTRUCT_OPENAI_MODEL", |s, v| {
        s.llm.openai_model = non_empty(v)?;
        Ok(())
    }),
    ("KONSTRUCT_OLLAMA_URL", |s, v| {
        s.llm.ollama_url = Some(non_empty(v)?);
        Ok(())
    }),
    ("KONSTRUCT_OLLAMA_MODEL", |s, v| {
        s.llm.ollama_model = non_empty(v)?;
        Ok(())
    }),
    ("KONSTRUCT_RATE_PER_MINUTE", |s, v| {
        s.engine.rate_per_minute = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_RATE_BURST", |s, v| {
        s.engine.rate_burst = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_CONNECTION_RATE_PER_MINUTE", |s, v| {
        s.engine.connection_rate_per_minute = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_CONNECTION_RATE_BURST", |s, v| {
        s.engine.connection_rate_burst = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_CONVERSATION_IDLE_SECS", |s, v| {
        s.engine.conversation_idle_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_PARTITION_LEASE_SECS", |s, v| {
        let secs: u64 = positive(v)?.into();
        if secs < 3 {
            return Err("must be at least 3".into());
        }
        s.engine.partition_lease_secs = secs;
        Ok(())
    }),
    ("KONSTRUCT_RETRY_HORIZON_SECS", |s, v| {
        s.engine.retry_horizon_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_RETRY_MAX_DELAY_SECS", |s, v| {
        s.engine.retry_max_delay_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_CONVERSATION_STATE_TTL_SECS", |s, v| {
        s.engine.conversation_state_ttl_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_DEDUPE_TTL_SECS", |s, v| {
        s.engine.dedupe_ttl_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_DEAD_LETTER_TTL_SECS", |s, v| {
        s.engine.dead_letter_ttl_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_ENGINE_MAX_IN_FLIGHT", |s, v| {
        s.engine.max_in_flight = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_CHAT_PER_USER_PER_MINUTE", |s, v| {
        s.engine.chat_per_user_per_minute = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_CHAT_PER_TENANT_PER_MINUTE", |s, v| {
        s.engine.chat_per_tenant_per_minute = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_JOBS_CONCURRENCY", |s, v| {
        s.jobs.concurrency = positive(v)?;
        Ok(())
    }),
    ("KONSTRUCT_JOBS_LEASE_SECS", |s, v| {
        let secs: u64 = positive(v)?.into();
        if secs < 3 {
            return Err("must be at least 3".into());
        }
        s.jobs.lease_secs = secs;
        Ok(())
    }),
    ("KONSTRUCT_JOBS_POLL_SECS", |s, v| {
        s.jobs.poll_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_JOBS_RETRY_BASE_SECS", |s, v| {
        s.jobs.retry_base_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_JOBS_RETRY_MAX_SECS", |s, v| {
        s.jobs.retry_max_secs = positive(v)?.into();
        Ok(())
    }),
    ("KONSTRUCT_SLACK_SIGNING_SECRET", |s, v| {
        s.slack.signing_secret = Some(Secret::new(non_empty(v)?));
        Ok(())
    }),
    ("KONSTRUCT_SLACK_CLIENT_ID", |s, v| {
        s.slack.client_id = Some(non_empty(v)?);
        Ok(())
    }),
    ("KONSTRUCT_SLACK_CLIENT_SECRET", |s, v| {
        s.slack.client_secret = Some(Secret::new(non_empty(v)?));
        Ok(())
    }),
    ("KONSTRUCT_SLACK_API_URL", |s, v| {
        let url = non_empty(v)?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("must be an http(s) URL".into());
        }
        s.slack.api_base_url = url.trim_end_matches('/').to_string();
        Ok(())
    }),
    ("KONSTRUCT_LLM_TIMEOUT_SECS", |s, v| {
        s.llm.timeout_secs = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_LLM_MAX_RETRIES", |s, v| {
        s.llm.max_retries = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_LLM_COOLDOWN_SECS", |s, v| {
        s.llm.cooldown_secs = parse_number(v)?;
        Ok(())
    }),
    ("KONSTRUCT_ENCRYPTION_KEYS", |s, v| {
        let keys = Secret::new(non_empty(v)?);
        crate::crypto::Keyring::parse(Some(&keys)).map_err(|e| e.to_string())?;
        s.secrets.encryption_keys = Some(keys);
        Ok(())
    }),
    ("KONSTRUCT_LOG", |s, v| {
        s.log.filter = non_empty(v)?;
        Ok(())
    }),
    ("KONSTRUCT_LOG_FORMAT", |s, v| {
        s.log.format = match v {
            "auto" => LogFormat::Auto,
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => return Err("expected auto, pretty or json".into()),
        };
        Ok(())
    }),
];

/// Variables read outside the settings struct, so not unknown.
const OTHER_KNOWN_VARS: &[&str] = &[CONFIG_FILE_VAR, FAILPOINT_VAR];

/// Names the failpoint a debug (test) build stops at (see `failpoint`); release builds ignore it.
pub const FAILPOINT_VAR: &str = "KONSTRUCT_FAILPOINT";

fn parse_number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| "not a valid number in range".to_string())
}

fn positive(v: &str) -> Result<u32, String> {
    match parse_number::<u32>(v)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(v.to_string())
    }
}

/// The names of every variable the runtime reads.
pub fn known_variables() -> impl Iterator<Item = &'static str> {
    ENV_VARS
        .iter()
        .map(|(name, _)| *name)
        .chain(OTHER_KNOWN_VARS.iter().copied())
}

impl Settings {
    /// Loads the settings: defaults, then `file` (if given), then the `KONSTRUCT_` variables in
    /// `env`. Returns the settings and the warnings to log once logging is up.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
        let mut settings = match file {
            Some(path) => Self::from_file(path)?,
            None => Settings::default(),
        };
        let mut warnings = Vec::new();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        // Apply in a stable order so errors and warnings do not depend on the environment's order.
        env.sort();
        for (name, value) in env {
            match ENV_VARS.iter().find(|(known, _)| *known == name) {
                Some((var, apply)) => apply(&mut settings, &value)
                    .map_err(|reason| ConfigError::InvalidEnv { var, reason })?,
                None if OTHER_KNOWN_VARS.contains(&name.as_str()) => {}
                None => warnings.push(ConfigWarning::UnknownVariable { name }),
            }
        }
        Ok((settings, warnings))
    }

    /// Loads from the process environment, reading the file named by `KONSTRUCT_CONFIG` (or
    /// `file_override`, from the command line) if any.
    pub fn from_process_env(
        file_override: Option<&Path>,
    ) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = file_override.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(k, _)| k == CONFIG_FILE_VAR)
                .map(|(_, v)| PathBuf::from(v))
        });
        Self::load(file.as_deref(), env)
    }

    fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_use_local_services_on_standard_ports() {
        let (s, warnings) = Settings::load(None, env(&[])).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.server.host.to_string(), "127.0.0.1");
        assert!(s.database.url.expose().contains("127.0.0.1:5432"));
        assert_eq!(s.redis.url.expose(), "redis://127.0.0.1:6379");
    }

    #[test]
    fn environment_overrides_defaults_and_file() {
        let dir = std::env::temp_dir().join(format!("konstruct-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("konstruct.toml");
        std::fs::write(
            &file,
            "[server]\nport = 9000\nhost = \"0.0.0.0\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let (s, warnings) = Settings::load(
            Some(&file),
            env(&[
                ("KONSTRUCT_PORT", "9100"),
                ("KONSTRUCT_REDIS_URL", "redis://cache:6380"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert!(warnings.is_empty());
        // The environment beats the file, the file beats the defaults.
        assert_eq!(s.server.port, 9100);
        assert_eq!(s.server.host.to_string(), "0.0.0.0");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.redis.url.expose(), "redis://cache:6380");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_konstruct_variables_are_warned_about_and_others_ignored() {
        let (_, warnings) = Settings::load(
            None,
            env(&[
                ("KONSTRUCT_DATABSE_URL", "postgres://typo"),
                ("KONSTRUCT_CONFIG", "/dev/null"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec![ConfigWarning::UnknownVariable {
                name: "KONSTRUCT_DATABSE_URL".into()
            }]
        );
        let text = warnings[0].to_string();
        assert!(text.contains("KONSTRUCT_DATABSE_URL"));
        assert!(
            text.contains("KONSTRUCT_DATABASE_URL"),
            "lists the known names: {text}"
        );
        assert!(!text.contains("postgres://typo"), "never echoes values");
    }

    #[test]
    fn invalid_values_name_the_variable_but_not_the_value() {
        let err = Settings::load(None, env(&[("KONSTRUCT_PORT", "eighty")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("KONSTRUCT_PORT"), "{text}");
        assert!(!text.contains("eighty"), "{text}");
        let err = Settings::load(None, env(&[("KONSTRUCT_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().contains("KONSTRUCT_LOG_FORMAT"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = std::env::temp_dir().join(format!("konstruct-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("konstruct.toml");
        std::fs::write(&file, "[server]\nprot = 1\n").unwrap();
        let err = Settings::load(Some(&file), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::ParseFile { .. }), "{err}");
        assert!(err.to_string().contains("prot"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_chat_limits_default_to_20_per_user_and_120_per_tenant_and_must_be_positive() {
        let (s, _) = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.engine.chat_per_user_per_minute, 20);
        assert_eq!(s.engine.chat_per_tenant_per_minute, 120);
        let (s, warnings) = Settings::load(
            None,
            env(&[
                ("KONSTRUCT_CHAT_PER_USER_PER_MINUTE", "5"),
                ("KONSTRUCT_CHAT_PER_TENANT_PER_MINUTE", "50"),
            ]),
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(s.engine.chat_per_user_per_minute, 5);
        assert_eq!(s.engine.chat_per_tenant_per_minute, 50);
        let err =
            Settings::load(None, env(&[("KONSTRUCT_CHAT_PER_USER_PER_MINUTE", "0")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("KONSTRUCT_CHAT_PER_USER_PER_MINUTE")
        );
    }

    #[test]
    fn job_runner_settings_default_to_4_jobs_a_60_s_lease_and_2_s_to_10_min_retries() {
        let (s, _) = Settings::load(None, env(&[])).unwrap();
        assert_eq!(
            (s.jobs.concurrency, s.jobs.lease_secs, s.jobs.poll_secs),
            (4, 60, 5)
        );
        assert_eq!((s.jobs.retry_base_secs, s.jobs.retry_max_secs), (2, 600));
        let (s, warnings) = Settings::load(
            None,
            env(&[
                ("KONSTRUCT_JOBS_CONCURRENCY", "8"),
                ("KONSTRUCT_JOBS_LEASE_SECS", "30"),
            ]),
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!((s.jobs.concurrency, s.jobs.lease_secs), (8, 30));
        for (var, value) in [
            ("KONSTRUCT_JOBS_CONCURRENCY", "0"),
            ("KONSTRUCT_JOBS_LEASE_SECS", "2"),
        ] {
            let err = Settings::load(None, env(&[(var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let (s, _) = Settings::load(
            None,
            env(&[(
                "KONSTRUCT_DATABASE_URL",
                "postgres://app:hunter2@db/konstruct",
            )]),
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redacted"));
    }
}
