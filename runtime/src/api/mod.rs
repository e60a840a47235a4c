//! The HTTP surface: routes, shared state, middleware and the JSON error contract.
//!
//! Only this module knows HTTP status codes; everything below it returns typed errors.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod auth;
pub mod budgets;
pub mod channels;
pub mod chat;
pub mod conversations;
pub mod end_users;
pub mod error;
pub mod health;
pub mod invitations;
pub mod jobs;
pub mod knowledge;
pub mod limits;
pub mod llm_keys;
pub mod members;
pub mod openapi;
pub mod passwords;
pub mod platform;
pub mod portal;
pub mod request_id;
pub mod routes;
pub mod settings;
pub mod tenants;
pub mod tools;
pub mod usage;
pub mod validate;
pub mod webhooks;
pub mod whatsapp;

use std::net::TcpListener;

use actix_web::dev::{Server, ServiceRequest, fn_service};
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use shared::ErrorCode;

use serde::Deserialize;
use shared::resources::Page;

use crate::auth::TokenKeys;
use crate::config::{AuthSettings, ServerSettings};
use crate::redis::Redis;
use crate::store::{Store, TenantTx, audit as store_audit};

pub use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub redis: Redis,
    pub auth: AuthState,
    /// The platform's LLM pool (the message pipeline's turn uses it).
    pub llm: std::sync::Arc<crate::llm::pool::Pool>,
    /// Seals and opens tenants' secrets.
    pub keyring: std::sync::Arc<crate::crypto::Keyring>,
    /// Checks a tenant's provider key before it is stored.
    pub key_validator: crate::llm::KeyValidator,
    /// The durable queue inbound messages enter the pipeline through.
    pub ingest: crate::engine::ingest::Ingest,
    /// The platform's rate limits, shown where a tenant has none of its own.
    pub default_limits: limits::DefaultLimits,
    /// How many test-chat messages a user, and a tenant, may send per minute.
    pub chat_limits: chat::ChatLimits,
    /// Every channel's adapter (webhook verification, installation checks).
    pub channels: crate::channels::Channels,
    /// What has to happen before the server is ready (the database role check).
    pub startup: std::sync::Arc<health::Startup>,
    /// The base of every link the product writes.
    pub public_url: crate::links::PublicUrl,
    /// The one client for URLs users, tenants or providers supply: refuses our own network.
    pub outbound: crate::outbound::Outbound,
    /// The audit verifications running now (rationed: each holds a connection for the walk).
    pub verifications: audit::Verifications,
    /// The knowledge base and memory service.
    pub knowledge: Option<crate::knowledge::Knowledge>,
    /// The platform's caps on an agent's tool steps and turn deadline.
    pub turn_caps: tools::TurnCaps,
    /// The engine's clock (shared with it): when a webhook's messages were received.
    pub clock: crate::time::Clock,
    /// Mail and the links it carries (invitations, password resets).
    pub people: crate::people::People,
    /// The live inbox's fan-out on this node.
    pub inbox: crate::inbox::live::Hub,
}

/// Session signing, sign-in limits and who the client is.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub keys: TokenKeys,
    /// Makes the tokens of invitation and password-reset links (from the same secret).
    pub links: crate::people::LinkKey,
    pub cookie_secure: Option<bool>,
    pub session_max_hours: u32,
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_failures_per_account_total: u32,
    pub login_window_secs: u64,
    /// Password hashes run here, a bounded number at once.
    pub hasher: crate::auth::password::Hasher,
    /// The socket peer is a proxy we trust (`server.trust_proxy_headers`): its `X-Request-Id`
    /// and `X-Forwarded-For` are believed.
    pub peer_is_proxy: bool,
    /// Further proxies, skipped in `X-Forwarded-For`.
    pub trusted_proxies: Vec<crate::net::IpNet>,
}

/// How long a sign-in waits for a free password-hashing slot before it is told to retry.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl AuthState {
    /// From the settings; a missing secret becomes a random one (sessions then end on restart).
    pub fn from_settings(settings: &AuthSettings, server: &ServerSettings) -> Self {
        let secret = match &settings.jwt_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "KONSTRUCT_JWT_SECRET is not set: using a random key, so sessions end when \
                     the process restarts"
                );
                TokenKeys::random_secret()
            }
        };
        Self {
            keys: TokenKeys::new(&secret, settings.token_minutes, settings.session_max_hours),
            links: crate::people::LinkKey::derive(&secret),
            cookie_secure: settings.cookie_secure,
            session_max_hours: settings.session_max_hours,
            login_failures_per_account: settings.login_failures_per_account,
            login_failures_per_address: settings.login_failures_per_address,
            login_failures_per_account_total: settings.login_failures_per_account_total,
            login_window_secs: settings.login_window_secs,
            hasher: crate::auth::password::Hasher::new(
                settings.password_hash_concurrency,
                HASH_WAIT,
            ),
            peer_is_proxy: server.trust_proxy_headers,
            // Validated when the settings were loaded; an entry that still does not parse is
            // left out rather than trusted.
            trusted_proxies: server
                .trusted_proxies
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        }
    }
}

/// `?page=&per_page=` on list endpoints.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// 1-based page number; 1 when omitted.
    pub page: Option<u32>,
    /// 1 to 100; 20 when omitted.
    pub per_page: Option<u32>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: u32,
    pub per_page: u32,
}

impl PageQuery {
    pub fn resolve(&self) -> Result<Paging, ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        let mut errors = validate::Errors::default();
        if page == 0 || page > 1_000_000 {
            errors.add("page", "must be between 1 and 1000000");
        }
        if !(1..=100).contains(&per_page) {
            errors.add("per_page", "must be between 1 and 100");
        }
        errors.finish()?;
        Ok(Paging { page, per_page })
    }
}

impl Paging {
    pub fn limit(&self) -> i64 {
        i64::from(self.per_page)
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }

    pub fn page<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            page: self.page,
            per_page: self.per_page,
            total: u64::try_from(total).unwrap_or(0),
        }
    }
}

/// A bound, not yet running server.
pub struct Bound {
    pub server: Server,
    pub port: u16,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Builds the server on a bound listener. Awaiting `Bound::server` runs it.
pub fn bind_listener(
    listener: TcpListener,
    settings: &ServerSettings,
    state: AppState,
) -> std::io::Result<Bound> {
    let port = listener.local_addr()?.port();
    let state = web::Data::new(state);
    let portal_dir = settings.portal_dir.clone();
    let json_limit = settings.json_limit_bytes;
    let portal_built = portal::is_built(&portal_dir);
    if !portal_built {
        tracing::warn!(portal.dir = %portal_dir.display(), "portal not built: / will explain how to build it");
    }
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .app_data(portal::PortalDir(portal_dir.clone()))
            .app_data(json_config(json_limit))
            // The webhooks' raw bodies are JSON too, and held to the same limit.
            .app_data(web::PayloadConfig::new(json_limit))
            .app_data(query_config())
            .app_data(path_config())
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "same-origin")),
            )
            .wrap(from_fn(auth::session_middleware))
            .wrap(from_fn(health::until_ready))
            .wrap(from_fn(request_id::middleware))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route(
                "/webhooks/slack/events",
                web::post().to(webhooks::slack_events),
            )
            .route(
                "/webhooks/whatsapp",
                web::get().to(webhooks::whatsapp_verify),
            )
            .route(
                "/webhooks/whatsapp",
                web::post().to(webhooks::whatsapp_events),
            )
            .route(
                "/webhooks/whatsapp/{phone_number_id}",
                web::get().to(webhooks::whatsapp_own_verify),
            )
            .route(
                "/webhooks/whatsapp/{phone_number_id}",
                web::post().to(webhooks::whatsapp_own_events),
            )
            .configure(routes::configure)
            .service(web::scope("/api").default_service(web::to(api_not_found)));
        let app = app.default_service(fn_service(portal::spa_fallback));
        if portal_built {
            // `/` goes through the fallback too, so index.html is always revalidated.
            app.route("/", web::get().to(portal_index))
                .service(portal::files(&portal_dir))
        } else {
            app
        }
    })
    .listen(listener)?
    .shutdown_timeout(10);
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    Ok(Bound {
        server: server.run(),
        port,
    })
}

/// Appends a management event by the caller to the tenant's audit trail, inside the transaction
/// that makes the change, so neither commits without the other.
pub(crate) async fn record(
    tx: &mut TenantTx,
    auth: &auth::Authorized,
    action: store_audit::Action,
    target: store_audit::Target,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    store_audit::append(
        tx,
        &store_audit::NewEvent {
            actor: auth.principal().actor(),
            action,
            target,
            details,
            request_id: request_id::current(),
        },
    )
    .await?;
    Ok(())
}

async fn portal_index(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, actix_web::Error> {
    let res = portal::spa_fallback(ServiceRequest::from_request(req)).await?;
    Ok(res.into_parts().1)
}

async fn api_not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("This API path"))
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            use actix_web::error::JsonPayloadError as E;
            let api = match &err {
                E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("The request body is larger than {limit} bytes."),
                ),
                E::ContentType => ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "The request body must be JSON (Content-Type: application/json).",
                ),
                E::Deserialize(e) => ApiError::new(
                    ErrorCode::BadRequest,
                    format!("The request body is not valid: {e}"),
                ),
                _ => ApiError::new(ErrorCode::BadRequest, "The request body could not be read."),
            };
            api.into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("The query string is not valid: {err}"),
        )
        .into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("The path is not valid: {err}"),
        )
        .into()
    })
}
