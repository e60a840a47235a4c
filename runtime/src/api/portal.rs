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

/// The Content-Security-Policy for the app's page: only its own origin, WebAssembly allowed to
/// compile, and of inline scripts only those in this very page (trunk's loader), by hash — so an
/// injected script cannot run even if text ever slipped into the page unescaped.
pub fn content_security_policy(html: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut hashes = String::new();
    let mut rest = html;
    while let Some(open) = rest.find("<script") {
        let after = &rest[open..];
        let (Some(tag_end), Some(close)) = (after.find('>'), after.find("</script>")) else {
            break;
        };
        let tag = &after[..tag_end];
        if !tag.contains(" src=") && tag_end < close {
            let body = &after[tag_end + 1..close];
            let digest = Sha256::digest(body.as_bytes());
            hashes.push_str(&format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &after[close + "</script>".len()..];
    }
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self'"
    )
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
            let policy = tokio::fs::read_to_string(&index)
                .await
                .map(|html| content_security_policy(&html))
                .ok();
            let mut res = file.into_response(&req);
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            if let Some(value) = policy.and_then(|p| header::HeaderValue::from_str(&p).ok()) {
                res.headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, value);
            }
            Ok(ServiceResponse::new(req, res))
        }
        Err(_) => Err(ApiError::new(
            ErrorCode::NotFound,
            "The portal has not been built. Run scripts/run (or trunk build) first.",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_allowed_by_their_hash_and_nothing_else_is() {
        let html = "<head><script type=\"module\">\nimport init from '/app.js';\n</script>\
                    <script src=\"/other.js\"></script></head>";
        let policy = content_security_policy(html);
        // sha256 of "\nimport init from '/app.js';\n", base64.
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let expected = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(b"\nimport init from '/app.js';\n"));
        assert!(policy.contains(&format!("'sha256-{expected}'")), "{policy}");
        assert_eq!(
            policy.matches("'sha256-").count(),
            1,
            "external scripts need no hash"
        );
        assert!(policy.contains("default-src 'self'"));
        assert!(policy.contains("'wasm-unsafe-eval'"));
        assert!(!policy.contains("unsafe-inline"));
    }
}
