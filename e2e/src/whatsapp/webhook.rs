//! Meta's side of webhooks: signed POSTs of the exact bytes signed, retried with back-off until
//! the receiver answers 200, the status reports that follow accepted sends, and the
//! verification GET.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::graph::FollowUp;
use super::payload::{Inbound, StatusKind, messages_in};
use super::{Delivery, MAX_BACKOFF, NO_ANSWER, Shared, WebhookTarget, sign, unix_secs};

/// The configured target, or a panic that says how to configure one: delivering without a
/// webhook is a mistake in the test.
fn target(shared: &Shared) -> WebhookTarget {
    match shared.lock().webhook.clone() {
        Some(t) => t,
        None => {
            panic!("fake WhatsApp: no webhook configured; call FakeGraph::webhook(url, app_secret)")
        }
    }
}

/// The body's bytes as Meta would send them.
fn encode(payload: &Value, escape_like_meta: bool) -> Vec<u8> {
    let text = payload.to_string();
    if !escape_like_meta {
        return text.into_bytes();
    }
    // Outside strings serde_json writes only ASCII and no `/`, so escaping every such character
    // keeps the JSON valid and equal in meaning.
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.into_bytes()
}

/// Posts `payload` (signed) up to `attempts` times until answered 200; every status in order.
pub(super) async fn deliver(shared: &Shared, payload: &Value, attempts: usize) -> Vec<u16> {
    let target = target(shared);
    let (body, mut wait) = {
        let state = shared.lock();
        (encode(payload, state.escape_like_meta), state.retry_backoff)
    };
    let signature = sign(&target.app_secret, &body);
    let mut statuses = Vec::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
        let status = post(shared, &target.url, body.clone(), Some(signature.clone())).await;
        statuses.push(status);
        if status == 200 || shared.lock().stopped {
            break;
        }
    }
    statuses
}

/// Posts exactly `body` with exactly `signature`.
pub(super) async fn deliver_raw(shared: &Shared, body: Vec<u8>, signature: Option<String>) -> u16 {
    let target = target(shared);
    post(shared, &target.url, body, signature).await
}

/// One POST. The user messages it carries open their windows (at the fake's "now") before it
/// is sent: the user wrote them whether or not the receiver acknowledges.
async fn post(shared: &Shared, url: &str, body: Vec<u8>, signature: Option<String>) -> u16 {
    let timeout = {
        let mut state = shared.lock();
        if let Ok(payload) = serde_json::from_slice::<Value>(&body) {
            let now = state.now();
            for (number, from, id) in messages_in(&payload) {
                state.saw_inbound(&number, &from, now);
                state.inbound_from.insert(id, from);
            }
        }
        state.webhook_timeout
    };
    let mut request = shared
        .client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(body.clone());
    if let Some(signature) = &signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let status = match request.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            // Read the answer so the receiver's write completes; its content does not matter.
            let _ = res.bytes().await;
            status
        }
        Err(_) => NO_ANSWER,
    };
    shared.lock().deliveries.push(Delivery {
        url: url.to_string(),
        body,
        signature,
        status,
        at: Instant::now(),
    });
    shared.notify();
    status
}

/// The status reports after an accepted send: `failed`, or `sent`, `delivered` (and `read`),
/// each delivered until acknowledged, in order.
pub(super) async fn report(shared: Arc<Shared>, follow_up: FollowUp) {
    let kinds = match &follow_up.fail {
        Some((code, title)) => vec![StatusKind::Failed {
            code: *code,
            title: title.clone(),
        }],
        None if follow_up.read => vec![StatusKind::Sent, StatusKind::Delivered, StatusKind::Read],
        None => vec![StatusKind::Sent, StatusKind::Delivered],
    };
    for kind in kinds {
        let (number, at, attempts) = {
            let state = shared.lock();
            if state.stopped || state.webhook.is_none() {
                return;
            }
            let Some(n) = state.number(&follow_up.phone_number_id) else {
                return;
            };
            (
                n.number.clone(),
                unix_secs(state.now()),
                state.status_attempts,
            )
        };
        let payload = Inbound::for_number(&number)
            .at(at)
            .status_priced(
                &follow_up.wamid,
                &follow_up.wa_id,
                kind,
                &follow_up.category,
            )
            .build();
        deliver(&shared, &payload, attempts).await;
    }
}

/// Meta's verification GET with a fresh challenge.
pub(super) async fn verify(shared: &Shared, verify_token: &str) -> super::Verification {
    let target = target(shared);
    let challenge = u32::from_le_bytes({
        let b = super::unique_bytes();
        [b[0], b[1], b[2], b[3]]
    })
    .to_string();
    let timeout = shared.lock().webhook_timeout;
    let url = url::Url::parse_with_params(
        &target.url,
        [
            ("hub.mode", "subscribe"),
            ("hub.challenge", challenge.as_str()),
            ("hub.verify_token", verify_token),
        ],
    );
    let (status, body) = match url {
        Ok(url) => match shared.client.get(url).timeout(timeout).send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                (status, res.text().await.unwrap_or_default())
            }
            Err(_) => (NO_ANSWER, String::new()),
        },
        Err(_) => (NO_ANSWER, String::new()),
    };
    super::Verification {
        status,
        challenge,
        body,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::encode;

    #[test]
    fn meta_escaping_keeps_the_json_and_its_meaning() {
        let payload = json!({ "text": "Grüße 👋 https://x.example/a" });
        let escaped = encode(&payload, true);
        let text = String::from_utf8(escaped.clone()).unwrap();
        assert!(text.is_ascii());
        assert!(text.contains("Gr\\u00fc\\u00dfe \\ud83d\\udc4b https:\\/\\/x.example\\/a"));
        let back: serde_json::Value = serde_json::from_slice(&escaped).unwrap();
        assert_eq!(back, payload);
        assert_eq!(encode(&payload, false), payload.to_string().into_bytes());
    }
}
