//! A fake Slack Web API (`POST /api/chat.postMessage`, `POST /api/auth.test`,
//! `POST /api/bots.info`) and the signing half of the Events API.
//!
//! Like Slack it checks the bearer token (`not_authed`, `invalid_auth`) and the body (JSON with
//! `channel` and `text`; `thread_ts` optional), answers HTTP 200 with `{"ok":true,…}` or
//! `{"ok":false,"error":…}`, and can be scripted to answer `ok:false`, HTTP 429 with
//! `Retry-After`, a plain 5xx server error, or to be slow. For a stretch of time it can be
//! degraded (`degrade_for`): every post then gets the next answer of a repeating pattern (429s
//! and 5xx, say) instead of being posted. Every accepted post is recorded with the token that
//! made it, and every call with its status, `Retry-After` and arrival time. `sign` produces the
//! `X-Slack-Signature` Slack would send for a body.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The Slack app the platform runs (what `KONSTRUCT_SLACK_APP_ID` names in tests); `install`
/// installs bots of this app.
pub const APP_ID: &str = "A0KONSTRUCT";

/// `X-Slack-Signature` for `body` sent at `timestamp` (seconds), as Slack computes it.
pub fn sign(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the fake does with one `chat.postMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Post it and answer `ok:true`.
    Post,
    /// Answer HTTP 200 `{"ok":false,"error":…}` (e.g. `channel_not_found`).
    Refuse(String),
    /// Answer HTTP 429 with this `Retry-After` (seconds), `{"ok":false,"error":"ratelimited"}`.
    RateLimited(u64),
    /// Answer this 5xx status with a plain-text body, as a failing load balancer or server
    /// does (no Web API JSON).
    ServerError(u16),
    /// Wait, then behave as the inner behavior.
    Delay(Duration, Box<Behavior>),
}

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub token: String,
    pub channel: String,
    pub thread_ts: Option<String>,
    pub text: String,
    /// When it arrived, for pacing and latency assertions.
    pub at: Instant,
}

/// Every `chat.postMessage` call, accepted or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub auth: Option<String>,
    pub body: Value,
    pub status: u16,
    /// The `Retry-After` (seconds) a 429 carried.
    pub retry_after: Option<u64>,
    /// When it arrived (before any scripted delay).
    pub at: Instant,
}

/// A stretch of time in which posts are not posted but answered from a repeating pattern.
#[derive(Debug, Clone)]
struct Degradation {
    until: Instant,
    pattern: Vec<Behavior>,
    next: usize,
}

/// One installation of an app in a workspace: its bot.
#[derive(Debug, Clone)]
struct Installed {
    team_id: String,
    bot_user_id: String,
    bot_id: String,
    app_id: String,
}

#[derive(Debug, Default)]
struct State {
    /// Bot token → its installation.
    tokens: HashMap<String, Installed>,
    script: VecDeque<Behavior>,
    degraded: Option<Degradation>,
    posted: Vec<Posted>,
    calls: Vec<Call>,
    /// Calls of the other Web API methods, by method name (`auth.test`, `bots.info`).
    method_calls: Vec<(String, Call)>,
    ts: u64,
}

/// A running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeSlack {
    /// The Web API base, e.g. `http://127.0.0.1:1234/api`.
    pub api_base: String,
    port: u16,
    state: Arc<Mutex<State>>,
    /// The running server; `None` while the fake is down (`go_down`).
    handle: Mutex<Option<actix_web::dev::ServerHandle>>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        if let Some(handle) = self.take_handle() {
            // Outside a runtime (a test unwinding after its runtime ended) the server's threads
            // end with the process.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                drop(runtime.spawn(async move { handle.stop(false).await }));
            }
        }
    }
}

/// Serves the fake's routes on `listener`.
fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/api/chat.postMessage", web::post().to(post_message))
            .route("/api/auth.test", web::post().to(auth_test))
            .route("/api/bots.info", web::post().to(bots_info))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    drop(tokio::spawn(server));
    Ok(handle)
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeSlack {
    /// Starts a fake on a free port of 127.0.0.1.
    pub fn start() -> std::io::Result<FakeSlack> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let handle = serve(listener, state.clone())?;
        Ok(FakeSlack {
            api_base: format!("http://127.0.0.1:{port}/api"),
            port,
            state,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// An outage: stops listening, so every connection is refused, until `come_up`.
    pub async fn go_down(&self) {
        if let Some(handle) = self.take_handle() {
            handle.stop(false).await;
        }
    }

    /// The running server's handle, leaving none.
    fn take_handle(&self) -> Option<actix_web::dev::ServerHandle> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Listens again on the same address, with everything recorded so far.
    pub fn come_up(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))?;
        let handle = serve(listener, self.state.clone())?;
        *self.handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// Installs the platform's app (`APP_ID`) in workspace `team_id` with bot user
    /// `bot_user_id`: its bot token is accepted from now on, `auth.test` answers with that
    /// workspace, user and bot, and `bots.info` names the app.
    pub fn install(&self, token: &str, team_id: &str, bot_user_id: &str) {
        self.install_app(token, team_id, bot_user_id, APP_ID);
    }

    /// Like `install`, for a bot of another Slack app.
    pub fn install_app(&self, token: &str, team_id: &str, bot_user_id: &str, app_id: &str) {
        let bot_id = format!("B{}", bot_user_id.trim_start_matches(['U', 'W']));
        lock(&self.state).tokens.insert(
            token.to_string(),
            Installed {
                team_id: team_id.to_string(),
                bot_user_id: bot_user_id.to_string(),
                bot_id,
                app_id: app_id.to_string(),
            },
        );
    }

    /// Queues behaviors for the next posts, in order; afterwards posts succeed.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        lock(&self.state).script.extend(behaviors);
    }

    /// Degrades the API for `window` from now: each `chat.postMessage` arriving in it (with a
    /// valid token and body) gets the next behavior of `pattern`, round and round, instead of
    /// being posted; e.g. `[RateLimited(1), ServerError(500), RateLimited(2), ServerError(502)]`
    /// alternates 429s (with those `Retry-After`s) and 5xx. Scripted behaviors wait until the
    /// window has passed. An empty pattern degrades nothing.
    pub fn degrade_for(&self, window: Duration, pattern: Vec<Behavior>) {
        lock(&self.state).degraded = (!pattern.is_empty()).then(|| Degradation {
            until: Instant::now() + window,
            pattern,
            next: 0,
        });
    }

    /// The messages posted so far.
    pub fn posted(&self) -> Vec<Posted> {
        lock(&self.state).posted.clone()
    }

    /// Every `chat.postMessage` call, with the status it got.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// Every call of another Web API method (`auth.test`, `bots.info`), its form as `body`.
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        lock(&self.state)
            .method_calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

fn answer(
    state: &Mutex<State>,
    call: (Option<String>, Value, Instant),
    status: u16,
    out: Value,
) -> HttpResponse {
    let (auth, body, at) = call;
    lock(state).calls.push(Call {
        auth,
        body,
        status,
        retry_after: None,
        at,
    });
    let mut res = match status {
        429 => HttpResponse::TooManyRequests(),
        _ => HttpResponse::Ok(),
    };
    res.json(out)
}

/// The behavior for a post arriving at `now`: the degradation's next one while it lasts, else
/// the script's next one, else posting it.
fn next_behavior(state: &Mutex<State>, now: Instant) -> Behavior {
    let mut s = lock(state);
    if let Some(d) = s.degraded.as_mut() {
        if now < d.until {
            let behavior = d.pattern[d.next % d.pattern.len()].clone();
            d.next += 1;
            return behavior;
        }
        s.degraded = None;
    }
    s.script.pop_front().unwrap_or(Behavior::Post)
}

async fn post_message(
    req: HttpRequest,
    state: web::Data<Mutex<State>>,
    body: web::Bytes,
) -> HttpResponse {
    let arrived = Instant::now();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let call = (auth.clone(), parsed.clone(), arrived);
    let Some(token) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) else {
        return answer(
            &state,
            call,
            200,
            json!({ "ok": false, "error": "not_authed" }),
        );
    };
    let token = token.to_string();
    if !lock(&state).tokens.contains_key(&token) {
        return answer(
            &state,
            call,
            200,
            json!({ "ok": false, "error": "invalid_auth" }),
        );
    }
    let json_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let (Some(channel), Some(text)) = (parsed["channel"].as_str(), parsed["text"].as_str()) else {
        return answer(
            &state,
            call,
            200,
            json!({ "ok": false, "error": "invalid_arguments" }),
        );
    };
    if !json_type || text.is_empty() {
        return answer(
            &state,
            call,
            200,
            json!({ "ok": false, "error": "no_text" }),
        );
    }
    let (channel, text) = (channel.to_string(), text.to_string());
    let thread_ts = parsed["thread_ts"].as_str().map(str::to_string);
    let mut behavior = next_behavior(&state, arrived);
    while let Behavior::Delay(wait, inner) = behavior {
        tokio::time::sleep(wait).await;
        behavior = *inner;
    }
    match behavior {
        Behavior::Refuse(error) => {
            answer(&state, call, 200, json!({ "ok": false, "error": error }))
        }
        Behavior::RateLimited(secs) => {
            lock(&state).calls.push(Call {
                auth,
                body: parsed,
                status: 429,
                retry_after: Some(secs),
                at: arrived,
            });
            HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", secs.to_string()))
                .json(json!({ "ok": false, "error": "ratelimited" }))
        }
        Behavior::ServerError(status) => {
            lock(&state).calls.push(Call {
                auth,
                body: parsed,
                status,
                retry_after: None,
                at: arrived,
            });
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(status.canonical_reason().unwrap_or("Server Error"))
        }
        Behavior::Post | Behavior::Delay(..) => {
            let ts = {
                let mut s = lock(&state);
                s.ts += 1;
                s.posted.push(Posted {
                    token,
                    channel: channel.clone(),
                    thread_ts: thread_ts.clone(),
                    text: text.clone(),
                    at: Instant::now(),
                });
                format!("1700000000.{:06}", s.ts)
            };
            answer(
                &state,
                call,
                200,
                json!({
                    "ok": true,
                    "channel": channel,
                    "ts": ts,
                    "message": { "type": "message", "text": text, "thread_ts": thread_ts, "ts": ts },
                }),
            )
        }
    }
}

/// The bearer token of a Web API call.
fn bearer(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string)
}

/// `auth.test`: who the token belongs to, as Slack answers it.
async fn auth_test(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    lock(&state).method_calls.push((
        "auth.test".into(),
        Call {
            auth: bearer(&req),
            body: Value::Null,
            status: 200,
            retry_after: None,
            at: Instant::now(),
        },
    ));
    let Some(token) = bearer(&req) else {
        return HttpResponse::Ok().json(json!({ "ok": false, "error": "not_authed" }));
    };
    let installed = lock(&state).tokens.get(&token).cloned();
    match installed {
        Some(i) => HttpResponse::Ok().json(json!({
            "ok": true,
            "url": format!("https://{}.slack.com/", i.team_id.to_lowercase()),
            "team": "Workspace",
            "user": "konstruct",
            "team_id": i.team_id,
            "user_id": i.bot_user_id,
            "bot_id": i.bot_id,
            "is_enterprise_install": false,
        })),
        None => HttpResponse::Ok().json(json!({ "ok": false, "error": "invalid_auth" })),
    }
}

/// `bots.info` (form-encoded `bot=B…`): a bot of the token's workspace and its app, as Slack
/// answers it; `bot_not_found` for a bot the workspace does not have.
async fn bots_info(
    req: HttpRequest,
    state: web::Data<Mutex<State>>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    lock(&state).method_calls.push((
        "bots.info".into(),
        Call {
            auth: bearer(&req),
            body: json!(form.0.clone()),
            status: 200,
            retry_after: None,
            at: Instant::now(),
        },
    ));
    let Some(token) = bearer(&req) else {
        return HttpResponse::Ok().json(json!({ "ok": false, "error": "not_authed" }));
    };
    let state = lock(&state);
    let Some(caller) = state.tokens.get(&token).cloned() else {
        return HttpResponse::Ok().json(json!({ "ok": false, "error": "invalid_auth" }));
    };
    let Some(wanted) = form.get("bot") else {
        return HttpResponse::Ok().json(json!({ "ok": false, "error": "invalid_arguments" }));
    };
    let bot = state
        .tokens
        .values()
        .find(|i| &i.bot_id == wanted && i.team_id == caller.team_id)
        .cloned();
    match bot {
        Some(i) => HttpResponse::Ok().json(json!({
            "ok": true,
            "bot": {
                "id": i.bot_id,
                "deleted": false,
                "name": "konstruct",
                "updated": 1_700_000_000,
                "app_id": i.app_id,
                "user_id": i.bot_user_id,
                "icons": {},
            },
        })),
        None => HttpResponse::Ok().json(json!({ "ok": false, "error": "bot_not_found" })),
    }
}
