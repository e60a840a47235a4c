//! Benchmark: WhatsApp webhook to reply, open loop, over real HTTP: the fake Graph API posts
//! signed webhooks (one user message each, every one from its own customer) to the application
//! as `konstruct serve` builds it; the reply goes back out through `POST /{number}/messages` to
//! the same fake. A zero-latency fake LLM answers; the scope guard runs as on any WhatsApp
//! number (its model is loaded by one warm-up message first).
//!
//! Open loop: message `i` is due at `start + i / rate` and is posted then, whatever happened to
//! the ones before it; its latency runs from that scheduled time to the moment the fake Graph API
//! received the reply — so a slow pipeline shows up as latency, never as a quietly lower rate.
//!
//! Needs the local Postgres and Redis. Run:
//! `cargo run --release -p runtime --example whatsapp_bench` (`BENCH_QUICK=1`: a short load).
//! Writes `bench-results/whatsapp.json` at the repository root and prints a summary.
#![expect(clippy::print_stdout, reason = "a benchmark prints its summary")]

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::llm::FakeLlm;
use e2e::whatsapp::{FakeGraph, Number};
use runtime::app::{Application, Options};
use runtime::channels::ConnectionSettings;
use runtime::channels::whatsapp::{NumberSettings, token_slot};
use runtime::config::{Secret, Settings};
use runtime::engine::limiter::Limit;
use runtime::engine::turn::EngineSettings;
use runtime::store::channels::NewConnection;
use runtime::store::tenants;
use shared::ConnectionId;
use shared::channel::ChannelKind;
use uuid::Uuid;

const APP_SECRET: &str = "benchappsecretbenchappsecret0001";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    runtime::llm::install_crypto();
    if let Ok(filter) = std::env::var("KONSTRUCT_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    actix::System::new().block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let (rate, seconds) = if quick { (20.0, 3.0) } else { (50.0, 20.0) };
    let llm = FakeLlm::start("bench-key")?;
    let graph = std::sync::Arc::new(FakeGraph::start()?);
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.database.url = Secret::new(support::database("whatsapp").await?);
    settings.redis.key_prefix = format!("konstruct-bench:{}", Uuid::new_v4().simple());
    settings.auth.jwt_secret = Some(Secret::new(
        "bench-secret-bench-secret-bench-secret!".into(),
    ));
    settings.llm.openai_base_url = llm.base_url.clone();
    settings.llm.openai_api_key = Some(Secret::new("bench-key".into()));
    settings.whatsapp.graph_url = graph.base_url.clone();
    settings.whatsapp.app_secret = Some(Secret::new(APP_SECRET.into()));
    settings.whatsapp.verify_token = Some(Secret::new("bench-verify-token-0001".into()));
    let unlimited = Limit {
        per_minute: 10_000_000,
        burst: 1_000_000,
    };
    let app = Application::build(
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
    .await?;
    graph.webhook(
        format!("http://127.0.0.1:{}/webhooks/whatsapp", app.port),
        APP_SECRET,
    );

    // One tenant, one agent with a business function, one connected number.
    let (tenant_row, tx) = tenants::create(&app.store, "bench-wa", "Bench WhatsApp").await?;
    tx.commit().await?;
    let tenant = tenant_row.id;
    let number = Number {
        phone_number_id: "100000000000001".into(),
        waba_id: "200000000000001".into(),
        display_phone_number: "+1 555-010-0001".into(),
        verified_name: "Bench Shoes".into(),
        token: format!("EAAG{}", Uuid::new_v4().simple()),
    };
    graph.add_number(number.clone());
    let mut tx = app.store.tenant_tx(tenant).await?;
    let agent = runtime::store::agents::create(
        &mut tx,
        &runtime::store::agents::AgentFields {
            name: "Bench",
            job_title: "Support",
            persona: "",
            system_prompt: "Answer briefly.",
            job_description: "",
            model_preference: "",
            business_function: "Customer support for an online shoe store: orders, shipping \
                                and returns",
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
    let id = ConnectionId::from_uuid(Uuid::new_v4());
    let (sealed, version) = app.keyring.seal(tenant, &token_slot(id), &number.token)?;
    let settings_json = ConnectionSettings::Whatsapp(NumberSettings {
        phone_number_id: number.phone_number_id.clone(),
        waba_id: number.waba_id.clone(),
        display_phone_number: number.display_phone_number.clone(),
        verified_name: number.verified_name.clone(),
        quality_rating: None,
        token_hint: "…0000".into(),
        templates: Vec::new(),
        own_app: None,
    })
    .to_json();
    runtime::store::channels::insert(
        &mut tx,
        &NewConnection {
            id,
            kind: ChannelKind::Whatsapp,
            external_id: &number.phone_number_id,
            display_name: "Bench Shoes",
            agent_id: agent.id,
            settings: settings_json,
            secret_ciphertext: &sealed,
            secret_key_version: version,
        },
    )
    .await?;
    tx.commit().await?;

    // Warm-up: loads the scope check's model and the tenant's snapshot.
    let warm = graph
        .inbound(&number.phone_number_id)
        .text("19990000000", "Warm", "where is my order?")
        .build();
    graph.deliver(&warm).await;
    graph.wait_sent(1, Duration::from_secs(120)).await;

    let count = (rate * seconds) as usize;
    let start = Instant::now() + Duration::from_millis(200);
    let mut scheduled: HashMap<String, Instant> = HashMap::new();
    let mut posts = Vec::with_capacity(count);
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let from = format!("1555{:07}", i);
        scheduled.insert(from.clone(), due);
        let payload = graph
            .inbound(&number.phone_number_id)
            .text(&from, "Customer", &format!("where is my order {i}?"))
            .build();
        let graph = graph.clone();
        posts.push(tokio::spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            graph.deliver(&payload).await
        }));
    }
    let mut refused = 0;
    for post in posts {
        if post.await? != 200 {
            refused += 1;
        }
    }
    let sent = graph.wait_sent(count + 1, Duration::from_secs(300)).await;
    let finished_at = Instant::now();
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|s| {
            scheduled
                .get(&s.to)
                .map(|due| s.at.saturating_duration_since(*due).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let achieved = latencies.len() as f64 / (finished_at - start).as_secs_f64();
    let result = serde_json::json!({
        "benchmark": "whatsapp_webhook_to_send",
        "offered_per_s": rate,
        "seconds": seconds,
        "messages": count,
        "replies": latencies.len(),
        "refused_webhooks": refused,
        "p50_ms": percentile(&latencies, 0.50),
        "p90_ms": percentile(&latencies, 0.90),
        "p99_ms": percentile(&latencies, 0.99),
        "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
        "throughput_per_s": achieved,
    });
    println!(
        "whatsapp webhook → send, open loop at {rate}/s for {seconds} s ({count} messages, each \
         its own customer): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} replies, \
         {refused} webhooks refused",
        result["p50_ms"].as_f64().unwrap_or(f64::NAN),
        result["p90_ms"].as_f64().unwrap_or(f64::NAN),
        result["p99_ms"].as_f64().unwrap_or(f64::NAN),
        result["max_ms"].as_f64().unwrap_or(f64::NAN),
        latencies.len(),
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("whatsapp.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    println!("  written to bench-results/whatsapp.json");
    // The pools' background tasks outlive the actix system otherwise.
    std::process::exit(0);
}
