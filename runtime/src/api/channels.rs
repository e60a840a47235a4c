//! `/api/tenants/{tenant_id}/channels/slack`: the tenant's Slack installations. Until the OAuth
//! flow exists, a customer admin registers one by hand: the workspace, the bot user, the bot
//! token (stored sealed, never shown again) and the agent that answers there. Slack itself is
//! asked whose token it is (`auth.test`) and which app its bot belongs to (`bots.info`): only a
//! bot of the platform's own app in the workspace named is accepted, so no tenant can claim a
//! workspace with another company's token or another app's. Registering a workspace again
//! refreshes it (a reinstall brings a new token); disconnecting erases the token and keeps the
//! conversations.

use actix_web::{HttpResponse, web};
use shared::channel::{ChannelKind, ConnectionStatus};
use shared::resources::{ChannelHealth, Page, SlackInstallation, SlackInstallationInput};
use shared::{ConnectionId, ErrorBody, ErrorCode};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, PageQuery, record};
use crate::channels::slack::{InstallationSettings, TokenCheckError, token_slot};
use crate::channels::{ConnectionSettings, slack};
use crate::store::audit::{Action, Target};
use crate::store::channels::{self as store_channels, ConnectionRow, NewConnection};
use crate::store::{StoreError, agents};

const KIND: ChannelKind = ChannelKind::Slack;

fn to_dto(row: ConnectionRow, health: ChannelHealth) -> Result<SlackInstallation, ApiError> {
    let ConnectionSettings::Slack(settings) =
        ConnectionSettings::parse(row.kind, &row.settings).map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal(std::io::Error::other(
            "a Slack installation without Slack settings",
        )));
    };
    Ok(SlackInstallation {
        id: row.id,
        team_id: if settings.team_id.is_empty() {
            row.external_id
        } else {
            settings.team_id
        },
        enterprise_id: settings.enterprise_id,
        team_name: settings.team_name,
        bot_user_id: settings.bot_user_id,
        token_hint: settings.token_hint,
        scopes: settings.scopes,
        agent_id: row.agent_id,
        status: row.status,
        health,
        created_at: row.created_at,
    })
}

fn slack_id(value: &str, first: char) -> bool {
    (2..=32).contains(&value.len())
        && value.starts_with(first)
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn validate(input: &SlackInstallationInput) -> Result<(), ApiError> {
    let mut e = Errors::default();
    if !slack_id(&input.team_id, 'T') {
        e.add("team_id", "a Slack workspace id, like T0123ABCD");
    }
    if let Some(enterprise) = &input.enterprise_id
        && !slack_id(enterprise, 'E')
    {
        e.add("enterprise_id", "a Slack organisation id, like E0123ABCD");
    }
    if !(slack_id(&input.bot_user_id, 'U') || slack_id(&input.bot_user_id, 'W')) {
        e.add("bot_user_id", "a Slack user id, like U0123ABCD");
    }
    let token = input.bot_token.trim();
    if !token.starts_with("xoxb-")
        || !(16..=300).contains(&token.len())
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        e.add("bot_token", "a bot token, starting with xoxb-");
    }
    if let Some(name) = &input.team_name {
        e.text("team_name", name, false, 200);
    }
    if input.scopes.len() > 50
        || input
            .scopes
            .iter()
            .any(|s| s.is_empty() || s.len() > 100 || s.chars().any(char::is_whitespace))
    {
        e.add("scopes", "up to 50 scope names, like chat:write");
    }
    e.finish()
}

/// The tenant's Slack installations (token hints only).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/channels/slack", tag = "channels",
    params(("tenant_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<SlackInstallation>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<SlackInstallation>>, ApiError> {
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
            to_dto(row, h)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(web::Json(paging.page(items, total)))
}

/// Slack's word on a token: the workspace and bot user it belongs to, and the bot's app.
async fn ask_slack(
    api: &slack::SlackApi,
    token: &str,
) -> Result<(slack::Identity, slack::BotInfo), ApiError> {
    let refused = |why: String| {
        ApiError::invalid_field("bot_token", format!("Slack refused this token ({why})"))
    };
    let unreachable = |e: TokenCheckError| {
        ApiError::new(
            ErrorCode::Unavailable,
            "Slack could not be reached to check the token; nothing was saved. Try again.",
        )
        .with_cause(e)
    };
    let identity = match api.identify(token).await {
        Ok(identity) => identity,
        Err(TokenCheckError::Refused(why)) => return Err(refused(why)),
        Err(e @ TokenCheckError::Unreachable(_)) => return Err(unreachable(e)),
    };
    let Some(bot_id) = identity.bot_id.clone() else {
        return Err(ApiError::invalid_field(
            "bot_token",
            "this is not a bot token (Slack names no bot for it)",
        ));
    };
    let bot = match api.bot_info(token, &bot_id).await {
        Ok(bot) => bot,
        Err(TokenCheckError::Refused(why)) => {
            return Err(ApiError::invalid_field(
                "bot_token",
                format!(
                    "Slack would not say which app this bot belongs to ({why}); the app needs \
                     the users:read scope"
                ),
            ));
        }
        Err(e @ TokenCheckError::Unreachable(_)) => return Err(unreachable(e)),
    };
    Ok((identity, bot))
}

/// Register (or refresh) a Slack installation for this tenant.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/channels/slack", tag = "channels",
    params(("tenant_id" = Uuid, Path)), request_body = SlackInstallationInput,
    responses((status = 201, description = "registered", body = SlackInstallation),
              (status = 200, description = "an existing installation of this tenant was refreshed", body = SlackInstallation),
              (status = 409, description = "the workspace is connected to another account", body = ErrorBody),
              (status = 422, description = "invalid, or not a bot of the platform's Slack app in that workspace", body = ErrorBody),
              (status = 503, description = "Slack could not be reached, or the platform's Slack app is not configured", body = ErrorBody)))]
pub async fn register(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<SlackInstallationInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    validate(&input)?;
    if state.keyring.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "Storing tokens needs an encryption key on the server (KONSTRUCT_ENCRYPTION_KEYS).",
        ));
    }
    let slack_channel = &state.channels.slack;
    let Some(our_app) = slack_channel.app_id() else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "Slack installations need the platform's Slack app id on the server \
             (KONSTRUCT_SLACK_APP_ID).",
        ));
    };
    let token = input.bot_token.trim();
    // The workspace, bot user and app come from Slack, not from the request.
    let (identity, bot) = ask_slack(slack_channel.api(), token).await?;
    let mut mismatch = Errors::default();
    if identity.team_id != input.team_id {
        mismatch.add("team_id", "the token belongs to another Slack workspace");
    }
    if identity.user_id != input.bot_user_id {
        mismatch.add("bot_user_id", "the token belongs to another bot user");
    }
    if bot.app_id.as_deref() != Some(our_app)
        || bot.deleted
        || bot.user_id.as_deref() != Some(identity.user_id.as_str())
    {
        mismatch.add(
            "bot_token",
            "the token's bot does not belong to this platform's Slack app",
        );
    }
    mismatch.finish()?;
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    if agents::get(&mut tx, input.agent_id).await?.is_none() {
        return Err(ApiError::invalid_field(
            "agent_id",
            "no such AI employee in this tenant",
        ));
    }
    let existing = store_channels::find(&mut tx, KIND, &input.team_id).await?;
    let id = existing
        .as_ref()
        .map_or_else(|| ConnectionId::from_uuid(Uuid::new_v4()), |row| row.id);
    let (sealed, version) = state
        .keyring
        .seal(tenant, &token_slot(id), token)
        .map_err(ApiError::internal)?;
    let token_hint = format!("…{}", &token[token.len() - 4..]);
    let settings = ConnectionSettings::Slack(InstallationSettings {
        team_id: input.team_id.clone(),
        team_name: input.team_name.clone(),
        enterprise_id: identity.enterprise_id.or(input.enterprise_id),
        bot_user_id: input.bot_user_id.clone(),
        bot_id: Some(bot.id.clone()),
        app_id: bot.app_id.clone(),
        scopes: input.scopes.clone(),
        token_hint: token_hint.clone(),
    });
    let connection = NewConnection {
        id,
        kind: KIND,
        external_id: &input.team_id,
        display_name: input.team_name.as_deref().unwrap_or(&input.team_id),
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
                    "This Slack workspace is already connected to another Konstruct account.",
                ));
            }
            Err(e) => return Err(e.into()),
        },
    };
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
            "team_id": input.team_id,
            "agent_id": input.agent_id,
            "token_hint": token_hint,
        }),
    )
    .await?;
    let health = store_channels::health(&mut tx, &[row.id])
        .await?
        .remove(&row.id)
        .unwrap_or_default();
    tx.commit().await?;
    let dto = to_dto(row, health)?;
    Ok(if created {
        HttpResponse::Created().json(dto)
    } else {
        HttpResponse::Ok().json(dto)
    })
}

/// Disconnect a Slack installation: it stops being answered and its token is erased.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/channels/slack/{connection_id}", tag = "channels",
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
        .ok_or_else(|| ApiError::not_found("This connected Slack installation"))?;
    debug_assert_eq!(row.status, ConnectionStatus::Disabled);
    let team_id = match ConnectionSettings::parse(row.kind, &row.settings) {
        Ok(ConnectionSettings::Slack(s)) => s.team_id,
        _ => String::new(),
    };
    record(
        &mut tx,
        &auth,
        Action::ChannelDisconnected,
        Target::Connection(row.id),
        serde_json::json!({ "kind": KIND.as_str(), "team_id": team_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
