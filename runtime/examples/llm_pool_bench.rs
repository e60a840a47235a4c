//! Benchmark: how much the LLM pool adds to a call, against a zero-latency fake provider.
//!
//! Each round sends the same request twice: once straight to the fake with a bare HTTP client
//! (the baseline: HTTP, JSON and the fake's own work) and once through the pool (mapping, routing,
//! health bookkeeping, parsing). The pool's overhead is the difference. A second phase measures
//! throughput with 32 calls in flight.
//!
//! Run: `cargo run --release -p runtime --example llm_pool_bench [CALLS]`
//! Writes `bench-results/llm_pool.json` at the repository root and prints a summary.
#![expect(clippy::print_stdout, reason = "a benchmark prints its summary")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::llm::FakeLlm;
use runtime::config::Secret;
use runtime::llm::pool::{
    Credentials, Deployment, ModelGroup, Pool, PoolSettings, ProviderKind, SystemClock,
};
use runtime::llm::types::{ChatRequest, Message};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000);
    let fake = FakeLlm::start("bench-key")?;
    let deployment = Deployment {
        id: "bench".into(),
        provider: ProviderKind::OpenAi,
        base_url: fake.base_url.clone(),
        model: "bench-model".into(),
        api_key: Some(Secret::new("bench-key".into())),
        byo_slot: None,
        weight: 1,
        timeout: Duration::from_secs(5),
        max_retries: 0,
    };
    let pool = Arc::new(Pool::new(
        vec![ModelGroup {
            name: "bench".into(),
            deployments: vec![deployment],
        }],
        PoolSettings::default(),
        Arc::new(SystemClock),
    ));
    let request = ChatRequest {
        system: Some("You are a benchmark.".into()),
        messages: vec![Message::user("Say something short.")],
        tools: vec![],
        temperature: None,
        max_tokens: 64,
    };
    let raw_body = runtime::llm::openai::body("bench-model", &request);
    let raw = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", fake.base_url);
    let creds = Credentials::default();

    // Warm up connections on both paths.
    for _ in 0..200 {
        pool.chat(None, &creds, &request).await?;
        raw.post(&url)
            .bearer_auth("bench-key")
            .json(&raw_body)
            .send()
            .await?
            .bytes()
            .await?;
    }

    let mut direct = Vec::with_capacity(calls);
    let mut pooled = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let res = raw
            .post(&url)
            .bearer_auth("bench-key")
            .json(&raw_body)
            .send()
            .await?;
        let _: serde_json::Value = res.json().await?;
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        pool.chat(None, &creds, &request).await?;
        pooled.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    direct.sort_by(f64::total_cmp);
    pooled.sort_by(f64::total_cmp);
    let overhead_p50 = (percentile(&pooled, 0.5) - percentile(&direct, 0.5)).max(0.0);
    let overhead_p99 = (percentile(&pooled, 0.99) - percentile(&direct, 0.99)).max(0.0);

    // Throughput: 32 calls in flight through the pool.
    let in_flight = 32;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..in_flight {
        let (pool, request) = (pool.clone(), request.clone());
        let share = calls / in_flight + usize::from(w < calls % in_flight);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                pool.chat(None, &Credentials::default(), &request).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let throughput = calls as f64 / started.elapsed().as_secs_f64();

    let result = serde_json::json!({
        "name": "llm_pool",
        "calls": calls,
        "p50_ms": overhead_p50,
        "p99_ms": overhead_p99,
        "throughput_per_s": throughput,
        "pool_call_p50_ms": percentile(&pooled, 0.5),
        "pool_call_p99_ms": percentile(&pooled, 0.99),
        "direct_call_p50_ms": percentile(&direct, 0.5),
        "direct_call_p99_ms": percentile(&direct, 0.99),
        "concurrency_for_throughput": in_flight,
        "note": "p50_ms/p99_ms are the pool's overhead: pool call minus a bare HTTP call to the same zero-latency fake"
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("llm_pool.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    println!(
        "llm_pool: {calls} calls against a zero-latency fake\n  \
         pool overhead  p50 {overhead_p50:.3} ms   p99 {overhead_p99:.3} ms\n  \
         pool call      p50 {:.3} ms   p99 {:.3} ms\n  \
         direct call    p50 {:.3} ms   p99 {:.3} ms\n  \
         throughput     {throughput:.0} calls/s through the pool ({in_flight} in flight)\n  \
         written to bench-results/llm_pool.json",
        percentile(&pooled, 0.5),
        percentile(&pooled, 0.99),
        percentile(&direct, 0.5),
        percentile(&direct, 0.99),
    );
    Ok(())
}
