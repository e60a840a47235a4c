//! Benchmark: the message pipeline from ingest to acknowledgement, open loop, through the
//! application as `konstruct serve` builds it (`Application::build`: the same engine, store and
//! Redis; messages enter at the durable queue, as a webhook puts them there, not over HTTP), with
//! a zero-latency fake LLM; and
//! what one idle conversation costs, in a fresh process, in memory and in Redis.
//!
//! Open loop: message `i` is due at `start + i / rate` and is sent then whatever happened to the
//! ones before it (each send is its own task), and its latency is measured from that scheduled
//! time to the moment the engine acknowledged (XACKed) it — so a slow pipeline shows up as
//! latency, never as a quietly lower rate. The achieved rate is reported beside the offered one.
//!
//! Needs the local Postgres and Redis (as the tests do). Makes a database of its own.
//! Run: `cargo run --release -p runtime --example pipeline_bench`
//! (`BENCH_QUICK=1` runs one short load; `--idle-child N` is the fresh process the idle
//! measurement starts.) Writes `bench-results/pipeline.json` at the repository root and prints a
//! summary.
#![expect(clippy::print_stdout, reason = "a benchmark prints its summary")]

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use e2e::llm::FakeLlm;
use runtime::app::{Application, Options};
use runtime::config::{Secret, Settings};
use runtime::engine::limiter::Limit;
use runtime::engine::turn::{EngineEvent, EngineSettings};
use runtime::store::{Store, conversations, tenants};
use shared::channel::{ChannelKind, InboundMessage, ReplyTarget, Sender};
use shared::{AgentId, ConnectionId, TenantId};
use uuid::Uuid;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    runtime::llm::install_crypto();
    // `KONSTRUCT_BENCH_LOG=warn` shows the engine's warnings (failed turns and the like).
    if let Ok(filter) = std::env::var("KONSTRUCT_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args
        .iter()
        .position(|a| a == "--idle-child")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
    {
        return actix::System::new().block_on(idle_child(n));
    }
    actix::System::new().block_on(run())
}

/// The server as `serve` builds it, on its own database and Redis key space, with a fake LLM
/// and limits no benchmark load reaches.
async fn server(
    app_url: &str,
    fake: &FakeLlm,
    max_connections: u32,
) -> anyhow::Result<Application> {
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.database.url = Secret::new(app_url.to_string());
    settings.database.max_connections = max_connections;
    settings.redis.key_prefix = format!("konstruct-bench:{}", Uuid::new_v4().simple());
    settings.auth.jwt_secret = Some(Secret::new(
        "bench-secret-bench-secret-bench-secret!".into(),
    ));
    settings.llm.openai_base_url = fake.base_url.clone();
    settings.llm.openai_api_key = Some(Secret::new("bench-key".into()));
    let unlimited = Limit {
        per_minute: 10_000_000,
        burst: 1_000_000,
    };
    Ok(Application::build(
        &settings,
        Options {
            start_engine: true,
            engine: Some(EngineSettings {
                tenant_limit: unlimited,
                connection_limit: unlimited,
                ..EngineSettings::default()
            }),
            keyring: Some(runtime::crypto::Keyring::random()),
            ..Options::default()
        },
    )
    .await?)
}

/// `BENCH_BUDGETS=1`: every tenant has a monthly budget, so every LLM call is admitted (its
/// worst case reserved) before and settled after; the results go to `pipeline-budgets.json`.
fn with_budgets() -> bool {
    std::env::var_os("BENCH_BUDGETS").is_some()
}

/// `count` tenants, each with an agent answering its web test chat.
async fn tenants_with_agents(
    store: &Store,
    count: usize,
) -> anyhow::Result<Vec<(TenantId, AgentId, ConnectionId)>> {
    let mut targets = Vec::new();
    for t in 0..count {
        let tag = &Uuid::new_v4().simple().to_string()[..8];
        let (tenant_row, tx) =
            tenants::create(store, &format!("bench-{t}-{tag}"), &format!("Bench {t}")).await?;
        tx.commit().await?;
        let tenant = tenant_row.id;
        let mut tx = store.tenant_tx(tenant).await?;
        let agent = runtime::store::agents::create(
            &mut tx,
            &runtime::store::agents::AgentFields {
                name: "Bench",
                job_title: "Benchmark",
                persona: "Terse",
                system_prompt: "Answer briefly.",
                job_description: "",
                model_preference: "",
                business_function: "",
                tools: serde_json::json!([]),
                escalation_rules: serde_json::json!([]),
                scope_guard: "whatsapp",
                in_scope_examples: serde_json::json!([]),
                ai_disclosure: "",
                cite_or_handoff: false,
                long_term_memory: true,
                max_tool_steps: None,
                turn_deadline_secs: None,
            },
        )
        .await?;
        let connection = conversations::ensure_web_connection(&mut tx, agent.id).await?;
        if with_budgets() {
            // A budget no load reaches: every call is reserved and settled, none refused.
            runtime::store::budgets::put(
                &mut tx,
                &runtime::store::budgets::NewBudget {
                    agent: None,
                    monthly_micro_usd: 1_000_000 * 1_000_000,
                    thresholds: &[50, 80, 100],
                    policy: "handoff",
                    downgrade_group: None,
                    count_own_keys: false,
                    webhook_url: None,
                },
            )
            .await?;
        }
        tx.commit().await?;
        targets.push((tenant, agent.id, connection));
    }
    Ok(targets)
}

fn message(
    (tenant, agent, connection): (TenantId, AgentId, ConnectionId),
    conversation: String,
    event: String,
) -> InboundMessage {
    InboundMessage {
        tenant_id: tenant,
        channel: ChannelKind::Web,
        connection_id: connection,
        agent_id: Some(agent),
        reply_to: ReplyTarget::Web { conversation },
        sender: Sender {
            id: "user:bench".into(),
            display_name: None,
        },
        text: format!("message {event}"),
        attachments: vec![],
        unsupported: None,
        provider_event_id: event,
        received_at: Utc::now(),
        origin: shared::channel::Origin::Customer,
    }
}

/// When each entry was acknowledged, as the engine reports it.
type Finished = Arc<Mutex<HashMap<String, Instant>>>;

fn record_finished(app: &Application) -> Finished {
    let finished: Finished = Arc::default();
    let mut events = app.deps.subscribe();
    let sink = finished.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(EngineEvent::Finished { event_id, .. }) => {
                    if let Ok(mut f) = sink.lock() {
                        f.insert(event_id, Instant::now());
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("  (the benchmark's listener missed {n} events)");
                }
                Err(_) => return,
            }
        }
    });
    finished
}

async fn wait_all(finished: &Finished, ids: &[String], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let done = finished
            .lock()
            .map(|f| ids.iter().filter(|k| f.contains_key(*k)).count())
            .unwrap_or(0);
        if done == ids.len() || Instant::now() > deadline {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run() -> anyhow::Result<()> {
    let app_url = support::database("load").await?;
    let fake = FakeLlm::start("bench-key")?;
    let app = server(&app_url, &fake, 16).await?;
    let targets = tenants_with_agents(&app.store, 8).await?;
    let finished = record_finished(&app);
    let ingest = app.ingest.clone();

    // Warm up: every tenant actor starts and every answer arrives before measuring.
    let warm_started = Instant::now();
    let mut warm_ids = Vec::new();
    for i in 0..200 {
        let m = message(
            targets[i % 8],
            format!("warm{}", i % 50),
            format!("warm-{i}"),
        );
        warm_ids.push(m.provider_event_id.clone());
        ingest.enqueue(&m).await?;
    }
    let warmed = wait_all(&finished, &warm_ids, Duration::from_secs(60)).await;
    anyhow::ensure!(
        warmed == warm_ids.len(),
        "warm-up: only {warmed} of 200 answered"
    );
    println!(
        "  warm-up: 200 messages over 8 new tenants answered in {:.0} ms",
        warm_started.elapsed().as_secs_f64() * 1000.0
    );

    let scenarios: &[(usize, usize)] = if std::env::var_os("BENCH_QUICK").is_some() {
        &[(8, 200)]
    } else {
        &[
            (1, 100),
            (1, 250),
            (1, 500),
            (1, 1000),
            (8, 250),
            (8, 500),
            (8, 1000),
            (8, 2000),
        ]
    };
    let mut loads = Vec::new();
    for (run, &(spread, rate)) in scenarios.iter().enumerate() {
        let seconds = 5;
        let total = rate * seconds;
        let gap = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now() + Duration::from_millis(50);
        let mut scheduled = Vec::with_capacity(total);
        let mut sends = Vec::with_capacity(total);
        for i in 0..total {
            let due = start + gap * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let m = message(
                targets[i % spread],
                format!("r{run}c{}", i % 500),
                format!("bench-{run}-{i}"),
            );
            scheduled.push((m.provider_event_id.clone(), due));
            let ingest = ingest.clone();
            // Sent at its time whatever the earlier sends are doing: the loop stays open.
            sends.push(tokio::spawn(async move { ingest.enqueue(&m).await }));
        }
        for send in sends {
            send.await??;
        }
        let ids: Vec<String> = scheduled.iter().map(|(id, _)| id.clone()).collect();
        wait_all(&finished, &ids, Duration::from_secs(120)).await;
        let done = finished.lock().map(|f| f.clone()).unwrap_or_default();
        let mut latencies: Vec<f64> = scheduled
            .iter()
            .filter_map(|(id, due)| {
                done.get(id)
                    .map(|at| at.saturating_duration_since(*due).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let last = scheduled
            .iter()
            .filter_map(|(id, _)| done.get(id))
            .max()
            .copied()
            .unwrap_or(start);
        let achieved = latencies.len() as f64 / (last - start).as_secs_f64().max(1e-9);
        println!(
            "  {spread} tenant(s), offered {rate:>5}/s: acknowledged {}/{total}, achieved {achieved:>7.0}/s, p50 {:>8.2} ms, p99 {:>8.2} ms, p99.9 {:>8.2} ms",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
        );
        loads.push(serde_json::json!({
            "tenants": spread,
            "offered_per_s": rate,
            "achieved_per_s": achieved,
            "sent": total,
            "acknowledged": latencies.len(),
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
            "p99_9_ms": percentile(&latencies, 0.999),
            "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
        }));
    }
    app.stop().await;

    // What an idle conversation costs, measured in a fresh process of its own.
    let idle_count = if std::env::var_os("BENCH_QUICK").is_some() {
        500
    } else {
        5_000
    };
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--idle-child", &idle_count.to_string()])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "the idle measurement failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let idle: serde_json::Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .unwrap_or_default(),
    )?;
    println!(
        "  {idle_count} idle conversations (fresh process): {:.0} bytes of memory each, {:.0} bytes of Redis state each",
        idle["process_bytes_per_conversation"]
            .as_f64()
            .unwrap_or(f64::NAN),
        idle["redis_bytes_per_conversation"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );

    // The headline: the highest load answered in full with p99 under 10 ms, else the best.
    let best = loads
        .iter()
        .filter(|l| l["acknowledged"] == l["sent"])
        .max_by(|a, b| {
            a["achieved_per_s"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["achieved_per_s"].as_f64().unwrap_or(0.0))
        })
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let name = if with_budgets() {
        "pipeline-budgets"
    } else {
        "pipeline"
    };
    let result = serde_json::json!({
        "name": name,
        "budgets": with_budgets(),
        "p50_ms": best["p50_ms"],
        "p99_ms": best["p99_ms"],
        "throughput_per_s": best["achieved_per_s"],
        "loads": loads,
        "idle_conversation": idle,
        "note": "open loop through Application::build: latency from each message's scheduled send time to its XACK (reply recorded, sent through the web channel, marked, acknowledged), with a zero-latency fake LLM, on one machine shared by Postgres, Redis, the server and the load; headline = the highest load acknowledged in full",
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&result)?,
    )?;
    println!("  written to bench-results/{name}.json");
    std::process::exit(0);
}

/// The fresh process: `n` conversations, each answered once (so each has its memory window in
/// Redis and a live conversation actor), then idle; memory and Redis measured before and after.
async fn idle_child(n: usize) -> anyhow::Result<()> {
    let app_url = support::database("idle").await?;
    let fake = FakeLlm::start("bench-key")?;
    let app = server(&app_url, &fake, 8).await?;
    let targets = tenants_with_agents(&app.store, 1).await?;
    let finished = record_finished(&app);
    // One conversation first, so everything shared (actors, pools, caches) exists before.
    let first = message(targets[0], "warm".into(), "warm-0".into());
    app.ingest.enqueue(&first).await?;
    wait_all(&finished, &["warm-0".into()], Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redis_before = redis_bytes(&app).await?;
    let rss_before = rss_bytes();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let m = message(targets[0], format!("idle{i}"), format!("idle-{i}"));
        ids.push(m.provider_event_id.clone());
        app.ingest.enqueue(&m).await?;
    }
    let done = wait_all(&finished, &ids, Duration::from_secs(600)).await;
    anyhow::ensure!(done == n, "only {done} of {n} conversations answered");
    // Let acknowledged stream entries be trimmed (every renewal) so only state remains.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rss_after = rss_bytes();
    let (state_keys, state_bytes) = conversation_state(&app).await?;
    let redis_after = redis_bytes(&app).await?;
    let result = serde_json::json!({
        "conversations": n,
        "process_bytes_per_conversation": rss_after.saturating_sub(rss_before) as f64 / n as f64,
        "redis_bytes_per_conversation": state_bytes as f64 / state_keys.max(1) as f64,
        "redis_bytes_all_keys_per_conversation": redis_after.saturating_sub(redis_before) as f64 / n as f64,
        "rss_before_mib": rss_before >> 20,
        "rss_after_mib": rss_after >> 20,
        "conversation_state_keys": state_keys,
        "note": "process: resident memory of a fresh server process with n live, idle conversation actors; redis: MEMORY USAGE of each conversation's state (its memory window), and of all the server's keys (state plus the per-message dedupe keys, which expire after an hour)",
    });
    println!("{result}");
    std::process::exit(0);
}

/// The server's keys under its prefix: (how many, bytes) of those matching `pattern`.
async fn usage_of(app: &Application, pattern: &str) -> anyhow::Result<(u64, u64)> {
    const SCRIPT: &str = "local res = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[1], 'COUNT', 1000) \
        local keys, bytes = 0, 0 \
        for _, k in ipairs(res[2]) do \
          keys = keys + 1 \
          bytes = bytes + (redis.call('MEMORY', 'USAGE', k) or 0) \
        end \
        return {res[1], keys, bytes}";
    let pattern = app.redis.key(pattern);
    let (mut cursor, mut keys, mut bytes) = ("0".to_string(), 0u64, 0u64);
    loop {
        let (next, k, b): (String, i64, i64) = app
            .redis
            .eval(SCRIPT, vec![], vec![pattern.clone(), cursor])
            .await?;
        keys += u64::try_from(k).unwrap_or(0);
        bytes += u64::try_from(b).unwrap_or(0);
        if next == "0" {
            return Ok((keys, bytes));
        }
        cursor = next;
    }
}

async fn redis_bytes(app: &Application) -> anyhow::Result<u64> {
    Ok(usage_of(app, "*").await?.1)
}

async fn conversation_state(app: &Application) -> anyhow::Result<(u64, u64)> {
    usage_of(app, "*:conversation:*").await
}
