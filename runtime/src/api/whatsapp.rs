//! `/api/tenants/{tenant_id}/channels/whatsapp`: the tenant's WhatsApp business numbers.
//!
//! A customer admin connects a number with its Cloud API id, its business account (WABA) and a
//! permanent access token. Meta itself is asked: the number must exist and be readable with that
//! token and belong to that account; its display number and verified name come from Meta, not
//! from the request. Connecting subscribes the app to the account's webhooks (without it none
//! arrive). The token is stored sealed and never shown again. A number connected to another
//! tenant is refused (409); connecting it again refreshes it; disconnecting erases the token and
//! keeps the conversations. A tenant bringing its own Meta app gives its app secret and gets a
//! webhook URL and verify token of its own.

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use rand::RngCore as _;
use shared::channel::ChannelKind;
use shared::resources::{
    ChannelHealth, OwnWebhook, Page, WhatsappConnection, WhatsappConnectionInput,
};
use shared::{ConnectionId, ErrorBody, ErrorCode};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, PageQuery, record};
use crate::channels::ConnectionSettings;
use crate::channels::whatsapp::graph::{CallError, codes};
use crate::channels::whatsapp::{NumberSettings, OwnApp, app_secret_slot, token_slot};
use crate::store::audit::{Action, Target};
use crate::store::channels::{self as store_channels, ConnectionRow, NewConnection};
use crate::store::{StoreError, agents};

const KIND: ChannelKind = ChannelKind::Whatsapp;

fn to_dto(
    state: &AppState,
    row: ConnectionRow,
    health: ChannelHealth,
) -> Result<WhatsappConnection, ApiError> {
    let ConnectionSettings::Whatsapp(s) =
        ConnectionSettings::parse(row.kind, &row.settings).map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal(std::io::Error::other(
            "a WhatsApp connection without WhatsApp settings",
        )));
    };
    let own_webhook = s.own_app.map(|app| OwnWebhook {
        callback_url: state
            .public_url
            .link(&format!("/webhooks/whatsapp/{}", s.phone_number_id)),
        verify_token: app.verify_token,
    });
    Ok(WhatsappConnection {
        id: row.id,
        phone_number_id: s.phone_number_id,
        waba_id: s.waba_id,
        display_phone_number: s.display_phone_number,
        verified_name: s.verified_name,
        quality_rating: s.quality_rating,
        token_hint: s.token_hint,
        agent_id: row.agent_id,
        status: row.status,
        templates: s.templates,
        own_webhook,
        health,
        created_at: row.created_at,
    })
}

fn meta_id(value: &str) -> bool {
    (5..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

fn validate(input: &WhatsappConnectionInput) -> Result<(), ApiError> {
    let mut e = Errors::default();
    if !meta_id(&input.phone_number_id) {
        e.add(
            "phone_number_id",
            "the number's id from WhatsApp Manager → API setup (digits, not the phone number)",
        );
    }
    if !meta_id(&input.waba_id) {
        e.add("waba_id", "the WhatsApp Business Account id (digits)");
    }
    let token = input.access_token.trim();
    if !(20..=1000).contains(&token.len())
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.|".contains(&b))
    {
        e.add(
            "access_token",
            "a permanent access token from Meta's Business settings",
        );
    }
    if input.templates.len() > 10 {
        e.add("templates", "at most 10 templates");
    }
    for (i, t) in input.templates.iter().enumerate() {
        let name_ok = (1..=512).contains(&t.name.len())
            && t.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            e.add(
                format!("templates[{i}].name"),
                "the template's name in WhatsApp Manager (lowercase letters, digits and _)",
            );
        }
        let lang_ok = (2..=10).contains(&t.language.len())
            && t.language
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !lang_ok {
            e.add(
                format!("templates[{i}].language"),
                "a language code, like en_US or de",
            );
        }
        if t.variables.len() > 10 {
            e.add(format!("templates[{i}].variables"), "at most 10 variables");
        }
    }
    if let Some(secret) = &input.app_secret {
        let secret = secret.trim();
        if !(16..=128).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            e.add(
                "app_secret",
                "the app secret from the app's Basic settings (letters and digits)",
            );
        }
    }
    e.finish()
}

/// The tenant's WhatsApp numbers (token hints only).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/channels/whatsapp", tag = "channels",
    params(("tenant_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<WhatsappConnection>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<WhatsappConnection>>, ApiError> {
    let paging = query.resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) =
        store_channels::list(&mut tx, KIND, paging.limit(), paging.offset()).await?;
    let ids: Vec<ConnectionId> = rows.iter().map(|r| r.id).collect();
    let mut health = store_channels::health(&mut tx, &ids).await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let h = health.remove(&row.id).unwrap_or_default();
            to_dto(&state, row, h)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(web::Json(paging.page(items, total)))
}

/// What Meta answered, as the API tells the admin.
fn meta_refused(field: &str, e: CallError, what: &str) -> ApiError {
    match e {
        CallError::Refused(r) if r.code == Some(codes::ACCESS_TOKEN) => ApiError::invalid_field(
            "access_token",
            "Meta refused this access token (invalid, expired or revoked)",
        ),
        CallError::Refused(r)
            if matches!(r.code, Some(codes::NO_OBJECT) | Some(codes::PERMISSION)) =>
        {
            ApiError::invalid_field(
                field,
                format!("{what} cannot be read with this access token"),
            )
        }
        CallError::Refused(r) if r.http < 500 => {
            ApiError::invalid_field(field, format!("Meta refused: {}", r.message))
        }
        e => ApiError::new(
            ErrorCode::Unavailable,
            "Meta could not be reached to check the number; nothing was saved. Try again.",
        )
        .with_cause(e),
    }
}

/// Why an agent without a business function cannot answer a WhatsApp number.
pub const NEEDS_BUSINESS_FUNCTION: &str = "this AI employee has no business function: Meta's \
    terms allow only an assistant for the business's own customers on WhatsApp, so say what it \
    helps customers with (its business function) before it answers a number";

/// Connect (or refresh) a WhatsApp business number for this tenant.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/channels/whatsapp", tag = "channels",
    params(("tenant_id" = Uuid, Path)), request_body = WhatsappConnectionInput,
    responses((status = 201, description = "connected", body = WhatsappConnection),
              (status = 200, description = "a number of this tenant was connected again", body = WhatsappConnection),
              (status = 409, description = "the number is connected to another account", body = ErrorBody),
              (status = 422, description = "invalid, or the number cannot be read with the token", body = ErrorBody),
              (status = 503, description = "Meta could not be reached, or the server cannot store tokens", body = ErrorBody)))]
pub async fn connect(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<WhatsappConnectionInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    validate(&input)?;
    if state.keyring.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "Storing tokens needs an encryption key on the server (KONSTRUCT_ENCRYPTION_KEYS).",
        ));
    }
    let tenant = auth.tenant()?;
    {
        let mut tx = state.store.tenant_tx(tenant).await?;
        match agents::get(&mut tx, input.agent_id).await? {
            None => {
                return Err(ApiError::invalid_field(
                    "agent_id",
                    "no such AI employee in this tenant",
                ));
            }
            Some(agent) if agent.business_function.trim().is_empty() => {
                return Err(ApiError::invalid_field("agent_id", NEEDS_BUSINESS_FUNCTION));
            }
            Some(_) => {}
        }
    }
    let token = input.access_token.trim();
    let graph = state.channels.whatsapp.graph();
    // What the number is comes from Meta, not from the request.
    let number = graph
        .phone_number(token, &input.phone_number_id)
        .await
        .map_err(|e| meta_refused("phone_number_id", e, "This number"))?;
    if number.id != input.phone_number_id {
        return Err(ApiError::invalid_field(
            "phone_number_id",
            "Meta describes another number for this id",
        ));
    }
    let in_account = graph
        .account_numbers(token, &input.waba_id)
        .await
        .map_err(|e| meta_refused("waba_id", e, "This business account"))?;
    if !in_account.iter().any(|n| n.id == input.phone_number_id) {
        return Err(ApiError::invalid_field(
            "waba_id",
            "the number does not belong to this business account",
        ));
    }
    // Without the subscription no webhook arrives. Asked before anything is saved, so a refusal
    // saves nothing; a repeat is harmless (Meta answers success again).
    graph
        .subscribe(token, &input.waba_id)
        .await
        .map_err(|e| meta_refused("waba_id", e, "This business account's webhooks"))?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let existing = store_channels::find(&mut tx, KIND, &input.phone_number_id).await?;
    let id = existing
        .as_ref()
        .map_or_else(|| ConnectionId::from_uuid(Uuid::new_v4()), |row| row.id);
    let (sealed, version) = state
        .keyring
        .seal(tenant, &token_slot(id), token)
        .map_err(ApiError::internal)?;
    let own_app = match input.app_secret.as_deref().map(str::trim) {
        Some(secret) => {
            let (sealed_secret, _) = state
                .keyring
                .seal(tenant, &app_secret_slot(id), secret)
                .map_err(ApiError::internal)?;
            let mut bytes = [0u8; 24];
            rand::rng().fill_bytes(&mut bytes);
            Some(OwnApp {
                verify_token: hex::encode(bytes),
                app_secret_sealed: base64::engine::general_purpose::STANDARD.encode(sealed_secret),
            })
        }
        // Reconnecting without a secret keeps the own app (and the verify token entered in its
        // dashboard); a disconnected number has none left.
        None => existing.as_ref().and_then(|row| {
            match ConnectionSettings::parse(row.kind, &row.settings) {
                Ok(ConnectionSettings::Whatsapp(s)) => s.own_app,
                _ => None,
            }
        }),
    };
    let token_hint = format!("…{}", &token[token.len() - 4..]);
    let settings = ConnectionSettings::Whatsapp(NumberSettings {
        phone_number_id: input.phone_number_id.clone(),
        waba_id: input.waba_id.clone(),
        display_phone_number: number.display_phone_number.clone(),
        verified_name: number.verified_name.clone(),
        quality_rating: number.quality_rating.clone(),
        token_hint: token_hint.clone(),
        templates: input.templates.clone(),
        own_app,
    });
    let display = if number.verified_name.is_empty() {
        number.display_phone_number.clone()
    } else {
        number.verified_name.clone()
    };
    let connection = NewConnection {
        id,
        kind: KIND,
        external_id: &input.phone_number_id,
        display_name: &display,
        agent_id: input.agent_id,
        settings: settings.to_json(),
        secret_ciphertext: &sealed,
        secret_key_version: version,
    };
    let (row, created) = match existing {
        Some(_) => (store_channels::refresh(&mut tx, &connection).await?, false),
        None => match store_channels::insert(&mut tx, &connection).await {
            Ok(row) => (row, true),
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "This WhatsApp number is already connected to another Konstruct account.",
                ));
            }
            Err(e) => return Err(e.into()),
        },
    };
    store_channels::note_error(&mut tx, row.id, None).await?;
    record(
        &mut tx,
        &auth,
        if created {
            Action::ChannelConnected
        } else {
            Action::ChannelRefreshed
        },
        Target::Connection(row.id),
        serde_json::json!({
            "kind": KIND.as_str(),
            "phone_number_id": input.phone_number_id,
            "waba_id": input.waba_id,
            "agent_id": input.agent_id,
            "token_hint": token_hint,
            "own_app": input.app_secret.is_some(),
            "templates": input.templates.len(),
        }),
    )
    .await?;
    let health = store_channels::health(&mut tx, &[row.id])
        .await?
        .remove(&row.id)
        .unwrap_or_default();
    tx.commit().await?;
    let dto = to_dto(&state, row, health)?;
    Ok(if created {
        HttpResponse::Created().json(dto)
    } else {
        HttpResponse::Ok().json(dto)
    })
}

/// Disconnect a WhatsApp number: it stops being answered and its token is erased.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/channels/whatsapp/{connection_id}", tag = "channels",
    params(("tenant_id" = Uuid, Path), ("connection_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disconnect(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, ConnectionId)>,
) -> Result<HttpResponse, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = store_channels::disconnect(&mut tx, id, KIND)
        .await?
        .ok_or_else(|| ApiError::not_found("This connected WhatsApp number"))?;
    let phone_number_id = match ConnectionSettings::parse(row.kind, &row.settings) {
        Ok(ConnectionSettings::Whatsapp(s)) => s.phone_number_id,
        _ => String::new(),
    };
    record(
        &mut tx,
        &auth,
        Action::ChannelDisconnected,
        Target::Connection(row.id),
        serde_json::json!({ "kind": KIND.as_str(), "phone_number_id": phone_number_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
