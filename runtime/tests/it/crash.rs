//! Crash safety with the real binary: `konstruct serve` (a debug build, which honours
//! `KONSTRUCT_FAILPOINT`) is stopped dead at each step of the reply protocol, SIGKILLed, and
//! started again; and a second node takes a partition over in the middle of a turn. Every message
//! is answered; a second post can only come from the post→mark window, and the test reports how
//! many it saw there.

use std::time::{Duration, Instant};

use e2e::llm::Behavior;
use reqwest::StatusCode;
use serde_json::json;
use shared::TenantId;
use uuid::Uuid;

use crate::fixtures::seed_tenant;
use crate::nodes::{Node, install, mention, queue, scene, wait_log};
use crate::support::TestApp;
use crate::world;

/// Waits until the reply to `event` is recorded and every part marked sent, and the tenant's
/// partition has nothing pending: the entry is acknowledged, so nothing more can be posted.
async fn wait_finished(app: &TestApp, prefix: &str, tenant: TenantId, event: &str) {
    let (ingest, redis) = queue(prefix).await;
    let stream = ingest.stream(ingest.partition_of(tenant));
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut tx = app.store.tenant_tx(tenant).await.unwrap();
        let statuses: Vec<String> =
            sqlx::query_scalar("SELECT status FROM messages WHERE reply_to = $1")
                .bind(event)
                .fetch_all(tx.connection())
                .await
                .unwrap();
        drop(tx);
        let pending: i64 = redis
            .eval(
                "return redis.call('XPENDING', KEYS[1], 'engine')[1]",
                vec![stream.clone()],
                vec![],
            )
            .await
            .unwrap_or(-1);
        if !statuses.is_empty() && statuses.iter().all(|s| s == "sent") && pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not finished: reply {statuses:?}, pending {pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn posts_of(app: &TestApp, text: &str) -> usize {
    app.slack.posted().iter().filter(|p| p.text == text).count()
}

/// Kills the node at `failpoint` mid-turn, restarts it, and returns (posts of the answer, LLM
/// calls) once the message is finished.
async fn crash_at(failpoint: &str) -> (usize, usize) {
    let app = TestApp::spawn().await;
    let prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
    let tenant = seed_tenant(&app.store, "crash").await.tenant;
    let platform = world::user(&app, &format!("p-{}@example.com", Uuid::new_v4()), true).await;
    let token = app.token_for(platform, None).await;

    let first = Node::start(&app, &prefix, Some(failpoint));
    let scene = scene(&app, &first, tenant, &token).await;
    mention(
        &first,
        &scene,
        "EvCrash",
        "Please answer once.",
        "1700000001.000100",
    )
    .await;
    let line = wait_log(&first.log, "failpoint reached", Duration::from_secs(30));
    assert!(line.contains(failpoint), "{line}");
    first.kill();

    let second = Node::start(&app, &prefix, None);
    wait_finished(&app, &prefix, tenant, "EvCrash").await;
    let result = (posts_of(&app, "echo: Please answer once."), app.llm.calls());
    second.kill();
    result
}

#[actix_rt::test]
async fn killed_after_the_llm_answered_the_message_is_answered_once_after_restart() {
    let (posts, llm_calls) = crash_at("after_llm").await;
    assert_eq!(posts, 1);
    assert_eq!(
        llm_calls, 2,
        "nothing was recorded, so the LLM is asked again"
    );
}

#[actix_rt::test]
async fn killed_after_the_reply_was_recorded_it_is_sent_once_without_asking_the_llm_again() {
    let (posts, llm_calls) = crash_at("after_record").await;
    assert_eq!(posts, 1);
    assert_eq!(llm_calls, 1, "the recorded reply was sent");
}

#[actix_rt::test]
#[expect(clippy::print_stdout, reason = "the test reports what it measured")]
async fn killed_between_post_and_mark_the_reply_is_sent_again_once_at_most() {
    let (posts, llm_calls) = crash_at("after_post").await;
    println!("second posts in the post-to-mark window: {}", posts - 1);
    assert_eq!(
        posts, 2,
        "posted before the crash, re-sent after it: the one window the protocol leaves"
    );
    assert_eq!(llm_calls, 1);
}

#[actix_rt::test]
async fn killed_before_the_ack_the_sent_reply_is_only_acknowledged() {
    let (posts, llm_calls) = crash_at("before_ack").await;
    assert_eq!(posts, 1);
    assert_eq!(llm_calls, 1);
}

#[actix_rt::test]
async fn killed_after_a_tool_ran_the_redelivered_turn_neither_runs_it_nor_asks_for_it_again() {
    let app = TestApp::spawn().await;
    let shop = e2e::shop::FakeShop::start("crash-shop-key").unwrap();
    let prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
    let tenant = seed_tenant(&app.store, "crash").await.tenant;
    let platform = world::user(&app, &format!("p-{}@example.com", Uuid::new_v4()), true).await;
    let token = app.token_for(platform, None).await;
    let allow = [("KONSTRUCT_OUTBOUND_ALLOW", shop.host_port.clone())];

    let first = Node::start_with(&app, &prefix, Some("after_tool"), &allow);
    let http = reqwest::Client::new();
    let tool: serde_json::Value = http
        .post(format!("{}/api/tenants/{tenant}/tools", first.base))
        .bearer_auth(&token)
        .json(&json!({
            "name": "cancel_order", "description": "Cancels an order.", "method": "POST",
            "url": format!("{}/orders/{{order_id}}/cancel", shop.base_url),
            "parameters": { "type": "object", "properties": { "order_id": { "type": "string" } },
                            "required": ["order_id"] },
            "headers": [{ "name": "X-Shop-Key", "value": "crash-shop-key", "secret": true }],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = world::agent(&app, tenant, "Nia").await;
    let res = http
        .put(format!(
            "{}/api/tenants/{tenant}/agents/{agent}",
            first.base
        ))
        .bearer_auth(&token)
        .json(&json!({ "name": "Nia", "tools": [tool["id"]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let scene = install(&app, &first, tenant, &token, agent).await;
    app.llm.script([
        Behavior::ToolCall {
            name: "cancel_order".into(),
            arguments: json!({ "order_id": "31" }),
        },
        Behavior::Text("Order 31 is cancelled.".into()),
    ]);
    mention(
        &first,
        &scene,
        "EvTool",
        "cancel order 31",
        "1700000002.000100",
    )
    .await;
    let line = wait_log(&first.log, "failpoint reached", Duration::from_secs(30));
    assert!(line.contains("after_tool"), "{line}");
    first.kill();
    assert_eq!(shop.hits("/orders/31/cancel"), 1, "it ran before the crash");

    let second = Node::start_with(&app, &prefix, None, &allow);
    wait_finished(&app, &prefix, tenant, "EvTool").await;
    assert_eq!(shop.hits("/orders/31/cancel"), 1, "it did not run again");
    assert_eq!(
        app.llm.calls(),
        2,
        "the recorded step was not asked for again; only the answer after it"
    );
    assert_eq!(posts_of(&app, "Order 31 is cancelled."), 1);
    second.kill();
}

#[actix_rt::test]
async fn a_partition_taken_over_mid_turn_is_answered_once_by_the_new_owner() {
    let app = TestApp::spawn().await;
    let prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
    let (ingest, _) = queue(&prefix).await;
    // A tenant on a partition the first node gives away when a second joins (it keeps the
    // lower half and gives back the higher one).
    let tenant = loop {
        let t = seed_tenant(&app.store, "moving").await.tenant;
        if ingest.partition_of(t) >= ingest.partitions() / 2 {
            break t;
        }
    };
    let platform = world::user(&app, &format!("p-{}@example.com", Uuid::new_v4()), true).await;
    let token = app.token_for(platform, None).await;
    // The first node's LLM call outlasts the lease, so the second node claims the entry.
    app.llm.script([Behavior::Delay(
        Duration::from_secs(8),
        Box::new(Behavior::Text("from the old owner".into())),
    )]);
    let first = Node::start(&app, &prefix, None);
    let scene = scene(&app, &first, tenant, &token).await;
    mention(
        &first,
        &scene,
        "EvMove",
        "who answers?",
        "1700000002.000100",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.llm.calls() == 0 {
        assert!(Instant::now() < deadline, "the turn never reached the LLM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = Node::start(&app, &prefix, None);
    wait_finished(&app, &prefix, tenant, "EvMove").await;
    // The old owner's LLM call returns later and its commit is fenced off: wait for it to say
    // so before counting posts.
    wait_log(&first.log, "partition moved", Duration::from_secs(20));
    assert_eq!(app.llm.in_flight(), 0);
    let posted: Vec<String> = app.slack.posted().into_iter().map(|p| p.text).collect();
    first.kill();
    second.kill();
    assert_eq!(
        posted,
        ["echo: who answers?"],
        "answered once, by the new owner"
    );
}
