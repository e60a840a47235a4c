//! `GET /api/openapi.json`: the API described from the handlers' own annotations.

use actix_web::web;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Konstruct API", description = "Operators, tenants and AI employees."),
    paths(
        super::auth::login, super::auth::logout, super::auth::refresh, super::auth::me,
        super::admin::start_impersonation, super::admin::stop_impersonation,
        document, super::tools::list,
        super::tenants::list, super::tenants::create, super::tenants::get, super::tenants::update,
        super::tenants::delete, super::limits::get, super::limits::put,
        super::agents::list, super::agents::create, super::agents::get, super::agents::replace,
        super::agents::delete,
        super::members::list, super::members::create, super::members::update,
        super::members::remove,
        super::invitations::list, super::invitations::create, super::invitations::resend,
        super::invitations::revoke, super::invitations::lookup, super::invitations::accept,
        super::invitations::join,
        super::passwords::request, super::passwords::lookup, super::passwords::complete,
        super::passwords::change,
        super::llm_keys::list, super::llm_keys::put, super::llm_keys::delete,
        super::chat::send, super::chat::list,
        super::channels::list, super::channels::register, super::channels::disconnect,
        super::whatsapp::list, super::whatsapp::connect, super::whatsapp::disconnect,
        super::platform::info, super::settings::get, super::settings::put,
        super::settings::time_zones, super::end_users::list, super::end_users::get,
        super::audit::head, super::audit::verify,
        super::audit::events::list, super::audit::events::export, super::audit::events::filters,
        super::jobs::list, super::jobs::get, super::jobs::retry,
        super::end_users::erase, super::end_users::memories, super::end_users::delete_memory,
        super::knowledge::list, super::knowledge::upload, super::knowledge::import,
        super::knowledge::search, super::knowledge::index, super::knowledge::change_index,
        super::knowledge::get, super::knowledge::update, super::knowledge::delete,
        super::knowledge::retry,
        super::tools::tenant_list, super::tools::create, super::tools::get, super::tools::replace,
        super::tools::delete, super::tools::test, super::tools::calls,
        super::conversations::list, super::conversations::get, super::conversations::claim,
        super::conversations::assign, super::conversations::reply, super::conversations::note,
        super::conversations::status, super::conversations::hand_back,
        super::conversations::counts, super::conversations::events,
        super::conversations::my_notifications, super::conversations::set_my_notifications,
        super::conversations::handoff_settings, super::conversations::set_handoff_settings,
        super::usage::report, super::usage::export, super::usage::platform, super::budgets::list, super::budgets::put_tenant,
        super::budgets::delete_tenant, super::budgets::put_agent, super::budgets::delete_agent,
        super::budgets::alerts,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = [])),
)]
pub struct ApiDoc;

#[derive(Debug)]
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                super::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3 document")))]
pub async fn document() -> web::Json<utoipa::openapi::OpenApi> {
    web::Json(ApiDoc::openapi())
}
