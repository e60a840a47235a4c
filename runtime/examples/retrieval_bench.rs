//! Benchmark: the knowledge base's three costs.
//!
//! 1. Embedding throughput of the shipped local model (passages of ~90 words, batches of 64,
//!    on the blocking pool as indexing runs them): passages per second.
//! 2. Search latency of the embedded vector engine at 10k and 100k passages spread over 100
//!    tenants (synthetic unit vectors of the local model's 384 dimensions; every search filtered
//!    by its tenant, as the store layer always does), open loop: query `i` is due at
//!    `start + i / rate` and its latency runs from that time to its answer.
//! 3. Upload to ready of a 50-page PDF through the real server (HTTP upload, durable job,
//!    extraction, chunking, embedding, indexing), against the local Postgres and Redis.
//!
//! Run: `cargo run --release -p runtime --example retrieval_bench` (`BENCH_QUICK=1`: smaller).
//! Writes `bench-results/retrieval.json` at the repository root and prints a summary.
#![expect(clippy::print_stdout, reason = "a benchmark prints its summary")]

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::app::{Application, Options};
use runtime::config::{Secret, Settings};
use runtime::embed::{Embedder, Local};
use runtime::store::tenants;
use runtime::vector::edge::EdgeStore;
use runtime::vector::{Collection, Kind, Point, Search, VectorStore};
use shared::TenantId;
use uuid::Uuid;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// A small deterministic generator (xorshift), so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim)
            .map(|_| (self.next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.into_iter().map(|x| x / norm).collect()
    }
}

const WORDS: &[&str] = &[
    "order",
    "refund",
    "shipping",
    "warranty",
    "invoice",
    "account",
    "password",
    "delivery",
    "return",
    "customer",
    "support",
    "product",
    "payment",
    "subscription",
    "address",
    "tracking",
    "discount",
    "exchange",
    "damaged",
    "replacement",
    "within",
    "days",
    "business",
    "policy",
];

fn passage(rng: &mut Rng) -> String {
    (0..90)
        .map(|_| WORDS[(rng.next() % WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> anyhow::Result<()> {
    runtime::llm::install_crypto();
    actix::System::new().block_on(run())
}

async fn embedding_throughput(quick: bool) -> anyhow::Result<serde_json::Value> {
    let model = Local::shared()?;
    let mut rng = Rng(7);
    let n = if quick { 128 } else { 1024 };
    let texts: Vec<String> = (0..n).map(|_| passage(&mut rng)).collect();
    // Warm: the weights load on first use.
    model.embed(&texts[..4]).await?;
    let started = Instant::now();
    let vectors = model.embed(&texts).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(vectors.len() == n);
    Ok(serde_json::json!({
        "model": model.model(),
        "passages": n,
        "seconds": secs,
        "passages_per_s": n as f64 / secs,
    }))
}

async fn search_latency(
    store: &Arc<EdgeStore>,
    collection: &Collection,
    tenants: &[TenantId],
    rate: f64,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let mut rng = Rng(99);
    let count = (rate * seconds) as usize;
    let queries: Vec<(TenantId, Vec<f32>)> = (0..count)
        .map(|_| {
            let t = tenants[(rng.next() % tenants.len() as u64) as usize];
            (t, rng.unit_vector(collection.dimension()))
        })
        .collect();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for (i, (tenant, vector)) in queries.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let store = store.clone();
        let collection = collection.clone();
        handles.push(tokio::spawn(async move {
            let hits = store
                .search(&collection, &Search::new(tenant, Kind::Chunk, vector, 5))
                .await;
            (due.elapsed().as_secs_f64() * 1000.0, hits.map(|h| h.len()))
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    let mut empty = 0;
    for h in handles {
        let (ms, hits) = h.await?;
        if hits? == 0 {
            empty += 1;
        }
        latencies.push(ms);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "rate_per_s": rate,
        "queries": count,
        "p50_ms": percentile(&latencies, 0.50),
        "p90_ms": percentile(&latencies, 0.90),
        "p99_ms": percentile(&latencies, 0.99),
        "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
        "empty_answers": empty,
    }))
}

async fn fill(
    store: &EdgeStore,
    collection: &Collection,
    tenants: &[TenantId],
    from: usize,
    to: usize,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let per_tenant = (to - from) / tenants.len();
    for tenant in tenants {
        let points: Vec<Point> = (0..per_tenant)
            .map(|_| Point {
                id: Uuid::new_v4(),
                kind: Kind::Chunk,
                source: Uuid::from_u128(u128::from(rng.next() % 50)),
                vector: rng.unit_vector(collection.dimension()),
            })
            .collect();
        for batch in points.chunks(1000) {
            store.upsert(collection, *tenant, batch.to_vec()).await?;
        }
    }
    Ok(())
}

/// Upload → ready of a 50-page PDF through the real server.
async fn pdf_to_ready(pages: usize) -> anyhow::Result<serde_json::Value> {
    let data_dir = std::env::temp_dir().join(format!("konstruct-bench-{}", Uuid::new_v4()));
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.database.url = Secret::new(support::database("retrieval").await?);
    settings.redis.key_prefix = format!("konstruct-bench:{}", Uuid::new_v4().simple());
    settings.auth.jwt_secret = Some(Secret::new(
        "bench-secret-bench-secret-bench-secret!".into(),
    ));
    settings.knowledge.data_dir = data_dir.clone();
    let app = Application::build(
        &settings,
        Options {
            keyring: Some(runtime::crypto::Keyring::random()),
            jobs: Some((
                runtime::jobs::RunnerSettings::from_config(&settings.jobs),
                runtime::jobs::Registry::builtin()?,
            )),
            ..Options::default()
        },
    )
    .await?;
    let (tenant, tx) = tenants::create(&app.store, "bench-kb", "Bench Knowledge").await?;
    tx.commit().await?;
    let admin = runtime::store::users::create(
        &app.store,
        "bench-kb@example.com",
        "Bench",
        "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzYWx0$unusable",
        false,
    )
    .await?;
    let mut tx = app.store.tenant_tx(tenant.id).await?;
    runtime::store::users::add_member(&mut tx, admin.id, shared::auth::TenantRole::CustomerAdmin)
        .await?;
    tx.commit().await?;
    let auth = app.auth_state();
    let claims = auth
        .keys
        .new_session(admin.id, admin.auth_version, chrono::Utc::now());
    // As sign-in issues it: renewed once, so it carries its expiry.
    let token = auth
        .keys
        .sign(&auth.keys.renew(&claims, chrono::Utc::now()))?;

    let mut rng = Rng(3);
    let mut pdf = e2e::pdf::PdfBuilder::new().title("Bench handbook");
    let lines: Vec<Vec<String>> = (0..pages)
        .map(|_| {
            (0..40)
                .map(|i| {
                    if i % 8 == 7 {
                        String::new()
                    } else {
                        (0..11)
                            .map(|_| WORDS[(rng.next() % WORDS.len() as u64) as usize])
                            .collect::<Vec<_>>()
                            .join(" ")
                    }
                })
                .collect()
        })
        .collect();
    for page in &lines {
        let refs: Vec<&str> = page.iter().map(String::as_str).collect();
        pdf = pdf.page(&refs);
    }
    let bytes = pdf.build();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", app.port);
    let started = Instant::now();
    let res = http
        .post(format!(
            "{base}/api/tenants/{}/knowledge?filename=handbook.pdf",
            tenant.id
        ))
        .bearer_auth(&token)
        .body(bytes.clone())
        .send()
        .await?;
    anyhow::ensure!(res.status() == 202, "upload answered {}", res.status());
    let doc: shared::knowledge::Document = res.json().await?;
    let ready = loop {
        let doc: shared::knowledge::Document = http
            .get(format!(
                "{base}/api/tenants/{}/knowledge/{}",
                tenant.id, doc.id
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if !doc.status.is_active() {
            break doc;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        ready.status == shared::knowledge::DocumentStatus::Ready,
        "the PDF failed: {:?}",
        ready.error
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(serde_json::json!({
        "pages": pages,
        "bytes": bytes.len(),
        "passages": ready.chunks,
        "seconds_to_ready": secs,
    }))
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let embedding = embedding_throughput(quick).await?;
    println!(
        "local embeddings: {:.0} passages/s ({} passages of ~90 words)",
        embedding["passages_per_s"].as_f64().unwrap_or(f64::NAN),
        embedding["passages"]
    );

    let dir = std::env::temp_dir().join(format!("konstruct-bench-vectors-{}", Uuid::new_v4()));
    let store = Arc::new(EdgeStore::open(&dir)?);
    let collection = Collection::new("bench-model", 384)?;
    store.ensure(&collection).await?;
    let tenants: Vec<TenantId> = (0..100)
        .map(|_| TenantId::from_uuid(Uuid::new_v4()))
        .collect();
    let mut rng = Rng(11);
    let (small, large) = if quick {
        (2_000, 10_000)
    } else {
        (10_000, 100_000)
    };
    let (rate, seconds) = if quick { (100.0, 3.0) } else { (200.0, 15.0) };
    let mut searches = Vec::new();
    let mut filled = 0;
    for size in [small, large] {
        let started = Instant::now();
        fill(&store, &collection, &tenants, filled, size, &mut rng).await?;
        store.flush().await?;
        let load_s = started.elapsed().as_secs_f64();
        filled = size;
        let mut result = search_latency(&store, &collection, &tenants, rate, seconds).await?;
        result["passages"] = serde_json::json!(size);
        result["tenants"] = serde_json::json!(tenants.len());
        result["load_seconds"] = serde_json::json!(load_s);
        println!(
            "embedded search, {size} passages over {} tenants, open loop at {rate}/s: p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms (loaded in {load_s:.1} s)",
            tenants.len(),
            result["p50_ms"].as_f64().unwrap_or(f64::NAN),
            result["p99_ms"].as_f64().unwrap_or(f64::NAN),
            result["max_ms"].as_f64().unwrap_or(f64::NAN),
        );
        searches.push(result);
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);

    let pdf = pdf_to_ready(if quick { 10 } else { 50 }).await?;
    println!(
        "a {}-page PDF ({} bytes, {} passages): upload to ready in {:.1} s",
        pdf["pages"],
        pdf["bytes"],
        pdf["passages"],
        pdf["seconds_to_ready"].as_f64().unwrap_or(f64::NAN)
    );
    let result = serde_json::json!({
        "embedding": embedding,
        "search": searches,
        "pdf": pdf,
        "quick": quick,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("retrieval.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    println!("  written to bench-results/retrieval.json");
    std::process::exit(0);
}
