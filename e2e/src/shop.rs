//! A tenant's own web service, as an HTTP tool calls it: a small shop API that checks its key
//! header, answers order lookups, and has routes for the cases a tool must survive (a slow
//! answer, a huge body, an error status, an echo of what was sent). Every request is recorded.
//!
//! - `GET /orders/{id}` with `X-Shop-Key: KEY` → `{"order_id", "status": "shipped", "carrier",
//!   "eta"}`; an id that is not digits → 404 `{"error": "no such order"}`; a wrong or missing key
//!   → 401 `{"error": "unauthorized"}`.
//! - `POST /orders/{id}/cancel` (same key) → `{"order_id", "status": "cancelled"}`; the
//!   `Idempotency-Key` header is recorded, and a repeated key answers what the first did.
//! - `ANY /echo/...` → the method, path, query, headers and body it received, as JSON.
//! - `GET /big?bytes=N` → N bytes of `x`. `GET /slow` → answers after an hour.
//!   `GET /fail` → 500.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// One request as the shop received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ShopRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct State {
    key: String,
    received: Vec<ShopRequest>,
    /// What each idempotency key answered first.
    cancelled: HashMap<String, Value>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running shop. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeShop {
    pub base_url: String,
    /// `127.0.0.1:PORT`, as an outbound allowlist entry names it.
    pub host_port: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeShop {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Outside a runtime (a test unwinding after its runtime ended) the server's threads
        // end with the process.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(runtime.spawn(async move { handle.stop(false).await }));
        }
    }
}

impl FakeShop {
    /// Starts a shop on a free port of 127.0.0.1 that wants `key` in `X-Shop-Key`.
    pub fn start(key: &str) -> std::io::Result<FakeShop> {
        Self::start_on("127.0.0.1:0", key)
    }

    pub fn start_on(addr: &str, key: &str) -> std::io::Result<FakeShop> {
        let listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            key: key.to_string(),
            ..State::default()
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/orders/{id}", web::get().to(order))
                .route("/orders/{id}/cancel", web::post().to(cancel))
                .route("/big", web::get().to(big))
                .route("/slow", web::get().to(slow))
                .route("/fail", web::get().to(fail))
                .default_service(web::to(echo))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        drop(tokio::spawn(server));
        Ok(FakeShop {
            base_url: format!("http://127.0.0.1:{port}"),
            host_port: format!("127.0.0.1:{port}"),
            state,
            handle,
        })
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<ShopRequest> {
        lock(&self.state).received.clone()
    }

    /// How many requests reached `path` (exactly).
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.state)
            .received
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

fn record(state: &Mutex<State>, req: &HttpRequest, body: &[u8]) -> bool {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect::<Vec<_>>();
    let mut s = lock(state);
    let authorised = req
        .headers()
        .get("x-shop-key")
        .is_some_and(|v| v.as_bytes() == s.key.as_bytes());
    s.received.push(ShopRequest {
        method: req.method().as_str().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    });
    authorised
}

fn unauthorised() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({ "error": "unauthorized" }))
}

async fn order(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    if !record(&state, &req, b"") {
        return unauthorised();
    }
    let id = req.match_info().get("id").unwrap_or_default();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return HttpResponse::NotFound().json(json!({ "error": "no such order" }));
    }
    HttpResponse::Ok().json(json!({
        "order_id": id, "status": "shipped", "carrier": "DHL", "eta": "2026-12-04"
    }))
}

async fn cancel(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    if !record(&state, &req, &body) {
        return unauthorised();
    }
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let answer = json!({ "order_id": id, "status": "cancelled" });
    if let Some(key) = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
    {
        let mut s = lock(&state);
        let first = s.cancelled.entry(key.to_string()).or_insert(answer);
        return HttpResponse::Ok().json(first.clone());
    }
    HttpResponse::Ok().json(answer)
}

async fn big(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    record(&state, &req, b"");
    let bytes = req
        .query_string()
        .strip_prefix("bytes=")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1024 * 1024);
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("x".repeat(bytes))
}

async fn slow(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    record(&state, &req, b"");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    HttpResponse::Ok().finish()
}

async fn fail(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    record(&state, &req, b"");
    HttpResponse::InternalServerError().json(json!({ "error": "the shop is down" }))
}

async fn echo(req: HttpRequest, body: web::Bytes, state: web::Data<Mutex<State>>) -> HttpResponse {
    record(&state, &req, &body);
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}
