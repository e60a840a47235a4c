//! What tests configure and read back: registered numbers and templates, scripted behaviors,
//! and the records of sends, calls and webhook deliveries.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::payload;

/// A business phone number registered in the fake, and the access token that may use it.
/// Several numbers may share a token (one system user with access to several WABAs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    pub phone_number_id: String,
    pub waba_id: String,
    /// As Meta shows it, e.g. `+1 555-010-0200`.
    pub display_phone_number: String,
    pub verified_name: String,
    pub token: String,
}

/// An approved message template. Once a WABA has any, sends of other templates (or with the
/// wrong number of parameters) are refused the way Meta refuses them; a WABA with none accepts
/// every template, so tests need not register templates they do not care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub language: String,
    /// `UTILITY`, `MARKETING` or `AUTHENTICATION`: what status webhooks report as the pricing
    /// category of its sends.
    pub category: String,
    /// How many text parameters its body takes (`{{1}}`…`{{n}}`).
    pub params: usize,
}

impl Template {
    /// A utility template (the category of service follow-ups).
    pub fn new(name: &str, language: &str, params: usize) -> Template {
        Template {
            name: name.to_string(),
            language: language.to_string(),
            category: "UTILITY".into(),
            params,
        }
    }
}

/// What the fake does with the next message send (`POST …/messages` that is not a read receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Judge it as Meta would (window, throughput) and accept it if it passes.
    Accept,
    /// Answer this Graph error. Code 190 also revokes the token that made the call.
    Error {
        http: u16,
        code: u32,
        subcode: Option<u32>,
        /// The whole `error.message`, as Meta writes it, e.g. `(#131047) Re-engagement message`.
        message: String,
    },
    /// Wait, then behave as the inner behavior.
    Delay(Duration, Box<Behavior>),
    /// Close the connection without answering.
    Drop,
    /// Accept it (HTTP 200 with a wamid), then report it `failed` with this error in a status
    /// webhook, as Meta does for errors it only finds out about later.
    FailLater { code: u32, title: String },
}

impl Behavior {
    fn error(http: u16, code: u32, subcode: Option<u32>, message: &str) -> Behavior {
        Behavior::Error {
            http,
            code,
            subcode,
            message: message.to_string(),
        }
    }

    /// 131047: outside the 24-hour window, whatever the fake's own window says.
    pub fn re_engagement() -> Behavior {
        Behavior::error(400, 131047, None, "(#131047) Re-engagement message")
    }

    /// 130429: the number's throughput (80 messages/s by default) was exceeded. Meta answers
    /// it with HTTP 400, not 429.
    pub fn throughput() -> Behavior {
        Behavior::error(400, 130429, None, "(#130429) Rate limit hit")
    }

    /// 131056: too many messages from this number to the same user in a short time.
    pub fn pair_rate_limit() -> Behavior {
        Behavior::error(
            400,
            131056,
            None,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        )
    }

    /// 190/460 with HTTP 401: the token was invalidated. The fake revokes it, so every later
    /// call with it fails the same way.
    pub fn token_revoked() -> Behavior {
        Behavior::error(401, 190, Some(460), REVOKED_MESSAGE)
    }

    /// Graph code 2 ("API Service"): a temporary outage, answered with HTTP 503 as Meta's
    /// error table lists it.
    pub fn server_error() -> Behavior {
        Behavior::error(503, 2, None, "(#2) Service temporarily unavailable")
    }

    /// 131000 with HTTP 500: "Something went wrong", Meta's generic internal error.
    pub fn internal_error() -> Behavior {
        Behavior::error(500, 131000, None, "(#131000) Something went wrong")
    }

    /// Accepted, then reported `failed` with 131026 "Message undeliverable" (the user is not on
    /// WhatsApp, or blocked the business, or has an old app).
    pub fn undeliverable() -> Behavior {
        Behavior::FailLater {
            code: 131026,
            title: "Message undeliverable".into(),
        }
    }

    /// This behavior after a wait.
    pub fn after(self, wait: Duration) -> Behavior {
        Behavior::Delay(wait, Box::new(self))
    }
}

pub(super) const REVOKED_MESSAGE: &str = "Error validating access token: The session has been invalidated \
because the user changed their password or Facebook has changed the session for security reasons.";

/// What an accepted `POST …/messages` asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum SentKind {
    Text {
        body: String,
    },
    Template {
        name: String,
        language: String,
        /// The text parameters of all components, in order.
        params: Vec<String>,
    },
    /// A read receipt (`"status":"read"`) for a message the user sent.
    Read {
        message_id: String,
    },
    /// Another message type Meta accepts (`image`, `interactive`, `reaction`, …) with its object.
    Other {
        kind: String,
        payload: Value,
    },
}

/// A send the fake accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub token: String,
    pub phone_number_id: String,
    /// The recipient's digits (`wa_id`). For a read receipt, the user who sent that message if
    /// the fake delivered it, else empty.
    pub to: String,
    pub kind: SentKind,
    /// The id the fake answered; `None` for read receipts (Meta answers `{"success":true}`).
    pub wamid: Option<String>,
    /// `context.message_id`: the message this one replies to.
    pub context: Option<String>,
    /// When it arrived (real time, for latency and pacing assertions).
    pub at: Instant,
}

impl Sent {
    /// Whether it is a read receipt rather than a message.
    pub fn is_read(&self) -> bool {
        matches!(self.kind, SentKind::Read { .. })
    }
}

/// One request the fake received, whatever it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Authorization` header as sent.
    pub auth: Option<String>,
    /// The body as JSON; a body that is not JSON is kept as a string, none as `Null`.
    pub body: Value,
    /// The HTTP status answered; `NO_ANSWER` when the fake closed the connection instead.
    pub status: u16,
}

/// One webhook POST the fake made.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub url: String,
    /// The exact bytes posted (and signed).
    pub body: Vec<u8>,
    /// The `X-Hub-Signature-256` sent, if any.
    pub signature: Option<String>,
    /// The receiver's HTTP status; `NO_ANSWER` for none within the timeout.
    pub status: u16,
    pub at: Instant,
}

impl Delivery {
    /// The body parsed back.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `(wamid, status)` of every status report it carried (`sent`, `delivered`, …), in
    /// order.
    pub fn statuses(&self) -> Vec<(String, String)> {
        payload::statuses_in(&self.json())
    }
}

/// What the receiver answered to Meta's verification request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub status: u16,
    /// The `hub.challenge` sent; a correct receiver echoes it as the whole body.
    pub challenge: String,
    pub body: String,
}

impl Verification {
    /// 200 with the challenge echoed: what Meta needs to save the callback URL.
    pub fn accepted(&self) -> bool {
        self.status == 200 && self.body == self.challenge
    }
}
