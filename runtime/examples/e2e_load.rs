//! Load generator: the real `konstruct serve` (a release build, started here as its own process)
//! driven through its real Slack webhook with correctly signed `app_mention` events, open loop
//! at fixed arrival rates, and every reply counted at a fake Slack Web API.
//!
//! Open loop: event `i` is due at `start + i / rate` and is sent then, whatever happened to the
//! ones before it (each send is its own task). Two latencies are measured from that *scheduled*
//! time: the webhook's acknowledgement (verify, parse, dedupe, durable enqueue, 200) and the
//! reply's arrival at the fake `chat.postMessage` (the whole turn: engine, LLM, record, send,
//! mark). So a slow server shows up as latency, never as a quietly lower rate.
//!
//! Everything on the default Slack path is on: the audit trail (sealed), usage, a monthly budget
//! on every tenant (so every LLM call is reserved and settled), the conversation memory window;
//! knowledge retrieval is off (no documents). The LLM is a zero-latency fake, so what is measured
//! is Konstruct's own cost. Each tenant has its own Slack workspace; messages go round robin
//! over the tenants and, within one, over 1,024 conversations, each in a channel of its own.
//!
//! Needs the local Postgres and Redis (as the tests do); makes a database and a Redis key space
//! of its own. Builds the binary first (`cargo build --release -p runtime --bin konstruct`)
//! unless `KONSTRUCT_BIN` names one.
//!
//! Run: `cargo run --release -p runtime --example e2e_load`
//! Settings (environment): `E2E_RATES` (events/s, comma-separated, default `250,500,1000,2000`),
//! `E2E_SECS` (seconds per rate, default 10), `E2E_TENANTS` (default 8), `BENCH_QUICK=1` (one
//! short run at 250/s). Writes `bench-results/e2e_load.json` and prints a summary.
#![expect(clippy::print_stdout, reason = "a benchmark prints its summary")]

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::llm::FakeLlm;
use e2e::slack::FakeSlack;
use serde_json::{Value, json};
use uuid::Uuid;

const SIGNING_SECRET: &str = "e2e-load-signing-secret";
const LLM_KEY: &str = "sk-e2e-load";
/// Conversations per tenant, each a thread in a channel of its own: Slack takes about one
/// message a second per channel, and the sink paces to that, so the load is spread thin enough
/// (1,000/s over 8 tenants is about 0.12/s a channel) that pacing is not what is measured.
const THREADS_PER_TENANT: usize = 1024;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The release binary: `KONSTRUCT_BIN`, else built (or found up to date) by cargo.
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("KONSTRUCT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "runtime",
            "--bin",
            "konstruct",
        ])
        .current_dir(root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p runtime --bin konstruct failed");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    Ok(target.join("release").join("konstruct"))
}

/// The server process and what its log said.
struct Server {
    child: Child,
    base: String,
    /// Warnings and errors it logged (kept up to a bound), and how many in all.
    problems: Arc<Mutex<(u64, Vec<String>)>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_env(
    command: &mut Command,
    app_url: &str,
    prefix: &str,
    slack: &FakeSlack,
    llm: &FakeLlm,
    portal: &Path,
) {
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KONSTRUCT_DATABASE_URL", app_url)
        .env("KONSTRUCT_REDIS_URL", "redis://127.0.0.1:6379")
        .env("KONSTRUCT_REDIS_KEY_PREFIX", prefix)
        .env("KONSTRUCT_PORT", "0")
        .env("KONSTRUCT_LOG_FORMAT", "json")
        .env(
            "KONSTRUCT_JWT_SECRET",
            "e2e-load-secret-e2e-load-secret-e2e-load-secret",
        )
        .env(
            "KONSTRUCT_ENCRYPTION_KEYS",
            "1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        )
        .env(
            "KONSTRUCT_AUDIT_KEYS",
            "1:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
        )
        .env("KONSTRUCT_SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .env("KONSTRUCT_SLACK_APP_ID", e2e::slack::APP_ID)
        .env("KONSTRUCT_SLACK_API_URL", &slack.api_base)
        .env("KONSTRUCT_OPENAI_BASE_URL", &llm.base_url)
        .env("KONSTRUCT_OPENAI_API_KEY", LLM_KEY)
        .env("KONSTRUCT_PORTAL_DIR", portal)
        .env(
            "KONSTRUCT_DATA_DIR",
            std::env::temp_dir().join(format!("konstruct-e2e-load-{}", Uuid::new_v4())),
        )
        .env("KONSTRUCT_ADMIN_EMAIL", "load@example.com")
        .env("KONSTRUCT_ADMIN_PASSWORD", "load-password-load-password")
        // Limits no benchmark load reaches (each tenant gets rate / tenants).
        .env("KONSTRUCT_RATE_PER_MINUTE", "10000000")
        .env("KONSTRUCT_RATE_BURST", "1000000")
        .env("KONSTRUCT_CONNECTION_RATE_PER_MINUTE", "10000000")
        .env("KONSTRUCT_CONNECTION_RATE_BURST", "1000000");
    if let Ok(log) = std::env::var("KONSTRUCT_LOG") {
        command.env("KONSTRUCT_LOG", log);
    }
}

fn start_server(bin: &Path, setup: impl Fn(&mut Command)) -> anyhow::Result<Server> {
    let mut admin = Command::new(bin);
    admin.arg("create-admin");
    setup(&mut admin);
    let status = admin.stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("konstruct create-admin failed");
    }
    let mut command = Command::new(bin);
    command.arg("serve");
    setup(&mut command);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("the server's log")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let problems = Arc::new(Mutex::new((0_u64, Vec::new())));
    let seen = problems.clone();
    std::thread::spawn(move || {
        let mut ready = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                let mut seen = seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                seen.0 += 1;
                if seen.1.len() < 20 {
                    seen.1.push(line.clone());
                }
            }
            if !ready && (line.contains("\"url\":\"") || line.contains("runtime role")) {
                ready = line.contains("runtime role");
                let _ = tx.send(line);
            }
        }
    });
    let mut base = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .context("the server did not start")?;
        if let Some(url) = line
            .split("\"url\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            base = Some(url.trim_end_matches('/').to_string());
        }
        if line.contains("runtime role") {
            break;
        }
    }
    Ok(Server {
        child,
        base: base.context("the server did not say its URL")?,
        problems,
    })
}

/// A tenant with an agent answering its own Slack workspace, and a budget on it.
struct Workspace {
    team: String,
    bot: String,
}

async fn setup_tenants(
    http: &reqwest::Client,
    base: &str,
    slack: &FakeSlack,
    count: usize,
) -> anyhow::Result<Vec<Workspace>> {
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "email": "load@example.com", "password": "load-password-load-password" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"].as_str().context("a token")?.to_string();
    let mut workspaces = Vec::new();
    for t in 0..count {
        let tenant: Value = http
            .post(format!("{base}/api/tenants"))
            .bearer_auth(&token)
            .json(&json!({ "name": format!("Load {t} {}", Uuid::new_v4().simple()) }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let tenant = tenant["id"].as_str().context("a tenant id")?.to_string();
        let agent: Value = http
            .post(format!("{base}/api/tenants/{tenant}/agents"))
            .bearer_auth(&token)
            .json(&json!({ "name": "Nia", "system_prompt": "Answer briefly." }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let tag = Uuid::new_v4().simple().to_string().to_uppercase();
        let (team, bot) = (format!("T{}", &tag[..10]), format!("U{}", &tag[10..20]));
        let bot_token = format!("xoxb-{}", &tag[..20]);
        slack.install(&bot_token, &team, &bot);
        http.post(format!("{base}/api/tenants/{tenant}/channels/slack"))
            .bearer_auth(&token)
            .json(&json!({
                "team_id": team, "team_name": "Load", "bot_user_id": bot, "bot_token": bot_token,
                "scopes": ["app_mentions:read", "chat:write"], "agent_id": agent["id"],
            }))
            .send()
            .await?
            .error_for_status()?;
        // A budget no load reaches: every call is reserved and settled, none refused.
        http.put(format!("{base}/api/tenants/{tenant}/budgets/tenant"))
            .bearer_auth(&token)
            .json(&json!({ "monthly_micro_usd": 1_000_000_000_000_i64, "policy": "handoff" }))
            .send()
            .await?
            .error_for_status()?;
        workspaces.push(Workspace { team, bot });
    }
    Ok(workspaces)
}

/// One event's signed request, made before the clock starts.
struct Prepared {
    text: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

fn prepare(workspaces: &[Workspace], tag: &str, count: usize) -> Vec<Prepared> {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    (0..count)
        .map(|i| {
            let w = i % workspaces.len();
            let ws = &workspaces[w];
            let thread = (i / workspaces.len()) % THREADS_PER_TENANT;
            let text = format!("{tag}-{i}");
            let body = json!({
                "team_id": ws.team, "api_app_id": e2e::slack::APP_ID, "type": "event_callback",
                "event_id": format!("Ev{tag}{i}"), "event_time": 1_700_000_000,
                "event": {
                    "type": "app_mention", "user": format!("UCUST{thread:04}"),
                    "channel": format!("C{thread:04}"), "text": format!("<@{}> {text}", ws.bot),
                    "ts": format!("1700{:06}.{i:06}", thread + 100_000),
                    "thread_ts": format!("1699{thread:06}.000001"),
                },
            });
            let body = serde_json::to_vec(&body).unwrap_or_default();
            Prepared {
                signature: e2e::slack::sign(SIGNING_SECRET, &timestamp, &body),
                timestamp: timestamp.clone(),
                text,
                body,
            }
        })
        .collect()
}

#[derive(Debug, Default)]
struct Sent {
    /// Acknowledgement latency (ms from the scheduled time) of each accepted event.
    acks: Vec<f64>,
    /// How late each send left against its scheduled time (ms): the sender's own lag.
    dispatch_lag: Vec<f64>,
    /// When the last send left.
    last_dispatch: Option<Instant>,
    /// Events the webhook refused (by status) or could not take (transport errors).
    refused: HashMap<u16, u64>,
    transport_errors: u64,
}

/// Sends `events` open loop at `rate`/s on a runtime of its own; returns when every send ended.
fn send_open_loop(
    base: &str,
    events: Vec<Prepared>,
    rate: f64,
) -> anyhow::Result<(Sent, Instant, Vec<Instant>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("{base}/webhooks/slack/events");
    runtime.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(30))
            .build()?;
        let sent = Arc::new(Mutex::new(Sent::default()));
        let start = Instant::now() + Duration::from_millis(100);
        let mut scheduled = Vec::with_capacity(events.len());
        let mut tasks = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            scheduled.push(due);
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            let (http, url, sent) = (http.clone(), url.clone(), sent.clone());
            {
                let mut sent = sent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                sent.dispatch_lag.push(due.elapsed().as_secs_f64() * 1000.0);
                sent.last_dispatch = Some(Instant::now());
            }
            tasks.push(tokio::spawn(async move {
                let res = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-slack-request-timestamp", &event.timestamp)
                    .header("x-slack-signature", &event.signature)
                    .body(event.body)
                    .send()
                    .await;
                let took = due.elapsed().as_secs_f64() * 1000.0;
                let mut sent = sent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match res {
                    Ok(r) if r.status().is_success() => sent.acks.push(took),
                    Ok(r) => *sent.refused.entry(r.status().as_u16()).or_default() += 1,
                    Err(_) => sent.transport_errors += 1,
                }
            }));
        }
        for task in tasks {
            task.await?;
        }
        let sent = std::mem::take(
            &mut *sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok((sent, start, scheduled))
    })
}

fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "count": ms.len(),
        "p50_ms": percentile(&ms, 0.50),
        "p99_ms": percentile(&ms, 0.99),
        "p999_ms": percentile(&ms, 0.999),
        "max_ms": ms.last().copied().unwrap_or(f64::NAN),
    })
}

/// One rate: send, wait for the replies (or for them to stop coming), measure.
async fn one_rate(
    base: String,
    slack: &FakeSlack,
    workspaces: &[Workspace],
    rate: u32,
    secs: u64,
) -> anyhow::Result<Value> {
    let tag = format!("L{rate}x{}", &Uuid::new_v4().simple().to_string()[..6]);
    let count = (u64::from(rate) * secs) as usize;
    let events = prepare(workspaces, &tag, count);
    let texts: Vec<String> = events.iter().map(|e| format!("echo: {}", e.text)).collect();
    let before = slack.posted().len();
    let sending = std::thread::spawn(move || send_open_loop(&base, events, f64::from(rate)));
    let (mut sent, start, scheduled) = actix_rt_wait(sending).await?;
    // The achieved rate: from the first scheduled time to the moment the last send left.
    let send_secs = sent
        .last_dispatch
        .map_or(0.0, |last| last.duration_since(start).as_secs_f64())
        .max(1e-9);
    // Wait for the replies: until all arrived, or none arrived for 10 s.
    let index: HashMap<&str, usize> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let accepted = sent.acks.len();
    let mut last_progress = (0_usize, Instant::now());
    let posts = loop {
        let posts = slack.posted();
        let ours = posts[before.min(posts.len())..]
            .iter()
            .filter(|p| index.contains_key(p.text.as_str()))
            .count();
        if ours >= accepted {
            break posts;
        }
        if ours > last_progress.0 {
            last_progress = (ours, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(10) {
            break posts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut first_post: HashMap<usize, Instant> = HashMap::new();
    let mut doubled = 0_u64;
    for post in &posts[before.min(posts.len())..] {
        if let Some(i) = index.get(post.text.as_str())
            && first_post.insert(*i, post.at).is_some()
        {
            doubled += 1;
        }
    }
    let replies: Vec<f64> = first_post
        .iter()
        .map(|(i, at)| at.saturating_duration_since(scheduled[*i]).as_secs_f64() * 1000.0)
        .collect();
    let last_reply = first_post.values().max().copied().unwrap_or(start);
    let answered_secs = last_reply.duration_since(start).as_secs_f64().max(1e-9);
    let answered = first_post.len();
    Ok(json!({
        "offered_per_s": rate,
        "events": count,
        "sent_per_s": count as f64 / send_secs,
        "accepted": accepted,
        "refused_by_status": sent.refused.iter().map(|(s, n)| (s.to_string(), *n)).collect::<HashMap<_, _>>(),
        "transport_errors": sent.transport_errors,
        "answered": answered,
        "unanswered": accepted.saturating_sub(answered),
        "answered_more_than_once": doubled,
        "answered_per_s": answered as f64 / answered_secs,
        "dispatch_lag": summary(std::mem::take(&mut sent.dispatch_lag)),
        "ack_of_accepted": summary(sent.acks),
        "reply_of_answered": summary(replies),
    }))
}

/// Waits for a thread's result without blocking the actix system's thread.
async fn actix_rt_wait<T: Send + 'static>(
    handle: std::thread::JoinHandle<anyhow::Result<T>>,
) -> anyhow::Result<T> {
    loop {
        if handle.is_finished() {
            return handle
                .join()
                .map_err(|_| anyhow::anyhow!("the sender panicked"))?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let rates: Vec<u32> = if quick {
        vec![250]
    } else {
        std::env::var("E2E_RATES")
            .unwrap_or_else(|_| "250,500,1000,2000".into())
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .collect()
    };
    let secs: u64 = env_or("E2E_SECS", if quick { 5 } else { 10 });
    let tenants: usize = env_or("E2E_TENANTS", 8);
    let bin = binary()?;
    let app_url = support::database("e2e_load").await?;
    let slack = FakeSlack::start()?;
    let llm = FakeLlm::start(LLM_KEY)?;
    let portal = std::env::temp_dir().join(format!("konstruct-e2e-portal-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&portal)?;
    std::fs::write(portal.join("index.html"), "<title>Konstruct</title>")?;
    let prefix = format!("konstruct-bench:{}", Uuid::new_v4().simple());
    let server = start_server(&bin, |c| {
        server_env(c, &app_url, &prefix, &slack, &llm, &portal)
    })?;
    let http = reqwest::Client::new();
    let workspaces = setup_tenants(&http, &server.base, &slack, tenants).await?;
    // Warm up: every tenant's first turn (connection lookups, conversation actors).
    let _ = one_rate(server.base.clone(), &slack, &workspaces, 50, 2).await?;
    let mut results = Vec::new();
    for rate in &rates {
        let result = one_rate(server.base.clone(), &slack, &workspaces, *rate, secs).await?;
        println!(
            "{rate:>6}/s offered: sent {:.0}/s, answered {:.0}/s | ack p50 {:.2} p99 {:.2} p99.9 {:.2} ms \
             | reply p50 {:.2} p99 {:.2} p99.9 {:.2} ms | refused {} transport errors {} \
             unanswered {} doubled {}",
            result["sent_per_s"].as_f64().unwrap_or(f64::NAN),
            result["answered_per_s"].as_f64().unwrap_or(f64::NAN),
            result["ack_of_accepted"]["p50_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            result["ack_of_accepted"]["p99_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            result["ack_of_accepted"]["p999_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            result["reply_of_answered"]["p50_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            result["reply_of_answered"]["p99_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            result["reply_of_answered"]["p999_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            result["refused_by_status"],
            result["transport_errors"],
            result["unanswered"],
            result["answered_more_than_once"],
        );
        results.push(result);
    }
    let (problems, examples) = server
        .problems
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    if problems > 0 {
        println!("the server logged {problems} warnings or errors, e.g.:");
        for line in examples.iter().take(5) {
            println!("  {line}");
        }
    }
    let report = json!({
        "benchmark": "e2e_load",
        "what": "signed Slack app_mention events over HTTP to a release `konstruct serve`, open loop; \
                 ack = webhook 200, reply = chat.postMessage at the fake Slack; both from the scheduled time",
        "tenants": tenants,
        "threads_per_tenant": THREADS_PER_TENANT,
        "seconds_per_rate": secs,
        "features": ["audit (sealed)", "usage", "budgets", "memory window"],
        "server_warnings_or_errors": problems,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "results": results,
    });
    let dir = root().join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("e2e_load.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("wrote bench-results/e2e_load.json");
    drop(server);
    let _ = std::fs::remove_dir_all(&portal);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    runtime::llm::install_crypto();
    actix::System::new().block_on(run())
}
