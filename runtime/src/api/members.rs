//! `/api/tenants/{tenant_id}/members`: who belongs to a tenant, with which role.

use actix_web::{HttpResponse, web};
use shared::auth::TenantRole;
use shared::resources::{Member, MemberCreate, MemberUpdate, Page};
use shared::{ErrorBody, ErrorCode};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::{self, Errors};
use super::{AppState, PageQuery, record};
use crate::auth::password;
use crate::store::audit::{Action, Target};
use crate::store::users::{self, MemberRow};
use crate::store::{StoreError, tenants};

fn to_dto(row: MemberRow) -> Result<Member, ApiError> {
    Ok(Member {
        user_id: row.user_id,
        email: row.email,
        display_name: row.display_name,
        role: row.role,
        joined_at: row.created_at,
        last_sign_in_at: row.last_sign_in_at,
    })
}

/// The tenant's members and their roles.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/members", tag = "members",
    params(("tenant_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Member>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<Member>>, ApiError> {
    let paging = query.resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) = users::list_members(&mut tx, paging.limit(), paging.offset()).await?;
    let items = rows
        .into_iter()
        .map(to_dto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(web::Json(paging.page(items, total)))
}

/// Create an account with a role in the tenant, or add an existing account (platform admin).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/members", tag = "members",
    params(("tenant_id" = Uuid, Path)), request_body = MemberCreate,
    responses((status = 201, body = Member), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<MemberCreate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tenant = shared::TenantId::from_uuid(path.into_inner());
    let mut errors = Errors::default();
    if !validate::is_email(&body.email) {
        errors.add("email", "is not a valid email address");
    }
    errors.text("display_name", &body.display_name, false, 100);
    let existing = users::get_by_email(&state.store, &body.email).await?;
    if existing.is_none() {
        match body.password.as_deref().map(password::check_new) {
            Some(Ok(())) => {}
            Some(Err(why)) => errors.add("password", why),
            None => errors.add("password", "is required for a new account"),
        }
    }
    errors.finish()?;
    // Hash first (slow, outside the transaction); then the account, if new, and the membership
    // are made in one transaction: a failure leaves no account behind.
    let hash = match (&existing, body.password.clone()) {
        (None, Some(pw)) => Some(super::auth::hash_password(&state, pw).await?),
        _ => None,
    };
    let mut tx = state.store.tenant_tx(tenant).await?;
    tenants::current(&mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("The tenant"))?;
    let user = match (existing, hash) {
        (Some(user), _) => user,
        (None, Some(hash)) => users::create_in(&mut tx, &body.email, &body.display_name, &hash)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ApiError::new(
                    ErrorCode::Conflict,
                    "An account with this email was just created; try again.",
                ),
                other => other.into(),
            })?,
        (None, None) => {
            return Err(ApiError::invalid_field(
                "password",
                "is required for a new account",
            ));
        }
    };
    users::add_member(&mut tx, user.id, body.role)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::new(ErrorCode::Conflict, "This account is already a member.")
            }
            other => other.into(),
        })?;
    record(
        &mut tx,
        &auth,
        Action::MemberAdded,
        Target::User(user.id),
        serde_json::json!({ "after": { "role": body.role.as_str() } }),
    )
    .await?;
    let member = users::get_member(&mut tx, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("The member"))?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(to_dto(member)?))
}

/// Change a member's role. Their open sessions end, so the new role applies at once.
#[utoipa::path(patch, path = "/api/tenants/{tenant_id}/members/{user_id}", tag = "members",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = MemberUpdate,
    responses((status = 200, body = Member), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<MemberUpdate>,
) -> Result<web::Json<Member>, ApiError> {
    let (_, user) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    users::lock_members(&mut tx).await?;
    let before = users::get_member(&mut tx, user)
        .await?
        .ok_or_else(|| ApiError::not_found("The member"))?;
    if before.role == TenantRole::CustomerAdmin
        && body.role != TenantRole::CustomerAdmin
        && users::count_admins(&mut tx).await? <= 1
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "The tenant's last customer admin cannot be demoted.",
        ));
    }
    users::set_member_role(&mut tx, user, body.role).await?;
    record(
        &mut tx,
        &auth,
        Action::MemberRoleChanged,
        Target::User(user),
        serde_json::json!({ "before": { "role": before.role.as_str() }, "after": { "role": body.role.as_str() } })).await?;
    let after = users::get_member(&mut tx, user)
        .await?
        .ok_or_else(|| ApiError::not_found("The member"))?;
    tx.commit().await?;
    Ok(web::Json(to_dto(after)?))
}

/// Remove a member from the tenant (the account stays). Their open sessions end.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/members/{user_id}", tag = "members",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (_, user) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    users::lock_members(&mut tx).await?;
    let before = users::get_member(&mut tx, user)
        .await?
        .ok_or_else(|| ApiError::not_found("The member"))?;
    if before.role == TenantRole::CustomerAdmin && users::count_admins(&mut tx).await? <= 1 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "The tenant's last customer admin cannot be removed.",
        ));
    }
    users::remove_member(&mut tx, user).await?;
    record(
        &mut tx,
        &auth,
        Action::MemberRemoved,
        Target::User(user),
        serde_json::json!({ "before": { "role": before.role.as_str() } }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
