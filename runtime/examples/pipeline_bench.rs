//! Benchmark: the message pipeline from ingest to reply sent, with a zero-latency fake LLM and a
//! fake channel that timestamps every reply, at several loads; and the memory one idle
//! conversation actor costs.
//!
//! Needs the local Postgres and Redis (as the tests do). Makes a database of its own.
//! Run: `cargo run --release -p runtime --example pipeline_bench`
//! Writes `bench-results/pipeline.json` at the repository root and prints a summary.
#![expect(clippy::print_stdout, reason = "a benchmark prints its summary")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use e2e::llm::FakeLlm;
use futures_util::future::BoxFuture;
use runtime::config::{RedisSettings, Secret, Settings};
use runtime::crypto::Keyring;
use runtime::engine::actors::ConversationActor;
use runtime::engine::consumer;
use runtime::engine::ingest::{Ingest, IngestSettings};
use runtime::engine::limiter::Limit;
use runtime::engine::reply::SinkError;
use runtime::engine::turn::{EngineDeps, EngineSettings, ReplySink};
use runtime::llm::pool::Pool;
use runtime::redis::Redis;
use runtime::store::{Store, bootstrap, conversations, tenants};
use shared::TenantId;
use shared::channel::{ChannelKind, InboundMessage, OutboundReply, Sender};
use uuid::Uuid;

/// The fake channel: remembers when each reply was sent.
#[derive(Default, Clone)]
struct TimingSink(Arc<Mutex<HashMap<String, Instant>>>);

impl ReplySink for TimingSink {
    fn send(&self, reply: OutboundReply) -> BoxFuture<'static, Result<Option<String>, SinkError>> {
        if let Ok(mut sent) = self.0.lock() {
            sent.insert(reply.in_reply_to, Instant::now());
        }
        Box::pin(async { Ok(None) })
    }
}

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
    actix::System::new().block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let defaults = Settings::default();
    let db = format!(
        "konstruct_test_{}_bench",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let app_url = format!("postgres://konstruct_app:konstruct_app@127.0.0.1:5432/{db}");
    let owner_url = format!("postgres://konstruct_owner:konstruct_owner@127.0.0.1:5432/{db}");
    bootstrap::setup_database(defaults.database.admin_url.expose(), &owner_url, &app_url).await?;
    runtime::store::migrate(&owner_url).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&app_url)
        .await?;
    let store = Store::from_pool(pool);
    let (redis, _task) = Redis::connect(&RedisSettings {
        url: Secret::new("redis://127.0.0.1:6379".into()),
        key_prefix: format!("konstruct-bench:{}", Uuid::new_v4().simple()),
    })?;

    let fake = FakeLlm::start("bench-key")?;
    let mut llm = defaults.llm.clone();
    llm.openai_base_url = fake.base_url.clone();
    llm.openai_api_key = Some(Secret::new("bench-key".into()));
    // Eight tenants, each with an agent on the web channel.
    let mut targets: Vec<(TenantId, Uuid, Uuid)> = Vec::new();
    for t in 0..8 {
        let (tenant_row, tx) =
            tenants::create(&store, &format!("bench-{t}"), &format!("Bench {t}")).await?;
        tx.commit().await?;
        let tenant = TenantId::from_uuid(tenant_row.id);
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
            },
        )
        .await?;
        let connection = conversations::ensure_web_connection(&mut tx, agent.id).await?;
        tx.commit().await?;
        targets.push((tenant, agent.id, connection));
    }

    let sink = TimingSink::default();
    let sinks: HashMap<ChannelKind, Arc<dyn ReplySink>> = HashMap::from([(
        ChannelKind::Web,
        Arc::new(sink.clone()) as Arc<dyn ReplySink>,
    )]);
    let ingest = Ingest::new(redis.clone(), IngestSettings::default());
    let deps = EngineDeps::new(
        store.clone(),
        redis.clone(),
        ingest.clone(),
        Arc::new(Pool::from_settings(&llm)),
        Arc::new(Keyring::random()),
        sinks,
        EngineSettings {
            tenant_limit: Limit {
                per_minute: 10_000_000,
                burst: 1_000_000,
            },
            connection_limit: Limit {
                per_minute: 10_000_000,
                burst: 1_000_000,
            },
            ..EngineSettings::default()
        },
    );
    consumer::start(deps.clone(), "bench-node");

    // Message `i` of a run spread over the first `spread` tenants.
    let message = |i: usize, run: usize, spread: usize| {
        let (tenant, agent, connection) = targets[i % spread];
        InboundMessage {
            tenant_id: tenant,
            channel: ChannelKind::Web,
            connection_id: connection,
            agent_id: Some(agent),
            conversation_key: format!("r{run}c{}", i % 500),
            sender: Sender {
                id: "bench".into(),
                display_name: None,
            },
            text: format!("message {i}"),
            attachments: vec![],
            provider_event_id: format!("bench-{run}-{i}"),
            received_at: Utc::now(),
        }
    };

    // Warm up: every tenant actor starts and every answer arrives before measuring.
    let warm_started = Instant::now();
    let mut warm_ids = Vec::new();
    for i in 0..200 {
        let m = message(i, 0, 8);
        warm_ids.push(m.provider_event_id.clone());
        ingest.enqueue(&m).await?;
    }
    loop {
        let done = sink
            .0
            .lock()
            .map(|s| warm_ids.iter().filter(|k| s.contains_key(*k)).count())
            .unwrap_or(0);
        if done == warm_ids.len() {
            break;
        }
        if warm_started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!(
                "warm-up: only {done} of {} answered in 60 s",
                warm_ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  warm-up: 200 messages over 8 new tenants answered in {:.0} ms",
        warm_started.elapsed().as_secs_f64() * 1000.0
    );

    let mut loads = Vec::new();
    // `BENCH_QUICK=1` runs one short multi-tenant load (a check that the bench works).
    let scenarios: &[(usize, usize)] = if std::env::var_os("BENCH_QUICK").is_some() {
        &[(8, 200)]
    } else {
        &[
            (1, 100),
            (1, 250),
            (1, 500),
            (1, 1000),
            (8, 500),
            (8, 1000),
            (8, 2000),
        ]
    };
    for (run, &(spread, rate)) in scenarios.iter().enumerate() {
        let run = run + 1;
        let seconds = 3;
        let total = rate * seconds;
        let gap = Duration::from_secs_f64(1.0 / rate as f64);
        let mut enqueued = HashMap::with_capacity(total);
        let started = Instant::now();
        for i in 0..total {
            let due = started + gap * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let m = message(i, run, spread);
            enqueued.insert(m.provider_event_id.clone(), Instant::now());
            ingest.enqueue(&m).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = sink
                .0
                .lock()
                .map(|s| enqueued.keys().filter(|k| s.contains_key(*k)).count())
                .unwrap_or(0);
            if done == total || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let finished = Instant::now();
        let sent = sink.0.lock().map(|s| s.clone()).unwrap_or_default();
        let mut latencies: Vec<f64> = enqueued
            .iter()
            .filter_map(|(k, t0)| sent.get(k).map(|t1| (*t1 - *t0).as_secs_f64() * 1000.0))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let last_reply = enqueued
            .keys()
            .filter_map(|k| sent.get(k))
            .max()
            .copied()
            .unwrap_or(finished);
        let throughput = latencies.len() as f64 / (last_reply - started).as_secs_f64();
        println!(
            "  {spread} tenant(s), offered {rate:>5}/s: answered {}/{total}, {throughput:>7.0} msg/s, p50 {:>8.2} ms, p99 {:>8.2} ms",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        );
        loads.push(serde_json::json!({
            "tenants": spread,
            "offered_per_s": rate,
            "answered": latencies.len(),
            "sent": total,
            "throughput_per_s": throughput,
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
        }));
    }

    // Idle conversations: what one actor costs in resident memory.
    let idle = 100_000;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shared_deps = Arc::new(deps.clone());
    let before = rss_bytes();
    let mut actors = Vec::with_capacity(idle);
    for _ in 0..idle {
        actors.push(ConversationActor::start_detached(shared_deps.clone()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes();
    let per_conversation = (after.saturating_sub(before)) as f64 / idle as f64;
    println!(
        "  {idle} idle conversation actors: {:.0} bytes each (RSS {} → {} MiB)",
        per_conversation,
        before >> 20,
        after >> 20
    );
    drop(actors);

    let best = loads
        .iter()
        .filter(|l| l["answered"] == l["sent"])
        .max_by(|a, b| {
            a["throughput_per_s"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["throughput_per_s"].as_f64().unwrap_or(0.0))
        })
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let result = serde_json::json!({
        "name": "pipeline",
        "p50_ms": best["p50_ms"],
        "p99_ms": best["p99_ms"],
        "throughput_per_s": best["throughput_per_s"],
        "bytes_per_idle_conversation": per_conversation,
        "loads": loads,
        "tenants": best["tenants"],
        "note": "ingest (Redis) to reply sent, through actors, Postgres records, audit and metering, with a zero-latency fake LLM; headline = highest load fully answered (any tenant spread)",
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("pipeline.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    println!("  written to bench-results/pipeline.json");
    std::process::exit(0);
}
