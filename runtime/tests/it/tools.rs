//! Tools, end to end against the real server: the fake LLM scripts tool calls the way a model
//! makes them, tenants' HTTP tools call a real local web service (the fake shop) through the
//! outbound client, and every call is recorded with its conversation and audited without its
//! content.

use e2e::llm::Behavior;
use e2e::shop::FakeShop;
use reqwest::StatusCode;
use runtime::engine::turn::EngineSettings;
use serde_json::{Value, json};
use shared::channel::ChatMessage;
use shared::resources::Page;
use shared::tools::{HttpTool, ToolCall, ToolInfo, ToolOutcome, ToolTestResult};
use shared::{AgentId, TenantId};

use crate::support::{AppOptions, TestApp};
use crate::world::{self, World};

const SHOP_KEY: &str = "shop-secret-key-0042";

/// The server with the engine, allowed to call `shop` on loopback.
async fn app_for(shop: &FakeShop) -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        outbound_allow: vec![shop.host_port.clone()],
        ..AppOptions::default()
    })
    .await
}

/// The order-status tool of the "done when": GET the shop's order by number, with the shop's
/// key as a secret header.
fn order_tool(shop: &FakeShop) -> Value {
    json!({
        "name": "order_status",
        "description": "Looks up an order by its number: status, carrier and delivery date.",
        "parameters": {
            "type": "object",
            "properties": { "order_id": { "type": "string", "description": "The order number" } },
            "required": ["order_id"],
            "additionalProperties": false
        },
        "method": "GET",
        "url": format!("{}/orders/{{order_id}}", shop.base_url),
        "headers": [{ "name": "X-Shop-Key", "value": SHOP_KEY, "secret": true }],
    })
}

/// The shop's order cancellation, which waits for the customer's yes.
fn cancel_tool(shop: &FakeShop) -> Value {
    let mut body = order_tool(shop);
    body["name"] = json!("cancel_order");
    body["description"] = json!("Cancels an order.");
    body["method"] = json!("POST");
    body["url"] = json!(format!("{}/orders/{{order_id}}/cancel", shop.base_url));
    body["needs_confirmation"] = json!(true);
    body
}

/// A tool whose server answers after an hour, with this timeout.
fn slow_tool(shop: &FakeShop, timeout_ms: u32) -> Value {
    let mut body = order_tool(shop);
    body["name"] = json!("slow_lookup");
    body["url"] = json!(format!("{}/slow", shop.base_url));
    body["parameters"] = json!({ "type": "object", "properties": {} });
    body["timeout_ms"] = json!(timeout_ms);
    body
}

async fn create_tool(app: &TestApp, token: &str, tenant: TenantId, body: Value) -> HttpTool {
    let res = app
        .client(Some(token.into()))
        .post(&format!("/api/tenants/{tenant}/tools"), body)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.json()
}

/// Gives `agent` these tools (and any other fields in `extra`).
async fn assign(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    agent: AgentId,
    tools: &[&str],
    extra: Value,
) {
    let mut body = json!({ "name": "Nia", "role": "Support", "tools": tools });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let res = app
        .client(Some(token.into()))
        .put(&format!("/api/tenants/{tenant}/agents/{agent}"), body)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    app.config_applied(tenant).await;
}

/// The chat requests the LLM received, in order.
fn chat_requests(app: &TestApp) -> Vec<Value> {
    app.llm
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| r.body)
        .collect()
}

/// The tool results the last chat request carried (`tool` messages), in order.
fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .collect()
}

async fn reply(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    agent: AgentId,
    conv: &str,
) -> ChatMessage {
    crate::knowledge::transcript(app, token, tenant, agent, conv)
        .await
        .into_iter()
        .rev()
        .find(|m| m.direction == shared::channel::MessageDirection::Outbound)
        .expect("a reply")
}

async fn audit_details(app: &TestApp, tenant: TenantId, action: &str) -> Vec<Value> {
    app.audit_events(tenant)
        .await
        .into_iter()
        .filter(|e| e["action"] == action)
        .map(|e| e["details"].clone())
        .collect()
}

struct Scene {
    app: TestApp,
    shop: FakeShop,
    w: World,
    admin: String,
    agent: AgentId,
}

async fn scene() -> Scene {
    let shop = FakeShop::start(SHOP_KEY).unwrap();
    let app = app_for(&shop).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    Scene {
        app,
        shop,
        w,
        admin,
        agent,
    }
}

#[actix_rt::test]
async fn where_is_my_order_calls_the_tenants_tool_and_answers_with_its_result() {
    let s = scene().await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, order_tool(&s.shop)).await;
    // The secret is sealed: shown as a hint only.
    assert_eq!(tool.headers[0].value, None);
    assert_eq!(tool.headers[0].hint.as_deref(), Some("…0042"));
    assert!(!serde_json::to_string(&tool).unwrap().contains(SHOP_KEY));
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    // The fake LLM behaves like a model: offered `order_status`, it calls it for "order 1234",
    // then answers from the result.
    crate::knowledge::chat(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        "o1",
        "where is my order 1234?",
    )
    .await;
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "o1").await;
    assert!(answer.text.contains("shipped"), "{}", answer.text);
    assert!(answer.text.contains("DHL"), "{}", answer.text);
    // The shop saw the argument in its path and the secret header.
    let calls = s.shop.received();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, "/orders/1234");
    assert_eq!(calls[0].header("x-shop-key"), Some(SHOP_KEY));
    // The call shows in the conversation view, with arguments and result.
    assert_eq!(answer.tool_calls.len(), 1, "{answer:?}");
    let call = &answer.tool_calls[0];
    assert_eq!(call.name, "order_status");
    assert_eq!(call.outcome, ToolOutcome::Ok);
    assert_eq!(call.arguments, json!({ "order_id": "1234" }));
    assert!(call.result.contains("shipped"));
    // The model was offered exactly the agent's tool, with its schema.
    let requests = chat_requests(&s.app);
    assert_eq!(requests.len(), 2);
    let offered: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(offered, vec!["order_status"]);
    assert!(tool_results(&requests[1])[0].contains("shipped"));
    // Audited without arguments or result.
    let audited = audit_details(&s.app, s.w.a, "tool.called").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["tool"], tool.id.to_string());
    assert_eq!(audited[0]["outcome"], "ok");
    assert_eq!(audited[0]["agent_id"], s.agent.to_string());
    let trail = serde_json::to_string(&s.app.audit_events(s.w.a).await).unwrap();
    assert!(!trail.contains("1234") && !trail.contains("shipped") && !trail.contains(SHOP_KEY));
    // And listed among the tool's last calls.
    let page: Page<ToolCall> = s
        .app
        .get_json(
            &format!("/api/tenants/{}/tool-calls?tool={}", s.w.a, tool.id),
            &s.admin,
        )
        .await;
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].id, call.id);
}

#[actix_rt::test]
async fn two_calls_in_one_step_both_run_and_both_results_go_back_in_order() {
    let s = scene().await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, order_tool(&s.shop)).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    s.app.llm.script([
        Behavior::ToolCalls(vec![
            ("order_status".into(), json!({ "order_id": "11" })),
            ("order_status".into(), json!({ "order_id": "22" })),
        ]),
        Behavior::Text("Both orders shipped.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "two", "my two orders?").await;
    let mut paths: Vec<String> = s.shop.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, vec!["/orders/11", "/orders/22"]);
    let requests = chat_requests(&s.app);
    let results = tool_results(&requests[1]);
    assert_eq!(results.len(), 2);
    assert!(
        results[0].contains("\"11\"") && results[1].contains("\"22\""),
        "{results:?}"
    );
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "two").await;
    assert_eq!(answer.text, "Both orders shipped.");
    assert_eq!(answer.tool_calls.len(), 2);
}

#[actix_rt::test]
async fn invalid_arguments_go_back_to_the_model_unrun_and_the_corrected_call_runs() {
    let s = scene().await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, order_tool(&s.shop)).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    s.app.llm.script([
        // A number where the schema wants a string.
        Behavior::ToolCall {
            name: "order_status".into(),
            arguments: json!({ "order_id": 1234 }),
        },
        Behavior::ToolCall {
            name: "order_status".into(),
            arguments: json!({ "order_id": "1234" }),
        },
        Behavior::Text("It shipped.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "bad", "order 1234?").await;
    assert_eq!(s.shop.received().len(), 1, "only the corrected call ran");
    let requests = chat_requests(&s.app);
    assert_eq!(requests.len(), 3);
    let correction = &tool_results(&requests[1])[0];
    assert!(correction.contains("/order_id"), "{correction}");
    assert!(correction.contains("Correct them"), "{correction}");
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "bad").await;
    let outcomes: Vec<ToolOutcome> = answer.tool_calls.iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        vec![ToolOutcome::InvalidArguments, ToolOutcome::Ok]
    );
}

#[actix_rt::test]
async fn a_tool_that_times_out_is_reported_to_the_model_and_the_turn_still_answers() {
    let s = scene().await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, slow_tool(&s.shop, 300)).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    s.app.llm.script([
        Behavior::ToolCall {
            name: "slow_lookup".into(),
            arguments: json!({}),
        },
        Behavior::Text("Our system is slow right now.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "slow", "anything?").await;
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "slow").await;
    assert_eq!(answer.text, "Our system is slow right now.");
    assert_eq!(answer.tool_calls[0].outcome, ToolOutcome::Timeout);
    let results = tool_results(&chat_requests(&s.app)[1]);
    assert!(
        results[0].contains("did not answer within 300 ms"),
        "{results:?}"
    );
}

#[actix_rt::test]
async fn a_loop_that_never_ends_stops_at_the_step_limit_with_an_honest_reply() {
    let s = scene().await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &["current_time"],
        json!({ "max_tool_steps": 3 }),
    )
    .await;
    s.app.llm.set_fallback(Some(Behavior::ToolCall {
        name: "current_time".into(),
        arguments: json!({}),
    }));
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "loop", "what time is it?").await;
    assert_eq!(
        chat_requests(&s.app).len(),
        3,
        "one LLM call per step, three steps"
    );
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "loop").await;
    assert!(answer.text.contains("couldn't finish"), "{}", answer.text);
    assert_eq!(answer.tool_calls.len(), 3);
    let stopped = audit_details(&s.app, s.w.a, "tool.loop_stopped").await;
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["reason"], "step_limit");
    // The platform's cap bounds what an agent may ask for.
    let res = s
        .app
        .client(Some(s.admin.clone()))
        .put(
            &format!("/api/tenants/{}/agents/{}", s.w.a, s.agent),
            json!({ "name": "Nia", "max_tool_steps": 1000, "turn_deadline_secs": 0 }),
        )
        .await;
    assert_eq!(res.fields(), vec!["max_tool_steps", "turn_deadline_secs"]);
}

#[actix_rt::test]
async fn a_turn_past_its_deadline_ends_with_an_honest_reply() {
    let s = scene().await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, slow_tool(&s.shop, 30000)).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({ "turn_deadline_secs": 1 }),
    )
    .await;
    s.app.llm.set_fallback(Some(Behavior::ToolCall {
        name: "slow_lookup".into(),
        arguments: json!({}),
    }));
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "late", "anything?").await;
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "late").await;
    assert!(answer.text.contains("in time"), "{}", answer.text);
    assert_eq!(answer.tool_calls[0].outcome, ToolOutcome::Timeout);
    let stopped = audit_details(&s.app, s.w.a, "tool.loop_stopped").await;
    assert_eq!(stopped[0]["reason"], "deadline");
}

#[actix_rt::test]
async fn a_tool_the_agent_was_not_given_never_runs_even_when_the_model_names_it() {
    let s = scene().await;
    // The tenant has the tool; this agent was not given it.
    create_tool(&s.app, &s.admin, s.w.a, order_tool(&s.shop)).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &["current_time"],
        json!({}),
    )
    .await;
    s.app.llm.script([
        Behavior::ToolCall {
            name: "order_status".into(),
            arguments: json!({ "order_id": "1234" }),
        },
        Behavior::Text("I can't look that up.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "na", "order 1234?").await;
    assert!(s.shop.received().is_empty());
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "na").await;
    assert_eq!(answer.tool_calls[0].outcome, ToolOutcome::NotAssigned);
    let results = tool_results(&chat_requests(&s.app)[1]);
    assert!(results[0].contains("no tool named"), "{results:?}");
    let audited = audit_details(&s.app, s.w.a, "tool.called").await;
    assert_eq!(audited[0]["outcome"], "not_assigned");
}

#[actix_rt::test]
async fn the_current_time_is_the_tenants_and_the_handoff_tool_silences_the_ai() {
    let s = scene().await;
    let res = s
        .app
        .client(Some(s.admin.clone()))
        .put(
            &format!("/api/tenants/{}/settings", s.w.a),
            json!({ "time_zone": "Asia/Tokyo", "locale": "en" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &["current_time", "handoff_to_human"],
        json!({}),
    )
    .await;
    s.app.llm.script([
        Behavior::ToolCall {
            name: "current_time".into(),
            arguments: json!({}),
        },
        Behavior::Text("It is late in Tokyo.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "t", "what time is it?").await;
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "t").await;
    let time: Value = serde_json::from_str(&answer.tool_calls[0].result).unwrap();
    assert_eq!(time["time_zone"], "Asia/Tokyo");
    assert!(time["now"].as_str().unwrap().ends_with("+09:00"), "{time}");

    s.app.llm.script([Behavior::ToolCall {
        name: "handoff_to_human".into(),
        arguments: json!({ "reason": "asks for a refund above the limit" }),
    }]);
    crate::knowledge::chat(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        "h",
        "I want my money back",
    )
    .await;
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "h").await;
    assert!(answer.text.contains("colleague"), "{}", answer.text);
    let mut tx = s.app.store.tenant_tx(s.w.a).await.unwrap();
    // The seeded fixtures hold an older escalation by keyword; this one is the newest.
    let (reason, note, status): (String, Option<String>, String) = sqlx::query_as(
        "SELECT e.reason, e.note, c.owner FROM escalations e \
         JOIN conversations c ON c.id = e.conversation_id ORDER BY e.created_at DESC LIMIT 1",
    )
    .fetch_one(tx.connection())
    .await
    .unwrap();
    drop(tx);
    assert_eq!(reason, "agent_requested");
    assert_eq!(note.as_deref(), Some("asks for a refund above the limit"));
    assert_eq!(status, "queue");
    // The AI is silent in it now: the next message asks the LLM nothing.
    let before = chat_requests(&s.app).len();
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "h", "hello?").await;
    assert_eq!(chat_requests(&s.app).len(), before);
}

#[actix_rt::test]
async fn secrets_are_sent_but_never_stored_shown_or_echoed_and_the_response_cap_holds() {
    let s = scene().await;
    let mut body = order_tool(&s.shop);
    body["name"] = json!("echo");
    body["url"] = json!(format!("{}/echo/{{order_id}}", s.shop.base_url));
    body["method"] = json!("POST");
    body["parameters"] = json!({
        "type": "object",
        "properties": { "order_id": { "type": "string" }, "note": { "type": "string" },
                        "password": { "type": "string" } },
        "required": ["order_id"]
    });
    body["headers"] = json!([
        { "name": "X-Shop-Key", "value": SHOP_KEY, "secret": true },
        { "name": "X-Plain", "value": "visible" }
    ]);
    let tool = create_tool(&s.app, &s.admin, s.w.a, body.clone()).await;
    // The test action: arguments substituted (encoded) and the rest as a JSON body.
    let tested = s
        .app
        .client(Some(s.admin.clone()))
        .post(
            &format!("/api/tenants/{}/tools/{}/test", s.w.a, tool.id),
            json!({ "arguments": { "order_id": "a/b c", "note": "hi" } }),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    let tested: ToolTestResult = tested.json();
    assert_eq!(tested.outcome, ToolOutcome::Ok);
    let seen = s.shop.received().pop().unwrap();
    assert_eq!(seen.path, "/echo/a%2Fb%20c");
    assert_eq!(seen.header("x-shop-key"), Some(SHOP_KEY));
    assert!(
        seen.header("idempotency-key").is_some(),
        "a POST carries its key"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&seen.body).unwrap(),
        json!({ "note": "hi" })
    );
    // The echo of the secret comes back redacted.
    assert!(!tested.content.contains(SHOP_KEY), "{}", tested.content);
    assert!(tested.content.contains("[redacted]"));
    // In a turn: the stored call redacts the echoed secret and a credential-like argument.
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    s.app.llm.script([
        Behavior::ToolCall {
            name: "echo".into(),
            arguments: json!({ "order_id": "9", "password": "hunter22" }),
        },
        Behavior::Text("Done.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "sec", "echo 9").await;
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "sec").await;
    let call = &answer.tool_calls[0];
    assert_eq!(call.arguments["password"], "[redacted]");
    assert!(!call.result.contains(SHOP_KEY));
    assert!(
        !serde_json::to_string(&chat_requests(&s.app))
            .unwrap()
            .contains(SHOP_KEY)
    );
    let mut tx = s.app.store.tenant_tx(s.w.a).await.unwrap();
    let stored: String = sqlx::query_scalar(
        "SELECT string_agg(arguments::text || result, ' ') FROM tool_calls WHERE name = 'echo'",
    )
    .fetch_one(tx.connection())
    .await
    .unwrap();
    let headers: String = sqlx::query_scalar("SELECT string_agg(headers::text, ' ') FROM tools")
        .fetch_one(tx.connection())
        .await
        .unwrap();
    drop(tx);
    assert!(!stored.contains(SHOP_KEY) && !stored.contains("hunter22"));
    assert!(!headers.contains(SHOP_KEY));
    // Editing without the secret's value keeps it.
    body["description"] = json!("Echoes.");
    body["headers"] = json!([{ "name": "X-Shop-Key", "secret": true }]);
    let res = s
        .app
        .client(Some(s.admin.clone()))
        .put(
            &format!("/api/tenants/{}/tools/{}", s.w.a, tool.id),
            body.clone(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    s.app
        .client(Some(s.admin.clone()))
        .post(
            &format!("/api/tenants/{}/tools/{}/test", s.w.a, tool.id),
            json!({ "arguments": { "order_id": "1" } }),
        )
        .await;
    assert_eq!(
        s.shop.received().pop().unwrap().header("x-shop-key"),
        Some(SHOP_KEY)
    );
    // A response over the cap is refused, not read past it.
    let mut big = order_tool(&s.shop);
    big["name"] = json!("big");
    big["url"] = json!(format!("{}/big?bytes=5000", s.shop.base_url));
    big["parameters"] = json!({ "type": "object" });
    big["max_response_bytes"] = json!(1000);
    let big = create_tool(&s.app, &s.admin, s.w.a, big).await;
    let tested: ToolTestResult = s
        .app
        .client(Some(s.admin.clone()))
        .post(
            &format!("/api/tenants/{}/tools/{}/test", s.w.a, big.id),
            json!({ "arguments": {} }),
        )
        .await
        .json();
    assert_eq!(tested.outcome, ToolOutcome::Failed);
    assert!(
        tested.content.contains("larger than 1000 bytes"),
        "{}",
        tested.content
    );
    // The test action checks arguments against the schema first.
    let res = s
        .app
        .client(Some(s.admin.clone()))
        .post(
            &format!("/api/tenants/{}/tools/{}/test", s.w.a, tool.id),
            json!({ "arguments": { "order_id": 5 } }),
        )
        .await;
    assert_eq!(res.fields(), vec!["arguments/order_id"]);
}

#[actix_rt::test]
async fn tools_on_our_own_network_are_refused_and_bad_definitions_get_clear_errors() {
    let s = scene().await;
    let client = s.app.client(Some(s.admin.clone()));
    let path = format!("/api/tenants/{}/tools", s.w.a);
    // Plain http only for an allowlisted host.
    let mut body = order_tool(&s.shop);
    body["url"] = json!("http://shop.example/orders/{order_id}");
    assert_eq!(client.post(&path, body).await.fields(), vec!["url"]);
    // Every refused address class, over https: saved (the host may be public tomorrow) but
    // refused when called, before anything is sent.
    for (i, url) in [
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://localhost/x",
        "https://192.168.1.1/x",
    ]
    .iter()
    .enumerate()
    {
        let mut body = order_tool(&s.shop);
        body["name"] = json!(format!("internal_{i}"));
        body["url"] = json!(url);
        body["parameters"] = json!({ "type": "object" });
        let tool = create_tool(&s.app, &s.admin, s.w.a, body).await;
        let tested: ToolTestResult = client
            .post(
                &format!("{path}/{}/test", tool.id),
                json!({ "arguments": {} }),
            )
            .await
            .json();
        assert_eq!(
            tested.outcome,
            ToolOutcome::Refused,
            "{url}: {}",
            tested.content
        );
    }
    // Bad definitions: every problem at once, each at its field.
    let res = client
        .post(
            &path,
            json!({
                "name": "bad name!",
                "description": "",
                "parameters": { "type": "object", "properties": { "id": { "type": 12 } } },
                "method": "GET",
                "url": "https://{host}/x",
                "headers": [{ "name": "Host", "value": "x" }, { "name": "X-Key", "secret": true }],
                "max_response_bytes": 0,
                "timeout_ms": 99999,
            }),
        )
        .await;
    assert_eq!(
        res.fields(),
        vec![
            "name",
            "description",
            "parameters/properties/id/type",
            "url",
            "headers[0].name",
            "headers[1].value",
            "max_response_bytes",
            "timeout_ms",
        ]
    );
    // A URL placeholder must be a required argument; built-in names are taken.
    let mut body = order_tool(&s.shop);
    body["parameters"] = json!({ "type": "object", "properties": {} });
    assert_eq!(client.post(&path, body).await.fields(), vec!["url"]);
    let mut body = order_tool(&s.shop);
    body["name"] = json!("current_time");
    assert_eq!(client.post(&path, body).await.fields(), vec!["name"]);
    // A name is the tenant's once.
    create_tool(&s.app, &s.admin, s.w.a, order_tool(&s.shop)).await;
    let again = client.post(&path, order_tool(&s.shop)).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    // Nothing of the refused ones was saved.
    let listed: Vec<ToolInfo> = s.app.get_json(&path, &s.admin).await;
    let mut http: Vec<&str> = listed
        .iter()
        .filter(|t| t.kind == shared::tools::ToolKind::Http)
        .map(|t| t.name.as_str())
        .filter(|n| *n != "seeded_lookup")
        .collect();
    http.sort_unstable();
    assert_eq!(
        http,
        vec![
            "internal_0",
            "internal_1",
            "internal_2",
            "internal_3",
            "internal_4",
            "internal_5",
            "order_status"
        ]
    );
    assert!(listed.iter().any(|t| t.id == "knowledge_base_search"));
}

#[actix_rt::test]
async fn tenants_cannot_see_change_call_or_assign_each_others_tools() {
    let s = scene().await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, order_tool(&s.shop)).await;
    let b = s.w.as_admin_b(&s.app).await;
    let base = format!("/api/tenants/{}/tools/{}", s.w.b, tool.id);
    assert_eq!(b.get(&base).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        b.put(&base, order_tool(&s.shop)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.post(
            &format!("{base}/test"),
            json!({ "arguments": { "order_id": "1" } })
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.call(reqwest::Method::DELETE, &base, None).await.status,
        StatusCode::NOT_FOUND
    );
    // B cannot give its agent A's tool.
    let res = b
        .put(
            &format!("/api/tenants/{}/agents/{}", s.w.b, s.w.agent_b),
            json!({ "name": "Bea", "tools": [tool.id.to_string()] }),
        )
        .await;
    assert_eq!(res.fields(), vec!["tools[0]"]);
    // B's lists hold nothing of A's.
    let listed: Vec<ToolInfo> = s
        .app
        .get_json(
            &format!("/api/tenants/{}/tools", s.w.b),
            &s.app.token_for(s.w.admin_b, None).await,
        )
        .await;
    assert!(listed.iter().all(|t| t.id != tool.id.to_string()));
    assert!(s.shop.received().is_empty(), "no call reached the shop");
    // Still A's, unchanged.
    let mine: HttpTool = s
        .app
        .get_json(
            &format!("/api/tenants/{}/tools/{}", s.w.a, tool.id),
            &s.admin,
        )
        .await;
    assert_eq!(mine.name, "order_status");
}

#[actix_rt::test]
async fn a_tool_that_needs_confirmation_runs_only_after_the_customer_says_yes() {
    let s = scene().await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, cancel_tool(&s.shop)).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    s.app.llm.script([Behavior::ToolCall {
        name: "cancel_order".into(),
        arguments: json!({ "order_id": "77" }),
    }]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "c", "cancel order 77").await;
    let asked = reply(&s.app, &s.admin, s.w.a, s.agent, "c").await;
    assert!(asked.text.contains("Reply YES"), "{}", asked.text);
    assert!(asked.text.contains("77"), "{}", asked.text);
    assert!(s.shop.received().is_empty(), "nothing ran before the yes");
    assert_eq!(
        asked.tool_calls[0].outcome,
        ToolOutcome::AwaitingConfirmation
    );
    s.app
        .llm
        .script([Behavior::Text("Order 77 is cancelled.".into())]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "c", "Yes please").await;
    let done = reply(&s.app, &s.admin, s.w.a, s.agent, "c").await;
    assert_eq!(done.text, "Order 77 is cancelled.");
    let ran = s.shop.received();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].path, "/orders/77/cancel");
    // The recorded call's id is the idempotency key.
    assert_eq!(
        ran[0].header("idempotency-key"),
        Some(asked.tool_calls[0].id.to_string().as_str())
    );
    // The model saw the result after the yes.
    let results = tool_results(chat_requests(&s.app).last().unwrap());
    assert!(results[0].contains("cancelled"), "{results:?}");

    // Asked again, and declined: nothing runs.
    s.app.llm.script([
        Behavior::ToolCall {
            name: "cancel_order".into(),
            arguments: json!({ "order_id": "78" }),
        },
        Behavior::Text("All right, I won't.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "c", "cancel order 78").await;
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "c", "no, leave it").await;
    assert_eq!(s.shop.received().len(), 1);
    let calls: Page<ToolCall> = s
        .app
        .get_json(
            &format!("/api/tenants/{}/tool-calls?tool={}", s.w.a, tool.id),
            &s.admin,
        )
        .await;
    assert_eq!(calls.items[0].outcome, ToolOutcome::Declined);
}

#[actix_rt::test]
async fn the_knowledge_search_tool_answers_with_a_citation() {
    let app = crate::knowledge::app().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    crate::knowledge::ready_upload(&app, &admin, w.a, "faq.md", crate::knowledge::FAQ).await;
    assign(
        &app,
        &admin,
        w.a,
        agent,
        &["knowledge_base_search"],
        json!({}),
    )
    .await;
    app.llm.script([
        Behavior::ToolCall {
            name: "knowledge_base_search".into(),
            arguments: json!({ "query": "refunds issued days" }),
        },
        Behavior::Text("Refunds come within 14 days [1].".into()),
    ]);
    // A greeting retrieves nothing by itself: the passage comes from the model's own search.
    crate::knowledge::chat(&app, &admin, w.a, agent, "kb", "Hi! Quick question.").await;
    let answer = reply(&app, &admin, w.a, agent, "kb").await;
    assert_eq!(answer.tool_calls[0].outcome, ToolOutcome::Ok);
    assert!(answer.tool_calls[0].result.contains("14 days"));
    assert_eq!(answer.citations.len(), 1, "{answer:?}");
    assert_eq!(answer.citations[0].title, "Acme FAQ");
    assert!(answer.citations[0].heading.contains("Refunds"));
    // An agent that answers only from its documents keeps to them with the tool too: an answer
    // that cites nothing is not sent.
    assign(
        &app,
        &admin,
        w.a,
        agent,
        &["knowledge_base_search"],
        json!({ "cite_or_handoff": true }),
    )
    .await;
    app.llm.script([
        Behavior::ToolCall {
            name: "knowledge_base_search".into(),
            arguments: json!({ "query": "capital of Mongolia" }),
        },
        Behavior::Text("It is Ulaanbaatar.".into()),
    ]);
    crate::knowledge::chat(
        &app,
        &admin,
        w.a,
        agent,
        "kb2",
        "What is the capital of Mongolia?",
    )
    .await;
    let answer = reply(&app, &admin, w.a, agent, "kb2").await;
    assert!(answer.text.contains("don't know"), "{}", answer.text);
    assert!(!answer.text.contains("Ulaanbaatar"));
}

/// An @mention in thread `thread` of the support channel, from Slack user `user`.
fn thread_mention(bot: &str, user: &str, text: &str, ts: &str, thread: &str) -> Value {
    json!({
        "type": "app_mention", "user": user, "channel": "CSUPPORT",
        "text": format!("<@{bot}> {text}"), "ts": ts, "event_ts": ts, "thread_ts": thread,
    })
}

#[actix_rt::test]
async fn only_the_customer_who_asked_can_confirm_in_a_shared_thread() {
    let s = scene().await;
    let slack = crate::slack::install(&s.app, s.w.admin_a, s.w.a, "Sam").await;
    let tool = create_tool(&s.app, &s.admin, s.w.a, cancel_tool(&s.shop)).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        slack.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    let thread = "1700000100.000100";
    let say = |event: &'static str, user: &'static str, text: &'static str, ts: &'static str| {
        let app = &s.app;
        let slack = &slack;
        async move {
            let mut events = app.events();
            let body = crate::slack::callback(
                &slack.team,
                event,
                thread_mention(&slack.bot, user, text, ts, thread),
            );
            assert_eq!(
                crate::slack::deliver(app, &body, None).await.status(),
                StatusCode::OK
            );
            events.finished(s.w.a, 1).await;
        }
    };
    s.app.llm.script([Behavior::ToolCall {
        name: "cancel_order".into(),
        arguments: json!({ "order_id": "55" }),
    }]);
    say("EvAsk", "UASKER", "cancel order 55", thread).await;
    let posted = crate::slack::wait_posted(&s.app, 1).await;
    assert!(posted[0].text.contains("Reply YES"), "{}", posted[0].text);
    // Someone else in the thread says yes: it neither runs nor is declined.
    s.app.llm.script([Behavior::Text("Hello there.".into())]);
    say("EvOther", "UOTHER", "yes", "1700000101.000100").await;
    assert!(
        s.shop.received().is_empty(),
        "another person cannot confirm"
    );
    // The customer who asked says yes: it runs, once.
    s.app
        .llm
        .script([Behavior::Text("Order 55 is cancelled.".into())]);
    say("EvYes", "UASKER", "yes", "1700000102.000100").await;
    let ran = s.shop.received();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].path, "/orders/55/cancel");
}

#[actix_rt::test]
async fn an_argument_cannot_walk_up_the_path_nor_add_what_the_schema_does_not_declare() {
    let s = scene().await;
    let mut body = order_tool(&s.shop);
    body["name"] = json!("echo");
    body["url"] = json!(format!(
        "{}/echo/customers/{{order_id}}/orders",
        s.shop.base_url
    ));
    let tool = create_tool(&s.app, &s.admin, s.w.a, body).await;
    assign(
        &s.app,
        &s.admin,
        s.w.a,
        s.agent,
        &[&tool.id.to_string()],
        json!({}),
    )
    .await;
    s.app.llm.script([
        Behavior::ToolCall {
            name: "echo".into(),
            arguments: json!({ "order_id": ".." }),
        },
        Behavior::Text("No.".into()),
    ]);
    crate::knowledge::chat(&s.app, &s.admin, s.w.a, s.agent, "dots", "order ..").await;
    assert!(
        s.shop.received().is_empty(),
        "a dot segment is refused before anything is sent"
    );
    let answer = reply(&s.app, &s.admin, s.w.a, s.agent, "dots").await;
    assert_eq!(answer.tool_calls[0].outcome, ToolOutcome::InvalidArguments);
    // The schema forbids extra properties here, so an undeclared one never reaches the tool;
    // a schema that allows them still sends only what it declares.
    let mut open = order_tool(&s.shop);
    open["name"] = json!("echo_open");
    open["url"] = json!(format!("{}/echo/o/{{order_id}}", s.shop.base_url));
    open["parameters"]["additionalProperties"] = json!(true);
    let open = create_tool(&s.app, &s.admin, s.w.a, open).await;
    let tested: ToolTestResult = s
        .app
        .client(Some(s.admin.clone()))
        .post(
            &format!("/api/tenants/{}/tools/{}/test", s.w.a, open.id),
            json!({ "arguments": { "order_id": "7", "debug": "true" } }),
        )
        .await
        .json();
    assert_eq!(tested.outcome, ToolOutcome::Ok, "{}", tested.content);
    let seen = s.shop.received().pop().unwrap();
    assert_eq!(seen.path, "/echo/o/7");
    assert_eq!(seen.query, "", "the undeclared argument was not sent");
    // Editing the URL to another host keeps no secret: it must be typed again.
    let mut moved = order_tool(&s.shop);
    moved["url"] = json!("https://elsewhere.example/orders/{order_id}");
    moved["headers"] = json!([{ "name": "X-Shop-Key", "secret": true }]);
    let res = s
        .app
        .client(Some(s.admin.clone()))
        .put(&format!("/api/tenants/{}/tools/{}", s.w.a, tool.id), moved)
        .await;
    assert_eq!(res.fields(), vec!["headers[0].value"]);
}
