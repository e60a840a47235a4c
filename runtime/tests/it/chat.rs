//! The test chat's guards: sending costs an LLM call, so it needs `chat_send` (operators only
//! watch) and is limited per user and per tenant; a refused message is never queued.

use reqwest::{Method, Response, StatusCode};
use runtime::api::chat::ChatLimits;
use serde_json::json;
use shared::auth::TenantRole;
use shared::{ErrorBody, ErrorCode, TenantId};
use uuid::Uuid;

use crate::support::{AppOptions, TestApp};
use crate::world::{self, World};

async fn app_with_limits(per_user_per_minute: u32, per_tenant_per_minute: u32) -> TestApp {
    TestApp::spawn_with(AppOptions {
        chat_limits: Some(ChatLimits {
            per_user_per_minute,
            per_tenant_per_minute,
        }),
        ..AppOptions::default()
    })
    .await
}

async fn send(app: &TestApp, token: &str, tenant: TenantId, agent: shared::AgentId) -> Response {
    app.request(
        Method::POST,
        &format!("/api/tenants/{tenant}/agents/{agent}/messages"),
        Some(token),
    )
    .json(&json!({ "text": "How much does this cost?" }))
    .send()
    .await
    .unwrap()
}

/// A second customer admin of `tenant`.
async fn another_admin(app: &TestApp, tenant: TenantId) -> String {
    let tag = Uuid::new_v4().simple().to_string();
    let user = world::user(app, &format!("admin2-{tag}@example.com"), false).await;
    world::member(app, tenant, user, TenantRole::CustomerAdmin).await;
    app.token_for(user, None).await
}

/// Asserts a 429 with the error contract and a `Retry-After` within the minute; returns the body.
async fn assert_rate_limited(res: Response) -> ErrorBody {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::RateLimited);
    assert!(!body.request_id.is_empty());
    body
}

#[tokio::test]
async fn operator_cannot_send_a_test_message_and_nothing_is_queued() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let operator = app.token_for(w.operator_a, None).await;

    let res = send(&app, &operator, w.a, agent).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::Forbidden);
    assert_eq!(app.queued().await, 0, "a refused message is not queued");
    assert_eq!(app.llm.calls(), 0, "and costs no LLM call");

    // Watching stays allowed.
    let res = app
        .request(
            Method::GET,
            &format!(
                "/api/tenants/{}/agents/{agent}/messages?conversation=c1",
                w.a
            ),
            Some(&operator),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_per_user_limit_answers_429_with_retry_after_and_spares_colleagues_and_other_tenants() {
    let app = app_with_limits(3, 100).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let colleague = another_admin(&app, w.a).await;
    let admin_b = app.token_for(w.admin_b, None).await;

    for _ in 0..3 {
        assert_eq!(
            send(&app, &admin, w.a, agent).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let body = assert_rate_limited(send(&app, &admin, w.a, agent).await).await;
    assert!(body.message.contains("You have sent 3"), "{}", body.message);
    assert_eq!(app.queued().await, 3, "the refused message is not queued");

    assert_eq!(
        send(&app, &colleague, w.a, agent).await.status(),
        StatusCode::ACCEPTED,
        "another user of the same tenant is unaffected"
    );
    assert_eq!(
        send(&app, &admin_b, w.b, w.agent_b).await.status(),
        StatusCode::ACCEPTED,
        "another tenant is unaffected"
    );
    assert_eq!(app.queued().await, 5);
}

#[tokio::test]
async fn the_per_tenant_limit_answers_429_for_every_user_of_the_tenant_and_spares_other_tenants() {
    let app = app_with_limits(100, 3).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let colleague = another_admin(&app, w.a).await;
    let admin_b = app.token_for(w.admin_b, None).await;

    for token in [&admin, &admin, &colleague] {
        assert_eq!(
            send(&app, token, w.a, agent).await.status(),
            StatusCode::ACCEPTED
        );
    }
    for token in [&colleague, &admin] {
        let body = assert_rate_limited(send(&app, token, w.a, agent).await).await;
        assert!(
            body.message.contains("Your organisation has sent 3"),
            "{}",
            body.message
        );
    }
    assert_eq!(app.queued().await, 3, "refused messages are not queued");

    assert_eq!(
        send(&app, &admin_b, w.b, w.agent_b).await.status(),
        StatusCode::ACCEPTED,
        "another tenant is unaffected"
    );
    assert_eq!(app.queued().await, 4);
}
