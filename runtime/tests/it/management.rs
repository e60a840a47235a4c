//! The management API beyond the matrix: cross-tenant probes, validation, tenant deletion,
//! impersonation and its audit, and the rules that keep a tenant manageable.

use reqwest::{Method, StatusCode};
use runtime::store::audit;
use serde_json::{Value, json};
use shared::ErrorBody;
use shared::auth::{Me, SessionToken};
use shared::resources::{Agent, Page, Tenant};

use crate::support::TestApp;
use crate::world::World;

#[tokio::test]
async fn tenant_a_sessions_cannot_touch_tenant_b_objects_by_id() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin_a = app.token_for(w.admin_a, None).await;
    let (a, b, agent_b) = (w.a, w.b, w.agent_b);
    let member_b = w.admin_b;
    let probes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/tenants/{b}"), None),
        (Method::GET, format!("/api/tenants/{b}/agents"), None),
        (
            Method::POST,
            format!("/api/tenants/{b}/agents"),
            Some(json!({ "name": "Intruder" })),
        ),
        (
            Method::GET,
            format!("/api/tenants/{a}/agents/{agent_b}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/tenants/{a}/agents/{agent_b}"),
            Some(json!({ "name": "Hijacked" })),
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{a}/agents/{agent_b}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/tenants/{b}/agents/{agent_b}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/tenants/{b}/agents/{agent_b}"),
            Some(json!({ "name": "Hijacked" })),
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{b}/agents/{agent_b}"),
            None,
        ),
        (Method::GET, format!("/api/tenants/{b}/members"), None),
        (
            Method::PATCH,
            format!("/api/tenants/{a}/members/{member_b}"),
            Some(json!({ "role": "customer_operator" })),
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{a}/members/{member_b}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/tenants/{b}/members/{member_b}"),
            Some(json!({ "role": "customer_operator" })),
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{b}/members/{member_b}"),
            None,
        ),
    ];
    for (method, path, body) in probes {
        let mut req = app.request(method.clone(), &path, Some(&admin_a));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let body: ErrorBody = res.json().await.unwrap();
        assert_eq!(body.code, shared::ErrorCode::NotFound);
    }
    // Nothing of B's changed.
    let admin_b = app.token_for(w.admin_b, None).await;
    let agent: Agent = app
        .get_json(&format!("/api/tenants/{b}/agents/{agent_b}"), &admin_b)
        .await;
    assert_eq!(agent.input.name, "Bea");
    let agents: Page<Agent> = app
        .get_json(&format!("/api/tenants/{b}/agents"), &admin_b)
        .await;
    assert_eq!(agents.total, 2, "seeded agent and Bea only");
    let members: Value = app
        .get_json(&format!("/api/tenants/{b}/members"), &admin_b)
        .await;
    assert!(
        members["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "customer_admin")
    );
}

#[tokio::test]
async fn agent_validation_reports_every_bad_field_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let path = format!("/api/tenants/{}/agents", w.a);
    let res = app
        .request(Method::POST, &path, Some(&admin))
        .json(&json!({
            "name": "  ",
            "persona": "x".repeat(4001),
            "tools": ["knowledge_base_search", "teleport", "knowledge_base_search"],
            "model_preference": "gpt 4!",
            "escalation_rules": [
                { "trigger": { "kind": "failed_resolutions", "threshold": 0 } },
                { "trigger": { "kind": "keywords", "keywords": [] }, "handoff_target": "" },
                { "trigger": { "kind": "human_requested" }, "handoff_target": "#support" }
            ]
        }))
        .send()
        .await
        .unwrap();
    let fields = crate::support::field_errors(res).await;
    assert_eq!(
        fields,
        [
            "name",
            "persona",
            "model_preference",
            "tools[1]",
            "tools[2]",
            "escalation_rules[0].trigger.threshold",
            "escalation_rules[1].trigger.keywords",
            "escalation_rules[1].handoff_target",
        ]
    );
    // A malformed body is a 400 with the contract, not a crash.
    let res = app
        .request(Method::POST, &path, Some(&admin))
        .json(&json!({ "name": "Ok", "escalation_rules": [{ "trigger": { "kind": "vibes" } }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let list: Page<Agent> = app.get_json(&path, &admin).await;
    assert_eq!(list.total, 2, "nothing was stored");
}

#[tokio::test]
async fn a_valid_agent_round_trips_with_its_typed_rules_and_is_audited() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let input = json!({
        "name": "Nia",
        "role": "Customer support specialist",
        "persona": "Warm, precise, never guesses",
        "system_prompt": "You answer questions about Acme's widgets.",
        "job_description": "Answer first-line support questions.",
        "model_preference": "smart",
        "tools": ["knowledge_base_search"],
        "escalation_rules": [
            { "trigger": { "kind": "failed_resolutions", "threshold": 3 }, "handoff_target": "#support" },
            { "trigger": { "kind": "keywords", "keywords": ["refund", "lawyer"] }, "handoff_target": null },
            { "trigger": { "kind": "human_requested" }, "handoff_target": null }
        ],
        "business_function": "Customer support for Acme widgets"
    });
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/agents", w.a),
            Some(&admin),
        )
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    for key in input.as_object().unwrap().keys() {
        assert_eq!(created[key], input[key], "{key}");
    }
    let actions = app.audit_trail(w.a).await;
    let last = actions.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1),
        ("agent.created", Some(w.admin_a))
    );
}

#[tokio::test]
async fn deleting_a_tenant_needs_its_slug_erases_its_data_and_keeps_its_audit_trail() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let platform = app.token_for(w.platform, None).await;
    let tenant: Tenant = app
        .get_json(&format!("/api/tenants/{}", w.a), &platform)
        .await;
    let path = format!("/api/tenants/{}", w.a);
    for confirm in ["", "?confirm=wrong"] {
        let res = app
            .request(Method::DELETE, &format!("{path}{confirm}"), Some(&platform))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: ErrorBody = res.json().await.unwrap();
        assert_eq!(body.fields[0].field, "confirm");
    }
    let res = app
        .request(
            Method::DELETE,
            &format!("{path}?confirm={}", tenant.slug),
            Some(&platform),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // Its data is gone, table by table, as the runtime sees it.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    for table in [
        "tenants",
        "tenant_members",
        "agents",
        "channel_connections",
        "conversations",
        "messages",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(tx.connection())
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    drop(tx);
    // Accounts stay; the members just lost their access.
    assert!(
        runtime::store::users::get(&app.store, w.admin_a)
            .await
            .unwrap()
            .is_some()
    );
    let admin_a = app.token_for(w.admin_a, None).await;
    let res = app
        .request(Method::GET, &path, Some(&admin_a))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The audit trail remains, verifiable, ending with the deletion by the platform admin.
    let actions = app.audit_trail(w.a).await;
    assert_eq!(actions.last().unwrap().0, "tenant.deleted");
    assert_eq!(actions.last().unwrap().1, Some(w.platform));
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert!(audit::verify_chain(&mut tx).await.unwrap().ok);
    // B is untouched.
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}", w.b),
            Some(&platform),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn tenants_list_searches_and_paginates() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let platform = app.token_for(w.platform, None).await;
    for name in ["Zebra Logistics", "Zed Bakery", "Yak Yoga"] {
        let res = app
            .request(Method::POST, "/api/tenants", Some(&platform))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let dup = app
        .request(Method::POST, "/api/tenants", Some(&platform))
        .json(&json!({ "name": "Zebra Logistics" }))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let page: Page<Tenant> = app
        .get_json("/api/tenants?q=ZE&per_page=1&page=2", &platform)
        .await;
    assert_eq!((page.total, page.items.len(), page.page), (2, 1, 2));
    let all: Page<Tenant> = app.get_json("/api/tenants?per_page=100", &platform).await;
    assert_eq!(all.total, 5);
    assert_eq!(all.items[0].slug, "yak-yoga", "newest first");
    let bad = app
        .request(Method::GET, "/api/tenants?per_page=1000", Some(&platform))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn impersonation_is_visible_limited_to_one_tenant_and_audited_under_the_real_admin() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let platform = app.token_for(w.platform, None).await;
    let res = app
        .request(Method::POST, "/api/admin/impersonate", Some(&platform))
        .json(&json!({ "tenant_id": w.a, "minutes": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let session: SessionToken = res.json().await.unwrap();
    let imp = session.me.impersonation.clone().unwrap();
    assert_eq!(imp.tenant_id, w.a);
    assert!(session.me.platform_permissions.is_empty());
    let token = session.token;

    // Inside A it acts as A's admin; B and platform endpoints are out of reach.
    let created = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/agents", w.a),
            Some(&token),
        )
        .json(&json!({ "name": "Made while impersonating" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/agents", w.b),
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .request(Method::GET, "/api/tenants", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let stopped = app
        .request(Method::DELETE, "/api/admin/impersonate", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), StatusCode::NO_CONTENT);
    // The admin carries on with the session they had.
    let own: Me = app.get_json("/api/me", &platform).await;
    assert!(own.impersonation.is_none());
    assert!(!own.platform_permissions.is_empty());

    let rows = app.audit_trail(w.a).await;
    let find = |action: &str| rows.iter().filter(|r| r.0 == action).collect::<Vec<_>>();
    assert_eq!(find("impersonation.started").len(), 1);
    assert_eq!(find("impersonation.stopped").len(), 1);
    let created: Vec<_> = find("agent.created")
        .into_iter()
        .filter(|r| r.2.is_some())
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(
        (created[0].1, created[0].2),
        (Some(w.platform), Some(w.platform))
    );
    // Every request made while impersonating is recorded, naming the real admin.
    let requests = find("impersonation.request");
    assert_eq!(requests.len(), 4, "{rows:?}");
    assert!(requests.iter().all(|r| r.2 == Some(w.platform)));
    // Nothing was written to B's trail.
    assert!(app.audit_trail(w.b).await.iter().all(|r| r.2.is_none()));
}

#[tokio::test]
async fn the_last_customer_admin_cannot_be_demoted_or_removed() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    // Leave admin_a as the only customer admin of A.
    let members: Value = app
        .get_json(&format!("/api/tenants/{}/members", w.a), &admin)
        .await;
    for m in members["items"].as_array().unwrap() {
        if m["role"] == "customer_admin" && m["user_id"] != json!(w.admin_a) {
            let path = format!(
                "/api/tenants/{}/members/{}",
                w.a,
                m["user_id"].as_str().unwrap()
            );
            let res = app
                .request(Method::DELETE, &path, Some(&admin))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
    }
    let path = format!("/api/tenants/{}/members/{}", w.a, w.admin_a);
    let res = app
        .request(Method::PATCH, &path, Some(&admin))
        .json(&json!({ "role": "customer_operator" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = app
        .request(Method::DELETE, &path, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(
        app.request(Method::GET, "/api/me", Some(&admin))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "nothing changed, so the session is intact"
    );
}

#[tokio::test]
async fn a_stopped_or_expired_impersonation_token_is_refused_not_widened() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let platform = app.token_for(w.platform, None).await;
    let started: SessionToken = app
        .request(Method::POST, "/api/admin/impersonate", Some(&platform))
        .json(&json!({ "tenant_id": w.a }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stopped = app
        .request(
            Method::DELETE,
            "/api/admin/impersonate",
            Some(&started.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), StatusCode::NO_CONTENT);
    // The impersonation token is dead; the admin's own session is as it was.
    let me = |t: String| {
        let req = app.request(Method::GET, "/api/tenants", Some(&t));
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(me(started.token.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(platform.clone()).await, StatusCode::OK);

    // An impersonation that ran out does not fall back to platform rights.
    let now = chrono::Utc::now();
    let mut claims = app.keys.new_session(w.platform, 0, now);
    claims.imp = Some(runtime::auth::tokens::ImpersonationClaim {
        tenant: *w.a.as_uuid(),
        exp: (now - chrono::Duration::minutes(1)).timestamp(),
        parent_sid: uuid::Uuid::new_v4(),
    });
    let expired = app.keys.sign(&app.keys.renew(&claims, now)).unwrap();
    assert_eq!(me(expired).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_suspended_tenant_is_read_only_for_its_members_and_impersonators() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let platform = app.token_for(w.platform, None).await;
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/tenants/{}", w.a),
            Some(&platform),
        )
        .json(&json!({ "status": "suspended" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let agents = format!("/api/tenants/{}/agents", w.a);
    for token in [
        app.token_for(w.admin_a, None).await,
        app.token_for(w.platform, Some(w.a)).await,
    ] {
        let read = app
            .request(Method::GET, &agents, Some(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), StatusCode::OK);
        let write = app
            .request(Method::POST, &agents, Some(&token))
            .json(&json!({ "name": "Not now" }))
            .send()
            .await
            .unwrap();
        assert_eq!(write.status(), StatusCode::FORBIDDEN);
    }
    // The platform admin can still repair it.
    let write = app
        .request(Method::POST, &agents, Some(&platform))
        .json(&json!({ "name": "Repair" }))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn platform_admins_get_404_for_tenants_that_do_not_exist() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let platform = app.token_for(w.platform, None).await;
    let ghost = uuid::Uuid::new_v4();
    for (method, path) in [
        (Method::GET, format!("/api/tenants/{ghost}/agents")),
        (Method::POST, format!("/api/tenants/{ghost}/agents")),
        (Method::GET, format!("/api/tenants/{ghost}/members")),
    ] {
        let res = app
            .request(method.clone(), &path, Some(&platform))
            .json(&json!({ "name": "Nobody" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[tokio::test]
async fn setting_the_same_role_again_does_not_end_sessions() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let operator = app.token_for(w.operator_a, None).await;
    let admin = app.token_for(w.admin_a, None).await;
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/tenants/{}/members/{}", w.a, w.operator_a),
            Some(&admin),
        )
        .json(&json!({ "role": "customer_operator" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let still = app
        .request(Method::GET, "/api/me", Some(&operator))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), StatusCode::OK);
}
