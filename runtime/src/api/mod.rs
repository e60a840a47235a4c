//! The HTTP surface: routes, shared state, middleware and the JSON error contract.
//!
//! Only this module knows HTTP status codes; everything below it returns typed errors.

pub mod error;
pub mod health;
pub mod portal;
pub mod request_id;

use std::net::TcpListener;

use actix_web::dev::{Server, ServiceRequest, fn_service};
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use shared::ErrorCode;

use crate::config::ServerSettings;
use crate::redis::Redis;
use crate::store::Store;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub redis: Redis,
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

/// Binds the listener and builds the server. Awaiting `Bound::server` runs it.
pub fn bind(settings: &ServerSettings, state: AppState) -> std::io::Result<Bound> {
    let listener = TcpListener::bind((settings.host, settings.port))?;
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
            .app_data(query_config())
            .app_data(path_config())
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "same-origin")),
            )
            .wrap(from_fn(request_id::middleware))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
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
