//! A fake Meta WhatsApp Business Cloud API (the Graph API routes a WhatsApp integration calls)
//! and the webhook half: Meta's signed POSTs to the app's callback URL.
//!
//! It behaves like Meta where a client can tell: bearer tokens are checked (unknown or revoked
//! ones get `OAuthException` 190 with HTTP 401, a token that does not own a number gets
//! `GraphMethodException` 100/33), bodies are validated (`messaging_product`, `to`, `text.body`
//! at most 4096 characters, templates), errors have Meta's `{"error":{message,type,code,
//! error_subcode?,error_data?,fbtrace_id}}` shape, and free-form messages outside the 24-hour
//! customer-service window are refused with 131047 (templates are not). Its clock can be moved
//! forward (`advance`) so tests close the window without waiting a day.
//!
//! Tests script the next sends (`script`, or `script_to` for one user's), read what was accepted (`sent`) and every request
//! (`calls`), and wait for sends without sleeping (`wait_sent`). Webhooks are built with
//! `Inbound` (every message type, batches of several numbers) and posted signed with
//! `X-Hub-Signature-256` (`deliver`, `deliver_until_acknowledged`); after accepted sends the fake
//! can report `sent`/`delivered`/`read`/`failed` statuses the way Meta does (`report_statuses`).

mod graph;
mod model;
mod payload;
mod rules;
mod webhook;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use model::{Behavior, Call, Delivery, Number, Sent, SentKind, Template, Verification};
pub use payload::{ContactCard, Inbound, Media, StatusKind, batch};

/// The Graph API version Konstruct calls. The fake answers any `v{N}.{M}`.
pub const GRAPH_VERSION: &str = "v21.0";

/// The Meta app the platform runs: what `GET …/subscribed_apps` lists once subscribed.
pub const APP_ID: &str = "1000000000000001";

/// The status recorded (and returned by `deliver`) when there was no HTTP answer at all: the
/// connection was refused, dropped, or the receiver did not answer within the timeout.
pub const NO_ANSWER: u16 = 0;

/// The customer-service window: free-form messages only this long after the user last wrote.
pub const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// `X-Hub-Signature-256` for a webhook body, as Meta computes it: HMAC-SHA256 of the raw bytes
/// with the app secret, lowercase hex, prefixed `sha256=`.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A registered number and how Meta currently rates it.
#[derive(Debug, Clone)]
struct NumberState {
    number: Number,
    quality_rating: String,
}

/// A media object a number received, downloadable with the number's token.
#[derive(Debug, Clone)]
struct StoredMedia {
    phone_number_id: String,
    mime_type: String,
    bytes: Vec<u8>,
}

/// Where Meta posts webhooks, and with what.
#[derive(Debug, Clone)]
struct WebhookTarget {
    url: String,
    app_secret: String,
}

#[derive(Debug)]
struct State {
    /// The listening address's base, e.g. `http://127.0.0.1:1234`: media URLs point here.
    base_url: String,
    numbers: Vec<NumberState>,
    /// Tokens Meta no longer accepts.
    revoked: HashSet<String>,
    /// WABAs the app is subscribed to (`POST …/subscribed_apps`).
    subscribed: HashSet<String>,
    templates: HashMap<String, Vec<Template>>,
    media: HashMap<String, StoredMedia>,
    script: VecDeque<Behavior>,
    /// Behaviors for the next message sends to one user (`wa_id`), taken before `script`.
    script_to: HashMap<String, VecDeque<Behavior>>,
    sent: Vec<Sent>,
    calls: Vec<Call>,
    deliveries: Vec<Delivery>,
    /// (phone_number_id, wa_id) → when the user last wrote, on the fake's clock.
    last_inbound: HashMap<(String, String), SystemTime>,
    /// Inbound message id → the user who sent it, so read receipts name their user.
    inbound_from: HashMap<String, String>,
    enforce_window: bool,
    /// Report window violations as a later `failed` status instead of a synchronous 400.
    window_async: bool,
    /// How far the fake's clock is ahead of the real one (or of the frozen moment).
    offset: Duration,
    /// The real moment the clock stopped at (`freeze_clock`): then only `advance` moves it.
    frozen: Option<(SystemTime, Instant)>,
    /// Sends per rolling second per number; `None` for no limit.
    throughput: Option<u32>,
    /// Accepted sends' times per number within the last second, for `throughput`.
    recent: HashMap<String, VecDeque<Instant>>,
    webhook: Option<WebhookTarget>,
    report_statuses: bool,
    auto_read: bool,
    /// Escape non-ASCII characters and `/` in webhook bodies (`\u00e9`, `\/`) like Meta's
    /// encoder, so a receiver that re-serialises JSON before checking the signature fails.
    escape_like_meta: bool,
    webhook_timeout: Duration,
    /// The first wait between webhook attempts; it doubles, up to `MAX_BACKOFF`.
    retry_backoff: Duration,
    /// How often status webhooks are tried before the fake gives up on one.
    status_attempts: usize,
    /// Set when the fake is dropped: pending status reports stop.
    stopped: bool,
}

/// The longest wait between two webhook attempts: Meta backs off for hours; tests cannot.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl State {
    fn new(base_url: String) -> State {
        State {
            base_url,
            numbers: Vec::new(),
            revoked: HashSet::new(),
            subscribed: HashSet::new(),
            templates: HashMap::new(),
            media: HashMap::new(),
            script: VecDeque::new(),
            script_to: HashMap::new(),
            sent: Vec::new(),
            calls: Vec::new(),
            deliveries: Vec::new(),
            last_inbound: HashMap::new(),
            inbound_from: HashMap::new(),
            enforce_window: true,
            window_async: false,
            offset: Duration::ZERO,
            frozen: None,
            throughput: None,
            recent: HashMap::new(),
            webhook: None,
            report_statuses: false,
            auto_read: false,
            escape_like_meta: false,
            webhook_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(50),
            status_attempts: 5,
            stopped: false,
        }
    }

    /// "Now" on the fake's clock.
    fn now(&self) -> SystemTime {
        self.frozen.map_or_else(SystemTime::now, |(at, _)| at) + self.offset
    }

    /// A monotonic "now" on the fake's clock, for the throughput window.
    fn now_instant(&self) -> Instant {
        self.frozen.map_or_else(Instant::now, |(_, at)| at) + self.offset
    }

    fn number(&self, phone_number_id: &str) -> Option<&NumberState> {
        self.numbers
            .iter()
            .find(|n| n.number.phone_number_id == phone_number_id)
    }

    /// Records that the user wrote at `at` (only ever moving forward).
    fn saw_inbound(&mut self, phone_number_id: &str, wa_id: &str, at: SystemTime) {
        let key = (phone_number_id.to_string(), wa_id.to_string());
        let slot = self.last_inbound.entry(key).or_insert(at);
        if *slot < at {
            *slot = at;
        }
    }
}

/// What the server, the fake's handle and background status reports share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped on every recorded send, call and delivery: what `wait_*` wait on.
    changed: watch::Sender<u64>,
    /// Posts webhooks.
    client: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A running fake. Dropping it stops the server and any pending status reports.
#[derive(Debug)]
pub struct FakeGraph {
    /// e.g. `http://127.0.0.1:1234`, without the version: calls go to
    /// `{base_url}/{GRAPH_VERSION}/{phone_number_id}/messages`.
    pub base_url: String,
    port: u16,
    shared: Arc<Shared>,
    /// The running server; `None` while the fake is down (`go_down`).
    handle: Mutex<Option<actix_web::dev::ServerHandle>>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        if let Some(handle) = self.take_handle() {
            // Outside a runtime (a test unwinding after its runtime ended) the server's threads
            // end with the process.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                drop(runtime.spawn(async move { handle.stop(false).await }));
            }
        }
    }
}

impl FakeGraph {
    /// Starts a fake on a free port of 127.0.0.1.
    pub fn start() -> std::io::Result<FakeGraph> {
        FakeGraph::start_on("127.0.0.1:0")
    }

    /// Starts a fake on `addr` (`127.0.0.1:0` for a free port).
    pub fn start_on(addr: &str) -> std::io::Result<FakeGraph> {
        // The webhook client is built with rustls and no compiled-in provider choice.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let base_url = format!("http://{local}");
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("facebookexternalua")
            .build()
            .map_err(std::io::Error::other)?;
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(base_url.clone())),
            changed,
            client,
        });
        let handle = graph::serve(listener, shared.clone())?;
        Ok(FakeGraph {
            base_url,
            port: local.port(),
            shared,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// `{base_url}/{GRAPH_VERSION}`: the Graph API root a client is configured with.
    pub fn graph_url(&self) -> String {
        format!("{}/{GRAPH_VERSION}", self.base_url)
    }

    /// An outage: stops listening, so every connection is refused, until `come_up`.
    pub async fn go_down(&self) {
        if let Some(handle) = self.take_handle() {
            handle.stop(false).await;
        }
    }

    fn take_handle(&self) -> Option<actix_web::dev::ServerHandle> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Listens again on the same port, with everything recorded so far.
    pub fn come_up(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))?;
        let handle = graph::serve(listener, self.shared.clone())?;
        *self.handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// Registers a business number; its token is accepted for it from now on.
    pub fn add_number(&self, number: Number) {
        let mut state = self.shared.lock();
        state
            .numbers
            .retain(|n| n.number.phone_number_id != number.phone_number_id);
        state.numbers.push(NumberState {
            number,
            quality_rating: "GREEN".into(),
        });
    }

    /// From now on `token` gets 190 (HTTP 401), as after the system user's token was revoked.
    pub fn revoke(&self, token: &str) {
        self.shared.lock().revoked.insert(token.to_string());
    }

    /// Meta's quality rating for a number (`GREEN`, `YELLOW`, `RED`, `UNKNOWN`).
    pub fn set_quality(&self, phone_number_id: &str, rating: &str) {
        let mut state = self.shared.lock();
        for n in &mut state.numbers {
            if n.number.phone_number_id == phone_number_id {
                n.quality_rating = rating.to_string();
            }
        }
    }

    /// Approves a template in a WABA (see `Template` for what that makes the fake check).
    pub fn add_template(&self, waba_id: &str, template: Template) {
        self.shared
            .lock()
            .templates
            .entry(waba_id.to_string())
            .or_default()
            .push(template);
    }

    /// Stores a media object received on a number, downloadable as Meta serves it
    /// (`GET /{version}/{media_id}` for its URL, then the URL with the same bearer token).
    pub fn add_media(&self, phone_number_id: &str, mime_type: &str, bytes: Vec<u8>) -> Media {
        let id = numeric_id();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        self.shared.lock().media.insert(
            id.clone(),
            StoredMedia {
                phone_number_id: phone_number_id.to_string(),
                mime_type: mime_type.to_string(),
                bytes,
            },
        );
        Media {
            id,
            mime_type: mime_type.to_string(),
            sha256,
        }
    }

    /// Whether the app is subscribed to the WABA's webhooks (`POST …/subscribed_apps`).
    pub fn subscribed(&self, waba_id: &str) -> bool {
        self.shared.lock().subscribed.contains(waba_id)
    }

    /// Queues a behavior for the next message send; sends beyond the queue are judged normally.
    /// Read receipts do not consume it.
    pub fn script(&self, behavior: Behavior) {
        self.shared.lock().script.push_back(behavior);
    }

    /// Queues several behaviors, in order.
    pub fn script_all(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.shared.lock().script.extend(behaviors);
    }

    /// Queues behaviors for the next message sends to the user `wa_id` only, in order; they are
    /// taken before anything queued with `script`, and sends to other users do not consume them.
    pub fn script_to(&self, wa_id: &str, behaviors: impl IntoIterator<Item = Behavior>) {
        self.shared
            .lock()
            .script_to
            .entry(wa_id.to_string())
            .or_default()
            .extend(behaviors);
    }

    /// Whether free-form sends outside the 24-hour window are refused (default true).
    pub fn enforce_window(&self, on: bool) {
        self.shared.lock().enforce_window = on;
    }

    /// Report window violations the other way Meta does: accept the send (HTTP 200, wamid),
    /// then post a `failed` status with 131047. Default false (a synchronous HTTP 400).
    pub fn window_failures_async(&self, on: bool) {
        self.shared.lock().window_async = on;
    }

    /// Sets (or with `None` forgets) when the user last wrote to the number, on the fake's
    /// clock (`now`).
    pub fn set_last_inbound(&self, phone_number_id: &str, wa_id: &str, at: Option<SystemTime>) {
        let mut state = self.shared.lock();
        let key = (phone_number_id.to_string(), wa_id.to_string());
        match at {
            Some(at) => {
                state.last_inbound.insert(key, at);
            }
            None => {
                state.last_inbound.remove(&key);
            }
        }
    }

    /// When the user last wrote to the number, on the fake's clock.
    pub fn last_inbound(&self, phone_number_id: &str, wa_id: &str) -> Option<SystemTime> {
        let key = (phone_number_id.to_string(), wa_id.to_string());
        self.shared.lock().last_inbound.get(&key).copied()
    }

    /// Moves the fake's clock forward: windows close, webhook timestamps move on.
    pub fn advance(&self, by: Duration) {
        self.shared.lock().offset += by;
    }

    /// Stops the fake's clock (only `advance` moves it from now on), so rules that count time
    /// (the window, the throughput second) do not depend on how fast the test runs.
    pub fn freeze_clock(&self) {
        let mut state = self.shared.lock();
        if state.frozen.is_none() {
            state.frozen = Some((SystemTime::now(), Instant::now()));
        }
    }

    /// "Now" on the fake's clock.
    pub fn now(&self) -> SystemTime {
        self.shared.lock().now()
    }

    /// At most `per_second` accepted sends per number in any rolling second; more get 130429.
    /// `0` turns the limit off (the default).
    pub fn limit_throughput(&self, per_second: u32) {
        self.shared.lock().throughput = (per_second > 0).then_some(per_second);
    }

    /// Every accepted send and read receipt, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.lock().sent.clone()
    }

    /// The accepted message sends, without read receipts.
    pub fn messages(&self) -> Vec<Sent> {
        self.sent().into_iter().filter(|s| !s.is_read()).collect()
    }

    /// The accepted read receipts.
    pub fn reads(&self) -> Vec<Sent> {
        self.sent().into_iter().filter(Sent::is_read).collect()
    }

    /// Every request, with the status it got.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Every webhook POST made so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Waits until at least `n` message sends (not read receipts) were accepted and returns
    /// them. Panics after `timeout`, listing what was received.
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let what = format!("{n} message send(s)");
        self.wait_until(timeout, &what, |s| {
            let messages: Vec<Sent> = s.sent.iter().filter(|m| !m.is_read()).cloned().collect();
            (messages.len() >= n).then_some(messages)
        })
        .await
    }

    /// Waits until at least `n` read receipts were accepted and returns them.
    pub async fn wait_reads(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let what = format!("{n} read receipt(s)");
        self.wait_until(timeout, &what, |s| {
            let reads: Vec<Sent> = s.sent.iter().filter(|m| m.is_read()).cloned().collect();
            (reads.len() >= n).then_some(reads)
        })
        .await
    }

    /// Waits until `done` holds for everything accepted so far (sends and read receipts).
    pub async fn wait_for(&self, done: impl Fn(&[Sent]) -> bool, timeout: Duration) -> Vec<Sent> {
        self.wait_until(timeout, "the awaited sends", |s| {
            done(&s.sent).then(|| s.sent.clone())
        })
        .await
    }

    /// Waits until at least `n` requests arrived (whatever they were answered).
    pub async fn wait_calls(&self, n: usize, timeout: Duration) -> Vec<Call> {
        let what = format!("{n} call(s)");
        self.wait_until(timeout, &what, |s| {
            (s.calls.len() >= n).then(|| s.calls.clone())
        })
        .await
    }

    /// Waits until `done` holds for the requests received so far (whatever they were answered).
    pub async fn wait_calls_where(
        &self,
        done: impl Fn(&[Call]) -> bool,
        timeout: Duration,
    ) -> Vec<Call> {
        self.wait_until(timeout, "the awaited calls", |s| {
            done(&s.calls).then(|| s.calls.clone())
        })
        .await
    }

    /// Waits until `done` holds for the webhook deliveries made so far.
    pub async fn wait_deliveries(
        &self,
        done: impl Fn(&[Delivery]) -> bool,
        timeout: Duration,
    ) -> Vec<Delivery> {
        self.wait_until(timeout, "the awaited webhook deliveries", |s| {
            done(&s.deliveries).then(|| s.deliveries.clone())
        })
        .await
    }

    /// Waits for `check` to return something, re-checking after every recorded change.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&State) -> Option<T>,
    ) -> T {
        let mut changes = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(&self.shared.lock()) {
                return found;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let state = self.shared.lock();
                    let calls: Vec<String> = state
                        .calls
                        .iter()
                        .map(|c| format!("{} {} → {} {}", c.method, c.path, c.status, c.body))
                        .collect();
                    panic!(
                        "fake WhatsApp: gave up after {timeout:?} waiting for {what}.\n\
                         accepted: {:#?}\ncalls:\n  {}\nwebhook deliveries: {}",
                        state.sent,
                        calls.join("\n  "),
                        state.deliveries.len()
                    );
                }
            }
        }
    }

    /// Where Meta posts webhooks (the app's callback URL) and the app secret that signs them.
    pub fn webhook(&self, url: impl Into<String>, app_secret: impl Into<String>) {
        self.shared.lock().webhook = Some(WebhookTarget {
            url: url.into(),
            app_secret: app_secret.into(),
        });
    }

    /// How long a webhook POST may take before it counts as unanswered (default 5 s; Meta
    /// waits a few seconds).
    pub fn webhook_timeout(&self, timeout: Duration) {
        self.shared.lock().webhook_timeout = timeout;
    }

    /// The first wait between webhook attempts (default 50 ms); it doubles, up to 2 s.
    pub fn retry_backoff(&self, first: Duration) {
        self.shared.lock().retry_backoff = first;
    }

    /// How many times a status webhook is tried before the fake gives up (default 5).
    pub fn status_attempts(&self, attempts: usize) {
        self.shared.lock().status_attempts = attempts.max(1);
    }

    /// Encode webhook bodies like Meta's encoder (`\u00e9`, `\/`) instead of plain UTF-8.
    pub fn escape_like_meta(&self, on: bool) {
        self.shared.lock().escape_like_meta = on;
    }

    /// After each accepted send, post `sent` then `delivered` statuses for it (and `read` with
    /// `auto_read`), each retried until acknowledged. Default false.
    pub fn report_statuses(&self, on: bool) {
        self.shared.lock().report_statuses = on;
    }

    /// With `report_statuses`, also report every message `read`.
    pub fn auto_read(&self, on: bool) {
        self.shared.lock().auto_read = on;
    }

    /// A payload builder for messages to a registered number, timestamped on the fake's clock.
    /// Panics for a number that was never added.
    pub fn inbound(&self, phone_number_id: &str) -> Inbound {
        let state = self.shared.lock();
        let Some(n) = state.number(phone_number_id) else {
            panic!("fake WhatsApp: no number {phone_number_id}; call add_number first");
        };
        Inbound::for_number(&n.number).at(unix_secs(state.now()))
    }

    /// Posts `payload` once to the webhook, signed, and returns the HTTP status (`NO_ANSWER`
    /// for none). The user messages it carries open their 24-hour windows. Panics when no
    /// webhook is configured.
    pub async fn deliver(&self, payload: &Value) -> u16 {
        webhook::deliver(&self.shared, payload, 1)
            .await
            .first()
            .copied()
            .unwrap_or(NO_ANSWER)
    }

    /// Posts `payload` until the receiver answers 200, at most `max_attempts` times, waiting
    /// (with doubling back-off) in between; the same bytes every time, as Meta retries. Returns
    /// every attempt's status.
    pub async fn deliver_until_acknowledged(
        &self,
        payload: &Value,
        max_attempts: usize,
    ) -> Vec<u16> {
        webhook::deliver(&self.shared, payload, max_attempts.max(1)).await
    }

    /// Posts exactly `body` with exactly this `X-Hub-Signature-256` (none with `None`): for
    /// tests of forged or missing signatures and of byte-exact bodies.
    pub async fn deliver_raw(&self, body: Vec<u8>, signature: Option<String>) -> u16 {
        webhook::deliver_raw(&self.shared, body, signature).await
    }

    /// Meta's verification request when a callback URL is configured:
    /// `GET {url}?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`.
    pub async fn verify_webhook(&self, verify_token: &str) -> Verification {
        webhook::verify(&self.shared, verify_token).await
    }
}

/// Seconds since the Unix epoch.
fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// 32 bytes never produced before, in this process or (with overwhelming odds) another: ids
/// must not collide between fakes of parallel tests sharing one Redis.
fn unique_bytes() -> [u8; 32] {
    static SEED: OnceLock<[u8; 32]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = Sha256::new();
        h.update(nanos.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.finalize().into()
    });
    let mut h = Sha256::new();
    h.update(seed);
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.finalize().into()
}

/// A message id in Meta's shape: `wamid.` + base64 of a small record naming the user's number
/// and a unique 18-character hex id (`wamid.HBgLMTU1NTAxMDAyMDAVAgARGBI…`).
fn wamid(wa_id: &str) -> String {
    let unique = hex::encode_upper(&unique_bytes()[..9]);
    let digits: Vec<u8> = wa_id.bytes().filter(u8::is_ascii_digit).take(20).collect();
    let mut raw = vec![0x1c, 0x18, digits.len() as u8];
    raw.extend_from_slice(&digits);
    raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x11, 0x18, 0x12]);
    raw.extend_from_slice(unique.as_bytes());
    raw.push(0x00);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A Graph object id: 15–16 digits.
fn numeric_id() -> String {
    let b = unique_bytes();
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    format!("{}", 1_000_000_000_000_000 + n % 9_000_000_000_000_000)
}

/// Meta's `fbtrace_id`: an opaque support reference.
fn fbtrace_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&unique_bytes()[..8])
}
