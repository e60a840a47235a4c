//! Passwords: resetting a forgotten one by mail (`/api/auth/password-reset*`) and changing one's
//! own (`/api/me/password`). Setting a password either way ends every other session of the
//! account (its `auth_version` moves on).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};
use shared::people::{
    LinkToken, PasswordChange, PasswordResetComplete, PasswordResetPreview, PasswordResetRequest,
    PasswordResetRequested,
};
use shared::{ErrorBody, ErrorCode};
use uuid::Uuid;

use super::AppState;
use super::auth::{Authorized, client_block, hash_password, hasher_error, issue, sign_in};
use super::error::ApiError;
use super::validate;
use crate::auth::password;
use crate::people::{LinkPurpose, jobs as mail_jobs, token_hash, well_formed};
use crate::store::people as store;
use crate::store::users::{self, UserStatus};

/// The answer to every reset request that is counted, whether the account exists or not.
const REQUESTED: &str = "If an account uses that address, a link to choose a new password is on \
                         its way. It works once, for a limited time.";

/// Password changes (attempts with the current password) one account may make per hour.
const CHANGES_PER_HOUR: u64 = 10;

/// Ask for a password-reset link by mail. The answer is the same whether an account uses the
/// address or not, and so is what is counted against the limits.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses((status = 202, body = PasswordResetRequested), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn request(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<PasswordResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = users::normalise_email(&body.email);
    if !validate::is_email(&email) {
        return Err(ApiError::invalid_field(
            "email",
            "is not a valid email address",
        ));
    }
    let settings = &state.people.settings;
    let block = client_block(&req, &state);
    let account = hex::encode(Sha256::digest(email.as_bytes()));
    let counters = [
        (
            state.redis.key(&format!("password-reset:addr:{block}")),
            u64::from(settings.resets_per_address_per_hour),
        ),
        (
            state.redis.key(&format!("password-reset:acct:{account}")),
            u64::from(settings.resets_per_account_per_hour),
        ),
    ];
    if let Some((_, ttl)) = state
        .redis
        .count_within_limits(&counters, 3600)
        .await
        .map_err(ApiError::unavailable)?
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "Too many reset requests. Try again in {} minutes.",
                ttl.div_ceil(60).max(1)
            ),
        )
        .with_retry_after(ttl.max(1)));
    }
    let credentials = users::credentials_by_email(&state.store, &email).await?;
    if let Some(account) = credentials.filter(|c| c.status == UserStatus::Active) {
        let id = Uuid::new_v4();
        let token = state.people.links.token(LinkPurpose::PasswordReset, id, 1);
        let expires_at = Utc::now() + Duration::minutes(i64::from(settings.reset_minutes));
        store::create_reset(
            &state.store,
            id,
            account.id,
            &token_hash(&token),
            expires_at,
        )
        .await?;
        if let Err(e) = mail_jobs::enqueue_reset(&state.store, id).await {
            // Without its mail the reset is of no use: it goes, and the request can be made again.
            let _ = store::delete_reset(&state.store, id).await;
            return Err(e.into());
        }
        tracing::info!(user.id = %account.id, "password reset requested");
    }
    Ok(HttpResponse::Accepted().json(PasswordResetRequested {
        message: REQUESTED.into(),
    }))
}

fn invalid_link() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "This reset link is not valid, was already used or has expired. Ask for a new one.",
    )
}

/// The usable reset a token names.
async fn find(state: &AppState, token: &str) -> Result<store::ResetRow, ApiError> {
    if !well_formed(token) {
        return Err(invalid_link());
    }
    store::reset_by_token(&state.store, &token_hash(token))
        .await?
        .filter(|r| r.used_at.is_none() && r.expires_at > Utc::now())
        .ok_or_else(invalid_link)
}

/// Whose password a reset link sets, while it works.
#[utoipa::path(post, path = "/api/auth/password-reset/lookup", tag = "auth", request_body = LinkToken,
    responses((status = 200, body = PasswordResetPreview), (status = 404, body = ErrorBody)))]
pub async fn lookup(
    state: web::Data<AppState>,
    body: web::Json<LinkToken>,
) -> Result<web::Json<PasswordResetPreview>, ApiError> {
    let row = find(&state, &body.token).await?;
    Ok(web::Json(PasswordResetPreview {
        email: row.email,
        expires_at: row.expires_at,
    }))
}

/// Set a new password with a reset link: every session of the account ends, and this answer
/// signs it in afresh.
#[utoipa::path(post, path = "/api/auth/password-reset/complete", tag = "auth",
    request_body = PasswordResetComplete,
    responses((status = 200, body = shared::auth::SessionToken), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn complete(
    state: web::Data<AppState>,
    body: web::Json<PasswordResetComplete>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let row = find(&state, &body.token).await?;
    password::check_new(&body.password).map_err(|why| ApiError::invalid_field("password", why))?;
    // A disabled account keeps its password: its link admits nobody.
    let active = users::get(&state.store, row.user_id)
        .await?
        .is_some_and(|u| u.status == UserStatus::Active);
    if !active {
        return Err(invalid_link());
    }
    let hash = hash_password(&state, body.password).await?;
    let user = store::use_reset(&state.store, row.id, &hash)
        .await?
        .ok_or_else(invalid_link)?;
    tracing::info!(user.id = %user, "password reset: every session of the account ended");
    sign_in(&state, user).await
}

/// Change your own password. Every other session of the account ends; this one goes on (the
/// answer carries its renewed token and cookies).
#[utoipa::path(post, path = "/api/me/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, body = shared::auth::SessionToken), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn change(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let principal = auth.principal();
    if principal.impersonating.is_some() {
        return Err(ApiError::forbidden(
            "Stop impersonating to change your own password.",
        ));
    }
    let user = principal.user.id;
    let key = state.redis.key(&format!("password-change:{user}"));
    if let Some((_, ttl)) = state
        .redis
        .count_within_limits(&[(key, CHANGES_PER_HOUR)], 3600)
        .await
        .map_err(ApiError::unavailable)?
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "Too many password changes. Try again in {} minutes.",
                ttl.div_ceil(60).max(1)
            ),
        )
        .with_retry_after(ttl.max(1)));
    }
    password::check_new(&body.new_password)
        .map_err(|why| ApiError::invalid_field("new_password", why))?;
    let stored = users::password_hash(&state.store, user)
        .await?
        .unwrap_or_else(|| password::dummy_hash().to_string());
    let matches = state
        .auth
        .hasher
        .verify(stored, body.current_password)
        .await
        .map_err(hasher_error)?;
    if !matches {
        return Err(ApiError::invalid_field(
            "current_password",
            "is not your current password",
        ));
    }
    let hash = hash_password(&state, body.new_password).await?;
    let version = users::set_password(&state.store, user, &hash).await?;
    tracing::info!(user.id = %user, "password changed: every other session ended");
    let mut claims = principal.claims.clone();
    claims.ver = version;
    let mut me = principal.clone();
    me.user.auth_version = version;
    me.claims = claims.clone();
    issue(&state, &claims, me.me())
}
