//! `/api/tenants/{tenant_id}/llm-keys`: a tenant brings its own provider keys. A key is checked
//! with the provider, sealed (XChaCha20-Poly1305, bound to the tenant) and never shown again —
//! only its last four characters, and whether the provider has since refused it (saving the key
//! again clears that).

use actix_web::{HttpResponse, web};
use shared::resources::{LlmKey, LlmKeyInput, LlmProvider};
use shared::{ErrorBody, ErrorCode};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::{AppState, record};
use crate::llm::error::FailureKind;
use crate::llm::metering::key_slot;
use crate::store::audit::{Action, Target};
use crate::store::llm::{self as store_llm, KeyRow};

fn to_dto(row: KeyRow) -> Result<LlmKey, ApiError> {
    let provider = LlmProvider::parse(&row.provider)
        .ok_or_else(|| ApiError::internal(std::io::Error::other("unknown provider")))?;
    Ok(LlmKey {
        provider,
        hint: row.hint,
        updated_at: row.updated_at,
        refused_at: row.refused_at,
        refused_reason: row.refused_reason,
    })
}

/// The tenant's own keys (hints only).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/llm-keys", tag = "llm",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = Vec<LlmKey>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<LlmKey>>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let rows = store_llm::keys(&mut tx).await?;
    Ok(web::Json(
        rows.into_iter().map(to_dto).collect::<Result<_, _>>()?,
    ))
}

/// Set or replace the tenant's key for a provider, after the provider accepted it.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/llm-keys/{provider}", tag = "llm",
    params(("tenant_id" = Uuid, Path), ("provider" = LlmProvider, Path)), request_body = LlmKeyInput,
    responses((status = 200, body = LlmKey),
              (status = 422, description = "malformed, or refused by the provider", body = ErrorBody),
              (status = 503, description = "the provider could not be reached; nothing was saved", body = ErrorBody)))]
pub async fn put(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, LlmProvider)>,
    body: web::Json<LlmKeyInput>,
) -> Result<web::Json<LlmKey>, ApiError> {
    let (_, provider) = path.into_inner();
    let key = body.api_key.trim();
    if key.len() < 8 || key.len() > 500 || key.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_field(
            "api_key",
            "must be 8 to 500 characters without spaces",
        ));
    }
    if state.keyring.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "Storing keys needs an encryption key on the server (KONSTRUCT_ENCRYPTION_KEYS).",
        ));
    }
    match state.key_validator.check(provider, key).await {
        Ok(()) => {}
        Err(e) if matches!(e.kind, FailureKind::Auth(_)) => {
            return Err(ApiError::invalid_field(
                "api_key",
                "the provider refused this key",
            ));
        }
        Err(e) if e.kind == FailureKind::QuotaExceeded => {
            return Err(ApiError::invalid_field(
                "api_key",
                "the provider says this key's account is out of quota or credit",
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "The provider could not be reached to check the key; nothing was saved. Try again.",
            )
            .with_cause(e));
        }
    }
    let tenant = auth.tenant()?;
    let (sealed, version) = state
        .keyring
        .seal(tenant, &key_slot(provider.as_str()), key)
        .map_err(ApiError::internal)?;
    let hint = format!("…{}", &key[key.len() - 4..]);
    let mut tx = state.store.tenant_tx(tenant).await?;
    let row = store_llm::put_key(
        &mut tx,
        provider.as_str(),
        &sealed,
        i32::try_from(version).unwrap_or(i32::MAX),
        &hint,
    )
    .await?;
    record(
        &mut tx,
        &auth,
        Action::LlmKeySet,
        Target::LlmKey(provider.as_str()),
        serde_json::json!({ "hint": hint }),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(to_dto(row)?))
}

/// Delete the tenant's key for a provider; the platform's key is used again. Idempotent.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/llm-keys/{provider}", tag = "llm",
    params(("tenant_id" = Uuid, Path), ("provider" = LlmProvider, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, LlmProvider)>,
) -> Result<HttpResponse, ApiError> {
    let (_, provider) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    if store_llm::delete_key(&mut tx, provider.as_str()).await? {
        record(
            &mut tx,
            &auth,
            Action::LlmKeyDeleted,
            Target::LlmKey(provider.as_str()),
            serde_json::json!({}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
