//! The Cloud API's webhook payloads as far as we read them, the `X-Hub-Signature-256` check, and
//! how each kind of user message reads to the agent. Pure functions of their inputs.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256 of the raw body under the app
/// secret) in constant time.
pub fn verify_signature(
    app_secret: &str,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let expected = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// A webhook POST: `object` and its entries.
#[derive(Debug, Clone, Deserialize)]
pub struct Payload {
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// One WhatsApp Business Account's changes.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// The WABA id.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub field: String,
    pub value: Option<Value>,
}

/// What changed for one business number.
#[derive(Debug, Clone, Deserialize)]
pub struct Value {
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub statuses: Vec<Status>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub display_phone_number: String,
    pub phone_number_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub wa_id: String,
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
}

/// A user's message. Only the parts we render are read; the rest of Meta's fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub from: String,
    pub id: String,
    /// Unix seconds, as a string.
    #[serde(default)]
    pub timestamp: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub text: Option<Text>,
    pub interactive: Option<Interactive>,
    pub button: Option<Button>,
    pub location: Option<Location>,
    pub contacts: Option<Vec<SharedContact>>,
    pub image: Option<Media>,
    pub video: Option<Media>,
    pub document: Option<Media>,
    pub audio: Option<Media>,
    pub sticker: Option<Media>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Text {
    #[serde(default)]
    pub body: String,
}

/// A reply to our buttons or list.
#[derive(Debug, Clone, Deserialize)]
pub struct Interactive {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub button_reply: Option<Choice>,
    pub list_reply: Option<Choice>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub description: Option<String>,
}

/// A quick-reply button of a template.
#[derive(Debug, Clone, Deserialize)]
pub struct Button {
    #[serde(default)]
    pub text: String,
    pub payload: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Location {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SharedContact {
    pub name: Option<ContactName>,
    #[serde(default)]
    pub phones: Vec<ContactPhone>,
    #[serde(default)]
    pub emails: Vec<ContactEmail>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactName {
    pub formatted_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactPhone {
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactEmail {
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Media {
    pub id: Option<String>,
    pub mime_type: Option<String>,
    pub caption: Option<String>,
    pub filename: Option<String>,
}

/// A delivery report about one of our messages.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// Our message's `wamid`.
    pub id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub recipient_id: String,
    #[serde(default)]
    pub errors: Vec<StatusError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusError {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub message: Option<String>,
}

/// How a user's message reaches the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Text for the agent (typed, or a rendering of a choice, a location or a contact card).
    Text(String),
    /// Something the platform cannot read yet (`what` it was, and its caption if any): it is
    /// answered with a short notice.
    Unsupported {
        what: String,
        caption: Option<String>,
    },
    /// Not a message to answer (a reaction, a system notice).
    Ignore(&'static str),
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Renders one user message for the agent.
pub fn read(message: &Message) -> Reading {
    match message.kind.as_str() {
        "text" => match message.text.as_ref().map(|t| t.body.trim()) {
            Some(body) if !body.is_empty() => Reading::Text(body.to_string()),
            _ => Reading::Ignore("an empty text message"),
        },
        "interactive" => {
            let choice = message
                .interactive
                .as_ref()
                .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()));
            match choice {
                Some(c) if !c.title.trim().is_empty() => {
                    let mut text = c.title.trim().to_string();
                    if let Some(d) = nonempty(c.description.as_deref()) {
                        text.push_str(&format!(" ({d})"));
                    }
                    Reading::Text(text)
                }
                _ => Reading::Ignore("an interactive message without a choice"),
            }
        }
        "button" => match message.button.as_ref().map(|b| b.text.trim()) {
            Some(t) if !t.is_empty() => Reading::Text(t.to_string()),
            _ => Reading::Ignore("a button reply without text"),
        },
        "location" => match &message.location {
            Some(l) => Reading::Text(render_location(l)),
            None => Reading::Ignore("a location without coordinates"),
        },
        "contacts" => match message.contacts.as_deref() {
            Some(cards) if !cards.is_empty() => Reading::Text(render_contacts(cards)),
            _ => Reading::Ignore("an empty contact card"),
        },
        "reaction" => Reading::Ignore("a reaction"),
        "system" | "ephemeral" | "request_welcome" => Reading::Ignore("a system message"),
        "image" | "video" | "document" | "audio" | "sticker" | "voice" => {
            let media = match message.kind.as_str() {
                "image" => message.image.as_ref(),
                "video" => message.video.as_ref(),
                "document" => message.document.as_ref(),
                "sticker" => message.sticker.as_ref(),
                _ => message.audio.as_ref(),
            };
            Reading::Unsupported {
                what: message.kind.clone(),
                caption: nonempty(media.and_then(|m| m.caption.as_deref())).map(str::to_string),
            }
        }
        other => Reading::Unsupported {
            what: if other.is_empty() {
                "unsupported".into()
            } else {
                other.to_string()
            },
            caption: None,
        },
    }
}

fn render_location(l: &Location) -> String {
    let mut text = String::from("[Shared a location");
    if let Some(name) = nonempty(l.name.as_deref()) {
        text.push_str(&format!(": {name}"));
    }
    if let Some(address) = nonempty(l.address.as_deref()) {
        text.push_str(&format!(", {address}"));
    }
    if let (Some(lat), Some(lon)) = (l.latitude, l.longitude) {
        text.push_str(&format!(" ({lat:.5}, {lon:.5})"));
    }
    text.push(']');
    text
}

fn render_contacts(cards: &[SharedContact]) -> String {
    let rendered: Vec<String> = cards
        .iter()
        .take(10)
        .map(|c| {
            let name = c
                .name
                .as_ref()
                .and_then(|n| {
                    nonempty(n.formatted_name.as_deref())
                        .map(str::to_string)
                        .or_else(|| {
                            let parts: Vec<&str> =
                                [n.first_name.as_deref(), n.last_name.as_deref()]
                                    .into_iter()
                                    .filter_map(nonempty)
                                    .collect();
                            (!parts.is_empty()).then(|| parts.join(" "))
                        })
                })
                .unwrap_or_else(|| "someone".into());
            let mut details: Vec<&str> = c
                .phones
                .iter()
                .filter_map(|p| nonempty(p.phone.as_deref()))
                .collect();
            details.extend(c.emails.iter().filter_map(|e| nonempty(e.email.as_deref())));
            if details.is_empty() {
                name
            } else {
                format!("{name} ({})", details.join(", "))
            }
        })
        .collect();
    format!("[Shared a contact: {}]", rendered.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_signature_covers_the_raw_bytes() {
        let body = "{\"text\":\"Grüße, ça va? 🙂\"}".as_bytes();
        let sig = sign("app-secret", body);
        assert_eq!(verify_signature("app-secret", Some(&sig), body), Ok(()));
        assert_eq!(
            verify_signature("other", Some(&sig), body),
            Err(SignatureError::Mismatch)
        );
        // The same text with escaped characters is other bytes.
        let escaped = br#"{"text":"Gr\u00fc\u00dfe, \u00e7a va? \ud83d\ude42"}"#;
        assert_eq!(
            verify_signature("app-secret", Some(&sig), escaped),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("app-secret", None, body),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature("app-secret", Some(sig.trim_start_matches("sha256=")), body),
            Err(SignatureError::Mismatch)
        );
    }

    fn message(json: serde_json::Value) -> Message {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn each_kind_of_message_reads_as_the_agent_needs_it() {
        let base =
            serde_json::json!({"from": "15550001", "id": "wamid.1", "timestamp": "1700000000"});
        let with = |extra: serde_json::Value| {
            let mut m = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                m[k] = v.clone();
            }
            message(m)
        };
        assert_eq!(
            read(&with(
                serde_json::json!({"type": "text", "text": {"body": " where is my order? "}})
            )),
            Reading::Text("where is my order?".into())
        );
        assert_eq!(
            read(&with(
                serde_json::json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Track order"}}})
            )),
            Reading::Text("Track order".into())
        );
        assert_eq!(
            read(&with(
                serde_json::json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "l1", "title": "Returns", "description": "Send something back"}}})
            )),
            Reading::Text("Returns (Send something back)".into())
        );
        assert_eq!(
            read(&with(
                serde_json::json!({"type": "location", "location": {"latitude": 52.52, "longitude": 13.405, "name": "Home", "address": "Unter den Linden 1"}})
            )),
            Reading::Text(
                "[Shared a location: Home, Unter den Linden 1 (52.52000, 13.40500)]".into()
            )
        );
        assert_eq!(
            read(&with(
                serde_json::json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ana Silva"}, "phones": [{"phone": "+55 11 5555 0000"}]}]})
            )),
            Reading::Text("[Shared a contact: Ana Silva (+55 11 5555 0000)]".into())
        );
        assert!(matches!(
            read(&with(
                serde_json::json!({"type": "reaction", "reaction": {"message_id": "wamid.0", "emoji": "👍"}})
            )),
            Reading::Ignore(_)
        ));
        assert_eq!(
            read(&with(
                serde_json::json!({"type": "image", "image": {"id": "m1", "mime_type": "image/jpeg", "caption": "the box arrived like this"}})
            )),
            Reading::Unsupported {
                what: "image".into(),
                caption: Some("the box arrived like this".into())
            }
        );
        assert_eq!(
            read(&with(
                serde_json::json!({"type": "unsupported", "errors": [{"code": 131051}]})
            )),
            Reading::Unsupported {
                what: "unsupported".into(),
                caption: None
            }
        );
    }
}
