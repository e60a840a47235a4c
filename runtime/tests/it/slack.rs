//! Slack end to end: signed Events API deliveries in, through the pipeline, replies posted into the
//! thread on the fake Slack Web API with the installation's own bot token.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runtime::engine::turn::EngineSettings;
use serde_json::{Value, json};
use shared::TenantId;
use uuid::Uuid;

use crate::support::{AppOptions, SLACK_SIGNING_SECRET, TestApp};
use crate::world::{self, World};

async fn engine_app() -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        ..AppOptions::default()
    })
    .await
}

/// One installed workspace.
pub(crate) struct Install {
    pub team: String,
    pub token: String,
    pub bot: String,
    pub agent: shared::AgentId,
    pub connection: shared::ConnectionId,
}

/// Registers a Slack installation through the API as the tenant's admin.
pub(crate) async fn install(
    app: &TestApp,
    admin: Uuid,
    tenant: TenantId,
    agent_name: &str,
) -> Install {
    let agent = world::agent(app, tenant, agent_name).await;
    let tag = Uuid::new_v4().simple().to_string().to_uppercase();
    let team = format!("T{}", &tag[..10]);
    let bot = format!("U{}", &tag[10..20]);
    let token = format!("xoxb-{}-{}", &tag[..12], &tag[12..]);
    app.slack.install(&token, &team, &bot);
    let admin_token = app.token_for(admin, None).await;
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/channels/slack"),
            Some(&admin_token),
        )
        .json(&json!({
            "team_id": team, "team_name": "Acme", "bot_user_id": bot, "bot_token": token,
            "scopes": ["app_mentions:read", "chat:write", "im:history", "files:read"],
            "agent_id": agent,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert!(
        !body.to_string().contains(&token),
        "the token is never shown"
    );
    assert_eq!(
        body["token_hint"],
        format!("…{}", &token[token.len() - 4..])
    );
    Install {
        team,
        token,
        bot,
        agent,
        connection: body["id"].as_str().unwrap().parse().unwrap(),
    }
}

pub(crate) fn callback(team: &str, event_id: &str, event: Value) -> Value {
    json!({
        "token": "deprecated-verification-token",
        "team_id": team,
        "api_app_id": e2e::slack::APP_ID,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_000,
        "authorizations": [{ "team_id": team, "is_bot": true }],
        "event": event,
    })
}

fn mention(bot: &str, text: &str, ts: &str) -> Value {
    json!({
        "type": "app_mention", "user": "UCUSTOMER", "channel": "CSUPPORT",
        "text": format!("<@{bot}> {text}"), "ts": ts, "event_ts": ts,
    })
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Posts a delivery signed as Slack would sign it.
pub(crate) async fn deliver(app: &TestApp, body: &Value, retry: Option<u32>) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    deliver_raw(app, &raw, &now_secs().to_string(), None, retry).await
}

/// Delivers a signed @mention of the installation's bot, as Slack would.
pub(crate) async fn deliver_mention(
    app: &TestApp,
    install: &Install,
    event_id: &str,
    text: &str,
    ts: &str,
) -> reqwest::Response {
    deliver(
        app,
        &callback(&install.team, event_id, mention(&install.bot, text, ts)),
        None,
    )
    .await
}

async fn deliver_raw(
    app: &TestApp,
    raw: &[u8],
    timestamp: &str,
    signature: Option<String>,
    retry: Option<u32>,
) -> reqwest::Response {
    let signature =
        signature.unwrap_or_else(|| e2e::slack::sign(SLACK_SIGNING_SECRET, timestamp, raw));
    let mut req = app
        .http
        .post(app.url("/webhooks/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", signature)
        .body(raw.to_vec());
    if let Some(n) = retry {
        req = req
            .header("x-slack-retry-num", n.to_string())
            .header("x-slack-retry-reason", "http_timeout");
    }
    req.send().await.unwrap()
}

pub(crate) async fn wait_posted(app: &TestApp, count: usize) -> Vec<e2e::slack::Posted> {
    wait_posted_within(app, count, Duration::from_secs(15)).await
}

pub(crate) async fn wait_posted_within(
    app: &TestApp,
    count: usize,
    within: Duration,
) -> Vec<e2e::slack::Posted> {
    let deadline = Instant::now() + within;
    loop {
        let posted = app.slack.posted();
        if posted.len() >= count {
            return posted;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} replies posted",
            posted.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn system_prompt(app: &TestApp, nth: usize) -> String {
    let calls: Vec<_> = app
        .llm
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .collect();
    calls[nth].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[actix_rt::test]
#[expect(
    clippy::print_stdout,
    reason = "the test reports the latency it measured"
)]
async fn a_mention_is_answered_once_in_its_thread_with_the_installations_token() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let mut events = app.events();
    let started = Instant::now();
    let res = deliver_mention(
        &app,
        &slack,
        "Ev001",
        "where is my order?",
        "1700000000.000100",
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let acknowledged = started.elapsed();
    let posted = wait_posted(&app, 1).await;
    let latency = posted[0].at - started;
    println!(
        "slack: acknowledged in {:.1} ms, reply posted {:.1} ms after the event was sent",
        acknowledged.as_secs_f64() * 1000.0,
        latency.as_secs_f64() * 1000.0
    );
    assert_eq!(posted[0].token, slack.token);
    assert_eq!(posted[0].channel, "CSUPPORT");
    assert_eq!(posted[0].thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(
        posted[0].text, "echo: where is my order?",
        "mention stripped"
    );
    let system = system_prompt(&app, 0);
    assert!(system.contains("You are Nia, Support."), "{system}");
    assert!(system.contains("Kind"), "persona in the prompt: {system}");
    assert!(system.contains("in Slack"), "{system}");
    // The entry is done (its reply posted and marked, then acknowledged): nothing more can come.
    events.finished(w.a, 1).await;
    assert_eq!(app.slack.posted().len(), 1, "exactly one reply");
    let _ = slack.agent;
}

#[actix_rt::test]
async fn a_direct_message_and_a_message_inside_a_thread_reply_into_their_threads() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let dm = json!({
        "type": "message", "channel_type": "im", "user": "UCUSTOMER", "channel": "DCUSTOMER",
        "text": "hi there", "ts": "1700000001.000200",
    });
    deliver(&app, &callback(&slack.team, "EvDM1", dm), None).await;
    let posted = wait_posted(&app, 1).await;
    assert_eq!(posted[0].channel, "DCUSTOMER");
    assert_eq!(posted[0].thread_ts.as_deref(), Some("1700000001.000200"));
    assert_eq!(posted[0].text, "echo: hi there");

    let mut in_thread = mention(&slack.bot, "and the invoice?", "1700000002.000300");
    in_thread["thread_ts"] = json!("1700000000.000100");
    deliver(&app, &callback(&slack.team, "EvThread1", in_thread), None).await;
    let posted = wait_posted(&app, 2).await;
    assert_eq!(posted[1].thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(posted[1].text, "echo: and the invoice?");
}

#[actix_rt::test]
async fn unsigned_altered_or_stale_deliveries_are_refused_and_nothing_is_queued() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let body = callback(
        &slack.team,
        "EvBad",
        mention(&slack.bot, "hello", "1700000000.000100"),
    );
    let raw = serde_json::to_vec(&body).unwrap();
    let ts = now_secs().to_string();

    // No headers at all.
    let res = app
        .http
        .post(app.url("/webhooks/slack/events"))
        .header("content-type", "application/json")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let error: Value = res.json().await.unwrap();
    assert_eq!(error["code"], "unauthenticated");
    // Signed with another secret.
    let wrong = e2e::slack::sign("not-the-signing-secret", &ts, &raw);
    let res = deliver_raw(&app, &raw, &ts, Some(wrong), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Altered after signing (one byte of whitespace).
    let signature = e2e::slack::sign(SLACK_SIGNING_SECRET, &ts, &raw);
    let mut altered = raw.clone();
    altered.push(b' ');
    let res = deliver_raw(&app, &altered, &ts, Some(signature), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Correctly signed, but six minutes old (a replay).
    let old = (now_secs() - 360).to_string();
    let res = deliver_raw(&app, &raw, &old, None, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Refused before anything is queued, so nothing can reach the pipeline later.
    assert_eq!(app.queued().await, 0);
    assert!(app.slack.posted().is_empty());
    assert_eq!(app.llm.calls(), 0, "nothing reached the pipeline");
    let (redis, _task) = runtime::redis::Redis::connect(&runtime::config::RedisSettings {
        url: runtime::config::Secret::new(crate::support::redis_url()),
        key_prefix: "unused".into(),
    })
    .unwrap();
    for partition in 0..app.ingest.partitions() {
        let len = redis
            .stream_len(&app.ingest.stream(partition))
            .await
            .unwrap();
        assert_eq!(len, 0, "partition {partition} holds nothing");
    }

    // URL verification, signed like everything else, is answered with the challenge.
    let res = deliver(
        &app,
        &json!({ "token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification" }),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[actix_rt::test]
async fn slack_retries_of_one_event_get_one_reply() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let mut events = app.events();
    let body = callback(
        &slack.team,
        "EvRetry",
        mention(&slack.bot, "once please", "1700000000.000100"),
    );
    for retry in [None, Some(1), Some(2)] {
        let res = deliver(&app, &body, retry).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The retries were recognised at the door: one entry queued, handled once.
    assert_eq!(app.queued().await, 1);
    events.finished(w.a, 1).await;
    assert_eq!(app.slack.posted().len(), 1);
    assert_eq!(app.llm.calls(), 1);
}

#[actix_rt::test]
async fn the_apps_own_messages_edits_and_unknown_workspaces_get_no_reply() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let own = json!({
        "type": "message", "channel_type": "im", "user": slack.bot, "channel": "DCUSTOMER",
        "text": "echo: hi", "ts": "1700000003.000100",
    });
    let bot = json!({
        "type": "message", "channel_type": "im", "bot_id": "B0OTHER", "user": "UOTHERBOT",
        "channel": "DCUSTOMER", "text": "beep", "ts": "1700000003.000200",
    });
    let edited = json!({
        "type": "message", "subtype": "message_changed", "channel_type": "im",
        "channel": "DCUSTOMER", "ts": "1700000003.000300",
        "message": { "user": "UCUSTOMER", "text": "edited" },
    });
    for (i, event) in [own, bot, edited].into_iter().enumerate() {
        let res = deliver(
            &app,
            &callback(&slack.team, &format!("EvSkip{i}"), event),
            None,
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "acknowledged all the same");
    }
    // A workspace no tenant installed: acknowledged so Slack stops retrying, not processed.
    let res = deliver(
        &app,
        &callback(
            "T0NOBODY00",
            "EvUnknown",
            mention("U0NOBODY", "hello?", "1700000004.000100"),
        ),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // None of them was queued, so none can be answered later.
    assert_eq!(app.queued().await, 0);
    assert!(app.slack.posted().is_empty());
    assert_eq!(app.llm.calls(), 0);
}

#[actix_rt::test]
async fn each_workspace_is_answered_by_its_own_tenants_agent_with_its_own_token() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let a = install(&app, w.admin_a, w.a, "Nia").await;
    let b = install(&app, w.admin_b, w.b, "Bo").await;
    deliver_mention(&app, &a, "EvA", "from A", "1700000005.000100").await;
    wait_posted(&app, 1).await;
    deliver_mention(&app, &b, "EvB", "from B", "1700000006.000100").await;
    let posted = wait_posted(&app, 2).await;
    assert_eq!(
        (posted[0].token.as_str(), posted[0].text.as_str()),
        (a.token.as_str(), "echo: from A")
    );
    assert_eq!(
        (posted[1].token.as_str(), posted[1].text.as_str()),
        (b.token.as_str(), "echo: from B")
    );
    assert!(system_prompt(&app, 0).contains("You are Nia"));
    assert!(system_prompt(&app, 1).contains("You are Bo"));
    // Each tenant's conversation lives in its own tenant.
    for (tenant, install) in [(w.a, &a), (w.b, &b)] {
        let mut tx = app.store.tenant_tx(tenant).await.unwrap();
        let connections: Vec<shared::ConnectionId> =
            sqlx::query_scalar("SELECT DISTINCT channel_connection_id FROM conversations")
                .fetch_all(tx.connection())
                .await
                .unwrap();
        assert!(connections.contains(&install.connection), "{connections:?}");
    }
}

#[actix_rt::test]
async fn a_reply_slack_rate_limits_is_delivered_once_after_retry_after() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    app.slack.script([e2e::slack::Behavior::RateLimited(1)]);
    let mut events = app.events();
    let started = Instant::now();
    deliver_mention(&app, &slack, "Ev429", "busy?", "1700000007.000100").await;
    let posted = wait_posted(&app, 1).await;
    assert!(
        posted[0].at - started >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    // Parked after the 429, then done: every way it left the engine, and then nothing more.
    let outcomes: Vec<_> = events
        .finished(w.a, 2)
        .await
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        outcomes,
        [
            runtime::engine::turn::Outcome::Parked,
            runtime::engine::turn::Outcome::Done
        ]
    );
    assert_eq!(app.slack.posted().len(), 1, "delivered once");
    let statuses: Vec<u16> = app.slack.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200]);
}

/// The reply rows recorded for an event: (part, status, provider message id).
async fn reply_rows(
    app: &TestApp,
    tenant: TenantId,
    event: &str,
) -> Vec<(i16, String, Option<String>)> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_as(
        "SELECT part, status, provider_message_id FROM messages WHERE reply_to = $1 ORDER BY part",
    )
    .bind(event)
    .fetch_all(tx.connection())
    .await
    .unwrap()
}

#[actix_rt::test]
async fn a_passing_slack_refusal_is_retried_and_the_reply_is_sent_once_without_asking_again() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    app.slack
        .script([e2e::slack::Behavior::Refuse("service_unavailable".into())]);
    deliver_mention(&app, &slack, "EvRefused", "hello", "1700000008.000100").await;
    let posted = wait_posted(&app, 1).await;
    assert_eq!(posted[0].text, "echo: hello");
    let statuses: Vec<bool> = app
        .slack
        .calls()
        .iter()
        .map(|c| c.body["text"] == "echo: hello")
        .collect();
    assert_eq!(statuses, [true, true], "refused once, then posted");
    assert_eq!(app.llm.calls(), 1, "the retry sent the recorded reply");
    // Marked sent once the post succeeded (the mark follows the post).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = reply_rows(&app, w.a, "EvRefused").await;
        if rows.iter().all(|(_, status, _)| status == "sent") && rows.len() == 1 {
            assert!(rows[0].2.is_some(), "Slack's message ts is kept: {rows:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never marked sent: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_permanent_slack_refusal_dead_letters_the_message_at_once_with_an_audit_record() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    app.slack
        .script([e2e::slack::Behavior::Refuse("channel_not_found".into())]);
    deliver_mention(&app, &slack, "EvGone", "hello", "1700000009.000100").await;
    let dead = app.ingest.dead_letter_stream();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.redis.stream_len(&dead).await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.slack.calls().len(), 1, "not retried");
    assert!(app.slack.posted().is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app
        .audit_actions(w.a)
        .await
        .contains(&"message.dead_lettered".to_string())
    {
        assert!(Instant::now() < deadline, "no audit record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = reply_rows(&app, w.a, "EvGone").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "pending", "recorded, never marked sent");
}

#[actix_rt::test]
async fn installations_are_validated_owned_by_one_tenant_and_can_be_disconnected() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let admin_a = app.token_for(w.admin_a, None).await;
    let admin_b = app.token_for(w.admin_b, None).await;
    let path_a = format!("/api/tenants/{}/channels/slack", w.a);

    // Bad fields, each named; nothing stored.
    let res = app
        .request(Method::POST, &path_a, Some(&admin_a))
        .json(&json!({
            "team_id": "not-a-team", "bot_user_id": "not-a-user", "bot_token": "xoxp-user-token-123456",
            "agent_id": slack.agent,
        }))
        .send()
        .await
        .unwrap();
    let fields = crate::support::field_errors(res).await;
    assert_eq!(fields, ["team_id", "bot_user_id", "bot_token"]);

    // Another tenant cannot claim the workspace: Slack says whose a token is. A token Slack does
    // not know is refused; a token of another workspace does not match the claimed one.
    let b_agent = world::agent(&app, w.b, "Bo").await;
    let path_b = format!("/api/tenants/{}/channels/slack", w.b);
    let claim = |token: &str| {
        json!({
            "team_id": slack.team, "bot_user_id": slack.bot, "bot_token": token, "agent_id": b_agent,
        })
    };
    let res = app
        .request(Method::POST, &path_b, Some(&admin_b))
        .json(&claim("xoxb-0000-made-up-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::support::field_errors(res).await, ["bot_token"]);
    app.slack
        .install("xoxb-0000-b-own-workspace", "T0BOWNWORK", "U0BOWNBOT");
    let res = app
        .request(Method::POST, &path_b, Some(&admin_b))
        .json(&claim("xoxb-0000-b-own-workspace"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::support::field_errors(res).await,
        ["team_id", "bot_user_id"]
    );
    // Even holding a real token of the same workspace, B meets the existing installation.
    app.slack
        .install("xoxb-0000-second-install", &slack.team, &slack.bot);
    let res = app
        .request(Method::POST, &path_b, Some(&admin_b))
        .json(&claim("xoxb-0000-second-install"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/channels/slack", w.b),
            Some(&admin_b),
        )
        .json(&json!({
            "team_id": "T0BBBBBBB", "bot_user_id": "U0BBBBBBB", "bot_token": "xoxb-0000-another-token",
            "agent_id": slack.agent,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The list shows hints, never tokens; B sees none of A's.
    let list: Value = app.get_json(&path_a, &admin_a).await;
    let teams: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["team_id"].as_str())
        .collect();
    assert!(teams.contains(&slack.team.as_str()), "{list}");
    assert!(!list.to_string().contains(&slack.token));
    let list_b: Value = app
        .get_json(&format!("/api/tenants/{}/channels/slack", w.b), &admin_b)
        .await;
    assert!(!list_b.to_string().contains(&slack.team), "{list_b}");

    // Disconnected: events are acknowledged and dropped; the token is gone from the row.
    let res = app
        .request(
            Method::DELETE,
            &format!("{path_a}/{}", slack.connection),
            Some(&admin_a),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let queued_before = app.queued().await;
    let posted_before = app.slack.posted().len();
    let res = deliver_mention(&app, &slack, "EvAfter", "anyone?", "1700000009.000100").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.queued().await, queued_before, "dropped at the door");
    assert_eq!(app.slack.posted().len(), posted_before);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let (status, sealed): (String, Option<Vec<u8>>) =
        sqlx::query_as("SELECT status, secret_ciphertext FROM channel_connections WHERE id = $1")
            .bind(slack.connection)
            .fetch_one(tx.connection())
            .await
            .unwrap();
    assert_eq!(status, "disabled");
    assert!(sealed.is_none());
    // The workspace is free again for whoever holds its token.
    let res = app
        .request(Method::POST, &path_b, Some(&admin_b))
        .json(&claim("xoxb-0000-second-install"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    drop(tx);
    let actions: Vec<String> = app
        .audit_actions(w.a)
        .await
        .into_iter()
        .filter(|a| a.starts_with("channel."))
        .collect();
    assert_eq!(actions, ["channel.connected", "channel.disconnected"]);
}

#[actix_rt::test]
async fn replies_to_one_channel_are_paced_and_a_rate_limit_notice_lands_in_the_thread() {
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings {
            connection_limit: runtime::engine::limiter::Limit {
                per_minute: 1,
                burst: 2,
            },
            ..EngineSettings::default()
        }),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    for (i, ts) in [
        "1700000010.000100",
        "1700000011.000100",
        "1700000012.000100",
    ]
    .into_iter()
    .enumerate()
    {
        deliver_mention(
            &app,
            &slack,
            &format!("EvPace{i}"),
            &format!("question {i}"),
            ts,
        )
        .await;
    }
    let posted = wait_posted(&app, 3).await;
    // Slack allows about one message a second per channel.
    for pair in posted.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(950),
            "{:?} apart",
            pair[1].at - pair[0].at
        );
    }
    let by_thread = |ts: &str| {
        posted
            .iter()
            .find(|p| p.thread_ts.as_deref() == Some(ts))
            .map(|p| p.text.clone())
            .unwrap_or_default()
    };
    assert_eq!(by_thread("1700000010.000100"), "echo: question 0");
    assert_eq!(by_thread("1700000011.000100"), "echo: question 1");
    assert!(
        by_thread("1700000012.000100").contains("Please wait"),
        "the notice is posted in the thread of the message it answers: {posted:?}"
    );
}

#[actix_rt::test]
async fn a_hand_off_whose_notice_failed_is_completed_by_the_retry() {
    // The hand-off notice is refused once: the escalation and its notice are recorded together
    // (the notice pending), so the retry sends the recorded notice instead of going silent.
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings {
            partition_lease: Duration::from_secs(3),
            ..EngineSettings::default()
        }),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{}/agents/{}", w.a, slack.agent),
            Some(&admin),
        )
        .json(&json!({
            "name": "Nia", "role": "Support",
            "escalation_rules": [{ "trigger": { "kind": "human_requested" }, "handoff_target": "#humans" }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.config_applied(w.a).await;
    app.slack
        .script([e2e::slack::Behavior::Refuse("service_unavailable".into())]);
    deliver_mention(
        &app,
        &slack,
        "EvHandoff",
        "can I talk to a human?",
        "1700000020.000100",
    )
    .await;
    let posted = wait_posted(&app, 1).await;
    assert!(
        posted[0]
            .text
            .contains("passed this conversation to a colleague"),
        "{posted:?}"
    );
    assert_eq!(app.llm.calls(), 0);
    // The escalation was recorded with the pending notice, in one transaction.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, target): (String, Option<String>) = loop {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        let row = sqlx::query_as(
            "SELECT c.owner, e.handoff_target FROM escalations e \
               JOIN conversations c ON c.id = e.conversation_id \
              WHERE c.external_key = 'CSUPPORT:1700000020.000100'",
        )
        .fetch_optional(tx.connection())
        .await
        .unwrap();
        drop(tx);
        if let Some(row) = row {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the escalation was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (status.as_str(), target.as_deref()),
        ("queue", Some("#humans"))
    );
}

#[tokio::test]
async fn events_for_another_slack_app_are_refused_and_nothing_is_queued() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let mut body = callback(
        &slack.team,
        "EvOtherApp",
        mention(&slack.bot, "hello", "1700000001.000100"),
    );
    body["api_app_id"] = json!("A0SOMEONEELSE");
    let res = deliver(&app, &body, None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    body.as_object_mut().unwrap().remove("api_app_id");
    let res = deliver(&app, &body, None).await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "no app named: refused too"
    );
    assert_eq!(app.queued().await, 0);
    // Our own app's event is taken.
    let res = deliver_mention(&app, &slack, "EvOurApp", "hello", "1700000002.000100").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.queued().await, 1);
}

#[tokio::test]
async fn a_workspace_cannot_be_claimed_with_another_apps_bot_token() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    // A real bot token of the right workspace and bot user, but of another company's app.
    app.slack.install_app(
        "xoxb-0000-other-app-token",
        "T0OTHERAPP",
        "U0OTHERBOT",
        "A0OTHERAPP",
    );
    let admin = app.token_for(w.admin_a, None).await;
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/channels/slack", w.a),
            Some(&admin),
        )
        .json(&json!({
            "team_id": "T0OTHERAPP", "bot_user_id": "U0OTHERBOT",
            "bot_token": "xoxb-0000-other-app-token", "agent_id": agent,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::support::field_errors(res).await, ["bot_token"]);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM channel_connections WHERE kind = 'slack'")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    assert_eq!(
        stored, 1,
        "only the fixture's connection; nothing was stored"
    );
    // The same workspace through the platform's own app is accepted, and Slack was asked.
    app.slack
        .install("xoxb-0000-our-app-token", "T0OTHERAPP", "U0OURBOT");
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/channels/slack", w.a),
            Some(&admin),
        )
        .json(&json!({
            "team_id": "T0OTHERAPP", "bot_user_id": "U0OURBOT",
            "bot_token": "xoxb-0000-our-app-token", "agent_id": agent,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(
        app.slack
            .calls_to("bots.info")
            .iter()
            .any(|c| c.body["bot"] == "B0OURBOT"),
        "{:?}",
        app.slack.calls_to("bots.info")
    );
}

/// Waits (polling) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn a_workspace_is_resolved_from_memory_and_every_change_reaches_that_memory() {
    use runtime::store::{Store, channels, tenants};
    use shared::resources::TenantStatus;

    // No engine: what a delivery queued stays queued, to be counted.
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let cache = app.store.channel_cache().clone();
    until("the cache's listener subscribed", || cache.in_use()).await;
    let res = deliver_mention(&app, &slack, "EvMem1", "hello", "1700000101.000100").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.queued().await, 1);
    assert_eq!(cache.len(), 1, "the workspace is remembered");

    // This node suspends the tenant: its very next delivery is dropped at the door.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    tenants::update(&mut tx, None, None, Some(TenantStatus::Suspended))
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let res = deliver_mention(&app, &slack, "EvMem2", "still there?", "1700000102.000100").await;
    assert_eq!(res.status(), StatusCode::OK, "acknowledged");
    assert_eq!(app.queued().await, 1, "not queued for a suspended tenant");
    assert_eq!(cache.len(), 1, "the inactive answer is remembered too");

    // Another node (a store of its own, so only Postgres' notice tells this one) reactivates
    // it, and later disconnects the workspace: each change reaches this node's memory.
    let other = Store::from_pool(sqlx::PgPool::connect(&app.db.app_url()).await.unwrap());
    let mut tx = other.tenant_tx(w.a).await.unwrap();
    tenants::update(&mut tx, None, None, Some(TenantStatus::Active))
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    // The suspended answer was remembered (the tenant's status is part of it); the notice
    // makes this node forget it.
    until("the notice reached the cache", || cache.is_empty()).await;
    let res = deliver_mention(&app, &slack, "EvMem3", "back?", "1700000103.000100").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.queued().await, 2, "answered again once active");
    assert_eq!(cache.len(), 1);

    let mut tx = other.tenant_tx(w.a).await.unwrap();
    channels::disconnect(
        &mut tx,
        slack.connection,
        shared::channel::ChannelKind::Slack,
    )
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    until("the disconnection reached the cache", || cache.is_empty()).await;
    let res = deliver_mention(&app, &slack, "EvMem4", "gone?", "1700000104.000100").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.queued().await,
        2,
        "not queued for a disconnected workspace"
    );
    assert!(cache.is_empty(), "an unknown workspace is never remembered");
}
