//! Real `konstruct serve` processes for the tests that start, stop and kill nodes (`crash`,
//! `cluster`): each against the test's database, a Redis key space of its own and the fakes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runtime::config::{RedisSettings, Secret};
use runtime::engine::ingest::{Ingest, IngestSettings};
use runtime::redis::Redis;
use serde_json::json;
use shared::TenantId;
use uuid::Uuid;

use crate::support::{JWT_SECRET, SLACK_SIGNING_SECRET, TENANT_LLM_KEY, TestApp, redis_url};
use crate::world;

pub const ENCRYPTION_KEYS: &str =
    "1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A running `konstruct serve` and what its log says.
pub struct Node {
    pub child: Child,
    pub base: String,
    /// Its engine's name (what it writes in the partition leases).
    pub name: String,
    /// Lines of its JSON log, as they come.
    pub log: mpsc::Receiver<String>,
}

impl Node {
    /// Starts `konstruct serve` against the test's database, Redis key space, fake LLM and fake
    /// Slack, stopping at `failpoint` if given.
    pub fn start(app: &TestApp, prefix: &str, failpoint: Option<&str>) -> Node {
        Self::start_with(app, prefix, failpoint, &[])
    }

    /// `start`, with more settings (`KONSTRUCT_…` variables).
    pub fn start_with(
        app: &TestApp,
        prefix: &str,
        failpoint: Option<&str>,
        env: &[(&str, String)],
    ) -> Node {
        Launch::of(app).start(prefix, failpoint, env)
    }
}

/// What a node is started against, apart from the test's `TestApp` (so a node can be started
/// on a blocking thread while the test's own tasks keep running).
#[derive(Debug, Clone)]
pub struct Launch {
    database_url: String,
    slack_api: String,
    llm_url: String,
    portal_dir: std::path::PathBuf,
}

impl Launch {
    pub fn of(app: &TestApp) -> Self {
        Self {
            database_url: app.db.app_url(),
            slack_api: app.slack.api_base.clone(),
            llm_url: app.llm.base_url.clone(),
            portal_dir: app.portal_dir.clone(),
        }
    }

    /// The same, against the database at `url` (the runtime role's) instead of the test's.
    pub fn on_database(mut self, url: String) -> Self {
        self.database_url = url;
        self
    }

    /// Starts `konstruct serve` and waits until its engine runs.
    pub fn start(&self, prefix: &str, failpoint: Option<&str>, env: &[(&str, String)]) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_konstruct"));
        command
            .arg("serve")
            .env_clear()
            .env("KONSTRUCT_DATABASE_URL", &self.database_url)
            .env("KONSTRUCT_REDIS_URL", redis_url())
            .env("KONSTRUCT_REDIS_KEY_PREFIX", prefix)
            .env(
                "KONSTRUCT_DATA_DIR",
                std::env::temp_dir().join(format!("konstruct-node-{}", uuid::Uuid::new_v4())),
            )
            .env("KONSTRUCT_PORT", "0")
            // A killed process cannot give its partitions back: let its leases expire quickly.
            .env("KONSTRUCT_PARTITION_LEASE_SECS", "3")
            .env("KONSTRUCT_LOG_FORMAT", "json")
            .env("KONSTRUCT_JWT_SECRET", JWT_SECRET)
            .env("KONSTRUCT_ENCRYPTION_KEYS", ENCRYPTION_KEYS)
            .env("KONSTRUCT_SLACK_SIGNING_SECRET", SLACK_SIGNING_SECRET)
            .env("KONSTRUCT_SLACK_APP_ID", e2e::slack::APP_ID)
            .env("KONSTRUCT_SLACK_API_URL", &self.slack_api)
            .env("KONSTRUCT_OPENAI_BASE_URL", &self.llm_url)
            .env("KONSTRUCT_OPENAI_API_KEY", TENANT_LLM_KEY)
            .env("KONSTRUCT_PORTAL_DIR", &self.portal_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(name) = failpoint {
            command.env("KONSTRUCT_FAILPOINT", name);
        }
        for (var, value) in env {
            command.env(var, value);
        }
        let mut child = command.spawn().expect("start konstruct serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keep draining the log so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let url = wait_log(&rx, "\"url\":\"", Duration::from_secs(30));
        let url = url
            .split("\"url\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        // The API opens once the database role is verified.
        wait_log(
            &rx,
            "connected to Postgres as the runtime role",
            Duration::from_secs(30),
        );
        let started = wait_log(&rx, "message engine started", Duration::from_secs(30));
        let name = started
            .split("\"engine.node\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the engine names itself")
            .to_string();
        Node {
            child,
            base: url,
            name,
            log: rx,
        }
    }
}

/// A node is never left running: whatever ends the test (a failed assertion too) kills it.
impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Node {
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops it as an orchestrator does (SIGTERM) and waits until it has exited; it must exit
    /// cleanly, having given its partitions back.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        // Its log, as it shuts down, for the failure message if it does not exit.
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                let tail = log[log.len().saturating_sub(15)..].join("\n");
                panic!(
                    "{} did not exit within a minute of SIGTERM; its log:\n{tail}",
                    self.name
                );
            }
            match self.log.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => log.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        assert!(exit.success(), "{} exited with {exit}", self.name);
        // The log ends with the process (its reader sees the pipe close).
        log.extend(self.log.iter());
        assert!(
            log.iter().any(|line| line.contains("stopped consuming")),
            "{} did not say it gave its partitions back; its log ends:\n{}",
            self.name,
            log[log.len().saturating_sub(12)..].join("\n")
        );
    }
}

/// Waits for a log line containing `needle`; returns it.
pub fn wait_log(log: &mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with {needle} within {within:?}"),
        }
    }
}

/// A tenant with an agent answering one installed Slack workspace, registered through `node`.
pub struct Scene {
    pub team: String,
    pub bot: String,
}

pub async fn scene(app: &TestApp, node: &Node, tenant: TenantId, token: &str) -> Scene {
    let agent = world::agent(app, tenant, "Nia").await;
    install(app, node, tenant, token, agent).await
}

/// A Slack workspace installed for `agent` through `node`.
pub async fn install(
    app: &TestApp,
    node: &Node,
    tenant: TenantId,
    token: &str,
    agent: shared::AgentId,
) -> Scene {
    let tag = Uuid::new_v4().simple().to_string().to_uppercase();
    let (team, bot) = (format!("T{}", &tag[..10]), format!("U{}", &tag[10..20]));
    let bot_token = format!("xoxb-{}", &tag[..20]);
    app.slack.install(&bot_token, &team, &bot);
    let res = reqwest::Client::new()
        .request(
            Method::POST,
            format!("{}/api/tenants/{tenant}/channels/slack", node.base),
        )
        .bearer_auth(token)
        .json(&json!({
            "team_id": team, "team_name": "Acme", "bot_user_id": bot, "bot_token": bot_token,
            "scopes": ["app_mentions:read", "chat:write"], "agent_id": agent,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    Scene { team, bot }
}

/// Delivers a signed @mention to `node`, as Slack would.
pub async fn mention(node: &Node, scene: &Scene, event_id: &str, text: &str, ts: &str) {
    let status = deliver(
        &reqwest::Client::new(),
        &node.base,
        scene,
        "CSUPPORT",
        event_id,
        text,
        ts,
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// Delivers a signed @mention in `channel` to the node at `base`; what it answered, or why it
/// could not.
pub async fn deliver(
    http: &reqwest::Client,
    base: &str,
    scene: &Scene,
    channel: &str,
    event_id: &str,
    text: &str,
    ts: &str,
) -> reqwest::Result<StatusCode> {
    let body = json!({
        "team_id": scene.team, "api_app_id": e2e::slack::APP_ID, "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_000,
        "event": {
            "type": "app_mention", "user": "UCUSTOMER", "channel": channel,
            "text": format!("<@{}> {text}", scene.bot), "ts": ts, "event_ts": ts,
        },
    });
    let raw = serde_json::to_vec(&body).unwrap();
    let now = chrono::Utc::now().timestamp().to_string();
    let res = http
        .post(format!("{base}/webhooks/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &now)
        .header(
            "x-slack-signature",
            e2e::slack::sign(SLACK_SIGNING_SECRET, &now, &raw),
        )
        .body(raw)
        .send()
        .await?;
    Ok(res.status())
}

/// The queue as the nodes see it (same key prefix).
pub async fn queue(prefix: &str) -> (Ingest, Redis) {
    let (redis, _) = Redis::connect(&RedisSettings {
        url: Secret::new(redis_url()),
        key_prefix: prefix.to_string(),
    })
    .unwrap();
    redis.ping().await.ok();
    (Ingest::new(redis.clone(), IngestSettings::default()), redis)
}
