//! Degraded dependencies under load, counted: messages in, answers out.
//!
//! - A minute of the Slack Web API answering 429 (with `Retry-After`) and 5xx: every message
//!   taken is answered exactly once, in order within its thread, once the API is back; nothing
//!   is left pending, parked or dead-lettered; no request goes to the workspace while a
//!   `Retry-After` it was given runs; another tenant is answered as usual meanwhile.
//! - Slack answering only 5xx: a parked reply waits its back-off between attempts (no attempt
//!   starts right after the last one ended), and is answered once Slack is back.
//! - An LLM provider that hangs: every message is answered by the fallback provider, the hanging
//!   one never holds more requests open at once than the pool's configured in-flight cap
//!   (`llm.max_in_flight`), however many turns run, and once the load is over it holds none.
//!   The same at the pool alone: callers beyond the cap wait (at most a timeout) and move on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::slack::Behavior;
use reqwest::StatusCode;
use runtime::engine::ingest::IngestSettings;
use runtime::engine::limiter::Limit;
use runtime::engine::turn::EngineSettings;
use serde_json::{Value, json};
use shared::channel::{ChannelKind, InboundMessage, ReplyTarget, Sender};

use crate::pipeline::{send, wait_for};
use crate::slack::{Install, callback, deliver, install, wait_posted_within};
use crate::support::{AppOptions, TestApp};
use crate::world::{self, World};

/// How long the fake Slack answers every post with a 429 or a 5xx.
const DEGRADED: Duration = Duration::from_secs(60);

/// A request arriving this soon after a 429 was already on its way when the 429 was answered
/// (the runtime could not have known); later ones, while the `Retry-After` runs, are violations.
const ALREADY_ON_ITS_WAY: Duration = Duration::from_millis(250);

/// Limits high enough that no message of these loads is rejected: the limiter is not under test.
fn unlimited() -> EngineSettings {
    let wide = Limit {
        per_minute: 60_000,
        burst: 10_000,
    };
    EngineSettings {
        tenant_limit: wide,
        connection_limit: wide,
        ..EngineSettings::default()
    }
}

/// A mention of the installation's bot in thread `thread_ts` of `channel`.
fn mention(install: &Install, channel: &str, thread_ts: &str, ts: &str, text: &str) -> Value {
    json!({
        "type": "app_mention", "user": "UCUSTOMER", "channel": channel,
        "text": format!("<@{}> {text}", install.bot), "ts": ts, "thread_ts": thread_ts,
    })
}

/// One thread of the load: its channel, its `thread_ts`, and the texts sent in it, in order.
struct Thread {
    channel: String,
    ts: String,
    sent: Vec<String>,
}

impl Thread {
    fn new(i: usize, channels: usize, base: u64) -> Self {
        Self {
            channel: format!("C{}", i % channels),
            ts: format!("{base}.{:06}", i * 1000),
            sent: Vec::new(),
        }
    }

    /// Sends the thread's next message through the Slack webhook.
    async fn send(&mut self, app: &TestApp, install: &Install, i: usize) {
        let j = self.sent.len();
        let text = format!("t{i} m{j}");
        let ts = format!("{}{:03}", &self.ts[..self.ts.len() - 3], j + 1);
        let event = mention(install, &self.channel, &self.ts, &ts, &text);
        let id = format!("Ev{}-{i}-{j}", &self.ts[..10]);
        let res = deliver(app, &callback(&install.team, &id, event), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        self.sent.push(text);
    }
}

/// The posted texts of each thread, in the order they were posted, by `channel:thread_ts`.
fn by_thread(posted: &[e2e::slack::Posted]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for p in posted {
        let key = format!("{}:{}", p.channel, p.thread_ts.clone().unwrap_or_default());
        out.entry(key).or_default().push(p.text.clone());
    }
    out
}

/// Asserts the connection's work is all done: nothing parked, nothing pending in the tenant's
/// partition stream, nothing dead-lettered, no reply part pending or failed.
async fn assert_drained(app: &TestApp, install: &Install, tenant: shared::TenantId) {
    let probe = InboundMessage {
        tenant_id: tenant,
        channel: ChannelKind::Slack,
        connection_id: install.connection,
        agent_id: Some(install.agent),
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
    let stream = app.ingest.stream(app.ingest.partition_of(tenant));
    // The last acknowledgement may trail the last post by a transaction or two.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parked = app.ingest.parked_len(&probe).await.unwrap();
        let pending: i64 = app
            .redis
            .eval(
                "return redis.call('XPENDING', KEYS[1], 'engine')[1]",
                vec![stream.clone()],
                vec![],
            )
            .await
            .unwrap();
        if parked == 0 && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{parked} parked, {pending} pending in the stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = app
        .redis
        .stream_len(&app.ingest.dead_letter_stream())
        .await
        .unwrap();
    assert_eq!(dead, 0, "nothing dead-lettered");
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    let unsent: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM messages WHERE direction = 'outbound' AND status <> 'sent' \
         GROUP BY status",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap();
    assert!(unsent.is_empty(), "reply parts not sent: {unsent:?}");
}

#[actix_rt::test]
#[expect(clippy::print_stdout, reason = "the test reports what it counted")]
async fn a_minute_of_slack_429s_and_5xx_loses_nothing_honours_retry_after_and_drains_in_order() {
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(unlimited()),
        // Retries back off to at most 5 s, so the backlog starts draining soon after the minute.
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

    // 429s with Retry-After 1, 2 and 3 s, alternating with plain 500, 502 and 503.
    app.slack.degrade_for(
        DEGRADED,
        vec![
            Behavior::RateLimited(1),
            Behavior::ServerError(500),
            Behavior::RateLimited(2),
            Behavior::ServerError(502),
            Behavior::RateLimited(3),
            Behavior::ServerError(503),
        ],
    );
    let degraded_at = Instant::now();
    let recovered_at = degraded_at + DEGRADED;
    // Steady load through the minute: 6 threads in 3 channels; every 3 s a message in each
    // thread at once, so several replies of a channel wait for its pace together.
    let (threads, channels, every) = (6, 3, Duration::from_secs(3));
    let mut load: Vec<Thread> = (0..threads)
        .map(|i| Thread::new(i, channels, 1_700_000_300))
        .collect();
    let mut web_latency = Vec::new();
    let mut round = 0u32;
    while degraded_at + every * round < recovered_at - every {
        tokio::time::sleep_until((degraded_at + every * round).into()).await;
        for (i, thread) in load.iter_mut().enumerate() {
            thread.send(&app, &slack, i).await;
        }
        // Meanwhile another tenant's test chat is answered as usual.
        if round.is_multiple_of(4) {
            let k = web_latency.len();
            let text = format!("still there? {k}");
            let asked = Instant::now();
            send(&app, &admin_b, w.b, web_agent, Some("web"), &text).await;
            let got = wait_for(&app, &admin_b, w.b, web_agent, "web", 2 * (k + 1)).await;
            assert_eq!(got[2 * k + 1].text, format!("echo: {text}"));
            web_latency.push(asked.elapsed());
        }
        round += 1;
    }
    assert!(
        Instant::now() < recovered_at,
        "the other tenant was answered while Slack was degraded"
    );
    let total: usize = load.iter().map(|t| t.sent.len()).sum();

    // The minute passes; then the backlog drains.
    tokio::time::sleep_until(recovered_at.into()).await;
    let during = app.slack.posted().len();
    let posted = wait_posted_within(&app, total, Duration::from_secs(180)).await;
    let drained_in = recovered_at.elapsed();
    assert_drained(&app, &slack, w.a).await;

    let posted = {
        // Anything posted after the count was reached would be a second answer.
        let after = app.slack.posted();
        assert_eq!(after.len(), posted.len(), "nothing posted twice");
        after
    };
    assert_eq!(
        during, 0,
        "nothing could be posted while Slack was degraded"
    );
    assert_eq!(posted.len(), total, "every message answered once");
    assert!(posted.iter().all(|p| p.token == slack.token));
    let answered = by_thread(&posted);
    assert_eq!(answered.len(), threads);
    for thread in &load {
        let expected: Vec<String> = thread.sent.iter().map(|t| format!("echo: {t}")).collect();
        assert_eq!(
            answered[&format!("{}:{}", thread.channel, thread.ts)],
            expected,
            "thread {} answered in order",
            thread.ts
        );
    }
    // Retries sent what was recorded: one LLM call per message.
    assert_eq!(app.llm.calls(), total + web_latency.len());

    // Retry-After was honoured: no request to the workspace while one ran.
    let calls = app.slack.calls();
    let ours: Vec<&e2e::slack::Call> = calls
        .iter()
        .filter(|c| c.auth.as_deref() == Some(&format!("Bearer {}", slack.token)))
        .collect();
    let mut early = Vec::new();
    for limited in ours.iter().filter(|c| c.status == 429) {
        let until = limited.at + Duration::from_secs(limited.retry_after.unwrap());
        for c in &ours {
            if c.at > limited.at + ALREADY_ON_ITS_WAY && c.at < until {
                early.push(format!(
                    "{} ms into a {} s Retry-After (for {:?}): {} for {:?}",
                    (c.at - limited.at).as_millis(),
                    limited.retry_after.unwrap(),
                    limited.body["text"],
                    c.status,
                    c.body["text"],
                ));
            }
        }
    }
    let count = |f: &dyn Fn(u16) -> bool| ours.iter().filter(|c| f(c.status)).count();
    let (limited, failed, ok) = (
        count(&|s| s == 429),
        count(&|s| s >= 500),
        count(&|s| s == 200),
    );
    println!(
        "slack degraded {} s: {total} messages in, {} answers out ({during} during the window); \
         {} calls: {limited} × 429, {failed} × 5xx, {ok} × 200; drained {:.1} s after the window; \
         other tenant answered {} times, slowest in {} ms",
        DEGRADED.as_secs(),
        posted.len(),
        ours.len(),
        drained_in.as_secs_f64(),
        web_latency.len(),
        web_latency
            .iter()
            .max()
            .unwrap_or(&Duration::ZERO)
            .as_millis(),
    );
    assert!(
        limited > 0 && failed > 0,
        "the minute saw both 429s and 5xx"
    );
    if !early.is_empty() {
        for c in &ours {
            println!(
                "{:>6} ms  {} {:?} {}",
                c.at.saturating_duration_since(degraded_at).as_millis(),
                c.status,
                c.retry_after,
                c.body["text"]
            );
        }
    }
    assert!(early.is_empty(), "requests during a Retry-After: {early:?}");
}

#[actix_rt::test]
#[expect(clippy::print_stdout, reason = "the test reports what it counted")]
async fn a_parked_reply_waits_its_back_off_between_attempts_while_slack_answers_5xx() {
    let ingest = IngestSettings {
        retry_base_delay: Duration::from_secs(4),
        retry_max_delay: Duration::from_secs(5),
        ..IngestSettings::default()
    };
    // The shortest back-off there is: the first one, less its jitter (20 %).
    let shortest = ingest.retry_base_delay.mul_f64(0.8);
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(unlimited()),
        ingest: Some(ingest),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;
    let window = Duration::from_secs(10);
    app.slack.degrade_for(
        window,
        vec![Behavior::ServerError(500), Behavior::ServerError(503)],
    );
    let mut thread = Thread::new(0, 1, 1_700_000_500);
    thread.send(&app, &slack, 0).await;
    let posted = wait_posted_within(&app, 1, window + Duration::from_secs(30)).await;
    assert_eq!(posted[0].text, "echo: t0 m0");
    assert_drained(&app, &slack, w.a).await;
    // Each attempt posts, and after a 5xx once more at once (after its channel's pace); then
    // the message waits its back-off. Two short gaps in a row: an attempt without one.
    let at: Vec<Instant> = app.slack.calls().iter().map(|c| c.at).collect();
    assert!(at.len() >= 4, "{} calls: attempts were retried", at.len());
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "5xx for {} s: 1 message in, 1 answer out after {} calls, gaps {:?} ms",
        window.as_secs(),
        at.len(),
        gaps.iter().map(Duration::as_millis).collect::<Vec<_>>()
    );
    for pair in gaps.windows(2) {
        assert!(
            pair[0] >= shortest || pair[1] >= shortest,
            "an attempt began without waiting its back-off: gaps {gaps:?}"
        );
    }
}

/// Requests the pool keeps open to one deployment at most, in the hanging-provider test.
const LLM_IN_FLIGHT: u32 = 4;

#[actix_rt::test]
#[expect(clippy::print_stdout, reason = "the test reports what it counted")]
async fn a_hanging_llm_provider_is_timed_out_and_fallen_back_from_with_bounded_open_requests() {
    let llm = runtime::config::LlmSettings {
        timeout_secs: 1,
        // Cools down briefly, so the load meets probes of the hanging provider too.
        cooldown_secs: 2,
        max_in_flight: LLM_IN_FLIGHT,
        ..runtime::config::LlmSettings::default()
    };
    let (timeout, tries) = (Duration::from_secs(llm.timeout_secs), llm.max_retries + 1);
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(unlimited()),
        // The second provider (the `ollama` group, after `openai`): it answers.
        ollama: true,
        llm: Some(llm),
        ..AppOptions::default()
    })
    .await;
    let fallback = app.ollama.as_ref().unwrap();
    // The platform's first provider never answers.
    app.llm.set_fallback(Some(e2e::llm::Behavior::Hang));
    let w = World::new(&app).await;
    let slack = install(&app, w.admin_a, w.a, "Nia").await;

    // 12 threads, each in a channel of its own; 4 rounds of a message in every thread at once,
    // 2.5 s apart: three times more turns at once than the hanging provider may hold.
    let (threads, rounds, every) = (12, 4, Duration::from_millis(2500));
    assert!(threads > LLM_IN_FLIGHT as usize);
    let mut load: Vec<Thread> = (0..threads)
        .map(|i| Thread::new(i, threads, 1_700_000_400))
        .collect();
    let started = Instant::now();
    for round in 0..rounds {
        tokio::time::sleep_until((started + every * round).into()).await;
        for (i, thread) in load.iter_mut().enumerate() {
            thread.send(&app, &slack, i).await;
        }
    }
    let total = threads * rounds as usize;
    let posted = loop {
        let posted = app.slack.posted();
        if posted.len() >= total {
            break posted;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {total} answered",
            posted.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let answered_in = started.elapsed();
    assert_drained(&app, &slack, w.a).await;
    assert_eq!(
        app.slack.posted().len(),
        total,
        "every message answered once"
    );
    let answered = by_thread(&posted);
    for thread in &load {
        let expected: Vec<String> = thread.sent.iter().map(|t| format!("echo: {t}")).collect();
        assert_eq!(
            answered[&format!("{}:{}", thread.channel, thread.ts)],
            expected
        );
    }
    // The hanging provider answered nothing, so the fallback answered each message, once.
    assert_eq!(fallback.calls(), total, "one fallback call per message");
    assert!(app.llm.calls() > 0, "the hanging provider was tried");

    // Its requests are given up on: none stays open once each has had its time.
    let deadline = Instant::now() + timeout * tries + Duration::from_secs(5);
    while app.llm.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} requests still open at the hanging provider",
            app.llm.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "hanging LLM: {total} messages in, {} answers out in {:.1} s, all by the fallback \
         ({} calls); the hanging provider got {} requests, at most {} open at once \
         (cap {LLM_IN_FLIGHT}), none left open",
        posted.len(),
        answered_in.as_secs_f64(),
        fallback.calls(),
        app.llm.calls(),
        app.llm.max_concurrent(),
    );
    assert!(
        app.llm.max_concurrent() <= LLM_IN_FLIGHT as usize,
        "{} requests open at once at the hanging provider (cap {LLM_IN_FLIGHT})",
        app.llm.max_concurrent()
    );
}

#[tokio::test]
async fn the_pool_keeps_no_more_calls_open_to_a_hanging_deployment_than_its_cap() {
    use runtime::llm::pool::{Credentials, ModelGroup, Pool, PoolSettings, ProviderKind};
    const KEY: &str = "sk-platform-key";
    let hanging = e2e::llm::FakeLlm::start(KEY).unwrap();
    hanging.set_fallback(Some(e2e::llm::Behavior::Hang));
    let answering = e2e::llm::FakeLlm::start(KEY).unwrap();
    let mut first = crate::llm::deployment("hanging", ProviderKind::OpenAi, &hanging.base_url, KEY);
    first.timeout = Duration::from_millis(300);
    first.max_retries = 0;
    let second =
        crate::llm::deployment("answering", ProviderKind::OpenAi, &answering.base_url, KEY);
    let groups = [first, second]
        .into_iter()
        .map(|d| ModelGroup {
            name: d.id.clone(),
            deployments: vec![d],
        })
        .collect();
    let cap = 2;
    let pool = Pool::new(
        groups,
        PoolSettings {
            // Never cools down here: only the cap keeps calls away from the hanging one.
            failures_before_cooldown: u32::MAX,
            backoff_base: Duration::from_millis(1),
            max_in_flight: cap,
            ..PoolSettings::default()
        },
        crate::llm::ManualClock::new(),
    );
    let calls = 10;
    let started = Instant::now();
    let (credentials, request) = (Credentials::default(), crate::llm::simple());
    let reports =
        futures_util::future::join_all((0..calls).map(|_| pool.chat(None, &credentials, &request)))
            .await;
    for report in &reports {
        assert_eq!(report.as_ref().unwrap().deployment, "answering");
    }
    assert_eq!(answering.calls(), calls);
    assert!(
        hanging.calls() >= cap,
        "the hanging one was tried up to its cap"
    );
    assert!(
        hanging.max_concurrent() <= cap,
        "{} calls open at once (cap {cap})",
        hanging.max_concurrent()
    );
    // Whoever found no room waited at most one timeout for it, then moved on.
    assert!(started.elapsed() < Duration::from_millis(300) * 2 + Duration::from_secs(2));
}
