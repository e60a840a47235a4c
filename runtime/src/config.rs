//! Typed settings: defaults, then an optional TOML file, then `KONSTRUCT_…` environment variables.
//!
//! Loading is a pure function of the file text and the environment it is handed, so tests never
//! touch the process environment. Each source is only *parsed* into the settings; the rules a
//! value must satisfy live once, in the table of settings, and are checked on the final result
//! whatever its source, so a file cannot set what the environment may not. Secrets are wrapped
//! in [`Secret`], whose `Debug` never prints the value. Environment variables that start with
//! `KONSTRUCT_` but are not known are reported as warnings (a typo such as
//! `KONSTRUCT_DATABSE_URL` would otherwise be silently ignored).

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
    pub whatsapp: WhatsappSettings,
    pub outbound: OutboundSettings,
    pub jobs: JobsSettings,
    pub knowledge: KnowledgeSettings,
    pub mail: MailSettings,
    pub people: PeopleSettings,
}

/// The mail sender (`mail`): invitations, password resets and, later, alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// `smtp://[user:pass@]host[:port][?tls=required|opportunistic]` or `smtps://…`; without it
    /// no mail is sent (mail jobs wait, visibly, until a server is configured).
    pub smtp_url: Option<Secret<String>>,
    /// The address mail comes from; the tenant's name is shown as the sender's name.
    pub from: String,
    /// A PEM certificate authority to trust for the mail server, besides the web's roots.
    pub smtp_ca_file: Option<PathBuf>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Konstruct <no-reply@konstruct.localhost>".into(),
            smtp_ca_file: None,
        }
    }
}

/// Invitations and password resets (`people`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeopleSettings {
    /// How long an invitation's link works.
    pub invitation_days: u32,
    /// Invitation mails (new and resent) one tenant may send per hour.
    pub invitations_per_hour: u32,
    /// How long a password-reset link works.
    pub reset_minutes: u32,
    /// Reset requests per hour from one address block, and for one email address.
    pub resets_per_address_per_hour: u32,
    pub resets_per_account_per_hour: u32,
}

impl Default for PeopleSettings {
    fn default() -> Self {
        Self {
            invitation_days: 7,
            invitations_per_hour: 30,
            reset_minutes: 60,
            resets_per_address_per_hour: 20,
            resets_per_account_per_hour: 3,
        }
    }
}

/// The knowledge base, long-term memory and the vector index behind both (`knowledge`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeSettings {
    /// Where originals and the embedded vector engine's data live.
    pub data_dir: std::path::PathBuf,
    /// A Qdrant server (`http://host:6334`, its gRPC port) shared by every node; without it
    /// each node keeps an embedded index under `data_dir`, rebuilt from Postgres.
    pub qdrant_url: Option<String>,
    pub qdrant_api_key: Option<Secret<String>>,
    /// The embedding model of tenants that chose none: `local` (shipped inside the binary),
    /// `openai:<model>` (with `llm.openai_*`) or `ollama:<model>` (with `llm.ollama_url`).
    pub embedding_model: String,
    /// The largest upload or imported document, in bytes.
    pub max_document_bytes: u64,
    /// Passages below this cosine similarity to the message are not used.
    pub relevance_floor: f32,
    /// Passages put into a turn's prompt, at most.
    pub passages: u32,
    /// Memories of the customer put into a turn's prompt, at most.
    pub memories: u32,
    /// How long after an answer the conversation's messages since its last summary are
    /// summarised into memories of the customer (later answers ride on the same summary).
    pub memory_delay_secs: u64,
}

impl Default for KnowledgeSettings {
    fn default() -> Self {
        Self {
            data_dir: "data".into(),
            qdrant_url: None,
            qdrant_api_key: None,
            embedding_model: crate::embed::LOCAL.into(),
            max_document_bytes: 20 * 1024 * 1024,
            relevance_floor: 0.3,
            passages: 4,
            memories: 5,
            memory_delay_secs: 600,
        }
    }
}

/// The one HTTP client for URLs that users, tenants or providers supply (see `outbound`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Hosts (`host` or `host:port`, a DNS name or an IP literal) that may resolve to
    /// non-public addresses: for tests and self-hosters' own services. Everyone else reaches
    /// public addresses only.
    pub allow: Vec<String>,
    /// The longest a whole request may take, redirects and body included; a call may ask for
    /// less, never more.
    pub timeout_secs: u64,
    /// The longest one connection attempt (and one DNS lookup) may take.
    pub connect_timeout_secs: u64,
    /// The largest response body read; a call may ask for another cap.
    pub max_bytes: u64,
    /// The largest request body sent.
    pub max_request_bytes: u64,
    /// Redirects followed, at most; each hop is checked like the first.
    pub max_redirects: u32,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            timeout_secs: 10,
            connect_timeout_secs: 5,
            max_bytes: 10 * 1024 * 1024,
            max_request_bytes: 10 * 1024 * 1024,
            max_redirects: 5,
        }
    }
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
    /// The platform's own Slack app (`A…`): events for any other app are refused, and an
    /// installation is registered only with a bot of this app. Without it Slack events answer 503.
    pub app_id: Option<String>,
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
            app_id: None,
            client_id: None,
            client_secret: None,
            api_base_url: "https://slack.com/api".into(),
        }
    }
}

/// The platform's Meta app for the WhatsApp Business Cloud API (tenants may bring their own app
/// per connection instead).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsappSettings {
    /// The platform app's secret: it signs the webhooks Meta sends to `/webhooks/whatsapp`.
    /// Without it that endpoint answers 503.
    pub app_secret: Option<Secret<String>>,
    /// What Meta's webhook verification must present (`hub.verify_token`), as entered in the
    /// app's dashboard.
    pub verify_token: Option<Secret<String>>,
    /// The Graph API base, e.g. `https://graph.facebook.com` (tests point it at a fake).
    pub graph_url: String,
    /// The Graph API version in every path.
    pub graph_version: String,
    /// Messages per second one business number sends at most (Meta's default throughput is 80).
    pub messages_per_second: u32,
}

impl Default for WhatsappSettings {
    fn default() -> Self {
        Self {
            app_secret: None,
            verify_token: None,
            graph_url: "https://graph.facebook.com".into(),
            graph_version: "v21.0".into(),
            messages_per_second: 80,
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
    /// LLM steps (rounds of tool calls) one turn may take, at most: an agent's own limit is
    /// never above it, and agents without one get it.
    pub tool_steps: u32,
    /// How long one turn may take, tools included, at most (an agent may set less); also how
    /// long a turn can hold its stream entry.
    pub turn_deadline_secs: u64,
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
            tool_steps: 6,
            turn_deadline_secs: 60,
        }
    }
}

/// Keys that seal tenants' secrets at rest and the audit trail (see `crypto`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSettings {
    /// `1:<64 hex chars>[,2:<64 hex chars>…]`; the highest version seals new secrets.
    pub encryption_keys: Option<Secret<String>>,
    /// The HMAC keys that seal each tenant's audit chain, same format; the highest version
    /// seals, every configured one still verifies. Without one nothing is sealed.
    pub audit_keys: Option<Secret<String>>,
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
    /// Requests this node keeps open to one deployment at most; a call finding it full waits
    /// for room (up to the deployment's timeout) and otherwise moves on to the next one, so a
    /// provider that hangs holds at most this many connections.
    pub max_in_flight: u32,
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
            max_in_flight: 256,
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
    /// Failed sign-ins allowed in one window: per account from one client address (so one
    /// address can lock only itself out), per client address (IPv6: per /64) across accounts,
    /// and per account across all addresses (a slow, distributed guess).
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_failures_per_account_total: u32,
    pub login_window_secs: u64,
    /// Password hashes computed at once (each takes 19 MiB and a core for a moment); further
    /// sign-ins wait briefly, then get 503.
    pub password_hash_concurrency: u32,
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
            login_failures_per_account_total: 100,
            login_window_secs: 900,
            password_hash_concurrency: std::thread::available_parallelism()
                .map_or(2, |n| u32::try_from(n.get()).unwrap_or(2)),
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
    /// Further proxies between the client and us (CIDR networks), skipped when reading
    /// `X-Forwarded-For` from the right; the right-most hop outside them is the client.
    pub trusted_proxies: Vec<String>,
    /// Where people and providers reach this server, e.g. `https://konstruct.example.com`:
    /// every link the product writes starts with it. Unset: `http://{host}:{port}` (a laptop).
    pub public_url: Option<String>,
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
            trusted_proxies: Vec::new(),
            public_url: None,
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

/// Why the settings could not be loaded. Messages name the setting (its variable and its file
/// key) or the file, never a value (values may be secrets).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is invalid: {message}")]
    ParseFile { path: PathBuf, message: String },
    /// A variable's text is not of the setting's type (not a number, not an address, …).
    #[error("environment variable {var} ({key}) is invalid: {reason}")]
    InvalidEnv {
        var: &'static str,
        key: &'static str,
        reason: String,
    },
    /// The final value breaks the setting's rule, whichever source set it.
    #[error("{var} / {key} {reason}")]
    Invalid {
        var: &'static str,
        key: &'static str,
        reason: String,
    },
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

/// Parses a variable's text into its setting. Only the type is checked here; the setting's
/// rule is checked later on the final settings, the same for every source.
type Parse = fn(&mut Settings, &str) -> Result<(), String>;

/// The rule a setting's final value must satisfy; the error completes "VAR / key …".
type Rule = fn(&Settings) -> Result<(), String>;

/// One setting: its environment variable, its key in the file, how the variable is parsed, and
/// its rule (if any).
struct Setting {
    var: &'static str,
    key: &'static str,
    parse: Parse,
    rule: Option<Rule>,
}

/// Every setting. This table is the single list of variables: the loader parses with it, the
/// validation checks its rules, and the unknown-variable check reads it.
const SETTINGS: &[Setting] = &[
    Setting {
        var: "KONSTRUCT_HOST",
        key: "server.host",
        parse: |s, v| {
            s.server.host = v.trim().parse().map_err(|_| "not an IP address")?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_PORT",
        key: "server.port",
        parse: |s, v| {
            s.server.port = number(v)?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_PORTAL_DIR",
        key: "server.portal_dir",
        parse: |s, v| {
            s.server.portal_dir = PathBuf::from(v);
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_JSON_LIMIT_BYTES",
        key: "server.json_limit_bytes",
        parse: |s, v| {
            s.server.json_limit_bytes = number(v)?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_WORKERS",
        key: "server.workers",
        parse: |s, v| {
            s.server.workers = Some(number(v)?);
            Ok(())
        },
        rule: Some(|s| match s.server.workers {
            Some(workers) => at_least(workers, 1),
            None => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_TRUST_PROXY_HEADERS",
        key: "server.trust_proxy_headers",
        parse: |s, v| {
            s.server.trust_proxy_headers = boolean(v)?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_TRUSTED_PROXIES",
        key: "server.trusted_proxies",
        parse: |s, v| {
            s.server.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            Ok(())
        },
        rule: Some(|s| {
            for net in &s.server.trusted_proxies {
                net.parse::<crate::net::IpNet>()
                    .map_err(|e| format!("has an entry that is {e}"))?;
            }
            Ok(())
        }),
    },
    Setting {
        var: "KONSTRUCT_PUBLIC_URL",
        key: "server.public_url",
        parse: |s, v| {
            s.server.public_url = Some(v.to_string());
            Ok(())
        },
        rule: Some(|s| match &s.server.public_url {
            Some(url) => crate::links::PublicUrl::parse(url)
                .map(|_| ())
                .map_err(str::to_string),
            None => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_DATABASE_URL",
        key: "database.url",
        parse: |s, v| {
            s.database.url = Secret::new(v.to_string());
            Ok(())
        },
        rule: Some(|s| filled(s.database.url.expose())),
    },
    Setting {
        var: "KONSTRUCT_DATABASE_OWNER_URL",
        key: "database.owner_url",
        parse: |s, v| {
            s.database.owner_url = Secret::new(v.to_string());
            Ok(())
        },
        rule: Some(|s| filled(s.database.owner_url.expose())),
    },
    Setting {
        var: "KONSTRUCT_DATABASE_ADMIN_URL",
        key: "database.admin_url",
        parse: |s, v| {
            s.database.admin_url = Secret::new(v.to_string());
            Ok(())
        },
        rule: Some(|s| filled(s.database.admin_url.expose())),
    },
    Setting {
        var: "KONSTRUCT_DATABASE_MAX_CONNECTIONS",
        key: "database.max_connections",
        parse: |s, v| {
            s.database.max_connections = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.database.max_connections, 1)),
    },
    Setting {
        var: "KONSTRUCT_DATABASE_ACQUIRE_TIMEOUT_MS",
        key: "database.acquire_timeout_ms",
        parse: |s, v| {
            s.database.acquire_timeout_ms = number(v)?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_REDIS_URL",
        key: "redis.url",
        parse: |s, v| {
            s.redis.url = Secret::new(v.to_string());
            Ok(())
        },
        rule: Some(|s| filled(s.redis.url.expose())),
    },
    Setting {
        var: "KONSTRUCT_REDIS_KEY_PREFIX",
        key: "redis.key_prefix",
        parse: |s, v| {
            s.redis.key_prefix = v.to_string();
            Ok(())
        },
        rule: Some(|s| filled(&s.redis.key_prefix)),
    },
    Setting {
        var: "KONSTRUCT_JWT_SECRET",
        key: "auth.jwt_secret",
        parse: |s, v| {
            s.auth.jwt_secret = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| match &s.auth.jwt_secret {
            Some(secret) if secret.expose().len() < 32 => {
                Err("must be at least 32 characters".into())
            }
            _ => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_TOKEN_MINUTES",
        key: "auth.token_minutes",
        parse: |s, v| {
            s.auth.token_minutes = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.auth.token_minutes, 1)),
    },
    Setting {
        var: "KONSTRUCT_SESSION_MAX_HOURS",
        key: "auth.session_max_hours",
        parse: |s, v| {
            s.auth.session_max_hours = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.auth.session_max_hours, 1)),
    },
    Setting {
        var: "KONSTRUCT_COOKIE_SECURE",
        key: "auth.cookie_secure",
        parse: |s, v| {
            s.auth.cookie_secure = Some(boolean(v)?);
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_ADMIN_EMAIL",
        key: "auth.admin_email",
        parse: |s, v| {
            s.auth.admin_email = Some(v.to_string());
            Ok(())
        },
        rule: Some(|s| filled_if_set(s.auth.admin_email.as_deref())),
    },
    Setting {
        var: "KONSTRUCT_ADMIN_PASSWORD",
        key: "auth.admin_password",
        parse: |s, v| {
            s.auth.admin_password = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| filled_if_set(exposed(&s.auth.admin_password))),
    },
    Setting {
        var: "KONSTRUCT_LOGIN_FAILURES_PER_ACCOUNT",
        key: "auth.login_failures_per_account",
        parse: |s, v| {
            s.auth.login_failures_per_account = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.auth.login_failures_per_account, 1)),
    },
    Setting {
        var: "KONSTRUCT_LOGIN_FAILURES_PER_ADDRESS",
        key: "auth.login_failures_per_address",
        parse: |s, v| {
            s.auth.login_failures_per_address = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.auth.login_failures_per_address, 1)),
    },
    Setting {
        var: "KONSTRUCT_LOGIN_FAILURES_PER_ACCOUNT_TOTAL",
        key: "auth.login_failures_per_account_total",
        parse: |s, v| {
            s.auth.login_failures_per_account_total = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.auth.login_failures_per_account_total, 1)),
    },
    Setting {
        var: "KONSTRUCT_PASSWORD_HASH_CONCURRENCY",
        key: "auth.password_hash_concurrency",
        parse: |s, v| {
            s.auth.password_hash_concurrency = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.auth.password_hash_concurrency, 1)),
    },
    Setting {
        var: "KONSTRUCT_LOGIN_WINDOW_SECS",
        key: "auth.login_window_secs",
        parse: |s, v| {
            s.auth.login_window_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.auth.login_window_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_ANTHROPIC_API_KEY",
        key: "llm.anthropic_api_key",
        parse: |s, v| {
            s.llm.anthropic_api_key = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| filled_if_set(exposed(&s.llm.anthropic_api_key))),
    },
    Setting {
        var: "KONSTRUCT_ANTHROPIC_BASE_URL",
        key: "llm.anthropic_base_url",
        parse: |s, v| {
            s.llm.anthropic_base_url = v.to_string();
            Ok(())
        },
        rule: Some(|s| filled(&s.llm.anthropic_base_url)),
    },
    Setting {
        var: "KONSTRUCT_ANTHROPIC_MODEL",
        key: "llm.anthropic_model",
        parse: |s, v| {
            s.llm.anthropic_model = v.to_string();
            Ok(())
        },
        rule: Some(|s| filled(&s.llm.anthropic_model)),
    },
    Setting {
        var: "KONSTRUCT_OPENAI_API_KEY",
        key: "llm.openai_api_key",
        parse: |s, v| {
            s.llm.openai_api_key = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| filled_if_set(exposed(&s.llm.openai_api_key))),
    },
    Setting {
        var: "KONSTRUCT_OPENAI_BASE_URL",
        key: "llm.openai_base_url",
        parse: |s, v| {
            s.llm.openai_base_url = v.to_string();
            Ok(())
        },
        rule: Some(|s| filled(&s.llm.openai_base_url)),
    },
    Setting {
        var: "KONSTRUCT_OPENAI_MODEL",
        key: "llm.openai_model",
        parse: |s, v| {
            s.llm.openai_model = v.to_string();
            Ok(())
        },
        rule: Some(|s| filled(&s.llm.openai_model)),
    },
    Setting {
        var: "KONSTRUCT_OLLAMA_URL",
        key: "llm.ollama_url",
        parse: |s, v| {
            s.llm.ollama_url = Some(v.to_string());
            Ok(())
        },
        rule: Some(|s| filled_if_set(s.llm.ollama_url.as_deref())),
    },
    Setting {
        var: "KONSTRUCT_OLLAMA_MODEL",
        key: "llm.ollama_model",
        parse: |s, v| {
            s.llm.ollama_model = v.to_string();
            Ok(())
        },
        rule: Some(|s| filled(&s.llm.ollama_model)),
    },
    Setting {
        var: "KONSTRUCT_LLM_TIMEOUT_SECS",
        key: "llm.timeout_secs",
        parse: |s, v| {
            s.llm.timeout_secs = number(v)?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_LLM_MAX_RETRIES",
        key: "llm.max_retries",
        parse: |s, v| {
            s.llm.max_retries = number(v)?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_LLM_COOLDOWN_SECS",
        key: "llm.cooldown_secs",
        parse: |s, v| {
            s.llm.cooldown_secs = number(v)?;
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_LLM_MAX_IN_FLIGHT",
        key: "llm.max_in_flight",
        parse: |s, v| {
            s.llm.max_in_flight = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.llm.max_in_flight, 1)),
    },
    Setting {
        var: "KONSTRUCT_RATE_PER_MINUTE",
        key: "engine.rate_per_minute",
        parse: |s, v| {
            s.engine.rate_per_minute = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.rate_per_minute, 1)),
    },
    Setting {
        var: "KONSTRUCT_RATE_BURST",
        key: "engine.rate_burst",
        parse: |s, v| {
            s.engine.rate_burst = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.rate_burst, 1)),
    },
    Setting {
        var: "KONSTRUCT_CONNECTION_RATE_PER_MINUTE",
        key: "engine.connection_rate_per_minute",
        parse: |s, v| {
            s.engine.connection_rate_per_minute = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.connection_rate_per_minute, 1)),
    },
    Setting {
        var: "KONSTRUCT_CONNECTION_RATE_BURST",
        key: "engine.connection_rate_burst",
        parse: |s, v| {
            s.engine.connection_rate_burst = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.connection_rate_burst, 1)),
    },
    Setting {
        var: "KONSTRUCT_CONVERSATION_IDLE_SECS",
        key: "engine.conversation_idle_secs",
        parse: |s, v| {
            s.engine.conversation_idle_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.conversation_idle_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_PARTITION_LEASE_SECS",
        key: "engine.partition_lease_secs",
        parse: |s, v| {
            s.engine.partition_lease_secs = number(v)?;
            Ok(())
        },
        // Renewal runs every third of a lease; shorter leases lapse between two renewals.
        rule: Some(|s| at_least(s.engine.partition_lease_secs, 3)),
    },
    Setting {
        var: "KONSTRUCT_RETRY_HORIZON_SECS",
        key: "engine.retry_horizon_secs",
        parse: |s, v| {
            s.engine.retry_horizon_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.retry_horizon_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_RETRY_MAX_DELAY_SECS",
        key: "engine.retry_max_delay_secs",
        parse: |s, v| {
            s.engine.retry_max_delay_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.retry_max_delay_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_CONVERSATION_STATE_TTL_SECS",
        key: "engine.conversation_state_ttl_secs",
        parse: |s, v| {
            s.engine.conversation_state_ttl_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.conversation_state_ttl_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_DEDUPE_TTL_SECS",
        key: "engine.dedupe_ttl_secs",
        parse: |s, v| {
            s.engine.dedupe_ttl_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.dedupe_ttl_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_DEAD_LETTER_TTL_SECS",
        key: "engine.dead_letter_ttl_secs",
        parse: |s, v| {
            s.engine.dead_letter_ttl_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.dead_letter_ttl_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_ENGINE_MAX_IN_FLIGHT",
        key: "engine.max_in_flight",
        parse: |s, v| {
            s.engine.max_in_flight = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.max_in_flight, 1)),
    },
    Setting {
        var: "KONSTRUCT_CHAT_PER_USER_PER_MINUTE",
        key: "engine.chat_per_user_per_minute",
        parse: |s, v| {
            s.engine.chat_per_user_per_minute = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.chat_per_user_per_minute, 1)),
    },
    Setting {
        var: "KONSTRUCT_CHAT_PER_TENANT_PER_MINUTE",
        key: "engine.chat_per_tenant_per_minute",
        parse: |s, v| {
            s.engine.chat_per_tenant_per_minute = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.engine.chat_per_tenant_per_minute, 1)),
    },
    Setting {
        var: "KONSTRUCT_TOOL_STEPS",
        key: "engine.tool_steps",
        parse: |s, v| {
            s.engine.tool_steps = number(v)?;
            Ok(())
        },
        rule: Some(|s| {
            at_least(s.engine.tool_steps, 1)?;
            at_most(s.engine.tool_steps, 50)
        }),
    },
    Setting {
        var: "KONSTRUCT_TURN_DEADLINE_SECS",
        key: "engine.turn_deadline_secs",
        parse: |s, v| {
            s.engine.turn_deadline_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| {
            at_least(s.engine.turn_deadline_secs, 5)?;
            at_most(s.engine.turn_deadline_secs, 600)
        }),
    },
    Setting {
        var: "KONSTRUCT_JOBS_CONCURRENCY",
        key: "jobs.concurrency",
        parse: |s, v| {
            s.jobs.concurrency = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.jobs.concurrency, 1)),
    },
    Setting {
        var: "KONSTRUCT_JOBS_LEASE_SECS",
        key: "jobs.lease_secs",
        parse: |s, v| {
            s.jobs.lease_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.jobs.lease_secs, 3)),
    },
    Setting {
        var: "KONSTRUCT_JOBS_POLL_SECS",
        key: "jobs.poll_secs",
        parse: |s, v| {
            s.jobs.poll_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.jobs.poll_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_JOBS_RETRY_BASE_SECS",
        key: "jobs.retry_base_secs",
        parse: |s, v| {
            s.jobs.retry_base_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.jobs.retry_base_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_JOBS_RETRY_MAX_SECS",
        key: "jobs.retry_max_secs",
        parse: |s, v| {
            s.jobs.retry_max_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.jobs.retry_max_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_SLACK_SIGNING_SECRET",
        key: "slack.signing_secret",
        parse: |s, v| {
            s.slack.signing_secret = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| filled_if_set(exposed(&s.slack.signing_secret))),
    },
    Setting {
        var: "KONSTRUCT_SLACK_CLIENT_ID",
        key: "slack.client_id",
        parse: |s, v| {
            s.slack.client_id = Some(v.to_string());
            Ok(())
        },
        rule: Some(|s| filled_if_set(s.slack.client_id.as_deref())),
    },
    Setting {
        var: "KONSTRUCT_SLACK_CLIENT_SECRET",
        key: "slack.client_secret",
        parse: |s, v| {
            s.slack.client_secret = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| filled_if_set(exposed(&s.slack.client_secret))),
    },
    Setting {
        var: "KONSTRUCT_SLACK_APP_ID",
        key: "slack.app_id",
        parse: |s, v| {
            s.slack.app_id = Some(v.trim().to_string());
            Ok(())
        },
        rule: Some(|s| match &s.slack.app_id {
            Some(id)
                if !(id.len() >= 2
                    && id.starts_with('A')
                    && id
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())) =>
            {
                Err("must be a Slack app id, like A0123ABCD".into())
            }
            _ => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_SLACK_API_URL",
        key: "slack.api_base_url",
        parse: |s, v| {
            s.slack.api_base_url = v.to_string();
            Ok(())
        },
        rule: Some(|s| {
            let url = &s.slack.api_base_url;
            filled(url)?;
            if url.starts_with("https://") || url.starts_with("http://") {
                Ok(())
            } else {
                Err("must be an http(s) URL".into())
            }
        }),
    },
    Setting {
        var: "KONSTRUCT_WHATSAPP_APP_SECRET",
        key: "whatsapp.app_secret",
        parse: |s, v| {
            s.whatsapp.app_secret = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| filled_if_set(exposed(&s.whatsapp.app_secret))),
    },
    Setting {
        var: "KONSTRUCT_WHATSAPP_VERIFY_TOKEN",
        key: "whatsapp.verify_token",
        parse: |s, v| {
            s.whatsapp.verify_token = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| match exposed(&s.whatsapp.verify_token) {
            Some(t) if t.trim().chars().count() < 16 => Err(
                "must be at least 16 characters (it is all that guards the webhook's verification)"
                    .into(),
            ),
            _ => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_WHATSAPP_GRAPH_URL",
        key: "whatsapp.graph_url",
        parse: |s, v| {
            s.whatsapp.graph_url = v.trim().trim_end_matches('/').to_string();
            Ok(())
        },
        rule: Some(|s| {
            let url = &s.whatsapp.graph_url;
            filled(url)?;
            if url.starts_with("https://") || url.starts_with("http://") {
                Ok(())
            } else {
                Err("must be an http(s) URL".into())
            }
        }),
    },
    Setting {
        var: "KONSTRUCT_WHATSAPP_GRAPH_VERSION",
        key: "whatsapp.graph_version",
        parse: |s, v| {
            s.whatsapp.graph_version = v.trim().to_string();
            Ok(())
        },
        rule: Some(|s| {
            let v = &s.whatsapp.graph_version;
            let ok = v
                .strip_prefix('v')
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && a.chars().all(|c| c.is_ascii_digit())
                        && b.chars().all(|c| c.is_ascii_digit())
                });
            if ok {
                Ok(())
            } else {
                Err("must be a Graph API version, like v21.0".into())
            }
        }),
    },
    Setting {
        var: "KONSTRUCT_WHATSAPP_MESSAGES_PER_SECOND",
        key: "whatsapp.messages_per_second",
        parse: |s, v| {
            s.whatsapp.messages_per_second = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.whatsapp.messages_per_second, 1)),
    },
    Setting {
        var: "KONSTRUCT_AUDIT_KEYS",
        key: "secrets.audit_keys",
        parse: |s, v| {
            s.secrets.audit_keys = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| match &s.secrets.audit_keys {
            Some(keys) => {
                filled(keys.expose())?;
                // The keys' messages name versions, never key material.
                crate::crypto::AuditKeys::parse(Some(keys))
                    .map(drop)
                    .map_err(|e| format!("is invalid: {e}"))
            }
            None => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_ENCRYPTION_KEYS",
        key: "secrets.encryption_keys",
        parse: |s, v| {
            s.secrets.encryption_keys = Some(Secret::new(v.to_string()));
            Ok(())
        },
        rule: Some(|s| match &s.secrets.encryption_keys {
            Some(keys) => {
                filled(keys.expose())?;
                // The keyring's messages name key versions, never key material.
                crate::crypto::Keyring::parse(Some(keys))
                    .map(drop)
                    .map_err(|e| format!("is invalid: {e}"))
            }
            None => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_LOG",
        key: "log.filter",
        parse: |s, v| {
            s.log.filter = v.to_string();
            Ok(())
        },
        rule: Some(|s| filled(&s.log.filter)),
    },
    Setting {
        var: "KONSTRUCT_LOG_FORMAT",
        key: "log.format",
        parse: |s, v| {
            s.log.format = match v.trim() {
                "auto" => LogFormat::Auto,
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => return Err("expected auto, pretty or json".into()),
            };
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_OUTBOUND_ALLOW",
        key: "outbound.allow",
        parse: |s, v| {
            // A comma list; blanks around entries and empty entries (a trailing comma) are
            // not hosts and are dropped.
            s.outbound.allow = v
                .split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(str::to_string)
                .collect();
            Ok(())
        },
        rule: Some(|s| {
            for (n, entry) in s.outbound.allow.iter().enumerate() {
                crate::outbound::AllowEntry::parse(entry)
                    .ok_or_else(|| format!("entry {} is not a host or host:port", n + 1))?;
            }
            Ok(())
        }),
    },
    Setting {
        var: "KONSTRUCT_OUTBOUND_TIMEOUT_SECS",
        key: "outbound.timeout_secs",
        parse: |s, v| {
            s.outbound.timeout_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.outbound.timeout_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_OUTBOUND_CONNECT_TIMEOUT_SECS",
        key: "outbound.connect_timeout_secs",
        parse: |s, v| {
            s.outbound.connect_timeout_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.outbound.connect_timeout_secs, 1)),
    },
    Setting {
        var: "KONSTRUCT_OUTBOUND_MAX_BYTES",
        key: "outbound.max_bytes",
        parse: |s, v| {
            s.outbound.max_bytes = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.outbound.max_bytes, 1)),
    },
    Setting {
        var: "KONSTRUCT_OUTBOUND_MAX_REQUEST_BYTES",
        key: "outbound.max_request_bytes",
        parse: |s, v| {
            s.outbound.max_request_bytes = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.outbound.max_request_bytes, 1)),
    },
    Setting {
        var: "KONSTRUCT_OUTBOUND_MAX_REDIRECTS",
        key: "outbound.max_redirects",
        parse: |s, v| {
            s.outbound.max_redirects = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_most(s.outbound.max_redirects, 20)),
    },
    Setting {
        var: "KONSTRUCT_DATA_DIR",
        key: "knowledge.data_dir",
        parse: |s, v| {
            s.knowledge.data_dir = v.into();
            Ok(())
        },
        rule: Some(|s| filled(&s.knowledge.data_dir.to_string_lossy())),
    },
    Setting {
        var: "KONSTRUCT_QDRANT_URL",
        key: "knowledge.qdrant_url",
        parse: |s, v| {
            s.knowledge.qdrant_url = Some(v.trim().to_string());
            Ok(())
        },
        rule: Some(|s| match s.knowledge.qdrant_url.as_deref() {
            None => Ok(()),
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(()),
            Some(_) => Err("must be an http:// or https:// URL".into()),
        }),
    },
    Setting {
        var: "KONSTRUCT_QDRANT_API_KEY",
        key: "knowledge.qdrant_api_key",
        parse: |s, v| {
            s.knowledge.qdrant_api_key = Some(Secret::new(v.trim().to_string()));
            Ok(())
        },
        rule: None,
    },
    Setting {
        var: "KONSTRUCT_EMBEDDING_MODEL",
        key: "knowledge.embedding_model",
        parse: |s, v| {
            s.knowledge.embedding_model = v.trim().to_string();
            Ok(())
        },
        rule: Some(|s| {
            crate::embed::ModelSpec::parse(&s.knowledge.embedding_model)
                .map(|_| ())
                .ok_or_else(|| "must be local, openai:<model> or ollama:<model>".to_string())
        }),
    },
    Setting {
        var: "KONSTRUCT_MAX_DOCUMENT_BYTES",
        key: "knowledge.max_document_bytes",
        parse: |s, v| {
            s.knowledge.max_document_bytes = number(v)?;
            Ok(())
        },
        rule: Some(|s| {
            at_least(s.knowledge.max_document_bytes, 1024)?;
            at_most(s.knowledge.max_document_bytes, 512 * 1024 * 1024)
        }),
    },
    Setting {
        var: "KONSTRUCT_RELEVANCE_FLOOR",
        key: "knowledge.relevance_floor",
        parse: |s, v| {
            s.knowledge.relevance_floor = number(v)?;
            Ok(())
        },
        rule: Some(|s| {
            at_least(s.knowledge.relevance_floor, -1.0)?;
            at_most(s.knowledge.relevance_floor, 1.0)
        }),
    },
    Setting {
        var: "KONSTRUCT_KNOWLEDGE_PASSAGES",
        key: "knowledge.passages",
        parse: |s, v| {
            s.knowledge.passages = number(v)?;
            Ok(())
        },
        rule: Some(|s| {
            at_least(s.knowledge.passages, 1)?;
            at_most(s.knowledge.passages, 20)
        }),
    },
    Setting {
        var: "KONSTRUCT_MEMORIES_RECALLED",
        key: "knowledge.memories",
        parse: |s, v| {
            s.knowledge.memories = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_most(s.knowledge.memories, 20)),
    },
    Setting {
        var: "KONSTRUCT_MEMORY_DELAY_SECS",
        key: "knowledge.memory_delay_secs",
        parse: |s, v| {
            s.knowledge.memory_delay_secs = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_most(s.knowledge.memory_delay_secs, 7 * 24 * 3600)),
    },
    Setting {
        var: "KONSTRUCT_SMTP_URL",
        key: "mail.smtp_url",
        parse: |s, v| {
            s.mail.smtp_url = Some(Secret::new(v.trim().to_string()));
            Ok(())
        },
        rule: Some(|s| match &s.mail.smtp_url {
            Some(url) => crate::mail::SmtpUrl::parse(url.expose()).map(|_| ()),
            None => Ok(()),
        }),
    },
    Setting {
        var: "KONSTRUCT_MAIL_FROM",
        key: "mail.from",
        parse: |s, v| {
            s.mail.from = v.trim().to_string();
            Ok(())
        },
        rule: Some(|s| {
            s.mail
                .from
                .parse::<lettre::message::Mailbox>()
                .map(|_| ())
                .map_err(|_| {
                    "must be a mail address such as Konstruct <no-reply@example.com>".into()
                })
        }),
    },
    Setting {
        var: "KONSTRUCT_SMTP_CA_FILE",
        key: "mail.smtp_ca_file",
        parse: |s, v| {
            s.mail.smtp_ca_file = Some(v.trim().into());
            Ok(())
        },
        rule: Some(|s| filled_if_set(s.mail.smtp_ca_file.as_deref().and_then(Path::to_str))),
    },
    Setting {
        var: "KONSTRUCT_INVITATION_DAYS",
        key: "people.invitation_days",
        parse: |s, v| {
            s.people.invitation_days = number(v)?;
            Ok(())
        },
        rule: Some(|s| {
            at_least(s.people.invitation_days, 1)?;
            at_most(s.people.invitation_days, 30)
        }),
    },
    Setting {
        var: "KONSTRUCT_INVITATIONS_PER_HOUR",
        key: "people.invitations_per_hour",
        parse: |s, v| {
            s.people.invitations_per_hour = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.people.invitations_per_hour, 1)),
    },
    Setting {
        var: "KONSTRUCT_PASSWORD_RESET_MINUTES",
        key: "people.reset_minutes",
        parse: |s, v| {
            s.people.reset_minutes = number(v)?;
            Ok(())
        },
        rule: Some(|s| {
            at_least(s.people.reset_minutes, 5)?;
            at_most(s.people.reset_minutes, 24 * 60)
        }),
    },
    Setting {
        var: "KONSTRUCT_PASSWORD_RESETS_PER_ADDRESS",
        key: "people.resets_per_address_per_hour",
        parse: |s, v| {
            s.people.resets_per_address_per_hour = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.people.resets_per_address_per_hour, 1)),
    },
    Setting {
        var: "KONSTRUCT_PASSWORD_RESETS_PER_ACCOUNT",
        key: "people.resets_per_account_per_hour",
        parse: |s, v| {
            s.people.resets_per_account_per_hour = number(v)?;
            Ok(())
        },
        rule: Some(|s| at_least(s.people.resets_per_account_per_hour, 1)),
    },
];

/// Variables read outside the settings struct, so not unknown.
const OTHER_KNOWN_VARS: &[&str] = &[CONFIG_FILE_VAR, FAILPOINT_VAR];

/// Names the failpoint a debug (test) build stops at (see `failpoint`); release builds ignore it.
pub const FAILPOINT_VAR: &str = "KONSTRUCT_FAILPOINT";

fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| "not a valid number in range".to_string())
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn at_least<T: PartialOrd + fmt::Display>(value: T, min: T) -> Result<(), String> {
    if value < min {
        Err(format!("must be at least {min}"))
    } else {
        Ok(())
    }
}

fn at_most<T: PartialOrd + fmt::Display>(value: T, max: T) -> Result<(), String> {
    if value > max {
        Err(format!("must be at most {max}"))
    } else {
        Ok(())
    }
}

fn filled(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

/// An optional setting may be absent, but not present and empty.
fn filled_if_set(v: Option<&str>) -> Result<(), String> {
    v.map_or(Ok(()), filled)
}

fn exposed(secret: &Option<Secret<String>>) -> Option<&str> {
    secret.as_ref().map(|s| s.expose().as_str())
}

/// The names of every variable the runtime reads.
pub fn known_variables() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .map(|setting| setting.var)
        .chain(OTHER_KNOWN_VARS.iter().copied())
}

impl Settings {
    /// Loads the settings: defaults, then `file` (if given), then the `KONSTRUCT_` variables in
    /// `env`; then checks every rule on the result. Returns the settings and the warnings to log
    /// once logging is up.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
        let file = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some((path, text))
            }
            None => None,
        };
        Self::load_text(file.as_ref().map(|(p, t)| (*p, t.as_str())), env)
    }

    /// [`Settings::load`] with the file's text already read.
    fn load_text(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
        let mut settings = match file {
            Some((path, text)) => toml::from_str(text).map_err(|e| ConfigError::ParseFile {
                path: path.to_path_buf(),
                message: describe_file_error(text, &e),
            })?,
            None => Settings::default(),
        };
        let warnings = settings.apply_env(env)?;
        settings.normalise();
        settings.validate()?;
        Ok((settings, warnings))
    }

    /// Parses the `KONSTRUCT_` variables into the settings; returns the unknown ones as
    /// warnings.
    fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut warnings = Vec::new();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        // Apply in a stable order so errors and warnings do not depend on the environment's order.
        env.sort();
        for (name, value) in env {
            match SETTINGS.iter().find(|setting| setting.var == name) {
                Some(setting) => {
                    (setting.parse)(self, &value).map_err(|reason| ConfigError::InvalidEnv {
                        var: setting.var,
                        key: setting.key,
                        reason,
                    })?
                }
                None if OTHER_KNOWN_VARS.contains(&name.as_str()) => {}
                None => warnings.push(ConfigWarning::UnknownVariable { name }),
            }
        }
        Ok(warnings)
    }

    /// Spellings that mean the same thing become one, whatever the source.
    fn normalise(&mut self) {
        // Paths are appended to the Slack base with a `/` of their own.
        let trimmed = self.slack.api_base_url.trim_end_matches('/').len();
        self.slack.api_base_url.truncate(trimmed);
    }

    /// Checks every setting's rule on these (final) settings; the first broken one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for setting in SETTINGS {
            if let Some(rule) = setting.rule {
                rule(self).map_err(|reason| ConfigError::Invalid {
                    var: setting.var,
                    key: setting.key,
                    reason,
                })?;
            }
        }
        Ok(())
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
}

/// What is wrong in the file, with the line and the key it is on, without the value there:
/// serde's messages quote the offending value ("invalid type: string \"…\""), and a value in a
/// configuration file may be a secret.
fn describe_file_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message();
    let message = ["invalid type: ", "invalid value: ", "unknown variant "]
        .iter()
        .find_map(|prefix| {
            let rest = message.strip_prefix(prefix)?;
            let (_, expected) = rest.split_once(", expected ")?;
            Some(format!(
                "{} (expected {expected})",
                prefix.trim_end_matches([':', ' '])
            ))
        })
        .unwrap_or_else(|| message.to_string());
    let Some(span) = error.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    match key_at(text, line) {
        Some(key) => format!("line {line} ({key}): {message}"),
        None => format!("line {line}: {message}"),
    }
}

/// The dotted key set on `line` (1-based) of a TOML text, if that line sets one.
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('[') {
            table = trimmed.trim_matches(['[', ']', ' ']).to_string();
        }
        if n + 1 == line {
            let (key, _) = trimmed.split_once('=')?;
            let key = key.trim().trim_matches('"');
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

#[cfg(test)]
mod tests;
