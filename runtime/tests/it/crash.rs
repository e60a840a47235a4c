//! Crash safety with the real binary: `konstruct serve` is killed (SIGKILL) in the middle of a
//! turn and started again; the acknowledged message is answered exactly once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::llm::Behavior;
use serde_json::json;
use shared::channel::{ChatAccepted, ChatMessage};
use uuid::Uuid;

use crate::support::{JWT_SECRET, TENANT_LLM_KEY, TestApp, redis_url};
use crate::world::{self, World};

/// Starts `konstruct serve` against the test's database, Redis key space and fake LLM; returns
/// the child and its base URL.
fn serve(app: &TestApp, prefix: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_konstruct"))
        .arg("serve")
        .env_clear()
        .env("KONSTRUCT_DATABASE_URL", app.db.app_url())
        .env("KONSTRUCT_REDIS_URL", redis_url())
        .env("KONSTRUCT_REDIS_KEY_PREFIX", prefix)
        .env("KONSTRUCT_PORT", "0")
        // The killed process cannot give its partitions back: let its leases expire quickly.
        .env("KONSTRUCT_PARTITION_LEASE_SECS", "3")
        .env("KONSTRUCT_LOG_FORMAT", "json")
        .env("KONSTRUCT_JWT_SECRET", JWT_SECRET)
        .env("KONSTRUCT_OPENAI_BASE_URL", &app.llm.base_url)
        .env("KONSTRUCT_OPENAI_API_KEY", TENANT_LLM_KEY)
        .env("KONSTRUCT_PORTAL_DIR", &app.portal_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start konstruct serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("\"url\":\"").nth(1) {
                let url = rest.split('"').next().unwrap_or_default().to_string();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("konstruct serve reports its URL");
    (child, url.trim_end_matches('/').to_string())
}

async fn messages(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Vec<ChatMessage> {
    http.get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or_default()
}

#[actix_rt::test]
async fn a_runtime_killed_mid_turn_answers_the_message_exactly_once_after_restart() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let token = app.token_for(w.admin_a, None).await;
    let prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
    // The first answer takes long enough to kill the process while it waits for it.
    app.llm.script([Behavior::Delay(
        Duration::from_secs(3),
        Box::new(Behavior::Text("lost with the process".into())),
    )]);

    let (mut first, base) = serve(&app, &prefix);
    let http = reqwest::Client::new();
    let path = format!("/api/tenants/{}/agents/{agent}/messages", w.a);
    let accepted: ChatAccepted = http
        .post(format!("{base}{path}"))
        .bearer_auth(&token)
        .json(&json!({ "text": "Please answer once." }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Mid-turn: the LLM has the request.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app
        .llm
        .received()
        .iter()
        .any(|r| r.path == "/v1/chat/completions")
    {
        assert!(Instant::now() < deadline, "the turn never reached the LLM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let (mut second, base) = serve(&app, &prefix);
    let poll = format!("{path}?conversation={}", accepted.conversation);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got
        .iter()
        .filter(|m: &&ChatMessage| m.direction == "outbound")
        .count()
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "no answer after the restart: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = messages(&http, &base, &token, &poll).await;
    }
    // Give a duplicate every chance to appear before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = messages(&http, &base, &token, &poll).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let inbound = got.iter().filter(|m| m.direction == "inbound").count();
    let outbound: Vec<&str> = got
        .iter()
        .filter(|m| m.direction == "outbound")
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(inbound, 1, "{got:?}");
    assert_eq!(
        outbound,
        ["echo: Please answer once."],
        "answered exactly once, by the restarted process"
    );
}
