//! Conversations and the hand-off inbox: who owns a conversation, its inbox status, its
//! transcript, the hand-off packet, and what people do with it (claim, assign, reply, note,
//! snooze, resolve, hand back).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::{ChannelKind, DeliveryStatus, MessageDirection, ReplyKind};
use crate::knowledge::Citation;
use crate::{AgentId, ConnectionId, ConversationId, EndUserId, text_enum};

/// Who a conversation belongs to. The engine sends an AI message only while the AI owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// The agent answers.
    Ai,
    /// Handed off, waiting for a person to claim it; the agent is silent.
    Queue,
    /// A person has it (a member, or a colleague who answered in the channel itself).
    Person,
}

text_enum!(Owner { Ai => "ai", Queue => "queue", Person => "person" });

/// Where a conversation is in the inbox, whoever owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InboxStatus {
    Open,
    /// Waiting on the customer.
    Pending,
    /// Out of sight until `snoozed_until` (then open again).
    Snoozed,
    Resolved,
}

text_enum!(InboxStatus { Open => "open", Pending => "pending", Snoozed => "snoozed", Resolved => "resolved" });

/// One conversation in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub channel: ChannelKind,
    pub connection_id: ConnectionId,
    pub agent_id: Option<AgentId>,
    pub agent_name: Option<String>,
    pub end_user_id: Option<EndUserId>,
    /// The customer's name where the channel gave one, else their handle in the channel.
    pub customer: String,
    pub owner: Owner,
    /// The member who owns it, when a member does.
    pub assignee_id: Option<Uuid>,
    /// Who owns it, in words: the member's name or email, or the colleague who answered in the
    /// channel.
    pub owner_name: Option<String>,
    pub status: InboxStatus,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_message_at: DateTime<Utc>,
    /// The start of the latest message (at most 140 characters).
    pub preview: String,
    pub handed_off_at: Option<DateTime<Utc>>,
    /// Why it was handed off last (`keywords`, `human_requested`, `failed_resolutions`,
    /// `agent_requested`).
    pub handoff_reason: Option<String>,
    /// Seconds from the hand-off to the first person's reply (only people's replies count).
    pub first_response_secs: Option<i64>,
    /// Seconds from the hand-off to its resolution.
    pub resolution_secs: Option<i64>,
}

/// Filters for `GET /api/tenants/{t}/conversations`; everything is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
pub struct ConversationQuery {
    pub channel: Option<ChannelKind>,
    pub agent: Option<AgentId>,
    pub status: Option<InboxStatus>,
    pub owner: Option<Owner>,
    /// Only the caller's own conversations.
    #[serde(default)]
    pub mine: bool,
    /// Words that must appear in one of the conversation's messages.
    pub q: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

/// Why the AI handed off and what a person needs to answer: shown first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoffPacket {
    pub at: DateTime<Utc>,
    /// `keywords`, `human_requested`, `failed_resolutions` or `agent_requested`.
    pub reason: String,
    /// The reason in a sentence (which rule, how many failed attempts, the agent's own words).
    pub why: String,
    /// The team or person the rule hands off to, if it names one.
    pub handoff_target: Option<String>,
    /// What the conversation was about, in a few lines.
    pub summary: String,
    /// What the customer wants, in their own latest words.
    pub intent: String,
    /// What the AI answered before it handed off (newest last).
    pub tried: Vec<String>,
    /// The documents its answers cited.
    pub cited: Vec<String>,
    /// A reply a person could send, to edit before sending.
    pub suggested_reply: String,
    /// When the customer was told a person would answer.
    pub expected_reply: String,
}

/// One entry of a conversation's transcript, in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TranscriptItem {
    Message {
        id: Uuid,
        at: DateTime<Utc>,
        direction: MessageDirection,
        /// For outbound messages: an AI answer, a notice, a person's reply (`human`), …
        kind: Option<ReplyKind>,
        /// Who wrote it: the customer's name, the agent's, or the person's.
        author: Option<String>,
        body: String,
        /// For outbound messages, how far its delivery got.
        delivery: Option<DeliveryStatus>,
        /// Why it could not be delivered, if it could not.
        failure: Option<String>,
        citations: Vec<Citation>,
    },
    ToolCall {
        id: Uuid,
        at: DateTime<Utc>,
        name: String,
        outcome: String,
    },
    Event {
        id: Uuid,
        at: DateTime<Utc>,
        /// `handed_off`, `claimed`, `assigned`, `unassigned`, `replied`, `note`, `status`,
        /// `handed_back`, `taken_in_channel`.
        kind: String,
        actor: Option<String>,
        /// A private note's text (notes never reach the customer); empty otherwise.
        body: String,
        details: serde_json::Value,
    },
}

/// Whether a person can reply through the conversation's channel now, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplyAvailability {
    pub can_reply: bool,
    /// Said when a reply cannot be sent, or will go out as the connection's template
    /// (WhatsApp outside the 24-hour window).
    pub note: Option<String>,
}

/// One conversation with everything that happened in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationDetail {
    pub conversation: ConversationSummary,
    /// The latest hand-off's packet, if it was ever handed off.
    pub packet: Option<HandoffPacket>,
    pub transcript: Vec<TranscriptItem>,
    /// True when older entries were left out (the newest 500 are shown).
    pub truncated: bool,
    pub reply: ReplyAvailability,
}

/// `POST …/conversations/{c}/assign`: give it to a member, or back to the queue with `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignRequest {
    pub assignee_id: Option<Uuid>,
}

/// `POST …/conversations/{c}/replies` and `…/notes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TextRequest {
    pub text: String,
}

/// `POST …/conversations/{c}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusRequest {
    pub status: InboxStatus,
    /// Required for `snoozed`: a time in the future.
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// `POST …/conversations/{c}/hand-back`: what the person did, for the AI to continue from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandBackRequest {
    #[serde(default)]
    pub summary: String,
}

/// The inbox's badge: conversations waiting for a person, and the caller's own open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxCounts {
    pub queue: u64,
    pub mine: u64,
}

/// What the live stream (`GET …/inbox/events`, server-sent events) says: a conversation
/// changed (read it again), with the counts as they are now. Event name `conversation`; a
/// `handoff` event is sent instead when the change handed a conversation to the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxEvent {
    pub conversation_id: ConversationId,
    pub owner: Owner,
    pub status: InboxStatus,
    pub counts: InboxCounts,
}

/// A member's own notification choices in a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationSettings {
    /// Email me when a conversation is handed off.
    pub email_handoffs: bool,
}

/// The tenant's hand-off settings: business hours (for what the customer is told) and an
/// optional Slack channel that hears of every hand-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoffSettings {
    /// `None`: people answer at any hour.
    pub business_hours: Option<BusinessHours>,
    /// A channel id (`C…`) in the tenant's connected Slack workspace.
    pub slack_channel: Option<String>,
}

/// When people answer, in the tenant's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BusinessHours {
    /// ISO weekdays, 1 = Monday … 7 = Sunday.
    pub days: Vec<u8>,
    /// `HH:MM`, 24-hour.
    pub opens: String,
    pub closes: String,
    /// How soon a person answers within business hours, in minutes (said to the customer).
    pub response_minutes: u32,
}

impl Default for BusinessHours {
    fn default() -> Self {
        Self {
            days: vec![1, 2, 3, 4, 5],
            opens: "09:00".into(),
            closes: "17:00".into(),
            response_minutes: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_enum::assert_serde_names;

    #[test]
    fn names_match_serde() {
        assert_serde_names(Owner::ALL, |v| v.as_str());
        assert_serde_names(InboxStatus::ALL, |v| v.as_str());
    }
}
