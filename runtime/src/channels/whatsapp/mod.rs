//! WhatsApp (Meta's Cloud API): verifying and reading webhook deliveries, and sending replies
//! from the tenant's business number.
//!
//! - Inbound: `X-Hub-Signature-256` over the raw body with the app's secret; one POST may carry
//!   several business numbers (several tenants), each event routed by `phone_number_id`; user
//!   messages become `InboundMessage`s deduplicated on their `wamid`, delivery reports update our
//!   outbound parts.
//! - Outbound: `POST /{phone_number_id}/messages` with the connection's token, paced per number
//!   within Meta's throughput. A free-form message is only attempted inside the 24-hour
//!   customer-service window; outside it the connection's template is sent, or the part fails
//!   with a clear reason. Meta's errors are classified: 130429 backs the number off, 131056 only
//!   the one customer, 131047 is handled as a closed window, 190 fails the connection.

pub mod graph;
pub mod payload;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shared::ConnectionId;
use shared::channel::{
    ChannelKind, DeliveryStatus, InboundMessage, OutboundReply, ReplyTarget, Sender,
};
use shared::resources::{TemplateVariable, WhatsappTemplate};

use self::graph::{CallError, GraphApi, codes};
use self::payload::Reading;
use super::{
    Accepted, ConnectionConfig, ConnectionSettings, DeliveryReport, Fence, Inbound, InboundError,
    Pacer, Receive, ReplySink, ResolvedConnection, Routed, SinkError, WebhookRequest,
};
use crate::config::Secret;

/// The longest text one message may carry (Meta's limit for `text.body`).
pub const MAX_TEXT_CHARS: usize = 4096;

/// How long after the customer's last message a free-form message may be sent.
pub const SERVICE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The sealed access token's slot (associated data), bound to its connection.
pub fn token_slot(connection: ConnectionId) -> String {
    format!("whatsapp_token:{connection}")
}

/// The sealed app secret of a tenant's own Meta app, bound to its connection.
pub fn app_secret_slot(connection: ConnectionId) -> String {
    format!("whatsapp_app_secret:{connection}")
}

/// A tenant's own Meta app for one connection: its verify token and sealed app secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnApp {
    pub verify_token: String,
    /// The app secret, sealed under `app_secret_slot` (base64).
    pub app_secret_sealed: String,
}

/// What a WhatsApp connection keeps besides its sealed token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberSettings {
    /// Kept here as well as in the connection's external id, which is freed on disconnect.
    pub phone_number_id: String,
    pub waba_id: String,
    #[serde(default)]
    pub display_phone_number: String,
    #[serde(default)]
    pub verified_name: String,
    #[serde(default)]
    pub quality_rating: Option<String>,
    #[serde(default)]
    pub token_hint: String,
    #[serde(default)]
    pub templates: Vec<WhatsappTemplate>,
    #[serde(default)]
    pub own_app: Option<OwnApp>,
}

/// One event of a delivery.
#[derive(Debug, Clone)]
pub enum Event {
    Message {
        message: Box<payload::Message>,
        profile_name: Option<String>,
    },
    Status(payload::Status),
}

/// The WhatsApp adapter for the platform's Meta app. Cheap to clone: clones share the HTTP
/// client and the pacing.
#[derive(Clone)]
pub struct WhatsappChannel {
    app_secret: Option<Secret<String>>,
    verify_token: Option<Secret<String>>,
    graph: GraphApi,
    /// Each business number within its throughput.
    pacer: Pacer,
}

impl std::fmt::Debug for WhatsappChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsappChannel").finish_non_exhaustive()
    }
}

/// Answers Meta's webhook verification: the challenge when the mode is `subscribe` and the
/// token matches `expected` (compared in constant time), else `None` (403).
pub fn verification_challenge(query: &str, expected: &str) -> Option<String> {
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "hub.mode" => mode = Some(v.into_owned()),
            "hub.verify_token" => token = Some(v.into_owned()),
            "hub.challenge" => challenge = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(mode), Some(token), Some(challenge)) = (mode, token, challenge) else {
        return None;
    };
    let same = constant_time_eq(token.as_bytes(), expected.as_bytes());
    (mode == "subscribe" && same && !expected.is_empty() && challenge.len() <= 200)
        .then_some(challenge)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    // Hash both first so neither the length nor the contents leak through timing.
    let (ha, hb) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Reads a verified delivery into its events, routed by business number. `only` keeps the
/// events of one number (an own app's webhook serves its own connection only).
fn events(body: &[u8], only: Option<&str>) -> Result<Inbound<Event>, InboundError> {
    let payload: payload::Payload = super::read_json(body).map_err(|_| {
        InboundError::Malformed("The body is not a WhatsApp webhook payload.".into())
    })?;
    if payload.object != "whatsapp_business_account" {
        return Ok(Inbound::Ignore("a webhook for another kind of object"));
    }
    let mut out = Vec::new();
    for change in payload.entry.into_iter().flat_map(|e| e.changes) {
        if change.field != "messages" {
            continue;
        }
        let Some(value) = change.value else { continue };
        let Some(metadata) = value.metadata else {
            continue;
        };
        let number = metadata.phone_number_id;
        if only.is_some_and(|only| only != number) {
            tracing::warn!(channel.external_id = %number, "an own app's webhook named another number; dropped");
            continue;
        }
        let names: HashMap<String, String> = value
            .contacts
            .into_iter()
            .filter_map(|c| {
                let name = c.profile.and_then(|p| p.name)?;
                Some((c.wa_id, name))
            })
            .collect();
        for message in value.messages {
            if !(1..=200).contains(&message.id.len()) {
                tracing::warn!(channel.external_id = %number, "a message without a usable id; dropped");
                continue;
            }
            out.push(Routed {
                external_id: number.clone(),
                event_id: message.id.clone(),
                event: Event::Message {
                    profile_name: names.get(&message.from).cloned(),
                    message: Box::new(message),
                },
            });
        }
        for status in value.statuses {
            if !(1..=200).contains(&status.id.len()) {
                tracing::warn!(channel.external_id = %number, "a status without a usable id; dropped");
                continue;
            }
            out.push(Routed {
                external_id: number.clone(),
                event_id: format!("{}:{}", status.id, status.status),
                event: Event::Status(status),
            });
        }
    }
    Ok(Inbound::Events(out))
}

fn unix_time(secs: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs.trim().parse().ok()?, 0)
}

/// An event for `connection`, as the engine or the delivery log takes it.
fn accept_event(
    routed: Routed<Event>,
    connection: &ResolvedConnection,
    received_at: DateTime<Utc>,
) -> Result<Accepted, &'static str> {
    let ConnectionSettings::Whatsapp(_) = &connection.settings else {
        return Err("the connection is not a WhatsApp number");
    };
    match routed.event {
        Event::Status(status) => {
            let report = DeliveryReport {
                provider_message_id: status.id,
                status: match status.status.as_str() {
                    "sent" => DeliveryStatus::Sent,
                    "delivered" => DeliveryStatus::Delivered,
                    "read" => DeliveryStatus::Read,
                    "failed" => DeliveryStatus::Failed,
                    _ => return Err("a status we do not track"),
                },
                error_code: status.errors.first().and_then(|e| e.code),
                error_title: status
                    .errors
                    .first()
                    .and_then(|e| e.title.clone().or_else(|| e.message.clone()))
                    .map(|t| t.chars().take(200).collect()),
                at: unix_time(&status.timestamp).unwrap_or(received_at),
            };
            Ok(Accepted::Delivery(report))
        }
        Event::Message {
            message,
            profile_name,
        } => {
            let from = message.from.trim();
            if from.is_empty() || from.len() > 32 || !from.chars().all(|c| c.is_ascii_digit()) {
                return Err("a message without a sender's WhatsApp id");
            }
            let (text, unsupported) = match payload::read(&message) {
                Reading::Text(text) => (text, None),
                Reading::Unsupported { what, caption } => {
                    let text = match caption {
                        Some(caption) => format!("[{what}] {caption}"),
                        None => format!("[{what}]"),
                    };
                    (text, Some(what))
                }
                Reading::Ignore(why) => return Err(why),
            };
            // The window runs from when the customer wrote, which Meta's retries can make long
            // ago; never later than now.
            let wrote_at =
                unix_time(&message.timestamp).map_or(received_at, |t| t.min(received_at));
            Ok(Accepted::Message(InboundMessage {
                tenant_id: connection.tenant,
                channel: ChannelKind::Whatsapp,
                connection_id: connection.id,
                agent_id: connection.agent_id,
                reply_to: ReplyTarget::Whatsapp {
                    wa_id: from.to_string(),
                },
                sender: Sender {
                    id: from.to_string(),
                    display_name: profile_name
                        .map(|n| n.trim().chars().take(200).collect::<String>())
                        .filter(|n| !n.is_empty()),
                },
                text,
                attachments: Vec::new(),
                unsupported,
                provider_event_id: routed.event_id,
                received_at: wrote_at,
                origin: shared::channel::Origin::Customer,
            }))
        }
    }
}

/// The body of the template that carries `reply` after the window, or `None` when the
/// connection has no template.
fn template_body(
    to: &str,
    templates: &[WhatsappTemplate],
    reply: &OutboundReply,
) -> Option<serde_json::Value> {
    let template = templates.first()?;
    let parameters: Vec<serde_json::Value> = template
        .variables
        .iter()
        .map(|v| {
            let text = match v {
                TemplateVariable::CustomerName => reply
                    .context
                    .customer_name
                    .clone()
                    .unwrap_or_else(|| "there".into()),
                TemplateVariable::AgentName => reply
                    .context
                    .agent_name
                    .clone()
                    .unwrap_or_else(|| "our assistant".into()),
                // A variable holds at most 1024 characters, without newlines or tabs.
                TemplateVariable::Message => {
                    let flat = reply.text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if flat.chars().count() > 1024 {
                        let cut: String = flat.chars().take(1021).collect();
                        format!("{cut}...")
                    } else {
                        flat
                    }
                }
            };
            serde_json::json!({ "type": "text", "text": text })
        })
        .collect();
    let mut body = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": { "name": template.name, "language": { "code": template.language } },
    });
    if !parameters.is_empty() {
        body["template"]["components"] =
            serde_json::json!([{ "type": "body", "parameters": parameters }]);
    }
    Some(body)
}

/// Whether a free-form message may go now.
pub fn window_open(reply: &OutboundReply) -> bool {
    match (reply.context.customer_wrote_at, reply.context.now) {
        (Some(wrote), Some(now)) => now < wrote + SERVICE_WINDOW,
        (Some(wrote), None) => Utc::now() < wrote + SERVICE_WINDOW,
        // Never wrote to us: only a template may start the conversation.
        (None, _) => false,
    }
}

/// What a send's failure means.
fn classify(e: CallError) -> SinkError {
    let refused = match e {
        CallError::Unreachable(why) => {
            return SinkError::retryable(format!("WhatsApp could not be reached: {why}"));
        }
        CallError::Refused(refused) => refused,
    };
    match refused.code {
        Some(codes::ACCESS_TOKEN) => SinkError::Revoked(
            "WhatsApp refused the access token (190): connect the number again with a new token"
                .into(),
        ),
        // Lost permission, or the account is locked: nothing will go until an admin acts.
        Some(code @ (10 | 200 | 131031)) => SinkError::Revoked(format!(
            "WhatsApp refused this number's messages ({code}: missing permission or a locked \
             account): check the business account in Meta's Business settings, then connect \
             the number again"
        )),
        Some(codes::THROUGHPUT) => SinkError::Retryable {
            reason: "WhatsApp's throughput limit for the number was hit (130429)".into(),
            after: Some(Duration::from_secs(2)),
        },
        // Concerns this customer only: the number's other conversations go on.
        Some(codes::PAIR_RATE) => SinkError::RecipientLimited {
            reason: "too many messages to this customer in a short time (131056)".into(),
            after: Duration::from_secs(6),
        },
        // Meta's other rate limits and its temporary errors, some answered with HTTP 400.
        Some(code @ (4 | 80007 | 131048 | 133016 | 131000 | 131016 | 133004 | 1 | 2)) => {
            SinkError::Retryable {
                reason: format!("WhatsApp could not take the message for now ({code})"),
                after: Some(Duration::from_secs(10)),
            }
        }
        Some(codes::RE_ENGAGEMENT) => SinkError::Undeliverable(
            "more than 24 hours have passed since the customer last wrote (131047); only an \
             approved template can be sent"
                .into(),
        ),
        Some(codes::UNDELIVERABLE) => SinkError::Undeliverable(
            "the customer cannot receive WhatsApp messages from this number (131026)".into(),
        ),
        _ if refused.http >= 500 || refused.http == 429 => {
            SinkError::retryable(format!("WhatsApp could not take the message: {refused}"))
        }
        _ => SinkError::Permanent(format!("WhatsApp refused the message: {refused}")),
    }
}

impl WhatsappChannel {
    pub fn new(settings: &crate::config::WhatsappSettings) -> Self {
        Self {
            app_secret: settings.app_secret.clone(),
            verify_token: settings.verify_token.clone(),
            graph: GraphApi::new(&settings.graph_url, &settings.graph_version),
            pacer: Pacer::new(Duration::from_secs(1) / settings.messages_per_second.max(1)),
        }
    }

    /// The Graph API client (connection checks).
    pub fn graph(&self) -> &GraphApi {
        &self.graph
    }

    /// Whether the platform app's webhooks can be taken (secret and verify token set).
    pub fn configured(&self) -> bool {
        self.app_secret.is_some() && self.verify_token.is_some()
    }

    /// The platform app's verify token, if configured.
    pub fn verify_token(&self) -> Option<&Secret<String>> {
        self.verify_token.as_ref()
    }

    /// The inbound side for a tenant's own Meta app: its secret, for its one number.
    pub fn own_app(&self, app_secret: Secret<String>, phone_number_id: String) -> OwnAppReceiver {
        OwnAppReceiver {
            app_secret,
            phone_number_id,
        }
    }

    /// After Meta refused a send from `number` with `error`: when the number could not take it
    /// (its throughput, Meta's other limits for it), every conversation on it waits as long as
    /// Meta asked. Too many messages to one customer (`RecipientLimited`) concerns that customer
    /// only, and pushes nothing back.
    fn slow_down(&self, number: &str, error: &SinkError) {
        if let SinkError::Retryable {
            after: Some(after), ..
        } = error
        {
            self.pacer.push_back(number, *after);
        }
    }

    async fn send_one(
        &self,
        token: Secret<String>,
        settings: NumberSettings,
        reply: OutboundReply,
        fence: &Fence,
    ) -> Result<Option<String>, SinkError> {
        let ReplyTarget::Whatsapp { wa_id } = &reply.target else {
            return Err(SinkError::Permanent("not a WhatsApp reply target".into()));
        };
        let free_form = window_open(&reply);
        let body = if free_form {
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": wa_id,
                "type": "text",
                "text": { "preview_url": false, "body": reply.text },
            })
        } else {
            template_body(wa_id, &settings.templates, &reply).ok_or_else(|| {
                SinkError::Undeliverable(
                    "more than 24 hours have passed since the customer last wrote, and this \
                     number has no approved template to send instead (add one on the Channels \
                     page)"
                        .into(),
                )
            })?
        };
        self.pacer.wait(&settings.phone_number_id).await;
        if !fence.holds() {
            return Err(SinkError::Fenced);
        }
        let mut answer = self
            .graph
            .post_message(token.expose(), &settings.phone_number_id, &body)
            .await;
        // Meta says the window closed (our clocks disagreed): the template, once, if there is one.
        if free_form
            && let Err(CallError::Refused(r)) = &answer
            && r.code == Some(codes::RE_ENGAGEMENT)
            && let Some(template) = template_body(wa_id, &settings.templates, &reply)
        {
            self.pacer.wait(&settings.phone_number_id).await;
            if !fence.holds() {
                return Err(SinkError::Fenced);
            }
            answer = self
                .graph
                .post_message(token.expose(), &settings.phone_number_id, &template)
                .await;
        }
        match answer {
            Ok(answer) => Ok(answer["messages"][0]["id"].as_str().map(str::to_string)),
            Err(e) => {
                let error = classify(e);
                self.slow_down(&settings.phone_number_id, &error);
                tracing::warn!(whatsapp.number = %settings.phone_number_id, error = %error, "WhatsApp did not take a message");
                Err(error)
            }
        }
    }
}

fn settings_of(connection: &ConnectionConfig) -> Result<NumberSettings, SinkError> {
    match &connection.settings {
        ConnectionSettings::Whatsapp(s) => Ok(s.clone()),
        _ => Err(SinkError::Permanent("not a WhatsApp connection".into())),
    }
}

impl Receive for WhatsappChannel {
    type Event = Event;

    fn kind(&self) -> ChannelKind {
        ChannelKind::Whatsapp
    }

    fn inbound(&self, request: &WebhookRequest<'_>) -> Result<Inbound<Event>, InboundError> {
        let secret = self.app_secret.as_ref().ok_or(InboundError::NotConfigured(
            "WhatsApp is not configured on this server (KONSTRUCT_WHATSAPP_APP_SECRET).",
        ))?;
        payload::verify_signature(
            secret.expose(),
            request.header("x-hub-signature-256"),
            request.body,
        )
        .map_err(|e| InboundError::Unauthenticated(e.to_string()))?;
        events(request.body, None)
    }

    fn accept(
        &self,
        routed: Routed<Event>,
        connection: &ResolvedConnection,
        received_at: DateTime<Utc>,
    ) -> Result<Accepted, &'static str> {
        accept_event(routed, connection, received_at)
    }
}

/// The inbound side of a tenant's own Meta app, for its one connection.
#[derive(Debug)]
pub struct OwnAppReceiver {
    app_secret: Secret<String>,
    phone_number_id: String,
}

impl Receive for OwnAppReceiver {
    type Event = Event;

    fn kind(&self) -> ChannelKind {
        ChannelKind::Whatsapp
    }

    fn inbound(&self, request: &WebhookRequest<'_>) -> Result<Inbound<Event>, InboundError> {
        payload::verify_signature(
            self.app_secret.expose(),
            request.header("x-hub-signature-256"),
            request.body,
        )
        .map_err(|e| InboundError::Unauthenticated(e.to_string()))?;
        events(request.body, Some(&self.phone_number_id))
    }

    fn accept(
        &self,
        routed: Routed<Event>,
        connection: &ResolvedConnection,
        received_at: DateTime<Utc>,
    ) -> Result<Accepted, &'static str> {
        accept_event(routed, connection, received_at)
    }
}

impl ReplySink for WhatsappChannel {
    fn send(
        &self,
        connection: &ConnectionConfig,
        reply: OutboundReply,
        fence: Fence,
    ) -> BoxFuture<'static, Result<Option<String>, SinkError>> {
        let token = connection.require_token().cloned();
        let settings = settings_of(connection);
        let this = self.clone();
        Box::pin(async move { this.send_one(token?, settings?, reply, &fence).await })
    }

    fn max_part_chars(&self) -> usize {
        MAX_TEXT_CHARS
    }

    fn mark_read(
        &self,
        connection: &ConnectionConfig,
        message: &InboundMessage,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        let token = connection.require_token().cloned();
        let settings = settings_of(connection);
        let wamid = message.provider_event_id.clone();
        let this = self.clone();
        Box::pin(async move {
            let (token, settings) = (token?, settings?);
            let body = serde_json::json!({
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": wamid,
            });
            // A read receipt is not a message: it does not count against the throughput.
            this.graph
                .post_message(token.expose(), &settings.phone_number_id, &body)
                .await
                .map(|_| ())
                .map_err(classify)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_needs_subscribe_and_the_right_token() {
        let q = "hub.mode=subscribe&hub.verify_token=right-token-123456&hub.challenge=1158201444";
        assert_eq!(
            verification_challenge(q, "right-token-123456"),
            Some("1158201444".into())
        );
        assert_eq!(verification_challenge(q, "wrong-token-123456"), None);
        let unsubscribe = q.replace("subscribe", "unsubscribe");
        assert_eq!(
            verification_challenge(&unsubscribe, "right-token-123456"),
            None
        );
        assert_eq!(
            verification_challenge("hub.mode=subscribe&hub.challenge=1", "right-token-123456"),
            None
        );
    }

    fn reply(text: &str, wrote: Option<DateTime<Utc>>, now: DateTime<Utc>) -> OutboundReply {
        OutboundReply {
            tenant_id: shared::TenantId::from_uuid(uuid::Uuid::nil()),
            connection_id: ConnectionId::from_uuid(uuid::Uuid::nil()),
            target: ReplyTarget::Whatsapp {
                wa_id: "15550001".into(),
            },
            in_reply_to: "wamid.1".into(),
            kind: shared::channel::ReplyKind::Answer,
            text: text.into(),
            context: shared::channel::ReplyContext {
                customer_wrote_at: wrote,
                now: Some(now),
                customer_name: Some("Ana".into()),
                agent_name: Some("Nia".into()),
            },
        }
    }

    #[test]
    fn the_window_is_24_hours_from_the_customers_last_message() {
        let now = Utc::now();
        assert!(window_open(&reply(
            "hi",
            Some(now - chrono::TimeDelta::hours(23)),
            now
        )));
        assert!(!window_open(&reply(
            "hi",
            Some(now - chrono::TimeDelta::hours(24)),
            now
        )));
        assert!(!window_open(&reply("hi", None, now)));
    }

    #[test]
    fn a_template_carries_its_variables_in_order() {
        let templates = vec![WhatsappTemplate {
            name: "follow_up".into(),
            language: "en_US".into(),
            variables: vec![TemplateVariable::CustomerName, TemplateVariable::Message],
        }];
        let body = template_body(
            "15550001",
            &templates,
            &reply("Your order\nshipped.", None, Utc::now()),
        );
        let body = body.unwrap();
        assert_eq!(body["type"], "template");
        assert_eq!(body["template"]["name"], "follow_up");
        assert_eq!(body["template"]["language"]["code"], "en_US");
        assert_eq!(
            body["template"]["components"][0]["parameters"],
            serde_json::json!([{"type": "text", "text": "Ana"}, {"type": "text", "text": "Your order shipped."}])
        );
        assert_eq!(
            template_body("15550001", &[], &reply("x", None, Utc::now())),
            None
        );
    }

    fn refused(code: i64, http: u16) -> SinkError {
        classify(CallError::Refused(graph::GraphError {
            http,
            code: Some(code),
            subcode: None,
            message: "m".into(),
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_throughput_refusal_pushes_the_number_back_and_a_customers_limit_does_not() {
        use tokio::time::Instant;
        crate::llm::install_crypto();
        let channel = WhatsappChannel::new(&crate::config::WhatsappSettings {
            messages_per_second: 10,
            ..crate::config::WhatsappSettings::default()
        });
        let ms = Duration::from_millis;
        let start = Instant::now();
        channel.pacer.wait("number-1").await;
        // Too many to one customer: the number's next send keeps its ordinary slot.
        channel.slow_down("number-1", &refused(131056, 400));
        channel.pacer.wait("number-1").await;
        assert_eq!(start.elapsed(), ms(100));
        // The number's throughput: its next send waits the 2 s Meta is given, after its slot.
        channel.slow_down("number-1", &refused(130429, 400));
        channel.pacer.wait("number-1").await;
        assert_eq!(start.elapsed(), ms(2200));
        // Another number is not held up by either.
        channel.slow_down("number-1", &refused(130429, 400));
        let other = Instant::now();
        channel.pacer.wait("number-2").await;
        assert_eq!(other.elapsed(), Duration::ZERO);
    }

    #[test]
    fn metas_errors_are_classified() {
        assert!(matches!(refused(190, 401), SinkError::Revoked(_)));
        assert!(matches!(refused(131047, 400), SinkError::Undeliverable(_)));
        assert!(matches!(
            refused(130429, 400),
            SinkError::Retryable { after: Some(_), .. }
        ));
        assert!(matches!(
            refused(131056, 400),
            SinkError::RecipientLimited { .. }
        ));
        assert!(matches!(refused(1, 500), SinkError::Retryable { .. }));
        assert!(matches!(refused(100, 400), SinkError::Permanent(_)));
    }
}
