//! Dependencies failing under load, with the real binary. Each test starts what it breaks: its
//! own Redis (append-only file, fsync on every write), SIGKILLed and started again on the same
//! files; its own Postgres cluster (run as the `postgres` OS user), stopped dead and started
//! again. The shared services are never touched. Meanwhile signed Slack mentions keep coming at
//! a steady rate, and one a node does not take (anything but 200) is sent again, as Slack
//! retries, until it is taken.
//!
//! What must hold: the node stays up; while Redis is down a webhook answers 503 (a typed
//! refusal Slack retries, never a 500 or a hang past Slack's 3 s); while Postgres is down
//! readiness is red, and green again once it is back; every message a node accepted is answered
//! exactly once, nothing is dead-lettered, and nothing is left pending. The tests print messages
//! in and answers out.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runtime::config::{RedisSettings, Secret};
use runtime::engine::ingest::{Ingest, IngestSettings};
use runtime::redis::Redis;
use runtime::store::bootstrap;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::fixtures::seed_tenant;
use crate::nodes::{Launch, Node, Scene, deliver, install, wait_log};
use crate::support::TestApp;
use crate::world;

/// Messages a second the load sends.
const RATE: u32 = 10;
/// How long a dependency stays down.
const OUTAGE: Duration = Duration::from_secs(6);
/// Settings for every node here: the rate limits out of the way (the load, and the backlog
/// Slack's retries bring at once, would be over a workspace's default 120 a minute and dropped
/// as a flood; `outage` tests that), the first platform admin.
fn settings() -> Vec<(&'static str, String)> {
    vec![
        ("KONSTRUCT_RATE_PER_MINUTE", "100000".into()),
        ("KONSTRUCT_RATE_BURST", "10000".into()),
        ("KONSTRUCT_CONNECTION_RATE_PER_MINUTE", "100000".into()),
        ("KONSTRUCT_CONNECTION_RATE_BURST", "10000".into()),
        ("KONSTRUCT_ADMIN_EMAIL", "ops@example.com".into()),
        (
            "KONSTRUCT_ADMIN_PASSWORD",
            "ops-password-ops-password".into(),
        ),
    ]
}

/// How long a delivery that was not taken waits before it is sent again.
const RETRY: Duration = Duration::from_millis(250);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("konstruct-{tag}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Redis of the test's own, keeping every write in its append-only file before it answers.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl OwnRedis {
    fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: scratch("redis"),
        };
        redis.up();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and files, and waits until it answers PING (it answers
    /// LOADING while it replays the file).
    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.pongs() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pongs(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0_u8; 5];
        conn.write_all(b"PING\r\n").is_ok()
            && conn.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG"
    }

    /// A crash: SIGKILL, no chance to write anything more.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Postgres cluster of the test's own, run as the `postgres` OS user on a port of its own.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = scratch("pg");
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown the cluster's folder to postgres");
        let pg = Self {
            dir,
            port: free_port(),
        };
        pg.as_postgres(Command::new("initdb").arg("-D").arg(pg.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        pg.up();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs `command` as the `postgres` OS user (the server refuses to run as root).
    fn as_postgres(&self, command: &mut Command) {
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(&args)
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{program:?} {args:?} as postgres: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        self.as_postgres(
            Command::new("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(args),
        );
    }

    /// Starts the server and waits until it accepts connections.
    fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c max_connections=40",
            self.port,
            self.dir.display()
        );
        self.pg_ctl(&["-w", "-t", "60", "-o", &options, "start"]);
    }

    /// A crash: every backend killed at once, recovery from the log at the next start.
    fn crash(&self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
    }

    fn url(&self, role: &str, database: &str) -> String {
        format!(
            "postgres://{role}:{role}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Roles and the database as `konstruct setup-db` makes them, migrated; the runtime role's
    /// URL.
    async fn database(&self) -> String {
        let (owner, app) = (
            self.url("konstruct_owner", "konstruct"),
            self.url("konstruct_app", "konstruct"),
        );
        bootstrap::setup_database(
            &format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            &owner,
            &app,
        )
        .await
        .unwrap();
        runtime::store::migrate(&owner).await.unwrap();
        app
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", "pg_ctl", "-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// Text of every message the node accepted.
    accepted: Vec<String>,
    /// Answers other than 200, by status ("timeout" or "error" when there was none), with when
    /// the first and the last came.
    refused: BTreeMap<String, (u64, Option<Instant>, Option<Instant>)>,
}

impl Seen {
    fn refusal(&mut self, what: String) {
        let now = Instant::now();
        let entry = self.refused.entry(what).or_insert((0, None, None));
        entry.0 += 1;
        entry.1.get_or_insert(now);
        entry.2 = Some(now);
    }

    fn refusals(&self) -> u64 {
        self.refused.values().map(|r| r.0).sum()
    }
}

/// A steady load of mentions to one node, each sent until the node takes it.
struct Load {
    seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<bool>,
    task: actix_rt::task::JoinHandle<()>,
}

impl Load {
    fn start(base: String, scenes: Rc<Vec<Scene>>) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, stopped) = watch::channel(false);
        let task = {
            let seen = seen.clone();
            actix_rt::spawn(async move {
                // Slack gives up on a webhook after 3 s.
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(3))
                    .build()
                    .unwrap();
                let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
                let mut sends = Vec::new();
                let mut i = 0_usize;
                while !*stopped.borrow() {
                    tick.tick().await;
                    let (http, base, scenes, seen) =
                        (http.clone(), base.clone(), scenes.clone(), seen.clone());
                    sends.push(actix_rt::spawn(async move {
                        let scene = &scenes[i % scenes.len()];
                        let text = format!("m{i}");
                        // A channel of its own for every few messages: the load stays under
                        // Slack's pace of one message a second a channel.
                        let channel = format!("C{}", i / scenes.len() % 16);
                        loop {
                            let ts = format!("1700000000.{i:06}");
                            match deliver(
                                &http,
                                &base,
                                scene,
                                &channel,
                                &format!("EvDep{i}"),
                                &text,
                                &ts,
                            )
                            .await
                            {
                                Ok(StatusCode::OK) => {
                                    seen.lock().unwrap().accepted.push(text);
                                    return;
                                }
                                Ok(status) => {
                                    seen.lock().unwrap().refusal(status.as_u16().to_string())
                                }
                                Err(e) if e.is_timeout() => {
                                    seen.lock().unwrap().refusal("timeout".into())
                                }
                                Err(_) => seen.lock().unwrap().refusal("error".into()),
                            }
                            // Slack's retry, sooner.
                            tokio::time::sleep(RETRY).await;
                        }
                    }));
                    i += 1;
                }
                for send in sends {
                    send.await.unwrap();
                }
            })
        };
        Self { seen, stop, task }
    }

    fn accepted(&self) -> usize {
        self.seen.lock().unwrap().accepted.len()
    }

    /// Waits until the node has taken `n` more messages than now.
    async fn taken(&self, n: usize, within: Duration) {
        let target = self.accepted() + n;
        let deadline = Instant::now() + within;
        while self.accepted() < target {
            assert!(
                Instant::now() < deadline,
                "the node took {} of {target} messages within {within:?}",
                self.accepted()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops sending new messages and waits until every one sent was taken.
    async fn finish(self) -> Seen {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        Arc::try_unwrap(self.seen)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// Waits until `GET /readyz` answers `status`; returns how long that took.
async fn readiness(base: &str, status: StatusCode, within: Duration) -> Duration {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(res) = http.get(format!("{base}/readyz")).send().await
            && res.status() == status
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "readiness did not turn {status} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every accepted message has its answer, the streams have nothing pending and
/// nothing was dead-lettered; then checks each was answered exactly once.
async fn all_answered_once(app: &TestApp, node: &Node, queue: &Ingest, redis: &Redis, seen: &Seen) {
    let answer = |text: &str| format!("echo: {text}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let posted: Vec<String> = app.slack.posted().into_iter().map(|p| p.text).collect();
        let unanswered = seen
            .accepted
            .iter()
            .filter(|t| !posted.contains(&answer(t)))
            .count();
        let mut pending = 0_i64;
        for p in 0..queue.partitions() {
            pending += redis
                .eval::<i64>(
                    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
                     return redis.call('XPENDING', KEYS[1], 'engine')[1]",
                    vec![queue.stream(p)],
                    vec![],
                )
                .await
                .unwrap();
        }
        let dead: i64 = redis
            .eval(
                "return redis.call('XLEN', KEYS[1])",
                vec![queue.dead_letter_stream()],
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            dead,
            0,
            "nothing is dead-lettered; the node's warnings:\n{}",
            warnings(node)
        );
        if unanswered == 0 && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unanswered} of {} accepted messages unanswered, {pending} pending; the node's \
             warnings:\n{}",
            seen.accepted.len(),
            warnings(node)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let posted = app.slack.posted();
    for text in &seen.accepted {
        let n = posted.iter().filter(|p| p.text == answer(text)).count();
        assert_eq!(n, 1, "{text} was answered {n} times");
    }
    assert_eq!(posted.len(), seen.accepted.len(), "nothing else was posted");
}

/// The last warnings and errors the node logged (for a failure's message).
fn warnings(node: &Node) -> String {
    let lines: Vec<String> = node
        .log
        .try_iter()
        .filter(|l| l.contains("\"level\":\"WARN") || l.contains("\"level\":\"ERROR"))
        // Not every refused webhook: what the engine said.
        .filter(|l| !l.contains("runtime::api::request_id") && !l.contains("\"target\":\"sqlx::"))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Two tenants, each with an agent answering its own Slack workspace, set up through `node`.
async fn scenes(app: &TestApp, node: &Node) -> Rc<Vec<Scene>> {
    let platform = world::user(app, &format!("p-{}@example.com", Uuid::new_v4()), true).await;
    let token = app.token_for(platform, None).await;
    let mut scenes = Vec::new();
    for _ in 0..2 {
        let tenant = seed_tenant(&app.store, "deps").await.tenant;
        let agent = world::agent(app, tenant, "Nia").await;
        scenes.push(install(app, node, tenant, &token, agent).await);
    }
    Rc::new(scenes)
}

fn queue_on(url: &str, prefix: &str) -> (Ingest, Redis) {
    let (redis, _) = Redis::connect(&RedisSettings {
        url: Secret::new(url.to_string()),
        key_prefix: prefix.to_string(),
    })
    .unwrap();
    (Ingest::new(redis.clone(), IngestSettings::default()), redis)
}

fn print_counts(what: &str, seen: &Seen, answered: usize) {
    let refused: Vec<String> = seen
        .refused
        .iter()
        .map(|(status, (n, first, last))| {
            let span = first.zip(*last).map_or(0, |(f, l)| (l - f).as_millis());
            format!("{status}×{n} over {span} ms")
        })
        .collect();
    eprintln!(
        "{what}: {} messages in (accepted), {answered} answers out, refused before taken: [{}]",
        seen.accepted.len(),
        refused.join(", ")
    );
}

#[actix_rt::test]
async fn redis_killed_under_load_answers_503_while_down_and_loses_nothing_it_acknowledged() {
    let app = TestApp::spawn().await;
    let mut redis = OwnRedis::start();
    let prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
    let mut node = {
        let (launch, url, prefix) = (Launch::of(&app), redis.url(), prefix.clone());
        tokio::task::spawn_blocking(move || {
            let mut env = settings();
            env.push(("KONSTRUCT_REDIS_URL", url));
            launch.start(&prefix, None, &env)
        })
        .await
        .unwrap()
    };
    let scenes = scenes(&app, &node).await;
    let (queue, client) = queue_on(&redis.url(), &prefix);
    client.ping().await.unwrap();

    let load = Load::start(node.base.clone(), scenes);
    load.taken(30, Duration::from_secs(30)).await;

    redis.kill();
    let down = Instant::now();
    // Deliveries now find no Redis: they are refused (and sent again) until it is back.
    readiness(&node.base, StatusCode::SERVICE_UNAVAILABLE, OUTAGE).await;
    let left = OUTAGE.saturating_sub(down.elapsed());
    tokio::time::sleep(left).await;
    let refused_while_down = load.seen.lock().unwrap().refusals();
    redis.up();
    let back = readiness(&node.base, StatusCode::OK, Duration::from_secs(30)).await;
    load.taken(30, Duration::from_secs(60)).await;
    let seen = load.finish().await;

    all_answered_once(&app, &node, &queue, &client, &seen).await;
    print_counts("redis killed for 6 s", &seen, app.slack.posted().len());
    eprintln!(
        "readiness green {} ms after redis was back",
        back.as_millis()
    );
    assert!(
        refused_while_down >= u64::from(RATE),
        "deliveries while Redis was down were refused ({refused_while_down})"
    );
    let statuses: Vec<&String> = seen.refused.keys().collect();
    assert_eq!(
        statuses,
        vec!["503"],
        "a webhook that cannot enqueue answers 503, in time: {:?}",
        seen.refused
    );
    assert!(matches!(node.child.try_wait(), Ok(None)), "the node is up");
}

#[actix_rt::test]
#[ignore = "fails: after a Postgres crash about a third of the accepted messages stay unanswered \
            (nothing pending or dead-lettered); an open finding, see ARCHITECTURE.md"]
async fn postgres_crashed_under_load_turns_readiness_red_and_back_and_every_message_is_answered_once()
 {
    let app = TestApp::spawn().await;
    let pg = OwnPostgres::start();
    let database = pg.database().await;
    let prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
    let mut node = {
        let (launch, prefix) = (
            Launch::of(&app).on_database(database.clone()),
            prefix.clone(),
        );
        tokio::task::spawn_blocking(move || {
            launch.start(
                &prefix,
                None,
                &[
                    ("KONSTRUCT_ADMIN_EMAIL", "ops@example.com".to_string()),
                    (
                        "KONSTRUCT_ADMIN_PASSWORD",
                        "ops-password-ops-password".to_string(),
                    ),
                ],
            )
        })
        .await
        .unwrap()
    };
    // The first platform admin is created once the server runs.
    wait_log(
        &node.log,
        "created the first platform admin",
        Duration::from_secs(60),
    );
    let scenes = scenes_through_api(&app, &node).await;
    let (queue, client) = queue_on(&crate::support::redis_url(), &prefix);

    let load = Load::start(node.base.clone(), scenes);
    load.taken(30, Duration::from_secs(30)).await;

    pg.crash();
    let down = Instant::now();
    let red = readiness(&node.base, StatusCode::SERVICE_UNAVAILABLE, OUTAGE).await;
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    let accepted_while_down = load.accepted();
    pg.up();
    let green = readiness(&node.base, StatusCode::OK, Duration::from_secs(60)).await;
    load.taken(30, Duration::from_secs(60)).await;
    let seen = load.finish().await;

    all_answered_once(&app, &node, &queue, &client, &seen).await;
    print_counts("postgres crashed for 6 s", &seen, app.slack.posted().len());
    eprintln!(
        "readiness red {} ms after the crash, green {} ms after postgres was back; {} accepted \
         before it was back",
        red.as_millis(),
        green.as_millis(),
        accepted_while_down
    );
    let statuses: Vec<&String> = seen.refused.keys().filter(|s| *s != "503").collect();
    assert!(
        statuses.is_empty(),
        "a webhook that cannot reach Postgres answers 503, in time: {:?}",
        seen.refused
    );
    assert!(matches!(node.child.try_wait(), Ok(None)), "the node is up");
}

/// Two tenants set up through the node's API as its platform admin (the node's database is not
/// the test app's).
async fn scenes_through_api(app: &TestApp, node: &Node) -> Rc<Vec<Scene>> {
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/auth/login", node.base))
        .json(&json!({ "email": "ops@example.com", "password": "ops-password-ops-password" }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let mut scenes = Vec::new();
    for t in 0..2 {
        let tenant: Value = http
            .post(format!("{}/api/tenants", node.base))
            .bearer_auth(&token)
            .json(&json!({ "name": format!("Deps {t}") }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant: shared::TenantId = serde_json::from_value(tenant["id"].clone()).unwrap();
        let agent: Value = http
            .post(format!("{}/api/tenants/{tenant}/agents", node.base))
            .bearer_auth(&token)
            .json(&json!({ "name": "Nia", "system_prompt": "Answer briefly." }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let agent: shared::AgentId = serde_json::from_value(agent["id"].clone()).unwrap();
        scenes.push(install(app, node, tenant, &token, agent).await);
    }
    Rc::new(scenes)
}
