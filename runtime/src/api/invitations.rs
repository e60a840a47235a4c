//! Invitations: `/api/tenants/{tenant_id}/invitations` for the tenant's admins (invite, list,
//! resend, revoke), and `/api/invitations/*` for the invitee (look a link up, accept as a new
//! account, or join with the account they are signed in with).
//!
//! The invitee's token travels in request bodies only, never in a URL a server logs.

use actix_web::{HttpResponse, web};
use chrono::{Duration, Utc};
use shared::auth::Me;
use shared::people::{
    DeliveryState, Invitation, InvitationAccept, InvitationCreate, InvitationPreview,
    InvitationStatus, LinkToken, MailDelivery,
};
use shared::resources::Page;
use shared::{ErrorBody, ErrorCode, TenantId};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::{self, Errors};
use super::{AppState, PageQuery, record};
use crate::auth::password;
use crate::people::{LinkPurpose, jobs as mail_jobs, token_hash, well_formed};
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::people::{self as store, InvitationRow, NewInvitation};
use crate::store::{StoreError, TenantTx, tenants, users};

fn delivery(row: &InvitationRow) -> Option<MailDelivery> {
    let attempts = row
        .job_attempts
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let state = match (row.job_status.as_deref(), row.sent_at) {
        (_, Some(_)) | (Some("succeeded"), None) => DeliveryState::Sent,
        (Some("failed" | "cancelled"), None) => DeliveryState::Failed,
        (Some(_), None) if row.job_last_error.is_some() => DeliveryState::Retrying,
        (Some(_), None) => DeliveryState::Queued,
        (None, None) => return None,
    };
    Some(MailDelivery {
        state,
        attempts,
        last_error: (state != DeliveryState::Sent)
            .then(|| row.job_last_error.clone())
            .flatten(),
        sent_at: row.sent_at,
        next_attempt_at: (state == DeliveryState::Retrying)
            .then_some(row.job_run_at)
            .flatten(),
    })
}

fn status(row: &InvitationRow) -> InvitationStatus {
    match row.status.as_str() {
        "accepted" => InvitationStatus::Accepted,
        "revoked" => InvitationStatus::Revoked,
        _ if row.expires_at <= Utc::now() => InvitationStatus::Expired,
        _ => InvitationStatus::Pending,
    }
}

fn to_dto(row: InvitationRow) -> Invitation {
    Invitation {
        id: row.id,
        status: status(&row),
        delivery: delivery(&row),
        email: row.email,
        role: row.role,
        invited_by: row.inviter,
        created_at: row.created_at,
        expires_at: row.expires_at,
        sends: u32::try_from(row.generation).unwrap_or(1),
    }
}

/// Counts one invitation mail against the tenant's hourly allowance.
async fn count_mail(state: &AppState, tenant: TenantId) -> Result<(), ApiError> {
    let limit = u64::from(state.people.settings.invitations_per_hour);
    let key = state.redis.key(&format!("{tenant}:invitations:mails"));
    let refused = state
        .redis
        .count_within_limits(&[(key, limit)], 3600)
        .await
        .map_err(ApiError::unavailable)?;
    match refused {
        None => Ok(()),
        Some((_, ttl)) => Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "This workspace has sent {limit} invitations in the last hour. Try again in {} minutes.",
                ttl.div_ceil(60).max(1)
            ),
        )
        .with_retry_after(ttl.max(1))),
    }
}

/// Queues the mail of generation `generation`'s link of invitation `id`, in `tx`.
async fn queue_mail(tx: &mut TenantTx, id: Uuid, generation: i32) -> Result<(), ApiError> {
    let job = mail_jobs::enqueue_invitation(tx, id, generation)
        .await?
        .ok_or_else(|| ApiError::internal(std::io::Error::other("mail job deduplicated")))?;
    store::set_mail_job(tx, id, job).await?;
    Ok(())
}

fn expiry(state: &AppState) -> chrono::DateTime<Utc> {
    Utc::now() + Duration::days(i64::from(state.people.settings.invitation_days))
}

/// The tenant's pending invitations (expired ones included, until resent or revoked), newest
/// first, with how their mail is doing.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/invitations", tag = "members",
    params(("tenant_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Invitation>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<Invitation>>, ApiError> {
    let paging = query.resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) = store::list_pending(&mut tx, paging.limit(), paging.offset()).await?;
    Ok(web::Json(
        paging.page(rows.into_iter().map(to_dto).collect(), total),
    ))
}

/// Invite someone by email with a role. The mail is sent in the background (see `delivery`).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/invitations", tag = "members",
    params(("tenant_id" = Uuid, Path)), request_body = InvitationCreate,
    responses((status = 201, body = Invitation), (status = 404, body = ErrorBody),
              (status = 409, description = "Already a member, or already invited", body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<InvitationCreate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tenant = auth.tenant()?;
    let email = users::normalise_email(&body.email);
    if !validate::is_email(&email) {
        return Err(ApiError::invalid_field(
            "email",
            "is not a valid email address",
        ));
    }
    let mut tx = state.store.tenant_tx(tenant).await?;
    tenants::current(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    users::lock_members(&mut tx).await?;
    if store::is_member_email(&mut tx, &email).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("{email} is already a member of this workspace."),
        ));
    }
    // Refused before it is counted: only mails sent count against the hourly allowance.
    if store::is_pending_email(&mut tx, &email).await? {
        return Err(already_pending(&email));
    }
    count_mail(&state, tenant).await?;
    let id = Uuid::new_v4();
    let token = state.people.links.token(LinkPurpose::Invitation, id, 1);
    let hash = token_hash(&token);
    store::create(
        &mut tx,
        &NewInvitation {
            id,
            email: &email,
            role: body.role,
            token_hash: &hash,
            invited_by: Some(auth.principal().user.id),
            expires_at: expiry(&state),
        },
    )
    .await
    .map_err(|e| match e {
        StoreError::Conflict(_) => already_pending(&email),
        other => other.into(),
    })?;
    queue_mail(&mut tx, id, 1).await?;
    record(
        &mut tx,
        &auth,
        Action::InvitationCreated,
        Target::Invitation(id),
        serde_json::json!({ "role": body.role.as_str() }),
    )
    .await?;
    let row = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The invitation"))?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(to_dto(row)))
}

fn already_pending(email: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!("An invitation to {email} is already pending: resend it instead."),
    )
}

fn closed(row: &InvitationRow) -> ApiError {
    let what = match row.status.as_str() {
        "accepted" => "was already accepted",
        _ => "was revoked",
    };
    ApiError::new(ErrorCode::Conflict, format!("This invitation {what}."))
}

/// Send the invitation again with a new link and a new expiry; the previous link stops working.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/invitations/{invitation_id}/resend", tag = "members",
    params(("tenant_id" = Uuid, Path), ("invitation_id" = Uuid, Path)),
    responses((status = 200, body = Invitation), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn resend(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Invitation>, ApiError> {
    let (_, id) = path.into_inner();
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let row = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The invitation"))?;
    if row.status != "pending" {
        return Err(closed(&row));
    }
    count_mail(&state, tenant).await?;
    let generation = row.generation + 1;
    let token = state
        .people
        .links
        .token(LinkPurpose::Invitation, id, generation);
    if !store::renew(
        &mut tx,
        id,
        row.generation,
        &token_hash(&token),
        expiry(&state),
    )
    .await?
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "This invitation changed meanwhile; reload and try again.",
        ));
    }
    queue_mail(&mut tx, id, generation).await?;
    record(
        &mut tx,
        &auth,
        Action::InvitationResent,
        Target::Invitation(id),
        serde_json::json!({ "sends": generation }),
    )
    .await?;
    let row = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The invitation"))?;
    tx.commit().await?;
    Ok(web::Json(to_dto(row)))
}

/// Revoke a pending invitation: its link stops working.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/invitations/{invitation_id}", tag = "members",
    params(("tenant_id" = Uuid, Path), ("invitation_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    if !store::revoke(&mut tx, id).await? {
        let row = store::get(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::not_found("The invitation"))?;
        return Err(closed(&row));
    }
    record(
        &mut tx,
        &auth,
        Action::InvitationRevoked,
        Target::Invitation(id),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

fn invalid_link() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "This invitation link is not valid. Open the whole link from the most recent invitation mail.",
    )
}

/// Why a found invitation cannot be used now, if it cannot.
fn unusable(row: &InvitationRow) -> Option<ApiError> {
    let message = match status(row) {
        InvitationStatus::Pending => return None,
        InvitationStatus::Expired => {
            "This invitation has expired. Ask whoever invited you to send it again."
        }
        InvitationStatus::Accepted => "This invitation has already been used. Sign in instead.",
        InvitationStatus::Revoked => "This invitation was withdrawn.",
    };
    Some(ApiError::new(ErrorCode::NotFound, message))
}

/// The invitation a token names, in its tenant's transaction (locked), usable or not.
async fn find(state: &AppState, token: &str) -> Result<(TenantTx, InvitationRow), ApiError> {
    if !well_formed(token) {
        return Err(invalid_link());
    }
    let hash = token_hash(token);
    let tenant = store::tenant_of_token(&state.store, &hash)
        .await?
        .ok_or_else(invalid_link)?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let row = store::by_token(&mut tx, &hash)
        .await?
        .ok_or_else(invalid_link)?;
    Ok((tx, row))
}

/// What an invitation link is for: the workspace, the address and the role, and whether that
/// address already has an account (then sign in to accept).
#[utoipa::path(post, path = "/api/invitations/lookup", tag = "members", request_body = LinkToken,
    responses((status = 200, body = InvitationPreview),
              (status = 404, description = "Not valid, expired, used or withdrawn", body = ErrorBody)))]
pub async fn lookup(
    state: web::Data<AppState>,
    body: web::Json<LinkToken>,
) -> Result<web::Json<InvitationPreview>, ApiError> {
    let (mut tx, row) = find(&state, &body.token).await?;
    if let Some(e) = unusable(&row) {
        return Err(e);
    }
    let tenant = tenants::current(&mut tx).await?.ok_or_else(invalid_link)?;
    tx.commit().await?;
    let account_exists = users::get_by_email(&state.store, &row.email)
        .await?
        .is_some();
    Ok(web::Json(InvitationPreview {
        tenant_name: tenant.name,
        email: row.email,
        role: row.role,
        invited_by: row.inviter,
        expires_at: row.expires_at,
        account_exists,
    }))
}

/// Records the invitee joining (in `tx`, by `actor`): the invitation accepted and the member
/// added, as one change.
async fn join_in(
    tx: &mut TenantTx,
    row: &InvitationRow,
    user: Uuid,
    actor: Actor,
) -> Result<(), ApiError> {
    if !store::accept(tx, row.id, user).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "This invitation has already been used. Sign in instead.",
        ));
    }
    users::add_member(tx, user, row.role)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::new(
                ErrorCode::Conflict,
                "You are already a member of this workspace.",
            ),
            other => other.into(),
        })?;
    for (action, target, details) in [
        (
            Action::InvitationAccepted,
            Target::Invitation(row.id),
            serde_json::json!({ "role": row.role.as_str() }),
        ),
        (
            Action::MemberAdded,
            Target::User(user),
            serde_json::json!({ "after": { "role": row.role.as_str() }, "invitation": row.id }),
        ),
    ] {
        audit::append(
            tx,
            &NewEvent {
                actor,
                action,
                target,
                details,
                request_id: super::request_id::current(),
            },
        )
        .await?;
    }
    Ok(())
}

/// Accept an invitation as a new account: choose a name and a password, and be signed in.
#[utoipa::path(post, path = "/api/invitations/accept", tag = "members", request_body = InvitationAccept,
    responses((status = 200, body = shared::auth::SessionToken),
              (status = 404, description = "Not valid, expired, used or withdrawn", body = ErrorBody),
              (status = 409, description = "The address has an account: sign in and join", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn accept(
    state: web::Data<AppState>,
    body: web::Json<InvitationAccept>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    // First without waiting on anything slow: is the link usable, and are the fields?
    let (tx, row) = find(&state, &body.token).await?;
    drop(tx);
    if let Some(e) = unusable(&row) {
        return Err(e);
    }
    let mut errors = Errors::default();
    errors.text("display_name", &body.display_name, true, 100);
    if let Err(why) = password::check_new(&body.password) {
        errors.add("password", why);
    }
    errors.finish()?;
    if users::get_by_email(&state.store, &row.email)
        .await?
        .is_some()
    {
        return Err(account_exists());
    }
    let hash = super::auth::hash_password(&state, body.password).await?;
    let (mut tx, row) = find(&state, &body.token).await?;
    if let Some(e) = unusable(&row) {
        return Err(e);
    }
    let user = users::create_in(&mut tx, &row.email, &body.display_name, &hash)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => account_exists(),
            other => other.into(),
        })?;
    join_in(&mut tx, &row, user.id, Actor::User(user.id)).await?;
    tx.commit().await?;
    tracing::info!(user.id = %user.id, invitation.id = %row.id, "joined by invitation as a new account");
    super::auth::sign_in(&state, user.id).await
}

fn account_exists() -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        "An account with this email already exists. Sign in with it to accept the invitation.",
    )
}

/// Accept an invitation with the account you are signed in with (its email must be the invited
/// one). Answers who you are now, with the new workspace.
#[utoipa::path(post, path = "/api/invitations/join", tag = "members", request_body = LinkToken,
    responses((status = 200, body = Me), (status = 401, body = ErrorBody),
              (status = 403, description = "Signed in as another address, or impersonating", body = ErrorBody),
              (status = 404, description = "Not valid, expired, used or withdrawn", body = ErrorBody),
              (status = 409, description = "Already a member", body = ErrorBody)))]
pub async fn join(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<LinkToken>,
) -> Result<web::Json<Me>, ApiError> {
    let principal = auth.principal();
    if principal.impersonating.is_some() {
        return Err(ApiError::forbidden(
            "Stop impersonating to accept an invitation with your own account.",
        ));
    }
    let (mut tx, row) = find(&state, &body.token).await?;
    if let Some(e) = unusable(&row) {
        return Err(e);
    }
    if users::normalise_email(&principal.user.email) != row.email {
        return Err(ApiError::forbidden(format!(
            "This invitation is for {}. Sign in with that address to accept it.",
            row.email
        )));
    }
    join_in(
        &mut tx,
        &row,
        principal.user.id,
        Actor::User(principal.user.id),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user.id = %principal.user.id, invitation.id = %row.id, "joined by invitation");
    let me = crate::auth::Principal {
        user: principal.user.clone(),
        memberships: users::memberships(&state.store, principal.user.id).await?,
        claims: principal.claims.clone(),
        impersonating: None,
    }
    .me();
    Ok(web::Json(me))
}
