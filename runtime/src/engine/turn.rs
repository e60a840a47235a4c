//! One turn of a conversation: record the message, ask the LLM with the agent's persona and the
//! memory window, send the reply through the channel, record it, and acknowledge the entry.
//!
//! A turn is idempotent per inbound event: the reply is recorded under `reply:<event id>`, so an
//! entry delivered again after a crash (between sending and acknowledging) is acknowledged
//! without a second answer.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shared::channel::{ChannelKind, InboundMessage, OutboundReply, ReplyKind};
use uuid::Uuid;

use serde::{Deserialize, Serialize};

use super::config::TenantConfig;
use super::escalation::{self, EscalationState, Fired};
use super::ingest::{Delivery, Ingest, IngestError};
use super::limiter::Limit;
use super::prompt;
use super::window::{Budget, Speaker, Turn, Window};
use crate::crypto::Keyring;
use crate::llm::metering;
use crate::llm::pool::Pool;
use crate::redis::{Redis, RedisError};
use crate::store::audit::{self, Actor, NewEvent};
use crate::store::{Store, StoreError, conversations};

/// Sends replies out through one kind of channel.
pub trait ReplySink: Send + Sync {
    fn send(&self, reply: OutboundReply) -> BoxFuture<'static, Result<(), String>>;
}

/// The web channel's sink: the reply is already recorded in the conversation, which the portal
/// reads, so sending is done.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordedOnly;

impl ReplySink for RecordedOnly {
    fn send(&self, _reply: OutboundReply) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Engine tuning.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The platform's default limits; a tenant's own (in its config snapshot) win.
    pub tenant_limit: Limit,
    pub connection_limit: Limit,
    pub window: Budget,
    pub max_answer_tokens: u32,
    /// A conversation actor with no message for this long stops; its window stays in Redis.
    pub idle_after: std::time::Duration,
    /// How long a partition lease lasts unrenewed; also how long an unacknowledged entry waits
    /// before it is claimed again.
    pub partition_lease: std::time::Duration,
}

impl EngineSettings {
    /// From the runtime's settings.
    pub fn from_config(c: &crate::config::EngineConfig) -> Self {
        Self {
            tenant_limit: Limit {
                per_minute: c.rate_per_minute,
                burst: c.rate_burst,
            },
            connection_limit: Limit {
                per_minute: c.connection_rate_per_minute,
                burst: c.connection_rate_burst,
            },
            idle_after: std::time::Duration::from_secs(c.conversation_idle_secs),
            partition_lease: std::time::Duration::from_secs(c.partition_lease_secs),
            ..Self::default()
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            tenant_limit: Limit {
                per_minute: 600,
                burst: 60,
            },
            connection_limit: Limit {
                per_minute: 120,
                burst: 20,
            },
            window: Budget::default(),
            max_answer_tokens: 1024,
            idle_after: std::time::Duration::from_secs(600),
            partition_lease: std::time::Duration::from_secs(15),
        }
    }
}

/// Everything a turn needs.
#[derive(Clone)]
pub struct EngineDeps {
    pub store: Store,
    pub redis: Redis,
    pub ingest: Ingest,
    pub pool: Arc<Pool>,
    pub keyring: Arc<Keyring>,
    pub sinks: Arc<HashMap<ChannelKind, Arc<dyn ReplySink>>>,
    pub settings: EngineSettings,
}

impl std::fmt::Debug for EngineDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineDeps").finish_non_exhaustive()
    }
}

/// Why a turn did not complete; the entry stays pending and is retried, then dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("window: {0}")]
    Window(#[from] serde_json::Error),
    #[error("the channel refused the reply: {0}")]
    Send(String),
    #[error(transparent)]
    Metering(#[from] metering::MeteringError),
    #[error("no sink for channel {0:?}")]
    NoSink(ChannelKind),
    #[error("the tenant's configuration could not be loaded")]
    ConfigUnavailable,
    #[error("an actor could not take the message: {0}")]
    Mailbox(String),
}

/// What a conversation actor keeps between turns, in Redis under a tenant-namespaced key: the
/// memory window and the escalation state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    pub window: Window,
    #[serde(default)]
    pub escalation: EscalationState,
}

/// The Redis key of a conversation's state (namespaced by tenant).
pub fn state_key(redis: &Redis, m: &InboundMessage) -> String {
    redis.key(&format!(
        "{}:conversation:{}:{}",
        m.tenant_id, m.connection_id, m.conversation_key
    ))
}

pub async fn load_state(
    deps: &EngineDeps,
    m: &InboundMessage,
) -> Result<ConversationState, TurnError> {
    Ok(
        match deps.redis.get_string(&state_key(&deps.redis, m)).await? {
            Some(json) => serde_json::from_str(&json)?,
            None => ConversationState::default(),
        },
    )
}

async fn save_state(
    deps: &EngineDeps,
    m: &InboundMessage,
    state: &ConversationState,
) -> Result<(), TurnError> {
    deps.redis
        .set_string(&state_key(&deps.redis, m), &serde_json::to_string(state)?)
        .await?;
    Ok(())
}

/// The usage row a conversation's turns add to: one of 16, stable per conversation.
fn usage_slot(m: &InboundMessage) -> i16 {
    let hash = m
        .conversation_key
        .bytes()
        .chain(m.connection_id.as_bytes().iter().copied())
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (hash % 16) as i16
}

fn reply_id(m: &InboundMessage) -> String {
    format!("reply:{}", m.provider_event_id)
}

/// Sends and records one reply, then acknowledges the entry.
pub async fn reply(
    deps: &EngineDeps,
    d: &Delivery,
    kind: ReplyKind,
    text: String,
) -> Result<(), TurnError> {
    finish(deps, d, kind, text, Extra::default()).await
}

/// What else the reply's transaction records.
enum Outcome<'a> {
    Plain,
    /// The LLM answered: usage, cost and the `llm.call` event.
    Answered(&'a crate::llm::types::CallReport),
    /// Every LLM deployment failed.
    LlmFailed(String),
}

/// What the turn did besides replying.
#[derive(Default)]
struct Extra<'a> {
    outcome: Option<Outcome<'a>>,
    handoff: Option<&'a Fired>,
}

/// Sends the reply through the channel, then records it (with the turn's usage or failure) in
/// one transaction, then acknowledges the entry.
async fn finish(
    deps: &EngineDeps,
    d: &Delivery,
    kind: ReplyKind,
    text: String,
    extra: Extra<'_>,
) -> Result<(), TurnError> {
    let m = &d.message;
    let sink = deps
        .sinks
        .get(&m.channel)
        .cloned()
        .ok_or(TurnError::NoSink(m.channel))?;
    sink.send(OutboundReply {
        tenant_id: m.tenant_id,
        channel: m.channel,
        connection_id: m.connection_id,
        conversation_key: m.conversation_key.clone(),
        in_reply_to: m.provider_event_id.clone(),
        kind,
        text: text.clone(),
    })
    .await
    .map_err(TurnError::Send)?;
    // The rows first, the audit events last: appending takes the tenant's chain lock until
    // commit, so it should be the transaction's final step.
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    let conversation =
        conversations::upsert(&mut tx, m.connection_id, m.agent_id, &m.conversation_key).await?;
    let mut events: Vec<NewEvent<'_>> = Vec::with_capacity(2);
    match extra.outcome.unwrap_or(Outcome::Plain) {
        Outcome::Plain => {}
        Outcome::Answered(report) => {
            let cost = metering::add_usage_in(&mut tx, m.agent_id, report, usage_slot(m)).await?;
            events.push(metering::call_event(m.agent_id, report, cost));
        }
        Outcome::LlmFailed(error) => events.push(NewEvent::about(
            Actor::System,
            "llm.failed",
            "conversation",
            conversation,
            serde_json::json!({ "error": error }),
        )),
    }
    if let Some(fired) = extra.handoff {
        let escalation = conversations::hand_off(
            &mut tx,
            conversation,
            fired.reason.as_str(),
            fired.handoff_target.as_deref(),
        )
        .await?;
        events.push(NewEvent::about(
            Actor::System,
            "conversation.handed_off",
            "conversation",
            conversation,
            serde_json::json!({
                "escalation": escalation,
                "reason": fired.reason.as_str(),
                "handoff_target": fired.handoff_target,
                "event": m.provider_event_id,
            }),
        ));
    }
    conversations::insert_message(
        &mut tx,
        conversation,
        "outbound",
        "agent",
        &text,
        &reply_id(m),
    )
    .await?;
    // An ordinary answer is recorded in the conversation (and its LLM call audited); replies
    // that are not answers are audited themselves.
    let action = match kind {
        ReplyKind::Answer => None,
        ReplyKind::Notice => Some("reply.notice_sent"),
        ReplyKind::Apology => Some("reply.apology_sent"),
        ReplyKind::Handoff => Some("reply.handoff_sent"),
    };
    if let Some(action) = action {
        events.push(NewEvent::about(
            Actor::System,
            action,
            "conversation",
            conversation,
            serde_json::json!({
                "in_reply_to": m.provider_event_id,
                "channel": m.channel.as_str(),
            }),
        ));
    }
    for event in &events {
        audit::append(&mut tx, event).await?;
    }
    tx.commit().await?;
    deps.ingest.done(d).await?;
    Ok(())
}

/// Records an inbound message in its conversation (once per provider event). Returns the
/// conversation and whether it was handed to a human, or `None` when the message was already
/// answered.
pub async fn record_inbound(
    deps: &EngineDeps,
    m: &InboundMessage,
) -> Result<Option<Recorded>, TurnError> {
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    let conversation = record_inbound_in(&mut tx, m).await?;
    tx.commit().await?;
    Ok(conversation)
}

/// An inbound message, recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub conversation: Uuid,
    /// The conversation belongs to a human now: the agent does not answer.
    pub handed_off: bool,
}

async fn record_inbound_in(
    tx: &mut crate::store::TenantTx,
    m: &InboundMessage,
) -> Result<Option<Recorded>, TurnError> {
    if conversations::message_exists(tx, &reply_id(m)).await? {
        return Ok(None);
    }
    let (conversation, status) =
        conversations::upsert_with_status(tx, m.connection_id, m.agent_id, &m.conversation_key)
            .await?;
    // The message itself is the record (no audit row per message: the trail holds what the
    // platform did about it — LLM calls, rejections, hand-offs, apologies).
    conversations::insert_message(
        tx,
        conversation,
        "inbound",
        &m.sender.id,
        &m.text,
        &m.provider_event_id,
    )
    .await?;
    Ok(Some(Recorded {
        conversation,
        handed_off: status == "handed_off",
    }))
}

/// Runs one turn with the tenant's configuration snapshot. The conversation's state (window and
/// escalation count) is read from Redis at the start and written back only once the reply was
/// sent and recorded, so a failed turn leaves it as it was for the retry.
pub async fn run(deps: &EngineDeps, d: &Delivery, config: &TenantConfig) -> Result<(), TurnError> {
    let m = &d.message;
    // A message whose reply is already recorded was answered before a crash: acknowledge and
    // stop.
    let Some(recorded) = record_inbound(deps, m).await? else {
        deps.ingest.done(d).await?;
        return Ok(());
    };
    // Recorded, not answered: a suspended tenant's channels are silent, and a conversation
    // handed to a human is the human's (the message waits in the conversation for them).
    if !config.active || recorded.handed_off {
        deps.ingest.done(d).await?;
        return Ok(());
    }
    let Some(agent) = config.agent(m.agent_id) else {
        reply(
            deps,
            d,
            ReplyKind::Apology,
            "Sorry, no one is assigned to answer here yet.".into(),
        )
        .await?;
        return Ok(());
    };
    let mut state = load_state(deps, m).await?;
    let user_turn = Turn {
        speaker: Speaker::User,
        text: m.text.clone(),
    };
    if let Some(fired) = escalation::on_message(&agent.escalation_rules, &m.text) {
        let notice = escalation::handoff_notice(&fired);
        let extra = Extra {
            outcome: None,
            handoff: Some(&fired),
        };
        finish(deps, d, ReplyKind::Handoff, notice, extra).await?;
        state.window.push(user_turn, deps.settings.window);
        save_state(deps, m, &state).await?;
        return Ok(());
    }
    let mut request = prompt::chat_request(
        &agent.profile,
        &state.window,
        m.channel,
        &m.text,
        deps.settings.max_answer_tokens,
    );
    if escalation::counts_failures(&agent.escalation_rules)
        && let Some(system) = request.system.as_mut()
    {
        system.push_str(&format!(
            "\n\nIf you cannot resolve the user's request, say so briefly and end your reply \
             with {}.",
            escalation::UNRESOLVED_MARKER
        ));
    }
    let answer = deps
        .pool
        .chat(
            agent.model_preference.as_deref(),
            &config.credentials,
            &request,
        )
        .await;
    let refused = answer
        .as_ref()
        .map_or_else(crate::llm::pool::PoolError::key_failures, |r| {
            r.key_failures.as_slice()
        });
    if let Err(e) = metering::record_key_failures(&deps.store, m.tenant_id, refused).await {
        tracing::error!(tenant.id = %m.tenant_id, error = %e, "could not record a refused LLM key");
    }
    let (mut kind, mut text, resolved) = match &answer {
        Ok(report) => {
            let (text, unresolved) = escalation::strip_marker(&report.completion.text());
            (ReplyKind::Answer, text, Some(!unresolved))
        }
        Err(e) => {
            tracing::warn!(tenant.id = %m.tenant_id, error = %e, "no LLM answer");
            (ReplyKind::Apology, e.user_message().to_string(), None)
        }
    };
    // An outage is not counted either way.
    let fired = resolved.and_then(|resolved| {
        escalation::after_turn(&agent.escalation_rules, &mut state.escalation, resolved)
    });
    state.window.push(user_turn, deps.settings.window);
    if kind == ReplyKind::Answer {
        state.window.push(
            Turn {
                speaker: Speaker::Agent,
                text: text.clone(),
            },
            deps.settings.window,
        );
    }
    if let Some(fired) = &fired {
        let notice = escalation::handoff_notice(fired);
        text = if kind == ReplyKind::Answer && !text.trim().is_empty() {
            format!("{text}\n\n{notice}")
        } else {
            notice
        };
        kind = ReplyKind::Handoff;
    }
    let outcome = match &answer {
        Ok(report) => Outcome::Answered(report),
        Err(e) => Outcome::LlmFailed(e.to_string()),
    };
    let extra = Extra {
        outcome: Some(outcome),
        handoff: fired.as_ref(),
    };
    finish(deps, d, kind, text, extra).await?;
    // After the reply is recorded: a crash before this line loses only this turn's window update
    // (the redelivery acknowledges without answering again).
    save_state(deps, m, &state).await?;
    Ok(())
}
