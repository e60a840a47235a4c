//! The HTTP surface of the foundation: health, readiness, the error contract, request ids and the
//! portal's single-page-app fallback, against the real server on a real socket.

use reqwest::StatusCode;
use shared::health::{Liveness, ReadinessReport, ReadinessStatus, RedisPersistence};
use shared::{ErrorBody, ErrorCode};

use crate::support::{AppOptions, TestApp};

#[tokio::test]
async fn healthz_says_alive() {
    let app = TestApp::spawn().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Liveness = res.json().await.unwrap();
    assert_eq!(body.status, "alive");
    assert_eq!(body.version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn readyz_is_200_and_names_every_check_when_dependencies_answer() {
    let app = TestApp::spawn().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: ReadinessReport = res.json().await.unwrap();
    assert_eq!(report.status, ReadinessStatus::Ready);
    let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["database_role", "postgres", "redis", "migrations"]);
    assert!(report.checks.iter().all(|c| c.ok), "{report:?}");
    let migrations = &report.checks[3];
    assert!(
        migrations.detail.ends_with("applied"),
        "{}",
        migrations.detail
    );
}

/// One Redis setting, asked with `CONFIG GET` on a client of the test's own.
async fn redis_setting(client: &fred::prelude::Client, name: &str) -> String {
    use fred::interfaces::ClientLike;
    let answer: Vec<String> = client
        .custom(fred::cmd!("CONFIG"), vec!["GET", name])
        .await
        .unwrap();
    assert_eq!(answer.len(), 2, "CONFIG GET {name}: {answer:?}");
    answer[1].clone()
}

#[tokio::test]
async fn readyz_reports_redis_persistence_as_redis_itself_states_it() {
    use fred::interfaces::ClientLike;
    let client = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&crate::support::redis_url()).unwrap(),
    )
    .build()
    .unwrap();
    client.init().await.unwrap();
    let appendonly = redis_setting(&client, "appendonly").await;
    let appendfsync = redis_setting(&client, "appendfsync").await;
    let save = redis_setting(&client, "save").await;
    let expected = match (appendonly.as_str(), save.trim().is_empty()) {
        ("yes", _) => format!("aof {appendfsync}"),
        ("no", true) => "none".to_string(),
        ("no", false) => "rdb only".to_string(),
        other => panic!("unexpected Redis settings {other:?}"),
    };

    let app = TestApp::spawn().await;
    let res = app.get("/readyz").await;
    // Ready whatever the mode: durability is reported, not required.
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["redis_persistence"], expected.as_str(), "{body}");
}

#[tokio::test]
async fn readyz_is_503_and_names_redis_when_redis_is_down() {
    let app = TestApp::spawn_with(AppOptions {
        // Nothing listens on port 1.
        redis_url: Some("redis://127.0.0.1:1".into()),
        ..AppOptions::default()
    })
    .await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let report: ReadinessReport = res.json().await.unwrap();
    assert_eq!(report.status, ReadinessStatus::NotReady);
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["redis"]);
    assert_eq!(report.redis_persistence, RedisPersistence::Unknown);
}

#[tokio::test]
async fn readyz_is_503_while_migrations_are_pending() {
    let app = TestApp::spawn_with(AppOptions {
        unmigrated: true,
        ..AppOptions::default()
    })
    .await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let report: ReadinessReport = res.json().await.unwrap();
    let migrations = report
        .checks
        .iter()
        .find(|c| c.name == "migrations")
        .unwrap();
    assert!(!migrations.ok);
    assert!(
        migrations.detail.starts_with("0 of "),
        "{}",
        migrations.detail
    );
    assert!(
        migrations.detail.contains("pending"),
        "{}",
        migrations.detail
    );
}

#[tokio::test]
async fn readyz_never_reveals_connection_strings() {
    let app = TestApp::spawn_with(AppOptions {
        redis_url: Some("redis://:hunter2@127.0.0.1:1".into()),
        ..AppOptions::default()
    })
    .await;
    let text = app.get("/readyz").await.text().await.unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("konstruct_app:"), "{text}");
}

#[tokio::test]
async fn unknown_api_paths_answer_the_json_error_contract_with_the_request_id() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/nothing-here").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let header = res
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::NotFound);
    assert_eq!(body.request_id, header);
    assert!(!body.message.is_empty());
}

#[tokio::test]
async fn a_callers_request_id_is_replaced_unless_a_trusted_proxy_set_it() {
    // By default the caller cannot choose the id that lands in logs and audit rows.
    let app = TestApp::spawn().await;
    let res = app
        .http
        .get(app.url("/api/missing"))
        .header("x-request-id", "chosen-by-caller")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a fresh id, got {id}");
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.request_id, id);
}

#[tokio::test]
async fn behind_a_trusted_proxy_a_sane_request_id_is_kept_and_a_hostile_one_replaced() {
    let app = TestApp::spawn_with(crate::support::AppOptions {
        trust_proxy_headers: true,
        ..Default::default()
    })
    .await;
    let res = app
        .http
        .get(app.url("/api/missing"))
        .header("x-request-id", "lb-7f3a.42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "lb-7f3a.42");
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.request_id, "lb-7f3a.42");

    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "replaced by a fresh id, got {id}"
    );
}

#[tokio::test]
async fn the_portal_is_served_at_the_root_with_a_fallback_for_deep_links() {
    let app = TestApp::spawn().await;
    for path in ["/", "/agents/42/edit", "/tenants?page=2"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        assert!(
            res.text()
                .await
                .unwrap()
                .contains("<title>Konstruct</title>"),
            "{path}"
        );
    }
    let res = app.get("/assets/app-1234.css").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(res.text().await.unwrap(), "body{margin:0}");
    assert_eq!(
        app.get("/").await.headers()["x-content-type-options"],
        "nosniff"
    );
}

#[tokio::test]
async fn api_and_webhook_paths_never_fall_back_to_the_portal() {
    let app = TestApp::spawn().await;
    for path in ["/api/agents", "/webhooks/slack/events", "/readyz/extra"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: ErrorBody = res.json().await.unwrap();
        assert_eq!(body.code, ErrorCode::NotFound, "{path}");
    }
    let res = app.http.post(app.url("/some/page")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::MethodNotAllowed);
}

#[tokio::test]
async fn a_missing_portal_build_is_explained_not_blank() {
    let app = TestApp::spawn().await;
    std::fs::remove_file(app.portal_dir.join("index.html")).unwrap();
    let res = app.get("/agents").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: ErrorBody = res.json().await.unwrap();
    assert!(body.message.contains("not been built"), "{}", body.message);
}
