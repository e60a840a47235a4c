//! Benchmark: how much the LLM pool adds to a call, against a zero-latency fake provider.
//!
//! Each round sends the same request twice, in alternating order: once straight to the fake with a
//! bare HTTP client (the baseline: HTTP, JSON and the fake's own work) and once through the pool
//! (mapping, routing, health bookkeeping, parsing). The pool's overhead is reported as the
//! distribution of the per-round differences (pool call minus the bare call beside it), negative
//! values included — not as a difference of two percentiles — beside the distributions of both
//! kinds of call. A second phase measures throughput with 32 calls in flight.
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

/// A distribution: its percentiles, mean, extremes, as JSON (milliseconds).
fn distribution(values: &[f64]) -> serde_json::Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = sorted.iter().sum::<f64>() / sorted.len().max(1) as f64;
    serde_json::json!({
        "n": sorted.len(),
        "min": sorted.first().copied().unwrap_or(f64::NAN),
        "p1": percentile(&sorted, 0.01),
        "p10": percentile(&sorted, 0.10),
        "p50": percentile(&sorted, 0.50),
        "p90": percentile(&sorted, 0.90),
        "p99": percentile(&sorted, 0.99),
        "p99_9": percentile(&sorted, 0.999),
        "max": sorted.last().copied().unwrap_or(f64::NAN),
        "mean": mean,
    })
}

fn line(name: &str, d: &serde_json::Value) -> String {
    let f = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "  {name:<15} p1 {:>7.3}  p50 {:>7.3}  p90 {:>7.3}  p99 {:>7.3}  p99.9 {:>7.3}  max {:>7.3}  mean {:>7.3} ms",
        f("p1"),
        f("p50"),
        f("p90"),
        f("p99"),
        f("p99_9"),
        f("max"),
        f("mean")
    )
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
    let mut overhead = Vec::with_capacity(calls);
    for round in 0..calls {
        let bare = async {
            let t = Instant::now();
            let res = raw
                .post(&url)
                .bearer_auth("bench-key")
                .json(&raw_body)
                .send()
                .await?;
            let _: serde_json::Value = res.json().await?;
            Ok::<_, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
        };
        let through_pool = async {
            let t = Instant::now();
            pool.chat(None, &creds, &request).await?;
            Ok::<_, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
        };
        // Alternate which goes first, so neither always finds the other's warm caches.
        let (d, p) = if round % 2 == 0 {
            let d = bare.await?;
            (d, through_pool.await?)
        } else {
            let p = through_pool.await?;
            (bare.await?, p)
        };
        direct.push(d);
        pooled.push(p);
        overhead.push(p - d);
    }
    let overhead_dist = distribution(&overhead);
    let pooled_dist = distribution(&pooled);
    let direct_dist = distribution(&direct);

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
        "p50_ms": overhead_dist["p50"],
        "p99_ms": overhead_dist["p99"],
        "throughput_per_s": throughput,
        "overhead_ms": overhead_dist,
        "pool_call_ms": pooled_dist,
        "direct_call_ms": direct_dist,
        "concurrency_for_throughput": in_flight,
        "note": "overhead_ms is the distribution of per-round differences, pool call minus the bare HTTP call made beside it to the same zero-latency fake (negative when the pool call happened to be faster); p50_ms/p99_ms are its p50/p99"
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("llm_pool.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    println!("llm_pool: {calls} rounds against a zero-latency fake (ms)");
    println!("{}", line("pool overhead", &overhead_dist));
    println!("{}", line("pool call", &pooled_dist));
    println!("{}", line("direct call", &direct_dist));
    println!(
        "  throughput      {throughput:.0} calls/s through the pool ({in_flight} in flight)\n  \
         written to bench-results/llm_pool.json"
    );
    Ok(())
}
