//! The message pipeline end to end through the web channel: HTTP in, durable ingest, tenant and
//! conversation actors, the LLM pool against the fake provider, the reply recorded and polled.

use shared::channel::MessageDirection;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runtime::engine::actors::CountLiveConversations;
use runtime::engine::limiter::Limit;
use runtime::engine::turn::EngineSettings;
use serde_json::{Value, json};
use shared::channel::{ChatAccepted, ChatMessage};
use uuid::Uuid;

use crate::support::{AppOptions, TestApp};
use crate::world::{self, World};

pub(crate) async fn engine_app(settings: EngineSettings) -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(settings),
        ..AppOptions::default()
    })
    .await
}

pub(crate) async fn send(
    app: &TestApp,
    token: &str,
    tenant: shared::TenantId,
    agent: shared::AgentId,
    conversation: Option<&str>,
    text: &str,
) -> ChatAccepted {
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/agents/{agent}/messages"),
            Some(token),
        )
        .json(&json!({ "text": text, "conversation": conversation }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    res.json().await.unwrap()
}

/// Polls the conversation until it holds `count` messages (or fails after a generous deadline).
pub(crate) async fn wait_for(
    app: &TestApp,
    token: &str,
    tenant: shared::TenantId,
    agent: shared::AgentId,
    conversation: &str,
    count: usize,
) -> Vec<ChatMessage> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let messages: Vec<ChatMessage> = app
            .request(
                Method::GET,
                &format!(
                    "/api/tenants/{tenant}/agents/{agent}/messages?conversation={conversation}"
                ),
                Some(token),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if messages.len() >= count {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages arrived: {messages:?}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A web-channel message as a channel adapter would enqueue it.
pub(crate) fn web_message(
    tenant: shared::TenantId,
    connection: shared::ConnectionId,
    agent: shared::AgentId,
    conversation: &str,
    event: &str,
    text: &str,
) -> shared::channel::InboundMessage {
    shared::channel::InboundMessage {
        tenant_id: tenant,
        channel: shared::channel::ChannelKind::Web,
        connection_id: connection,
        agent_id: Some(agent),
        reply_to: shared::channel::ReplyTarget::Web {
            conversation: conversation.into(),
        },
        sender: shared::channel::Sender {
            id: "U1".into(),
            display_name: None,
        },
        text: text.into(),
        attachments: Vec::new(),
        unsupported: None,
        provider_event_id: event.into(),
        received_at: chrono::Utc::now(),
        origin: shared::channel::Origin::Customer,
    }
}

fn last_llm_request(app: &TestApp) -> Value {
    app.llm
        .received()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap()
        .body
}

/// The texts of the last LLM request's messages, in order.
fn last_prompt_turns(app: &TestApp) -> Vec<String> {
    last_llm_request(app)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .collect()
}

#[actix_rt::test]
async fn a_test_message_is_answered_by_the_agent_with_its_persona_in_the_prompt() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let operator = app.token_for(w.operator_a, None).await;
    // An admin talks (sending costs an LLM call); an operator may watch the conversation.
    let sent = send(&app, &admin, w.a, agent, None, "Where is my order?").await;
    let messages = wait_for(&app, &operator, w.a, agent, &sent.conversation, 2).await;
    assert_eq!(messages[0].direction, MessageDirection::Inbound);
    assert_eq!(messages[1].direction, MessageDirection::Outbound);
    assert_eq!(messages[1].text, "echo: Where is my order?");
    let system = last_llm_request(&app)["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(system.contains("You are Nia, Support."), "{system}");
    assert!(
        system.contains("Kind"),
        "the persona is in the prompt: {system}"
    );

    // The trail shows the LLM call with its agent and cost; the conversation holds both messages.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let calls: Vec<(Option<String>, Value)> = sqlx::query_as(
        "SELECT target_id, details FROM audit_events WHERE action = 'llm.call' ORDER BY seq",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0.as_deref(), Some(agent.to_string().as_str()));
    assert!(
        calls[0].1["input_tokens"].as_u64().unwrap() > 0,
        "{:?}",
        calls[0].1
    );
    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.direction, m.provider_event_id FROM messages m \
           JOIN conversations c ON c.id = m.conversation_id \
          WHERE c.external_key = $1 ORDER BY m.created_at",
    )
    .bind(&sent.conversation)
    .fetch_all(tx.connection())
    .await
    .unwrap();
    let directions: Vec<&str> = stored.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(directions, ["inbound", "outbound"]);
    assert_eq!(stored[1].1, format!("reply:{}", stored[0].1));
}

#[actix_rt::test]
async fn messages_in_one_conversation_are_answered_in_order() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let conversation = "ordered";
    for i in 0..8 {
        send(
            &app,
            &admin,
            w.a,
            agent,
            Some(conversation),
            &format!("message {i}"),
        )
        .await;
    }
    let messages = wait_for(&app, &admin, w.a, agent, conversation, 16).await;
    for i in 0..8 {
        assert_eq!(messages[2 * i].text, format!("message {i}"));
        assert_eq!(
            messages[2 * i + 1].text,
            format!("echo: message {i}"),
            "{messages:#?}"
        );
    }
}

#[actix_rt::test]
async fn a_fact_from_turn_one_is_in_the_prompt_at_turn_thirty() {
    let app = engine_app(EngineSettings {
        // Thirty quick turns are not a flood here.
        connection_limit: Limit {
            per_minute: 6000,
            burst: 100,
        },
        // A small window, so turn one must survive as a condensed note.
        window: runtime::engine::window::Budget {
            recent_tokens: 300,
            earlier_tokens: 600,
        },
        ..EngineSettings::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let conversation = "long";
    send(
        &app,
        &admin,
        w.a,
        agent,
        Some(conversation),
        "Hello, my order number is 4711.",
    )
    .await;
    wait_for(&app, &admin, w.a, agent, conversation, 2).await;
    for turn in 2..=30 {
        let text = if turn == 30 {
            "What was my order number again?".to_string()
        } else {
            format!("Turn {turn}: tell me something about shipping times to Lisbon, please.")
        };
        send(&app, &admin, w.a, agent, Some(conversation), &text).await;
        wait_for(&app, &admin, w.a, agent, conversation, turn * 2).await;
    }
    let request = last_llm_request(&app).to_string();
    assert!(request.contains("What was my order number again?"));
    assert!(
        request.contains("4711"),
        "the fact from turn one reached the LLM"
    );
}

#[actix_rt::test]
async fn a_burst_over_the_tenant_limit_gets_one_notice_and_other_tenants_are_unaffected() {
    let app = engine_app(EngineSettings {
        tenant_limit: Limit {
            per_minute: 1,
            burst: 3,
        },
        ..EngineSettings::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let mut events = app.events();
    for i in 0..6 {
        send(
            &app,
            &admin,
            w.a,
            agent,
            Some("flood"),
            &format!("flood {i}"),
        )
        .await;
    }
    // Every one of the six handled: three answers and one notice; the other two rejections
    // stay quiet.
    events.finished(w.a, 6).await;
    let messages = wait_for(&app, &admin, w.a, agent, "flood", 10).await;
    assert_eq!(messages.len(), 10, "{messages:#?}");
    let outbound: Vec<&str> = messages
        .iter()
        .filter(|m| m.direction == MessageDirection::Outbound)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(
        outbound.iter().filter(|t| t.starts_with("echo:")).count(),
        3,
        "{outbound:?}"
    );
    let notices: Vec<_> = outbound
        .iter()
        .filter(|t| t.contains("faster than I can answer"))
        .collect();
    assert_eq!(notices.len(), 1, "{outbound:?}");
    assert!(notices[0].contains("Please wait"));

    // Tenant B has its own limiter.
    let b_agent = world::agent(&app, w.b, "Bo").await;
    let admin_b = app.token_for(w.admin_b, None).await;
    send(&app, &admin_b, w.b, b_agent, Some("calm"), "hello").await;
    let b = wait_for(&app, &admin_b, w.b, b_agent, "calm", 2).await;
    assert_eq!(b[1].text, "echo: hello");
}

#[actix_rt::test]
async fn when_the_llm_is_down_the_user_gets_a_polite_apology() {
    let app = engine_app(EngineSettings::default()).await;
    app.llm.set_fallback(Some(e2e::llm::Behavior::Fail {
        status: 500,
        retry_after: None,
        message: "down".into(),
    }));
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let sent = send(&app, &admin, w.a, agent, None, "Anyone there?").await;
    let messages = wait_for(&app, &admin, w.a, agent, &sent.conversation, 2).await;
    assert!(
        messages[1].text.contains("can't answer right now"),
        "{}",
        messages[1].text
    );
}

#[actix_rt::test]
async fn a_conversation_restarts_from_its_stored_window_after_going_idle() {
    let app = engine_app(EngineSettings {
        idle_after: Duration::from_millis(200),
        ..EngineSettings::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    send(
        &app,
        &admin,
        w.a,
        agent,
        Some("idle"),
        "Remember the colour teal.",
    )
    .await;
    wait_for(&app, &admin, w.a, agent, "idle", 2).await;
    let registry = app.engine.clone().unwrap().registry;
    assert_eq!(registry.send(CountLiveConversations).await.unwrap(), 1);
    // The conversation actor stops once idle; its window lives on in Redis.
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry.send(CountLiveConversations).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "never passivated");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    send(&app, &admin, w.a, agent, Some("idle"), "Which colour?").await;
    wait_for(&app, &admin, w.a, agent, "idle", 4).await;
    assert_eq!(
        registry.send(CountLiveConversations).await.unwrap(),
        1,
        "restored"
    );
    let turns = last_prompt_turns(&app);
    assert!(
        turns.iter().any(|t| t == "Remember the colour teal."),
        "{turns:?}"
    );
    assert!(
        turns.iter().any(|t| t == "echo: Remember the colour teal."),
        "{turns:?}"
    );
}

#[actix_rt::test]
async fn different_conversations_are_answered_concurrently_and_one_conversation_never_is() {
    let app = engine_app(EngineSettings::default()).await;
    // Every answer takes a moment, so overlapping calls are visible to the fake.
    app.llm.set_fallback(Some(e2e::llm::Behavior::Delay(
        Duration::from_millis(300),
        Box::new(e2e::llm::Behavior::Text("done".into())),
    )));
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    for i in 0..4 {
        send(&app, &admin, w.a, agent, Some("same"), &format!("same {i}")).await;
    }
    wait_for(&app, &admin, w.a, agent, "same", 8).await;
    assert_eq!(
        app.llm.max_concurrent(),
        1,
        "one conversation: one turn at a time"
    );
    for i in 0..4 {
        send(&app, &admin, w.a, agent, Some(&format!("conv{i}")), "hello").await;
    }
    for i in 0..4 {
        wait_for(&app, &admin, w.a, agent, &format!("conv{i}"), 2).await;
    }
    assert!(
        app.llm.max_concurrent() >= 2,
        "conversations run side by side: {}",
        app.llm.max_concurrent()
    );
}

/// Sets the agent's escalation rules (and keeps the rest) through the API.
async fn set_rules(
    app: &TestApp,
    token: &str,
    tenant: shared::TenantId,
    agent: shared::AgentId,
    rules: Value,
) {
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{tenant}/agents/{agent}"),
            Some(token),
        )
        .json(&json!({
            "name": "Nia", "role": "Support", "persona": "Kind",
            "escalation_rules": rules,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
}

#[actix_rt::test]
async fn a_change_to_the_agent_reaches_the_running_tenant_actor_at_once() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    // The tenant actor starts and takes its snapshot.
    send(&app, &admin, w.a, agent, Some("live"), "first").await;
    wait_for(&app, &admin, w.a, agent, "live", 2).await;
    let system = last_llm_request(&app)["messages"][0]["content"].to_string();
    assert!(system.contains("Kind"), "{system}");

    // The operator rewrites the persona in the portal; the next turn uses it, without a restart.
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{}/agents/{agent}", w.a),
            Some(&admin),
        )
        .json(&json!({ "name": "Nia", "role": "Support", "persona": "Speaks like a pirate" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut turn = 2;
    loop {
        send(&app, &admin, w.a, agent, Some("live"), "again").await;
        wait_for(&app, &admin, w.a, agent, "live", turn * 2).await;
        let system = last_llm_request(&app)["messages"][0]["content"].to_string();
        if system.contains("Speaks like a pirate") {
            assert!(!system.contains("Kind"), "{system}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new persona never reached the prompt"
        );
        turn += 1;
    }
    // The notice travels through Postgres: allow it a moment, but it must not take a restart.
    assert!(turn <= 3, "the change took {turn} turns to arrive");
}

#[actix_rt::test]
async fn a_tenants_own_limit_set_by_the_platform_admin_applies_to_it_alone() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let platform = app.token_for(w.platform, None).await;
    let limits = format!("/api/tenants/{}/limits", w.a);

    // Defaults first.
    let shown: Value = app.get_json(&limits, &admin).await;
    assert_eq!(shown["tenant_is_default"], true);
    assert_eq!(shown["tenant"]["per_minute"], 600);

    // Bad input is refused, field by field, and changes nothing.
    let res = app
        .request(Method::PUT, &limits, Some(&platform))
        .json(&json!({ "tenant": { "per_minute": 0, "burst": 20000 } }))
        .send()
        .await
        .unwrap();
    let fields = crate::support::field_errors(res).await;
    assert_eq!(fields, ["tenant.per_minute", "tenant.burst"]);
    let shown: Value = app.get_json(&limits, &admin).await;
    assert_eq!(shown["tenant_is_default"], true);

    // Start the tenant actor with the defaults, then tighten A's limit to a burst of two.
    send(&app, &admin, w.a, agent, Some("warm"), "hello").await;
    wait_for(&app, &admin, w.a, agent, "warm", 2).await;
    let mut events = app.events();
    let res = app
        .request(Method::PUT, &limits, Some(&platform))
        .json(&json!({ "tenant": { "per_minute": 1, "burst": 2 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let shown: TenantLimitsShown = res.json().await.unwrap();
    assert!(!shown.tenant_is_default && shown.per_connection_is_default);
    assert!(
        app.audit_actions(w.a)
            .await
            .contains(&"tenant.limits_changed".to_string())
    );
    // The change's notice reaches the running actor, which reloads.
    events.config_loaded(w.a).await;
    for i in 0..4 {
        send(&app, &admin, w.a, agent, Some("tight"), &format!("m{i}")).await;
    }
    let messages = wait_for(&app, &admin, w.a, agent, "tight", 7).await;
    let outbound: Vec<&str> = messages
        .iter()
        .filter(|m| m.direction == MessageDirection::Outbound)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(
        outbound.iter().filter(|t| t.starts_with("echo:")).count(),
        2,
        "{outbound:?}"
    );
    assert_eq!(
        outbound
            .iter()
            .filter(|t| t.contains("Please wait"))
            .count(),
        1,
        "{outbound:?}"
    );

    // Tenant B keeps the platform default.
    let b_agent = world::agent(&app, w.b, "Bo").await;
    let admin_b = app.token_for(w.admin_b, None).await;
    for i in 0..4 {
        send(&app, &admin_b, w.b, b_agent, Some("calm"), &format!("m{i}")).await;
    }
    let b = wait_for(&app, &admin_b, w.b, b_agent, "calm", 8).await;
    assert_eq!(b.iter().filter(|m| m.text.starts_with("echo:")).count(), 4);
}

#[derive(Debug, serde::Deserialize)]
struct TenantLimitsShown {
    tenant_is_default: bool,
    per_connection_is_default: bool,
}

#[actix_rt::test]
async fn asking_for_a_human_hands_the_conversation_off_and_the_agent_falls_silent() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    set_rules(
        &app,
        &admin,
        w.a,
        agent,
        json!([
            { "trigger": { "kind": "human_requested" }, "handoff_target": "#support-humans" },
            { "trigger": { "kind": "keywords", "keywords": ["lawyer"] }, "handoff_target": null },
        ]),
    )
    .await;
    send(&app, &admin, w.a, agent, Some("esc"), "Where is my parcel?").await;
    wait_for(&app, &admin, w.a, agent, "esc", 2).await;
    let calls_before = app.llm.calls();

    send(
        &app,
        &admin,
        w.a,
        agent,
        Some("esc"),
        "This is useless, can I talk to a human?",
    )
    .await;
    let messages = wait_for(&app, &admin, w.a, agent, "esc", 4).await;
    assert!(
        messages[3]
            .text
            .contains("passed this conversation to a colleague"),
        "{}",
        messages[3].text
    );
    assert_eq!(app.llm.calls(), calls_before, "no LLM call for a hand-off");

    // Recorded for the human, not answered by the agent: once the engine has finished with it,
    // it is the conversation's last message.
    let mut events = app.events();
    send(&app, &admin, w.a, agent, Some("esc"), "Hello? Anyone?").await;
    events.finished(w.a, 1).await;
    let messages = wait_for(&app, &admin, w.a, agent, "esc", 5).await;
    assert_eq!(messages.len(), 5, "{messages:#?}");
    assert_eq!(messages[4].text, "Hello? Anyone?");
    assert_eq!(app.llm.calls(), calls_before);

    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let (status, reason, target): (String, String, Option<String>) = sqlx::query_as(
        "SELECT c.owner, e.reason, e.handoff_target FROM escalations e \
           JOIN conversations c ON c.id = e.conversation_id WHERE c.external_key = 'esc'",
    )
    .fetch_one(tx.connection())
    .await
    .unwrap();
    drop(tx);
    assert_eq!(
        (status.as_str(), reason.as_str(), target.as_deref()),
        ("queue", "human_requested", Some("#support-humans"))
    );
    let actions = app.audit_actions(w.a).await;
    assert!(actions.contains(&"conversation.handed_off".to_string()));
    assert!(actions.contains(&"reply.handoff_sent".to_string()));

    // Another conversation of the same agent still gets answers; a keyword rule fires there.
    send(&app, &admin, w.a, agent, Some("other"), "hi").await;
    let other = wait_for(&app, &admin, w.a, agent, "other", 2).await;
    assert_eq!(other[1].text, "echo: hi");
    send(
        &app,
        &admin,
        w.a,
        agent,
        Some("other"),
        "I will call my Lawyer",
    )
    .await;
    let other = wait_for(&app, &admin, w.a, agent, "other", 4).await;
    assert!(other[3].text.contains("colleague"), "{}", other[3].text);
}

#[actix_rt::test]
async fn unresolved_turns_in_a_row_hand_off_at_the_threshold_without_showing_the_marker() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    set_rules(
        &app,
        &admin,
        w.a,
        agent,
        json!([{ "trigger": { "kind": "failed_resolutions", "threshold": 2 } }]),
    )
    .await;
    app.llm.set_fallback(Some(e2e::llm::Behavior::Text(
        "I could not find that order. [unresolved]".into(),
    )));
    send(&app, &admin, w.a, agent, Some("stuck"), "Order 1?").await;
    let messages = wait_for(&app, &admin, w.a, agent, "stuck", 2).await;
    assert_eq!(messages[1].text, "I could not find that order.");
    let system = last_llm_request(&app)["messages"][0]["content"].to_string();
    assert!(
        system.contains("[unresolved]"),
        "the prompt asks for the marker: {system}"
    );

    send(&app, &admin, w.a, agent, Some("stuck"), "Order 2?").await;
    let messages = wait_for(&app, &admin, w.a, agent, "stuck", 4).await;
    assert!(
        messages[3]
            .text
            .starts_with("I could not find that order.\n\n")
    );
    assert!(
        messages[3]
            .text
            .contains("passed the conversation to a colleague")
    );
    assert!(!messages[3].text.contains("[unresolved]"));
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let reason: String = sqlx::query_scalar(
        "SELECT e.reason FROM escalations e JOIN conversations c ON c.id = e.conversation_id \
          WHERE c.external_key = 'stuck'",
    )
    .fetch_one(tx.connection())
    .await
    .unwrap();
    assert_eq!(reason, "failed_resolutions");
}

#[actix_rt::test]
async fn a_suspended_tenants_messages_are_recorded_but_not_answered() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    send(&app, &admin, w.a, agent, Some("s"), "before").await;
    wait_for(&app, &admin, w.a, agent, "s", 2).await;
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    runtime::store::tenants::update(
        &mut tx,
        None,
        None,
        Some(shared::resources::TenantStatus::Suspended),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.config_applied(w.a).await;
    let calls = app.llm.calls();
    // A suspended tenant's operators cannot post through the API; a channel message still
    // arrives, so enqueue one the way a webhook would.
    let connection = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        runtime::store::conversations::web_connection(&mut tx, agent)
            .await
            .unwrap()
            .unwrap()
    };
    let mut events = app.events();
    let event = format!("ev-{}", Uuid::new_v4());
    app.ingest
        .enqueue(&web_message(
            w.a,
            connection,
            agent,
            "s",
            &event,
            "while suspended",
        ))
        .await
        .unwrap();
    // Handled: recorded, and nothing more will come of it. (The answer from before may finish
    // after the test started listening: wait for this message's own event.)
    while events.finished(w.a, 1).await[0].0 != event {}
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let recorded: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages WHERE body = 'while suspended')")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    assert!(recorded, "the message was recorded");
    let outbound: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE direction = 'outbound'")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    assert_eq!(outbound, 1, "only the answer from before the suspension");
    assert_eq!(app.llm.calls(), calls);
}

#[actix_rt::test]
async fn a_burst_to_a_tenant_that_has_no_actor_yet_is_answered_in_full() {
    // More messages than an actor's default mailbox bound, all queued before the tenant actor
    // has started: every one must get through (a sender parked on the default bound used to be
    // forgotten when the actor raised it). Limits high enough that none is rate-limited.
    let unlimited = Limit {
        per_minute: 100_000,
        burst: 1_000,
    };
    let app = engine_app(EngineSettings {
        tenant_limit: unlimited,
        connection_limit: unlimited,
        ..EngineSettings::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let connection = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        let c = runtime::store::conversations::ensure_web_connection(&mut tx, agent)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        c
    };
    let total = 40;
    for i in 0..total {
        app.ingest
            .enqueue(&web_message(
                w.a,
                connection,
                agent,
                &format!("burst{i}"),
                &format!("burst-{i}"),
                &format!("hello {i}"),
            ))
            .await
            .unwrap();
    }
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE provider_event_id LIKE 'reply:burst-%'",
        )
        .fetch_one(tx.connection())
        .await
        .unwrap();
        if answered == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {answered} of {total} answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn entries_with_the_same_id_in_two_partitions_are_both_answered() {
    // Stream entry ids are unique per stream only: two tenants' messages written in the same
    // millisecond to different partitions can carry the same id. Both must be handled at once
    // (the consumer once mistook the second for one it was already handling).
    use fred::interfaces::{ClientLike, StreamsInterface};

    let app = engine_app(EngineSettings::default()).await;
    // The first answer is slow, so the first entry is still being handled when the second,
    // with the same id, is read.
    app.llm.script([e2e::llm::Behavior::Delay(
        Duration::from_millis(1500),
        Box::new(e2e::llm::Behavior::Text("slow".into())),
    )]);
    let a = crate::fixtures::seed_tenant(&app.store, "a").await.tenant;
    let mut b = crate::fixtures::seed_tenant(&app.store, "b").await.tenant;
    while app.ingest.partition_of(b) == app.ingest.partition_of(a) {
        b = crate::fixtures::seed_tenant(&app.store, "b").await.tenant;
    }
    let client = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&crate::support::redis_url()).unwrap(),
    )
    .build()
    .unwrap();
    client.init().await.unwrap();
    let mut events = Vec::new();
    for (i, tenant) in [a, b].into_iter().enumerate() {
        let agent = world::agent(&app, tenant, "Nia").await;
        let mut tx = app.store.tenant_tx(tenant).await.unwrap();
        let connection = runtime::store::conversations::ensure_web_connection(&mut tx, agent)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let event = format!("same-id-{i}-{}", Uuid::new_v4().simple());
        let message = web_message(tenant, connection, agent, "same-id", &event, "hello");
        let stream = app.ingest.stream(app.ingest.partition_of(tenant));
        let _: String = client
            .xadd(
                &stream,
                false,
                None,
                "1-1",
                vec![("m", serde_json::to_string(&message).unwrap())],
            )
            .await
            .unwrap();
        events.push((tenant, event));
    }
    // Well inside the time an unacknowledged entry waits before it is claimed again.
    let deadline = Instant::now() + Duration::from_secs(5);
    for (tenant, event) in events {
        let mut tx = app.store.tenant_tx(tenant).await.unwrap();
        loop {
            let answered: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE provider_event_id = $1)",
            )
            .bind(format!("reply:{event}"))
            .fetch_one(tx.connection())
            .await
            .unwrap();
            if answered {
                break;
            }
            assert!(Instant::now() < deadline, "{event} was not answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[actix_rt::test]
async fn a_window_redis_lost_is_rebuilt_from_the_conversations_messages() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    send(&app, &admin, w.a, agent, Some("lost"), "My order is 4711.").await;
    wait_for(&app, &admin, w.a, agent, "lost", 2).await;
    // Redis forgets the conversation (its time to live ran out, or Redis restarted empty).
    let pattern = app.redis.key(&format!("{}:conversation:*", w.a));
    let deleted: i64 = app
        .redis
        .eval(
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
             n = n + redis.call('DEL', k) end return n",
            vec![],
            vec![pattern],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the conversation's state was in Redis");
    send(&app, &admin, w.a, agent, Some("lost"), "Which order?").await;
    wait_for(&app, &admin, w.a, agent, "lost", 4).await;
    let turns = last_prompt_turns(&app);
    assert!(turns.iter().any(|t| t == "My order is 4711."), "{turns:?}");
    assert!(
        turns.iter().any(|t| t == "echo: My order is 4711."),
        "{turns:?}"
    );
}

#[actix_rt::test]
async fn a_rejected_message_starts_no_conversation_actor() {
    let app = engine_app(EngineSettings {
        tenant_limit: Limit {
            per_minute: 1,
            burst: 1,
        },
        ..EngineSettings::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    send(&app, &admin, w.a, agent, Some("first"), "hello").await;
    wait_for(&app, &admin, w.a, agent, "first", 2).await;
    // Over the limit, in new conversations: each gets the notice or nothing, and no actor.
    for i in 0..5 {
        send(&app, &admin, w.a, agent, Some(&format!("new{i}")), "again").await;
    }
    wait_for(&app, &admin, w.a, agent, "new0", 2).await;
    for i in 1..5 {
        wait_for(&app, &admin, w.a, agent, &format!("new{i}"), 1).await;
    }
    let registry = app.engine.clone().unwrap().registry;
    assert_eq!(
        registry.send(CountLiveConversations).await.unwrap(),
        1,
        "only the answered conversation has an actor"
    );
}

#[actix_rt::test]
async fn an_agent_hired_a_moment_ago_answers_even_before_its_change_notice_arrives() {
    let app = engine_app(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    // The tenant actor is running, with a snapshot of the agents it had then.
    let first = world::agent(&app, w.a, "Ava").await;
    send(&app, &admin, w.a, first, Some("warm"), "hello").await;
    wait_for(&app, &admin, w.a, first, "warm", 2).await;
    // A new agent whose change notice never reaches the actor (its trigger off, as the owner),
    // standing in for a notice that is simply slower than the first message.
    let mut owner = app.db.owner_conn().await;
    sqlx::query("ALTER TABLE agents DISABLE TRIGGER agents_notify_config")
        .execute(&mut owner)
        .await
        .unwrap();
    let hired = world::agent(&app, w.a, "Nia").await;
    sqlx::query("ALTER TABLE agents ENABLE TRIGGER agents_notify_config")
        .execute(&mut owner)
        .await
        .unwrap();
    send(&app, &admin, w.a, hired, Some("new"), "Are you there?").await;
    let messages = wait_for(&app, &admin, w.a, hired, "new", 2).await;
    assert_eq!(messages[1].text, "echo: Are you there?", "{messages:?}");
}
