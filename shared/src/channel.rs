//! The one normalised message format every channel translates to (inbound) and from (outbound).
//! Slack, WhatsApp and the portal's web channel only translate; the pipeline knows nothing else.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::TenantId;

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

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Web => "web",
        }
    }
}

/// Who wrote it, in the channel's own terms (a Slack user id, a WhatsApp number, a portal user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sender {
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

/// One inbound message, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub tenant_id: TenantId,
    pub channel: ChannelKind,
    /// The channel connection (Slack installation, WhatsApp number, web channel) it arrived on.
    pub connection_id: Uuid,
    /// The agent that answers on that connection.
    pub agent_id: Option<Uuid>,
    /// The conversation within the connection: Slack `channel:thread_ts`, a WhatsApp number, a
    /// portal chat id. Replies go back to it; ordering is kept within it.
    pub conversation_key: String,
    pub sender: Sender,
    pub text: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The provider's id for the event (Slack `event_id`, WhatsApp `wamid…`), for deduplication.
    pub provider_event_id: String,
    pub received_at: DateTime<Utc>,
}

/// What a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// One reply on its way out through the channel it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReply {
    pub tenant_id: TenantId,
    pub channel: ChannelKind,
    pub connection_id: Uuid,
    pub conversation_key: String,
    /// The inbound event this answers.
    pub in_reply_to: String,
    pub kind: ReplyKind,
    pub text: String,
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

/// One message of a test conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatMessage {
    pub id: Uuid,
    /// `inbound` (from the operator) or `outbound` (from the agent).
    pub direction: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}
