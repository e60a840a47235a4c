//! The authorization matrix: every route in the route table × every kind of caller, against a
//! table written by hand from what each role may do — not derived from the route table or the
//! role → permission table the server itself uses, so loosening either fails here. A route
//! without a row, or a row without a route, fails the test, and so does a route the OpenAPI
//! document and the route table disagree about.
//!
//! The roles: a platform admin may do everything, tenants' admins everything inside their own
//! tenant but nothing on the platform, a customer operator only reads (agents, the test chat's
//! conversations, channels, customers, the audit trail, jobs, the knowledge base and its search,
//! the tools and the calls agents made, the tenant's record and settings — not members, LLM keys or customers' memories), and an
//! impersonating platform admin acts as the tenant's admin of that one tenant. Another tenant's objects answer 404, as if they did not exist.

use std::collections::BTreeSet;

use reqwest::Method;
use runtime::api::routes::{ROUTES, RouteSpec};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::TestApp;
use crate::world::{self, PASSWORD, Who, World};

/// The status each caller gets, in the order of `Who::ALL`: anonymous, tenant A's operator,
/// tenant A's admin, tenant B's admin (a stranger to A), a platform admin impersonating A, and a
/// platform admin. Every tenant path names tenant A.
const EXPECTED: &[(&str, &str, [u16; 6])] = &[
    ("POST", "/api/auth/login", [200, 200, 200, 200, 200, 200]),
    ("POST", "/api/auth/logout", [401, 204, 204, 204, 204, 204]),
    ("POST", "/api/auth/refresh", [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/me", [401, 200, 200, 200, 200, 200]),
    // One's own password, with the current one; never while impersonating.
    ("POST", "/api/me/password", [401, 200, 200, 200, 403, 200]),
    // Forgotten passwords and invitation links: anyone holding a link (or an address).
    (
        "POST",
        "/api/auth/password-reset",
        [202, 202, 202, 202, 202, 202],
    ),
    (
        "POST",
        "/api/auth/password-reset/lookup",
        [200, 200, 200, 200, 200, 200],
    ),
    (
        "POST",
        "/api/auth/password-reset/complete",
        [200, 200, 200, 200, 200, 200],
    ),
    (
        "POST",
        "/api/invitations/lookup",
        [200, 200, 200, 200, 200, 200],
    ),
    (
        "POST",
        "/api/invitations/accept",
        [200, 200, 200, 200, 200, 200],
    ),
    // Joining with one's own account needs a session whose address is the invited one: the
    // invitation here is for somebody else, so every caller is refused.
    (
        "POST",
        "/api/invitations/join",
        [401, 403, 403, 403, 403, 403],
    ),
    (
        "POST",
        "/api/admin/impersonate",
        [401, 403, 403, 403, 403, 200],
    ),
    (
        "DELETE",
        "/api/admin/impersonate",
        [401, 204, 204, 204, 204, 204],
    ),
    ("GET", "/api/openapi.json", [200, 200, 200, 200, 200, 200]),
    ("GET", "/api/tools", [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/platform", [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/time-zones", [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/tenants", [401, 403, 403, 403, 403, 200]),
    // Usage across tenants: the platform admin's alone (not while impersonating).
    ("GET", "/api/platform/usage", [401, 403, 403, 403, 403, 200]),
    ("POST", "/api/tenants", [401, 403, 403, 403, 403, 201]),
    (
        "GET",
        "/api/tenants/{tenant_id}",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PATCH",
        "/api/tenants/{tenant_id}",
        [401, 403, 403, 403, 403, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}",
        [401, 403, 403, 403, 403, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/limits",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/limits",
        [401, 403, 403, 403, 403, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/settings",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/settings",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/end-users",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/end-users/{end_user_id}",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/agents",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/agents",
        [401, 403, 201, 404, 201, 201],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/agents/{agent_id}",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/agents/{agent_id}",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/agents/{agent_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    // Every test message costs an LLM call: operators watch, they do not talk.
    (
        "POST",
        "/api/tenants/{tenant_id}/agents/{agent_id}/messages",
        [401, 403, 202, 404, 202, 202],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/agents/{agent_id}/messages",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/members",
        [401, 403, 200, 404, 200, 200],
    ),
    // Accounts with a password set by someone else are made by platform admins only; a
    // tenant's admins invite by mail.
    (
        "POST",
        "/api/tenants/{tenant_id}/members",
        [401, 403, 403, 403, 403, 201],
    ),
    (
        "PATCH",
        "/api/tenants/{tenant_id}/members/{user_id}",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/members/{user_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    // Inviting, like managing members, is for the tenant's admins.
    (
        "GET",
        "/api/tenants/{tenant_id}/invitations",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/invitations",
        [401, 403, 201, 404, 201, 201],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/invitations/{invitation_id}/resend",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/invitations/{invitation_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/channels/slack",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/channels/slack",
        [401, 403, 201, 404, 201, 201],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/channels/slack/{connection_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/channels/whatsapp",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/channels/whatsapp",
        [401, 403, 201, 404, 201, 201],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/channels/whatsapp/{connection_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/llm-keys",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/llm-keys/{provider}",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/llm-keys/{provider}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/audit/head",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/audit/verify",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/audit",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/audit/export.csv",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/audit/filters",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/jobs",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/jobs/{job_id}",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/jobs/{job_id}/retry",
        [401, 403, 200, 404, 200, 200],
    ),
    // Conversations and the inbox: operators see everything and act on nothing; admins (and
    // platform admins, impersonating or not) claim, assign, reply, note, snooze, resolve and
    // hand back.
    (
        "GET",
        "/api/tenants/{tenant_id}/conversations",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/conversations/{conversation_id}",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/conversations/{conversation_id}/claim",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/conversations/{conversation_id}/assign",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/conversations/{conversation_id}/replies",
        [401, 403, 201, 404, 201, 201],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/conversations/{conversation_id}/notes",
        [401, 403, 201, 404, 201, 201],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/conversations/{conversation_id}/status",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/conversations/{conversation_id}/hand-back",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/inbox/counts",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/inbox/events",
        [401, 200, 200, 404, 200, 200],
    ),
    // One's own hand-off mails: any member; a platform admin is no member, so has none.
    (
        "GET",
        "/api/tenants/{tenant_id}/me/notifications",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/me/notifications",
        [401, 200, 200, 404, 409, 409],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/settings/handoff",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/settings/handoff",
        [401, 403, 200, 404, 200, 200],
    ),
    // Usage and cost: everyone of the tenant reads them (operators too); another tenant's
    // admin finds nothing.
    (
        "GET",
        "/api/tenants/{tenant_id}/usage",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/usage/export",
        [401, 200, 200, 404, 200, 200],
    ),
    // Budgets and their alerts: everyone of the tenant reads them; only admins set or remove.
    (
        "GET",
        "/api/tenants/{tenant_id}/budgets",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/budgets/tenant",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/budgets/tenant",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/budgets/agents/{agent_id}",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/budgets/agents/{agent_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/budget-alerts",
        [401, 200, 200, 404, 200, 200],
    ),
    // Customers' memories and erasure are an admin's; operators read the knowledge base and
    // search it, and change nothing.
    (
        "DELETE",
        "/api/tenants/{tenant_id}/end-users/{end_user_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/end-users/{end_user_id}/memories",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/end-users/{end_user_id}/memories/{memory_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/knowledge",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/knowledge",
        [401, 403, 202, 404, 202, 202],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/knowledge/import",
        [401, 403, 202, 404, 202, 202],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/knowledge/search",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/knowledge/index",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/knowledge/index",
        [401, 403, 202, 404, 202, 202],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/knowledge/{document_id}",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/knowledge/{document_id}",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/knowledge/{document_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/knowledge/{document_id}/retry",
        [401, 403, 202, 404, 202, 202],
    ),
    // Operators see the tools and the calls agents made; only admins make, change, test and
    // delete the tenant's HTTP tools.
    (
        "GET",
        "/api/tenants/{tenant_id}/tools",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/tools",
        [401, 403, 201, 404, 201, 201],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/tools/{tool_id}",
        [401, 200, 200, 404, 200, 200],
    ),
    (
        "PUT",
        "/api/tenants/{tenant_id}/tools/{tool_id}",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "DELETE",
        "/api/tenants/{tenant_id}/tools/{tool_id}",
        [401, 403, 204, 404, 204, 204],
    ),
    (
        "POST",
        "/api/tenants/{tenant_id}/tools/{tool_id}/test",
        [401, 403, 200, 404, 200, 200],
    ),
    (
        "GET",
        "/api/tenants/{tenant_id}/tool-calls",
        [401, 200, 200, 404, 200, 200],
    ),
];

/// An HTTP tool's fields, named `name`: its address is refused when called (nothing leaves).
fn http_tool(name: &str) -> Value {
    json!({
        "name": name, "description": "Looks an order up.", "method": "GET",
        "url": "https://127.0.0.1/orders/{id}",
        "parameters": { "type": "object", "properties": { "id": { "type": "string" } },
                        "required": ["id"] },
    })
}

/// A Slack installation of a fresh workspace, known to the fake Slack.
fn slack_installation(app: &TestApp, agent: shared::AgentId) -> Value {
    let tag = Uuid::new_v4().simple().to_string().to_uppercase();
    let (team, bot, token) = (
        format!("T{}", &tag[..10]),
        format!("U{}", &tag[10..20]),
        format!("xoxb-matrix-{tag}"),
    );
    app.slack.install(&token, &team, &bot);
    json!({ "team_id": team, "bot_user_id": bot, "bot_token": token, "agent_id": agent })
}

/// Fills the route's path parameters with fresh objects in tenant A and picks a valid body.
async fn prepare(app: &TestApp, w: &World, spec: &RouteSpec) -> (String, Option<Value>) {
    let mut path = spec
        .path
        .replace("{tenant_id}", &w.a.to_string())
        .replace("{provider}", "openai");
    if path.contains("{agent_id}") {
        let agent = world::agent(app, w.a, "Matrix agent").await;
        path = path.replace("{agent_id}", &agent.to_string());
    }
    if path.contains("{connection_id}") && spec.path.contains("/whatsapp/") {
        let agent = crate::whatsapp::shop_agent(app, w.a, "WhatsApp agent").await;
        let number = crate::whatsapp::new_number(&app.whatsapp, "Matrix Ltd");
        let id =
            crate::whatsapp::connect_number(app, w.admin_a, w.a, agent, &number, json!({})).await;
        path = path.replace("{connection_id}", &id.to_string());
    }
    if path.contains("{connection_id}") {
        let admin = app.token_for(w.admin_a, None).await;
        let agent = world::agent(app, w.a, "Slack agent").await;
        let res = app
            .request(
                reqwest::Method::POST,
                &format!("/api/tenants/{}/channels/slack", w.a),
                Some(&admin),
            )
            .json(&slack_installation(app, agent))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        path = path.replace("{connection_id}", &id);
    }
    if path.contains("{end_user_id}") {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        let id = runtime::store::end_users::find_or_create(
            &mut tx,
            runtime::store::end_users::EndUserKey {
                channel: shared::channel::ChannelKind::Web,
                external_id: &format!("user:{}", Uuid::new_v4()),
                display_name: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        path = path.replace("{end_user_id}", &id.to_string());
    }
    if path.contains("{memory_id}") {
        let end_user: Uuid = path
            .split('/')
            .nth(5)
            .and_then(|s| s.parse().ok())
            .expect("the end user in the path");
        let memory = Uuid::new_v4();
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        runtime::store::knowledge::insert_memory(
            &mut tx,
            memory,
            shared::EndUserId::from_uuid(end_user),
            None,
            "Prefers email",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        path = path.replace("{memory_id}", &memory.to_string());
    }
    if path.contains("{document_id}") {
        // A document that failed, so every action on it (retry included) applies.
        let document = Uuid::new_v4();
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        runtime::store::knowledge::insert_document(
            &mut tx,
            &runtime::store::knowledge::NewDocument {
                id: document,
                title: "Matrix FAQ",
                source: shared::knowledge::DocumentSource::Upload,
                url: None,
                filename: Some("faq.md"),
                size_bytes: 10,
                agent_ids: None,
                created_by: None,
            },
        )
        .await
        .unwrap();
        runtime::store::knowledge::set_failed(&mut tx, document, "the matrix failed it")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        path = path.replace("{document_id}", &document.to_string());
    }
    if path.contains("{tool_id}") {
        let admin = app.token_for(w.admin_a, None).await;
        let name = format!("matrix_{}", &Uuid::new_v4().simple().to_string()[..8]);
        let res = app
            .request(
                reqwest::Method::POST,
                &format!("/api/tenants/{}/tools", w.a),
                Some(&admin),
            )
            .json(&http_tool(&name))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        path = path.replace("{tool_id}", &id);
    }
    if path.contains("{conversation_id}") {
        // A test-chat conversation waiting in the queue: every action on it applies.
        let agent = world::agent(app, w.a, "Inbox agent").await;
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        let connection = runtime::store::conversations::ensure_web_connection(&mut tx, agent)
            .await
            .unwrap();
        let (id, _) = runtime::store::conversations::upsert_with_owner(
            &mut tx,
            connection,
            Some(agent),
            &shared::channel::ReplyTarget::Web {
                conversation: format!("matrix-{}", Uuid::new_v4().simple()),
            },
            None,
        )
        .await
        .unwrap();
        runtime::store::inbox::set_owner(&mut tx, id, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        path = path.replace("{conversation_id}", &id.to_string());
    }
    if path.contains("{job_id}") {
        let job = crate::jobs::failed_job(app, w.a).await;
        path = path.replace("{job_id}", &job.to_string());
    }
    if path.contains("{invitation_id}") {
        let (id, _) = crate::people::invitation_link(
            app,
            w.a,
            &format!("m-{}@example.com", Uuid::new_v4().simple()),
        )
        .await;
        path = path.replace("{invitation_id}", &id.to_string());
    }
    if path.contains("{user_id}") {
        let tag = Uuid::new_v4().simple().to_string();
        let user = world::user(app, &format!("m-{tag}@example.com"), false).await;
        world::member(app, w.a, user, shared::auth::TenantRole::CustomerOperator).await;
        path = path.replace("{user_id}", &user.to_string());
    }
    if spec.method == "DELETE" && spec.path.contains("/budgets/") {
        // A budget to remove, for each caller.
        let agent = path
            .rsplit_once("/budgets/agents/")
            .and_then(|(_, a)| a.parse::<Uuid>().ok())
            .map(shared::AgentId::from_uuid);
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        runtime::store::budgets::put(
            &mut tx,
            &runtime::store::budgets::NewBudget {
                agent,
                monthly_micro_usd: 1_000_000,
                thresholds: &[50, 80, 100],
                policy: "soft",
                downgrade_group: None,
                count_own_keys: false,
                webhook_url: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let tag = &Uuid::new_v4().simple().to_string()[..10];
    let body = match (spec.method, spec.path) {
        ("POST", "/api/auth/login") => {
            let admin = runtime::store::users::get(&app.store, w.admin_a)
                .await
                .unwrap()
                .unwrap();
            Some(json!({ "email": admin.email, "password": PASSWORD }))
        }
        ("POST", "/api/admin/impersonate") => Some(json!({ "tenant_id": w.a })),
        ("POST", "/api/tenants") => Some(json!({ "name": format!("New {tag}") })),
        ("PATCH", "/api/tenants/{tenant_id}") => Some(json!({ "name": "Renamed" })),
        ("PUT", "/api/tenants/{tenant_id}/limits") => {
            Some(json!({ "tenant": { "per_minute": 100, "burst": 10 } }))
        }
        ("DELETE", "/api/tenants/{tenant_id}") => {
            let mut tx = app.store.tenant_tx(w.a).await.unwrap();
            let slug = runtime::store::tenants::current(&mut tx)
                .await
                .unwrap()
                .unwrap()
                .slug;
            path = format!("{path}?confirm={slug}");
            None
        }
        ("POST", "/api/tenants/{tenant_id}/agents")
        | ("PUT", "/api/tenants/{tenant_id}/agents/{agent_id}") => {
            Some(json!({ "name": "Nia", "role": "Support", "tools": ["knowledge_base_search"] }))
        }
        ("POST", "/api/tenants/{tenant_id}/members") => Some(json!({
            "email": format!("new-{tag}@example.com"),
            "password": "a long enough password",
            "role": "customer_operator",
        })),
        ("POST", "/api/tenants/{tenant_id}/invitations") => Some(json!({
            "email": format!("invited-{tag}@example.com"),
            "role": "customer_operator",
        })),
        ("POST", "/api/me/password") => Some(json!({
            "current_password": PASSWORD,
            "new_password": "a long enough new password",
        })),
        ("POST", "/api/auth/password-reset") => {
            Some(json!({ "email": format!("whoever-{tag}@example.com") }))
        }
        ("POST", "/api/auth/password-reset/lookup") => {
            let user = world::user(app, &format!("reset-{tag}@example.com"), false).await;
            Some(json!({ "token": crate::people::reset_link(app, user).await }))
        }
        ("POST", "/api/auth/password-reset/complete") => {
            let user = world::user(app, &format!("reset-{tag}@example.com"), false).await;
            Some(json!({
                "token": crate::people::reset_link(app, user).await,
                "password": "a long enough new password",
            }))
        }
        ("POST", "/api/invitations/lookup") | ("POST", "/api/invitations/join") => {
            let (_, token) =
                crate::people::invitation_link(app, w.a, &format!("invitee-{tag}@example.com"))
                    .await;
            Some(json!({ "token": token }))
        }
        ("POST", "/api/invitations/accept") => {
            let (_, token) =
                crate::people::invitation_link(app, w.a, &format!("invitee-{tag}@example.com"))
                    .await;
            Some(json!({
                "token": token,
                "display_name": "Matrix Invitee",
                "password": "a long enough new password",
            }))
        }
        ("PATCH", "/api/tenants/{tenant_id}/members/{user_id}") => {
            Some(json!({ "role": "customer_admin" }))
        }
        ("POST", "/api/tenants/{tenant_id}/agents/{agent_id}/messages") => {
            Some(json!({ "text": "Hello from the matrix" }))
        }
        ("GET", "/api/tenants/{tenant_id}/agents/{agent_id}/messages") => {
            path = format!("{path}?conversation=matrix");
            None
        }
        ("POST", "/api/tenants/{tenant_id}/channels/slack") => {
            let agent = world::agent(app, w.a, "Slack agent").await;
            Some(slack_installation(app, agent))
        }
        ("POST", "/api/tenants/{tenant_id}/channels/whatsapp") => {
            let agent = crate::whatsapp::shop_agent(app, w.a, "WhatsApp agent").await;
            let number = crate::whatsapp::new_number(&app.whatsapp, "Matrix Ltd");
            Some(json!({
                "phone_number_id": number.phone_number_id, "waba_id": number.waba_id,
                "access_token": number.token, "agent_id": agent,
            }))
        }
        ("POST", "/api/tenants/{tenant_id}/knowledge") => {
            Some(json!("# FAQ\n\nRefunds are issued within 14 days."))
        }
        // A public address: accepted now (the fetch happens later, in a job).
        ("POST", "/api/tenants/{tenant_id}/knowledge/import") => {
            Some(json!({ "url": "http://93.184.215.14/faq" }))
        }
        ("POST", "/api/tenants/{tenant_id}/knowledge/search") => Some(json!({ "q": "refunds" })),
        ("PUT", "/api/tenants/{tenant_id}/knowledge/index") => Some(json!({ "model": "local" })),
        ("PUT", "/api/tenants/{tenant_id}/knowledge/{document_id}") => {
            Some(json!({ "title": "Matrix FAQ", "agent_ids": null }))
        }
        ("POST", "/api/tenants/{tenant_id}/tools") => Some(http_tool(&format!("new_{tag}"))),
        ("PUT", "/api/tenants/{tenant_id}/tools/{tool_id}") => {
            Some(http_tool(&format!("renamed_{tag}")))
        }
        ("POST", "/api/tenants/{tenant_id}/tools/{tool_id}/test") => {
            Some(json!({ "arguments": { "id": "1" } }))
        }
        ("PUT", "/api/tenants/{tenant_id}/settings") => {
            Some(json!({ "time_zone": "Europe/Berlin", "locale": "de" }))
        }
        ("POST", "/api/tenants/{tenant_id}/conversations/{conversation_id}/claim") => {
            Some(json!({}))
        }
        ("POST", "/api/tenants/{tenant_id}/conversations/{conversation_id}/assign") => {
            Some(json!({ "assignee_id": w.admin_a }))
        }
        ("POST", "/api/tenants/{tenant_id}/conversations/{conversation_id}/replies")
        | ("POST", "/api/tenants/{tenant_id}/conversations/{conversation_id}/notes") => {
            Some(json!({ "text": "Hello from the matrix" }))
        }
        ("POST", "/api/tenants/{tenant_id}/conversations/{conversation_id}/status") => {
            Some(json!({ "status": "resolved" }))
        }
        ("POST", "/api/tenants/{tenant_id}/conversations/{conversation_id}/hand-back") => {
            Some(json!({ "summary": "Sorted out by the matrix" }))
        }
        ("PUT", "/api/tenants/{tenant_id}/me/notifications") => {
            Some(json!({ "email_handoffs": true }))
        }
        ("PUT", "/api/tenants/{tenant_id}/settings/handoff") => Some(json!({
            "business_hours": { "days": [1, 2, 3, 4, 5], "opens": "09:00", "closes": "17:00",
                                "response_minutes": 60 },
            "slack_channel": "CMATRIX01",
        })),
        ("PUT", "/api/tenants/{tenant_id}/budgets/tenant")
        | ("PUT", "/api/tenants/{tenant_id}/budgets/agents/{agent_id}") => Some(json!({
            "monthly_micro_usd": 25_000_000,
            "policy": "handoff",
        })),
        ("PUT", "/api/tenants/{tenant_id}/llm-keys/{provider}") => {
            Some(json!({ "api_key": crate::support::TENANT_LLM_KEY }))
        }
        ("GET", "/api/tenants/{tenant_id}/audit/verify") => {
            // Against the head as it is: the exported-head path is authorized like the rest.
            let head = runtime::store::audit::head(&app.store, w.a)
                .await
                .unwrap()
                .head;
            path = format!("{path}?seq={}&hash={}", head.seq, hex::encode(head.hash));
            None
        }
        _ => None,
    };
    (path, body)
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_roles_allow() {
    let app = TestApp::spawn().await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path, _) in EXPECTED {
        if !ROUTES
            .iter()
            .any(|r| r.method == *method && r.path == *path)
        {
            failures.push(format!("{method} {path}: in the table but not routed"));
        }
    }
    for spec in ROUTES {
        let Some(&(_, _, statuses)) = EXPECTED
            .iter()
            .find(|(m, p, _)| *m == spec.method && *p == spec.path)
        else {
            failures.push(format!(
                "{} {}: routed but missing from the hand-written table",
                spec.method, spec.path
            ));
            continue;
        };
        let w = World::new(&app).await;
        for (who, want) in Who::ALL.into_iter().zip(statuses) {
            let (path, body) = prepare(&app, &w, spec).await;
            let token = w.token(&app, who).await;
            let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
            let mut req = app.request(method, &path, token.as_deref());
            if let Some(body) = &body {
                req = req.json(body);
            }
            let res = req.send().await.unwrap();
            let got = res.status().as_u16();
            checked += 1;
            if got != want {
                let text = res.text().await.unwrap_or_default();
                failures.push(format!(
                    "{} {} as {who:?}: expected {want}, got {got}: {text}",
                    spec.method, spec.path
                ));
            }
        }
    }
    eprintln!("matrix: {checked} calls over {} routes", ROUTES.len());
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, ROUTES.len() * Who::ALL.len());
}

/// An impersonation of tenant A, as the real endpoint hands it out, reaches nothing of tenant B:
/// every tenant route, called for B (with a body that would do for A), answers 404 as if B did
/// not exist.
#[tokio::test]
async fn an_impersonation_of_one_tenant_finds_nothing_of_another() {
    let app = TestApp::spawn().await;
    let mut probed = 0;
    for spec in ROUTES
        .iter()
        .filter(|r| matches!(r.access, runtime::api::routes::Access::Tenant(_)))
    {
        let w = World::new(&app).await;
        let (path, body) = prepare(&app, &w, spec).await;
        let path = path.replace(&w.a.to_string(), &w.b.to_string());
        let token = w.token(&app, Who::ImpersonatingA).await;
        let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
        let mut req = app.request(method, &path, token.as_deref());
        if let Some(body) = &body {
            req = req.json(body);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 404, "{} {}", spec.method, spec.path);
        probed += 1;
    }
    assert!(probed >= 20, "{probed}");
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_in_the_table() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["AgentInput"].is_object());
}

#[tokio::test]
async fn other_methods_on_known_paths_answer_405_and_unknown_paths_404() {
    let app = TestApp::spawn().await;
    let res = app
        .request(Method::PUT, "/api/tenants", None)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    let body: shared::ErrorBody = res.json().await.unwrap();
    assert_eq!(body.code, shared::ErrorCode::MethodNotAllowed);
    let res = app
        .request(Method::GET, "/api/nope", None)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
}
