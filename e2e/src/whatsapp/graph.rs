//! The fake's HTTP side: the Graph API routes (`/{version}/{phone_number_id}`,
//! `…/phone_numbers`, `…/subscribed_apps`, `…/messages`, media), token checks, and the
//! `/_fake/…` helpers a person uses to try the product locally.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::model::REVOKED_MESSAGE;
use super::rules::{GraphError, Request, judge, parse_send};
use super::webhook;
use super::{APP_ID, Behavior, Call, NO_ANSWER, Sent, SentKind, Shared, State, wamid};

/// `{version}` in a route: any `v{N}.{M}`.
const V: &str = "/{version:v[0-9]+\\.[0-9]+}";

/// Serves the fake's routes on `listener`.
pub(super) fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
            .route("/_fake/inbound", web::post().to(fake_inbound))
            .route("/_fake/sent", web::get().to(fake_sent))
            .route("/_media/{media_id}", web::get().to(download_media))
            .route(&format!("{V}/{{id}}/messages"), web::post().to(messages))
            .route(
                &format!("{V}/{{id}}/phone_numbers"),
                web::get().to(phone_numbers),
            )
            .route(
                &format!("{V}/{{id}}/subscribed_apps"),
                web::route().to(subscribed_apps),
            )
            .route(&format!("{V}/{{id}}"), web::get().to(node))
            .default_service(web::to(unknown_path))
    })
    .workers(1)
    .disable_signals()
    .on_connect(remember_socket)
    .listen(listener)?
    .run();
    let handle = server.handle();
    drop(tokio::spawn(server));
    Ok(handle)
}

/// A second handle on a connection's socket, so `Behavior::Drop` can close it unanswered.
#[derive(Debug)]
struct Socket(std::net::TcpStream);

fn remember_socket(conn: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    #[cfg(unix)]
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsFd;
        if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
            data.insert(Socket(std::net::TcpStream::from(fd)));
        }
    }
}

/// The bearer token if Meta would accept it.
fn authenticate(state: &State, req: &HttpRequest) -> Result<String, GraphError> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(GraphError::new(
            400,
            "OAuthException",
            104,
            None,
            "An access token is required to request this resource.",
        ));
    };
    if state.revoked.contains(token) {
        return Err(GraphError::new(
            401,
            "OAuthException",
            190,
            Some(460),
            REVOKED_MESSAGE,
        ));
    }
    if !state.numbers.iter().any(|n| n.number.token == token) {
        return Err(GraphError::new(
            401,
            "OAuthException",
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        ));
    }
    Ok(token.to_string())
}

/// The body as recorded: JSON, else the text, else `Null`.
fn recorded_body(raw: &[u8]) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
}

fn record(shared: &Shared, req: &HttpRequest, body: Value, status: u16) {
    shared.lock().calls.push(Call {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        auth: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
        status,
    });
    shared.notify();
}

/// Records the call and answers `out` with `status`, with Meta's `WWW-Authenticate` on token
/// errors.
fn answer(
    shared: &Shared,
    req: &HttpRequest,
    body: Value,
    status: u16,
    out: Value,
) -> HttpResponse {
    record(shared, req, body, status);
    let mut res =
        HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST));
    match out["error"]["code"].as_u64() {
        Some(190) => {
            res.insert_header((
                "WWW-Authenticate",
                "OAuth \"Facebook Platform\" \"invalid_token\" \"Invalid OAuth access token\"",
            ));
        }
        Some(104) => {
            res.insert_header((
                "WWW-Authenticate",
                "OAuth \"Facebook Platform\" \"invalid_request\" \"An access token is required\"",
            ));
        }
        _ => {}
    }
    res.json(out)
}

fn fail(shared: &Shared, req: &HttpRequest, body: Value, e: GraphError) -> HttpResponse {
    answer(shared, req, body, e.http, e.body)
}

/// The phone number fields Meta returns when none are asked for.
const DEFAULT_FIELDS: [&str; 7] = [
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
];

/// `GET /{version}/{id}`: a phone number (or a media object) the token can read.
async fn node(
    req: HttpRequest,
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (_, id) = path.into_inner();
    let fields: Option<Vec<String>> =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("fields").cloned())
            .map(|f| {
                f.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            });
    let result = {
        let state = shared.lock();
        authenticate(&state, &req).and_then(|token| {
            if let Some(n) = state.number(&id).filter(|n| n.number.token == token) {
                phone_number_fields(n, fields.as_deref())
            } else if let Some(m) = state.media.get(&id).filter(|m| {
                state
                    .number(&m.phone_number_id)
                    .is_some_and(|n| n.number.token == token)
            }) {
                Ok(json!({
                    "messaging_product": "whatsapp",
                    "url": format!("{}/_media/{id}", state.base_url),
                    "mime_type": m.mime_type,
                    "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&m.bytes)),
                    "file_size": m.bytes.len(),
                    "id": id,
                }))
            } else {
                Err(GraphError::no_object("get", &id))
            }
        })
    };
    match result {
        Ok(out) => answer(&shared, &req, Value::Null, 200, out),
        Err(e) => fail(&shared, &req, Value::Null, e),
    }
}

fn phone_number_fields(
    n: &super::NumberState,
    fields: Option<&[String]>,
) -> Result<Value, GraphError> {
    let wanted: Vec<&str> = match fields {
        Some(f) => f.iter().map(String::as_str).collect(),
        None => DEFAULT_FIELDS.to_vec(),
    };
    let mut out = serde_json::Map::new();
    for field in wanted {
        let value = match field {
            "verified_name" => json!(n.number.verified_name),
            "code_verification_status" => json!("VERIFIED"),
            "display_phone_number" => json!(n.number.display_phone_number),
            "quality_rating" => json!(n.quality_rating),
            "platform_type" => json!("CLOUD_API"),
            "throughput" => json!({ "level": "STANDARD" }),
            "id" => json!(n.number.phone_number_id),
            "name_status" => json!("APPROVED"),
            "status" => json!("CONNECTED"),
            "messaging_limit_tier" => json!("TIER_1K"),
            "is_official_business_account" => json!(false),
            other => {
                return Err(GraphError::param(&format!(
                    "(#100) Tried accessing nonexisting field ({other}) on node type \
                     (WhatsAppBusinessPhoneNumber)"
                )));
            }
        };
        out.insert(field.to_string(), value);
    }
    // Graph always includes the node's id.
    out.insert("id".into(), json!(n.number.phone_number_id));
    Ok(Value::Object(out))
}

/// `GET /{version}/{waba_id}/phone_numbers`: the WABA's numbers this token may use.
async fn phone_numbers(
    req: HttpRequest,
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (_, waba_id) = path.into_inner();
    let result = {
        let state = shared.lock();
        authenticate(&state, &req).and_then(|token| {
            let data: Vec<Value> = state
                .numbers
                .iter()
                .filter(|n| n.number.waba_id == waba_id && n.number.token == token)
                .map(|n| {
                    json!({
                        "verified_name": n.number.verified_name,
                        "code_verification_status": "VERIFIED",
                        "display_phone_number": n.number.display_phone_number,
                        "quality_rating": n.quality_rating,
                        "id": n.number.phone_number_id,
                    })
                })
                .collect();
            if data.is_empty() {
                return Err(GraphError::no_object("get", &waba_id));
            }
            let cursor = |v: &Value| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .encode(v["id"].as_str().unwrap_or_default())
            };
            let (before, after) = (
                data.first().map(cursor).unwrap_or_default(),
                data.last().map(cursor).unwrap_or_default(),
            );
            Ok(json!({ "data": data, "paging": { "cursors": { "before": before, "after": after } } }))
        })
    };
    match result {
        Ok(out) => answer(&shared, &req, Value::Null, 200, out),
        Err(e) => fail(&shared, &req, Value::Null, e),
    }
}

/// `POST`/`GET`/`DELETE /{version}/{waba_id}/subscribed_apps`: the app's webhook subscription
/// to a WABA the token can manage.
async fn subscribed_apps(
    req: HttpRequest,
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
    raw: Bytes,
) -> HttpResponse {
    let (_, waba_id) = path.into_inner();
    let body = recorded_body(&raw);
    let method = req.method().as_str().to_ascii_lowercase();
    let result = {
        let mut state = shared.lock();
        authenticate(&state, &req).and_then(|token| {
            if !state
                .numbers
                .iter()
                .any(|n| n.number.waba_id == waba_id && n.number.token == token)
            {
                return Err(GraphError::no_object(&method, &waba_id));
            }
            match method.as_str() {
                "post" => {
                    state.subscribed.insert(waba_id.clone());
                    Ok(json!({ "success": true }))
                }
                "delete" => {
                    state.subscribed.remove(&waba_id);
                    Ok(json!({ "success": true }))
                }
                "get" if state.subscribed.contains(&waba_id) => Ok(json!({ "data": [{
                    "whatsapp_business_api_data": {
                        "id": APP_ID,
                        "link": format!("https://www.facebook.com/games/?app_id={APP_ID}"),
                        "name": "Konstruct",
                    },
                }] })),
                "get" => Ok(json!({ "data": [] })),
                _ => Err(GraphError::no_object(&method, &waba_id)),
            }
        })
    };
    match result {
        Ok(out) => answer(&shared, &req, body, 200, out),
        Err(e) => fail(&shared, &req, body, e),
    }
}

/// An accepted message's answer body; dropping it (once actix has written it) lets the status
/// reports that follow it start, so they never overtake the answer.
struct AfterAnswer {
    bytes: Option<Bytes>,
    len: u64,
    _written: Option<oneshot::Sender<()>>,
}

impl MessageBody for AfterAnswer {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        Poll::Ready(self.bytes.take().map(Ok))
    }
}

/// What to report about an accepted send later.
#[derive(Debug, Clone)]
pub(super) struct FollowUp {
    pub(super) phone_number_id: String,
    pub(super) wamid: String,
    pub(super) wa_id: String,
    /// The pricing category its statuses report (`service`, `utility`, …).
    pub(super) category: String,
    /// Report it failed with this error instead of sent/delivered.
    pub(super) fail: Option<(u32, String)>,
    pub(super) read: bool,
}

/// `POST /{version}/{phone_number_id}/messages`: sends and read receipts.
async fn messages(
    req: HttpRequest,
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
    raw: Bytes,
) -> HttpResponse {
    let (_, phone_number_id) = path.into_inner();
    let json_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let recorded = recorded_body(&raw);
    let body = if json_type {
        recorded.clone()
    } else {
        Value::Null
    };
    let checked = {
        let state = shared.lock();
        authenticate(&state, &req).and_then(|token| match state.number(&phone_number_id) {
            Some(n) if n.number.token == token => Ok((token, n.number.waba_id.clone())),
            _ => Err(GraphError::no_object("post", &phone_number_id)),
        })
    };
    let (token, waba_id) = match checked {
        Ok(ok) => ok,
        Err(e) => return fail(&shared, &req, recorded, e),
    };
    let request = match parse_send(&body) {
        Ok(r) => r,
        Err(e) => return fail(&shared, &req, recorded, e),
    };
    let (to, wa_id, kind, context) = match request {
        Request::Read { message_id } => {
            {
                let mut state = shared.lock();
                let to = state
                    .inbound_from
                    .get(&message_id)
                    .cloned()
                    .unwrap_or_default();
                state.sent.push(Sent {
                    token,
                    phone_number_id,
                    to,
                    kind: SentKind::Read { message_id },
                    wamid: None,
                    context: None,
                    at: Instant::now(),
                });
            }
            return answer(&shared, &req, recorded, 200, json!({ "success": true }));
        }
        Request::Message {
            to,
            wa_id,
            kind,
            context,
        } => (to, wa_id, kind, context),
    };

    let mut behavior = {
        let mut state = shared.lock();
        let own = state
            .script_to
            .get_mut(&wa_id)
            .and_then(VecDeque::pop_front);
        own.or_else(|| state.script.pop_front())
            .unwrap_or(Behavior::Accept)
    };
    while let Behavior::Delay(wait, inner) = behavior {
        tokio::time::sleep(wait).await;
        behavior = *inner;
    }
    let mut fail_later = match behavior {
        Behavior::Error {
            http,
            code,
            subcode,
            message,
        } => {
            if code == 190 {
                shared.lock().revoked.insert(token.clone());
            }
            let e = GraphError::whatsapp(http, code, subcode, &message);
            return fail(&shared, &req, recorded, e);
        }
        Behavior::Drop => {
            record(&shared, &req, recorded, NO_ANSWER);
            match req.conn_data::<Socket>() {
                // The answer written after this goes nowhere: the client sees the connection
                // close before any byte of a response.
                Some(Socket(socket)) => {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
                // Without a handle on the socket, never answer instead.
                None => std::future::pending::<()>().await,
            }
            return HttpResponse::InternalServerError().finish();
        }
        Behavior::FailLater { code, title } => Some((code, title)),
        Behavior::Accept | Behavior::Delay(..) => None,
    };

    let judged = {
        let mut state = shared.lock();
        judge(&mut state, &phone_number_id, &wa_id, &kind, &mut fail_later).map(|()| {
            let id = wamid(&wa_id);
            let category = match &kind {
                SentKind::Template { name, language, .. } => state
                    .templates
                    .get(&waba_id)
                    .and_then(|ts| {
                        ts.iter()
                            .find(|t| &t.name == name && &t.language == language)
                    })
                    .map_or_else(|| "utility".to_string(), |t| t.category.to_lowercase()),
                _ => "service".to_string(),
            };
            state.sent.push(Sent {
                token: token.clone(),
                phone_number_id: phone_number_id.clone(),
                to: wa_id.clone(),
                kind: kind.clone(),
                wamid: Some(id.clone()),
                context: context.clone(),
                at: Instant::now(),
            });
            let report = state.webhook.is_some() && (state.report_statuses || fail_later.is_some());
            let follow_up = report.then(|| FollowUp {
                phone_number_id: phone_number_id.clone(),
                wamid: id.clone(),
                wa_id: wa_id.clone(),
                category,
                fail: fail_later.clone(),
                read: state.auto_read,
            });
            (id, follow_up)
        })
    };
    let (id, follow_up) = match judged {
        Ok(ok) => ok,
        Err(e) => return fail(&shared, &req, recorded, e),
    };
    let out = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": wa_id }],
        "messages": [{ "id": id }],
    });
    record(&shared, &req, recorded, 200);
    let bytes = Bytes::from(out.to_string());
    let written = follow_up.map(|f| {
        let (tx, rx) = oneshot::channel();
        let shared = shared.clone().into_inner();
        drop(tokio::spawn(async move {
            // Resolves (with an error) when the answer body is dropped after being written.
            let _ = rx.await;
            webhook::report(shared, f).await;
        }));
        tx
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(AfterAnswer {
            len: bytes.len() as u64,
            bytes: Some(bytes),
            _written: written,
        })
}

/// `GET /_media/{media_id}`: a media object's bytes, for the token of the number that received
/// it (Meta's media URLs need the bearer token too).
async fn download_media(
    req: HttpRequest,
    shared: web::Data<Shared>,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    let result = {
        let state = shared.lock();
        authenticate(&state, &req).and_then(|token| {
            state
                .media
                .get(&id)
                .filter(|m| {
                    state
                        .number(&m.phone_number_id)
                        .is_some_and(|n| n.number.token == token)
                })
                .map(|m| (m.mime_type.clone(), m.bytes.clone()))
                .ok_or_else(|| GraphError::no_object("get", &id))
        })
    };
    match result {
        Ok((mime, bytes)) => {
            record(&shared, &req, Value::Null, 200);
            HttpResponse::Ok().content_type(mime).body(bytes)
        }
        // The media host answers 401 without a usable token and 404 for media it cannot show.
        Err(e) => {
            let status = match e.body["error"]["code"].as_u64() {
                Some(104 | 190) => 401,
                _ => 404,
            };
            answer(&shared, &req, Value::Null, status, e.body)
        }
    }
}

/// Anything else: Graph's answer to a path it does not know.
async fn unknown_path(req: HttpRequest, shared: web::Data<Shared>, raw: Bytes) -> HttpResponse {
    let e = GraphError::new(
        400,
        "OAuthException",
        2500,
        None,
        &format!("Unknown path components: {}", req.path()),
    );
    fail(&shared, &req, recorded_body(&raw), e)
}

/// `POST /_fake/inbound {"phone_number_id","from","name","text"}`: builds the webhook a user's
/// text message makes and delivers it, signed, to the configured webhook (retrying until
/// acknowledged). Answers `{"id": wamid, "attempts": [statuses]}`.
async fn fake_inbound(shared: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    let (Some(number), Some(from), Some(text)) = (
        body["phone_number_id"].as_str(),
        body["from"].as_str(),
        body["text"].as_str(),
    ) else {
        return HttpResponse::BadRequest()
            .json(json!({ "error": "expected {\"phone_number_id\",\"from\",\"name\",\"text\"}" }));
    };
    let name = body["name"].as_str().unwrap_or("Customer");
    let inbound = {
        let state = shared.lock();
        if state.webhook.is_none() {
            return HttpResponse::Conflict().json(json!({
                "error": "no webhook configured: start the fake with --webhook-url and --app-secret",
            }));
        }
        let Some(n) = state.number(number) else {
            return HttpResponse::NotFound()
                .json(json!({ "error": format!("no number {number} registered") }));
        };
        super::Inbound::for_number(&n.number)
            .at(super::unix_secs(state.now()))
            .text(from, name, text)
    };
    let shared = shared.into_inner();
    let attempts = webhook::deliver(&shared, &inbound.build(), 5).await;
    HttpResponse::Ok().json(json!({ "id": inbound.ids().first(), "attempts": attempts }))
}

/// `GET /_fake/sent`: what was accepted so far, for a person watching the fake.
async fn fake_sent(shared: web::Data<Shared>) -> HttpResponse {
    let sent: Vec<Value> = shared
        .lock()
        .sent
        .iter()
        .map(|s| {
            let kind = match &s.kind {
                SentKind::Text { body } => json!({ "type": "text", "body": body }),
                SentKind::Template {
                    name,
                    language,
                    params,
                } => json!({ "type": "template", "name": name, "language": language, "params": params }),
                SentKind::Read { message_id } => json!({ "type": "read", "message_id": message_id }),
                SentKind::Other { kind, payload } => json!({ "type": kind, kind: payload }),
            };
            json!({
                "phone_number_id": s.phone_number_id,
                "to": s.to,
                "wamid": s.wamid,
                "context": s.context,
                "message": kind,
            })
        })
        .collect();
    HttpResponse::Ok().json(sent)
}
