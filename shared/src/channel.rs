//! The one normalised message format every channel translates to (inbound) and from (outbound).
//! Slack, WhatsApp and the portal's web channel only translate; the pipeline knows nothing else.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AgentId, ConnectionId, TenantId, text_enum};

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Slack,
    Whatsapp,
    /// The portal's test chat.
    Web,
}

text_enum!(ChannelKind { Slack => "slack", Whatsapp => "whatsapp", Web => "web" });

/// Whether a channel connection is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    /// Disconnected by an admin: its secret erased.
    Disabled,
    /// Refused for good by the provider (a revoked or expired token): not answered until an
    /// admin connects it again with a new token; `ChannelHealth::last_error` says why.
    Failed,
}

text_enum!(ConnectionStatus { Active => "active", Disabled => "disabled", Failed => "failed" });

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MessageDirection {
    /// From the end user (or the operator in the test chat).
    Inbound,
    /// From the agent or the platform.
    Outbound,
}

text_enum!(MessageDirection { Inbound => "inbound", Outbound => "outbound" });

/// Where an outbound part is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Recorded, not yet accepted by the channel.
    Pending,
    /// Accepted by the channel (it gave its id for the message).
    Sent,
    /// The channel reports it reached the user's device (WhatsApp `delivered`).
    Delivered,
    /// The channel reports the user read it (WhatsApp `read`).
    Read,
    /// The channel accepted it and later reported it undeliverable (WhatsApp `failed`), or it
    /// could never be sent (outside WhatsApp's 24-hour window with no template).
    Failed,
    /// An AI part recorded before a person took the conversation: never sent.
    Withheld,
}

text_enum!(DeliveryStatus { Pending => "pending", Sent => "sent", Delivered => "delivered", Read => "read", Failed => "failed", Withheld => "withheld" });

impl DeliveryStatus {
    /// How far along a delivery this is: a status report never moves a part backwards (Meta
    /// may report `delivered` after `read`).
    pub fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Pending => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Read => 3,
            DeliveryStatus::Failed | DeliveryStatus::Withheld => 4,
        }
    }
}

/// Who wrote it, in the channel's own terms (a Slack user id, a WhatsApp number, a portal user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sender {
    /// Unique within the channel connection's kind for one tenant: a Slack sender is
    /// `{team}:{user}`, a WhatsApp sender their number, a portal user `user:{id}`.
    pub id: String,
    pub display_name: Option<String>,
}

/// A file that came with the message; fetched later, SSRF-safely, if a tool needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attachment {
    /// The provider's reference: a Slack `url_private_download` or a WhatsApp media id.
    pub reference: String,
    pub mime_type: Option<String>,
    pub name: Option<String>,
}

/// Where replies to a conversation go, in the channel's own terms. The conversation's key is
/// formatted from it in one place (`conversation_key`) and never parsed back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplyTarget {
    /// A Slack thread: the channel and the timestamp of the thread's first message.
    Slack { channel: String, thread_ts: String },
    /// A WhatsApp user, written to from the business number of the connection: the user's
    /// WhatsApp id (`wa_id`, their number in international form without `+`).
    Whatsapp { wa_id: String },
    /// A portal test-chat conversation.
    Web { conversation: String },
}

impl ReplyTarget {
    /// The conversation within its connection: Slack `channel:thread_ts`, the test chat's id.
    pub fn conversation_key(&self) -> String {
        match self {
            ReplyTarget::Slack { channel, thread_ts } => format!("{channel}:{thread_ts}"),
            ReplyTarget::Whatsapp { wa_id } => format!("wa:{wa_id}"),
            ReplyTarget::Web { conversation } => conversation.clone(),
        }
    }

    /// The kind of channel it belongs to.
    pub fn channel(&self) -> ChannelKind {
        match self {
            ReplyTarget::Slack { .. } => ChannelKind::Slack,
            ReplyTarget::Whatsapp { .. } => ChannelKind::Whatsapp,
            ReplyTarget::Web { .. } => ChannelKind::Web,
        }
    }
}

/// One inbound message, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "InboundWire")]
pub struct InboundMessage {
    pub tenant_id: TenantId,
    pub channel: ChannelKind,
    /// The channel connection (Slack installation, WhatsApp number, web channel) it arrived on.
    pub connection_id: ConnectionId,
    /// The agent that answers on that connection.
    pub agent_id: Option<AgentId>,
    /// The conversation within the connection; replies go back to it and ordering is kept
    /// within it.
    pub reply_to: ReplyTarget,
    pub sender: Sender,
    pub text: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// A message the platform cannot read yet (a picture, a voice note, a sticker): what it
    /// was. It is recorded and answered with a short notice, without the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// The provider's id for the event (Slack `event_id`, WhatsApp `wamid…`), for deduplication.
    pub provider_event_id: String,
    /// When the end user wrote it, by the provider's timestamp where it gives one (WhatsApp's
    /// window runs from it), else when it reached us.
    pub received_at: DateTime<Utc>,
    /// Who it is from and what the engine does with it.
    #[serde(default, skip_serializing_if = "Origin::is_customer")]
    pub origin: Origin,
}

/// What kind of entry a queued message is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Written to the agent: a mention, a direct message, a WhatsApp message, the test chat.
    #[default]
    Customer,
    /// Written in the Slack thread of a conversation without addressing the agent: a
    /// colleague's reply (which takes the conversation) when someone other than the customer
    /// wrote it, else the customer going on. Never starts a conversation.
    Thread,
    /// A person's reply recorded from the portal, whose parts are recorded under
    /// `provider_event_id`: the engine only sends them, in the conversation's order.
    Person,
}

impl Origin {
    pub fn is_customer(&self) -> bool {
        *self == Origin::Customer
    }
}

impl InboundMessage {
    /// The conversation's key within its connection (see `ReplyTarget::conversation_key`).
    pub fn conversation_key(&self) -> String {
        self.reply_to.conversation_key()
    }
}

/// How an inbound message is read from the queue: entries queued by an earlier version carry
/// only a `conversation_key`, which is turned into the reply target it was formatted from.
#[derive(Deserialize)]
struct InboundWire {
    tenant_id: TenantId,
    channel: ChannelKind,
    connection_id: ConnectionId,
    agent_id: Option<AgentId>,
    #[serde(default)]
    reply_to: Option<ReplyTarget>,
    #[serde(default)]
    conversation_key: Option<String>,
    sender: Sender,
    text: String,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    unsupported: Option<String>,
    provider_event_id: String,
    received_at: DateTime<Utc>,
    #[serde(default)]
    origin: Origin,
}

impl From<InboundWire> for InboundMessage {
    fn from(w: InboundWire) -> Self {
        let legacy = w.conversation_key.unwrap_or_default();
        let reply_to = w.reply_to.unwrap_or_else(|| match w.channel {
            ChannelKind::Slack => {
                let (channel, thread_ts) = legacy.split_once(':').unwrap_or((&legacy, ""));
                ReplyTarget::Slack {
                    channel: channel.to_string(),
                    thread_ts: thread_ts.to_string(),
                }
            }
            ChannelKind::Web | ChannelKind::Whatsapp => ReplyTarget::Web {
                conversation: legacy.clone(),
            },
        });
        InboundMessage {
            tenant_id: w.tenant_id,
            channel: w.channel,
            connection_id: w.connection_id,
            agent_id: w.agent_id,
            reply_to,
            sender: w.sender,
            text: w.text,
            attachments: w.attachments,
            unsupported: w.unsupported,
            provider_event_id: w.provider_event_id,
            received_at: w.received_at,
            origin: w.origin,
        }
    }
}

/// What a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// The agent's answer.
    Answer,
    /// A notice from the platform, e.g. "you are sending messages too fast".
    Notice,
    /// An apology when no answer could be produced.
    Apology,
    /// The conversation was handed to a human; this tells the user so.
    Handoff,
    /// The request is outside the agent's business function; the agent said so.
    Decline,
    /// A person's reply (from the portal, or a colleague in the channel's thread).
    Human,
}

text_enum!(ReplyKind { Answer => "answer", Notice => "notice", Apology => "apology", Handoff => "handoff", Decline => "decline", Human => "human" });

impl ReplyKind {
    /// Whether the AI (or the platform on its behalf) wrote it: such a part is sent only while
    /// the AI owns the conversation.
    pub fn is_ai(self) -> bool {
        self != ReplyKind::Human
    }
}

/// One reply on its way out through the channel it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReply {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub target: ReplyTarget,
    /// The inbound event this answers.
    pub in_reply_to: String,
    pub kind: ReplyKind,
    pub text: String,
    #[serde(default)]
    pub context: ReplyContext,
}

/// What a channel may need besides the text: WhatsApp's 24-hour window and its templates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyContext {
    /// When the end user last wrote in the conversation (WhatsApp's customer-service window runs
    /// 24 hours from it).
    pub customer_wrote_at: Option<DateTime<Utc>>,
    /// The engine's clock as the part is handed to the channel.
    pub now: Option<DateTime<Utc>>,
    /// The end user's name as the channel knows it (a WhatsApp profile name).
    pub customer_name: Option<String>,
    /// The answering AI employee's name.
    pub agent_name: Option<String>,
}

/// `POST /api/tenants/{tenant_id}/agents/{agent_id}/messages`: a test message from the portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChatSend {
    pub text: String,
    /// Continue this conversation; a new one starts when omitted.
    pub conversation: Option<String>,
}

/// The message was queued; poll the conversation for the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatAccepted {
    pub conversation: String,
    pub event_id: String,
}

/// One message of a test conversation (not `Eq`: its citations carry `f32` scores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatMessage {
    pub id: Uuid,
    /// `inbound` (from the operator) or `outbound` (from the agent).
    pub direction: MessageDirection,
    pub text: String,
    pub created_at: DateTime<Utc>,
    /// The knowledge-base passages the reply cites (`[n]` in its text).
    #[serde(default)]
    pub citations: Vec<crate::knowledge::Citation>,
    /// What the agent recalled about the customer for this reply.
    #[serde(default)]
    pub memories: Vec<String>,
    /// The tools the agent called on the way to this reply, in order.
    #[serde(default)]
    pub tool_calls: Vec<crate::tools::ToolCall>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_enum::assert_serde_names;

    #[test]
    fn stored_names_are_the_wire_names() {
        assert_serde_names(ChannelKind::ALL, |v| v.as_str());
        assert_serde_names(ConnectionStatus::ALL, |v| v.as_str());
        assert_serde_names(MessageDirection::ALL, |v| v.as_str());
        assert_serde_names(DeliveryStatus::ALL, |v| v.as_str());
        assert_serde_names(ReplyKind::ALL, |v| v.as_str());
        assert_eq!(ReplyKind::parse("handoff"), Some(ReplyKind::Handoff));
        assert!(ConnectionStatus::try_from("gone".to_string()).is_err());
    }

    #[test]
    fn an_entry_queued_by_the_previous_version_keeps_its_reply_target() {
        let old = serde_json::json!({
            "tenant_id": "6f1c1c1e-2d7a-4e6b-9a8e-3c2b1a0f9e8d",
            "channel": "slack",
            "connection_id": "6f1c1c1e-2d7a-4e6b-9a8e-3c2b1a0f9e8e",
            "agent_id": null,
            "conversation_key": "C1:1700000000.000100",
            "sender": { "id": "U1", "display_name": null },
            "text": "hi",
            "provider_event_id": "Ev1",
            "received_at": "2026-12-01T00:00:00Z",
        });
        let m: InboundMessage = serde_json::from_value(old).unwrap();
        assert_eq!(
            m.reply_to,
            ReplyTarget::Slack {
                channel: "C1".into(),
                thread_ts: "1700000000.000100".into()
            }
        );
        assert_eq!(m.conversation_key(), "C1:1700000000.000100");
        let round: InboundMessage =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(round, m);
    }
}
