//! Tenants' own LLM keys through the API (checked, sealed, bound to the tenant, never shown) and
//! per-call metering (usage and cost per tenant, agent, model and day).

use reqwest::{Method, StatusCode};
use runtime::engine::turn::EngineSettings;
use runtime::llm::error::FailureKind;
use runtime::llm::metering::{self, MeteringError};
use runtime::llm::pool::{Credentials, KeyFailure, ProviderKind};
use runtime::llm::types::Usage;
use runtime::store::llm as store_llm;
use serde_json::{Value, json};
use shared::ErrorBody;
use shared::resources::{LlmKey, LlmProvider};

use crate::llm::{ManualClock, deployment, pool, simple};
use crate::pipeline::{engine_app, send, wait_for};
use crate::support::{AppOptions, TENANT_LLM_KEY, TestApp};
use crate::world::{self, World};

#[tokio::test]
async fn tenant_keys_are_checked_sealed_bound_to_their_tenant_and_never_shown() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let path = format!("/api/tenants/{}/llm-keys/openai", w.a);

    let res = app
        .request(Method::PUT, &path, Some(&admin))
        .json(&json!({ "api_key": TENANT_LLM_KEY }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains(TENANT_LLM_KEY), "{text}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["hint"], "…a1b2");
    // The provider was asked, with the key.
    let check = app
        .llm
        .received()
        .into_iter()
        .find(|r| r.path == "/v1/models")
        .unwrap();
    assert_eq!(
        check.auth.as_deref(),
        Some(format!("Bearer {TENANT_LLM_KEY}").as_str())
    );

    let listed = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/llm-keys", w.a),
            Some(&admin),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("…a1b2") && !listed.contains(TENANT_LLM_KEY),
        "{listed}"
    );

    // Stored sealed: the key's bytes are not in the row.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let rows = store_llm::keys(&mut tx).await.unwrap();
    drop(tx);
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0]
            .ciphertext
            .windows(8)
            .any(|win| TENANT_LLM_KEY.as_bytes().windows(8).any(|k| k == win))
    );
    let creds = metering::tenant_credentials(&app.store, &app.keyring, w.a)
        .await
        .unwrap();
    assert_eq!(
        creds.key(LlmProvider::Openai).unwrap().expose(),
        TENANT_LLM_KEY
    );

    // A key the provider refuses is rejected and changes nothing.
    let res = app
        .request(Method::PUT, &path, Some(&admin))
        .json(&json!({ "api_key": "sk-refused-by-provider" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.fields[0].field, "api_key");
    let creds = metering::tenant_credentials(&app.store, &app.keyring, w.a)
        .await
        .unwrap();
    assert_eq!(
        creds.key(LlmProvider::Openai).unwrap().expose(),
        TENANT_LLM_KEY
    );

    // A's ciphertext copied into B's row does not open for B.
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    store_llm::put_key(
        &mut tx,
        "openai",
        &rows[0].ciphertext,
        rows[0].key_version,
        "…a1b2",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let moved = metering::tenant_credentials(&app.store, &app.keyring, w.b).await;
    assert!(matches!(moved, Err(MeteringError::Crypto(_))), "{moved:?}");

    // The audit trail names the change but not the key.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let trail: Vec<String> =
        sqlx::query_scalar("SELECT action || ' ' || details::text FROM audit_events ORDER BY seq")
            .fetch_all(tx.connection())
            .await
            .unwrap();
    drop(tx);
    assert!(trail.iter().any(|t| t.starts_with("llm_key.set")));
    assert!(trail.iter().all(|t| !t.contains(TENANT_LLM_KEY)));

    let res = app
        .request(Method::DELETE, &path, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let creds = metering::tenant_credentials(&app.store, &app.keyring, w.a)
        .await
        .unwrap();
    assert!(creds.key(LlmProvider::Openai).is_none());

    // Operators cannot see or change keys.
    let operator = app.token_for(w.operator_a, None).await;
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/llm-keys", w.a),
            Some(&operator),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn calls_are_metered_per_tenant_agent_model_and_day_with_cost_from_the_price_table() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let agent = crate::world::agent(&app, w.a, "Metered").await;
    let mut known = deployment(
        "openai",
        ProviderKind::OpenAi,
        &app.llm.base_url,
        TENANT_LLM_KEY,
    );
    known.model = "gpt-4o-mini".into();
    let mut unknown = deployment(
        "local",
        ProviderKind::OpenAi,
        &app.llm.base_url,
        TENANT_LLM_KEY,
    );
    unknown.model = "my-local-model".into();
    let priced = pool(vec![known], ManualClock::new());
    let unpriced = pool(vec![unknown], ManualClock::new());

    let mut expected = Usage::default();
    let mut expected_cost = 0.0;
    for _ in 0..2 {
        let report = priced
            .chat(None, &Credentials::default(), &simple())
            .await
            .unwrap();
        let u = report.completion.usage;
        let cost = metering::record_call(&app.store, w.a, Some(agent), &report, chrono::Utc::now())
            .await
            .unwrap();
        // gpt-4o-mini in the bundled table: $0.15 per million input, $0.60 per million output
        // tokens, i.e. 0.15 and 0.6 micro-dollars per token.
        let by_hand = u.input_tokens as f64 * 0.15 + u.output_tokens as f64 * 0.6;
        assert_eq!(cost, Some(by_hand.round() as i64));
        expected.input_tokens += u.input_tokens;
        expected.output_tokens += u.output_tokens;
        expected_cost += by_hand.round();
    }
    let report = unpriced
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(
        metering::record_call(&app.store, w.a, Some(agent), &report, chrono::Utc::now())
            .await
            .unwrap(),
        None
    );

    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let rows = store_llm::usage(&mut tx).await.unwrap();
    let mine: Vec<_> = rows.iter().filter(|r| r.agent_id == Some(agent)).collect();
    let gpt = mine.iter().find(|r| r.model == "gpt-4o-mini").unwrap();
    assert_eq!(gpt.calls, 2);
    assert_eq!(gpt.input_tokens, expected.input_tokens as i64);
    assert_eq!(gpt.output_tokens, expected.output_tokens as i64);
    assert_eq!(gpt.cost_micro_usd, expected_cost as i64);
    assert_eq!(gpt.unpriced_calls, 0);
    let local = mine.iter().find(|r| r.model == "my-local-model").unwrap();
    assert_eq!(
        (local.calls, local.cost_micro_usd, local.unpriced_calls),
        (1, 0, 1)
    );
    let calls: Vec<Value> = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'llm.call' ORDER BY seq",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap();
    assert_eq!(calls.len(), 3);
    assert!(calls[0]["cost_micro_usd"].is_i64());
    assert!(calls[2]["cost_micro_usd"].is_null(), "unknown, not zero");
    assert_eq!(calls[0]["model"], "gpt-4o-mini");
    drop(tx);
    // Nothing was written for B.
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    let b_rows = store_llm::usage(&mut tx).await.unwrap();
    assert!(b_rows.iter().all(|r| r.model != "my-local-model"));
}

/// Saves `key` as the tenant's own OpenAI key through the API.
async fn put_openai_key(app: &TestApp, token: &str, tenant: shared::TenantId, key: &str) -> LlmKey {
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{tenant}/llm-keys/openai"),
            Some(token),
        )
        .json(&json!({ "api_key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

const APOLOGY: &str = "I'm sorry, I can't answer right now. Please try again in a few minutes.";

#[actix_rt::test]
async fn one_tenants_refused_key_never_silences_the_llm_for_another_tenant() {
    const A_KEY: &str = "sk-tenant-a-own-c3d4";
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let admin_a = app.token_for(w.admin_a, None).await;
    let admin_b = app.token_for(w.admin_b, None).await;
    let agent_a = world::agent(&app, w.a, "Nia").await;
    app.llm.accept_key(A_KEY);
    put_openai_key(&app, &admin_a, w.a, A_KEY).await;
    // The provider revokes A's key after it was saved; B stays on the platform's key.
    app.llm.revoke_key(A_KEY);

    // Interleaved one at a time, then all at once.
    for i in 0..2 {
        let sent = send(&app, &admin_a, w.a, agent_a, None, &format!("A asks {i}")).await;
        let a = wait_for(&app, &admin_a, w.a, agent_a, &sent.conversation, 2).await;
        assert_eq!(a[1].text, APOLOGY);
        let sent = send(&app, &admin_b, w.b, w.agent_b, None, &format!("B asks {i}")).await;
        let b = wait_for(&app, &admin_b, w.b, w.agent_b, &sent.conversation, 2).await;
        assert_eq!(b[1].text, format!("echo: B asks {i}"));
    }
    let mut burst = Vec::new();
    for i in 2..6 {
        let a = send(&app, &admin_a, w.a, agent_a, None, &format!("A asks {i}")).await;
        let b = send(&app, &admin_b, w.b, w.agent_b, None, &format!("B asks {i}")).await;
        burst.push((i, a.conversation, b.conversation));
    }
    for (i, a, b) in burst {
        let b = wait_for(&app, &admin_b, w.b, w.agent_b, &b, 2).await;
        assert_eq!(
            b[1].text,
            format!("echo: B asks {i}"),
            "B is always answered"
        );
        let a = wait_for(&app, &admin_a, w.a, agent_a, &a, 2).await;
        assert_eq!(a[1].text, APOLOGY);
    }

    // The refusal shows on A's key, in our words.
    let listed = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/llm-keys", w.a),
            Some(&admin_a),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(A_KEY) && !listed.contains("Incorrect API key"),
        "{listed}"
    );
    let keys: Vec<LlmKey> = serde_json::from_str(&listed).unwrap();
    assert!(keys[0].refused_at.is_some(), "{keys:?}");
    assert_eq!(
        keys[0].refused_reason.as_deref(),
        Some("the provider refused the key (HTTP 401)")
    );

    // Audited once for the episode, for A only; another report of it adds nothing.
    let refused = |actions: Vec<String>| actions.iter().filter(|a| *a == "llm.key_refused").count();
    assert_eq!(refused(app.audit_actions(w.a).await), 1);
    assert_eq!(refused(app.audit_actions(w.b).await), 0);
    let again = KeyFailure {
        provider: LlmProvider::Openai,
        kind: FailureKind::Auth(401),
    };
    metering::record_key_failures(&app.store, w.a, &[again])
        .await
        .unwrap();
    assert_eq!(refused(app.audit_actions(w.a).await), 1);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let details: Value =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'llm.key_refused'")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    drop(tx);
    assert_eq!(
        details,
        json!({ "provider": "openai", "failure": "auth", "http_status": 401 })
    );

    // Saving the key again ends the episode.
    app.llm.accept_key(A_KEY);
    let saved = put_openai_key(&app, &admin_a, w.a, A_KEY).await;
    assert_eq!((saved.refused_at, saved.refused_reason), (None, None));
}

#[actix_rt::test]
async fn a_tenants_own_openai_key_never_goes_to_the_platforms_ollama() {
    const A_KEY: &str = "sk-tenant-a-own-e5f6";
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        ollama: true,
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let admin_a = app.token_for(w.admin_a, None).await;
    app.llm.accept_key(A_KEY);
    put_openai_key(&app, &admin_a, w.a, A_KEY).await;
    let agent = world::agent_preferring(&app, w.a, "Olly", "ollama").await;

    let sent = send(&app, &admin_a, w.a, agent, None, "Hello there").await;
    let messages = wait_for(&app, &admin_a, w.a, agent, &sent.conversation, 2).await;
    assert_eq!(messages[1].text, "echo: Hello there");
    let ollama = app.ollama.as_ref().unwrap().received();
    assert_eq!(ollama.len(), 1, "answered by the preferred ollama group");
    assert_eq!(ollama[0].auth, None, "no tenant key sent to ollama");
}
