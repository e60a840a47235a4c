//! `GET /api/platform`: where this Konstruct is reached — the public base URL and the webhook
//! URLs operators configure at the providers — always from the configured public URL, never from
//! the request's Host header (which a client chooses).

use actix_web::web;
use shared::ErrorBody;
use shared::resources::PlatformInfo;

use super::AppState;
use super::auth::Authorized;

/// The platform's public URLs.
#[utoipa::path(get, path = "/api/platform", tag = "meta",
    responses((status = 200, body = PlatformInfo), (status = 401, body = ErrorBody)))]
pub async fn info(_auth: Authorized, state: web::Data<AppState>) -> web::Json<PlatformInfo> {
    web::Json(PlatformInfo {
        public_url: state.public_url.base().to_string(),
        slack_events_url: state.public_url.link("/webhooks/slack/events"),
        whatsapp_webhook_url: state.public_url.link("/webhooks/whatsapp"),
        whatsapp_configured: state.channels.whatsapp.configured(),
        slack_app_id: state.channels.slack.app_id().map(str::to_string),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}
