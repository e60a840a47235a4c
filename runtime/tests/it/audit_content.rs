//! No end-user content in the audit trail: real traffic through the web test chat — an answered
//! message, a keyword hand-off, a rate-limited flood, an LLM failure whose provider error quotes
//! the prompt — and member changes, each carrying a distinctive canary, and then no column of any
//! audit row may contain one. The trail is kept forever; what it must never hold is what a
//! customer may ask to have forgotten.

use std::time::{Duration, Instant};

use reqwest::Method;
use runtime::engine::limiter::Limit;
use runtime::engine::turn::EngineSettings;
use serde_json::json;
use shared::TenantId;
use shared::auth::TenantRole;
use uuid::Uuid;

use crate::pipeline::{engine_app, send, wait_for};
use crate::support::TestApp;
use crate::world::{self, World};

/// A word no code would write by itself.
fn canary(what: &str) -> String {
    format!(
        "zq{what}canary{}",
        &Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Every audit row (all its columns, as text) that contains `needle`, case-insensitively.
async fn rows_containing(app: &TestApp, tenant: TenantId, needle: &str) -> Vec<String> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_scalar(
        "SELECT a::text FROM audit_events a WHERE a::text ILIKE '%' || $1 || '%' ORDER BY seq",
    )
    .bind(needle)
    .fetch_all(tx.connection())
    .await
    .unwrap()
}

async fn assert_no_canary(app: &TestApp, tenant: TenantId, canaries: &[String]) {
    for c in canaries {
        let leaks = rows_containing(app, tenant, c).await;
        assert!(leaks.is_empty(), "{c} reached the audit trail:\n{leaks:#?}");
    }
}

/// Waits until the tenant's trail holds `action`.
async fn wait_for_action(app: &TestApp, tenant: TenantId, action: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.audit_actions(tenant).await.iter().any(|a| a == action) {
        assert!(Instant::now() < deadline, "no {action} in the trail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set_keyword_rule(app: &TestApp, token: &str, tenant: TenantId, agent: shared::AgentId) {
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{tenant}/agents/{agent}"),
            Some(token),
        )
        .json(&json!({
            "name": "Nia", "role": "Support", "persona": "Kind",
            "escalation_rules": [
                { "trigger": { "kind": "keywords", "keywords": ["refund"] }, "handoff_target": "#billing" },
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[actix_rt::test]
async fn chat_traffic_leaves_no_message_text_or_personal_data_in_the_audit_trail() {
    // Two quick messages per connection, then the limit (the window is about a second).
    let app = engine_app(EngineSettings {
        connection_limit: Limit {
            per_minute: 60,
            burst: 2,
        },
        ..EngineSettings::default()
    })
    .await;
    let w = World::new(&app).await;
    // The sender's name is personal data too, and travels with every message.
    let name = canary("name");
    let tag = Uuid::new_v4().simple().to_string();
    let sender = runtime::store::users::create(
        &app.store,
        &format!("sender-{tag}@example.com"),
        &format!("Pat {name}"),
        "not-a-real-hash",
        false,
    )
    .await
    .unwrap()
    .id;
    world::member(&app, w.a, sender, TenantRole::CustomerAdmin).await;
    let token = app.token_for(sender, None).await;
    let mut canaries = vec![name];

    // An answered message (its answer echoes the canary back).
    let answered = world::agent(&app, w.a, "Answers").await;
    let text = canary("answered");
    send(
        &app,
        &token,
        w.a,
        answered,
        Some("plain"),
        &format!("Where is {text}?"),
    )
    .await;
    let messages = wait_for(&app, &token, w.a, answered, "plain", 2).await;
    assert!(messages[1].text.contains(&text), "{messages:?}");
    canaries.push(text);

    // A keyword hand-off: the sentence holds the rule's keyword and the canary.
    let handing_off = world::agent(&app, w.a, "Hands off").await;
    set_keyword_rule(&app, &token, w.a, handing_off).await;
    let text = canary("handoff");
    send(
        &app,
        &token,
        w.a,
        handing_off,
        Some("keyword"),
        &format!("I want a refund for order {text} now"),
    )
    .await;
    let messages = wait_for(&app, &token, w.a, handing_off, "keyword", 2).await;
    assert!(messages[1].text.contains("colleague"), "{messages:?}");
    wait_for_action(&app, w.a, "conversation.handed_off").await;
    canaries.push(text);

    // A flood over the connection's limit: answered, then one notice, and the rejections
    // audited as one record per window.
    let flooded = world::agent(&app, w.a, "Flooded").await;
    let text = canary("flood");
    for i in 0..6 {
        send(
            &app,
            &token,
            w.a,
            flooded,
            Some("flood"),
            &format!("{text} number {i}"),
        )
        .await;
    }
    wait_for_action(&app, w.a, "message.rate_limited").await;
    canaries.push(text);

    // An LLM failure whose error body quotes the prompt, as some providers' do.
    let failing = world::agent(&app, w.a, "Fails").await;
    let text = canary("failure");
    app.llm.set_fallback(Some(e2e::llm::Behavior::Fail {
        status: 500,
        retry_after: None,
        message: format!("could not complete: {text}"),
    }));
    send(
        &app,
        &token,
        w.a,
        failing,
        Some("broken"),
        &format!("Help with {text}"),
    )
    .await;
    let messages = wait_for(&app, &token, w.a, failing, "broken", 2).await;
    assert!(
        messages[1].text.contains("can't answer right now"),
        "{messages:?}"
    );
    wait_for_action(&app, w.a, "llm.failed").await;
    app.llm.set_fallback(None);
    canaries.push(text);

    // The trail recorded all of it, by id, count and class.
    let actions = app.audit_actions(w.a).await;
    for action in [
        "llm.call",
        "conversation.handed_off",
        "reply.handoff_sent",
        "message.rate_limited",
        "llm.failed",
        "reply.apology_sent",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "no {action} in {actions:?}"
        );
    }
    assert_no_canary(&app, w.a, &canaries).await;
    // The messages themselves hold the text: that is where forgetting a customer deletes it.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE body ILIKE '%' || $1 || '%'")
            .bind(&canaries[1])
            .fetch_one(tx.connection())
            .await
            .unwrap();
    assert!(stored >= 2, "the canary is in the conversation: {stored}");
}

#[tokio::test]
async fn member_changes_are_audited_by_id_and_role_without_the_members_email() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let platform = app.token_for(w.platform, None).await;
    let admin = app.token_for(w.admin_a, None).await;
    let email = format!("{}@example.com", canary("email"));
    let name = canary("displayname");
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/members", w.a),
            Some(&platform),
        )
        .json(&json!({
            "email": email, "display_name": name,
            "password": "a long enough password", "role": "customer_operator",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let user: Uuid = res.json::<serde_json::Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/members/{user}", w.a),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let rows: Vec<(String, Option<String>, serde_json::Value)> = sqlx::query_as(
        "SELECT action, target_id, details FROM audit_events \
          WHERE action IN ('member.added', 'member.removed') ORDER BY seq",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap();
    drop(tx);
    let user_id = user.to_string();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (action, target, details) in &rows {
        assert_eq!(target.as_deref(), Some(user_id.as_str()), "{action}");
        assert!(
            details.to_string().contains("customer_operator"),
            "{action}: {details}"
        );
    }
    assert_no_canary(&app, w.a, &[email, name]).await;
}
