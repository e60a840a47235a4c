//! The fake WhatsApp Cloud API over real HTTP: token checks, validation, the 24-hour window,
//! scripted errors, webhook signatures and retries, status reports, and the binary.
// Helpers here are test code too: a failed step must stop the test loudly.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on any error"
)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use e2e::whatsapp::{
    APP_ID, Behavior, ContactCard, FakeGraph, Inbound, Media, NO_ANSWER, Number, SentKind,
    StatusKind, Template, batch, sign,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const PNID: &str = "106540352242922";
const WABA: &str = "102290129340398";
const TOKEN: &str = "EAAGtoken-one";
const PNID2: &str = "107000000000001";
const WABA2: &str = "103000000000001";
const TOKEN2: &str = "EAAGtoken-two";
const USER: &str = "15550001111";
const SECRET: &str = "app-secret";
/// Safety net for waits on events; never how long a test expects to take.
const WAIT: Duration = Duration::from_secs(10);

fn fake() -> FakeGraph {
    let fake = FakeGraph::start().unwrap();
    fake.add_number(Number {
        phone_number_id: PNID.into(),
        waba_id: WABA.into(),
        display_phone_number: "+1 555-010-0200".into(),
        verified_name: "Acme Support".into(),
        token: TOKEN.into(),
    });
    fake.add_number(Number {
        phone_number_id: PNID2.into(),
        waba_id: WABA2.into(),
        display_phone_number: "+44 7700 900123".into(),
        verified_name: "Other Ltd".into(),
        token: TOKEN2.into(),
    });
    fake
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get(fake: &FakeGraph, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut req = client().get(format!("{}{path}", fake.base_url));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn call(fake: &FakeGraph, method: &str, token: &str, path: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let res = client()
        .request(method, format!("{}{path}", fake.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn send(fake: &FakeGraph, token: &str, pnid: &str, body: &Value) -> (u16, Value) {
    let res = client()
        .post(format!("{}/v21.0/{pnid}/messages", fake.base_url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn text(to: &str, body: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": { "body": body },
    })
}

fn template(to: &str, name: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({ "type": "text", "text": p }))
        .collect();
    json!({
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {
            "name": name,
            "language": { "code": "en_US" },
            "components": [{ "type": "body", "parameters": parameters }],
        },
    })
}

/// The `error` object of a Graph error answer, checked for the fields every one has.
fn error(body: &Value) -> &Value {
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    assert!(e["type"].is_string(), "{body}");
    assert!(e["code"].is_u64(), "{body}");
    assert!(e["fbtrace_id"].is_string(), "{body}");
    e
}

/// HMAC-SHA256 computed here, not with the fake's `sign`.
fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the app's webhook endpoint answers to one POST.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never answer: the caller's timeout ends it.
    Hang,
}

/// One POST the webhook endpoint received.
#[derive(Debug, Clone)]
struct Got {
    signature: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct ReceiverState {
    answers: VecDeque<Answer>,
    got: Vec<Got>,
}

/// A stand-in for the app's webhook endpoint: records every POST, answers as scripted (200
/// once the script is used up).
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    fn start(answers: &[Answer]) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            answers: answers.iter().copied().collect(),
            got: Vec::new(),
        }));
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/webhooks/whatsapp",
            listener.local_addr().unwrap()
        );
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/webhooks/whatsapp", web::post().to(receive))
                .route("/webhooks/whatsapp", web::get().to(verify))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        drop(tokio::spawn(server));
        Receiver { url, state, handle }
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(tokio::spawn(async move { handle.stop(false).await }));
    }
}

async fn receive(
    req: HttpRequest,
    state: web::Data<Mutex<ReceiverState>>,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let answer = {
        let mut s = state.lock().unwrap();
        s.got.push(Got {
            signature: header("x-hub-signature-256"),
            content_type: header("content-type"),
            body: body.to_vec(),
        });
        s.answers.pop_front().unwrap_or(Answer::Status(200))
    };
    match answer {
        Answer::Status(code) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).finish()
        }
        Answer::Hang => std::future::pending().await,
    }
}

/// The app's side of Meta's verification GET: echo the challenge when the token matches.
async fn verify(query: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
    let param = |k: &str| query.get(k).map(String::as_str);
    match (
        param("hub.mode"),
        param("hub.verify_token"),
        param("hub.challenge"),
    ) {
        (Some("subscribe"), Some("verify-me"), Some(challenge)) => {
            HttpResponse::Ok().body(challenge.to_string())
        }
        _ => HttpResponse::Forbidden().finish(),
    }
}

#[tokio::test]
async fn tokens_and_ownership_are_checked_like_the_graph_api() {
    let fake = fake();

    let (status, body) = get(&fake, Some(TOKEN), &format!("/v21.0/{PNID}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "verified_name": "Acme Support",
            "code_verification_status": "VERIFIED",
            "display_phone_number": "+1 555-010-0200",
            "quality_rating": "GREEN",
            "platform_type": "CLOUD_API",
            "throughput": { "level": "STANDARD" },
            "id": PNID,
        })
    );
    // Any version segment; `fields` narrows the answer (the id always comes back).
    let (status, body) = get(
        &fake,
        Some(TOKEN),
        &format!("/v19.0/{PNID}?fields=verified_name,quality_rating"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "verified_name": "Acme Support", "quality_rating": "GREEN", "id": PNID })
    );

    // A valid token that cannot see the number: 100/33, as for an id that does not exist.
    for id in [PNID, "999999999999999"] {
        let (status, body) = get(&fake, Some(TOKEN2), &format!("/v21.0/{id}")).await;
        assert_eq!(status, 400);
        let e = error(&body);
        assert_eq!(
            (
                e["type"].as_str(),
                e["code"].as_u64(),
                e["error_subcode"].as_u64()
            ),
            (Some("GraphMethodException"), Some(100), Some(33))
        );
        assert!(e["message"].as_str().unwrap().starts_with(&format!(
            "Unsupported get request. Object with ID '{id}' does not exist"
        )));
    }
    let (status, body) = send(&fake, TOKEN2, PNID, &text(USER, "hi")).await;
    assert_eq!(status, 400);
    assert_eq!(error(&body)["error_subcode"], 33);

    let (status, body) = get(&fake, None, &format!("/v21.0/{PNID}")).await;
    assert_eq!(status, 400);
    assert_eq!(error(&body)["code"], 104);

    let (status, body) = get(&fake, Some("EAAGnot-a-token"), &format!("/v21.0/{PNID}")).await;
    assert_eq!(status, 401);
    let e = error(&body);
    assert_eq!(
        (e["type"].as_str(), e["code"].as_u64()),
        (Some("OAuthException"), Some(190))
    );

    // The WABA's numbers and the app's subscription, for the token that manages them.
    let (status, body) = get(&fake, Some(TOKEN), &format!("/v21.0/{WABA}/phone_numbers")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], PNID);
    assert_eq!(body["data"][0]["display_phone_number"], "+1 555-010-0200");
    assert!(body["paging"]["cursors"]["after"].is_string());
    let (status, _) = get(&fake, Some(TOKEN), &format!("/v21.0/{WABA2}/phone_numbers")).await;
    assert_eq!(status, 400);

    let apps = format!("/v21.0/{WABA}/subscribed_apps");
    assert_eq!(
        call(&fake, "GET", TOKEN, &apps).await,
        (200, json!({ "data": [] }))
    );
    assert!(!fake.subscribed(WABA));
    assert_eq!(
        call(&fake, "POST", TOKEN, &apps).await,
        (200, json!({ "success": true }))
    );
    assert!(fake.subscribed(WABA));
    let (_, listed) = call(&fake, "GET", TOKEN, &apps).await;
    assert_eq!(
        listed["data"][0]["whatsapp_business_api_data"]["id"],
        APP_ID
    );
    let (status, _) = call(&fake, "POST", TOKEN2, &apps).await;
    assert_eq!(status, 400);
    assert!(!fake.subscribed(WABA2));

    fake.revoke(TOKEN);
    let (status, body) = get(&fake, Some(TOKEN), &format!("/v21.0/{PNID}")).await;
    assert_eq!(status, 401);
    let e = error(&body);
    assert_eq!(
        (e["code"].as_u64(), e["error_subcode"].as_u64()),
        (Some(190), Some(460))
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Error validating access token")
    );
    let (status, _) = send(&fake, TOKEN, PNID, &text(USER, "hi")).await;
    assert_eq!(status, 401);

    // Every request was recorded with the status it got.
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.status == 401 && c.auth.as_deref() == Some("Bearer EAAGtoken-one"))
    );
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn sends_are_validated_and_text_is_limited_to_4096_characters() {
    let fake = fake();
    fake.set_last_inbound(PNID, USER, Some(fake.now()));

    // 4096 two-byte characters: 8192 bytes, still within the limit, which counts characters.
    let long = "é".repeat(4096);
    let (status, body) = send(&fake, TOKEN, PNID, &text("+1 555-000-1111", &long)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(
        body["contacts"],
        json!([{ "input": "+1 555-000-1111", "wa_id": USER }])
    );
    let first = body["messages"][0]["id"].as_str().unwrap().to_string();
    assert!(first.starts_with("wamid."), "{first}");

    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, &"a".repeat(4097))).await;
    assert_eq!(status, 400);
    let e = error(&body);
    assert_eq!(e["code"], 100);
    assert_eq!(
        e["message"],
        "(#100) Param text['body'] must be at most 4096 characters long."
    );

    let mut no_product = text(USER, "hi");
    no_product
        .as_object_mut()
        .unwrap()
        .remove("messaging_product");
    let mut sms = text(USER, "hi");
    sms["messaging_product"] = json!("sms");
    let mut no_to = text(USER, "hi");
    no_to.as_object_mut().unwrap().remove("to");
    for bad in [
        no_product,
        sms,
        no_to,
        text(USER, ""),
        text("not-a-number", "hi"),
    ] {
        let (status, body) = send(&fake, TOKEN, PNID, &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(error(&body)["code"], 100, "{bad}");
    }

    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "again")).await;
    assert_eq!(status, 200);
    let second = body["messages"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);

    let sent = fake.wait_sent(2, WAIT).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].kind, SentKind::Text { body: long });
    assert_eq!(sent[0].to, USER);
    assert_eq!(sent[0].token, TOKEN);
    assert_eq!(sent[0].wamid.as_deref(), Some(first.as_str()));
    assert_eq!(
        sent[1].kind,
        SentKind::Text {
            body: "again".into()
        }
    );

    // A read receipt is answered `success`, not with a message id.
    let read =
        json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X" });
    assert_eq!(
        send(&fake, TOKEN, PNID, &read).await,
        (200, json!({ "success": true }))
    );
    let reads = fake.wait_reads(1, WAIT).await;
    assert_eq!(
        reads[0].kind,
        SentKind::Read {
            message_id: "wamid.X".into()
        }
    );
    assert_eq!(reads[0].wamid, None);
}

#[tokio::test]
async fn free_form_messages_need_the_24_hour_window_and_templates_do_not() {
    let fake = fake();
    let receiver = Receiver::start(&[]);
    fake.webhook(&receiver.url, SECRET);

    // The user never wrote: only a template goes out.
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "hello?")).await;
    assert_eq!(status, 400);
    let e = error(&body);
    assert_eq!(
        (e["type"].as_str(), e["code"].as_u64()),
        (Some("OAuthException"), Some(131047))
    );
    assert_eq!(e["message"], "(#131047) Re-engagement message");
    assert_eq!(e["error_data"]["messaging_product"], "whatsapp");
    assert!(
        e["error_data"]["details"]
            .as_str()
            .unwrap()
            .contains("24 hours")
    );

    // A message delivered through the fake opens the window.
    let inbound = fake.inbound(PNID).text(USER, "Ada", "hi there").build();
    assert_eq!(fake.deliver(&inbound).await, 200);
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "hello!")).await.0, 200);

    fake.advance(Duration::from_secs(24 * 3600 - 60));
    assert_eq!(
        send(&fake, TOKEN, PNID, &text(USER, "still here")).await.0,
        200
    );
    fake.advance(Duration::from_secs(120));
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "too late")).await;
    assert_eq!((status, error(&body)["code"].as_u64()), (400, Some(131047)));

    let (status, body) = send(
        &fake,
        TOKEN,
        PNID,
        &template(USER, "follow_up", &["Ada", "Your order shipped"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let last = fake.messages().pop().unwrap();
    assert_eq!(
        last.kind,
        SentKind::Template {
            name: "follow_up".into(),
            language: "en_US".into(),
            params: vec!["Ada".into(), "Your order shipped".into()],
        }
    );
    // Meta refuses template parameters with new lines.
    let (status, body) = send(
        &fake,
        TOKEN,
        PNID,
        &template(USER, "follow_up", &["two\nlines"]),
    )
    .await;
    assert_eq!((status, error(&body)["code"].as_u64()), (400, Some(132018)));
    // Once the WABA has approved templates, others and wrong parameter counts are refused.
    fake.add_template(WABA, Template::new("follow_up", "en_US", 2));
    let (status, body) = send(&fake, TOKEN, PNID, &template(USER, "unknown", &[])).await;
    assert_eq!((status, error(&body)["code"].as_u64()), (404, Some(132001)));
    let (status, body) = send(&fake, TOKEN, PNID, &template(USER, "follow_up", &["Ada"])).await;
    assert_eq!((status, error(&body)["code"].as_u64()), (400, Some(132000)));

    // A fresh message opens it again; and the check can be switched off.
    fake.set_last_inbound(PNID, USER, Some(fake.now()));
    assert_eq!(
        send(&fake, TOKEN, PNID, &text(USER, "welcome back"))
            .await
            .0,
        200
    );
    fake.set_last_inbound(PNID, USER, None);
    fake.enforce_window(false);
    assert_eq!(
        send(&fake, TOKEN, PNID, &text(USER, "unchecked")).await.0,
        200
    );
}

#[tokio::test]
async fn scripted_errors_have_metas_shapes() {
    let fake = fake();
    fake.enforce_window(false);
    fake.script_all([
        Behavior::throughput(),
        Behavior::pair_rate_limit(),
        Behavior::server_error(),
        Behavior::internal_error(),
        Behavior::Drop,
        Behavior::Accept.after(Duration::from_millis(10)),
        Behavior::Error {
            http: 400,
            code: 131026,
            subcode: None,
            message: "(#131026) Message undeliverable".into(),
        },
    ]);
    let expect = [
        (400, 130429, "(#130429) Rate limit hit"),
        (
            400,
            131056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        ),
        (503, 2, "(#2) Service temporarily unavailable"),
        (500, 131000, "(#131000) Something went wrong"),
    ];
    for (http, code, message) in expect {
        let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "hi")).await;
        assert_eq!(status, http, "{body}");
        let e = error(&body);
        assert_eq!(
            (e["code"].as_u64(), e["message"].as_str()),
            (Some(code), Some(message))
        );
    }
    let dropped = client()
        .post(format!("{}/v21.0/{PNID}/messages", fake.base_url))
        .bearer_auth(TOKEN)
        .json(&text(USER, "hi"))
        .send()
        .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(fake.calls().last().unwrap().status, NO_ANSWER);
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "slow")).await.0, 200);
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "hi")).await;
    assert_eq!(
        (status, error(&body)["error_data"]["details"].as_str()),
        (400, Some("Message Undeliverable."))
    );
    // Read receipts do not use up the script.
    fake.script(Behavior::re_engagement());
    let read =
        json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X" });
    assert_eq!(send(&fake, TOKEN, PNID, &read).await.0, 200);
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "hi")).await.0, 400);
    // An empty script accepts.
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "fine")).await.0, 200);

    // 190 revokes the token for good.
    fake.script(Behavior::token_revoked());
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "hi")).await;
    assert_eq!(
        (status, error(&body)["error_subcode"].as_u64()),
        (401, Some(460))
    );
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "hi")).await;
    assert_eq!((status, error(&body)["code"].as_u64()), (401, Some(190)));

    let bodies: Vec<SentKind> = fake.messages().into_iter().map(|s| s.kind).collect();
    assert_eq!(
        bodies,
        vec![
            SentKind::Text {
                body: "slow".into()
            },
            SentKind::Text {
                body: "fine".into()
            }
        ]
    );

    // One user's script is theirs alone, and is taken before the general one.
    let fake = self::fake();
    fake.enforce_window(false);
    let other = "15550002222";
    fake.script_to(USER, [Behavior::pair_rate_limit(), Behavior::Accept]);
    fake.script(Behavior::server_error());
    let (status, body) = send(&fake, TOKEN, PNID, &text(other, "to the other user")).await;
    assert_eq!((status, error(&body)["code"].as_u64()), (503, Some(2)));
    assert_eq!(send(&fake, TOKEN, PNID, &text(other, "again")).await.0, 200);
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "hi")).await;
    assert_eq!((status, error(&body)["code"].as_u64()), (400, Some(131056)));
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "hi")).await.0, 200);
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "hi")).await.0, 200);

    // Throughput: at most 2 a second per number, on a clock that only moves when told.
    let fake = self::fake();
    fake.enforce_window(false);
    fake.freeze_clock();
    fake.limit_throughput(2);
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "1")).await.0, 200);
    assert_eq!(send(&fake, TOKEN, PNID, &text(USER, "2")).await.0, 200);
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "3")).await;
    assert_eq!((status, error(&body)["code"].as_u64()), (400, Some(130429)));
    assert_eq!(
        send(&fake, TOKEN2, PNID2, &text(USER, "other number"))
            .await
            .0,
        200
    );
    fake.advance(Duration::from_secs(1));
    assert_eq!(
        send(&fake, TOKEN, PNID, &text(USER, "3 again")).await.0,
        200
    );
}

#[tokio::test]
async fn webhooks_are_signed_over_the_exact_bytes_sent() {
    // RFC 4231-style known answer: HMAC-SHA256("key", "The quick brown fox…").
    assert_eq!(
        sign("key", b"The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );

    let fake = fake();
    let receiver = Receiver::start(&[]);
    fake.webhook(&receiver.url, SECRET);
    let words = "Grüße 👋 — ça va? https://acme.example/x";
    let payload = fake.inbound(PNID).text(USER, "Zoë", words).build();
    assert_eq!(fake.deliver(&payload).await, 200);

    let got = &receiver.got()[0];
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.signature, Some(hmac_hex(SECRET, &got.body)));
    assert_ne!(got.signature, Some(hmac_hex("another secret", &got.body)));
    let raw = String::from_utf8(got.body.clone()).unwrap();
    assert!(raw.contains(words), "UTF-8 is sent unescaped: {raw}");
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap(), payload);

    // Encoded like Meta's encoder, the same JSON has other bytes: re-serialising breaks the
    // signature, hashing the raw body does not.
    fake.escape_like_meta(true);
    assert_eq!(fake.deliver(&payload).await, 200);
    let got = &receiver.got()[1];
    assert!(got.body.is_ascii());
    assert!(String::from_utf8_lossy(&got.body).contains("Gr\\u00fc\\u00dfe \\ud83d\\udc4b"));
    assert_eq!(got.signature, Some(hmac_hex(SECRET, &got.body)));
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap(), payload);
    assert_ne!(
        got.signature,
        Some(hmac_hex(SECRET, payload.to_string().as_bytes()))
    );

    assert_eq!(
        fake.deliver_raw(b"{}".to_vec(), Some("sha256=forged".into()))
            .await,
        200
    );
    assert_eq!(fake.deliver_raw(b"{}".to_vec(), None).await, 200);
    let got = receiver.got();
    assert_eq!(got[2].signature.as_deref(), Some("sha256=forged"));
    assert_eq!(got[3].signature, None);
    assert_eq!(fake.deliveries().len(), 4);
}

#[tokio::test]
async fn inbound_payloads_have_metas_shape_and_batch_several_numbers() {
    let fake = fake();
    let photo = fake.add_media(PNID, "image/jpeg", b"\xff\xd8 not really a jpeg".to_vec());
    let voice = Media::new("2233445566", "audio/ogg; codecs=opus");
    let card = ContactCard {
        formatted_name: "Grace Hopper".into(),
        first_name: "Grace".into(),
        phone: "+1 555 000 2222".into(),
        wa_id: Some("15550002222".into()),
    };
    let first = fake
        .inbound(PNID)
        .text(USER, "Ada", "hi")
        .button_reply(USER, "Ada", "yes", "Yes")
        .reply_to("wamid.OURS")
        .list_reply(USER, "Ada", "plan-b", "Plan B", "The cheaper one")
        .button(USER, "Ada", "STOP", "Stop promotions")
        .location(USER, "Ada", 52.52, 13.405, "Office", "Unter den Linden 1")
        .contact_card(USER, "Ada", &card)
        .reaction(USER, "Ada", "wamid.OURS", "👍")
        .image(USER, "Ada", &photo, Some("my receipt"))
        .audio(USER, "Ada", &voice, true)
        .sticker(USER, "Ada", &voice, false)
        .unsupported(USER, "Ada");
    let second = fake.inbound(PNID2).text("447700900999", "Bo", "hello");
    let body = batch(&[first.clone(), second]);

    assert_eq!(body["object"], "whatsapp_business_account");
    let entries = body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], WABA);
    assert_eq!(entries[1]["id"], WABA2);
    let change = &entries[0]["changes"][0];
    assert_eq!(change["field"], "messages");
    let value = &change["value"];
    assert_eq!(value["messaging_product"], "whatsapp");
    assert_eq!(
        value["metadata"],
        json!({ "display_phone_number": "15550100200", "phone_number_id": PNID })
    );
    // One contact per sender, however many messages.
    assert_eq!(
        value["contacts"],
        json!([{ "profile": { "name": "Ada" }, "wa_id": USER }])
    );
    let m = value["messages"].as_array().unwrap();
    let types: Vec<&str> = m.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "text",
            "interactive",
            "interactive",
            "button",
            "location",
            "contacts",
            "reaction",
            "image",
            "audio",
            "sticker",
            "unsupported"
        ]
    );
    for message in m {
        assert_eq!(message["from"], USER);
        assert!(message["id"].as_str().unwrap().starts_with("wamid."));
        assert!(
            message["timestamp"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
    }
    assert_eq!(m[0]["text"], json!({ "body": "hi" }));
    assert_eq!(
        m[1]["interactive"],
        json!({ "type": "button_reply", "button_reply": { "id": "yes", "title": "Yes" } })
    );
    assert_eq!(
        m[1]["context"],
        json!({ "from": "15550100200", "id": "wamid.OURS" })
    );
    assert_eq!(
        m[2]["interactive"]["list_reply"]["description"],
        "The cheaper one"
    );
    assert_eq!(
        m[3]["button"],
        json!({ "payload": "STOP", "text": "Stop promotions" })
    );
    assert_eq!(m[4]["location"]["latitude"], 52.52);
    assert_eq!(m[4]["location"]["address"], "Unter den Linden 1");
    assert_eq!(
        m[5]["contacts"][0]["name"]["formatted_name"],
        "Grace Hopper"
    );
    assert_eq!(m[5]["contacts"][0]["phones"][0]["wa_id"], "15550002222");
    assert_eq!(
        m[6]["reaction"],
        json!({ "message_id": "wamid.OURS", "emoji": "👍" })
    );
    assert_eq!(m[7]["image"]["id"], photo.id.as_str());
    assert_eq!(m[7]["image"]["caption"], "my receipt");
    assert_eq!(m[8]["audio"]["voice"], true);
    assert_eq!(m[10]["errors"][0]["code"], 131051);
    let ids = first.ids();
    assert_eq!(ids.len(), 11);
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        11
    );
    assert_eq!(
        entries[1]["changes"][0]["value"]["metadata"]["phone_number_id"],
        PNID2
    );

    // The media it names downloads the way Meta serves it: URL first, both with the token.
    let (status, media) = get(&fake, Some(TOKEN), &format!("/v21.0/{}", photo.id)).await;
    assert_eq!(status, 200, "{media}");
    assert_eq!(media["mime_type"], "image/jpeg");
    assert_eq!(media["sha256"], photo.sha256.as_str());
    let url = media["url"].as_str().unwrap();
    let bytes = client().get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(
        bytes.bytes().await.unwrap().as_ref(),
        b"\xff\xd8 not really a jpeg"
    );
    assert_eq!(client().get(url).send().await.unwrap().status(), 401);
    assert_eq!(
        get(&fake, Some(TOKEN2), &format!("/v21.0/{}", photo.id))
            .await
            .0,
        400
    );

    // Statuses: sent with its conversation and pricing, failed with Meta's error.
    let statuses = Inbound::new(WABA, PNID, "+1 555-010-0200")
        .status("wamid.A", USER, StatusKind::Sent)
        .status(
            "wamid.B",
            USER,
            StatusKind::Failed {
                code: 131026,
                title: "Message undeliverable".into(),
            },
        )
        .build();
    let s = &statuses["entry"][0]["changes"][0]["value"]["statuses"];
    assert!(
        statuses["entry"][0]["changes"][0]["value"]
            .get("messages")
            .is_none()
    );
    assert_eq!(s[0]["status"], "sent");
    assert_eq!(s[0]["recipient_id"], USER);
    assert!(s[0]["conversation"]["id"].is_string());
    assert_eq!(s[0]["pricing"]["category"], "service");
    assert_eq!(s[1]["status"], "failed");
    assert_eq!(s[1]["errors"][0]["code"], 131026);
    assert_eq!(
        s[1]["errors"][0]["error_data"]["details"],
        "Message Undeliverable."
    );
}

#[tokio::test]
async fn deliveries_are_retried_until_acknowledged() {
    let fake = fake();
    fake.retry_backoff(Duration::from_millis(1));
    let receiver = Receiver::start(&[Answer::Status(500), Answer::Status(503)]);
    fake.webhook(&receiver.url, SECRET);
    let payload = fake
        .inbound(PNID)
        .text(USER, "Ada", "are you there?")
        .build();

    assert_eq!(
        fake.deliver_until_acknowledged(&payload, 5).await,
        vec![500, 503, 200]
    );
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|g| g.body == got[0].body && g.signature == got[0].signature)
    );
    // The user wrote, whatever the endpoint answered.
    assert!(fake.last_inbound(PNID, USER).is_some());

    // An endpoint that does not answer in time counts as a failure and is tried again.
    let receiver = Receiver::start(&[Answer::Hang]);
    fake.webhook(&receiver.url, SECRET);
    fake.webhook_timeout(Duration::from_millis(200));
    assert_eq!(
        fake.deliver_until_acknowledged(&payload, 3).await,
        vec![NO_ANSWER, 200]
    );

    // Attempts run out.
    let receiver = Receiver::start(&[Answer::Status(500), Answer::Status(500)]);
    fake.webhook(&receiver.url, SECRET);
    assert_eq!(
        fake.deliver_until_acknowledged(&payload, 2).await,
        vec![500, 500]
    );
    // Nobody listening.
    drop(receiver);
    fake.webhook("http://127.0.0.1:9/webhooks/whatsapp", SECRET);
    assert_eq!(fake.deliver(&payload).await, NO_ANSWER);
}

#[tokio::test]
async fn statuses_follow_accepted_sends() {
    let fake = fake();
    let receiver = Receiver::start(&[]);
    fake.webhook(&receiver.url, SECRET);
    fake.report_statuses(true);
    fake.auto_read(true);

    let inbound = fake.inbound(PNID).text(USER, "Ada", "hi");
    let user_message = inbound.ids()[0].clone();
    assert_eq!(fake.deliver(&inbound.build()).await, 200);
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "hello Ada")).await;
    assert_eq!(status, 200);
    let wamid = body["messages"][0]["id"].as_str().unwrap().to_string();

    let reported = |deliveries: &[e2e::whatsapp::Delivery], id: &str| -> Vec<String> {
        deliveries
            .iter()
            .flat_map(|d| d.statuses())
            .filter(|(w, _)| w == id)
            .map(|(_, s)| s)
            .collect()
    };
    let deliveries = fake
        .wait_deliveries(|d| reported(d, &wamid).len() == 3, WAIT)
        .await;
    assert_eq!(reported(&deliveries, &wamid), ["sent", "delivered", "read"]);
    for d in &deliveries {
        assert_eq!(d.status, 200);
        assert_eq!(d.signature, Some(hmac_hex(SECRET, &d.body)));
    }
    let sent = deliveries
        .iter()
        .map(|d| d.json())
        .find(|j| j["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] == "sent")
        .unwrap();
    let status = &sent["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert_eq!(status["recipient_id"], USER);
    assert_eq!(status["pricing"]["category"], "service");
    assert_eq!(
        sent["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"],
        PNID
    );

    // Accepted now, failed later.
    fake.script(Behavior::undeliverable());
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "lost")).await;
    assert_eq!(status, 200);
    let lost = body["messages"][0]["id"].as_str().unwrap().to_string();
    let deliveries = fake
        .wait_deliveries(|d| !reported(d, &lost).is_empty(), WAIT)
        .await;
    assert_eq!(reported(&deliveries, &lost), ["failed"]);
    let failed = deliveries
        .iter()
        .find(|d| d.statuses().iter().any(|(w, _)| *w == lost))
        .unwrap()
        .json();
    assert_eq!(
        failed["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"],
        131026
    );

    // The window reported the asynchronous way.
    fake.window_failures_async(true);
    fake.set_last_inbound(PNID, USER, None);
    let (status, body) = send(&fake, TOKEN, PNID, &text(USER, "after hours")).await;
    assert_eq!(status, 200);
    let late = body["messages"][0]["id"].as_str().unwrap().to_string();
    let deliveries = fake
        .wait_deliveries(|d| !reported(d, &late).is_empty(), WAIT)
        .await;
    let failed = deliveries
        .iter()
        .find(|d| d.statuses().iter().any(|(w, _)| *w == late))
        .unwrap()
        .json();
    assert_eq!(
        failed["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"],
        131047
    );

    // A read receipt for the user's message names its user.
    let read =
        json!({ "messaging_product": "whatsapp", "status": "read", "message_id": user_message });
    assert_eq!(send(&fake, TOKEN, PNID, &read).await.0, 200);
    assert_eq!(fake.wait_reads(1, WAIT).await[0].to, USER);
}

#[tokio::test]
#[should_panic(expected = "gave up")]
async fn waiting_for_a_send_that_never_comes_fails_loudly() {
    let fake = fake();
    fake.wait_sent(1, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn the_binary_serves_numbers_and_injects_inbound_messages() {
    let receiver = Receiver::start(&[]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-whatsapp"))
        .args(["--port", "0", "--number"])
        .arg(format!(
            "{PNID}:{WABA}:+1 555-010-0200:Acme Support:{TOKEN}"
        ))
        .args(["--webhook-url", &receiver.url, "--app-secret", SECRET])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line.trim().to_string()
    })
    .await
    .unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{base:?}");

    let res = client()
        .get(format!("{base}/v21.0/{PNID}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client()
        .post(format!("{base}/_fake/inbound"))
        .json(&json!({ "phone_number_id": PNID, "from": USER, "name": "Ada", "text": "Hi from curl" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["attempts"], json!([200]));

    let got = receiver.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].signature, Some(hmac_hex(SECRET, &got[0].body)));
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    let message = &body["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(message["text"]["body"], "Hi from curl");
    assert_eq!(message["id"], answer["id"]);

    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn verification_and_outages() {
    let fake = fake();
    let receiver = Receiver::start(&[]);
    fake.webhook(&receiver.url, SECRET);
    let ok = fake.verify_webhook("verify-me").await;
    assert!(ok.accepted(), "{ok:?}");
    assert!(ok.challenge.parse::<u32>().is_ok());
    let wrong = fake.verify_webhook("guessed").await;
    assert_eq!(wrong.status, 403);
    assert!(!wrong.accepted());

    // Down, connections are refused; up again on the same address, with its records.
    let url = format!("{}/v21.0/{PNID}", fake.base_url);
    assert_eq!(
        get(&fake, Some(TOKEN), &format!("/v21.0/{PNID}")).await.0,
        200
    );
    fake.go_down().await;
    assert!(client().get(&url).bearer_auth(TOKEN).send().await.is_err());
    fake.come_up().unwrap();
    assert_eq!(
        get(&fake, Some(TOKEN), &format!("/v21.0/{PNID}")).await.0,
        200
    );
    assert_eq!(fake.calls().len(), 2);
}
