//! The append-only audit trail and its per-tenant hash chain.
//!
//! The database assigns `seq`, `prev_hash`, `hash` and `created_at` in a trigger, so a caller can
//! only describe *what* happened; it cannot place or date the row. `verify_chain` walks the chain
//! with the SQL function `audit_verify_chain` and reports the first row that was edited, removed
//! or moved. Truncating the newest rows cannot be seen from the chain alone: compare the returned
//! head hash with one recorded elsewhere to detect that.

use serde_json::Value;
use shared::{AgentId, ConnectionId, ConversationId, EndUserId, TenantId};
use uuid::Uuid;

use super::{StoreResult, TenantTx};

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// Everything that can be audited: the one table of audit actions. The name is what is
        /// stored (lower-case, dotted, as the database's check requires).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$doc])* $variant,)+
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }
        }
    };
}

actions! {
    /// A platform admin created a tenant.
    TenantCreated => "tenant.created",
    /// Its name, slug or status changed.
    TenantUpdated => "tenant.updated",
    /// The last event of a deleted tenant's trail.
    TenantDeleted => "tenant.deleted",
    TenantLimitsChanged => "tenant.limits_changed",
    /// Its time zone or locale changed.
    TenantSettingsChanged => "tenant.settings_changed",
    AgentCreated => "agent.created",
    AgentUpdated => "agent.updated",
    AgentDeleted => "agent.deleted",
    MemberAdded => "member.added",
    MemberRoleChanged => "member.role_changed",
    MemberRemoved => "member.removed",
    ChannelConnected => "channel.connected",
    ChannelRefreshed => "channel.refreshed",
    ChannelDisconnected => "channel.disconnected",
    LlmKeySet => "llm_key.set",
    LlmKeyDeleted => "llm_key.deleted",
    /// The provider began refusing a tenant's own key (once per refusal episode).
    LlmKeyRefused => "llm.key_refused",
    /// One LLM call: provider, model, tokens, cost.
    LlmCall => "llm.call",
    /// Every deployment failed for a turn (the failure class only).
    LlmFailed => "llm.failed",
    ImpersonationStarted => "impersonation.started",
    ImpersonationStopped => "impersonation.stopped",
    /// A request made while impersonating, recorded before it is handled.
    ImpersonationRequest => "impersonation.request",
    ConversationHandedOff => "conversation.handed_off",
    ReplyNoticeSent => "reply.notice_sent",
    ReplyApologySent => "reply.apology_sent",
    ReplyHandoffSent => "reply.handoff_sent",
    /// Messages refused by a rate limit in one window, as one record with the count.
    MessageRateLimited => "message.rate_limited",
    MessageDeadLettered => "message.dead_lettered",
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about, by id: never a name, a text or anything an end user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Tenant(TenantId),
    Agent(AgentId),
    User(Uuid),
    Connection(ConnectionId),
    Conversation(ConversationId),
    EndUser(EndUserId),
    /// A tenant's own LLM key, by provider.
    LlmKey(&'static str),
    /// An HTTP request (method and route pattern), for requests made while impersonating.
    Request(String),
}

impl Target {
    fn columns(&self) -> (Option<&'static str>, Option<String>) {
        match self {
            Target::None => (None, None),
            Target::Tenant(id) => (Some("tenant"), Some(id.to_string())),
            Target::Agent(id) => (Some("agent"), Some(id.to_string())),
            Target::User(id) => (Some("user"), Some(id.to_string())),
            Target::Connection(id) => (Some("channel_connection"), Some(id.to_string())),
            Target::Conversation(id) => (Some("conversation"), Some(id.to_string())),
            Target::EndUser(id) => (Some("end_user"), Some(id.to_string())),
            Target::LlmKey(provider) => (Some("llm_key"), Some((*provider).to_string())),
            Target::Request(what) => (Some("http"), Some(what.clone())),
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The runtime itself (a pipeline step, a scheduled job).
    System,
    /// A signed-in operator.
    User(Uuid),
    /// A platform admin acting inside the tenant; `admin` is the real person.
    PlatformAdmin { admin: Uuid },
    /// A platform admin acting through an impersonation of the tenant: `impersonator_id` holds
    /// the real admin's id, which marks the row as done under impersonation.
    Impersonating { admin: Uuid },
    /// A Slack or WhatsApp end user.
    EndUser(EndUserId),
}

impl Actor {
    fn columns(self) -> (&'static str, Option<Uuid>, Option<Uuid>) {
        match self {
            Actor::System => ("system", None, None),
            Actor::User(id) => ("user", Some(id), None),
            Actor::PlatformAdmin { admin } => ("platform_admin", Some(admin), None),
            Actor::Impersonating { admin } => ("platform_admin", Some(admin), Some(admin)),
            Actor::EndUser(id) => ("end_user", Some(*id.as_uuid()), None),
        }
    }
}

/// One thing that happened, to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor: Actor,
    pub action: Action,
    pub target: Target,
    /// A JSON object with a secret-free summary of ids, counts and reasons (e.g. before/after of
    /// changed settings) — never message text, tool arguments or personal data.
    pub details: Value,
    pub request_id: Option<String>,
}

impl NewEvent {
    /// An event about one target, with no request behind it (the engine's events).
    pub fn about(actor: Actor, action: Action, target: Target, details: Value) -> Self {
        Self {
            actor,
            action,
            target,
            details,
            request_id: None,
        }
    }
}

/// Where an appended event landed in its tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// The outcome of walking a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub ok: bool,
    pub rows_checked: i64,
    /// The first row that failed, when `ok` is false.
    pub first_bad_seq: Option<i64>,
    /// Why it failed, in words.
    pub problem: Option<String>,
    /// The hash of the last good row (all zeros for an empty chain).
    pub head_hash: Vec<u8>,
}

/// Appends an event to the tenant's chain inside `tx`. `seq`, `prev_hash`, `hash` and
/// `created_at` are filled in by the database's trigger (NOT NULL is checked after it runs).
pub async fn append(tx: &mut TenantTx, event: &NewEvent) -> StoreResult<Appended> {
    let tenant = tx.tenant();
    let (actor_kind, actor_id, impersonator_id) = event.actor.columns();
    let (target_kind, target_id) = event.target.columns();
    let (seq, hash): (i64, Vec<u8>) = sqlx::query_as(
        "INSERT INTO audit_events (tenant_id, actor_kind, actor_id, impersonator_id, action, \
                                   target_kind, target_id, details, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING seq, hash",
    )
    .bind(tenant)
    .bind(actor_kind)
    .bind(actor_id)
    .bind(impersonator_id)
    .bind(event.action.as_str())
    .bind(target_kind)
    .bind(target_id)
    .bind(&event.details)
    .bind(event.request_id.as_deref())
    .fetch_one(tx.connection())
    .await?;
    Ok(Appended { seq, hash })
}

/// Verifies the chain of the transaction's tenant.
pub async fn verify_chain(tx: &mut TenantTx) -> StoreResult<ChainReport> {
    let tenant = tx.tenant();
    let (ok, rows_checked, first_bad_seq, problem, head_hash): (
        bool,
        i64,
        Option<i64>,
        Option<String>,
        Vec<u8>,
    ) = sqlx::query_as(
        "SELECT ok, rows_checked, first_bad_seq, problem, head_hash FROM audit_verify_chain($1)",
    )
    .bind(tenant.as_uuid())
    .fetch_one(tx.connection())
    .await?;
    Ok(ChainReport {
        ok,
        rows_checked,
        first_bad_seq,
        problem,
        head_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_name_is_unique_and_passes_the_databases_check() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            let name = action.as_str();
            assert!(seen.insert(name), "{name} twice");
            // The check on audit_events.action: ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$
            let parts: Vec<&str> = name.split('.').collect();
            assert!(parts.len() >= 2, "{name}");
            for part in parts {
                let mut chars = part.chars();
                assert!(
                    chars.next().is_some_and(|c| c.is_ascii_lowercase()),
                    "{name}"
                );
                assert!(
                    chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}"
                );
            }
        }
    }
}
