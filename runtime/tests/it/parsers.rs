//! Bad input at scale, over HTTP: generated bodies for the Slack and WhatsApp webhooks and for a
//! representative set of the API's write endpoints. Whatever the bytes, the server answers
//! without a 5xx; what it refuses it refuses with the typed error body (`{code, …}`, the status
//! its code names) and leaves everything as it was: the durable ingest queue in Redis (stream
//! lengths and every key), and the tenant's rows and audit trail.
//!
//! Each property runs against one server; every case builds its body around a fresh event id,
//! so an accepted body would be queued (the positive controls prove the checks see it).

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::{ErrorBody, ErrorCode};

use crate::bad_input::{self, Field, Kind};
use crate::support::{SLACK_SIGNING_SECRET, TestApp, WHATSAPP_APP_SECRET};
use crate::world::{self, Who, World};

/// The JSON limit `TestApp` sets (`server.json_limit_bytes`).
const JSON_LIMIT: usize = 64 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `test` for `cases` values of `strategy` (shrinking a failure as usual).
fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// The status each code answers with (the contract in `api::error::status_for`).
fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(runtime::api::error::status_for(code).as_u16()).unwrap()
}

/// Asserts `res` is a refusal with one of `codes`, in the typed error body; returns its code.
async fn refused(res: reqwest::Response, codes: &[ErrorCode], what: &str) -> ErrorCode {
    let status = res.status();
    let bytes = res.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!("{status} without the typed error body ({e}): {text} for {what}")
    });
    assert!(
        codes.contains(&body.code),
        "{status} {text}: expected one of {codes:?} for {what}"
    );
    assert_eq!(status, status_of(body.code), "{text} for {what}");
    assert!(!body.request_id.is_empty(), "{text}");
    body.code
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// The ingest queue as Redis holds it: every stream's length and every key of the server.
async fn queue_state(app: &TestApp) -> (u64, BTreeSet<String>) {
    let keys = app.redis_keys_matching("*").await.into_iter().collect();
    (app.queued().await, keys)
}

/// A body that is valid but over the JSON limit (or far over it): `pointer` holds the padding.
fn oversized(valid: Value, pointer: &'static str) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        Just(JSON_LIMIT + 1),
        Just(300 * 1024),
        (JSON_LIMIT..2 * JSON_LIMIT)
    ]
    .prop_map(move |size| {
        let mut body = valid.clone();
        if let Some(slot) = body.pointer_mut(pointer) {
            *slot = Value::String("a".repeat(size));
        }
        serde_json::to_vec(&body).unwrap()
    })
    .boxed()
}

// ---- Slack ----

struct SlackWorld {
    app: TestApp,
    team: String,
    bot: String,
}

async fn slack_world() -> SlackWorld {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let install = crate::slack::install(&app, w.admin_a, w.a, "Nia").await;
    SlackWorld {
        team: install.team,
        bot: install.bot,
        app,
    }
}

/// A mention the installation would answer, under the event id `n` names.
fn slack_envelope(sw: &SlackWorld, n: u64) -> Value {
    crate::slack::callback(
        &sw.team,
        &format!("EvP{n:016x}"),
        json!({
            "type": "app_mention", "user": "UCUSTOMER", "channel": "CSUPPORT",
            "text": format!("<@{}> where is my order?", sw.bot), "ts": "1700000000.000100",
            "event_ts": "1700000000.000100",
        }),
    )
}

const SLACK_FIELDS: &[Field] = &[
    ("/type", Kind::Text),
    ("/team_id", Kind::Text),
    ("/api_app_id", Kind::Text),
    ("/event_id", Kind::Text),
    ("/event", Kind::Object),
    ("/event/type", Kind::Text),
    ("/event/channel", Kind::Text),
    ("/event/user", Kind::Text),
    ("/event/text", Kind::Text),
    ("/event/ts", Kind::Text),
    ("/event/thread_ts", Kind::Text),
];

const SLACK_STRINGS: &[&str] = &["/team_id", "/event_id", "/event/text", "/token"];

/// Bad envelopes, and the code each must be refused with.
fn slack_bad(valid: Value) -> BoxedStrategy<(Vec<u8>, ErrorCode)> {
    let bytes = serde_json::to_vec(&valid).unwrap();
    let malformed = prop_oneof![
        bad_input::truncated(bytes),
        bad_input::retyped(valid.clone(), SLACK_FIELDS),
        bad_input::invalid_utf8(valid.clone(), SLACK_STRINGS),
        bad_input::too_deep(valid.clone(), &["/event", "/event/text"]),
    ]
    .prop_map(|b| (b, ErrorCode::ValidationFailed));
    let large = oversized(valid, "/event/text").prop_map(|b| (b, ErrorCode::PayloadTooLarge));
    prop_oneof![4 => malformed, 1 => large].boxed()
}

async fn post_slack(app: &TestApp, body: &[u8], signed: bool) -> reqwest::Response {
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = if signed {
        e2e::slack::sign(SLACK_SIGNING_SECRET, &ts, body)
    } else {
        e2e::slack::sign("not-the-signing-secret", &ts, body)
    };
    app.http
        .post(app.url("/webhooks/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[test]
fn signed_slack_envelopes_that_do_not_parse_are_refused_typed_and_queue_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let sw = rt.block_on(slack_world());
    // The control: a valid envelope is queued, so the check below would see one.
    rt.block_on(async {
        let before = queue_state(&sw.app).await;
        let body = serde_json::to_vec(&slack_envelope(&sw, 0)).unwrap();
        assert_eq!(post_slack(&sw.app, &body, true).await.status(), 200);
        assert_eq!(queue_state(&sw.app).await.0, before.0 + 1);
    });
    let strategy = (1..u64::MAX).prop_flat_map(|n| slack_bad(slack_envelope(&sw, n)));
    check(192, strategy, |(body, code)| {
        rt.block_on(async {
            let before = queue_state(&sw.app).await;
            let res = post_slack(&sw.app, &body, true).await;
            refused(res, &[code], &preview(&body)).await;
            assert_eq!(queue_state(&sw.app).await, before, "{}", preview(&body));
        });
        Ok(())
    });
}

#[test]
fn unsigned_slack_deliveries_are_refused_typed_and_queue_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let sw = rt.block_on(slack_world());
    let strategy = (1..u64::MAX).prop_flat_map(|n| {
        let valid = slack_envelope(&sw, n);
        prop_oneof![
            Just(serde_json::to_vec(&valid).unwrap()),
            bad_input::arbitrary_bytes(),
            slack_bad(valid).prop_map(|(b, _)| b),
        ]
    });
    check(64, strategy, |body| {
        rt.block_on(async {
            let before = queue_state(&sw.app).await;
            let res = post_slack(&sw.app, &body, false).await;
            // Past the size limit the body is refused before its signature is read.
            refused(
                res,
                &[ErrorCode::Unauthenticated, ErrorCode::PayloadTooLarge],
                &preview(&body),
            )
            .await;
            assert_eq!(queue_state(&sw.app).await, before);
        });
        Ok(())
    });
}

#[test]
fn any_signed_bytes_at_the_slack_webhook_get_no_5xx_and_a_refusal_queues_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let sw = rt.block_on(slack_world());
    let strategy = (1..u64::MAX).prop_flat_map(|n| {
        prop_oneof![
            bad_input::arbitrary_bytes(),
            bad_input::mutated(serde_json::to_vec(&slack_envelope(&sw, n)).unwrap()),
        ]
    });
    check(128, strategy, |body| {
        rt.block_on(async {
            let before = queue_state(&sw.app).await;
            let res = post_slack(&sw.app, &body, true).await;
            let status = res.status();
            if status.is_success() {
                assert!(queue_state(&sw.app).await.0 <= before.0 + 1);
            } else {
                refused(
                    res,
                    &[ErrorCode::ValidationFailed, ErrorCode::Forbidden],
                    &preview(&body),
                )
                .await;
                assert_eq!(queue_state(&sw.app).await, before, "{}", preview(&body));
            }
        });
        Ok(())
    });
}

// ---- WhatsApp ----

struct WhatsappWorld {
    app: TestApp,
    number: String,
}

async fn whatsapp_world() -> WhatsappWorld {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let line = crate::whatsapp::connect(&app, w.admin_a, w.a, "Nia").await;
    WhatsappWorld {
        number: line.number.phone_number_id,
        app,
    }
}

/// A customer's text message to the connected number, under the `wamid` `n` names.
fn whatsapp_payload(ww: &WhatsappWorld, n: u64) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "200000000000001",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550000000", "phone_number_id": ww.number },
                    "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "15550100001" }],
                    "messages": [{
                        "from": "15550100001", "id": format!("wamid.P{n:016x}"),
                        "timestamp": chrono::Utc::now().timestamp().to_string(),
                        "type": "text", "text": { "body": "where is my order?" },
                    }],
                },
            }],
        }],
    })
}

const V: &str = "/entry/0/changes/0/value";

const WHATSAPP_FIELDS: &[Field] = &[
    ("/object", Kind::Text),
    ("/entry", Kind::List),
    ("/entry/0", Kind::Object),
    ("/entry/0/changes", Kind::List),
    ("/entry/0/changes/0/field", Kind::Text),
    ("/entry/0/changes/0/value", Kind::Object),
    ("/entry/0/changes/0/value/metadata", Kind::Object),
    (
        "/entry/0/changes/0/value/metadata/phone_number_id",
        Kind::Text,
    ),
    ("/entry/0/changes/0/value/contacts", Kind::List),
    (
        "/entry/0/changes/0/value/contacts/0/profile/name",
        Kind::Text,
    ),
    ("/entry/0/changes/0/value/messages", Kind::List),
    ("/entry/0/changes/0/value/messages/0", Kind::Object),
    ("/entry/0/changes/0/value/messages/0/from", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/id", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/timestamp", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/type", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/text", Kind::Object),
    ("/entry/0/changes/0/value/messages/0/text/body", Kind::Text),
    ("/entry/0/changes/0/value/statuses", Kind::List),
];

const WHATSAPP_STRINGS: &[&str] = &[
    "/entry/0/changes/0/value/metadata/phone_number_id",
    "/entry/0/changes/0/value/messages/0/text/body",
    "/entry/0/changes/0/value/messages/0/id",
    "/entry/0/changes/0/value/messaging_product",
];

fn whatsapp_bad(valid: Value) -> BoxedStrategy<(Vec<u8>, ErrorCode)> {
    let bytes = serde_json::to_vec(&valid).unwrap();
    let malformed = prop_oneof![
        bad_input::truncated(bytes),
        bad_input::retyped(valid.clone(), WHATSAPP_FIELDS),
        bad_input::invalid_utf8(valid.clone(), WHATSAPP_STRINGS),
        bad_input::too_deep(valid.clone(), &["/entry", V]),
    ]
    .prop_map(|b| (b, ErrorCode::ValidationFailed));
    let large = oversized(valid, "/entry/0/changes/0/value/messages/0/text/body")
        .prop_map(|b| (b, ErrorCode::PayloadTooLarge));
    prop_oneof![4 => malformed, 1 => large].boxed()
}

async fn post_whatsapp(app: &TestApp, body: &[u8], signed: bool) -> reqwest::Response {
    let secret = if signed {
        WHATSAPP_APP_SECRET
    } else {
        "not-the-app-secret-000000000000"
    };
    app.http
        .post(app.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", e2e::whatsapp::sign(secret, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[test]
fn signed_whatsapp_payloads_that_do_not_parse_are_refused_typed_and_queue_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let ww = rt.block_on(whatsapp_world());
    rt.block_on(async {
        let before = queue_state(&ww.app).await;
        let body = serde_json::to_vec(&whatsapp_payload(&ww, 0)).unwrap();
        assert_eq!(post_whatsapp(&ww.app, &body, true).await.status(), 200);
        assert_eq!(queue_state(&ww.app).await.0, before.0 + 1);
    });
    let strategy = (1..u64::MAX).prop_flat_map(|n| whatsapp_bad(whatsapp_payload(&ww, n)));
    check(192, strategy, |(body, code)| {
        rt.block_on(async {
            let before = queue_state(&ww.app).await;
            let res = post_whatsapp(&ww.app, &body, true).await;
            refused(res, &[code], &preview(&body)).await;
            assert_eq!(queue_state(&ww.app).await, before, "{}", preview(&body));
        });
        Ok(())
    });
}

#[test]
fn whatsapp_deliveries_not_signed_with_the_app_secret_are_refused_typed_and_queue_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let ww = rt.block_on(whatsapp_world());
    let strategy = (1..u64::MAX).prop_flat_map(|n| {
        let valid = whatsapp_payload(&ww, n);
        prop_oneof![
            Just(serde_json::to_vec(&valid).unwrap()),
            bad_input::arbitrary_bytes(),
            whatsapp_bad(valid).prop_map(|(b, _)| b),
        ]
    });
    check(64, strategy, |body| {
        rt.block_on(async {
            let before = queue_state(&ww.app).await;
            let res = post_whatsapp(&ww.app, &body, false).await;
            refused(
                res,
                &[ErrorCode::Unauthenticated, ErrorCode::PayloadTooLarge],
                &preview(&body),
            )
            .await;
            assert_eq!(queue_state(&ww.app).await, before);
        });
        Ok(())
    });
}

#[test]
fn any_signed_bytes_at_the_whatsapp_webhook_get_no_5xx_and_a_refusal_queues_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let ww = rt.block_on(whatsapp_world());
    let strategy = (1..u64::MAX).prop_flat_map(|n| {
        prop_oneof![
            bad_input::arbitrary_bytes(),
            bad_input::mutated(serde_json::to_vec(&whatsapp_payload(&ww, n)).unwrap()),
        ]
    });
    check(128, strategy, |body| {
        rt.block_on(async {
            let before = queue_state(&ww.app).await;
            let res = post_whatsapp(&ww.app, &body, true).await;
            if res.status().is_success() {
                assert!(queue_state(&ww.app).await.0 <= before.0 + 1);
            } else {
                refused(res, &[ErrorCode::ValidationFailed], &preview(&body)).await;
                assert_eq!(queue_state(&ww.app).await, before, "{}", preview(&body));
            }
        });
        Ok(())
    });
}

// ---- The API's JSON bodies ----

/// One write endpoint: who calls it, where, a valid body and the fields it reads.
struct Endpoint {
    method: Method,
    path: String,
    platform: bool,
    valid: Value,
    fields: &'static [Field],
    strings: &'static [&'static str],
    deep: &'static [&'static str],
    padded: &'static str,
}

struct ApiWorld {
    app: TestApp,
    tenant: shared::TenantId,
    admin: String,
    platform: String,
    endpoints: Vec<Endpoint>,
}

const TENANT_FIELDS: &[Field] = &[("/name", Kind::Text), ("/slug", Kind::Text)];

const AGENT_FIELDS: &[Field] = &[
    ("/name", Kind::Text),
    ("/role", Kind::Text),
    ("/persona", Kind::Text),
    ("/system_prompt", Kind::Text),
    ("/tools", Kind::List),
    ("/escalation_rules", Kind::List),
    ("/escalation_rules/0", Kind::Object),
    ("/escalation_rules/0/trigger", Kind::Object),
    ("/escalation_rules/0/trigger/kind", Kind::Text),
    ("/escalation_rules/0/trigger/keywords", Kind::List),
    ("/escalation_rules/0/handoff_target", Kind::Text),
    ("/business_function", Kind::Text),
    ("/scope_guard", Kind::Text),
    ("/in_scope_examples", Kind::List),
    ("/in_scope_examples/0", Kind::Text),
    ("/cite_or_handoff", Kind::Bool),
    ("/long_term_memory", Kind::Bool),
    ("/max_tool_steps", Kind::Integer),
    ("/turn_deadline_secs", Kind::Integer),
];

const TOOL_FIELDS: &[Field] = &[
    ("/name", Kind::Text),
    ("/description", Kind::Text),
    ("/parameters", Kind::Object),
    ("/method", Kind::Text),
    ("/url", Kind::Text),
    ("/headers", Kind::List),
    ("/headers/0", Kind::Object),
    ("/headers/0/name", Kind::Text),
    ("/headers/0/value", Kind::Text),
    ("/headers/0/secret", Kind::Bool),
    ("/max_response_bytes", Kind::Integer),
    ("/timeout_ms", Kind::Integer),
    ("/needs_confirmation", Kind::Bool),
];

const BUDGET_FIELDS: &[Field] = &[
    ("/monthly_micro_usd", Kind::Integer),
    ("/thresholds", Kind::List),
    ("/thresholds/0", Kind::Integer),
    ("/policy", Kind::Text),
    ("/downgrade_group", Kind::Text),
    ("/count_own_keys", Kind::Bool),
    ("/webhook_url", Kind::Text),
];

const INVITATION_FIELDS: &[Field] = &[("/email", Kind::Text), ("/role", Kind::Text)];

fn agent_body(name: &str) -> Value {
    json!({
        "name": name, "role": "Support", "persona": "Kind", "system_prompt": "Help",
        "job_description": "", "model_preference": "", "tools": [],
        "escalation_rules": [{ "trigger": { "kind": "keywords", "keywords": ["refund"] }, "handoff_target": null }],
        "business_function": "Orders and deliveries", "scope_guard": "whatsapp",
        "in_scope_examples": ["where is my order"], "ai_disclosure": "",
        "cite_or_handoff": false, "long_term_memory": true,
        "max_tool_steps": 4, "turn_deadline_secs": 30,
    })
}

async fn api_world() -> ApiWorld {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let tenant = w.a;
    let agent = world::agent(&app, tenant, "Ava Two").await;
    let admin = w.token(&app, Who::AdminA).await.unwrap();
    let platform = w.token(&app, Who::PlatformAdmin).await.unwrap();
    let t = format!("/api/tenants/{tenant}");
    let endpoint = |method: Method, path: String, platform: bool, valid: Value| Endpoint {
        method,
        path,
        platform,
        valid,
        fields: &[],
        strings: &["/name"],
        deep: &["/name"],
        padded: "/name",
    };
    let endpoints = vec![
        Endpoint {
            fields: TENANT_FIELDS,
            ..endpoint(
                Method::POST,
                "/api/tenants".into(),
                true,
                json!({ "name": "Props Ltd", "slug": "props-ltd" }),
            )
        },
        Endpoint {
            fields: AGENT_FIELDS,
            strings: &["/name", "/persona", "/in_scope_examples/0"],
            deep: &["/name", "/tools", "/escalation_rules"],
            ..endpoint(
                Method::POST,
                format!("{t}/agents"),
                false,
                agent_body("Props"),
            )
        },
        Endpoint {
            fields: AGENT_FIELDS,
            strings: &["/name", "/system_prompt"],
            deep: &["/escalation_rules/0/trigger", "/in_scope_examples"],
            ..endpoint(
                Method::PUT,
                format!("{t}/agents/{agent}"),
                false,
                agent_body("Ava renamed"),
            )
        },
        Endpoint {
            fields: TOOL_FIELDS,
            strings: &["/name", "/url", "/headers/0/value"],
            deep: &["/parameters", "/parameters/properties", "/headers"],
            padded: "/description",
            ..endpoint(
                Method::POST,
                format!("{t}/tools"),
                false,
                json!({
                    "name": "lookup_order", "description": "Finds an order by its number",
                    "parameters": { "type": "object", "properties": { "id": { "type": "string" } }, "required": ["id"] },
                    "method": "GET", "url": "https://shop.example.com/orders/{id}",
                    "headers": [{ "name": "X-Api-Key", "value": "k-123", "secret": true }],
                    "max_response_bytes": 65536, "timeout_ms": 5000, "needs_confirmation": false,
                }),
            )
        },
        Endpoint {
            fields: BUDGET_FIELDS,
            strings: &["/policy", "/webhook_url", "/note"],
            deep: &["/thresholds", "/monthly_micro_usd"],
            padded: "/webhook_url",
            ..endpoint(
                Method::PUT,
                format!("{t}/budgets/tenant"),
                false,
                json!({
                    "monthly_micro_usd": 5_000_000, "thresholds": [50, 80, 100], "policy": "soft",
                    "downgrade_group": null, "count_own_keys": false, "webhook_url": null,
                }),
            )
        },
        Endpoint {
            fields: INVITATION_FIELDS,
            strings: &["/email", "/role"],
            deep: &["/email"],
            padded: "/email",
            ..endpoint(
                Method::POST,
                format!("{t}/invitations"),
                false,
                json!({ "email": "new-person@example.com", "role": "customer_operator" }),
            )
        },
    ];
    ApiWorld {
        app,
        tenant,
        admin,
        platform,
        endpoints,
    }
}

/// Asserts nothing the write endpoints could change has changed, showing what did.
fn assert_unchanged(before: &[Value], after: &[Value], what: &str) {
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        assert_eq!(b, a, "state {i} changed: {what}");
    }
}

/// What the write endpoints could change: the lists they write to and the tenant's trail.
async fn api_state(aw: &ApiWorld) -> Vec<Value> {
    let t = format!("/api/tenants/{}", aw.tenant);
    let mut out = Vec::new();
    for (path, token) in [
        ("/api/tenants?limit=100".to_string(), &aw.platform),
        (format!("{t}/agents?limit=100"), &aw.admin),
        (format!("{t}/tools"), &aw.admin),
        (format!("{t}/budgets"), &aw.admin),
        (format!("{t}/invitations?limit=100"), &aw.admin),
    ] {
        let mut state = aw.app.get_json::<Value>(&path, token).await;
        // A budget's forecast moves with the clock, not with a write.
        for budget in state.as_array_mut().into_iter().flatten() {
            if let Some(b) = budget.as_object_mut() {
                b.remove("forecast_micro_usd");
            }
        }
        out.push(state);
    }
    out.push(json!(aw.app.audit_actions(aw.tenant).await));
    out
}

async fn send(
    aw: &ApiWorld,
    e: &Endpoint,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> reqwest::Response {
    let token = if e.platform { &aw.platform } else { &aw.admin };
    let mut req = aw
        .app
        .request(e.method.clone(), &e.path, Some(token))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

/// Bad bodies for endpoint `e`, with the content type sent and the codes that may refuse them.
fn api_bad(e: &Endpoint) -> BoxedStrategy<(Vec<u8>, Option<&'static str>, &'static [ErrorCode])> {
    const JSON: Option<&str> = Some("application/json");
    const PARSE: &[ErrorCode] = &[ErrorCode::BadRequest];
    let bytes = serde_json::to_vec(&e.valid).unwrap();
    // A field of the wrong kind is refused by the parser, or, where the field holds any JSON
    // (a tool's `parameters`), by validation.
    let retyped = bad_input::retyped(e.valid.clone(), e.fields).prop_map(|b| {
        (
            b,
            JSON,
            &[ErrorCode::BadRequest, ErrorCode::ValidationFailed][..],
        )
    });
    let unparsable = prop_oneof![
        bad_input::truncated(bytes.clone()),
        bad_input::invalid_utf8(e.valid.clone(), e.strings),
        bad_input::too_deep(e.valid.clone(), e.deep),
        bad_input::arbitrary_bytes().prop_filter("not JSON", |b| !bad_input::is_json_object(b)),
    ]
    .prop_map(|b| (b, JSON, PARSE));
    let large = oversized(e.valid.clone(), e.padded)
        .prop_map(|b| (b, JSON, &[ErrorCode::PayloadTooLarge][..]));
    let not_json = prop_oneof![
        Just(None),
        Just(Some("text/plain")),
        Just(Some("application/x-www-form-urlencoded"))
    ]
    .prop_map(move |ct| (bytes.clone(), ct, &[ErrorCode::UnsupportedMediaType][..]));
    prop_oneof![4 => unparsable, 2 => retyped, 1 => large, 1 => not_json].boxed()
}

#[test]
fn the_apis_write_endpoints_refuse_bad_bodies_typed_and_change_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let aw = rt.block_on(api_world());
    let n = aw.endpoints.len();
    let strategy = (0..n).prop_flat_map(|i| (Just(i), api_bad(&aw.endpoints[i])));
    check(256, strategy, |(i, (body, content_type, codes))| {
        let e = &aw.endpoints[i];
        rt.block_on(async {
            let before = api_state(&aw).await;
            let res = send(&aw, e, body.clone(), content_type).await;
            let what = format!("{} {} {}", e.method, e.path, preview(&body));
            refused(res, codes, &what).await;
            assert_unchanged(&before, &api_state(&aw).await, &what);
        });
        Ok(())
    });
    // The control: each valid body is taken and changes what the check compares.
    rt.block_on(async {
        for e in &aw.endpoints {
            let before = api_state(&aw).await;
            let res = send(
                &aw,
                e,
                serde_json::to_vec(&e.valid).unwrap(),
                Some("application/json"),
            )
            .await;
            assert!(
                res.status().is_success(),
                "{} {}: {}",
                e.method,
                e.path,
                res.status()
            );
            assert_ne!(api_state(&aw).await, before, "{} {}", e.method, e.path);
        }
    });
}

#[test]
fn mutated_bodies_at_the_apis_write_endpoints_get_no_5xx_and_a_refusal_changes_nothing() {
    let rt = runtime();
    // The server is dropped inside its runtime, also when a property fails.
    let _inside = rt.enter();
    let aw = rt.block_on(api_world());
    let n = aw.endpoints.len();
    let strategy = (0..n).prop_flat_map(|i| {
        (
            Just(i),
            bad_input::mutated(serde_json::to_vec(&aw.endpoints[i].valid).unwrap()),
        )
    });
    check(128, strategy, |(i, body)| {
        let e = &aw.endpoints[i];
        rt.block_on(async {
            let before = api_state(&aw).await;
            let res = send(&aw, e, body.clone(), Some("application/json")).await;
            let what = format!("{} {} {}", e.method, e.path, preview(&body));
            assert!(!res.status().is_server_error(), "{what}: {}", res.status());
            if !res.status().is_success() {
                refused(
                    res,
                    &[
                        ErrorCode::BadRequest,
                        ErrorCode::ValidationFailed,
                        ErrorCode::Conflict,
                    ],
                    &what,
                )
                .await;
                assert_unchanged(&before, &api_state(&aw).await, &what);
            }
        });
        Ok(())
    });
}
