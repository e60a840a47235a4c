//! Webhook bodies in the shape Meta posts them: `object:"whatsapp_business_account"`,
//! `entry[]{id: WABA, changes[]{field:"messages", value{messaging_product, metadata, contacts,
//! messages | statuses}}}`, one builder per business number and `batch` for several numbers in
//! one POST, as Meta batches them.

use std::time::SystemTime;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Number, unix_secs, wamid};

/// A media object as webhooks name it: its id, type and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub id: String,
    pub mime_type: String,
    pub sha256: String,
}

impl Media {
    /// A media reference the fake does not serve (for payload shapes only).
    pub fn new(id: &str, mime_type: &str) -> Media {
        Media {
            id: id.to_string(),
            mime_type: mime_type.to_string(),
            sha256: hex::encode(Sha256::digest(id.as_bytes())),
        }
    }
}

/// A contact card a user shares (`type:"contacts"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactCard {
    pub formatted_name: String,
    pub first_name: String,
    pub phone: String,
    /// Set when the shared number is on WhatsApp.
    pub wa_id: Option<String>,
}

/// What a status webhook reports about a message the business sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    /// With the error Meta reports, e.g. 131026 "Message undeliverable".
    Failed {
        code: u32,
        title: String,
    },
}

/// The messages and statuses one business number's webhook carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    waba_id: String,
    phone_number_id: String,
    display_phone_number: String,
    /// Unix seconds stamped on what is added next.
    at: u64,
    contacts: Vec<Value>,
    messages: Vec<Value>,
    statuses: Vec<Value>,
}

impl Inbound {
    /// For the business number `phone_number_id` of WABA `waba_id`, stamped with the real time.
    pub fn new(waba_id: &str, phone_number_id: &str, display_phone_number: &str) -> Inbound {
        Inbound {
            waba_id: waba_id.to_string(),
            phone_number_id: phone_number_id.to_string(),
            display_phone_number: display_phone_number.to_string(),
            at: unix_secs(SystemTime::now()),
            contacts: Vec::new(),
            messages: Vec::new(),
            statuses: Vec::new(),
        }
    }

    /// For a registered number.
    pub fn for_number(number: &Number) -> Inbound {
        Inbound::new(
            &number.waba_id,
            &number.phone_number_id,
            &number.display_phone_number,
        )
    }

    /// Stamps what is added from now on with this time (Unix seconds).
    pub fn at(mut self, unix_secs: u64) -> Inbound {
        self.at = unix_secs;
        self
    }

    /// Adds a message of `kind` from user `from` (their `wa_id`) with profile name `name`;
    /// `content` holds the type's own fields.
    fn push(mut self, from: &str, name: &str, kind: &str, content: Value) -> Inbound {
        if !self.contacts.iter().any(|c| c["wa_id"] == from) {
            self.contacts
                .push(json!({ "profile": { "name": name }, "wa_id": from }));
        }
        let mut message = Map::new();
        message.insert("from".into(), json!(from));
        message.insert("id".into(), json!(wamid(from)));
        message.insert("timestamp".into(), json!(self.at.to_string()));
        message.insert("type".into(), json!(kind));
        if let Value::Object(fields) = content {
            message.extend(fields);
        }
        self.messages.push(Value::Object(message));
        self
    }

    /// A text message.
    pub fn text(self, from: &str, name: &str, body: &str) -> Inbound {
        self.push(from, name, "text", json!({ "text": { "body": body } }))
    }

    /// A tap on a reply button of an interactive message.
    pub fn button_reply(self, from: &str, name: &str, id: &str, title: &str) -> Inbound {
        self.push(
            from,
            name,
            "interactive",
            json!({ "interactive": {
                "type": "button_reply",
                "button_reply": { "id": id, "title": title },
            } }),
        )
    }

    /// A choice from an interactive list message.
    pub fn list_reply(
        self,
        from: &str,
        name: &str,
        id: &str,
        title: &str,
        description: &str,
    ) -> Inbound {
        self.push(
            from,
            name,
            "interactive",
            json!({ "interactive": {
                "type": "list_reply",
                "list_reply": { "id": id, "title": title, "description": description },
            } }),
        )
    }

    /// A tap on a quick-reply button of a template (`type:"button"`).
    pub fn button(self, from: &str, name: &str, payload: &str, text: &str) -> Inbound {
        self.push(
            from,
            name,
            "button",
            json!({ "button": { "payload": payload, "text": text } }),
        )
    }

    /// A shared location.
    pub fn location(
        self,
        from: &str,
        name: &str,
        latitude: f64,
        longitude: f64,
        place: &str,
        address: &str,
    ) -> Inbound {
        self.push(
            from,
            name,
            "location",
            json!({ "location": {
                "latitude": latitude,
                "longitude": longitude,
                "name": place,
                "address": address,
            } }),
        )
    }

    /// A shared contact card.
    pub fn contact_card(self, from: &str, name: &str, card: &ContactCard) -> Inbound {
        let mut phone = json!({ "phone": card.phone, "type": "CELL" });
        if let Some(wa_id) = &card.wa_id {
            phone["wa_id"] = json!(wa_id);
        }
        self.push(
            from,
            name,
            "contacts",
            json!({ "contacts": [{
                "name": { "formatted_name": card.formatted_name, "first_name": card.first_name },
                "phones": [phone],
            }] }),
        )
    }

    /// A reaction to a message (an empty `emoji` removes it).
    pub fn reaction(self, from: &str, name: &str, message_id: &str, emoji: &str) -> Inbound {
        self.push(
            from,
            name,
            "reaction",
            json!({ "reaction": { "message_id": message_id, "emoji": emoji } }),
        )
    }

    /// A photo, with an optional caption.
    pub fn image(self, from: &str, name: &str, media: &Media, caption: Option<&str>) -> Inbound {
        let mut image =
            json!({ "id": media.id, "mime_type": media.mime_type, "sha256": media.sha256 });
        if let Some(caption) = caption {
            image["caption"] = json!(caption);
        }
        self.push(from, name, "image", json!({ "image": image }))
    }

    /// An audio file, or a voice note with `voice`.
    pub fn audio(self, from: &str, name: &str, media: &Media, voice: bool) -> Inbound {
        self.push(
            from,
            name,
            "audio",
            json!({ "audio": {
                "id": media.id, "mime_type": media.mime_type, "sha256": media.sha256, "voice": voice,
            } }),
        )
    }

    /// A sticker.
    pub fn sticker(self, from: &str, name: &str, media: &Media, animated: bool) -> Inbound {
        self.push(
            from,
            name,
            "sticker",
            json!({ "sticker": {
                "id": media.id, "mime_type": media.mime_type, "sha256": media.sha256, "animated": animated,
            } }),
        )
    }

    /// A message type the Cloud API does not support (a poll, a view-once photo, …).
    pub fn unsupported(self, from: &str, name: &str) -> Inbound {
        self.push(
            from,
            name,
            "unsupported",
            json!({ "errors": [{
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": { "details": "Message type is currently not supported." },
            }] }),
        )
    }

    /// Gives the last message added this id (to send one message twice, as Meta's retries do).
    pub fn id(mut self, wamid: &str) -> Inbound {
        if let Some(m) = self.messages.last_mut() {
            m["id"] = json!(wamid);
        }
        self
    }

    /// Marks the last message added as a reply to the business's message `wamid`.
    pub fn reply_to(mut self, wamid: &str) -> Inbound {
        let business: String = self
            .display_phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if let Some(m) = self.messages.last_mut() {
            m["context"] = json!({ "from": business, "id": wamid });
        }
        self
    }

    /// A status report about the business's message `wamid` to `recipient_id`, priced as a
    /// service message inside the window.
    pub fn status(self, wamid: &str, recipient_id: &str, kind: StatusKind) -> Inbound {
        self.status_priced(wamid, recipient_id, kind, "service")
    }

    /// A status report, priced in `category` (`service`, `utility`, `marketing`, …).
    pub fn status_priced(
        mut self,
        wamid: &str,
        recipient_id: &str,
        kind: StatusKind,
        category: &str,
    ) -> Inbound {
        let mut status = json!({
            "id": wamid,
            "timestamp": self.at.to_string(),
            "recipient_id": recipient_id,
        });
        let conversation =
            hex::encode(&Sha256::digest(format!("{}:{recipient_id}", self.phone_number_id))[..16]);
        let (billable, pricing_type) = match category {
            "service" => (false, "free_customer_service"),
            _ => (true, "regular"),
        };
        let pricing = json!({
            "billable": billable,
            "pricing_model": "PMP",
            "category": category,
            "type": pricing_type,
        });
        let origin = json!({ "type": category });
        match kind {
            StatusKind::Sent => {
                status["status"] = json!("sent");
                status["conversation"] = json!({
                    "id": conversation,
                    "expiration_timestamp": (self.at + 24 * 60 * 60).to_string(),
                    "origin": origin,
                });
                status["pricing"] = pricing;
            }
            StatusKind::Delivered => {
                status["status"] = json!("delivered");
                status["conversation"] = json!({ "id": conversation, "origin": origin });
                status["pricing"] = pricing;
            }
            StatusKind::Read => status["status"] = json!("read"),
            StatusKind::Failed { code, title } => {
                status["status"] = json!("failed");
                let details = super::rules::details_for(code)
                    .unwrap_or(&title)
                    .to_string();
                status["errors"] = json!([{
                    "code": code,
                    "title": title,
                    "message": title,
                    "error_data": { "details": details },
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }]);
            }
        }
        self.statuses.push(status);
        self
    }

    /// The ids of the messages added, in order.
    pub fn ids(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect()
    }

    /// This number's `entry[]` element.
    fn entry(&self) -> Value {
        let mut value = json!({
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self
                    .display_phone_number
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>(),
                "phone_number_id": self.phone_number_id,
            },
        });
        if !self.messages.is_empty() {
            value["contacts"] = json!(self.contacts);
            value["messages"] = json!(self.messages);
        }
        if !self.statuses.is_empty() {
            value["statuses"] = json!(self.statuses);
        }
        json!({ "id": self.waba_id, "changes": [{ "value": value, "field": "messages" }] })
    }

    /// The whole POST body.
    pub fn build(&self) -> Value {
        batch(std::slice::from_ref(self))
    }
}

/// One POST body carrying several numbers' webhooks: one `entry` each, in order.
pub fn batch(parts: &[Inbound]) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": parts.iter().map(Inbound::entry).collect::<Vec<_>>(),
    })
}

/// The `(phone_number_id, from, id)` of every user message in a webhook body.
pub(super) fn messages_in(payload: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for change in changes(payload) {
        let value = &change["value"];
        let Some(number) = value["metadata"]["phone_number_id"].as_str() else {
            continue;
        };
        for m in value["messages"].as_array().into_iter().flatten() {
            let (Some(from), Some(id)) = (m["from"].as_str(), m["id"].as_str()) else {
                continue;
            };
            out.push((number.to_string(), from.to_string(), id.to_string()));
        }
    }
    out
}

/// The `(id, status)` of every status report in a webhook body.
pub(super) fn statuses_in(payload: &Value) -> Vec<(String, String)> {
    changes(payload)
        .flat_map(|c| {
            c["value"]["statuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_string(),
                s["status"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn changes(payload: &Value) -> impl Iterator<Item = &Value> {
    payload["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten())
        .filter(|c| c["field"] == "messages")
}
