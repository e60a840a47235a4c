//! One turn of a conversation: record the message, ask the LLM with the agent's persona and the
//! memory window, and reply through the reply protocol (`reply`): the result recorded as pending,
//! sent, marked sent, and only then the entry acknowledged.
//!
//! A turn is idempotent per inbound event: an entry delivered again finds the reply recorded
//! under its event id and resumes from it (sending what is still pending) without asking the LLM
//! again.

use std::collections::HashMap;
use std::sync::Arc;

use shared::channel::{ChannelKind, InboundMessage, ReplyKind};
use uuid::Uuid;

use serde::{Deserialize, Serialize};

use super::config::TenantConfig;
use super::escalation::{self, EscalationState, Fired};
use super::ingest::{Delivery, Ingest, IngestError, ParkResult};
use super::leases::Ownership;
use super::limiter::Limit;
use super::prompt;
use super::reply::{self, SinkError};
use super::window::{Budget, Speaker, Turn, Window};
use crate::crypto::Keyring;
use crate::failpoint;
use crate::llm::metering;
use crate::llm::pool::Pool;
use crate::redis::{Redis, RedisError};
use crate::store::audit::{self, Actor, NewEvent};
use crate::store::conversations::{self, ReplyPart};
use crate::store::{Store, StoreError};

pub use super::reply::{RecordedOnly, ReplySink};

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
    /// How long a conversation's state stays in Redis without a turn.
    pub state_ttl: std::time::Duration,
    /// Entries handed to the actors and not finished, at most.
    pub max_in_flight: usize,
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
            state_ttl: std::time::Duration::from_secs(c.conversation_state_ttl_secs),
            max_in_flight: usize::try_from(c.max_in_flight).unwrap_or(1024),
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
            state_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
            max_in_flight: 1024,
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
    /// Which partitions this node holds, at which epoch (written by the consumer).
    pub ownership: Arc<Ownership>,
    /// Set when an entry was parked or a parked head finished: the consumer looks at the
    /// parked index again (`note_parked`, `take_parked_note`).
    parked: Arc<std::sync::atomic::AtomicBool>,
}

impl EngineDeps {
    pub fn new(
        store: Store,
        redis: Redis,
        ingest: Ingest,
        pool: Arc<Pool>,
        keyring: Arc<Keyring>,
        sinks: HashMap<ChannelKind, Arc<dyn ReplySink>>,
        settings: EngineSettings,
    ) -> Self {
        let ownership = Arc::new(Ownership::new(ingest.partitions()));
        Self {
            store,
            redis,
            ingest,
            pool,
            keyring,
            sinks: Arc::new(sinks),
            settings,
            ownership,
            parked: Arc::default(),
        }
    }
}

impl EngineDeps {
    /// Something was parked, or a parked head finished.
    pub fn note_parked(&self) {
        self.parked.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether something was parked (or a parked head finished) since the last look.
    pub fn take_parked_note(&self) -> bool {
        self.parked.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
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
    #[error(transparent)]
    Send(SinkError),
    /// This node no longer holds the entry's partition; the new owner finishes it.
    #[error("the partition moved to another node")]
    Fenced,
    #[error(transparent)]
    Metering(#[from] metering::MeteringError),
    #[error("no sink for channel {0:?}")]
    NoSink(ChannelKind),
    #[error("the tenant's configuration could not be loaded")]
    ConfigUnavailable,
    #[error("an actor could not take the message: {0}")]
    Mailbox(String),
}

/// What to do with an entry whose turn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It may work later: park it and retry (after at least `after`, when the provider said).
    Retry { after: Option<std::time::Duration> },
    /// It can never work: dead-letter it now.
    DeadLetter,
    /// Another node owns it now: leave it alone.
    Abandon,
}

impl TurnError {
    pub fn disposition(&self) -> Disposition {
        match self {
            TurnError::Fenced | TurnError::Store(StoreError::Fenced) => Disposition::Abandon,
            TurnError::Send(SinkError::Permanent(_)) | TurnError::NoSink(_) => {
                Disposition::DeadLetter
            }
            TurnError::Send(SinkError::Retryable { after, .. }) => {
                Disposition::Retry { after: *after }
            }
            _ => Disposition::Retry { after: None },
        }
    }

    /// Whether the channel itself failed (then apologising through it is pointless).
    pub fn is_channel_failure(&self) -> bool {
        matches!(self, TurnError::Send(_) | TurnError::NoSink(_))
    }
}

/// What a conversation actor keeps between turns, in Redis under a tenant-namespaced key: the
/// memory window and the escalation state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    pub window: Window,
    #[serde(default)]
    pub escalation: EscalationState,
    /// The inbound event the state was last saved for: a turn resumed after a crash keeps the
    /// state only if it already includes that turn.
    #[serde(default)]
    pub last_event: Option<String>,
}

/// The Redis key of a conversation's state (namespaced by tenant).
pub fn state_key(redis: &Redis, m: &InboundMessage) -> String {
    redis.key(&format!(
        "{}:conversation:{}:{}",
        m.tenant_id, m.connection_id, m.conversation_key
    ))
}

/// How many of a conversation's latest messages rebuild a window Redis no longer holds.
const REBUILD_MESSAGES: i64 = 200;

/// The conversation's state: from Redis, or — when Redis does not hold it (expired, Redis
/// restarted, unreadable) — the window rebuilt from the conversation's messages in Postgres, so
/// nothing the customer said is forgotten. (The escalation count starts again in that case.)
pub async fn load_state(
    deps: &EngineDeps,
    m: &InboundMessage,
    conversation: Uuid,
) -> Result<ConversationState, TurnError> {
    if let Some(json) = deps.redis.get_string(&state_key(&deps.redis, m)).await? {
        match serde_json::from_str(&json) {
            Ok(state) => return Ok(state),
            Err(e) => tracing::warn!(error = %e, "unreadable conversation state; rebuilding it"),
        }
    }
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    let rows = conversations::recent_turns(
        &mut tx,
        conversation,
        &m.provider_event_id,
        REBUILD_MESSAGES,
    )
    .await?;
    tx.commit().await?;
    let mut state = ConversationState::default();
    for (inbound, kind, text) in rows {
        let speaker = match (inbound, kind.as_deref()) {
            (true, _) => Speaker::User,
            (false, Some("answer")) => Speaker::Agent,
            // Notices, apologies and hand-off notes are the platform's, not the agent's words.
            (false, _) => continue,
        };
        state
            .window
            .push(Turn { speaker, text }, deps.settings.window);
    }
    Ok(state)
}

async fn save_state(
    deps: &EngineDeps,
    m: &InboundMessage,
    state: &ConversationState,
) -> Result<(), TurnError> {
    deps.redis
        .set_string_ex(
            &state_key(&deps.redis, m),
            &serde_json::to_string(state)?,
            deps.settings.state_ttl.as_secs(),
        )
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

/// What else the reply's transaction records.
enum Outcome<'a> {
    Plain,
    /// The LLM answered: usage, cost and the `llm.call` event.
    Answered(&'a crate::llm::types::CallReport),
    /// Every LLM deployment failed (the failure class only: never message content).
    LlmFailed(String),
}

/// What the turn did besides replying.
#[derive(Default)]
struct Extra<'a> {
    outcome: Option<Outcome<'a>>,
    handoff: Option<&'a Fired>,
    /// The state to save once the result is recorded.
    state: Option<&'a ConversationState>,
}

/// Records and sends the reply (see `record_and_send`), then acknowledges the entry.
async fn finish(
    deps: &EngineDeps,
    d: &Delivery,
    conversation: Uuid,
    kind: ReplyKind,
    text: String,
    extra: Extra<'_>,
) -> Result<(), TurnError> {
    record_and_send(deps, d, conversation, kind, text, extra).await?;
    failpoint::hit(failpoint::BEFORE_ACK).await;
    deps.ingest.done(d).await?;
    Ok(())
}

/// Records the reply (with the turn's usage, escalation and audit events) as pending in one
/// fenced transaction, saves the conversation's state, and sends the reply.
async fn record_and_send(
    deps: &EngineDeps,
    d: &Delivery,
    conversation: Uuid,
    kind: ReplyKind,
    text: String,
    extra: Extra<'_>,
) -> Result<(), TurnError> {
    let m = &d.message;
    let mut tx = reply::fenced_tx(deps, d).await?;
    // The rows first, the audit events last: appending takes the tenant's chain lock until
    // commit, so it should be the transaction's final step.
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
    let parts = reply::record_pending(deps, &mut tx, d, conversation, kind, &text).await?;
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
    if let Some(state) = extra.state {
        let state = ConversationState {
            last_event: Some(m.provider_event_id.clone()),
            ..state.clone()
        };
        save_state(deps, m, &state).await?;
    }
    failpoint::hit(failpoint::AFTER_RECORD).await;
    reply::deliver(deps, d, &parts).await
}

/// Sends what is still pending of a reply recorded before (a redelivered entry), then
/// acknowledges. The conversation's state is dropped unless it already includes this turn, so
/// the next turn rebuilds it from Postgres instead of missing this one.
async fn resume(deps: &EngineDeps, d: &Delivery, parts: &[ReplyPart]) -> Result<(), TurnError> {
    reply::deliver(deps, d, parts).await?;
    let key = state_key(&deps.redis, &d.message);
    let current = deps.redis.get_string(&key).await?;
    let includes_turn = current
        .and_then(|json| serde_json::from_str::<ConversationState>(&json).ok())
        .is_some_and(|s| s.last_event.as_deref() == Some(d.message.provider_event_id.as_str()));
    if !includes_turn {
        deps.redis.delete(&key).await?;
    }
    deps.ingest.done(d).await?;
    Ok(())
}

/// Replies with a platform message (a notice, an apology) and acknowledges the entry.
pub async fn reply_with(
    deps: &EngineDeps,
    d: &Delivery,
    conversation: Uuid,
    kind: ReplyKind,
    text: String,
) -> Result<(), TurnError> {
    finish(deps, d, conversation, kind, text, Extra::default()).await
}

/// An inbound message, recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub conversation: Uuid,
    /// The conversation belongs to a human now: the agent does not answer.
    pub handed_off: bool,
    /// The reply recorded for this message before (a redelivery), if any.
    pub reply: Option<Vec<ReplyPart>>,
}

/// Records an inbound message in its conversation (once per provider event), and finds the
/// reply recorded for it before, if it was delivered before.
pub async fn record_inbound(deps: &EngineDeps, m: &InboundMessage) -> Result<Recorded, TurnError> {
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    let (conversation, status) = conversations::upsert_with_status(
        &mut tx,
        m.connection_id,
        m.agent_id,
        &m.conversation_key,
    )
    .await?;
    let parts = conversations::reply_parts(&mut tx, &m.provider_event_id).await?;
    if parts.is_empty() {
        // The message itself is the record (no audit row per message: the trail holds what the
        // platform did about it — LLM calls, hand-offs, apologies).
        conversations::insert_inbound(
            &mut tx,
            conversation,
            &m.sender.id,
            &m.text,
            &m.provider_event_id,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Recorded {
        conversation,
        handed_off: status == "handed_off",
        reply: (!parts.is_empty()).then_some(parts),
    })
}

/// Parks the entry behind its connection's parked messages, if it has any: `true` when it did
/// (the entry is then out of the stream and waits its turn).
pub async fn parked_behind(deps: &EngineDeps, d: &Delivery) -> Result<bool, TurnError> {
    Ok(deps.ingest.park_if_parked(d).await? != ParkResult::NotParked)
}

/// Starts a turn: parks it behind earlier parked messages of its connection, records the message
/// and resumes a reply recorded before. Returns the recorded message when the turn should go on.
pub async fn begin(deps: &EngineDeps, d: &Delivery) -> Result<Option<Recorded>, TurnError> {
    if parked_behind(deps, d).await? {
        return Ok(None);
    }
    let recorded = record_inbound(deps, &d.message).await?;
    if let Some(parts) = &recorded.reply {
        resume(deps, d, parts).await?;
        return Ok(None);
    }
    Ok(Some(recorded))
}

/// Runs one turn with the tenant's configuration snapshot. The conversation's state (window and
/// escalation count) is read at the start and saved once the turn's result is recorded, so a
/// failed turn leaves it as it was for the retry.
pub async fn run(deps: &EngineDeps, d: &Delivery, config: &TenantConfig) -> Result<(), TurnError> {
    let m = &d.message;
    if !config.exists {
        // The tenant was deleted with this message still queued.
        deps.ingest.done(d).await?;
        return Ok(());
    }
    let Some(recorded) = begin(deps, d).await? else {
        return Ok(());
    };
    // Recorded, not answered: a suspended tenant's channels are silent, and a conversation
    // handed to a human is the human's (the message waits in the conversation for them).
    if !config.active || recorded.handed_off {
        deps.ingest.done(d).await?;
        return Ok(());
    }
    let conversation = recorded.conversation;
    let Some(agent) = config.agent(m.agent_id) else {
        return reply_with(
            deps,
            d,
            conversation,
            ReplyKind::Apology,
            "Sorry, no one is assigned to answer here yet.".into(),
        )
        .await;
    };
    let mut state = load_state(deps, m, conversation).await?;
    let user_turn = Turn {
        speaker: Speaker::User,
        text: m.text.clone(),
    };
    if let Some(fired) = escalation::on_message(&agent.escalation_rules, &m.text) {
        let notice = escalation::handoff_notice(&fired);
        state.window.push(user_turn, deps.settings.window);
        let extra = Extra {
            outcome: None,
            handoff: Some(&fired),
            state: Some(&state),
        };
        return finish(deps, d, conversation, ReplyKind::Handoff, notice, extra).await;
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
    failpoint::hit(failpoint::AFTER_LLM).await;
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
        Err(e) => Outcome::LlmFailed(e.class().to_string()),
    };
    let extra = Extra {
        outcome: Some(outcome),
        handoff: fired.as_ref(),
        state: Some(&state),
    };
    finish(deps, d, conversation, kind, text, extra).await
}

/// Apologises for a message that was dead-lettered (its entry is already out of the queue), if
/// nothing was recorded as its reply. Best effort: a failure is only logged.
pub async fn apologise(deps: &EngineDeps, d: &Delivery) {
    const APOLOGY: &str = "I'm sorry, something went wrong on our side and I couldn't answer \
                           your message. Please send it again in a little while.";
    let result = async {
        let recorded = record_inbound(deps, &d.message).await?;
        if recorded.reply.is_some() {
            return Ok(());
        }
        // The entry is out of the queue already: record and send, nothing to acknowledge.
        let (conversation, kind) = (recorded.conversation, ReplyKind::Apology);
        record_and_send(
            deps,
            d,
            conversation,
            kind,
            APOLOGY.into(),
            Extra::default(),
        )
        .await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not apologise for a dead-lettered message");
    }
}
