//! The route table: every API endpoint with the access it requires, in one visible place.
//!
//! `configure` registers exactly these routes, and the `Authorized` extractor enforces the access
//! listed here for the route that matched, so the table cannot drift from what runs. The
//! authorization-matrix test walks this table (and checks it against the OpenAPI document).

use actix_web::http::Method;
use actix_web::{guard, web};
use shared::ErrorCode;
use shared::auth::Permission;

use super::error::ApiError;
use super::{
    admin, agents, audit, auth, budgets, channels, chat, conversations, end_users, invitations,
    jobs, knowledge, limits, llm_keys, members, openapi, passwords, platform, settings, tenants,
    tools, usage, whatsapp,
};

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any valid session.
    Session,
    /// A platform admin (not impersonating) with this permission.
    Platform(Permission),
    /// This permission inside the tenant named by the route's `{tenant_id}`.
    Tenant(Permission),
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

macro_rules! routes {
    ($($method:ident $path:literal => $access:expr, $handler:path;)*) => {
        /// Every API route.
        pub const ROUTES: &[RouteSpec] = &[
            $(RouteSpec { method: stringify!($method), path: $path, access: $access },)*
        ];

        /// Registers every route. A resource per (method, path) with a method guard, so paths
        /// with several methods fall through to the next resource; a final resource per path
        /// answers 405 for the other methods.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.service(
                web::resource($path)
                    .guard(guard::Method(Method::$method))
                    .route(web::route().to($handler)),
            );)*
            let mut seen: Vec<&'static str> = Vec::new();
            for spec in ROUTES {
                if !seen.contains(&spec.path) {
                    seen.push(spec.path);
                    cfg.service(web::resource(spec.path).default_service(web::to(method_not_allowed)));
                }
            }
        }
    };
}

use Access::{Platform, Public, Session, Tenant};
use Permission::*;

routes! {
    POST   "/api/auth/login"                              => Public, auth::login;
    POST   "/api/auth/logout"                             => Session, auth::logout;
    POST   "/api/auth/refresh"                            => Session, auth::refresh;
    GET    "/api/me"                                      => Session, auth::me;
    POST   "/api/me/password"                             => Session, passwords::change;
    POST   "/api/auth/password-reset"                     => Public, passwords::request;
    POST   "/api/auth/password-reset/lookup"              => Public, passwords::lookup;
    POST   "/api/auth/password-reset/complete"            => Public, passwords::complete;
    POST   "/api/invitations/lookup"                      => Public, invitations::lookup;
    POST   "/api/invitations/accept"                      => Public, invitations::accept;
    POST   "/api/invitations/join"                        => Session, invitations::join;
    POST   "/api/admin/impersonate"                       => Platform(Impersonate), admin::start_impersonation;
    DELETE "/api/admin/impersonate"                       => Session, admin::stop_impersonation;
    GET    "/api/openapi.json"                            => Public, openapi::document;
    GET    "/api/tools"                                   => Session, tools::list;
    GET    "/api/platform"                                => Session, platform::info;
    GET    "/api/time-zones"                              => Session, settings::time_zones;
    GET    "/api/tenants"                                 => Platform(TenantsManage), tenants::list;
    GET    "/api/platform/usage"                          => Platform(TenantsManage), usage::platform;
    POST   "/api/tenants"                                 => Platform(TenantsManage), tenants::create;
    GET    "/api/tenants/{tenant_id}"                     => Tenant(TenantRead), tenants::get;
    PATCH  "/api/tenants/{tenant_id}"                     => Platform(TenantsManage), tenants::update;
    DELETE "/api/tenants/{tenant_id}"                     => Platform(TenantsManage), tenants::delete;
    GET    "/api/tenants/{tenant_id}/limits"              => Tenant(TenantRead), limits::get;
    PUT    "/api/tenants/{tenant_id}/limits"              => Platform(TenantsManage), limits::put;
    GET    "/api/tenants/{tenant_id}/settings"            => Tenant(TenantRead), settings::get;
    PUT    "/api/tenants/{tenant_id}/settings"            => Tenant(SettingsManage), settings::put;
    GET    "/api/tenants/{tenant_id}/end-users"           => Tenant(EndUsersRead), end_users::list;
    GET    "/api/tenants/{tenant_id}/end-users/{end_user_id}" => Tenant(EndUsersRead), end_users::get;
    DELETE "/api/tenants/{tenant_id}/end-users/{end_user_id}" => Tenant(EndUsersManage), end_users::erase;
    GET    "/api/tenants/{tenant_id}/end-users/{end_user_id}/memories" => Tenant(EndUsersManage), end_users::memories;
    DELETE "/api/tenants/{tenant_id}/end-users/{end_user_id}/memories/{memory_id}" => Tenant(EndUsersManage), end_users::delete_memory;
    GET    "/api/tenants/{tenant_id}/knowledge"           => Tenant(KnowledgeRead), knowledge::list;
    POST   "/api/tenants/{tenant_id}/knowledge"           => Tenant(KnowledgeManage), knowledge::upload;
    POST   "/api/tenants/{tenant_id}/knowledge/import"    => Tenant(KnowledgeManage), knowledge::import;
    POST   "/api/tenants/{tenant_id}/knowledge/search"    => Tenant(KnowledgeRead), knowledge::search;
    GET    "/api/tenants/{tenant_id}/knowledge/index"     => Tenant(KnowledgeRead), knowledge::index;
    PUT    "/api/tenants/{tenant_id}/knowledge/index"     => Tenant(KnowledgeManage), knowledge::change_index;
    GET    "/api/tenants/{tenant_id}/knowledge/{document_id}" => Tenant(KnowledgeRead), knowledge::get;
    PUT    "/api/tenants/{tenant_id}/knowledge/{document_id}" => Tenant(KnowledgeManage), knowledge::update;
    DELETE "/api/tenants/{tenant_id}/knowledge/{document_id}" => Tenant(KnowledgeManage), knowledge::delete;
    POST   "/api/tenants/{tenant_id}/knowledge/{document_id}/retry" => Tenant(KnowledgeManage), knowledge::retry;
    GET    "/api/tenants/{tenant_id}/tools"               => Tenant(ToolsRead), tools::tenant_list;
    POST   "/api/tenants/{tenant_id}/tools"               => Tenant(ToolsManage), tools::create;
    GET    "/api/tenants/{tenant_id}/tools/{tool_id}"     => Tenant(ToolsRead), tools::get;
    PUT    "/api/tenants/{tenant_id}/tools/{tool_id}"     => Tenant(ToolsManage), tools::replace;
    DELETE "/api/tenants/{tenant_id}/tools/{tool_id}"     => Tenant(ToolsManage), tools::delete;
    POST   "/api/tenants/{tenant_id}/tools/{tool_id}/test" => Tenant(ToolsManage), tools::test;
    GET    "/api/tenants/{tenant_id}/tool-calls"          => Tenant(ToolsRead), tools::calls;
    GET    "/api/tenants/{tenant_id}/agents"              => Tenant(AgentsRead), agents::list;
    POST   "/api/tenants/{tenant_id}/agents"              => Tenant(AgentsWrite), agents::create;
    GET    "/api/tenants/{tenant_id}/agents/{agent_id}"   => Tenant(AgentsRead), agents::get;
    PUT    "/api/tenants/{tenant_id}/agents/{agent_id}"   => Tenant(AgentsWrite), agents::replace;
    DELETE "/api/tenants/{tenant_id}/agents/{agent_id}"   => Tenant(AgentsWrite), agents::delete;
    POST   "/api/tenants/{tenant_id}/agents/{agent_id}/messages" => Tenant(ChatSend), chat::send;
    GET    "/api/tenants/{tenant_id}/agents/{agent_id}/messages" => Tenant(AgentsRead), chat::list;
    GET    "/api/tenants/{tenant_id}/members"             => Tenant(MembersRead), members::list;
    POST   "/api/tenants/{tenant_id}/members"             => Platform(UsersCreate), members::create;
    PATCH  "/api/tenants/{tenant_id}/members/{user_id}"   => Tenant(MembersWrite), members::update;
    DELETE "/api/tenants/{tenant_id}/members/{user_id}"   => Tenant(MembersWrite), members::remove;
    GET    "/api/tenants/{tenant_id}/invitations"         => Tenant(MembersRead), invitations::list;
    POST   "/api/tenants/{tenant_id}/invitations"         => Tenant(MembersWrite), invitations::create;
    POST   "/api/tenants/{tenant_id}/invitations/{invitation_id}/resend" => Tenant(MembersWrite), invitations::resend;
    DELETE "/api/tenants/{tenant_id}/invitations/{invitation_id}" => Tenant(MembersWrite), invitations::revoke;
    GET    "/api/tenants/{tenant_id}/channels/slack"      => Tenant(ChannelsRead), channels::list;
    POST   "/api/tenants/{tenant_id}/channels/slack"      => Tenant(ChannelsManage), channels::register;
    DELETE "/api/tenants/{tenant_id}/channels/slack/{connection_id}" => Tenant(ChannelsManage), channels::disconnect;
    GET    "/api/tenants/{tenant_id}/channels/whatsapp"   => Tenant(ChannelsRead), whatsapp::list;
    POST   "/api/tenants/{tenant_id}/channels/whatsapp"   => Tenant(ChannelsManage), whatsapp::connect;
    DELETE "/api/tenants/{tenant_id}/channels/whatsapp/{connection_id}" => Tenant(ChannelsManage), whatsapp::disconnect;
    GET    "/api/tenants/{tenant_id}/llm-keys"            => Tenant(LlmKeysManage), llm_keys::list;
    PUT    "/api/tenants/{tenant_id}/llm-keys/{provider}" => Tenant(LlmKeysManage), llm_keys::put;
    DELETE "/api/tenants/{tenant_id}/llm-keys/{provider}" => Tenant(LlmKeysManage), llm_keys::delete;
    GET    "/api/tenants/{tenant_id}/audit/head"          => Tenant(AuditRead), audit::head;
    GET    "/api/tenants/{tenant_id}/audit/verify"        => Tenant(AuditRead), audit::verify;
    GET    "/api/tenants/{tenant_id}/audit"               => Tenant(AuditRead), audit::events::list;
    GET    "/api/tenants/{tenant_id}/audit/export.csv"    => Tenant(AuditRead), audit::events::export;
    GET    "/api/tenants/{tenant_id}/audit/filters"       => Tenant(AuditRead), audit::events::filters;
    GET    "/api/tenants/{tenant_id}/jobs"                => Tenant(JobsRead), jobs::list;
    GET    "/api/tenants/{tenant_id}/jobs/{job_id}"       => Tenant(JobsRead), jobs::get;
    POST   "/api/tenants/{tenant_id}/jobs/{job_id}/retry" => Tenant(JobsManage), jobs::retry;
    GET    "/api/tenants/{tenant_id}/conversations"       => Tenant(ConversationsRead), conversations::list;
    GET    "/api/tenants/{tenant_id}/conversations/{conversation_id}" => Tenant(ConversationsRead), conversations::get;
    POST   "/api/tenants/{tenant_id}/conversations/{conversation_id}/claim" => Tenant(ConversationsHandle), conversations::claim;
    POST   "/api/tenants/{tenant_id}/conversations/{conversation_id}/assign" => Tenant(ConversationsHandle), conversations::assign;
    POST   "/api/tenants/{tenant_id}/conversations/{conversation_id}/replies" => Tenant(ConversationsHandle), conversations::reply;
    POST   "/api/tenants/{tenant_id}/conversations/{conversation_id}/notes" => Tenant(ConversationsHandle), conversations::note;
    POST   "/api/tenants/{tenant_id}/conversations/{conversation_id}/status" => Tenant(ConversationsHandle), conversations::status;
    POST   "/api/tenants/{tenant_id}/conversations/{conversation_id}/hand-back" => Tenant(ConversationsHandle), conversations::hand_back;
    GET    "/api/tenants/{tenant_id}/inbox/counts"        => Tenant(ConversationsRead), conversations::counts;
    GET    "/api/tenants/{tenant_id}/inbox/events"        => Tenant(ConversationsRead), conversations::events;
    GET    "/api/tenants/{tenant_id}/me/notifications"    => Tenant(ConversationsRead), conversations::my_notifications;
    PUT    "/api/tenants/{tenant_id}/me/notifications"    => Tenant(ConversationsRead), conversations::set_my_notifications;
    GET    "/api/tenants/{tenant_id}/settings/handoff"    => Tenant(ConversationsRead), conversations::handoff_settings;
    PUT    "/api/tenants/{tenant_id}/settings/handoff"    => Tenant(SettingsManage), conversations::set_handoff_settings;
    GET    "/api/tenants/{tenant_id}/usage"               => Tenant(UsageRead), usage::report;
    GET    "/api/tenants/{tenant_id}/usage/export"        => Tenant(UsageRead), usage::export;
    GET    "/api/tenants/{tenant_id}/budgets"             => Tenant(UsageRead), budgets::list;
    PUT    "/api/tenants/{tenant_id}/budgets/tenant"      => Tenant(BudgetsManage), budgets::put_tenant;
    DELETE "/api/tenants/{tenant_id}/budgets/tenant"      => Tenant(BudgetsManage), budgets::delete_tenant;
    PUT    "/api/tenants/{tenant_id}/budgets/agents/{agent_id}" => Tenant(BudgetsManage), budgets::put_agent;
    DELETE "/api/tenants/{tenant_id}/budgets/agents/{agent_id}" => Tenant(BudgetsManage), budgets::delete_agent;
    GET    "/api/tenants/{tenant_id}/budget-alerts"       => Tenant(UsageRead), budgets::alerts;
}

/// The spec of the route that matched, by method and pattern.
pub fn lookup(method: &Method, pattern: &str) -> Option<&'static RouteSpec> {
    ROUTES
        .iter()
        .find(|r| r.path == pattern && r.method == method.as_str())
}

async fn method_not_allowed(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}.", req.method(), req.path()),
    ))
}
