//! Outages and floods: a channel's API down for minutes loses nothing, answers once and in
//! order and holds nobody else up; a flood of over-limit messages leaves Redis and the audit
//! trail as they were, give or take a stated bound.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runtime::engine::ingest::IngestSettings;
use runtime::engine::limiter::Limit;
use runtime::engine::turn::EngineSettings;
use serde_json::json;
use shared::TenantId;
use shared::channel::{ChannelKind, InboundMessage, ReplyTarget, Sender};

use crate::pipeline::{send, wait_for};
use crate::slack::{callback, deliver, install, wait_posted_within};
use crate::support::{AppOptions, TestApp};
use crate::world::{self, World};

/// How long the fake Slack refuses every connection.
const OUTAGE: Duration = Duration::from_secs(120);

#[actix_rt::test]
async fn a_two_minute_slack_outage_loses_nothing_answers_once_in_order_and_blocks_no_one_else() {
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        // Retries back off to at most 5 s, so the test ends soon after Slack is back.
        ingest: Some(IngestSettings {
            retry_max_delay: Duration::from_secs(5),
            ..IngestSettings::default()
        }),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let web_agent = world::agent(&app, w.b, "Bo").await;
    let admin_b = app.token_for(w.admin_b, None).await;

    app.slack.go_down().await;
    let down_at = Instant::now();
    // Load during the outage: 5 threads in 5 channels, 6 messages each, one every second.
    let (threads, per_thread) = (5, 6);
    for j in 0..per_thread {
        for i in 0..threads {
            let event = json!({
                "type": "app_mention", "user": "UCUSTOMER", "channel": format!("C{i}"),
                "text": format!("<@{}> t{i} m{j}", slack.bot),
                "ts": format!("1700000100.{:06}", i * 100 + j),
                "thread_ts": format!("1700000100.{:06}", i * 100),
            });
            let res = deliver(
                &app,
                &callback(&slack.team, &format!("EvOut{i}-{j}"), event),
                None,
            )
            .await;
            assert_eq!(res.status(), StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Meanwhile another tenant's test chat is answered as usual.
    for k in 0..3 {
        let text = format!("still there? {k}");
        send(&app, &admin_b, w.b, web_agent, Some("web"), &text).await;
        let got = wait_for(&app, &admin_b, w.b, web_agent, "web", 2 * (k + 1)).await;
        assert_eq!(got[2 * k + 1].text, format!("echo: {text}"));
    }
    assert!(
        down_at.elapsed() < OUTAGE,
        "the other tenant was answered during the outage"
    );
    assert!(app.slack.posted().is_empty());
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    app.slack.come_up().unwrap();

    let total = threads * per_thread;
    let posted = wait_posted_within(&app, total, Duration::from_secs(120)).await;
    // Finished: nothing parked or pending any more, so nothing else can be posted.
    let probe = InboundMessage {
        tenant_id: w.a,
        channel: ChannelKind::Slack,
        connection_id: slack.connection,
        agent_id: Some(slack.agent),
        reply_to: ReplyTarget::Web {
            conversation: String::new(),
        },
        provider_event_id: String::new(),
        sender: Sender {
            id: String::new(),
            display_name: None,
        },
        text: String::new(),
        attachments: Vec::new(),
        unsupported: None,
        received_at: chrono::Utc::now(),
        origin: shared::channel::Origin::Customer,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.ingest.parked_len(&probe).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "still parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let posted_final = app.slack.posted();
    assert_eq!(posted_final.len(), total, "each message answered once");
    assert_eq!(posted.len(), total);
    let mut by_thread: HashMap<String, Vec<String>> = HashMap::new();
    for p in &posted_final {
        by_thread
            .entry(format!(
                "{}:{}",
                p.channel,
                p.thread_ts.clone().unwrap_or_default()
            ))
            .or_default()
            .push(p.text.clone());
    }
    assert_eq!(by_thread.len(), threads);
    for i in 0..threads {
        let texts = &by_thread[&format!("C{i}:1700000100.{:06}", i * 100)];
        let expected: Vec<String> = (0..per_thread)
            .map(|j| format!("echo: t{i} m{j}"))
            .collect();
        assert_eq!(texts, &expected, "thread {i} answered in order");
    }
    // Every message asked the LLM once: retries sent what was recorded.
    assert_eq!(app.llm.calls(), total + 3);
}

/// Key count and bytes (MEMORY USAGE) of every key under the app's prefix.
/// What this server keeps in Redis: every key and its bytes, and of those the conversation
/// states (each bounded by its memory window's budget).
#[derive(Debug, Clone, Copy)]
struct Footprint {
    keys: u64,
    bytes: u64,
    state_keys: u64,
    state_bytes: u64,
    /// The largest single conversation state.
    largest_state: u64,
}

async fn redis_footprint(app: &TestApp) -> Footprint {
    const SCRIPT: &str = "local res = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[1], 'COUNT', 1000) \
        local keys, bytes, skeys, sbytes, largest = 0, 0, 0, 0, 0 \
        for _, k in ipairs(res[2]) do \
          local b = redis.call('MEMORY', 'USAGE', k) or 0 \
          keys = keys + 1 \
          bytes = bytes + b \
          if string.find(k, ':conversation:', 1, true) then \
            skeys = skeys + 1 \
            sbytes = sbytes + b \
            if b > largest then largest = b end \
          end \
        end \
        return {res[1], keys, bytes, skeys, sbytes, largest}";
    let pattern = app.redis.key("*");
    let mut cursor = "0".to_string();
    let mut f = Footprint {
        keys: 0,
        bytes: 0,
        state_keys: 0,
        state_bytes: 0,
        largest_state: 0,
    };
    loop {
        let (next, k, b, sk, sb, largest): (String, i64, i64, i64, i64, i64) = app
            .redis
            .eval(SCRIPT, vec![], vec![pattern.clone(), cursor])
            .await
            .unwrap();
        f.keys += k as u64;
        f.bytes += b as u64;
        f.state_keys += sk as u64;
        f.state_bytes += sb as u64;
        f.largest_state = f.largest_state.max(largest as u64);
        if next == "0" {
            return f;
        }
        cursor = next;
    }
}

async fn audit_count(app: &TestApp, tenant: TenantId) -> usize {
    app.audit_actions(tenant).await.len()
}

async fn inbound_count(app: &TestApp, tenant: TenantId) -> i64 {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE direction = 'inbound'")
        .fetch_one(tx.connection())
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_flood_of_over_limit_messages_leaves_redis_and_the_audit_trail_within_bounds() {
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings {
            tenant_limit: Limit {
                per_minute: 60,
                burst: 5,
            },
            ..EngineSettings::default()
        }),
        // Dedupe keys expire quickly here, so the test sees the key space return to its start.
        ingest: Some(IngestSettings {
            dedupe_ttl_secs: 2,
            ..IngestSettings::default()
        }),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    // One ordinary turn first, so the engine's own keys (leases, streams, groups) exist.
    send(&app, &admin, w.a, agent, Some("warm"), "hello").await;
    wait_for(&app, &admin, w.a, agent, "warm", 2).await;
    let connection: shared::ConnectionId = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        runtime::store::conversations::web_connection(&mut tx, agent)
            .await
            .unwrap()
            .unwrap()
    };
    let before = redis_footprint(&app).await;
    let audit_before = audit_count(&app, w.a).await;
    let inbound_before = inbound_count(&app, w.a).await;

    // The flood: 10,000 messages in 20 conversations, as fast as the queue takes them.
    let flood = 10_000;
    let flood_started = Instant::now();
    for i in 0..flood {
        let m = InboundMessage {
            tenant_id: w.a,
            channel: ChannelKind::Web,
            connection_id: connection,
            agent_id: Some(agent),
            reply_to: ReplyTarget::Web {
                conversation: format!("flood-{}", i % 20),
            },
            provider_event_id: format!("flood-{i}"),
            sender: Sender {
                id: "flooder".into(),
                display_name: None,
            },
            text: format!("spam {i}"),
            attachments: Vec::new(),
            unsupported: None,
            received_at: chrono::Utc::now(),
            origin: shared::channel::Origin::Customer,
        };
        app.ingest.enqueue(&m).await.unwrap();
    }
    // Every message handled (recorded) and acknowledged.
    let partition = app.ingest.partition_of(w.a);
    let stream = app.ingest.stream(partition);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let recorded = inbound_count(&app, w.a).await - inbound_before;
        let pending: i64 = app
            .redis
            .eval(
                "return redis.call('XPENDING', KEYS[1], 'engine')[1]",
                vec![stream.clone()],
                vec![],
            )
            .await
            .unwrap();
        if recorded == flood && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{recorded} of {flood} handled, {pending} pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // How long the limit was refilling while the flood ran: what it may have let through.
    let flood_secs = flood_started.elapsed().as_secs_f64().ceil() as usize;
    // Acknowledged entries are trimmed, dedupe keys expire: wait for the key space to settle.
    // What stays is at most one conversation state per flooded conversation (each bounded by its
    // window), and nothing else beyond a little bookkeeping.
    let other = |f: &Footprint| (f.keys - f.state_keys, f.bytes - f.state_bytes);
    let (other_keys_before, other_bytes_before) = other(&before);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let f = redis_footprint(&app).await;
        let (keys, bytes) = other(&f);
        let stream_len = app.redis.stream_len(&stream).await.unwrap();
        if keys <= other_keys_before && bytes <= other_bytes_before + 64 * 1024 && stream_len <= 1 {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "Redis did not return within bounds: {f:?} (before: {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        after.state_keys <= before.state_keys + 20,
        "one state per flooded conversation at most: {after:?}"
    );
    // A window holds at most its budget (7,500 tokens, about 30 KB of text).
    assert!(after.largest_state <= 48 * 1024, "{after:?}");
    let stream_len = app.redis.stream_len(&stream).await.unwrap();
    assert!(stream_len <= 1, "{stream_len} entries left in the stream");

    // The audit trail grew by the answered turns' own events and one record per rate-limit
    // window, not a row per rejected message.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let added: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT action, details FROM audit_events ORDER BY seq OFFSET $1")
            .bind(audit_before as i64)
            .fetch_all(tx.connection())
            .await
            .unwrap();
    drop(tx);
    let answered = added.iter().filter(|(a, _)| a == "llm.call").count();
    let rejected: u64 = added
        .iter()
        .filter(|(a, _)| a == "message.rate_limited")
        .map(|(_, d)| d["rejected"].as_u64().unwrap())
        .sum();
    let windows = added
        .iter()
        .filter(|(a, _)| a == "message.rate_limited")
        .count();
    let notices = added
        .iter()
        .filter(|(a, _)| a == "reply.notice_sent")
        .count();
    // The limit (a burst of 5, then one a second) let through no more than it refilled.
    assert!(
        (1..=5 + flood_secs + 1).contains(&answered),
        "{answered} answered in {flood_secs} s"
    );
    assert_eq!(
        answered as u64 + rejected,
        flood as u64,
        "every rejection counted"
    );
    // One record per window (a window lasts at least a second), not one per message.
    assert!(
        windows <= flood_secs + 1,
        "{windows} rate-limit records for a {flood_secs} s flood"
    );
    assert_eq!(added.len(), answered + windows + notices, "{added:?}");
    assert!(notices <= windows + 1);
}

#[actix_rt::test]
async fn deleting_a_tenant_removes_its_redis_keys() {
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        jobs: Some((
            runtime::jobs::RunnerSettings::default(),
            runtime::jobs::Registry::builtin().unwrap(),
        )),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = app.token_for(w.admin_a, None).await;
    send(&app, &admin, w.a, agent, Some("c1"), "remember me").await;
    wait_for(&app, &admin, w.a, agent, "c1", 2).await;
    let b_agent = world::agent(&app, w.b, "Bo").await;
    let admin_b = app.token_for(w.admin_b, None).await;
    send(&app, &admin_b, w.b, b_agent, Some("c1"), "and me").await;
    wait_for(&app, &admin_b, w.b, b_agent, "c1", 2).await;
    let count = |tenant: TenantId| {
        let pattern = app.redis.key(&format!("{tenant}:*"));
        let redis = app.redis.clone();
        async move {
            let n: i64 = redis
                .eval("return #redis.call('KEYS', ARGV[1])", vec![], vec![pattern])
                .await
                .unwrap();
            n
        }
    };
    assert!(count(w.a).await > 0, "the conversation's state is in Redis");
    let b_before = count(w.b).await;
    let platform = app.token_for(w.platform, None).await;
    let slug: String = app
        .get_json::<serde_json::Value>(&format!("/api/tenants/{}", w.a), &platform)
        .await["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}?confirm={slug}", w.a),
            Some(&platform),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // The purge is a job, committed with the deletion and run by the runner at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(w.a).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the tenant's keys were never deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(w.b).await, b_before, "the other tenant's keys stay");
}
