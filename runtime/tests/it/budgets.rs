//! Budgets in the store, against real Postgres: reservations admit concurrent calls one at a
//! time (a month overshoots by at most one call), a crashed call's hold lapses, a new month
//! starts at zero by its key, and each threshold alerts once a month. Two tenants throughout.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runtime::engine::turn::EngineSettings;
use runtime::store::Store;
use runtime::store::budgets::{self, BudgetRow, NewBudget, Standing};
use serde_json::{Value, json};
use shared::usage::{BudgetAlert, BudgetStatus, UsageReport};
use shared::{AgentId, ConnectionId, TenantId};
use uuid::Uuid;

use crate::pipeline::{send, wait_for, web_message};
use crate::support::{AppOptions, TestApp, field_errors};
use crate::world::{self, Who, World};

/// Sets (or replaces) a budget of the tenant, with the default thresholds and no webhook.
async fn put_row(store: &Store, tenant: TenantId, budget: NewBudget<'_>) -> BudgetRow {
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let row = budgets::put(&mut tx, &budget).await.unwrap();
    tx.commit().await.unwrap();
    row
}

fn new_budget<'a>(monthly: i64, policy: &'a str) -> NewBudget<'a> {
    NewBudget {
        agent: None,
        monthly_micro_usd: monthly,
        thresholds: &[50, 80, 100],
        policy,
        downgrade_group: None,
        count_own_keys: false,
        webhook_url: None,
    }
}

async fn set_budget(store: &Store, tenant: TenantId, monthly: i64, policy: &str) -> BudgetRow {
    put_row(store, tenant, new_budget(monthly, policy)).await
}

async fn reserve_at(
    store: &Store,
    tenant: TenantId,
    budget: &BudgetRow,
    period: &str,
    amount: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> (Uuid, Standing) {
    let id = Uuid::new_v4();
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let standing = budgets::reserve(
        &mut tx,
        id,
        budget,
        period,
        amount,
        now,
        now + chrono::Duration::seconds(60),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, standing)
}

async fn settle(
    store: &Store,
    tenant: TenantId,
    id: Uuid,
    budget: Uuid,
    period: &str,
    cost: i64,
) -> (i64, i64) {
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let spent = budgets::settle(&mut tx, Some(id), budget, period, cost)
        .await
        .unwrap()
        .expect("the budget exists");
    tx.commit().await.unwrap();
    spent
}

#[tokio::test]
async fn two_hundred_concurrent_calls_against_room_for_fifty_make_at_most_fifty_one() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    const CALL: i64 = 1_000;
    let budget = set_budget(&app.store, w.a, 50 * CALL, "handoff").await;
    let other = set_budget(&app.store, w.b, 3 * CALL, "handoff").await;
    // A month the fixtures (which give each tenant a budget with spend in the current month)
    // never touched.
    let period = "2031-03";
    // Every call reserves its worst case, makes the call when admitted, and settles; a call
    // held back by calls in flight asks again once they may have settled (as turns do).
    let calls = (0..200).map(|_| {
        let store = app.store.clone();
        let budget = budget.clone();
        let tenant = w.a;
        tokio::spawn(async move {
            loop {
                let now = chrono::Utc::now();
                match reserve_at(&store, tenant, &budget, period, CALL, now).await {
                    (id, Standing::Reserved) => {
                        settle(&store, tenant, id, budget.id, period, CALL).await;
                        return true;
                    }
                    (_, Standing::HeldByCallsInFlight) => tokio::task::yield_now().await,
                    (_, Standing::Spent) => return false,
                    (_, Standing::Gone) => panic!("the budget exists"),
                }
            }
        })
    });
    let outcomes = futures_util::future::join_all(calls).await;
    let made = outcomes.iter().filter(|o| *o.as_ref().unwrap()).count() as i64;
    let refused = outcomes.iter().filter(|o| !*o.as_ref().unwrap()).count() as i64;
    assert_eq!(made + refused, 200, "every call is admitted or refused");
    assert!(made <= 51, "{made} calls made against room for 50");
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let (spent, held) = budgets::standing(&mut tx, budget.id, period, chrono::Utc::now())
        .await
        .unwrap();
    drop(tx);
    assert_eq!(spent, made * CALL, "every admitted call settled once");
    assert_eq!(held, 0, "no reservation left behind");
    // Nothing refused while there was room: the month is spent in full.
    assert!(spent >= 50 * CALL, "{spent}");
    assert!(spent <= 51 * CALL, "{spent}");

    // The other tenant's budget saw none of it.
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    assert_eq!(
        budgets::standing(&mut tx, other.id, period, chrono::Utc::now())
            .await
            .unwrap(),
        (0, 0)
    );
    drop(tx);
    let (_, standing) = reserve_at(&app.store, w.b, &other, period, CALL, chrono::Utc::now()).await;
    assert_eq!(standing, Standing::Reserved);
    // And A cannot reach B's budget: under A's transaction B's budget does not exist, and
    // nothing is reserved against it.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let crossed = budgets::reserve(
        &mut tx,
        Uuid::new_v4(),
        &other,
        period,
        CALL,
        chrono::Utc::now(),
        chrono::Utc::now(),
    )
    .await;
    assert_eq!(
        crossed.unwrap(),
        Standing::Gone,
        "another tenant's budget does not exist for A"
    );
    tx.commit().await.unwrap();
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    assert_eq!(
        budgets::standing(&mut tx, other.id, period, chrono::Utc::now())
            .await
            .unwrap(),
        (0, CALL),
        "B's month holds only B's own reservation"
    );
}

#[tokio::test]
async fn a_crashed_calls_hold_lapses_and_a_new_month_starts_at_zero() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let budget = set_budget(&app.store, w.a, 1_000, "handoff").await;
    let clock = runtime::time::Clock::default();
    let zone = runtime::time::TenantZone::parse("Pacific/Auckland").unwrap();
    // Far from the fixtures' month (each tenant's seeded budget has spend in the current one).
    clock.advance(chrono::Duration::days(400));
    let this_month = zone.month_key(clock.now());

    // A call reserved the whole month and its turn crashed: it never settles.
    let (_, first) = reserve_at(&app.store, w.a, &budget, &this_month, 1_000, clock.now()).await;
    assert_eq!(first, Standing::Reserved);
    let (_, held) = reserve_at(&app.store, w.a, &budget, &this_month, 10, clock.now()).await;
    assert_eq!(held, Standing::HeldByCallsInFlight);
    // Past its expiry the hold is gone, and the next call is admitted.
    clock.advance(chrono::Duration::seconds(61));
    let (id, again) = reserve_at(&app.store, w.a, &budget, &this_month, 1_000, clock.now()).await;
    assert_eq!(again, Standing::Reserved);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert_eq!(
        budgets::standing(&mut tx, budget.id, &this_month, clock.now())
            .await
            .unwrap(),
        (0, 1_000),
        "only the live reservation holds"
    );
    drop(tx);
    assert_eq!(
        settle(&app.store, w.a, id, budget.id, &this_month, 1_000).await,
        (0, 1_000)
    );
    let (_, spent) = reserve_at(&app.store, w.a, &budget, &this_month, 1, clock.now()).await;
    assert_eq!(spent, Standing::Spent);

    // A month later (by the tenant's calendar) the key is new, and so is the room.
    clock.advance(chrono::Duration::days(31));
    let next = zone.month_key(clock.now());
    assert_ne!(next, this_month);
    let (_, fresh) = reserve_at(&app.store, w.a, &budget, &next, 1_000, clock.now()).await;
    assert_eq!(fresh, Standing::Reserved);
    // The old month keeps what it spent.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert_eq!(
        budgets::standing(&mut tx, budget.id, &this_month, clock.now())
            .await
            .unwrap()
            .0,
        1_000
    );
}

#[tokio::test]
async fn each_threshold_alerts_once_a_month_and_a_budget_is_set_replaced_and_removed() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let budget = set_budget(&app.store, w.a, 1_000, "soft").await;
    // Setting it again replaces it (one budget per scope).
    let replaced = set_budget(&app.store, w.a, 2_000, "soft").await;
    assert_eq!(replaced.id, budget.id);
    assert_eq!(replaced.monthly_micro_usd, 2_000);
    // A month the fixtures (which give each tenant a budget with spend in the current month)
    // never touched.
    let period = "2031-03";

    let mut alerts = Vec::new();
    for cost in [600, 500, 100, 900, 700] {
        let (id, standing) =
            reserve_at(&app.store, w.a, &replaced, period, cost, chrono::Utc::now()).await;
        if standing != Standing::Reserved {
            continue;
        }
        let (before, after) = settle(&app.store, w.a, id, replaced.id, period, cost).await;
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        for threshold in budgets::crossed(
            &replaced.thresholds,
            replaced.monthly_micro_usd,
            before,
            after,
        ) {
            if budgets::record_alert(&mut tx, &replaced, period, threshold, after)
                .await
                .unwrap()
                .is_some()
            {
                alerts.push(threshold);
            }
            // Recording the same crossing again (a retried transaction) adds nothing.
            assert!(
                budgets::record_alert(&mut tx, &replaced, period, threshold, after)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        tx.commit().await.unwrap();
    }
    // 600 → 1100 (50 %) → 1200 → 2100 (80 %, 100 %); the last call found the month spent.
    assert_eq!(alerts, vec![50, 80, 100]);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let stored: Vec<i16> = sqlx::query_scalar(
        "SELECT threshold FROM budget_alerts WHERE period = $1 ORDER BY threshold",
    )
    .bind(period)
    .fetch_all(tx.connection())
    .await
    .unwrap();
    assert_eq!(stored, vec![50, 80, 100]);
    assert!(budgets::delete(&mut tx, None).await.unwrap());
    assert!(budgets::list(&mut tx).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    // B's own budget (from the fixtures) is untouched by A's removal.
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    assert_eq!(budgets::list(&mut tx).await.unwrap().len(), 1);
}

/// An engine for budget tests: limits raised so no message is rate-limited, the platform's
/// `ollama` group configured too (a downgrade's cheaper group), and the engine's clock.
async fn budget_engine(clock: runtime::time::Clock) -> TestApp {
    let unlimited = runtime::engine::limiter::Limit {
        per_minute: 1_000_000,
        burst: 10_000,
    };
    TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings {
            tenant_limit: unlimited,
            connection_limit: unlimited,
            clock,
            ..EngineSettings::default()
        }),
        ollama: true,
        ..AppOptions::default()
    })
    .await
}

async fn web_connection(app: &TestApp, tenant: TenantId, agent: AgentId) -> ConnectionId {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    let c = runtime::store::conversations::ensure_web_connection(&mut tx, agent)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    c
}

/// Sets the tenant-wide budget (replacing the fixtures' one) before the tenant's first message,
/// so its engine starts with it.
async fn tenant_budget(
    app: &TestApp,
    tenant: TenantId,
    monthly: i64,
    policy: &str,
    downgrade: Option<&str>,
) -> BudgetRow {
    let budget = NewBudget {
        downgrade_group: downgrade,
        ..new_budget(monthly, policy)
    };
    put_row(&app.store, tenant, budget).await
}

/// The replies recorded for events whose ids start with `prefix`: (event, kind, text).
async fn replies(app: &TestApp, tenant: TenantId, prefix: &str) -> Vec<(String, String, String)> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_as(
        "SELECT reply_to, kind, body FROM messages \
          WHERE direction = 'outbound' AND reply_to LIKE $1 || '%' ORDER BY reply_to, part",
    )
    .bind(prefix)
    .fetch_all(tx.connection())
    .await
    .unwrap()
}

/// Waits until `count` events starting with `prefix` have their reply recorded.
async fn wait_replies(
    app: &TestApp,
    tenant: TenantId,
    prefix: &str,
    count: usize,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = replies(app, tenant, prefix).await;
        let events: std::collections::BTreeSet<&String> = got.iter().map(|r| &r.0).collect();
        if events.len() >= count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} answered",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn llm_calls(llm: &e2e::llm::FakeLlm) -> usize {
    llm.received()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count()
}

/// Sets the month's settled spend directly (what earlier calls would have spent).
async fn set_spent(app: &TestApp, tenant: TenantId, budget: &BudgetRow, period: &str, spent: i64) {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query(
        "INSERT INTO budget_periods (tenant_id, budget_id, period, spent_micro_usd) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, budget_id, period) DO UPDATE SET spent_micro_usd = $4",
    )
    .bind(tenant.as_uuid())
    .bind(budget.id)
    .bind(period)
    .bind(spent)
    .execute(tx.connection())
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn spent_in(app: &TestApp, tenant: TenantId, budget: &BudgetRow, period: &str) -> (i64, i64) {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    budgets::standing(&mut tx, budget.id, period, chrono::Utc::now())
        .await
        .unwrap()
}

#[actix_rt::test]
async fn two_hundred_concurrent_turns_against_room_for_fifty_calls_make_at_most_fifty_one_and_hand_the_rest_off()
 {
    let clock = runtime::time::Clock::default();
    // Far from the fixtures' month, which has spend and a hold seeded in it.
    clock.advance(chrono::Duration::days(400));
    let app = budget_engine(clock.clone()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let connection = web_connection(&app, w.a, agent).await;
    let connection_b = web_connection(&app, w.b, w.agent_b).await;
    let budget = tenant_budget(&app, w.a, 5_000_000, "handoff", None).await;
    let period = runtime::time::TenantZone::default().month_key(clock.now());

    // One turn tells what a call costs here (every conversation's prompt is the same size).
    let before = spent_in(&app, w.a, &budget, &period).await.0;
    app.ingest
        .enqueue(&web_message(
            w.a,
            connection,
            agent,
            "probe",
            "probe-0",
            "hello there",
        ))
        .await
        .unwrap();
    let probe = wait_replies(&app, w.a, "probe-", 1).await;
    assert_eq!(probe[0].1, "answer");
    let (after, held) = spent_in(&app, w.a, &budget, &period).await;
    assert_eq!(held, 0, "the probe's hold was settled");
    let call = after - before;
    assert!(call > 0, "a call costs something");
    // Room for exactly fifty more calls.
    set_spent(
        &app,
        w.a,
        &budget,
        &period,
        budget.monthly_micro_usd - 50 * call,
    )
    .await;
    let calls_before = llm_calls(&app.llm);

    for i in 0..200 {
        app.ingest
            .enqueue(&web_message(
                w.a,
                connection,
                agent,
                &format!("flood{i}"),
                &format!("flood-{i:03}"),
                "hello there",
            ))
            .await
            .unwrap();
    }
    // The other tenant, meanwhile, is answered as always.
    app.ingest
        .enqueue(&web_message(
            w.b,
            connection_b,
            w.agent_b,
            "b-side",
            "bside-0",
            "hello there",
        ))
        .await
        .unwrap();
    let got = wait_replies(&app, w.a, "flood-", 200).await;
    let made = llm_calls(&app.llm) - calls_before;
    let b = wait_replies(&app, w.b, "bside-", 1).await;
    assert_eq!(b[0].1, "answer", "tenant B is unaffected");
    let made_for_a = made - 1;
    assert!(
        made_for_a <= 51,
        "{made_for_a} calls made against room for 50"
    );

    // Every message got exactly one reply: an answer for each call made, a polite hand-off for
    // the rest — none dropped, none doubled.
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut events = std::collections::BTreeSet::new();
    for (event, kind, text) in &got {
        assert!(events.insert(event.clone()), "{event} answered twice");
        *kinds.entry(kind.as_str()).or_default() += 1;
        if kind == "handoff" {
            assert!(text.contains("colleague"), "{text}");
            assert!(!text.to_lowercase().contains("budget"), "{text}");
        }
    }
    assert_eq!(kinds.get("answer").copied().unwrap_or(0), made_for_a);
    assert_eq!(kinds.get("handoff").copied().unwrap_or(0), 200 - made_for_a);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let handed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM escalations WHERE reason = 'budget'")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    drop(tx);
    assert_eq!(handed as usize, 200 - made_for_a);
    // Spend: every call settled once, the month used up, over by at most one call's worth;
    // no hold left behind.
    let (spent, held) = spent_in(&app, w.a, &budget, &period).await;
    assert_eq!(held, 0);
    assert_eq!(
        spent,
        budget.monthly_micro_usd - 50 * call + made_for_a as i64 * call
    );
    assert!(
        spent >= budget.monthly_micro_usd,
        "room was left unused: {spent}"
    );
    assert!(spent <= budget.monthly_micro_usd + call, "{spent}");
}

#[actix_rt::test]
async fn a_spent_budget_downgrades_or_keeps_answering_by_its_policy_and_a_new_month_has_room_again()
{
    let clock = runtime::time::Clock::default();
    // Far from the fixtures' month, which has spend and a hold seeded in it.
    clock.advance(chrono::Duration::days(400));
    let app = budget_engine(clock.clone()).await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let connection = web_connection(&app, w.a, agent).await;
    let budget = tenant_budget(&app, w.a, 1_000_000, "downgrade", Some("ollama")).await;
    let period = runtime::time::TenantZone::default().month_key(clock.now());
    let ollama = app.ollama.as_ref().unwrap();

    // Room left: the usual group answers.
    app.ingest
        .enqueue(&web_message(
            w.a, connection, agent, "c1", "down-1", "hello",
        ))
        .await
        .unwrap();
    wait_replies(&app, w.a, "down-1", 1).await;
    assert_eq!((llm_calls(&app.llm), llm_calls(ollama)), (1, 0));
    // Spent: the cheaper group answers instead, and its spend still counts.
    set_spent(&app, w.a, &budget, &period, budget.monthly_micro_usd).await;
    app.ingest
        .enqueue(&web_message(
            w.a, connection, agent, "c1", "down-2", "hello",
        ))
        .await
        .unwrap();
    let got = wait_replies(&app, w.a, "down-2", 1).await;
    assert_eq!(got[0].1, "answer");
    assert_eq!((llm_calls(&app.llm), llm_calls(ollama)), (1, 1));
    let (spent, held) = spent_in(&app, w.a, &budget, &period).await;
    assert!(
        spent > budget.monthly_micro_usd,
        "a model without a price is never free"
    );
    assert_eq!(held, 0);

    // The tenant's calendar turns a month (the injected clock): the usual group again.
    clock.advance(chrono::Duration::days(31));
    let next = runtime::time::TenantZone::default().month_key(clock.now());
    assert_ne!(next, period);
    app.ingest
        .enqueue(&web_message(
            w.a, connection, agent, "c1", "down-3", "hello",
        ))
        .await
        .unwrap();
    wait_replies(&app, w.a, "down-3", 1).await;
    assert_eq!((llm_calls(&app.llm), llm_calls(ollama)), (2, 1));
    assert!(spent_in(&app, w.a, &budget, &next).await.0 > 0);

    // Soft: spent, and the usual group keeps answering.
    let soft = tenant_budget(&app, w.a, 1_000_000, "soft", None).await;
    assert_eq!(soft.id, budget.id);
    set_spent(&app, w.a, &soft, &next, 2 * soft.monthly_micro_usd).await;
    // The change reaches the engine through its change notice; until then the engine may still
    // downgrade, so wait for a turn the usual group answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 4;
    loop {
        let event = format!("down-{n}");
        let before = llm_calls(&app.llm);
        app.ingest
            .enqueue(&web_message(w.a, connection, agent, "c1", &event, "hello"))
            .await
            .unwrap();
        let got = wait_replies(&app, w.a, &event, 1).await;
        assert_eq!(got[0].1, "answer", "a soft budget never stops an answer");
        if llm_calls(&app.llm) == before + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the soft policy never took effect"
        );
        n += 1;
    }
}

/// The job runner as the mail tests run it: quick retries.
fn runner() -> (runtime::jobs::RunnerSettings, runtime::jobs::Registry) {
    (
        runtime::jobs::RunnerSettings {
            concurrency: 2,
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_millis(200),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(500),
        },
        runtime::jobs::Registry::builtin().unwrap(),
    )
}

async fn put_budget(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.request(Method::PUT, path, Some(token))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn statuses(app: &TestApp, token: &str, tenant: TenantId) -> Vec<BudgetStatus> {
    app.get_json(&format!("/api/tenants/{tenant}/budgets"), token)
        .await
}

#[actix_rt::test]
async fn an_admin_sets_a_budget_sees_spend_rise_gets_each_alert_once_by_mail_and_webhook_and_at_100_the_policy_applies()
 {
    let hook = e2e::shop::FakeShop::start("unused").unwrap();
    let clock = runtime::time::Clock::default();
    // Far from the fixtures' month, which has spend seeded in it.
    clock.advance(chrono::Duration::days(400));
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings {
            clock: clock.clone(),
            ..EngineSettings::default()
        }),
        jobs: Some(runner()),
        outbound_allow: vec![hook.host_port.clone()],
        public_url: Some("https://konstruct.example.test".into()),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = w.token(&app, Who::AdminA).await.unwrap();
    let operator = w.token(&app, Who::OperatorA).await.unwrap();
    let admin_b = w.token(&app, Who::AdminB).await.unwrap();
    let email = runtime::store::users::get(&app.store, w.admin_a)
        .await
        .unwrap()
        .unwrap()
        .email;
    let tenant_path = format!("/api/tenants/{}/budgets/tenant", w.a);
    let webhook = format!("{}/hooks/budget", hook.base_url);

    // Bad input is a field error and changes nothing.
    for (body, field) in [
        (json!({ "monthly_micro_usd": 0 }), "monthly_micro_usd"),
        (json!({ "monthly_micro_usd": -5 }), "monthly_micro_usd"),
        (
            json!({ "monthly_micro_usd": 1_000, "thresholds": [0, 80] }),
            "thresholds",
        ),
        (
            json!({ "monthly_micro_usd": 1_000, "thresholds": [] }),
            "thresholds",
        ),
        (
            json!({ "monthly_micro_usd": 1_000, "policy": "downgrade" }),
            "downgrade_group",
        ),
        (
            json!({ "monthly_micro_usd": 1_000, "policy": "downgrade", "downgrade_group": "nope" }),
            "downgrade_group",
        ),
        (
            json!({ "monthly_micro_usd": 1_000, "downgrade_group": "openai" }),
            "downgrade_group",
        ),
        (
            json!({ "monthly_micro_usd": 1_000, "webhook_url": "not a url" }),
            "webhook_url",
        ),
        (
            json!({ "monthly_micro_usd": 1_000, "webhook_url": "http://example.com/hook" }),
            "webhook_url",
        ),
        (
            json!({ "monthly_micro_usd": 1_000, "webhook_url": "https://u:p@example.com/hook" }),
            "webhook_url",
        ),
        // Our own network, not on the allowlist.
        (
            json!({ "monthly_micro_usd": 1_000, "webhook_url": "https://127.0.0.1:9/hook" }),
            "webhook_url",
        ),
    ] {
        let res = put_budget(&app, &admin, &tenant_path, body.clone()).await;
        assert_eq!(field_errors(res).await, vec![field.to_string()], "{body}");
    }
    let before = statuses(&app, &admin, w.a).await;
    assert_eq!(before.len(), 1, "the fixtures' budget only");
    assert_eq!(before[0].budget.monthly_micro_usd, 5_000_000);
    // An operator reads budgets and changes none; another tenant's admin finds none of A's.
    let res = put_budget(
        &app,
        &operator,
        &tenant_path,
        json!({ "monthly_micro_usd": 1 }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = put_budget(
        &app,
        &admin_b,
        &tenant_path,
        json!({ "monthly_micro_usd": 1 }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = put_budget(
        &app,
        &admin_b,
        &format!("/api/tenants/{}/budgets/agents/{agent}", w.b),
        json!({ "monthly_micro_usd": 1 }),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "A's agent is no agent of B's"
    );
    assert_eq!(statuses(&app, &operator, w.a).await, before);

    // A first budget, and one test-chat message tells what a call costs.
    let res = put_budget(
        &app,
        &admin,
        &tenant_path,
        json!({ "monthly_micro_usd": 1_000_000, "policy": "handoff", "webhook_url": webhook }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let set: BudgetStatus = res.json().await.unwrap();
    assert_eq!(
        set.budget.thresholds,
        vec![50, 80, 100],
        "the default thresholds"
    );
    assert_eq!(set.spent_micro_usd, 0);
    assert_eq!(set.budget.webhook_url.as_deref(), Some(webhook.as_str()));
    // The webhook's URL may carry its secret: an operator sees only where it goes.
    let seen_by_operator = statuses(&app, &operator, w.a).await.remove(0);
    assert_eq!(
        seen_by_operator.budget.webhook_url.as_deref(),
        Some("http://127.0.0.1/…")
    );
    assert_eq!(
        statuses(&app, &admin, w.a).await[0].budget.webhook_url,
        set.budget.webhook_url
    );
    app.config_applied(w.a).await;
    let chat = |n: usize| format!("journey-{n}");
    send(&app, &admin, w.a, agent, Some(&chat(0)), "hello there").await;
    wait_for(&app, &admin, w.a, agent, &chat(0), 2).await;
    let call = statuses(&app, &admin, w.a).await[0].spent_micro_usd;
    assert!(call > 0);
    let usage: UsageReport = app
        .get_json(&format!("/api/tenants/{}/usage", w.a), &operator)
        .await;
    assert_eq!(
        usage.totals.platform.cost_micro_usd, call,
        "the dashboard shows the spend"
    );

    // Five calls' worth: the 3rd call crosses 50 %, the 4th 80 %, the 5th 100 %.
    let res = put_budget(
        &app,
        &admin,
        &tenant_path,
        json!({ "monthly_micro_usd": 5 * call, "policy": "handoff", "webhook_url": webhook }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.config_applied(w.a).await;
    let mut seen = vec![call];
    for n in 1..5 {
        send(&app, &admin, w.a, agent, Some(&chat(n)), "hello there").await;
        let messages = wait_for(&app, &admin, w.a, agent, &chat(n), 2).await;
        assert!(
            !messages[1].text.contains("colleague"),
            "answered: {}",
            messages[1].text
        );
        let usage: UsageReport = app
            .get_json(&format!("/api/tenants/{}/usage", w.a), &operator)
            .await;
        seen.push(usage.totals.platform.cost_micro_usd);
        if n == 4 {
            // The 80 % alert: mailed to the admin and posted to the webhook.
            let mails = crate::mailbox::wait_for(&email, 2).await;
            assert!(
                mails.iter().any(|m| m.subject.contains("80 %")),
                "{mails:?}"
            );
        }
    }
    assert_eq!(
        seen,
        (1..=5).map(|k| k * call).collect::<Vec<_>>(),
        "spend rises call by call"
    );
    let status = statuses(&app, &admin, w.a).await.remove(0);
    assert!(status.exhausted);
    assert_eq!(status.percent, 100);
    assert_eq!(status.crossed, vec![50, 80, 100]);
    assert_eq!(status.reserved_micro_usd, 0);

    // At 100 % the hand-off policy: the next customer is handed to a person, politely.
    send(&app, &admin, w.a, agent, Some(&chat(5)), "hello there").await;
    let messages = wait_for(&app, &admin, w.a, agent, &chat(5), 2).await;
    assert!(
        messages[1].text.contains("colleague"),
        "{}",
        messages[1].text
    );
    assert!(!messages[1].text.to_lowercase().contains("budget"));
    let llm_calls_now = llm_calls(&app.llm);
    assert_eq!(llm_calls_now, 5, "no call after the month was spent");

    // Each threshold alerted exactly once: three mails, three webhook posts, three alerts.
    let mails = crate::mailbox::wait_for(&email, 3).await;
    let mut subjects: Vec<String> = mails.iter().map(|m| m.subject.clone()).collect();
    subjects.sort();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    for (subject, t) in subjects.iter().zip(["100", "50", "80"]) {
        assert!(subject.contains(&format!("{t} %")), "{subject}");
    }
    assert!(
        mails
            .iter()
            .all(|m| m.text.contains("https://konstruct.example.test/usage"))
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let posts = loop {
        let posts: Vec<Value> = hook
            .received()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/hooks/budget")
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect();
        if posts.len() >= 3 {
            break posts;
        }
        assert!(Instant::now() < deadline, "{} webhook posts", posts.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut thresholds: Vec<i64> = posts
        .iter()
        .map(|p| p["threshold"].as_i64().unwrap())
        .collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, vec![50, 80, 100]);
    assert!(
        posts
            .iter()
            .all(|p| p["tenant_id"] == json!(w.a) && p["policy"] == "handoff")
    );
    let alerts: Vec<BudgetAlert> = app
        .get_json(&format!("/api/tenants/{}/budget-alerts", w.a), &operator)
        .await;
    // This month's (the fixtures' budget, which this one replaced, raised one last year).
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.period == status.period)
            .map(|a| a.threshold)
            .collect::<Vec<_>>(),
        vec![100, 80, 50],
        "newest first"
    );
    assert!(alerts.iter().all(|a| a.budget_id == status.budget.id));
    // Paged: after the newest, the other two.
    let older: Vec<BudgetAlert> = app
        .get_json(
            &format!(
                "/api/tenants/{}/budget-alerts?before={}&limit=1",
                w.a, alerts[0].id
            ),
            &operator,
        )
        .await;
    assert_eq!(
        older.iter().map(|a| a.threshold).collect::<Vec<_>>(),
        vec![80]
    );
    // The jobs recorded what they did (a mail to each of A's admins, the webhook's 200), and
    // the trail has each crossing and sending.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let admins: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenant_members WHERE role = 'customer_admin'")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    drop(tx);
    let admins = i32::try_from(admins).unwrap();
    assert!(admins >= 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts: Vec<BudgetAlert> = app
            .get_json(&format!("/api/tenants/{}/budget-alerts", w.a), &operator)
            .await;
        if alerts
            .iter()
            .filter(|a| a.period == status.period)
            .all(|a| a.mailed == Some(admins) && a.webhook_status == Some(200))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{alerts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let trail: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, count(*) FROM audit_events \
          WHERE action IN ('budget.set', 'budget.threshold_crossed', 'budget.alert_sent') \
          GROUP BY action ORDER BY action",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap();
    drop(tx);
    assert_eq!(
        trail,
        vec![
            ("budget.alert_sent".to_string(), 3),
            ("budget.set".to_string(), 2),
            ("budget.threshold_crossed".to_string(), 3)
        ]
    );
    // B saw none of it.
    let b: Vec<BudgetAlert> = app
        .get_json(&format!("/api/tenants/{}/budget-alerts", w.b), &admin_b)
        .await;
    assert!(
        b.iter()
            .all(|x| x.budget_id != status.budget.id && x.period != status.period),
        "B has only its own (the fixtures') alerts: {b:?}"
    );
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/budget-alerts", w.a),
            Some(&admin_b),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Removing the budget lifts the policy: the next message is answered by the AI again.
    let res = app
        .request(Method::DELETE, &tenant_path, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .request(Method::DELETE, &tenant_path, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.config_applied(w.a).await;
    send(&app, &admin, w.a, agent, Some(&chat(6)), "hello there").await;
    let messages = wait_for(&app, &admin, w.a, agent, &chat(6), 2).await;
    assert!(
        !messages[1].text.contains("colleague"),
        "{}",
        messages[1].text
    );
    assert_eq!(llm_calls(&app.llm), 6);
}

#[tokio::test]
async fn a_budget_set_mid_month_starts_from_what_the_month_already_spent() {
    use runtime::store::llm::{UsageRecord, add_usage};
    use shared::usage::KeyOwner;
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let sales = world::agent(&app, w.a, "Sales").await;
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    sqlx::query("UPDATE tenants SET time_zone = 'Asia/Kolkata'")
        .execute(tx.connection())
        .await
        .unwrap();
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    for (when, agent, owner, model, tokens, cost) in [
        // 23:45 on 31 July in Kolkata: July, not August.
        (
            "2031-07-31T18:15:00Z",
            Some(sales),
            KeyOwner::Platform,
            "gpt-4o-mini",
            (10, 1),
            Some(1_000),
        ),
        // 00:15 on 1 August in Kolkata.
        (
            "2031-07-31T18:45:00Z",
            Some(sales),
            KeyOwner::Platform,
            "gpt-4o-mini",
            (10, 1),
            Some(300),
        ),
        (
            "2031-08-10T10:00:00Z",
            None,
            KeyOwner::Platform,
            "gpt-4o-mini",
            (10, 1),
            Some(40),
        ),
        // The tenant's own key: counted only by a budget that says so.
        (
            "2031-08-11T10:00:00Z",
            Some(sales),
            KeyOwner::Tenant,
            "gpt-4o-mini",
            (10, 1),
            Some(5_000),
        ),
        // No price: 1,000 in and 100 out at $15 and $75 a million, 15,000 + 7,500 micro-dollars.
        (
            "2031-08-12T10:00:00Z",
            Some(sales),
            KeyOwner::Platform,
            "llama3.2",
            (1_000, 100),
            None,
        ),
        // September: not August.
        (
            "2031-09-01T00:00:00Z",
            Some(sales),
            KeyOwner::Platform,
            "gpt-4o-mini",
            (10, 1),
            Some(90_000),
        ),
    ] {
        add_usage(
            &mut tx,
            &UsageRecord {
                at: at(when),
                agent,
                channel: Some("web"),
                key_owner: owner,
                provider: "openai",
                model,
                input_tokens: tokens.0,
                output_tokens: tokens.1,
                cached_input_tokens: 0,
                cost_micro_usd: cost,
                slot: 0,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let put = |agent: Option<AgentId>, count_own_keys: bool| {
        let budget = NewBudget {
            agent,
            count_own_keys,
            ..new_budget(1_000_000, "soft")
        };
        put_row(&app.store, w.a, budget)
    };
    let now = at("2031-08-20T00:00:00Z");
    // The tenant's budget (platform keys): 300 + 40 + 22,500.
    let tenant = put(None, false).await;
    reserve_at(&app.store, w.a, &tenant, "2031-08", 1, now).await;
    assert_eq!(spent_in(&app, w.a, &tenant, "2031-08").await.0, 22_840);
    // The agent's budget, own keys counted: 300 + 5,000 + 22,500.
    let agent = put(Some(sales), true).await;
    reserve_at(&app.store, w.a, &agent, "2031-08", 1, now).await;
    assert_eq!(spent_in(&app, w.a, &agent, "2031-08").await.0, 27_800);
    // B's budget of the same month starts at zero: A's usage is not B's.
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    let b = budgets::list(&mut tx).await.unwrap().remove(0);
    drop(tx);
    reserve_at(&app.store, w.b, &b, "2031-08", 1, now).await;
    assert_eq!(spent_in(&app, w.b, &b, "2031-08").await.0, 0);
}

#[tokio::test]
async fn a_budget_removed_while_a_call_is_in_flight_settles_nothing_and_fails_nothing() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let budget = set_budget(&app.store, w.a, 1_000, "handoff").await;
    let period = "2031-03";
    let (id, standing) =
        reserve_at(&app.store, w.a, &budget, period, 100, chrono::Utc::now()).await;
    assert_eq!(standing, Standing::Reserved);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert!(budgets::delete(&mut tx, None).await.unwrap());
    tx.commit().await.unwrap();
    // The call records as usual: its budget is gone, so there is nothing to settle.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert_eq!(
        budgets::settle(&mut tx, Some(id), budget.id, period, 100)
            .await
            .unwrap(),
        None
    );
    tx.commit().await.unwrap();
    // A turn still holding the old snapshot asks again: the removed budget caps nothing.
    let (_, again) = reserve_at(&app.store, w.a, &budget, period, 100, chrono::Utc::now()).await;
    assert_eq!(again, Standing::Gone);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM budget_periods WHERE budget_id = $1")
        .bind(budget.id)
        .fetch_one(tx.connection())
        .await
        .unwrap();
    assert_eq!(left, 0, "nothing of the removed budget comes back");
}
