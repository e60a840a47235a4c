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
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::users::UserStatus;
use crate::store::{tenants, users};
use shared::resources::TenantStatus;

pub const SESSION_COOKIE: &str = "konstruct_session";
pub const CSRF_COOKIE: &str = "konstruct_csrf";
/// An impersonation's session, beside the admin's own (which it never replaces).
pub const IMPERSONATION_COOKIE: &str = "konstruct_impersonation";
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

/// The admin's own cookie session beside an impersonation, due for renewal: requests made under
/// the impersonation carry it too, and the answer renews it, so it does not lapse while the
/// impersonation cookie does all the work.
#[derive(Debug, Clone)]
struct OwnSessionDue(Claims);

/// Notes the admin's own session for renewal when the request carries it beside `acting` (the
/// impersonation started from it) and it is due. Its revocation was checked with `acting`'s.
fn own_session_due_for_renewal(
    req: &HttpRequest,
    state: &AppState,
    acting: &Claims,
    now: chrono::DateTime<Utc>,
) {
    let Some(parent_sid) = acting.imp.as_ref().map(|imp| imp.parent_sid) else {
        return;
    };
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return;
    };
    let Ok(own) = state.auth.keys.verify(cookie.value(), now) else {
        return;
    };
    if own.imp.is_none() && own.sid == parent_sid && state.auth.keys.wants_rotation(&own, now) {
        req.extensions_mut().insert(OwnSessionDue(own));
    }
}

/// The request carried an impersonation cookie whose session has ended: the answer clears it.
#[derive(Debug, Clone, Copy)]
struct EndedImpersonationCookie;

/// Checks a token's signature, age and revocation (its own session, and for an impersonation
/// the admin's session it was started from). `Err(None)`: the session is not valid;
/// `Err(Some(e))`: it could not be checked (Redis down).
async fn live_claims(
    state: &AppState,
    token: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Claims, Option<ApiError>> {
    let claims = state.auth.keys.verify(token, now).map_err(|e| {
        tracing::info!(reason = %e, "session token refused");
        None
    })?;
    let mut keys = vec![revoked_key(state, claims.sid)];
    if let Some(imp) = &claims.imp {
        if claims.active_impersonation(now).is_none() {
            return Err(None);
        }
        keys.push(revoked_key(state, imp.parent_sid));
    }
    if state
        .redis
        .exists_any(&keys)
        .await
        .map_err(|e| Some(ApiError::unavailable(e)))?
    {
        return Err(None);
    }
    Ok(claims)
}

/// Verifies the session on the request, once per request: a bearer token first; else the
/// impersonation cookie, while that impersonation lasts; else the session cookie.
pub async fn authenticate(req: &HttpRequest) -> Result<Arc<Authenticated>, ApiError> {
    if let Some(done) = req.extensions().get::<Arc<Authenticated>>() {
        return Ok(done.clone());
    }
    let state = state(req)?;
    let now = Utc::now();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let refused = |e: Option<ApiError>| e.unwrap_or_else(ApiError::unauthenticated);
    let (claims, via) = match bearer {
        Some(token) => (
            live_claims(&state, &token, now).await.map_err(refused)?,
            Via::Bearer,
        ),
        None => {
            let acting = match req.cookie(IMPERSONATION_COOKIE) {
                None => None,
                Some(cookie) => match live_claims(&state, cookie.value(), now).await {
                    Ok(claims) if claims.imp.is_some() => Some(claims),
                    // Ended (or not an impersonation at all): the admin's own session applies,
                    // and the answer clears the cookie.
                    Ok(_) | Err(None) => {
                        req.extensions_mut().insert(EndedImpersonationCookie);
                        None
                    }
                    Err(Some(e)) => return Err(e),
                },
            };
            match acting {
                Some(claims) => {
                    own_session_due_for_renewal(req, &state, &claims, now);
                    (claims, Via::Cookie)
                }
                None => match req.cookie(SESSION_COOKIE) {
                    Some(cookie) => (
                        live_claims(&state, cookie.value(), now)
                            .await
                            .map_err(refused)?,
                        Via::Cookie,
                    ),
                    None => return Err(ApiError::unauthenticated()),
                },
            }
        }
    };
    // Before anything is recorded or looked up: a forged cross-site request goes no further.
    if via == Via::Cookie && !is_safe(req.method()) {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent != Some(claims.csrf.as_str()) {
            return Err(ApiError::forbidden(
                "Missing or wrong X-CSRF-Token header for a cookie session.",
            ));
        }
    }
    let user = users::get(&state.store, claims.sub)
        .await?
        .filter(|u| u.status == UserStatus::Active && u.auth_version == claims.ver)
        .ok_or_else(ApiError::unauthenticated)?;
    let memberships = users::memberships(&state.store, user.id).await?;
    // An impersonation token never falls back to the admin's full rights: once it has run out,
    // its tenant is gone or the user is no longer a platform admin, it is refused.
    let impersonating = match &claims.imp {
        None => None,
        Some(imp) => {
            if !user.is_platform_admin {
                return Err(ApiError::unauthenticated());
            }
            let tenant = TenantId::from_uuid(imp.tenant);
            let mut tx = state.store.tenant_tx(tenant).await?;
            let row = tenants::current(&mut tx)
                .await?
                .ok_or_else(ApiError::unauthenticated)?;
            // Every request made while impersonating is recorded before it is handled; if it
            // cannot be recorded, it is not handled.
            audit::append(
                &mut tx,
                &NewEvent {
                    actor: Actor::Impersonating { admin: user.id },
                    action: Action::ImpersonationRequest,
                    // The route, not the path as sent: a caller cannot write text of their
                    // choosing into the trail.
                    target: Target::Request(format!(
                        "{} {}",
                        req.method(),
                        req.match_pattern().as_deref().unwrap_or("(no route)")
                    )),
                    details: serde_json::json!({}),
                    request_id: super::request_id::current(),
                },
            )
            .await
            .map_err(ApiError::unavailable)?;
            tx.commit().await?;
            Some(Impersonated {
                tenant,
                name: row.name,
                active: row.status == TenantStatus::Active,
                until: Utc.timestamp_opt(imp.exp, 0).single().unwrap_or(now),
            })
        }
    };
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

/// Whether the session of `claims` may still use `permission` in `tenant`, checked again as
/// on a new request (expiry, revocation, the user's `auth_version`, membership, impersonation):
/// a long-lived answer (the inbox's live stream) ends when it no longer may.
pub(crate) async fn still_allowed(
    state: &AppState,
    claims: &Claims,
    tenant: TenantId,
    permission: shared::auth::Permission,
) -> Result<bool, ApiError> {
    let now = Utc::now();
    if claims.exp <= now.timestamp() {
        return Ok(false);
    }
    let mut keys = vec![revoked_key(state, claims.sid)];
    if let Some(imp) = &claims.imp {
        if claims.active_impersonation(now).is_none() {
            return Ok(false);
        }
        keys.push(revoked_key(state, imp.parent_sid));
    }
    if state
        .redis
        .exists_any(&keys)
        .await
        .map_err(ApiError::unavailable)?
    {
        return Ok(false);
    }
    let Some(user) = users::get(&state.store, claims.sub)
        .await?
        .filter(|u| u.status == UserStatus::Active && u.auth_version == claims.ver)
    else {
        return Ok(false);
    };
    let memberships = users::memberships(&state.store, user.id).await?;
    let impersonating = match &claims.imp {
        None => None,
        Some(imp) => {
            let imp_tenant = TenantId::from_uuid(imp.tenant);
            let mut tx = state.store.tenant_tx(imp_tenant).await?;
            let row = tenants::current(&mut tx).await?;
            tx.commit().await?;
            match row {
                Some(row) if user.is_platform_admin => Some(Impersonated {
                    tenant: imp_tenant,
                    name: row.name,
                    active: row.status == TenantStatus::Active,
                    until: Utc.timestamp_opt(imp.exp, 0).single().unwrap_or(now),
                }),
                _ => return Ok(false),
            }
        }
    };
    let principal = Principal {
        user,
        memberships,
        claims: claims.clone(),
        impersonating,
    };
    Ok(matches!(
        principal.access_to(tenant),
        TenantAccess::Granted(perms) if perms.contains(&permission)
    ))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Revokes session `sid` (of `claims`' sign-in) until it would have ended anyway.
pub async fn revoke(state: &AppState, sid: uuid::Uuid, claims: &Claims) -> Result<(), ApiError> {
    let remaining = (claims.auth_time + i64::from(state.auth.session_max_hours) * 3600
        - Utc::now().timestamp())
    .max(1);
    state
        .redis
        .set_marker(&revoked_key(state, sid), remaining.unsigned_abs())
        .await
        .map_err(ApiError::unavailable)
}

fn revoked_key(state: &AppState, sid: uuid::Uuid) -> String {
    state.redis.key(&format!("session:revoked:{sid}"))
}

/// Signs renewed claims and builds the answer, setting the session's cookie: the impersonation
/// cookie for an impersonation (the admin's own session cookie is left alone), else the session
/// and CSRF cookies.
pub fn issue(state: &AppState, claims: &Claims, me: Me) -> Result<HttpResponse, ApiError> {
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
    for cookie in session_cookies(state, &token, &renewed) {
        res.cookie(cookie);
    }
    Ok(res.json(body))
}

/// Cookies are `Secure` when people reach us over HTTPS, as the public URL says (a request's own
/// scheme can be anything a client or proxy claims).
fn secure(state: &AppState) -> bool {
    state
        .auth
        .cookie_secure
        .unwrap_or_else(|| state.public_url.is_https())
}

/// The cookies that carry `token`: an impersonation's one cookie, or a session's two.
fn session_cookies(state: &AppState, token: &str, claims: &Claims) -> Vec<Cookie<'static>> {
    let secure = secure(state);
    let now = Utc::now().timestamp();
    if let Some(imp) = &claims.imp {
        let until = claims.exp.min(imp.exp);
        return vec![
            Cookie::build(IMPERSONATION_COOKIE, token.to_string())
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(secure)
                .max_age(CookieDuration::seconds((until - now).max(0)))
                .finish(),
        ];
    }
    let max_age = CookieDuration::seconds((claims.exp - now).max(0));
    let session = Cookie::build(SESSION_COOKIE, token.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(max_age)
        .finish();
    // Readable by the portal's script, which echoes it in X-CSRF-Token. An impersonation started
    // from this session shares its CSRF secret, so this one cookie serves both.
    let csrf = Cookie::build(CSRF_COOKIE, claims.csrf.clone())
        .path("/")
        .http_only(false)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(max_age)
        .finish();
    vec![session, csrf]
}

/// A cookie that makes the browser forget the one of that name.
pub fn removal_cookie(name: &'static str) -> Cookie<'static> {
    let mut cookie = Cookie::build(name, "").path("/").finish();
    cookie.make_removal();
    cookie
}

fn hashed(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// How long an address block an account signed in from stays known to it.
const KNOWN_ADDRESS_SECS: u64 = 30 * 24 * 3600;
/// How many address blocks each account is known to sign in from (the most recent).
const KNOWN_ADDRESSES: usize = 20;

/// The sign-in counters of one attempt: the address, the account from this address, and the
/// account from everywhere, checked in that order.
struct LoginCounters {
    address: (String, u64),
    account_here: (String, u64),
    account_all: (String, u64),
    /// The address blocks the account signed in from lately (a bounded set; this one is added on
    /// success).
    known: String,
    block: String,
}

impl LoginCounters {
    fn new(state: &AppState, email: &str, block: &str) -> Self {
        let settings = &state.auth;
        let account = hashed(email);
        Self {
            // The address first: an address over its limit is refused before anything is
            // counted against the account it tried.
            address: (
                state.redis.key(&format!("login:fail:addr:{block}")),
                u64::from(settings.login_failures_per_address),
            ),
            // The account from this address: one address can lock only itself out of an account.
            account_here: (
                state
                    .redis
                    .key(&format!("login:fail:acct:{account}:{block}")),
                u64::from(settings.login_failures_per_account),
            ),
            // The account from everywhere: a distributed guess is slowed down too.
            account_all: (
                state.redis.key(&format!("login:fail:acct:{account}")),
                u64::from(settings.login_failures_per_account_total),
            ),
            known: state.redis.key(&format!("login:known:{account}")),
            block: block.to_string(),
        }
    }

    /// The counters an attempt from here counts against. From a block the account signed in from
    /// before, the account's total is left out: guesses from many other addresses (a few dozen
    /// IPv6 /64s are cheap) must not lock its owner out of the places they use; the two
    /// per-address limits still hold there.
    fn applying(&self, known: bool) -> Vec<(String, u64)> {
        let mut counters = vec![self.address.clone(), self.account_here.clone()];
        if !known {
            counters.push(self.account_all.clone());
        }
        counters
    }
}

/// The address block (an IPv4 address, an IPv6 /64) the request came from, for per-address
/// limits: the peer, or with trusted proxies the right-most hop they did not write.
pub(crate) fn client_block(req: &HttpRequest, state: &AppState) -> String {
    let settings = &state.auth;
    // Several header lines are one list, in order (RFC 9110 §5.3): a proxy that adds its own line
    // leaves the client's line first, and the right-most hop is still the proxy's.
    // A line with bytes that are not text is kept (as replacement characters), so the hop they
    // are in stops the walk there and the hops our proxies wrote to its right still count.
    let forwarded: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    let address = crate::net::client_address(
        req.peer_addr().map(|a| a.ip()),
        forwarded.as_deref(),
        settings.peer_is_proxy,
        &settings.trusted_proxies,
    )
    .unwrap_or(crate::net::UNKNOWN);
    crate::net::limit_block(address)
}

/// What a hashing pool that could not take the work answers: busy (503, retry in a second) or
/// broken (500).
pub(crate) fn hasher_error(e: password::HasherError) -> ApiError {
    match e {
        password::HasherError::Busy => ApiError::new(
            ErrorCode::Unavailable,
            "The server is busy checking passwords. Please try again in a moment.",
        )
        .with_retry_after(1),
        password::HasherError::Failed(_) => ApiError::internal(e),
    }
}

/// Hashes a new password on the rationed hashing pool.
pub(crate) async fn hash_password(state: &AppState, password: String) -> Result<String, ApiError> {
    state.auth.hasher.hash(password).await.map_err(hasher_error)
}

/// Signs `user` in: a new session, its cookies, and the sign-in noted.
pub(crate) async fn sign_in(state: &AppState, user: uuid::Uuid) -> Result<HttpResponse, ApiError> {
    let row = users::get(&state.store, user)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let claims = state
        .auth
        .keys
        .new_session(row.id, row.auth_version, Utc::now());
    users::record_sign_in(&state.store, row.id).await?;
    let principal = Principal {
        memberships: users::memberships(&state.store, row.id).await?,
        user: row,
        claims: claims.clone(),
        impersonating: None,
    };
    tracing::info!(user.id = %user, "signed in");
    issue(state, &claims, principal.me())
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionToken),
              (status = 401, description = "Email or password is incorrect", body = ErrorBody),
              (status = 429, description = "Too many failed attempts", body = ErrorBody),
              (status = 503, description = "Too many sign-ins at once; retry", body = ErrorBody)))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let email = users::normalise_email(&body.email);
    let settings = &state.auth;
    let block = client_block(&req, &state);
    let limits = LoginCounters::new(&state, &email, &block);
    // In milliseconds: the set keeps the most recent blocks, and sign-ins within one second
    // must still be told apart.
    let now = Utc::now().timestamp_millis();
    let since = now - i64::try_from(KNOWN_ADDRESS_SECS * 1000).unwrap_or(i64::MAX);
    let known = state
        .redis
        .seen_since(&limits.known, &limits.block, since)
        .await
        .map_err(ApiError::unavailable)?;
    let counters = limits.applying(known);
    // The attempt is counted against every counter at once, before the slow password check, so
    // parallel guesses cannot all pass a check made before any of them is counted; a refused
    // attempt counts against none of them.
    let refused = state
        .redis
        .count_within_limits(&counters, settings.login_window_secs)
        .await
        .map_err(ApiError::unavailable)?;
    if let Some((which, ttl)) = refused {
        tracing::info!(client.block = %block, limit = which, "sign-in refused by a limit");
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "Too many failed sign-in attempts. Try again in {} minutes.",
                ttl.div_ceil(60).max(1)
            ),
        )
        .with_retry_after(ttl.max(1)));
    }
    // Takes the attempt back from every counter it was counted against.
    let take_back = || async {
        for (key, _) in &counters {
            state.redis.decrement(key).await?;
        }
        Ok::<_, crate::redis::RedisError>(())
    };
    let checked = check_password(&state, &email, body.password).await;
    let user = match checked {
        Ok(Some(user)) => user,
        Ok(None) => {
            // The counted attempt stays counted: this one failed.
            tracing::info!(client.block = %block, "sign-in refused");
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "Email or password is incorrect.",
            ));
        }
        Err(e) => {
            // Not checked at all (no free hashing slot, the database away): not a guess, so it
            // must not count towards locking anyone out.
            if let Err(undo) = take_back().await {
                tracing::warn!(error = %undo, "could not take back an unchecked sign-in attempt");
            }
            return Err(e);
        }
    };
    // A success is not a failure: the attempt is taken back, the account's count from this
    // address starts again, and the address is one the account is known to sign in from.
    let released = async {
        take_back().await?;
        state.redis.delete(&limits.account_here.0).await?;
        state
            .redis
            .remember_recent(
                &limits.known,
                &limits.block,
                now,
                KNOWN_ADDRESSES,
                KNOWN_ADDRESS_SECS,
            )
            .await
    };
    released.await.map_err(ApiError::unavailable)?;
    sign_in(&state, user.id).await
}

/// Checks `password` for the account `email`: `Some` for an active account whose password it is,
/// `None` for a wrong password, an unknown or inactive account; `Err` when it could not be checked.
async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<Option<users::Credentials>, ApiError> {
    let credentials = users::credentials_by_email(&state.store, email).await?;
    let stored = credentials
        .as_ref()
        .and_then(|c| c.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_string());
    // Verify even for an unknown account, so both answers take as long.
    let matches = state
        .auth
        .hasher
        .verify(stored, password)
        .await
        .map_err(|e| match e {
            password::HasherError::Busy => ApiError::new(
                ErrorCode::Unavailable,
                "Too many sign-ins at once. Please try again in a moment.",
            )
            .with_retry_after(1),
            password::HasherError::Failed(_) => ApiError::internal(e),
        })?;
    Ok(credentials.filter(|c| matches && c.status == UserStatus::Active))
}

/// Sign out: the session is revoked and its cookies cleared. Signing out while impersonating
/// ends the impersonation and the admin's own session with it.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let claims = &auth.principal().claims;
    revoke(&state, claims.sid, claims).await?;
    if let Some(imp) = &claims.imp {
        revoke(&state, imp.parent_sid, claims).await?;
    }
    let mut res = HttpResponse::NoContent();
    for name in [SESSION_COOKIE, CSRF_COOKIE, IMPERSONATION_COOKIE] {
        res.cookie(removal_cookie(name));
    }
    Ok(res.finish())
}

/// A fresh token for the same session (API clients; browsers get rotated cookies automatically).
/// An impersonation's token stays an impersonation's.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth",
    responses((status = 200, body = SessionToken), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth.principal();
    issue(&state, &principal.claims, principal.me())
}

/// Who is signed in, their tenants and roles, effective permissions and any impersonation.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(auth: Authorized) -> web::Json<Me> {
    web::Json(auth.principal().me())
}

/// Renews `claims` from now and sets the cookies that carry them on the answer.
fn add_renewed_cookies<B>(res: &mut ServiceResponse<B>, state: &AppState, claims: &Claims) {
    let renewed = state.auth.keys.renew(claims, Utc::now());
    if let Ok(token) = state.auth.keys.sign(&renewed) {
        for cookie in session_cookies(state, &token, &renewed) {
            let _ = res.response_mut().add_cookie(&cookie);
        }
    }
}

/// Wraps every API request: re-issues an ageing cookie session (in the cookie it came in), and
/// clears an impersonation cookie whose session has ended. (Requests made under impersonation are
/// audited in `authenticate`, before they are handled.)
pub async fn session_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    if res
        .request()
        .extensions()
        .get::<EndedImpersonationCookie>()
        .is_some()
    {
        let _ = res
            .response_mut()
            .add_cookie(&removal_cookie(IMPERSONATION_COOKIE));
    }
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
    let sets_cookies = res
        .response()
        .headers()
        .get_all(header::SET_COOKIE)
        .any(|c| {
            c.to_str()
                .is_ok_and(|c| !c.starts_with(&format!("{IMPERSONATION_COOKIE}=;")))
        });
    if session.via == Via::Cookie
        && !sets_cookies
        && res.status().is_success()
        && state
            .auth
            .keys
            .wants_rotation(&principal.claims, Utc::now())
    {
        add_renewed_cookies(&mut res, &state, &principal.claims);
    }
    let own_due = res.request().extensions().get::<OwnSessionDue>().cloned();
    if let Some(OwnSessionDue(own)) = own_due {
        let replaced = res
            .response()
            .headers()
            .get_all(header::SET_COOKIE)
            .any(|c| {
                c.to_str()
                    .is_ok_and(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
            });
        if !replaced && res.status().is_success() {
            add_renewed_cookies(&mut res, &state, &own);
        }
    }
    Ok(res)
}
