//! Tenants' own LLM keys through the API (checked, sealed, bound to the tenant, never shown) and
//! per-call metering (usage and cost per tenant, agent, model and day).

use reqwest::{Method, StatusCode};
use runtime::llm::metering::{self, MeteringError};
use runtime::llm::pool::{Credentials, ProviderKind};
use runtime::llm::types::Usage;
use runtime::store::llm as store_llm;
use serde_json::{Value, json};
use shared::ErrorBody;

use crate::llm::{ManualClock, deployment, pool, simple};
use crate::support::{TENANT_LLM_KEY, TestApp};
use crate::world::World;

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
    assert_eq!(creds.openai.unwrap().expose(), TENANT_LLM_KEY);

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
    assert_eq!(creds.openai.unwrap().expose(), TENANT_LLM_KEY);

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
    assert!(creds.openai.is_none());

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
        let cost = metering::record_call(&app.store, w.a, Some(agent), &report)
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
        metering::record_call(&app.store, w.a, Some(agent), &report)
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
