//! WhatsApp end to end: signed Cloud API webhooks in (from the fake Graph API, the way Meta
//! posts them), through the pipeline, replies sent from the tenant's own business number with
//! its own token; the 24-hour window, Meta's errors, delivery reports, the scope guard and the
//! AI disclosure; and the connections API.

use std::time::{Duration, Instant};

use e2e::whatsapp::{Behavior, FakeGraph, Number, SentKind, StatusKind, Template, batch};
use reqwest::{Method, StatusCode};
use runtime::engine::turn::{EngineSettings, Outcome};
use serde_json::{Value, json};
use shared::TenantId;
use uuid::Uuid;

use crate::support::{
    AppOptions, TestApp, WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN, field_errors,
};
use crate::world::{self, World};

const WAIT: Duration = Duration::from_secs(20);

async fn engine_app_with(settings: EngineSettings) -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(settings),
        ..AppOptions::default()
    })
    .await
}

async fn engine_app() -> TestApp {
    engine_app_with(EngineSettings::default()).await
}

/// A connected business number.
pub(crate) struct Connected {
    pub number: Number,
    pub agent: shared::AgentId,
    pub connection: shared::ConnectionId,
}

fn digits(n: usize) -> String {
    let raw = Uuid::new_v4().as_u128().to_string();
    raw[..n].to_string()
}

/// A number registered at the fake, readable with its own token.
pub(crate) fn new_number(fake: &FakeGraph, verified_name: &str) -> Number {
    let number = Number {
        phone_number_id: format!("1{}", digits(14)),
        waba_id: format!("2{}", digits(14)),
        display_phone_number: format!("+1 555-{}", digits(7)),
        verified_name: verified_name.into(),
        token: format!("EAAG{}", Uuid::new_v4().simple()),
    };
    fake.add_number(number.clone());
    number
}

fn connection_body(number: &Number, agent: shared::AgentId) -> Value {
    json!({
        "phone_number_id": number.phone_number_id,
        "waba_id": number.waba_id,
        "access_token": number.token,
        "agent_id": agent,
    })
}

/// Connects `number` through the API as the tenant's admin, answered by `agent`.
pub(crate) async fn connect_number(
    app: &TestApp,
    admin: Uuid,
    tenant: TenantId,
    agent: shared::AgentId,
    number: &Number,
    extra: Value,
) -> shared::ConnectionId {
    let mut body = connection_body(number, agent);
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let token = app.token_for(admin, None).await;
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/channels/whatsapp"),
            Some(&token),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        !body.to_string().contains(&number.token),
        "the token is never shown"
    );
    body["id"].as_str().unwrap().parse().unwrap()
}

/// A new agent of `tenant` with a business function (an agent answering a WhatsApp number must
/// have one).
pub(crate) async fn shop_agent(app: &TestApp, tenant: TenantId, name: &str) -> shared::AgentId {
    world::agent_serving(
        app,
        tenant,
        name,
        &format!(
            "Customer service for {name}'s online shop: orders, deliveries, returns and refunds"
        ),
    )
    .await
}

/// A new agent of `tenant` answering on a new number of its own.
pub(crate) async fn connect(
    app: &TestApp,
    admin: Uuid,
    tenant: TenantId,
    agent_name: &str,
) -> Connected {
    let agent = shop_agent(app, tenant, agent_name).await;
    let number = new_number(&app.whatsapp, &format!("{agent_name} Ltd"));
    let connection = connect_number(app, admin, tenant, agent, &number, json!({})).await;
    Connected {
        number,
        agent,
        connection,
    }
}

/// The text messages the fake accepted (not read receipts), in order.
fn texts(app: &TestApp) -> Vec<e2e::whatsapp::Sent> {
    app.whatsapp
        .messages()
        .into_iter()
        .filter(|s| matches!(s.kind, SentKind::Text { .. }))
        .collect()
}

/// Every free-form message send the fake received (accepted or refused), in order.
fn text_calls(app: &TestApp) -> Vec<e2e::whatsapp::Call> {
    app.whatsapp
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/messages") && c.body["type"] == "text")
        .collect()
}

/// The text a free-form send carried.
fn call_text(call: &e2e::whatsapp::Call) -> &str {
    call.body["text"]["body"].as_str().unwrap_or_default()
}

fn body_of(sent: &e2e::whatsapp::Sent) -> &str {
    match &sent.kind {
        SentKind::Text { body } => body,
        other => panic!("not a text: {other:?}"),
    }
}

/// The delivery status of the reply parts to inbound event `wamid`, in order.
async fn reply_parts(
    app: &TestApp,
    tenant: TenantId,
    wamid: &str,
) -> Vec<(String, Option<String>)> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_as("SELECT status, failure FROM messages WHERE reply_to = $1 ORDER BY part")
        .bind(wamid)
        .fetch_all(tx.connection())
        .await
        .unwrap()
}

async fn wait_statuses(
    app: &TestApp,
    tenant: TenantId,
    wamid: &str,
    want: &[&str],
) -> Vec<(String, Option<String>)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let parts = reply_parts(app, tenant, wamid).await;
        if parts.iter().map(|p| p.0.as_str()).collect::<Vec<_>>() == want {
            return parts;
        }
        assert!(
            Instant::now() < deadline,
            "reply parts of {wamid}: {parts:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each reply part to inbound event `wamid`, in order: (part, status, the provider's id for it).
async fn reply_part_ids(
    app: &TestApp,
    tenant: TenantId,
    wamid: &str,
) -> Vec<(i16, String, Option<String>)> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_as(
        "SELECT part, status, provider_message_id FROM messages WHERE reply_to = $1 ORDER BY part",
    )
    .bind(wamid)
    .fetch_all(tx.connection())
    .await
    .unwrap()
}

/// How the entries for event `wamid` left the engine, the first `count` times.
async fn outcomes_of(
    events: &mut crate::support::Events,
    tenant: TenantId,
    wamid: &str,
    count: usize,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    while out.len() < count {
        for (id, outcome) in events.finished(tenant, 1).await {
            if id == wamid {
                out.push(outcome);
            }
        }
    }
    out
}

/// The tenant's audit events as `{action, details}`, in order.
async fn audit_events(app: &TestApp, tenant: TenantId) -> Vec<Value> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT action, details FROM audit_events ORDER BY seq")
            .fetch_all(tx.connection())
            .await
            .unwrap();
    rows.into_iter()
        .map(|(action, details)| json!({ "action": action, "details": details }))
        .collect()
}

/// What a customer's first reply starts with (no agent here sets its own).
const DISCLOSURE: &str = "I'm an AI assistant.";

fn llm_calls(app: &TestApp) -> usize {
    app.llm
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count()
}

fn last_user_message(app: &TestApp) -> String {
    let calls: Vec<_> = app
        .llm
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .collect();
    let messages = calls.last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .clone();
    messages.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[actix_rt::test]
async fn verification_echoes_the_challenge_only_for_the_configured_token() {
    let app = TestApp::spawn().await;
    let ok = app.whatsapp.verify_webhook(WHATSAPP_VERIFY_TOKEN).await;
    assert!(ok.accepted(), "{ok:?}");
    let wrong = app
        .whatsapp
        .verify_webhook("not-the-verify-token-at-all")
        .await;
    assert_eq!(wrong.status, 403, "{wrong:?}");
    assert_ne!(wrong.body, wrong.challenge);
    let res = app
        .http
        .get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=42"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no token at all");
}

#[actix_rt::test]
async fn only_deliveries_signed_with_the_app_secret_are_taken() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let payload = app
        .whatsapp
        .inbound(&line.number.phone_number_id)
        .text(
            "15550100001",
            "Jürgen",
            "Grüße! Wo ist meine Bestellung? 🙂",
        )
        .build();
    let raw = serde_json::to_vec(&payload).unwrap();
    let right = e2e::whatsapp::sign(WHATSAPP_APP_SECRET, &raw);
    let wrong = e2e::whatsapp::sign("another-apps-secret-0000000000", &raw);
    assert_eq!(
        app.whatsapp.deliver_raw(raw.clone(), Some(wrong)).await,
        401
    );
    assert_eq!(app.whatsapp.deliver_raw(raw.clone(), None).await, 401);
    let mut altered = raw.clone();
    let at = altered.iter().position(|b| *b == b'W').unwrap();
    altered[at] = b'w';
    assert_eq!(
        app.whatsapp.deliver_raw(altered, Some(right.clone())).await,
        401,
        "a changed body"
    );
    // The same JSON with its non-ASCII characters escaped is other bytes: the signature covers
    // the raw bytes, never a re-serialisation.
    let escaped: String = String::from_utf8(raw.clone())
        .unwrap()
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                c.encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect()
            }
        })
        .collect();
    assert_eq!(
        app.whatsapp
            .deliver_raw(escaped.clone().into_bytes(), Some(right.clone()))
            .await,
        401
    );
    assert_eq!(llm_calls(&app), 0, "nothing refused reached the agent");
    // Meta's own escaped encoding, signed over those bytes, is taken.
    let signed_escaped = e2e::whatsapp::sign(WHATSAPP_APP_SECRET, escaped.as_bytes());
    let mut events = app.events();
    assert_eq!(
        app.whatsapp
            .deliver_raw(escaped.into_bytes(), Some(signed_escaped))
            .await,
        200
    );
    events.finished(w.a, 1).await;
    let sent = texts(&app);
    assert_eq!(sent.len(), 1);
    assert!(
        body_of(&sent[0]).contains("Grüße! Wo ist meine Bestellung? 🙂"),
        "the text arrived intact: {}",
        body_of(&sent[0])
    );
}

#[actix_rt::test]
#[expect(
    clippy::print_stdout,
    reason = "the test reports the latency it measured"
)]
async fn one_batched_post_for_two_tenants_answers_each_from_its_own_number() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let a = connect(&app, w.admin_a, w.a, "Ava").await;
    let b = connect(&app, w.admin_b, w.b, "Bea").await;
    assert!(
        app.whatsapp.subscribed(&a.number.waba_id) && app.whatsapp.subscribed(&b.number.waba_id)
    );
    let to_a = app.whatsapp.inbound(&a.number.phone_number_id).text(
        "15550100001",
        "Ana",
        "alpha order 17 please",
    );
    let to_b = app
        .whatsapp
        .inbound(&b.number.phone_number_id)
        .text("15550100002", "Bo", "bravo refund 42")
        .text("15550100002", "Bo", "bravo again");
    let (wamid_a, wamids_b) = (to_a.ids()[0].clone(), to_b.ids());
    let mut events_a = app.events();
    let mut events_b = app.events();
    let started = Instant::now();
    assert_eq!(app.whatsapp.deliver(&batch(&[to_a, to_b])).await, 200);
    let acknowledged = started.elapsed();
    events_a.finished(w.a, 1).await;
    events_b.finished(w.b, 2).await;
    let sent = texts(&app);
    assert_eq!(sent.len(), 3, "{sent:?}");
    let first = sent.iter().map(|s| s.at).min().unwrap() - started;
    println!(
        "whatsapp: batch acknowledged in {:.1} ms, first reply sent {:.1} ms after the webhook",
        acknowledged.as_secs_f64() * 1000.0,
        first.as_secs_f64() * 1000.0
    );
    for s in &sent {
        let body = body_of(s);
        if s.phone_number_id == a.number.phone_number_id {
            assert_eq!(s.token, a.number.token, "A's number with A's token");
            assert_eq!(s.to, "15550100001");
            assert!(body.contains("alpha") && !body.contains("bravo"), "{body}");
        } else {
            assert_eq!(s.phone_number_id, b.number.phone_number_id);
            assert_eq!(s.token, b.number.token, "B's number with B's token");
            assert_eq!(s.to, "15550100002");
            assert!(body.contains("bravo") && !body.contains("alpha"), "{body}");
        }
    }
    // Neither tenant holds the other's messages.
    for (tenant, own, other) in [(w.a, "alpha", "bravo"), (w.b, "bravo", "alpha")] {
        let mut tx = app.store.tenant_tx(tenant).await.unwrap();
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM messages")
            .fetch_all(tx.connection())
            .await
            .unwrap();
        assert!(bodies.iter().any(|b| b.contains(own)), "{bodies:?}");
        assert!(!bodies.iter().any(|b| b.contains(other)), "{bodies:?}");
    }
    assert_eq!(reply_parts(&app, w.a, &wamid_a).await.len(), 1);
    assert!(
        reply_parts(&app, w.a, &wamids_b[0]).await.is_empty(),
        "RLS hides B's replies"
    );
    // The user's messages were marked read when their turns started.
    let reads = app.whatsapp.wait_reads(3, WAIT).await;
    let mut read_ids: Vec<String> = reads
        .iter()
        .map(|r| match &r.kind {
            SentKind::Read { message_id } => message_id.clone(),
            _ => unreachable!(),
        })
        .collect();
    read_ids.sort();
    let mut all = vec![wamid_a.clone(), wamids_b[0].clone(), wamids_b[1].clone()];
    all.sort();
    assert_eq!(read_ids, all);
    // The channel's health shows the last message received.
    let admin = app.token_for(w.admin_a, None).await;
    let list: Value = app
        .get_json(&format!("/api/tenants/{}/channels/whatsapp", w.a), &admin)
        .await;
    assert_eq!(list["total"], 1, "only A's own number: {list}");
    assert!(
        list["items"][0]["health"]["last_received_at"].is_string(),
        "{list}"
    );
}

#[actix_rt::test]
async fn retries_and_simultaneous_duplicates_are_answered_once() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let payload = app
        .whatsapp
        .inbound(&line.number.phone_number_id)
        .text("15550100001", "Ana", "is my parcel lost?")
        .build();
    let mut events = app.events();
    let (one, two) = tokio::join!(
        app.whatsapp.deliver(&payload),
        app.whatsapp.deliver(&payload)
    );
    assert_eq!((one, two), (200, 200));
    events.finished(w.a, 1).await;
    // Meta retries hours later, after the reply went out.
    assert_eq!(app.whatsapp.deliver(&payload).await, 200);
    let answered = app.whatsapp.wait_sent(1, WAIT).await;
    assert!(!answered.is_empty());
    assert_eq!(texts(&app).len(), 1, "one reply");
    assert_eq!(llm_calls(&app), 1, "one LLM call");
}

#[actix_rt::test]
async fn delivery_reports_move_a_reply_forward_and_a_failure_is_audited_with_metas_code() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let number = &line.number.phone_number_id;
    let first = app
        .whatsapp
        .inbound(number)
        .text("15550100001", "Ana", "hello");
    let wamid = first.ids()[0].clone();
    let mut events = app.events();
    app.whatsapp.deliver(&first.build()).await;
    events.finished(w.a, 1).await;
    let ours = texts(&app)[0].wamid.clone().unwrap();
    assert_eq!(wait_statuses(&app, w.a, &wamid, &["sent"]).await[0].1, None);
    for kind in [
        StatusKind::Delivered,
        StatusKind::Read,
        StatusKind::Sent,
        StatusKind::Delivered,
    ] {
        let report = app
            .whatsapp
            .inbound(number)
            .status(&ours, "15550100001", kind)
            .build();
        assert_eq!(app.whatsapp.deliver(&report).await, 200);
    }
    assert_eq!(
        reply_parts(&app, w.a, &wamid).await[0].0,
        "read",
        "late or repeated reports never move a part backwards"
    );
    // Accepted now, reported undeliverable later.
    app.whatsapp.script(Behavior::undeliverable());
    app.whatsapp.report_statuses(true);
    let second = app
        .whatsapp
        .inbound(number)
        .text("15550100001", "Ana", "are you there?");
    let wamid2 = second.ids()[0].clone();
    app.whatsapp.deliver(&second.build()).await;
    events.finished(w.a, 1).await;
    let parts = wait_statuses(&app, w.a, &wamid2, &["failed"]).await;
    assert!(
        parts[0].1.as_deref().unwrap().starts_with("131026"),
        "{parts:?}"
    );
    let trail = audit_events(&app, w.a).await;
    let failed: Vec<_> = trail
        .iter()
        .filter(|e| e["action"] == "reply.failed")
        .collect();
    assert_eq!(failed.len(), 1, "{trail:?}");
    assert_eq!(failed[0]["details"]["error_code"], 131026);
}

#[actix_rt::test]
async fn a_long_reply_is_split_at_sentences_and_sent_in_order() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let sentences: Vec<String> = (0..150)
        .map(|i| format!("Step {i} of the return process is described in this sentence."))
        .collect();
    let long = sentences.join(" ");
    assert!(long.chars().count() > 2 * 4096);
    app.llm.script([e2e::llm::Behavior::Text(long.clone())]);
    let mut events = app.events();
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(&line.number.phone_number_id)
                .text("15550100001", "Ana", "how do returns work?")
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    let sent = texts(&app);
    assert_eq!(sent.len(), 3, "{} parts", sent.len());
    for s in &sent {
        let body = body_of(s);
        assert!(body.chars().count() <= 4096);
        assert!(
            body.ends_with('.'),
            "each part ends at a sentence: …{}",
            &body[body.len() - 20..]
        );
    }
    let joined: Vec<&str> = sent.iter().map(body_of).collect();
    assert_eq!(
        joined.join(" "),
        format!("{DISCLOSURE}\n\n{long}"),
        "in order, nothing lost (the first reply carries the AI disclosure)"
    );
}

#[actix_rt::test]
async fn outside_the_window_a_template_is_sent_or_the_part_fails_clearly_never_free_form() {
    let settings = EngineSettings::default();
    let clock = settings.clock.clone();
    let app = engine_app_with(settings).await;
    let w = World::new(&app).await;
    let bare = connect(&app, w.admin_a, w.a, "Nia").await;
    let agent = shop_agent(&app, w.a, "Tess").await;
    let templated_number = new_number(&app.whatsapp, "Tess Ltd");
    app.whatsapp.add_template(
        &templated_number.waba_id,
        Template::new("service_follow_up", "en_US", 2),
    );
    connect_number(
        &app,
        w.admin_a,
        w.a,
        agent,
        &templated_number,
        json!({ "templates": [{ "name": "service_follow_up", "language": "en_US",
                                "variables": ["customer_name", "message"] }] }),
    )
    .await;
    // The customer wrote 25 hours ago (Meta retried the webhook that long); the engine's clock
    // and Meta's agree that the window has closed.
    let late = |number: &str| {
        app.whatsapp
            .inbound(number)
            .at((chrono::Utc::now() - chrono::TimeDelta::hours(25)).timestamp() as u64)
            .text("15550100001", "Ana", "did my refund go through?")
    };
    clock.advance(chrono::TimeDelta::seconds(1));
    let to_bare = late(&bare.number.phone_number_id);
    let to_templated = late(&templated_number.phone_number_id);
    let (wamid_bare, wamid_templated) = (to_bare.ids()[0].clone(), to_templated.ids()[0].clone());
    app.whatsapp.advance(Duration::from_secs(25 * 3600));
    let mut events = app.events();
    app.whatsapp.deliver(&batch(&[to_bare, to_templated])).await;
    events.finished(w.a, 2).await;
    let free_form: Vec<_> = app
        .whatsapp
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/messages") && c.body["type"] == "text")
        .collect();
    assert!(free_form.is_empty(), "no free-form attempt: {free_form:?}");
    let parts = reply_parts(&app, w.a, &wamid_bare).await;
    assert_eq!(parts[0].0, "failed");
    assert!(
        parts[0].1.as_deref().unwrap().contains("24 hours"),
        "{parts:?}"
    );
    let sent = app.whatsapp.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    match &sent[0].kind {
        SentKind::Template {
            name,
            language,
            params,
        } => {
            assert_eq!(
                (name.as_str(), language.as_str()),
                ("service_follow_up", "en_US")
            );
            assert_eq!(params[0], "Ana");
            assert!(
                params[1].contains("did my refund go through?"),
                "{params:?}"
            );
        }
        other => panic!("not a template: {other:?}"),
    }
    assert_eq!(reply_parts(&app, w.a, &wamid_templated).await[0].0, "sent");
    let trail = app.audit_actions(w.a).await;
    assert_eq!(
        trail.iter().filter(|a| *a == "reply.undeliverable").count(),
        1,
        "{trail:?}"
    );
    // The admin sees why on the Channels page.
    let admin = app.token_for(w.admin_a, None).await;
    let list: Value = app
        .get_json(&format!("/api/tenants/{}/channels/whatsapp", w.a), &admin)
        .await;
    let bare_row = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["phone_number_id"] == bare.number.phone_number_id.as_str())
        .unwrap();
    assert!(
        bare_row["health"]["last_error"]
            .as_str()
            .unwrap()
            .contains("template"),
        "{bare_row}"
    );
}

#[actix_rt::test]
async fn metas_re_engagement_error_fails_the_part_without_retrying() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    app.whatsapp.script(Behavior::re_engagement());
    let m = app
        .whatsapp
        .inbound(&line.number.phone_number_id)
        .text("15550100001", "Ana", "hi");
    let wamid = m.ids()[0].clone();
    let mut events = app.events();
    app.whatsapp.deliver(&m.build()).await;
    let done = events.finished(w.a, 1).await;
    assert_eq!(
        done[0].1,
        Outcome::Done,
        "acknowledged, not retried: {done:?}"
    );
    let parts = reply_parts(&app, w.a, &wamid).await;
    assert_eq!(parts[0].0, "failed");
    assert!(
        parts[0].1.as_deref().unwrap().contains("131047"),
        "{parts:?}"
    );
    let attempts = app
        .whatsapp
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/messages") && c.body["type"] == "text")
        .count();
    assert_eq!(attempts, 1);
}

#[actix_rt::test]
async fn throughput_and_pair_rate_limits_back_off_and_then_deliver() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    for behavior in [
        Behavior::throughput(),
        Behavior::pair_rate_limit(),
        Behavior::server_error(),
    ] {
        let code = match &behavior {
            Behavior::Error { code, .. } => *code,
            _ => unreachable!(),
        };
        app.whatsapp.script(behavior);
        let before = texts(&app).len();
        let attempts_before = text_calls(&app).len();
        let m = app.whatsapp.inbound(&line.number.phone_number_id).text(
            "15550100001",
            "Ana",
            &format!("question after {code}"),
        );
        let wamid = m.ids()[0].clone();
        let mut events = app.events();
        app.whatsapp.deliver(&m.build()).await;
        if code == 131056 {
            // Only this customer is limited: the send is tried again within the turn, after
            // Meta's wait, without parking the number's queue.
            let outcomes = outcomes_of(&mut events, w.a, &wamid, 1).await;
            assert_eq!(outcomes, [Outcome::Done], "{code}: delivered in its turn");
        } else {
            let outcomes = outcomes_of(&mut events, w.a, &wamid, 2).await;
            assert_eq!(
                outcomes,
                [Outcome::Parked, Outcome::Done],
                "{code}: parked for a retry, then delivered"
            );
        }
        let attempts: Vec<u16> = text_calls(&app)[attempts_before..]
            .iter()
            .map(|c| c.status)
            .collect();
        assert_eq!(
            attempts.len(),
            2,
            "{code}: refused once, sent once: {attempts:?}"
        );
        assert_eq!(attempts[1], 200, "{code}: {attempts:?}");
        let sent = texts(&app);
        assert_eq!(sent.len(), before + 1, "{code}: exactly one reply");
        assert!(body_of(sent.last().unwrap()).contains(&format!("question after {code}")));
    }
}

#[actix_rt::test]
async fn a_revoked_token_fails_the_connection_visibly_and_stops_answering() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    app.whatsapp.script(Behavior::token_revoked());
    let mut events = app.events();
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(&line.number.phone_number_id)
                .text("15550100001", "Ana", "hello?")
                .build(),
        )
        .await;
    let done = events.finished(w.a, 1).await;
    assert_eq!(done[0].1, Outcome::DeadLettered, "{done:?}");
    let admin = app.token_for(w.admin_a, None).await;
    let list: Value = app
        .get_json(&format!("/api/tenants/{}/channels/whatsapp", w.a), &admin)
        .await;
    let row = &list["items"][0];
    assert_eq!(row["id"], line.connection.to_string().as_str());
    assert_eq!(row["status"], "failed", "{row}");
    assert!(
        row["health"]["last_error"]
            .as_str()
            .unwrap()
            .contains("190"),
        "{row}"
    );
    let actions = app.audit_actions(w.a).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "channel.failed").count(),
        1,
        "{actions:?}"
    );
    // Later messages to the failed number are acknowledged and not answered.
    let calls_before = llm_calls(&app);
    assert_eq!(
        app.whatsapp
            .deliver(
                &app.whatsapp
                    .inbound(&line.number.phone_number_id)
                    .text("15550100001", "Ana", "anyone?")
                    .build(),
            )
            .await,
        200
    );
    // Reconnecting with a new token makes it active again.
    let fresh = Number {
        token: format!("EAAG{}", Uuid::new_v4().simple()),
        ..line.number.clone()
    };
    app.whatsapp.add_number(fresh.clone());
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/channels/whatsapp", w.a),
            Some(&admin),
        )
        .json(&connection_body(&fresh, line.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "refreshed");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "active");
    assert_eq!(
        llm_calls(&app),
        calls_before,
        "nothing answered while failed"
    );
}

#[actix_rt::test]
async fn messages_of_every_kind_read_as_the_agent_needs_them() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let number = &line.number.phone_number_id;
    let mut events = app.events();
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(number)
                .button_reply("15550100001", "Ana", "b1", "Track my order")
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    assert_eq!(last_user_message(&app), "Track my order");
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(number)
                .location(
                    "15550100001",
                    "Ana",
                    52.52,
                    13.405,
                    "Home",
                    "Unter den Linden 1",
                )
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    let located = last_user_message(&app);
    assert!(
        located.contains("Unter den Linden 1") && located.contains("52.52"),
        "{located}"
    );
    // A reaction starts no turn; a picture gets the short notice, without the LLM.
    let calls = llm_calls(&app);
    let replies = texts(&app).len();
    let media = e2e::whatsapp::Media::new("media-1", "image/jpeg");
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(number)
                .reaction("15550100001", "Ana", "wamid.x", "👍")
                .image("15550100001", "Ana", &media, Some("my broken box"))
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    assert_eq!(llm_calls(&app), calls, "no LLM call");
    let sent = texts(&app);
    assert_eq!(sent.len(), replies + 1, "only the picture is answered");
    assert!(
        body_of(sent.last().unwrap()).contains("only read text"),
        "{sent:?}"
    );
}

async fn scoped_agent(app: &TestApp, tenant: TenantId, admin: Uuid) -> shared::AgentId {
    let token = app.token_for(admin, None).await;
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/agents"),
            Some(&token),
        )
        .json(&json!({
            "name": "Sol",
            "role": "Customer support",
            "business_function": "Customer support for Acme Shoes' online store: orders, \
                                  shipping, returns, exchanges and shoe sizes",
            "in_scope_examples": ["where is my order", "can I return these sneakers"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[actix_rt::test]
async fn clearly_off_topic_requests_are_declined_without_the_llm_and_the_rest_answered() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let agent = scoped_agent(&app, w.a, w.admin_a).await;
    let number = new_number(&app.whatsapp, "Acme Shoes");
    connect_number(&app, w.admin_a, w.a, agent, &number, json!({})).await;
    let mut events = app.events();
    let poem = app.whatsapp.inbound(&number.phone_number_id).text(
        "15550100001",
        "Ana",
        "Write me a poem about the ocean and the moon",
    );
    let poem_id = poem.ids()[0].clone();
    app.whatsapp.deliver(&poem.build()).await;
    events.finished(w.a, 1).await;
    assert_eq!(llm_calls(&app), 0, "declined without the LLM");
    let declined = texts(&app);
    assert!(
        body_of(&declined[0]).contains("Acme Shoes"),
        "points to what it can do: {declined:?}"
    );
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(&number.phone_number_id)
                .text(
                    "15550100001",
                    "Ana",
                    "where is my order 4411? it hasnt arrived",
                )
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    assert_eq!(llm_calls(&app), 1, "in scope: answered by the agent");
    let system = app.llm.received().last().unwrap().body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("Acme Shoes"),
        "the prompt states the function: {system}"
    );
    let trail = audit_events(&app, w.a).await;
    let scope: Vec<_> = trail
        .iter()
        .filter(|e| e["action"] == "scope.declined")
        .collect();
    assert_eq!(scope.len(), 1, "{trail:?}");
    assert_eq!(scope[0]["details"]["in_reply_to"], poem_id.as_str());
    assert!(
        !scope[0].to_string().contains("poem"),
        "no message text: {}",
        scope[0]
    );
    let admin = app.token_for(w.admin_a, None).await;
    let got: Value = app
        .get_json(&format!("/api/tenants/{}/agents/{agent}", w.a), &admin)
        .await;
    assert_eq!(got["declined_last_30_days"], 1, "{got}");
}

#[actix_rt::test]
async fn the_ai_disclosure_comes_with_the_first_reply_and_after_a_day_of_silence() {
    let settings = EngineSettings::default();
    let clock = settings.clock.clone();
    let app = engine_app_with(settings).await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let number = line.number.phone_number_id.clone();
    let mut events = app.events();
    // The customer opens with a picture: even that first reply (a notice) says it is an AI.
    let media = e2e::whatsapp::Media::new("media-1", "image/jpeg");
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(&number)
                .image("15550100001", "Ana", &media, None)
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    for text in ["first question", "second question"] {
        app.whatsapp
            .deliver(
                &app.whatsapp
                    .inbound(&number)
                    .text("15550100001", "Ana", text)
                    .build(),
            )
            .await;
        events.finished(w.a, 1).await;
    }
    let sent = texts(&app);
    assert!(
        body_of(&sent[0]).starts_with(DISCLOSURE),
        "{}",
        body_of(&sent[0])
    );
    assert!(
        body_of(&sent[0]).contains("only read text"),
        "{}",
        body_of(&sent[0])
    );
    for later in &sent[1..3] {
        assert!(
            !body_of(later).contains("AI assistant"),
            "{}",
            body_of(later)
        );
    }
    assert!(body_of(&sent[1]).contains("echo: first question"));
    // Time passes on the engine's clock and on Meta's alike. The customer writes after 23
    // hours, then 2 hours later (a day after the first question, but not a day after the last
    // reply), then after another 25 hours.
    for (hours, text) in [
        (23, "still there?"),
        (2, "one more thing"),
        (25, "back again"),
    ] {
        clock.advance(chrono::TimeDelta::hours(hours));
        app.whatsapp
            .advance(Duration::from_secs(u64::try_from(hours).unwrap() * 3600));
        app.whatsapp
            .deliver(
                &app.whatsapp
                    .inbound(&number)
                    .text("15550100001", "Ana", text)
                    .build(),
            )
            .await;
        events.finished(w.a, 1).await;
    }
    let sent = texts(&app);
    assert_eq!(sent.len(), 6);
    for (later, text) in [(&sent[3], "still there?"), (&sent[4], "one more thing")] {
        assert!(
            !body_of(later).contains("AI assistant"),
            "less than a day since the last reply: {}",
            body_of(later)
        );
        assert!(body_of(later).contains(&format!("echo: {text}")));
    }
    assert!(
        body_of(&sent[5]).starts_with(DISCLOSURE),
        "a day of silence: {}",
        body_of(&sent[5])
    );
    assert!(body_of(&sent[5]).contains("echo: back again"));
}

#[actix_rt::test]
async fn connecting_checks_the_number_with_meta_and_keeps_tenants_apart() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let agent = shop_agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let path = format!("/api/tenants/{}/channels/whatsapp", w.a);
    let post = |body: Value| {
        app.request(Method::POST, &path, Some(&admin))
            .json(&body)
            .send()
    };
    let mine = new_number(&app.whatsapp, "Mine Ltd");
    let theirs = new_number(&app.whatsapp, "Theirs Ltd");
    // A number this token cannot read.
    let mut body = connection_body(&theirs, agent);
    body["access_token"] = json!(mine.token);
    assert_eq!(
        field_errors(post(body).await.unwrap()).await,
        ["phone_number_id"]
    );
    // A number of another business account.
    let mut body = connection_body(&mine, agent);
    body["waba_id"] = json!(theirs.waba_id);
    let refused = field_errors(post(body).await.unwrap()).await;
    assert_eq!(refused, ["waba_id"]);
    // A token Meta refuses.
    let mut body = connection_body(&mine, agent);
    body["access_token"] = json!(format!("EAAG{}", Uuid::new_v4().simple()));
    assert_eq!(
        field_errors(post(body).await.unwrap()).await,
        ["access_token"]
    );
    // Bad shapes are refused before Meta is asked.
    let calls = app.whatsapp.calls().len();
    let res = post(json!({
        "phone_number_id": "12/../34", "waba_id": "x", "access_token": "short",
        "agent_id": agent, "templates": [{ "name": "Bad Name", "language": "english!!!" }],
    }))
    .await
    .unwrap();
    assert_eq!(
        field_errors(res).await,
        [
            "phone_number_id",
            "waba_id",
            "access_token",
            "templates[0].name",
            "templates[0].language"
        ]
    );
    assert_eq!(app.whatsapp.calls().len(), calls, "Meta was not asked");
    let nothing: Value = app.get_json(&path, &admin).await;
    assert_eq!(nothing["total"], 0, "nothing refused was saved");
    // Connected: what Meta says, not what the request said.
    let res = post(connection_body(&mine, agent)).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["verified_name"], "Mine Ltd");
    assert_eq!(
        created["display_phone_number"],
        mine.display_phone_number.as_str()
    );
    assert_eq!(
        created["token_hint"],
        format!("…{}", &mine.token[mine.token.len() - 4..])
    );
    assert!(app.whatsapp.subscribed(&mine.waba_id));
    // Tenant B cannot take it (409), see it, or disconnect it.
    let admin_b = app.token_for(w.admin_b, None).await;
    let agent_b = shop_agent(&app, w.b, "Bea").await;
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/channels/whatsapp", w.b),
            Some(&admin_b),
        )
        .json(&connection_body(&mine, agent_b))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let id = created["id"].as_str().unwrap();
    for (method, url) in [
        (
            Method::DELETE,
            format!("/api/tenants/{}/channels/whatsapp/{id}", w.b),
        ),
        (
            Method::GET,
            format!("/api/tenants/{}/channels/whatsapp", w.a),
        ),
    ] {
        let res = app
            .request(method, &url, Some(&admin_b))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{url}");
    }
    let b_list: Value = app
        .get_json(&format!("/api/tenants/{}/channels/whatsapp", w.b), &admin_b)
        .await;
    assert_eq!(b_list["total"], 0);
    // Disconnect erases the token and keeps the conversations; the number can be connected again.
    let res = app
        .request(Method::DELETE, &format!("{path}/{id}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let (status, secret): (String, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT status, secret_ciphertext FROM channel_connections WHERE id = $1::uuid",
    )
    .bind(id)
    .fetch_one(tx.connection())
    .await
    .unwrap();
    drop(tx);
    assert_eq!((status.as_str(), secret), ("disabled", None));
    let again = post(connection_body(&mine, agent)).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED, "connected again");
}

#[actix_rt::test]
async fn a_tenants_own_meta_app_gets_its_own_webhook_and_secret() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let agent = shop_agent(&app, w.a, "Own").await;
    let number = new_number(&app.whatsapp, "Own App Ltd");
    let own_secret = "f00dfeedf00dfeedf00dfeedf00dfeed";
    connect_number(
        &app,
        w.admin_a,
        w.a,
        agent,
        &number,
        json!({ "app_secret": own_secret }),
    )
    .await;
    let admin = app.token_for(w.admin_a, None).await;
    let list: Value = app
        .get_json(&format!("/api/tenants/{}/channels/whatsapp", w.a), &admin)
        .await;
    let webhook = &list["items"][0]["own_webhook"];
    let url = webhook["callback_url"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/webhooks/whatsapp/{}", number.phone_number_id)),
        "{url}"
    );
    assert!(
        !list.to_string().contains(own_secret),
        "the secret is never shown"
    );
    // Meta (the tenant's app) verifies and posts to that URL.
    let own = FakeGraph::start().unwrap();
    own.add_number(number.clone());
    own.webhook(
        app.url(&format!("/webhooks/whatsapp/{}", number.phone_number_id)),
        own_secret,
    );
    assert!(
        own.verify_webhook(webhook["verify_token"].as_str().unwrap())
            .await
            .accepted()
    );
    assert_eq!(own.verify_webhook(WHATSAPP_VERIFY_TOKEN).await.status, 403);
    let m = own
        .inbound(&number.phone_number_id)
        .text("15550100001", "Ana", "own app hello");
    // The platform's secret does not sign the tenant's app's webhooks.
    let raw = serde_json::to_vec(&m.build()).unwrap();
    let platform_signed = e2e::whatsapp::sign(WHATSAPP_APP_SECRET, &raw);
    assert_eq!(own.deliver_raw(raw, Some(platform_signed)).await, 401);
    // One Graph API: the customer's message opened the window there too.
    app.whatsapp.set_last_inbound(
        &number.phone_number_id,
        "15550100001",
        Some(app.whatsapp.now()),
    );
    let mut events = app.events();
    assert_eq!(own.deliver(&m.build()).await, 200);
    events.finished(w.a, 1).await;
    let sent = texts(&app);
    assert_eq!(sent.len(), 1);
    assert!(body_of(&sent[0]).contains("own app hello"));
    // Reconnecting (a new token, no secret given) keeps the own app and its verify token.
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/channels/whatsapp", w.a),
            Some(&admin),
        )
        .json(&connection_body(&number, agent))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let again: Value = res.json().await.unwrap();
    assert_eq!(&again["own_webhook"], webhook, "{again}");
    assert!(
        own.verify_webhook(webhook["verify_token"].as_str().unwrap())
            .await
            .accepted()
    );
}

#[actix_rt::test]
async fn a_reply_whose_second_part_is_refused_is_finished_by_sending_only_that_part() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let number = line.number.phone_number_id.clone();
    let sentences: Vec<String> = (0..80)
        .map(|i| format!("Point {i} of the exchange policy is set out in this sentence."))
        .collect();
    let long = sentences.join(" ");
    assert!((4096..8000).contains(&long.chars().count()));
    app.llm.script([e2e::llm::Behavior::Text(long.clone())]);
    // Meta takes the first part, then refuses the second for the number's throughput.
    app.whatsapp
        .script_all([Behavior::Accept, Behavior::throughput()]);
    let m = app
        .whatsapp
        .inbound(&number)
        .text("15550100001", "Ana", "how do exchanges work?");
    let wamid = m.ids()[0].clone();
    let mut events = app.events();
    app.whatsapp.deliver(&m.build()).await;
    let outcomes = outcomes_of(&mut events, w.a, &wamid, 2).await;
    assert_eq!(
        outcomes,
        [Outcome::Parked, Outcome::Done],
        "parked for a retry, then finished"
    );
    // The retry sent only the part that was refused; the first was never sent again.
    let calls = text_calls(&app);
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 400, 200], "{statuses:?}");
    assert_ne!(call_text(&calls[0]), call_text(&calls[1]));
    assert_eq!(call_text(&calls[1]), call_text(&calls[2]));
    let sent = texts(&app);
    assert_eq!(sent.len(), 2, "two parts, each sent once");
    assert_eq!(
        format!("{} {}", body_of(&sent[0]), body_of(&sent[1])),
        format!("{DISCLOSURE}\n\n{long}"),
        "in order, nothing lost"
    );
    assert_eq!(llm_calls(&app), 1, "the retry did not ask the LLM again");
    // Each part keeps the id Meta gave it, and a status names the part it is about.
    let wamids: Vec<Option<String>> = sent.iter().map(|s| s.wamid.clone()).collect();
    assert_eq!(
        reply_part_ids(&app, w.a, &wamid).await,
        [
            (0, "sent".to_string(), wamids[0].clone()),
            (1, "sent".to_string(), wamids[1].clone())
        ]
    );
    let report = app
        .whatsapp
        .inbound(&number)
        .status(
            wamids[1].as_deref().unwrap(),
            "15550100001",
            StatusKind::Delivered,
        )
        .build();
    assert_eq!(app.whatsapp.deliver(&report).await, 200);
    let parts: Vec<String> = reply_part_ids(&app, w.a, &wamid)
        .await
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(
        parts,
        ["sent", "delivered"],
        "only the second part moved on"
    );
}

#[actix_rt::test]
async fn one_customers_pair_rate_limit_does_not_hold_up_the_numbers_other_customers() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let number = line.number.phone_number_id.clone();
    let (ana, bo) = ("15550100001", "15550100002");
    // Ana has had too many messages from the number lately: Meta refuses the next two to her.
    app.whatsapp.script_to(
        ana,
        [Behavior::pair_rate_limit(), Behavior::pair_rate_limit()],
    );
    let to_ana = app
        .whatsapp
        .inbound(&number)
        .text(ana, "Ana", "alpha: where is my order?");
    let to_bo =
        app.whatsapp
            .inbound(&number)
            .text(bo, "Bo", "bravo: can I change my delivery address?");
    let (wamid_ana, wamid_bo) = (to_ana.ids()[0].clone(), to_bo.ids()[0].clone());
    let mut events = app.events();
    app.whatsapp.deliver(&to_ana.build()).await;
    app.whatsapp
        .wait_calls_where(
            |calls| calls.iter().any(|c| c.status == 400 && c.body["to"] == ana),
            WAIT,
        )
        .await;
    // Bo writes to the same number while Ana's reply waits: he is answered at once.
    app.whatsapp.deliver(&to_bo.build()).await;
    let finished = events.finished(w.a, 2).await;
    assert_eq!(
        finished,
        [
            (wamid_bo.clone(), Outcome::Done),
            (wamid_ana.clone(), Outcome::Done)
        ],
        "Bo first, then Ana; neither parked"
    );
    let sent = texts(&app);
    assert_eq!(sent.len(), 2, "one reply each: {sent:?}");
    assert_eq!(sent[0].to, bo);
    assert!(body_of(&sent[0]).contains("bravo"), "{}", body_of(&sent[0]));
    assert_eq!(sent[1].to, ana);
    assert!(body_of(&sent[1]).contains("alpha"), "{}", body_of(&sent[1]));
    let to_ana: Vec<u16> = text_calls(&app)
        .iter()
        .filter(|c| c.body["to"] == ana)
        .map(|c| c.status)
        .collect();
    assert_eq!(to_ana, [400, 400, 200], "refused twice, then sent once");
    assert_eq!(llm_calls(&app), 2, "each message asked the LLM once");
    assert_eq!(reply_parts(&app, w.a, &wamid_ana).await.len(), 1);
}

#[actix_rt::test]
async fn the_window_runs_from_the_customers_last_message_on_the_engines_clock() {
    let settings = EngineSettings::default();
    let clock = settings.clock.clone();
    let app = engine_app_with(settings).await;
    let w = World::new(&app).await;
    // A number without a template: outside the window a part can only fail.
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let number = line.number.phone_number_id.clone();
    let ana = "15550100001";
    let day_and_an_hour = |app: &TestApp| {
        clock.advance(chrono::TimeDelta::hours(25));
        app.whatsapp.advance(Duration::from_secs(25 * 3600));
    };
    // Ana writes, but Meta's webhook for it fails for now: Meta retries it much later.
    let first = app
        .whatsapp
        .inbound(&number)
        .text(ana, "Ana", "my first message");
    let first_id = first.ids()[0].clone();
    let first = first.build();
    // A day and an hour later she writes again, and is answered.
    day_and_an_hour(&app);
    let mut events = app.events();
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(&number)
                .text(ana, "Ana", "my second message")
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    // Meta's late retry of the first message arrives now. That message is 25 hours old, but
    // Ana last wrote a moment ago: the window is open, and its answer goes out as text.
    assert_eq!(app.whatsapp.deliver(&first).await, 200);
    events.finished(w.a, 1).await;
    let parts = reply_parts(&app, w.a, &first_id).await;
    assert_eq!(parts[0].0, "sent", "{parts:?}");
    let sent = texts(&app);
    assert_eq!(sent.len(), 2);
    assert!(
        body_of(&sent[1]).contains("my first message"),
        "{}",
        body_of(&sent[1])
    );
    // Another message she sent then reaches us only after another 25 hours of silence: now
    // her last message is more than a day old, and nothing free-form is attempted.
    let third = app
        .whatsapp
        .inbound(&number)
        .text(ana, "Ana", "my third message");
    let third_id = third.ids()[0].clone();
    let third = third.build();
    day_and_an_hour(&app);
    let attempts = text_calls(&app).len();
    assert_eq!(app.whatsapp.deliver(&third).await, 200);
    events.finished(w.a, 1).await;
    assert_eq!(text_calls(&app).len(), attempts, "no free-form attempt");
    let parts = reply_parts(&app, w.a, &third_id).await;
    assert_eq!(parts[0].0, "failed");
    assert!(
        parts[0].1.as_deref().unwrap().contains("24 hours"),
        "{parts:?}"
    );
    let trail = app.audit_actions(w.a).await;
    assert_eq!(
        trail.iter().filter(|a| *a == "reply.undeliverable").count(),
        1,
        "only the third message's reply was undeliverable: {trail:?}"
    );
}

#[actix_rt::test]
async fn metas_re_engagement_error_sends_the_template_once_instead() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let agent = shop_agent(&app, w.a, "Tess").await;
    let number = new_number(&app.whatsapp, "Tess Ltd");
    app.whatsapp.add_template(
        &number.waba_id,
        Template::new("service_follow_up", "en_US", 2),
    );
    connect_number(
        &app,
        w.admin_a,
        w.a,
        agent,
        &number,
        json!({ "templates": [{ "name": "service_follow_up", "language": "en_US",
                                "variables": ["customer_name", "message"] }] }),
    )
    .await;
    // Our clock says the window is open; Meta says it closed.
    app.whatsapp.script(Behavior::re_engagement());
    let m = app.whatsapp.inbound(&number.phone_number_id).text(
        "15550100001",
        "Ana",
        "is my refund done?",
    );
    let wamid = m.ids()[0].clone();
    let mut events = app.events();
    app.whatsapp.deliver(&m.build()).await;
    let done = events.finished(w.a, 1).await;
    assert_eq!(done[0].1, Outcome::Done, "{done:?}");
    let sends: Vec<(String, u16)> = app
        .whatsapp
        .calls()
        .into_iter()
        // Message sends only: read receipts carry no type.
        .filter(|c| c.path.ends_with("/messages") && c.body["type"].is_string())
        .map(|c| (c.body["type"].as_str().unwrap().to_string(), c.status))
        .collect();
    assert_eq!(
        sends,
        [("text".to_string(), 400), ("template".to_string(), 200)],
        "one free-form attempt, then the template once"
    );
    let sent = app.whatsapp.messages();
    assert_eq!(sent.len(), 1);
    match &sent[0].kind {
        SentKind::Template { name, params, .. } => {
            assert_eq!(name, "service_follow_up");
            assert_eq!(params[0], "Ana");
            assert!(params[1].contains("is my refund done?"), "{params:?}");
        }
        other => panic!("not a template: {other:?}"),
    }
    assert_eq!(
        reply_part_ids(&app, w.a, &wamid).await,
        [(0, "sent".to_string(), sent[0].wamid.clone())]
    );
}

/// The field errors of a 422, with their messages.
async fn field_messages(res: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: shared::ErrorBody = res.json().await.unwrap();
    body.fields
        .into_iter()
        .map(|f| (f.field, f.message))
        .collect()
}

#[actix_rt::test]
async fn only_an_agent_with_a_business_function_answers_a_whatsapp_number() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let path = format!("/api/tenants/{}/channels/whatsapp", w.a);
    let number = new_number(&app.whatsapp, "Shop Ltd");
    // An agent without a business function cannot be connected, and nothing is saved.
    let general = world::agent(&app, w.a, "Gen").await;
    let res = app
        .request(Method::POST, &path, Some(&admin))
        .json(&connection_body(&number, general))
        .send()
        .await
        .unwrap();
    let errors = field_messages(res).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "agent_id");
    assert!(errors[0].1.contains("business function"), "{errors:?}");
    let nothing: Value = app.get_json(&path, &admin).await;
    assert_eq!(nothing["total"], 0);
    // One with a function can.
    let shop = shop_agent(&app, w.a, "Sol").await;
    let id = connect_number(&app, w.admin_a, w.a, shop, &number, json!({})).await;
    // While it answers the number, its function cannot be emptied; it can be changed.
    let agent_path = format!("/api/tenants/{}/agents/{shop}", w.a);
    let current: shared::resources::Agent = app.get_json(&agent_path, &admin).await;
    let put = |input: &shared::resources::AgentInput| {
        app.request(Method::PUT, &agent_path, Some(&admin))
            .json(input)
            .send()
    };
    let mut emptied = current.input.clone();
    emptied.business_function = "   ".into();
    let errors = field_messages(put(&emptied).await.unwrap()).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "business_function");
    assert!(errors[0].1.contains("WhatsApp"), "{errors:?}");
    let kept: shared::resources::Agent = app.get_json(&agent_path, &admin).await;
    assert_eq!(
        kept.input.business_function,
        current.input.business_function
    );
    let mut changed = current.input.clone();
    changed.business_function = "Orders and deliveries of Sol's sandals".into();
    assert_eq!(put(&changed).await.unwrap().status(), StatusCode::OK);
    // An agent that answers no WhatsApp number may have none.
    let mut general_input = current.input.clone();
    general_input.name = "Gen".into();
    general_input.business_function = String::new();
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{}/agents/{general}", w.a),
            Some(&admin),
        )
        .json(&general_input)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Once the number is disconnected, neither may this one.
    let res = app
        .request(Method::DELETE, &format!("{path}/{id}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(put(&emptied).await.unwrap().status(), StatusCode::OK);
}

#[actix_rt::test]
async fn a_batch_naming_unknown_and_disconnected_numbers_answers_only_the_connected_one() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let line = connect(&app, w.admin_a, w.a, "Nia").await;
    let gone = connect(&app, w.admin_a, w.a, "Old").await;
    let unknown = new_number(&app.whatsapp, "Nobody's Ltd");
    let admin = app.token_for(w.admin_a, None).await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/channels/whatsapp/{}", w.a, gone.connection),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let to_unknown = app.whatsapp.inbound(&unknown.phone_number_id).text(
        "15550100003",
        "Uma",
        "hello unknown number",
    );
    let to_gone = app.whatsapp.inbound(&gone.number.phone_number_id).text(
        "15550100004",
        "Gil",
        "hello disconnected number",
    );
    let to_line = app.whatsapp.inbound(&line.number.phone_number_id).text(
        "15550100001",
        "Ana Lima",
        "hello connected number",
    );
    let known = to_line.ids()[0].clone();
    let mut events = app.events();
    assert_eq!(
        app.whatsapp
            .deliver(&batch(&[to_unknown, to_gone, to_line]))
            .await,
        200,
        "the whole batch is acknowledged"
    );
    let done = events.finished(w.a, 1).await;
    assert_eq!(done, [(known.clone(), Outcome::Done)]);
    // A later message on the connected number is the next thing the tenant's engine does: the
    // others were never queued.
    let next = app.whatsapp.inbound(&line.number.phone_number_id).text(
        "15550100001",
        "Ana Lima",
        "and again",
    );
    let next_id = next.ids()[0].clone();
    app.whatsapp.deliver(&next.build()).await;
    assert_eq!(events.finished(w.a, 1).await, [(next_id, Outcome::Done)]);
    assert_eq!(llm_calls(&app), 2, "only the connected number's messages");
    let sent = texts(&app);
    assert_eq!(sent.len(), 2, "{sent:?}");
    for s in &sent {
        assert_eq!(s.phone_number_id, line.number.phone_number_id);
        assert_eq!(s.to, "15550100001");
    }
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    // What the tenant's WhatsApp numbers received.
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT m.body FROM messages m \
           JOIN conversations v ON v.id = m.conversation_id \
           JOIN channel_connections c ON c.id = v.channel_connection_id \
          WHERE m.direction = 'inbound' AND c.kind = 'whatsapp' ORDER BY m.seq",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap();
    drop(tx);
    assert_eq!(bodies, ["hello connected number", "and again"]);
    // The sender is an end user: their WhatsApp id and profile name.
    let users: Value = app
        .get_json(
            &format!("/api/tenants/{}/end-users?channel=whatsapp", w.a),
            &admin,
        )
        .await;
    assert_eq!(
        users["total"], 1,
        "only the connected number's sender: {users}"
    );
    let user = &users["items"][0];
    assert_eq!(user["channel"], "whatsapp");
    assert_eq!(user["external_id"], "15550100001");
    assert_eq!(user["display_name"], "Ana Lima");
    assert_eq!(user["conversations"], 1);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let writers: Vec<Option<Uuid>> = sqlx::query_scalar(
        "SELECT end_user_id FROM messages WHERE direction = 'inbound' AND sender = $1 ORDER BY seq",
    )
    .bind("15550100001")
    .fetch_all(tx.connection())
    .await
    .unwrap();
    let id: Uuid = user["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(writers, [Some(id), Some(id)], "both messages are hers");
}
