//! Starting the real binary: `konstruct serve` is ready only once it has verified that its
//! database role cannot bypass row-level security — waiting (and saying why on `/readyz`) while
//! Postgres does not answer, and refusing to serve with a role that could bypass it, directly
//! or through a role it may become.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::support::{JWT_SECRET, TestDb, redis_url};

/// A started `konstruct serve` and its log lines.
struct Served {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(database_url: &str) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_konstruct"))
        .arg("serve")
        .env_clear()
        .env("KONSTRUCT_DATABASE_URL", database_url)
        .env("KONSTRUCT_REDIS_URL", redis_url())
        .env(
            "KONSTRUCT_REDIS_KEY_PREFIX",
            format!("konstruct-test:{}", Uuid::new_v4().simple()),
        )
        .env("KONSTRUCT_PORT", "0")
        .env(
            "KONSTRUCT_DATA_DIR",
            std::env::temp_dir().join(format!("konstruct-node-{}", Uuid::new_v4())),
        )
        .env("KONSTRUCT_LOG_FORMAT", "json")
        .env("KONSTRUCT_JWT_SECRET", JWT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start konstruct serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Served { child, log: rx }
}

impl Served {
    /// The next log line containing `needle`, within `within`.
    fn wait_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle} within {within:?}"),
            }
        }
    }

    /// The base URL, from the "serving" log line.
    fn base(&self) -> String {
        let line = self.wait_log("\"url\":\"", Duration::from_secs(30));
        line.split("\"url\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .trim_end_matches('/')
            .to_string()
    }
}

async fn readyz(base: &str) -> (u16, Value) {
    let res = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

/// Forwards connections on `listener` to Postgres, once the test lets it.
async fn forward_to_postgres(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

// Two threads: the test blocks on the child's log while the forwarder serves connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_postgres_and_is_ready_only_once_its_role_is_verified() {
    let db = TestDb::new().await;
    // A port with nothing listening yet: Postgres "down".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "postgres://konstruct_app:konstruct_app@127.0.0.1:{port}/{}",
        db.name
    );
    let served = serve(&url);
    let base = served.base();
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "alive while waiting");
    let (status, report) = readyz(&base).await;
    assert_eq!(status, 503, "{report}");
    let role = check(&report, "database_role");
    assert_eq!(role["ok"], false);
    assert!(
        role["detail"]
            .as_str()
            .unwrap()
            .contains("not verified yet"),
        "{role}"
    );
    // Until then nothing may run as an unverified role: everything but the health probes is
    // closed, with a typed answer and a hint when to try again.
    let http = reqwest::Client::new();
    for res in [
        http.get(format!("{base}/api/me")).send().await.unwrap(),
        http.post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({ "email": "a@example.com", "password": "x" }))
            .send()
            .await
            .unwrap(),
        http.post(format!("{base}/webhooks/slack/events"))
            .body("{}")
            .send()
            .await
            .unwrap(),
        // However the path is spelled: the router decodes `/%61pi/me` to `/api/me`.
        http.get(format!("{base}/%61pi/me")).send().await.unwrap(),
        http.post(format!("{base}/%77ebhooks/slack/events"))
            .body("{}")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), 503, "{:?}", res.url().path());
        assert_eq!(res.headers()["retry-after"], "1");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "unavailable", "{body}");
    }
    // Postgres comes up: the server finds out by itself and becomes ready.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(forward_to_postgres(listener));
    served.wait_log(
        "connected to Postgres as the runtime role",
        Duration::from_secs(30),
    );
    let (status, report) = readyz(&base).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(check(&report, "database_role")["ok"], true);
    let me = http.get(format!("{base}/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 401, "the API is open: it asks who you are");
}

/// Starts `serve` as a login role made by `setup` (given its name and a helper role's name) and expects it to refuse, naming `expected` in its reason.
async fn refused_as(setup: impl Fn(&str, &str) -> Vec<String>, expected: &str) {
    let db = TestDb::new().await;
    let tag = Uuid::new_v4().simple().to_string();
    let (helper, login) = (format!("test_helper_{tag}"), format!("test_sneaky_{tag}"));
    let mut admin = PgConnection::connect(&db.superuser_url()).await.unwrap();
    let mut sqls = setup(&login, &helper);
    sqls.push(format!(
        "GRANT CONNECT ON DATABASE \"{}\" TO \"{login}\"",
        db.name
    ));
    for sql in sqls {
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    let url = format!("postgres://{login}:sneaky@127.0.0.1:5432/{}", db.name);
    let mut served = serve(&url);
    let line = served.wait_log("refusing to serve", Duration::from_secs(30));
    let expected = expected.replace("{helper}", &helper);
    assert!(line.contains(&expected), "says {expected}: {line}");
    let exit = served.child.wait().unwrap();
    assert!(!exit.success(), "the process stops");
    // Roles outlive the test's database: drop what they own or were granted, then them.
    for sql in [
        format!("DROP OWNED BY \"{login}\""),
        format!("DROP ROLE \"{login}\""),
        format!("DROP ROLE IF EXISTS \"{helper}\""),
    ] {
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
}

#[tokio::test]
async fn serve_refuses_a_role_that_can_become_one_that_bypasses_row_level_security() {
    // Not superuser, no BYPASSRLS of its own, owns nothing: only its membership is wrong.
    refused_as(
        |login, helper| {
            vec![
                format!("CREATE ROLE \"{helper}\" NOLOGIN BYPASSRLS"),
                format!(
                    "CREATE ROLE \"{login}\" LOGIN PASSWORD 'sneaky' NOSUPERUSER NOBYPASSRLS \
                     IN ROLE konstruct_runtime, \"{helper}\""
                ),
            ]
        },
        "it is a member of {helper}",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_a_role_that_owns_a_table() {
    // A table's owner is not bound by its row-level security unless it is forced; forced or not,
    // an owner can turn it off.
    refused_as(
        |login, _| {
            vec![
                format!(
                    "CREATE ROLE \"{login}\" LOGIN PASSWORD 'sneaky' NOSUPERUSER NOBYPASSRLS \
                     IN ROLE konstruct_runtime"
                ),
                format!("CREATE TABLE public.\"owned_by_{login}\" (id int)"),
                format!("ALTER TABLE public.\"owned_by_{login}\" OWNER TO \"{login}\""),
            ]
        },
        "it owns tables",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_a_role_that_may_create_roles() {
    refused_as(
        |login, _| {
            vec![format!(
                "CREATE ROLE \"{login}\" LOGIN PASSWORD 'sneaky' NOSUPERUSER NOBYPASSRLS \
                 CREATEROLE IN ROLE konstruct_runtime"
            )]
        },
        "it has CREATEROLE",
    )
    .await;
}
