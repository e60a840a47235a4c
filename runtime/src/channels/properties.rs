//! Properties of the channel parsers that see outside bytes: the Slack Events API envelope and
//! the WhatsApp Cloud API payload, through the adapters' own `inbound` (signature, then parse)
//! and `accept`. Bad input, signed correctly so that the parser is what refuses it, is always
//! `Malformed` (the API's 422), never a panic; unsigned input is always `Unauthenticated`.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::Sha256;
use shared::{ConnectionId, TenantId};
use uuid::Uuid;

use super::slack::{InstallationSettings, SlackChannel};
use super::whatsapp::{NumberSettings, WhatsappChannel};
use super::{
    ConnectionSettings, Inbound, InboundError, Receive, ResolvedConnection, WebhookRequest,
};
use crate::bad_input::{self, Field, Kind};
use crate::config::{Secret, SlackSettings, WhatsappSettings};

const SLACK_SECRET: &str = "slack-signing-secret-for-properties";
const SLACK_APP: &str = "A0PROPTEST";
const WA_SECRET: &str = "whatsapp-app-secret-for-properties";
const NOW: i64 = 1_700_000_000;

fn hmac(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// How a test delivery is signed.
#[derive(Debug, Clone, Copy)]
enum Signed {
    Right,
    None,
    WrongSecret,
    /// Slack only: a correct signature over a timestamp outside the replay window.
    Stale,
}

fn unsigned() -> impl Strategy<Value = Signed> {
    prop_oneof![
        Just(Signed::None),
        Just(Signed::WrongSecret),
        Just(Signed::Stale)
    ]
}

/// 512 cases a property; a failure is shrunk and reported, not written into the tree (the
/// bugs these found are pinned by `strict_json`'s unit tests).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- Slack ----

fn slack() -> SlackChannel {
    crate::llm::install_crypto();
    SlackChannel::new(&SlackSettings {
        signing_secret: Some(Secret::new(SLACK_SECRET.into())),
        app_id: Some(SLACK_APP.into()),
        ..SlackSettings::default()
    })
}

fn slack_envelope() -> Value {
    json!({
        "token": "deprecated-verification-token",
        "team_id": "T0PROPTEST",
        "api_app_id": SLACK_APP,
        "type": "event_callback",
        "event_id": "Ev0PROPTEST",
        "event_time": 1_700_000_000,
        "authorizations": [{ "team_id": "T0PROPTEST", "is_bot": true }],
        "event": {
            "type": "app_mention", "user": "UCUSTOMER", "channel": "CSUPPORT",
            "text": "<@UBOT> where is my order?", "ts": "1700000000.000100",
            "event_ts": "1700000000.000100",
        },
    })
}

/// Every field of the envelope and its event that the parser reads.
const SLACK_FIELDS: &[Field] = &[
    ("/type", Kind::Text),
    ("/challenge", Kind::Text),
    ("/team_id", Kind::Text),
    ("/api_app_id", Kind::Text),
    ("/event_id", Kind::Text),
    ("/event", Kind::Object),
    ("/event/type", Kind::Text),
    ("/event/subtype", Kind::Text),
    ("/event/channel", Kind::Text),
    ("/event/channel_type", Kind::Text),
    ("/event/user", Kind::Text),
    ("/event/user_team", Kind::Text),
    ("/event/bot_id", Kind::Text),
    ("/event/text", Kind::Text),
    ("/event/ts", Kind::Text),
    ("/event/thread_ts", Kind::Text),
];

/// Strings read and strings ignored.
const SLACK_STRINGS: &[&str] = &[
    "/team_id",
    "/event_id",
    "/event/text",
    "/event/user",
    "/token",
    "/authorizations/0/team_id",
    "/event/event_ts",
];

fn slack_inbound(body: &[u8], signed: Signed) -> Result<Inbound<()>, InboundError> {
    let ts = match signed {
        Signed::Stale => NOW - 301,
        _ => NOW,
    }
    .to_string();
    let secret = match signed {
        Signed::WrongSecret => "another-secret",
        _ => SLACK_SECRET,
    };
    let mut pairs = vec![("x-slack-request-timestamp", ts.clone())];
    if !matches!(signed, Signed::None) {
        let sig = hmac(secret, &[b"v0:", ts.as_bytes(), b":", body]);
        pairs.push(("x-slack-signature", format!("v0={sig}")));
    }
    let map = headers(&pairs);
    let adapter = slack();
    let request = WebhookRequest {
        headers: &map,
        query: "",
        body,
        now: NOW,
    };
    match adapter.inbound(&request)? {
        // What was read goes on through `accept`, as the webhook would take it: no panic.
        Inbound::Events(events) => {
            let connection = ResolvedConnection {
                tenant: TenantId::from_uuid(Uuid::nil()),
                id: ConnectionId::from_uuid(Uuid::nil()),
                agent_id: None,
                active: true,
                settings: ConnectionSettings::Slack(InstallationSettings {
                    team_id: "T0PROPTEST".into(),
                    team_name: None,
                    enterprise_id: None,
                    bot_user_id: "UBOT".into(),
                    bot_id: None,
                    app_id: Some(SLACK_APP.into()),
                    scopes: Vec::new(),
                    token_hint: String::new(),
                }),
            };
            for routed in events {
                let _ = adapter.accept(routed, &connection, chrono::Utc::now());
            }
            Ok(Inbound::Events(Vec::new()))
        }
        Inbound::Respond { content_type, body } => Ok(Inbound::Respond { content_type, body }),
        Inbound::Ignore(why) => Ok(Inbound::Ignore(why)),
    }
}

fn assert_malformed(got: &Result<Inbound<()>, InboundError>, body: &[u8]) {
    assert!(
        matches!(got, Err(InboundError::Malformed(_))),
        "{got:?} for {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
}

fn slack_bad_bodies() -> BoxedStrategy<Vec<u8>> {
    let valid = slack_envelope();
    let bytes = serde_json::to_vec(&valid).unwrap();
    prop_oneof![
        bad_input::truncated(bytes),
        bad_input::retyped(valid.clone(), SLACK_FIELDS),
        bad_input::invalid_utf8(valid.clone(), SLACK_STRINGS),
        bad_input::too_deep(
            valid,
            &["/event", "/event/text", "/authorizations", "/team_id"]
        ),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_signed_slack_body_that_is_not_an_envelope_is_malformed(body in slack_bad_bodies()) {
        assert_malformed(&slack_inbound(&body, Signed::Right), &body);
    }

    #[test]
    fn signed_slack_bytes_never_panic_and_non_json_is_malformed(
        body in prop_oneof![
            bad_input::arbitrary_bytes(),
            bad_input::mutated(serde_json::to_vec(&slack_envelope()).unwrap()),
        ]
    ) {
        let got = slack_inbound(&body, Signed::Right);
        prop_assert!(
            !matches!(got, Err(InboundError::Unauthenticated(_) | InboundError::NotConfigured(_))),
            "{got:?}"
        );
        if !bad_input::is_json_object(&body) {
            assert_malformed(&got, &body);
        }
    }

    #[test]
    fn an_unsigned_slack_body_is_unauthenticated_whatever_it_holds(
        body in prop_oneof![
            Just(serde_json::to_vec(&slack_envelope()).unwrap()),
            bad_input::arbitrary_bytes(),
            slack_bad_bodies(),
        ],
        signed in unsigned(),
    ) {
        let got = slack_inbound(&body, signed);
        prop_assert!(matches!(got, Err(InboundError::Unauthenticated(_))), "{got:?}");
    }
}

#[test]
fn the_valid_slack_envelope_is_read() {
    let body = serde_json::to_vec(&slack_envelope()).unwrap();
    assert!(matches!(
        slack_inbound(&body, Signed::Right),
        Ok(Inbound::Events(_))
    ));
}

// ---- WhatsApp ----

fn whatsapp() -> WhatsappChannel {
    crate::llm::install_crypto();
    WhatsappChannel::new(&WhatsappSettings {
        app_secret: Some(Secret::new(WA_SECRET.into())),
        verify_token: Some(Secret::new("verify-token-for-properties".into())),
        ..WhatsappSettings::default()
    })
}

fn whatsapp_payload() -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "200000000000001",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550000000", "phone_number_id": "100000000000001" },
                    "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "15550100001" }],
                    "messages": [{
                        "from": "15550100001", "id": "wamid.PROPTEST", "timestamp": "1700000000",
                        "type": "text", "text": { "body": "where is my order?" },
                    }],
                    "statuses": [{
                        "id": "wamid.OURS", "status": "failed", "timestamp": "1700000000",
                        "recipient_id": "15550100001",
                        "errors": [{ "code": 131047, "title": "Re-engagement message" }],
                    }],
                },
            }],
        }],
    })
}

const M: &str = "/entry/0/changes/0/value/messages/0";

/// Every field of the payload that the parser reads (`M` is the message).
const WHATSAPP_FIELDS: &[Field] = &[
    ("/object", Kind::Text),
    ("/entry", Kind::List),
    ("/entry/0", Kind::Object),
    ("/entry/0/id", Kind::Text),
    ("/entry/0/changes", Kind::List),
    ("/entry/0/changes/0", Kind::Object),
    ("/entry/0/changes/0/field", Kind::Text),
    ("/entry/0/changes/0/value", Kind::Object),
    ("/entry/0/changes/0/value/metadata", Kind::Object),
    (
        "/entry/0/changes/0/value/metadata/phone_number_id",
        Kind::Text,
    ),
    (
        "/entry/0/changes/0/value/metadata/display_phone_number",
        Kind::Text,
    ),
    ("/entry/0/changes/0/value/contacts", Kind::List),
    ("/entry/0/changes/0/value/contacts/0", Kind::Object),
    ("/entry/0/changes/0/value/contacts/0/wa_id", Kind::Text),
    ("/entry/0/changes/0/value/contacts/0/profile", Kind::Object),
    (
        "/entry/0/changes/0/value/contacts/0/profile/name",
        Kind::Text,
    ),
    ("/entry/0/changes/0/value/messages", Kind::List),
    ("/entry/0/changes/0/value/messages/0", Kind::Object),
    ("/entry/0/changes/0/value/messages/0/from", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/id", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/timestamp", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/type", Kind::Text),
    ("/entry/0/changes/0/value/messages/0/text", Kind::Object),
    ("/entry/0/changes/0/value/messages/0/text/body", Kind::Text),
    (
        "/entry/0/changes/0/value/messages/0/interactive",
        Kind::Object,
    ),
    ("/entry/0/changes/0/value/messages/0/button", Kind::Object),
    ("/entry/0/changes/0/value/messages/0/location", Kind::Object),
    ("/entry/0/changes/0/value/messages/0/contacts", Kind::List),
    ("/entry/0/changes/0/value/messages/0/image", Kind::Object),
    ("/entry/0/changes/0/value/statuses", Kind::List),
    ("/entry/0/changes/0/value/statuses/0", Kind::Object),
    ("/entry/0/changes/0/value/statuses/0/id", Kind::Text),
    ("/entry/0/changes/0/value/statuses/0/status", Kind::Text),
    ("/entry/0/changes/0/value/statuses/0/timestamp", Kind::Text),
    ("/entry/0/changes/0/value/statuses/0/errors", Kind::List),
    (
        "/entry/0/changes/0/value/statuses/0/errors/0/code",
        Kind::Integer,
    ),
    (
        "/entry/0/changes/0/value/statuses/0/errors/0/title",
        Kind::Text,
    ),
];

/// Strings read and strings ignored.
const WHATSAPP_STRINGS: &[&str] = &[
    "/object",
    "/entry/0/changes/0/value/metadata/phone_number_id",
    "/entry/0/changes/0/value/contacts/0/profile/name",
    "/entry/0/changes/0/value/messages/0/text/body",
    "/entry/0/changes/0/value/messages/0/id",
    "/entry/0/changes/0/value/messaging_product",
];

fn whatsapp_inbound(body: &[u8], signed: Signed) -> Result<Inbound<()>, InboundError> {
    let mut pairs = Vec::new();
    match signed {
        Signed::Right | Signed::Stale => {
            pairs.push((
                "x-hub-signature-256",
                format!("sha256={}", hmac(WA_SECRET, &[body])),
            ));
        }
        Signed::WrongSecret => {
            pairs.push((
                "x-hub-signature-256",
                format!("sha256={}", hmac("another", &[body])),
            ));
        }
        Signed::None => {}
    }
    let map = headers(&pairs);
    let adapter = whatsapp();
    let request = WebhookRequest {
        headers: &map,
        query: "",
        body,
        now: NOW,
    };
    match adapter.inbound(&request)? {
        Inbound::Events(events) => {
            let connection = ResolvedConnection {
                tenant: TenantId::from_uuid(Uuid::nil()),
                id: ConnectionId::from_uuid(Uuid::nil()),
                agent_id: None,
                active: true,
                settings: ConnectionSettings::Whatsapp(NumberSettings {
                    phone_number_id: "100000000000001".into(),
                    waba_id: "200000000000001".into(),
                    display_phone_number: String::new(),
                    verified_name: String::new(),
                    quality_rating: None,
                    token_hint: String::new(),
                    templates: Vec::new(),
                    own_app: None,
                }),
            };
            for routed in events {
                let _ = adapter.accept(routed, &connection, chrono::Utc::now());
            }
            Ok(Inbound::Events(Vec::new()))
        }
        Inbound::Respond { content_type, body } => Ok(Inbound::Respond { content_type, body }),
        Inbound::Ignore(why) => Ok(Inbound::Ignore(why)),
    }
}

fn whatsapp_bad_bodies() -> BoxedStrategy<Vec<u8>> {
    let valid = whatsapp_payload();
    let bytes = serde_json::to_vec(&valid).unwrap();
    prop_oneof![
        bad_input::truncated(bytes),
        bad_input::retyped(valid.clone(), WHATSAPP_FIELDS),
        bad_input::invalid_utf8(valid.clone(), WHATSAPP_STRINGS),
        bad_input::too_deep(
            valid,
            &["/entry", M, "/entry/0/changes/0/value/messages/0/text"]
        ),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_signed_whatsapp_body_that_is_not_a_payload_is_malformed(body in whatsapp_bad_bodies()) {
        assert_malformed(&whatsapp_inbound(&body, Signed::Right), &body);
    }

    #[test]
    fn signed_whatsapp_bytes_never_panic_and_non_json_is_malformed(
        body in prop_oneof![
            bad_input::arbitrary_bytes(),
            bad_input::mutated(serde_json::to_vec(&whatsapp_payload()).unwrap()),
        ]
    ) {
        let got = whatsapp_inbound(&body, Signed::Right);
        prop_assert!(
            !matches!(got, Err(InboundError::Unauthenticated(_) | InboundError::NotConfigured(_))),
            "{got:?}"
        );
        if !bad_input::is_json_object(&body) {
            assert_malformed(&got, &body);
        }
    }

    #[test]
    fn an_unsigned_whatsapp_body_is_unauthenticated_whatever_it_holds(
        body in prop_oneof![
            Just(serde_json::to_vec(&whatsapp_payload()).unwrap()),
            bad_input::arbitrary_bytes(),
            whatsapp_bad_bodies(),
        ],
        signed in prop_oneof![Just(Signed::None), Just(Signed::WrongSecret)],
    ) {
        let got = whatsapp_inbound(&body, signed);
        prop_assert!(matches!(got, Err(InboundError::Unauthenticated(_))), "{got:?}");
    }
}

#[test]
fn the_valid_whatsapp_payload_is_read() {
    let body = serde_json::to_vec(&whatsapp_payload()).unwrap();
    assert!(matches!(
        whatsapp_inbound(&body, Signed::Right),
        Ok(Inbound::Events(_))
    ));
}
