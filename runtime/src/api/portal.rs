//! The portal's static files, with a single-page-app fallback.
//!
//! Files that exist are served as they are (hashed asset names get a long cache lifetime); any
//! other GET that is not an API or webhook path answers with `index.html`, so a deep link such as
//! `/agents/42` opens the app, which routes on the client.

use std::path::{Path, PathBuf};

use actix_files::{Files, NamedFile};
use actix_web::dev::{ServiceRequest, ServiceResponse, fn_service};
use actix_web::guard;
use actix_web::http::{Method, header};
use shared::ErrorCode;

use super::error::ApiError;

/// Paths that belong to the server, never to the app.
const SERVER_PREFIXES: &[&str] = &["/api/", "/webhooks/", "/healthz", "/readyz"];

/// Where the built portal lives; registered as app data.
#[derive(Debug, Clone)]
pub struct PortalDir(pub PathBuf);

/// The static files, for GET and HEAD only; anything else falls through to the app's default
/// service, which answers with the JSON error contract.
pub fn files(dir: &Path) -> Files {
    Files::new("/", dir)
        .prefer_utf8(true)
        .guard(guard::Any(guard::Get()).or(guard::Head()))
        .default_handler(fn_service(spa_fallback))
}

/// Whether a built portal is present.
pub fn is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// Answers a request that matched no route and no file: `index.html` for the app's own paths, the
/// JSON error contract for everything else.
pub async fn spa_fallback(req: ServiceRequest) -> Result<ServiceResponse, actix_web::Error> {
    let (req, _) = req.into_parts();
    let index = req
        .app_data::<PortalDir>()
        .map(|d| d.0.join("index.html"))
        .unwrap_or_default();
    let path = req.path().to_string();
    if SERVER_PREFIXES
        .iter()
        .any(|p| path.starts_with(p) || path == p.trim_end_matches('/'))
    {
        return Err(ApiError::not_found("This API path").into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{} is not allowed here.", req.method()),
        )
        .into());
    }
    match NamedFile::open_async(&index).await {
        Ok(file) => {
            let mut res = file.into_response(&req);
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            Ok(ServiceResponse::new(req, res))
        }
        Err(_) => Err(ApiError::new(
            ErrorCode::NotFound,
            "The portal has not been built. Run scripts/run (or trunk build) first.",
        )
        .into()),
    }
}
