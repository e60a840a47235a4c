//! Humans in the loop: ownership enforced where the engine records and sends, people's replies
//! through the conversation's channel, hand-back, private notes, the live stream and hand-off
//! notifications. Expectations come from what a customer and a member must see.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runtime::engine::turn::deps::{BEFORE_RECORD, BEFORE_SEND, Pauses};
use runtime::engine::turn::{EngineSettings, Outcome};
use serde_json::{Value, json};
use shared::{ConversationId, TenantId};
use uuid::Uuid;

use crate::slack::{Install, callback, deliver, deliver_mention, install, wait_posted};
use crate::support::{AppOptions, Client, TestApp};
use crate::world::World;

/// A hold on turns at one point, armed by the test.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<Option<Armed>>>);

struct Armed {
    point: &'static str,
    reached: tokio::sync::oneshot::Sender<ConversationId>,
    release: Arc<tokio::sync::Notify>,
}

impl Gate {
    fn pauses(&self) -> Pauses {
        let gate = self.clone();
        Pauses::new(move |point, conversation| {
            let armed = {
                let mut slot = gate.0.lock().unwrap();
                match slot.as_ref() {
                    Some(a) if a.point == point => slot.take(),
                    _ => None,
                }
            };
            Box::pin(async move {
                if let Some(armed) = armed {
                    let _ = armed.reached.send(conversation);
                    armed.release.notified().await;
                }
            })
        })
    }

    /// Holds the next turn that reaches `point`; returns when it is reached and the release.
    fn arm(
        &self,
        point: &'static str,
    ) -> (
        tokio::sync::oneshot::Receiver<ConversationId>,
        Arc<tokio::sync::Notify>,
    ) {
        let (reached, rx) = tokio::sync::oneshot::channel();
        let release = Arc::new(tokio::sync::Notify::new());
        *self.0.lock().unwrap() = Some(Armed {
            point,
            reached,
            release: release.clone(),
        });
        (rx, release)
    }
}

fn runner() -> (runtime::jobs::RunnerSettings, runtime::jobs::Registry) {
    (
        runtime::jobs::RunnerSettings {
            concurrency: 2,
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_secs(30),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(500),
        },
        runtime::jobs::Registry::builtin().unwrap(),
    )
}

async fn app_with(settings: EngineSettings) -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(settings),
        jobs: Some(runner()),
        public_url: Some("https://konstruct.example.test".into()),
        ..AppOptions::default()
    })
    .await
}

async fn client(app: &TestApp, user: Uuid) -> Client<'_> {
    app.client(Some(app.token_for(user, None).await))
}

/// Gives the agent a "talk to a person" rule.
async fn human_rule(app: &TestApp, admin: &Client<'_>, tenant: TenantId, agent: shared::AgentId) {
    let res = admin
        .put(
            &format!("/api/tenants/{tenant}/agents/{agent}"),
            json!({
                "name": "Nia", "role": "Support",
                "escalation_rules": [{ "trigger": { "kind": "human_requested" }, "handoff_target": "#humans" }],
            }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    app.config_applied(tenant).await;
}

/// The agent's only conversation, as the list shows it (the world's fixtures hold others).
async fn only_conversation(admin: &Client<'_>, tenant: TenantId, agent: shared::AgentId) -> Value {
    let list = admin
        .get(&format!(
            "/api/tenants/{tenant}/conversations?agent={agent}"
        ))
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["total"], 1, "{}", list.body);
    list.body["items"][0].clone()
}

fn path(tenant: TenantId, conversation: &str, tail: &str) -> String {
    format!("/api/tenants/{tenant}/conversations/{conversation}{tail}")
}

/// Waits until the conversation's detail satisfies `done`.
async fn detail_until(
    admin: &Client<'_>,
    tenant: TenantId,
    conversation: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = admin.get(&path(tenant, conversation, "")).await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.body);
        if done(&d.body) {
            return d.body;
        }
        assert!(Instant::now() < deadline, "{what}: {}", d.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn messages(detail: &Value) -> Vec<&Value> {
    detail["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .collect()
}

fn system_prompts(app: &TestApp) -> Vec<String> {
    app.llm
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// An @mention of the bot inside an existing thread.
async fn mention_in_thread(
    app: &TestApp,
    slack: &Install,
    event_id: &str,
    text: &str,
    thread: &str,
    ts: &str,
) {
    let event = json!({
        "type": "app_mention", "user": "UCUSTOMER", "channel": "CSUPPORT",
        "text": format!("<@{}> {text}", slack.bot), "ts": ts, "thread_ts": thread, "event_ts": ts,
    });
    let res = deliver(app, &callback(&slack.team, event_id, event), None).await;
    assert_eq!(res.status(), StatusCode::OK);
}

fn thread_message(user: &str, text: &str, thread: &str, ts: &str) -> Value {
    json!({
        "type": "message", "channel_type": "channel", "user": user, "channel": "CSUPPORT",
        "text": text, "ts": ts, "thread_ts": thread, "event_ts": ts,
    })
}

async fn audit_actions(app: &TestApp, tenant: TenantId) -> Vec<(String, Value)> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT action, details FROM audit_events ORDER BY seq")
            .fetch_all(tx.connection())
            .await
            .unwrap();
    rows
}

#[actix_rt::test]
async fn from_i_want_a_person_on_slack_to_a_members_reply_in_the_thread_and_back_to_the_ai() {
    let app = app_with(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let slack: Install = install(&app, w.admin_a, w.a, "Nia").await;
    let admin = client(&app, w.admin_a).await;
    let operator = client(&app, w.operator_a).await;
    human_rule(&app, &admin, w.a, slack.agent).await;

    // The customer asks for a person: no LLM call, the notice says a person will answer.
    let thread = "1700000100.000100";
    let mut events = app.events();
    deliver_mention(
        &app,
        &slack,
        "EvPerson",
        "can I talk to a person please?",
        thread,
    )
    .await;
    events.finished(w.a, 1).await;
    let posted = wait_posted(&app, 1).await;
    assert!(
        posted[0]
            .text
            .contains("passed this conversation to a colleague")
    );
    assert!(
        posted[0].text.contains("A person will reply here"),
        "{posted:?}"
    );
    assert_eq!(app.llm.calls(), 0);

    // It waits in the queue, with its packet first.
    let summary = only_conversation(&operator, w.a, slack.agent).await;
    assert_eq!(summary["owner"], "queue");
    assert_eq!(summary["handoff_reason"], "human_requested");
    let id = summary["id"].as_str().unwrap().to_string();
    let counts = operator
        .get(&format!("/api/tenants/{}/inbox/counts", w.a))
        .await;
    assert_eq!(counts.body["queue"], 1, "{}", counts.body);
    let detail = operator.get(&path(w.a, &id, "")).await;
    let packet = &detail.body["packet"];
    assert_eq!(packet["reason"], "human_requested");
    assert_eq!(packet["why"], "The customer asked to talk to a person.");
    assert!(
        packet["intent"]
            .as_str()
            .unwrap()
            .contains("talk to a person")
    );
    assert_eq!(packet["handoff_target"], "#humans");
    assert!(!packet["suggested_reply"].as_str().unwrap().is_empty());
    assert!(detail.body["reply"]["can_reply"].as_bool().unwrap());

    // An operator may look but not act.
    let refused = operator.post(&path(w.a, &id, "/claim"), json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = operator
        .post(&path(w.a, &id, "/replies"), json!({ "text": "hi" }))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // The admin claims and replies; the reply goes into the same thread with the installation's
    // token.
    let claimed = admin.post(&path(w.a, &id, "/claim"), json!({})).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    assert_eq!(claimed.body["owner"], "person");
    assert_eq!(claimed.body["assignee_id"], w.admin_a.to_string());
    let reply = admin
        .post(
            &path(w.a, &id, "/replies"),
            json!({ "text": "Hi, this is Ana from support: I refunded order 42." }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let posted = wait_posted(&app, 2).await;
    assert_eq!(
        posted[1].text,
        "Hi, this is Ana from support: I refunded order 42."
    );
    assert_eq!(posted[1].channel, "CSUPPORT");
    assert_eq!(posted[1].thread_ts.as_deref(), Some(thread));
    assert_eq!(posted[1].token, slack.token);
    let detail = detail_until(&admin, w.a, &id, "the reply marked sent", |d| {
        messages(d)
            .iter()
            .any(|m| m["kind"] == "human" && m["delivery"] == "sent")
    })
    .await;
    assert!(detail["conversation"]["first_response_secs"].is_i64());

    // While a person has it, the customer's messages wait for them: the AI never answers.
    let mut events = app.events();
    mention_in_thread(
        &app,
        &slack,
        "EvStill",
        "ok, and the shipping fee?",
        thread,
        "1700000100.000200",
    )
    .await;
    events.finished(w.a, 1).await;
    assert_eq!(app.llm.calls(), 0);
    assert_eq!(app.slack.posted().len(), 2);

    // Handed back: the next message is the AI's again, with the marker in its prompt, and the
    // same rule does not hand it off again at once.
    let back = admin
        .post(
            &path(w.a, &id, "/hand-back"),
            json!({ "summary": "Refunded order 42; the shipping fee question is open." }),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(back.body["owner"], "ai");
    app.llm.script([e2e::llm::Behavior::Text(
        "The shipping fee was refunded with the order.".into(),
    )]);
    let mut events = app.events();
    mention_in_thread(
        &app,
        &slack,
        "EvBack",
        "can I talk to a person about the fee?",
        thread,
        "1700000100.000300",
    )
    .await;
    events.finished(w.a, 1).await;
    assert_eq!(
        app.llm.calls(),
        1,
        "the AI answered instead of handing off again"
    );
    let prompt = &system_prompts(&app)[0];
    assert!(prompt.contains("[Hand-back on"), "{prompt}");
    assert!(prompt.contains("Refunded order 42"), "{prompt}");
    assert!(
        prompt.contains("I refunded order 42."),
        "the person's reply is in the prompt: {prompt}"
    );
    let posted = wait_posted(&app, 3).await;
    assert_eq!(
        posted[2].text,
        "The shipping fee was refunded with the order."
    );
    assert_eq!(posted[2].thread_ts.as_deref(), Some(thread));
    let summary = only_conversation(&admin, w.a, slack.agent).await;
    assert_eq!(summary["owner"], "ai");

    // The trail holds what people did, never what they wrote.
    let actions = audit_actions(&app, w.a).await;
    for action in [
        "conversation.handed_off",
        "conversation.claimed",
        "conversation.replied",
        "conversation.handed_back",
    ] {
        assert!(
            actions.iter().any(|(a, _)| a == action),
            "{action}: {actions:?}"
        );
    }
    let trail = serde_json::to_string(&actions).unwrap();
    assert!(!trail.contains("refunded order 42") && !trail.contains("Refunded order 42"));
}

#[actix_rt::test]
async fn an_ai_reply_in_flight_when_a_person_claims_is_never_sent() {
    let gate = Gate::default();
    let app = app_with(EngineSettings {
        pauses: gate.pauses(),
        ..EngineSettings::default()
    })
    .await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let admin = client(&app, w.admin_a).await;

    // 1. The LLM has answered, the turn has not recorded yet: a claim commits now.
    let (reached, release) = gate.arm(BEFORE_RECORD);
    app.llm.script([e2e::llm::Behavior::Text(
        "An answer nobody must see.".into(),
    )]);
    let mut events = app.events();
    deliver_mention(
        &app,
        &slack,
        "EvFirst",
        "where is my order?",
        "1700000200.000100",
    )
    .await;
    let conversation = tokio::time::timeout(Duration::from_secs(20), reached)
        .await
        .unwrap()
        .unwrap();
    let claimed = admin
        .post(&path(w.a, &conversation.to_string(), "/claim"), json!({}))
        .await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    release.notify_one();
    assert_eq!(events.finished(w.a, 1).await[0].1, Outcome::Done);
    assert!(app.slack.posted().is_empty(), "{:?}", app.slack.posted());
    let detail = admin.get(&path(w.a, &conversation.to_string(), "")).await;
    let ai: Vec<_> = messages(&detail.body)
        .into_iter()
        .filter(|m| m["direction"] == "outbound")
        .cloned()
        .collect();
    assert_eq!(ai.len(), 1, "{ai:?}");
    assert_eq!(ai[0]["delivery"], "withheld");
    assert!(
        audit_actions(&app, w.a)
            .await
            .iter()
            .any(|(a, _)| a == "reply.withheld")
    );

    // 2. Recorded and cleared for nothing yet: the claim lands between record and send.
    let (reached, release) = gate.arm(BEFORE_SEND);
    app.llm.script([e2e::llm::Behavior::Text(
        "Another answer nobody must see.".into(),
    )]);
    let mut events = app.events();
    deliver_mention(&app, &slack, "EvSecond", "hello?", "1700000300.000100").await;
    let second = tokio::time::timeout(Duration::from_secs(20), reached)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second, conversation);
    let claimed = admin
        .post(&path(w.a, &second.to_string(), "/claim"), json!({}))
        .await;
    assert_eq!(claimed.status, StatusCode::OK);
    assert_eq!(claimed.body["owner"], "person");
    release.notify_one();
    events.finished(w.a, 1).await;
    assert!(app.slack.posted().is_empty(), "{:?}", app.slack.posted());
    let detail = admin.get(&path(w.a, &second.to_string(), "")).await;
    let out: Vec<_> = messages(&detail.body)
        .into_iter()
        .filter(|m| m["direction"] == "outbound")
        .cloned()
        .collect();
    assert_eq!(out[0]["delivery"], "withheld", "{out:?}");

    // 3. The hand-off's own notice, recorded and about to go: a claim now withholds it too (a
    // person is answering), while one that waits in the queue goes out (the first test).
    human_rule(&app, &admin, w.a, slack.agent).await;
    let (reached, release) = gate.arm(BEFORE_SEND);
    let mut events = app.events();
    deliver_mention(
        &app,
        &slack,
        "EvNotice",
        "can I talk to a person?",
        "1700000350.000100",
    )
    .await;
    let third = tokio::time::timeout(Duration::from_secs(20), reached)
        .await
        .unwrap()
        .unwrap();
    let claimed = admin
        .post(&path(w.a, &third.to_string(), "/claim"), json!({}))
        .await;
    assert_eq!(claimed.status, StatusCode::OK);
    release.notify_one();
    events.finished(w.a, 1).await;
    assert!(app.slack.posted().is_empty(), "{:?}", app.slack.posted());

    // After a person's reply the AI never answers until handed back.
    let reply = admin
        .post(
            &path(w.a, &second.to_string(), "/replies"),
            json!({ "text": "I'm on it." }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let posted = wait_posted(&app, 1).await;
    assert_eq!(posted[0].text, "I'm on it.");
    let calls = app.llm.calls();
    let mut events = app.events();
    mention_in_thread(
        &app,
        &slack,
        "EvThird",
        "thanks! one more thing",
        "1700000300.000100",
        "1700000300.000200",
    )
    .await;
    events.finished(w.a, 1).await;
    assert_eq!(app.llm.calls(), calls);
    assert_eq!(app.slack.posted().len(), 1);
}

#[actix_rt::test]
async fn a_colleague_answering_in_the_slack_thread_takes_the_conversation() {
    let app = app_with(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let admin = client(&app, w.admin_a).await;
    let thread = "1700000400.000100";
    let mut events = app.events();
    deliver_mention(&app, &slack, "EvAsk", "my invoice is wrong", thread).await;
    events.finished(w.a, 1).await;
    wait_posted(&app, 1).await;

    // Another customer of the agent (known from their own thread) writes in this thread: the
    // customer side going on, not a colleague taking over.
    let mut events = app.events();
    let other = json!({
        "type": "app_mention", "user": "UOTHERCUSTOMER", "channel": "CSUPPORT",
        "text": format!("<@{}> hi", slack.bot), "ts": "1700000401.000100", "event_ts": "1700000401.000100",
    });
    deliver(&app, &callback(&slack.team, "EvOtherCustomer", other), None).await;
    events.finished(w.a, 1).await;
    deliver(
        &app,
        &callback(
            &slack.team,
            "EvOtherInThread",
            thread_message(
                "UOTHERCUSTOMER",
                "I have the same problem",
                thread,
                "1700000401.000200",
            ),
        ),
        None,
    )
    .await;
    events.finished(w.a, 1).await;
    // Nor is anyone from another workspace in a shared channel (ignored at the webhook).
    let mut guest = thread_message("UGUEST", "not my job", thread, "1700000401.000300");
    guest["user_team"] = json!("TSOMEONEELSE");
    let res = deliver(&app, &callback(&slack.team, "EvGuest", guest), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let list = admin
        .get(&format!(
            "/api/tenants/{}/conversations?agent={}&owner=person",
            w.a, slack.agent
        ))
        .await;
    assert_eq!(
        list.body["total"], 0,
        "nobody took a conversation: {}",
        list.body
    );
    let calls = app.llm.calls();

    // A colleague answers in the thread, without mentioning the bot.
    let mut events = app.events();
    let res = deliver(
        &app,
        &callback(
            &slack.team,
            "EvColleague",
            thread_message(
                "UCOLLEAGUE",
                "I'll fix the invoice today.",
                thread,
                "1700000400.000200",
            ),
        ),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    events.finished(w.a, 1).await;
    let taken = admin
        .get(&format!(
            "/api/tenants/{}/conversations?agent={}&owner=person",
            w.a, slack.agent
        ))
        .await;
    assert_eq!(taken.body["total"], 1, "{}", taken.body);
    let summary = taken.body["items"][0].clone();
    assert_eq!(summary["owner"], "person", "{summary}");
    assert_eq!(summary["owner_name"], "Slack user UCOLLEAGUE");

    // The customer goes on in the thread (mention or not): recorded, never answered by the AI.
    let mut events = app.events();
    deliver(
        &app,
        &callback(
            &slack.team,
            "EvCustomerInThread",
            thread_message("UCUSTOMER", "thank you!", thread, "1700000400.000300"),
        ),
        None,
    )
    .await;
    mention_in_thread(
        &app,
        &slack,
        "EvMentionAgain",
        "and the due date?",
        thread,
        "1700000400.000400",
    )
    .await;
    events.finished(w.a, 2).await;
    assert_eq!(app.llm.calls(), calls);
    assert_eq!(
        app.slack.posted().len(),
        2,
        "the first answer and the other customer's"
    );
    let id = summary["id"].as_str().unwrap();
    let detail = admin.get(&path(w.a, id, "")).await;
    let bodies: Vec<_> = messages(&detail.body)
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap().to_string(),
                m["body"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        bodies.contains(&("outbound".into(), "I'll fix the invoice today.".into())),
        "{bodies:?}"
    );
    assert!(
        bodies.contains(&("inbound".into(), "thank you!".into())),
        "{bodies:?}"
    );

    // Chatter in a thread the agent was never part of is not recorded.
    let mut events = app.events();
    deliver(
        &app,
        &callback(
            &slack.team,
            "EvOtherThread",
            thread_message(
                "UCOLLEAGUE",
                "lunch?",
                "1700000999.000100",
                "1700000999.000200",
            ),
        ),
        None,
    )
    .await;
    events.finished(w.a, 1).await;
    let list = admin
        .get(&format!(
            "/api/tenants/{}/conversations?agent={}",
            w.a, slack.agent
        ))
        .await;
    assert_eq!(
        list.body["total"], 2,
        "the two customers' threads only: {}",
        list.body
    );
}

#[actix_rt::test]
async fn private_notes_never_reach_a_channel_and_other_tenants_see_nothing() {
    let app = app_with(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let admin = client(&app, w.admin_a).await;
    let other = client(&app, w.admin_b).await;
    let mut events = app.events();
    deliver_mention(&app, &slack, "EvNote", "hello", "1700000500.000100").await;
    events.finished(w.a, 1).await;
    wait_posted(&app, 1).await;
    let id = only_conversation(&admin, w.a, slack.agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let note = admin
        .post(
            &path(w.a, &id, "/notes"),
            json!({ "text": "NOTE-CANARY: customer is a VIP" }),
        )
        .await;
    assert_eq!(note.status, StatusCode::CREATED, "{}", note.body);
    assert_eq!(note.body["kind"], "note");
    let empty = admin
        .post(&path(w.a, &id, "/notes"), json!({ "text": "  " }))
        .await;
    assert_eq!(empty.fields(), ["text"]);
    let detail = admin.get(&path(w.a, &id, "")).await;
    assert!(detail.body.to_string().contains("NOTE-CANARY"));
    // Nothing reached Slack, and the trail has the note's id only.
    assert!(
        app.slack
            .posted()
            .iter()
            .all(|p| !p.text.contains("NOTE-CANARY"))
    );
    assert_eq!(app.slack.posted().len(), 1);
    let trail = serde_json::to_string(&audit_actions(&app, w.a).await).unwrap();
    assert!(trail.contains("conversation.note_added"));
    assert!(!trail.contains("NOTE-CANARY"));

    // Another tenant's admin gets 404 on every conversation route.
    for (method, tail, body) in [
        (Method::GET, "", None),
        (Method::POST, "/claim", Some(json!({}))),
        (
            Method::POST,
            "/assign",
            Some(json!({ "assignee_id": w.admin_b })),
        ),
        (Method::POST, "/replies", Some(json!({ "text": "hi" }))),
        (Method::POST, "/notes", Some(json!({ "text": "hi" }))),
        (
            Method::POST,
            "/status",
            Some(json!({ "status": "resolved" })),
        ),
        (Method::POST, "/hand-back", Some(json!({ "summary": "" }))),
    ] {
        // Through A's tenant id (not B's member) and through B's own (not B's conversation).
        for tenant in [w.a, w.b] {
            let res = other
                .call(method.clone(), &path(tenant, &id, tail), body.clone())
                .await;
            assert_eq!(
                res.status,
                StatusCode::NOT_FOUND,
                "{method} {tail} in {tenant}: {}",
                res.body
            );
        }
    }
    let list = other
        .get(&format!(
            "/api/tenants/{}/conversations?agent={}",
            w.b, slack.agent
        ))
        .await;
    assert_eq!(list.body["total"], 0, "{}", list.body);
    // An assignee must be one of this tenant's admins (operators only read).
    for stranger in [w.admin_b, w.operator_a] {
        let res = admin
            .post(
                &path(w.a, &id, "/assign"),
                json!({ "assignee_id": stranger }),
            )
            .await;
        assert_eq!(res.fields(), ["assignee_id"]);
    }
    // A member who leaves gives their conversations back to the queue.
    let colleague = crate::world::user(
        &app,
        &format!("ben-{}@example.com", Uuid::new_v4().simple()),
        false,
    )
    .await;
    crate::world::member(
        &app,
        w.a,
        colleague,
        shared::auth::TenantRole::CustomerAdmin,
    )
    .await;
    let res = admin
        .post(
            &path(w.a, &id, "/assign"),
            json!({ "assignee_id": colleague }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["owner"], "person");
    let removed = admin
        .call(
            Method::DELETE,
            &format!("/api/tenants/{}/members/{colleague}", w.a),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let after = only_conversation(&admin, w.a, slack.agent).await;
    assert_eq!(after["owner"], "queue", "{after}");
    assert_eq!(after["assignee_id"], Value::Null);
    // Snoozing needs a time in the future.
    let res = admin
        .post(&path(w.a, &id, "/status"), json!({ "status": "snoozed" }))
        .await;
    assert_eq!(res.fields(), ["snoozed_until"]);
    let until = chrono::Utc::now() + chrono::TimeDelta::hours(2);
    let res = admin
        .post(
            &path(w.a, &id, "/status"),
            json!({ "status": "snoozed", "snoozed_until": until }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "snoozed");
    let res = admin
        .post(&path(w.a, &id, "/status"), json!({ "status": "resolved" }))
        .await;
    assert_eq!(res.body["status"], "resolved");
}

#[actix_rt::test]
async fn a_persons_reply_reaches_whatsapp_in_the_window_and_is_refused_clearly_outside_it() {
    let settings = EngineSettings::default();
    let clock = settings.clock.clone();
    let app = app_with(settings).await;
    let w = World::new(&app).await;
    let admin = client(&app, w.admin_a).await;
    let line = crate::whatsapp::connect(&app, w.admin_a, w.a, "Nia").await;
    let mut events = app.events();
    app.whatsapp
        .deliver(
            &app.whatsapp
                .inbound(&line.number.phone_number_id)
                .text("15550100007", "Ana", "where is my parcel?")
                .build(),
        )
        .await;
    events.finished(w.a, 1).await;
    let answered = app.whatsapp.messages().len();
    let id = only_conversation(&admin, w.a, line.agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = admin
        .post(
            &path(w.a, &id, "/replies"),
            json!({ "text": "A person here: it ships today." }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    let sent = loop {
        let sent = app.whatsapp.messages();
        if sent.iter().any(|s| matches!(&s.kind, e2e::whatsapp::SentKind::Text { body } if body == "A person here: it ships today.")) {
            break sent;
        }
        assert!(
            Instant::now() < deadline,
            "the reply never reached WhatsApp: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(sent.len() > answered);
    let ours = sent
        .iter()
        .find(|s| matches!(&s.kind, e2e::whatsapp::SentKind::Text { body } if body == "A person here: it ships today."))
        .unwrap();
    assert_eq!(ours.to, "15550100007");
    assert_eq!(ours.phone_number_id, line.number.phone_number_id);
    assert_eq!(ours.token, line.number.token);

    // A day later the window is closed and the number has no template: refused, in words.
    clock.advance(chrono::TimeDelta::hours(25));
    let detail = admin.get(&path(w.a, &id, "")).await;
    assert_eq!(detail.body["reply"]["can_reply"], false);
    let refused = admin
        .post(
            &path(w.a, &id, "/replies"),
            json!({ "text": "still there?" }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("24 hours")
    );
}

#[actix_rt::test]
async fn a_person_replies_in_the_test_chat() {
    let app = app_with(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let agent = crate::world::agent(&app, w.a, "Nia").await;
    let admin = client(&app, w.admin_a).await;
    let mut events = app.events();
    let sent = admin
        .post(
            &format!("/api/tenants/{}/agents/{agent}/messages", w.a),
            json!({ "text": "hello", "conversation": "web-inbox-1" }),
        )
        .await;
    assert!(sent.status.is_success(), "{}", sent.body);
    events.finished(w.a, 1).await;
    let id = only_conversation(&admin, w.a, agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = admin
        .post(
            &path(w.a, &id, "/replies"),
            json!({ "text": "A person answers in the chat." }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let chat = admin
            .get(&format!(
                "/api/tenants/{}/agents/{agent}/messages?conversation=web-inbox-1",
                w.a
            ))
            .await;
        if chat
            .body
            .to_string()
            .contains("A person answers in the chat.")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{}", chat.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads server-sent events from a live response until one named `name` (returns its data),
/// or the stream ends (`None`).
async fn next_event(res: &mut reqwest::Response, buffer: &mut String, name: &str) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut event = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if event.as_deref() == Some(name) {
                return Some(serde_json::from_str(&data).unwrap_or(Value::Null));
            }
        }
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event arrived"))
            .unwrap();
        match chunk {
            Some(bytes) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            None => return None,
        }
    }
}

#[actix_rt::test]
async fn the_live_stream_announces_hand_offs_and_ends_when_its_member_loses_access() {
    let app = app_with(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let admin = client(&app, w.admin_a).await;
    human_rule(&app, &admin, w.a, slack.agent).await;
    let operator_token = app.token_for(w.operator_a, None).await;
    let mut stream = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/inbox/events", w.a),
            Some(&operator_token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut buffer = String::new();
    let counts = next_event(&mut stream, &mut buffer, "counts")
        .await
        .unwrap();
    assert_eq!(counts["queue"], 0);

    deliver_mention(
        &app,
        &slack,
        "EvLive",
        "I want to talk to a human",
        "1700000600.000100",
    )
    .await;
    let handoff = next_event(&mut stream, &mut buffer, "handoff")
        .await
        .unwrap();
    assert_eq!(handoff["owner"], "queue");
    assert_eq!(handoff["counts"]["queue"], 1);

    // Another tenant's admin cannot open A's stream.
    let other = app.token_for(w.admin_b, None).await;
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/inbox/events", w.a),
            Some(&other),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // The operator is removed from the tenant: their stream says so and closes.
    let res = admin
        .call(
            Method::DELETE,
            &format!("/api/tenants/{}/members/{}", w.a, w.operator_a),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let end = next_event(&mut stream, &mut buffer, "end").await.unwrap();
    assert_eq!(end["reason"], "access");
    assert!(
        next_event(&mut stream, &mut buffer, "never")
            .await
            .is_none()
    );
}

#[actix_rt::test]
async fn members_who_opted_in_are_mailed_and_the_tenants_slack_channel_hears_of_a_hand_off() {
    let app = app_with(EngineSettings::default()).await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let admin = client(&app, w.admin_a).await;
    let operator = client(&app, w.operator_a).await;
    human_rule(&app, &admin, w.a, slack.agent).await;
    let me = operator
        .put(
            &format!("/api/tenants/{}/me/notifications", w.a),
            json!({ "email_handoffs": true }),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    // Operators may not change the tenant's hand-off settings; admins may, and bad ones are
    // refused in words.
    let res = operator
        .put(
            &format!("/api/tenants/{}/settings/handoff", w.a),
            json!({ "business_hours": null, "slack_channel": "CHANDOFFS" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = admin
        .put(
            &format!("/api/tenants/{}/settings/handoff", w.a),
            json!({ "business_hours": { "days": [1], "opens": "17:00", "closes": "09:00", "response_minutes": 30 },
                    "slack_channel": "#general" }),
        )
        .await;
    assert_eq!(res.fields(), ["business_hours", "slack_channel"]);
    let res = admin
        .put(
            &format!("/api/tenants/{}/settings/handoff", w.a),
            json!({ "business_hours": null, "slack_channel": "CHANDOFFS" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    app.config_applied(w.a).await;

    let operator_email = runtime::store::users::get(&app.store, w.operator_a)
        .await
        .unwrap()
        .unwrap()
        .email;
    let admin_email = runtime::store::users::get(&app.store, w.admin_a)
        .await
        .unwrap()
        .unwrap()
        .email;
    deliver_mention(
        &app,
        &slack,
        "EvMail",
        "please let me speak to a person about MAIL-CANARY",
        "1700000700.000100",
    )
    .await;
    let mails = crate::mailbox::wait_for(&operator_email, 1).await;
    assert!(
        mails[0].subject.contains("Nia handed a slack conversation"),
        "{}",
        mails[0].subject
    );
    assert!(
        mails[0]
            .text
            .contains("https://konstruct.example.test/inbox/"),
        "{}",
        mails[0].text
    );
    assert!(
        !mails[0].text.contains("MAIL-CANARY"),
        "no customer words in mail"
    );
    // The job says what it did (counts only) once it is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let notified = loop {
        if let Some((_, d)) = audit_actions(&app, w.a)
            .await
            .into_iter()
            .find(|(a, _)| a == "handoff.notified")
        {
            break d;
        }
        assert!(Instant::now() < deadline, "the hand-off was never notified");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(notified["mailed"], 1, "{notified}");
    assert_eq!(notified["slack"], true, "{notified}");
    // The channel post: a message of its own in the chosen channel.
    let deadline = Instant::now() + Duration::from_secs(20);
    let post = loop {
        if let Some(p) = app
            .slack
            .posted()
            .into_iter()
            .find(|p| p.channel == "CHANDOFFS")
        {
            break p;
        }
        assert!(Instant::now() < deadline, "{:?}", app.slack.posted());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(post.thread_ts, None);
    assert!(post.text.contains("/inbox/"));
    assert!(!post.text.contains("MAIL-CANARY"));
    // The admin did not opt in.
    assert!(crate::mailbox::mails_to(&admin_email).await.is_empty());
}
