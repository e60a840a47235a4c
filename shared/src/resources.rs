//! Management resources: tenants, AI employees (agents), members, tools, background jobs, and
//! pagination.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::TenantRole;
use crate::channel::{ChannelKind, ConnectionStatus};
use crate::{AgentId, ConnectionId, EndUserId, TenantId, text_enum};

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
    /// Items across all pages.
    pub total: u64,
}

/// Tenant lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    /// Signed-in members can still read; channels stop being answered.
    Suspended,
}

text_enum!(TenantStatus { Active => "active", Suspended => "suspended" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    #[cfg_attr(feature = "openapi", schema(value_type = Uuid))]
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantCreate {
    pub name: String,
    /// Lower-case letters, digits and dashes; derived from the name when omitted.
    pub slug: Option<String>,
}

/// `PATCH /api/tenants/{tenant_id}`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub status: Option<TenantStatus>,
}

/// What starts an escalation to a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EscalationTrigger {
    /// After this many turns in a row that the agent could not resolve (1–20).
    FailedResolutions { threshold: u32 },
    /// When the user's message contains any of these words or phrases (case-insensitive).
    Keywords { keywords: Vec<String> },
    /// When the user explicitly asks for a human.
    HumanRequested,
}

/// One escalation rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EscalationRule {
    pub trigger: EscalationTrigger,
    /// Who takes over (a Slack user or channel, an email, a team name); the tenant's default
    /// handoff inbox when omitted.
    pub handoff_target: Option<String>,
}

/// The editable fields of an AI employee (`POST` creates, `PUT` replaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    pub name: String,
    /// The job title, e.g. "Customer support specialist".
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub persona: String,
    #[serde(default)]
    pub system_prompt: String,
    /// The job description / statement of work.
    #[serde(default)]
    pub job_description: String,
    /// A model group name (e.g. `default`, `fast`, `smart`); empty means the platform default.
    #[serde(default)]
    pub model_preference: String,
    /// Tool ids from `GET /api/tenants/{t}/tools`: built-in ids and the tenant's HTTP tools.
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub escalation_rules: Vec<EscalationRule>,
    /// The business function the agent serves; on WhatsApp it declines anything outside it.
    #[serde(default)]
    pub business_function: String,
    /// Where the agent keeps to its business function and declines the rest.
    #[serde(default)]
    pub scope_guard: ScopeGuard,
    /// Requests the agent should take, in customers' words (help the scope check recognise
    /// the business's own questions); up to 50.
    #[serde(default)]
    pub in_scope_examples: Vec<String>,
    /// What the first reply to a customer (and the first after 24 hours of silence) says
    /// about being an AI assistant and reaching a person; a sensible default when empty.
    #[serde(default)]
    pub ai_disclosure: String,
    /// When the knowledge base has nothing relevant, say so and offer a person instead of
    /// answering from general knowledge.
    #[serde(default)]
    pub cite_or_handoff: bool,
    /// Remember facts about each customer across conversations (on by default).
    #[serde(default = "yes")]
    pub long_term_memory: bool,
    /// The most LLM steps (tool rounds) one turn may take; the platform's default when absent,
    /// never more than the platform's cap.
    #[serde(default)]
    pub max_tool_steps: Option<u32>,
    /// How long one turn may take, tools included, in seconds; the platform's default when
    /// absent, never more than the platform's cap.
    #[serde(default)]
    pub turn_deadline_secs: Option<u32>,
}

fn yes() -> bool {
    true
}

/// Where an AI employee stays within its business function (Meta's terms require it on
/// WhatsApp in most regions; some regions suspended the rule, hence a switch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScopeGuard {
    /// On WhatsApp only (the default).
    #[default]
    Whatsapp,
    /// On every channel.
    AllChannels,
    /// Nowhere (only where the rule does not apply).
    Off,
}

text_enum!(ScopeGuard { Whatsapp => "whatsapp", AllChannels => "all_channels", Off => "off" });

impl ScopeGuard {
    /// Whether the guard applies to a message on `channel`.
    pub fn applies_to(self, channel: ChannelKind) -> bool {
        match self {
            ScopeGuard::Whatsapp => channel == ChannelKind::Whatsapp,
            ScopeGuard::AllChannels => true,
            ScopeGuard::Off => false,
        }
    }
}

/// An AI employee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub id: AgentId,
    #[cfg_attr(feature = "openapi", schema(value_type = Uuid))]
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub input: AgentInput,
    /// Requests it declined as outside its business function in the last 30 days.
    #[serde(default)]
    pub declined_last_30_days: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tool an agent can be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tool {
    pub id: String,
    pub name: String,
    pub description: String,
}

/// A member of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: TenantRole,
    pub joined_at: DateTime<Utc>,
    /// The member's last sign-in (recorded since sign-ins were first recorded); `None`: not
    /// since then.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// `POST /api/tenants/{tenant_id}/members`: a platform admin creates an account with a role
/// (until email invitations exist). An existing account is added with the role instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberCreate {
    pub email: String,
    #[serde(default)]
    pub display_name: String,
    /// Required for a new account (at least 12 characters); ignored for an existing one.
    pub password: Option<String>,
    pub role: TenantRole,
}

/// `PATCH /api/tenants/{tenant_id}/members/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberUpdate {
    pub role: TenantRole,
}

/// A provider a tenant can bring its own key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LlmProvider {
    Openai,
    Anthropic,
}

text_enum!(LlmProvider { Openai => "openai", Anthropic => "anthropic" });

/// `PUT /api/tenants/{tenant_id}/llm-keys/{provider}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LlmKeyInput {
    pub api_key: String,
}

impl std::fmt::Debug for LlmKeyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LlmKeyInput { api_key: [redacted] }")
    }
}

/// What is shown about a stored key: never the key, only its last characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmKey {
    pub provider: LlmProvider,
    /// E.g. `…a1b2`.
    pub hint: String,
    pub updated_at: DateTime<Utc>,
    /// When the provider began refusing this key (refused, no access to the model, out of
    /// quota); `None` while it works. Cleared when the key is saved again.
    #[serde(default)]
    pub refused_at: Option<DateTime<Utc>>,
    /// Why, in our own words (e.g. "the provider refused the key (HTTP 401)").
    #[serde(default)]
    pub refused_reason: Option<String>,
}

/// A person who talks to the tenant's agents through a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndUser {
    pub id: EndUserId,
    pub channel: ChannelKind,
    /// Who they are in the channel's terms: a Slack `team:user`, a WhatsApp number, a portal
    /// `user:<id>`.
    pub external_id: String,
    pub display_name: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// How many conversations they started.
    pub conversations: u64,
}

/// Where this Konstruct is reached, for the links operators configure at providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformInfo {
    /// The public base URL every link the product writes starts with.
    pub public_url: String,
    /// The Request URL to set in the Slack app's Event Subscriptions.
    pub slack_events_url: String,
    /// Where Meta sends the platform app's WhatsApp webhooks (`POST`, and `GET` to verify).
    pub whatsapp_webhook_url: String,
    /// Whether this server can take the platform app's WhatsApp webhooks (app secret and verify
    /// token configured).
    pub whatsapp_configured: bool,
    /// The platform's Slack app, if configured.
    pub slack_app_id: Option<String>,
    pub version: String,
}

/// A tenant's calendar and language, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantSettings {
    /// An IANA time zone (`Europe/Berlin`): the tenant's days, months and business hours.
    pub time_zone: String,
    /// The language (and region) the tenant's customers are addressed in (`en`, `en-GB`).
    pub locale: String,
    /// The tenant's wall-clock time now, in its zone (`2026-12-01 19:42`).
    pub local_time: String,
}

/// `PUT /api/tenants/{tenant_id}/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantSettingsInput {
    pub time_zone: String,
    pub locale: String,
}

/// A rate limit: `burst` messages at once, then `per_minute` sustained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// 1–100000.
    pub per_minute: u32,
    /// 1–10000.
    pub burst: u32,
}

/// `PUT /api/tenants/{tenant_id}/limits`: the tenant's own rate limits; `null` (or omitted) means
/// the platform default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsInput {
    /// All the tenant's channels together.
    #[serde(default)]
    pub tenant: Option<RateLimit>,
    /// Each channel connection (a Slack workspace, a WhatsApp number, the web test chat).
    #[serde(default)]
    pub per_connection: Option<RateLimit>,
}

/// The rate limits in force for a tenant, and which are its own rather than the platform's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantLimits {
    pub tenant: RateLimit,
    pub per_connection: RateLimit,
    pub tenant_is_default: bool,
    pub per_connection_is_default: bool,
}

/// `POST /api/tenants/{tenant_id}/channels/slack`: a Slack workspace where the app is installed,
/// registered by hand until the OAuth flow exists.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SlackInstallationInput {
    /// The workspace (`T…`).
    pub team_id: String,
    /// The Enterprise Grid organisation (`E…`), if any.
    #[serde(default)]
    pub enterprise_id: Option<String>,
    #[serde(default)]
    pub team_name: Option<String>,
    /// The app's bot user in that workspace (`U…`); its own messages are ignored.
    pub bot_user_id: String,
    /// The bot token (`xoxb-…`); stored sealed, never shown again.
    pub bot_token: String,
    /// The scopes granted at installation.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The AI employee that answers in this workspace.
    pub agent_id: AgentId,
}

impl std::fmt::Debug for SlackInstallationInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackInstallationInput")
            .field("team_id", &self.team_id)
            .field("bot_user_id", &self.bot_user_id)
            .field("bot_token", &"[redacted]")
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

/// A Slack installation as shown: never the token, only its last characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlackInstallation {
    /// The channel connection's id.
    pub id: ConnectionId,
    pub team_id: String,
    pub enterprise_id: Option<String>,
    pub team_name: Option<String>,
    pub bot_user_id: String,
    pub token_hint: String,
    pub scopes: Vec<String>,
    pub agent_id: Option<AgentId>,
    pub status: ConnectionStatus,
    pub health: ChannelHealth,
    pub created_at: DateTime<Utc>,
}

/// How a channel connection is doing, for the Channels page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelHealth {
    /// When the last message from an end user arrived (to the minute).
    pub last_received_at: Option<DateTime<Utc>>,
    /// The last failure to send through it, in Konstruct's words (e.g. "WhatsApp refused the
    /// access token (190): reconnect with a new token"); cleared by a later success.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// What fills one variable (`{{1}}`, `{{2}}`, …) of a WhatsApp template's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TemplateVariable {
    /// The end user's WhatsApp profile name (or "there" when unknown).
    CustomerName,
    /// The answering AI employee's name.
    AgentName,
    /// The message that could not be sent free-form (shortened to fit a template variable).
    Message,
}

text_enum!(TemplateVariable { CustomerName => "customer_name", AgentName => "agent_name", Message => "message" });

/// A message template approved in Meta's WhatsApp Manager, sent when a message must go out
/// after the 24-hour customer-service window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WhatsappTemplate {
    /// The template's name in WhatsApp Manager (lowercase letters, digits and `_`).
    pub name: String,
    /// Its language code, e.g. `en_US`, `de`.
    pub language: String,
    /// What fills the body's variables, in order.
    #[serde(default)]
    pub variables: Vec<TemplateVariable>,
}

/// `POST /api/tenants/{tenant_id}/channels/whatsapp`: connect (or refresh) a business number.
/// The number's display number and verified name come from Meta, not from the request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WhatsappConnectionInput {
    /// The number's id in the Cloud API (digits), from WhatsApp Manager → API setup.
    pub phone_number_id: String,
    /// The WhatsApp Business Account (WABA) the number belongs to (digits).
    pub waba_id: String,
    /// A permanent (system user) access token with `whatsapp_business_messaging` and
    /// `whatsapp_business_management`; stored sealed, never shown again.
    pub access_token: String,
    /// The AI employee that answers on this number.
    pub agent_id: AgentId,
    /// Templates for messages after the 24-hour window; the first is the one used.
    #[serde(default)]
    pub templates: Vec<WhatsappTemplate>,
    /// Only for a tenant that brings its own Meta app: that app's secret, which signs its
    /// webhooks. The connection then gets a webhook URL and verify token of its own.
    #[serde(default)]
    pub app_secret: Option<String>,
}

impl std::fmt::Debug for WhatsappConnectionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsappConnectionInput")
            .field("phone_number_id", &self.phone_number_id)
            .field("waba_id", &self.waba_id)
            .field("access_token", &"[redacted]")
            .field("agent_id", &self.agent_id)
            .field("templates", &self.templates)
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Where a tenant's own Meta app sends its webhooks: enter both in the app's dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OwnWebhook {
    pub callback_url: String,
    pub verify_token: String,
}

/// A connected WhatsApp business number as shown: never the token, only its last characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhatsappConnection {
    /// The channel connection's id.
    pub id: ConnectionId,
    pub phone_number_id: String,
    pub waba_id: String,
    /// As Meta shows it, e.g. `+1 555-010-0200`.
    pub display_phone_number: String,
    /// The business name Meta verified for the number.
    pub verified_name: String,
    /// Meta's quality rating (`GREEN`, `YELLOW`, `RED`, `UNKNOWN`).
    pub quality_rating: Option<String>,
    pub token_hint: String,
    pub agent_id: Option<AgentId>,
    pub status: ConnectionStatus,
    pub templates: Vec<WhatsappTemplate>,
    /// Set when the tenant brings its own Meta app.
    pub own_webhook: Option<OwnWebhook>,
    pub health: ChannelHealth,
    pub created_at: DateTime<Utc>,
}

/// Where a background job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its first run or, after a failed attempt, for its next one (`run_at`).
    Queued,
    /// A worker is running it now.
    Running,
    Succeeded,
    /// Failed for good: a permanent error, or no attempts left. It can be queued again.
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether it may be queued again by hand.
    pub fn is_retryable(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// A background job of the tenant, as shown: what it is and how it went, never its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: Uuid,
    /// What it does, e.g. `tenant.purge_redis`.
    pub kind: String,
    pub status: JobStatus,
    /// Attempts made so far (reset when queued again by hand).
    pub attempts: u32,
    pub max_attempts: u32,
    /// When a queued job runs next (its first run or its next retry).
    pub run_at: DateTime<Utc>,
    /// Why the latest failed attempt failed, in Konstruct's words; kept after a later success.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_enum::assert_serde_names;

    #[test]
    fn stored_names_are_the_wire_names() {
        assert_serde_names(TenantStatus::ALL, |v| v.as_str());
        assert_serde_names(LlmProvider::ALL, |v| v.as_str());
        assert_serde_names(TemplateVariable::ALL, |v| v.as_str());
        assert_serde_names(ScopeGuard::ALL, |v| v.as_str());
    }
}
