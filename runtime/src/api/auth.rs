//! Sessions over HTTP: sign-in, sign-out, refresh, `/api/me`, the `Authorized` extractor that
//! enforces the route table, cookies, CSRF, and the session middleware (cookie rotation and the
//! audit of impersonated requests).

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{TimeZone, Utc};
use futures_util::future::LocalBoxFuture;
use sha2::{Digest, Sha256};
use shared::auth::{LoginRequest, Me, SessionToken};
use shared::{ErrorBody, ErrorCode, TenantId};

use super::AppState;
use super::error::ApiError;
use super::routes::{self, Access};
use crate::auth::principal::TenantAccess;
use crate::auth::tokens::Claims;
use crate::auth::{Impersonated, Principal, password};
use crate::store::audit::{self, Actor, NewEvent};
use crate::store::{tenants, users};

pub const SESSION_COOKIE: &str = "konstruct_session";
pub const CSRF_COOKIE: &str = "konstruct_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the session reached us: a browser cookie (CSRF applies) or a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// A verified session, cached in the request's extensions.
#[derive(Debug)]
pub struct Authenticated {
    pub principal: Principal,
    pub via: Via,
}

/// The caller, checked against the route table for the route that matched.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub session: Arc<Authenticated>,
    /// The tenant of a tenant-scoped route.
    pub tenant: Option<TenantId>,
}

impl Authorized {
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }

    /// The route's tenant; only tenant-scoped routes have one.
    pub fn tenant(&self) -> Result<TenantId, ApiError> {
        self.tenant
            .ok_or_else(|| ApiError::internal(std::io::Error::other("route has no tenant")))
    }
}

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authorize(&req).await })
    }
}

async fn authorize(req: &HttpRequest) -> Result<Authorized, ApiError> {
    let spec = req
        .match_pattern()
        .and_then(|pattern| routes::lookup(req.method(), &pattern))
        .ok_or_else(|| ApiError::internal(std::io::Error::other("route missing from the table")))?;
    let session = authenticate(req).await?;
    match spec.access {
        Access::Public | Access::Session => Ok(Authorized {
            session,
            tenant: None,
        }),
        Access::Platform(permission) => {
            if session.principal.has_platform(permission) {
                Ok(Authorized {
                    session,
                    tenant: None,
                })
            } else {
                Err(ApiError::forbidden(
                    "Only platform admins can do this (and not while impersonating a tenant).",
                ))
            }
        }
        Access::Tenant(permission) => {
            let tenant: TenantId = req
                .match_info()
                .get("tenant_id")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| ApiError::not_found("The tenant"))?;
            let principal = &session.principal;
            let member = principal.memberships.iter().any(|m| m.tenant == tenant);
            if principal.is_platform_admin() && principal.impersonating.is_none() && !member {
                // Global access reaches only tenants that exist.
                let state = state(req)?;
                let mut tx = state.store.tenant_tx(tenant).await?;
                if tenants::current(&mut tx).await?.is_none() {
                    return Err(ApiError::not_found("The tenant"));
                }
            }
            match principal.access_to(tenant) {
                TenantAccess::None => Err(ApiError::not_found("The tenant")),
                TenantAccess::Granted(perms) if perms.contains(&permission) => Ok(Authorized {
                    session,
                    tenant: Some(tenant),
                }),
                TenantAccess::Granted(_) => Err(ApiError::forbidden(
                    "Your role in this tenant does not allow this.",
                )),
            }
        }
    }
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(std::io::Error::other("no app state")))
}

/// Verifies the session on the request (bearer token first, then the cookie), once per request.
pub async fn authenticate(req: &HttpRequest) -> Result<Arc<Authenticated>, ApiError> {
    if let Some(done) = req.extensions().get::<Arc<Authenticated>>() {
        return Ok(done.clone());
    }
    let state = state(req)?;
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let (token, via) = match bearer {
        Some(token) => (token, Via::Bearer),
        None => match req.cookie(SESSION_COOKIE) {
            Some(c) => (c.value().to_string(), Via::Cookie),
            None => return Err(ApiError::unauthenticated()),
        },
    };
    let now = Utc::now();
    let claims = state.auth.keys.verify(&token, now).map_err(|e| {
        tracing::info!(reason = %e, "session token refused");
        ApiError::unauthenticated()
    })?;
    if state
        .redis
        .exists(&revoked_key(&state, &claims))
        .await
        .map_err(ApiError::unavailable)?
    {
        return Err(ApiError::unauthenticated());
    }
    let user = users::get(&state.store, claims.sub)
        .await?
        .filter(|u| u.status == "active" && u.auth_version == claims.ver)
        .ok_or_else(ApiError::unauthenticated)?;
    let memberships = users::memberships(&state.store, user.id).await?;
    // An impersonation token never falls back to the admin's full rights: once it has run out,
    // its tenant is gone or the user is no longer a platform admin, it is refused.
    let impersonating = match &claims.imp {
        None => None,
        Some(imp) => {
            if claims.active_impersonation(now).is_none() || !user.is_platform_admin {
                return Err(ApiError::unauthenticated());
            }
            let tenant = TenantId::from_uuid(imp.tenant);
            let mut tx = state.store.tenant_tx(tenant).await?;
            let row = tenants::current(&mut tx)
                .await?
                .ok_or_else(ApiError::unauthenticated)?;
            // Every request made while impersonating is recorded before it is handled; if it
            // cannot be recorded, it is not handled.
            let request_id = super::request_id::current();
            audit::append(
                &mut tx,
                &NewEvent {
                    actor: Actor::Impersonating { admin: user.id },
                    action: "impersonation.request",
                    target_kind: Some("http"),
                    target_id: Some(format!("{} {}", req.method(), req.path())),
                    details: serde_json::json!({}),
                    request_id: request_id.as_deref(),
                },
            )
            .await
            .map_err(ApiError::unavailable)?;
            tx.commit().await?;
            Some(Impersonated {
                tenant,
                name: row.name,
                active: row.status == "active",
                until: Utc.timestamp_opt(imp.exp, 0).single().unwrap_or(now),
            })
        }
    };
    if via == Via::Cookie && !is_safe(req.method()) {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent != Some(claims.csrf.as_str()) {
            return Err(ApiError::forbidden(
                "Missing or wrong X-CSRF-Token header for a cookie session.",
            ));
        }
    }
    let done = Arc::new(Authenticated {
        principal: Principal {
            user,
            memberships,
            claims,
            impersonating,
        },
        via,
    });
    req.extensions_mut().insert(done.clone());
    Ok(done)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Revokes the session of `claims` until it would have ended anyway.
pub async fn revoke(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    let remaining = (claims.auth_time + i64::from(state.auth.session_max_hours) * 3600
        - Utc::now().timestamp())
    .max(1);
    state
        .redis
        .set_marker(&revoked_key(state, claims), remaining.unsigned_abs())
        .await
        .map_err(ApiError::unavailable)
}

fn revoked_key(state: &AppState, claims: &Claims) -> String {
    state.redis.key(&format!("session:revoked:{}", claims.sid))
}

/// Signs renewed claims and builds the answer, setting both cookies.
pub fn issue(
    req: &HttpRequest,
    state: &AppState,
    claims: &Claims,
    me: Me,
) -> Result<HttpResponse, ApiError> {
    let renewed = state.auth.keys.renew(claims, Utc::now());
    let token = state.auth.keys.sign(&renewed).map_err(ApiError::internal)?;
    let body = SessionToken {
        token: token.clone(),
        expires_at: renewed.expires_at(),
        csrf_token: renewed.csrf.clone(),
        me,
    };
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    for cookie in session_cookies(req, state, &token, &renewed) {
        res.cookie(cookie);
    }
    Ok(res.json(body))
}

fn secure(req: &HttpRequest, state: &AppState) -> bool {
    state
        .auth
        .cookie_secure
        .unwrap_or_else(|| req.connection_info().scheme() == "https")
}

fn session_cookies(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    claims: &Claims,
) -> [Cookie<'static>; 2] {
    let max_age = CookieDuration::seconds((claims.exp - Utc::now().timestamp()).max(0));
    let secure = secure(req, state);
    let session = Cookie::build(SESSION_COOKIE, token.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(max_age)
        .finish();
    // Readable by the portal's script, which echoes it in X-CSRF-Token.
    let csrf = Cookie::build(CSRF_COOKIE, claims.csrf.clone())
        .path("/")
        .http_only(false)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(max_age)
        .finish();
    [session, csrf]
}

fn removal_cookies() -> [Cookie<'static>; 2] {
    let mut session = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    session.make_removal();
    let mut csrf = Cookie::build(CSRF_COOKIE, "").path("/").finish();
    csrf.make_removal();
    [session, csrf]
}

fn hashed(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionToken),
              (status = 401, description = "Email or password is incorrect", body = ErrorBody),
              (status = 429, description = "Too many failed attempts", body = ErrorBody)))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let email = users::normalise_email(&body.email);
    let settings = &state.auth;
    let account_key = state
        .redis
        .key(&format!("login:fail:acct:{}", hashed(&email)));
    // Behind a trusted proxy the client is the first X-Forwarded-For address; otherwise the
    // socket peer (a client-set header would let anyone dodge the per-address limit).
    let forwarded = state
        .trust_proxy_headers
        .then(|| {
            req.headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        })
        .flatten();
    let address = forwarded
        .map(|ip| ip.to_string())
        .or_else(|| req.peer_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let address_key = state.redis.key(&format!("login:fail:addr:{address}"));
    // Reserve the attempt on both counters before the slow password check, so parallel guesses
    // cannot all pass a check made before any of them is counted.
    for (key, limit) in [
        (&account_key, settings.login_failures_per_account),
        (&address_key, settings.login_failures_per_address),
    ] {
        let count = state
            .redis
            .incr_in_window(key, settings.login_window_secs)
            .await
            .map_err(ApiError::unavailable)?;
        if count > i64::from(limit) {
            let (_, ttl) = state
                .redis
                .counter(key)
                .await
                .map_err(ApiError::unavailable)?;
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "Too many failed sign-in attempts. Try again in {} minutes.",
                    ttl.div_ceil(60).max(1)
                ),
            )
            .with_retry_after(ttl.max(1)));
        }
    }
    let credentials = users::credentials_by_email(&state.store, &email).await?;
    let password = body.password;
    let stored = credentials
        .as_ref()
        .and_then(|c| c.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_string());
    // Verify even for an unknown account, so both answers take as long.
    let matches = tokio::task::spawn_blocking(move || password::verify(&stored, &password))
        .await
        .map_err(ApiError::internal)?;
    let user = match credentials {
        Some(c) if matches && c.status == "active" => c,
        _ => {
            // The reserved attempts stay counted: this one failed.
            tracing::info!(client.address = %address, "sign-in refused");
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "Email or password is incorrect.",
            ));
        }
    };
    state
        .redis
        .delete(&account_key)
        .await
        .map_err(ApiError::unavailable)?;
    let claims = state
        .auth
        .keys
        .new_session(user.id, user.auth_version, Utc::now());
    let principal = Principal {
        user: users::get(&state.store, user.id)
            .await?
            .ok_or_else(ApiError::unauthenticated)?,
        memberships: users::memberships(&state.store, user.id).await?,
        claims: claims.clone(),
        impersonating: None,
    };
    tracing::info!(user.id = %user.id, "signed in");
    issue(&req, &state, &claims, principal.me())
}

/// Sign out: the session is revoked and the cookies cleared.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let claims = &auth.principal().claims;
    let remaining = (claims.auth_time + i64::from(state.auth.session_max_hours) * 3600
        - Utc::now().timestamp())
    .max(1);
    state
        .redis
        .set_marker(&revoked_key(&state, claims), remaining.unsigned_abs())
        .await
        .map_err(ApiError::unavailable)?;
    let mut res = HttpResponse::NoContent();
    for cookie in removal_cookies() {
        res.cookie(cookie);
    }
    Ok(res.finish())
}

/// A fresh token for the same session (API clients; browsers get rotated cookies automatically).
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth",
    responses((status = 200, body = SessionToken), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    req: HttpRequest,
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth.principal();
    issue(&req, &state, &principal.claims, principal.me())
}

/// Who is signed in, their tenants and roles, effective permissions and any impersonation.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(auth: Authorized) -> web::Json<Me> {
    web::Json(auth.principal().me())
}

/// Wraps every API request: re-issues an ageing cookie session. (Requests made under
/// impersonation are audited in `authenticate`, before they are handled.)
pub async fn session_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let session = res
        .request()
        .extensions()
        .get::<Arc<Authenticated>>()
        .cloned();
    let Some(session) = session else {
        return Ok(res);
    };
    let Some(state) = res.request().app_data::<web::Data<AppState>>().cloned() else {
        return Ok(res);
    };
    let principal = &session.principal;
    let logged_out = res
        .response()
        .headers()
        .get_all(header::SET_COOKIE)
        .next()
        .is_some();
    if session.via == Via::Cookie
        && !logged_out
        && res.status().is_success()
        && state
            .auth
            .keys
            .wants_rotation(&principal.claims, Utc::now())
    {
        let renewed = state.auth.keys.renew(&principal.claims, Utc::now());
        if let Ok(token) = state.auth.keys.sign(&renewed) {
            for cookie in session_cookies(res.request(), &state, &token, &renewed) {
                let _ = res.response_mut().add_cookie(&cookie);
            }
        }
    }
    Ok(res)
}
