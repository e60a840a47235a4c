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

use super::ingest::{Delivery, Ingest, IngestError};
use super::limiter::Limit;
use super::prompt::{self, AgentProfile};
use super::window::{Budget, Speaker, Turn, Window};
use crate::crypto::Keyring;
use crate::llm::metering;
use crate::llm::pool::Pool;
use crate::redis::{Redis, RedisError};
use crate::store::audit::{self, Actor, NewEvent};
use crate::store::{Store, StoreError, agents, conversations};

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
    pub tenant_limit: Limit,
    pub connection_limit: Limit,
    pub window: Budget,
    pub max_answer_tokens: u32,
    /// A conversation actor with no message for this long stops; its window stays in Redis.
    pub idle_after: std::time::Duration,
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
}

/// The Redis key of a conversation's window (namespaced by tenant).
pub fn window_key(redis: &Redis, m: &InboundMessage) -> String {
    redis.key(&format!(
        "{}:window:{}:{}",
        m.tenant_id, m.connection_id, m.conversation_key
    ))
}

pub async fn load_window(deps: &EngineDeps, m: &InboundMessage) -> Result<Window, TurnError> {
    Ok(
        match deps.redis.get_string(&window_key(&deps.redis, m)).await? {
            Some(json) => serde_json::from_str(&json)?,
            None => Window::default(),
        },
    )
}

fn reply_id(m: &InboundMessage) -> String {
    format!("reply:{}", m.provider_event_id)
}

/// What a turn learns in its first transaction.
struct Begun {
    agent: Option<AgentProfile>,
    credentials: crate::llm::pool::Credentials,
}

/// The turn's first transaction: record the inbound message (once), and read the agent and the
/// tenant's own LLM keys. `None` when the message was answered before (a redelivery).
async fn begin(deps: &EngineDeps, m: &InboundMessage) -> Result<Option<Begun>, TurnError> {
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    if record_inbound_in(&mut tx, m).await?.is_none() {
        return Ok(None);
    }
    let agent = match m.agent_id {
        Some(id) => agents::get(&mut tx, id).await?.map(|a| AgentProfile {
            name: a.name,
            role: a.job_title,
            persona: a.persona,
            system_prompt: a.system_prompt,
            job_description: a.job_description,
            business_function: a.business_function,
        }),
        None => None,
    };
    let credentials = match metering::credentials_in(&mut tx, &deps.keyring).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(tenant.id = %m.tenant_id, error = %e, "tenant LLM keys unreadable; using the platform's");
            Default::default()
        }
    };
    tx.commit().await?;
    Ok(Some(Begun { agent, credentials }))
}

/// Sends and records one reply, then acknowledges the entry.
pub async fn reply(
    deps: &EngineDeps,
    d: &Delivery,
    kind: ReplyKind,
    text: String,
) -> Result<(), TurnError> {
    finish(deps, d, kind, text, Outcome::Plain).await
}

/// What else the reply's transaction records.
enum Outcome<'a> {
    Plain,
    /// The LLM answered: usage, cost and the `llm.call` event.
    Answered(&'a crate::llm::types::CallReport),
    /// Every LLM deployment failed.
    LlmFailed(String),
}

/// Sends the reply through the channel, then records it (with the turn's usage or failure) in
/// one transaction, then acknowledges the entry.
async fn finish(
    deps: &EngineDeps,
    d: &Delivery,
    kind: ReplyKind,
    text: String,
    outcome: Outcome<'_>,
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
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    let conversation =
        conversations::upsert(&mut tx, m.connection_id, m.agent_id, &m.conversation_key).await?;
    match outcome {
        Outcome::Plain => {}
        Outcome::Answered(report) => {
            metering::record_in(&mut tx, m.agent_id, report).await?;
        }
        Outcome::LlmFailed(error) => {
            audit::append(
                &mut tx,
                &NewEvent::about(
                    Actor::System,
                    "llm.failed",
                    "conversation",
                    conversation,
                    serde_json::json!({ "error": error }),
                ),
            )
            .await?;
        }
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
    let action = match kind {
        ReplyKind::Answer => "reply.sent",
        ReplyKind::Notice => "reply.notice_sent",
        ReplyKind::Apology => "reply.apology_sent",
    };
    audit::append(
        &mut tx,
        &NewEvent::about(
            Actor::System,
            action,
            "conversation",
            conversation,
            serde_json::json!({
                "in_reply_to": m.provider_event_id,
                "channel": m.channel.as_str(),
            }),
        ),
    )
    .await?;
    tx.commit().await?;
    deps.ingest.done(d).await?;
    Ok(())
}

/// Records an inbound message in its conversation (once per provider event) and audits it.
/// Returns the conversation, or `None` when the message was already answered.
pub async fn record_inbound(
    deps: &EngineDeps,
    m: &InboundMessage,
) -> Result<Option<Uuid>, TurnError> {
    let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
    let conversation = record_inbound_in(&mut tx, m).await?;
    tx.commit().await?;
    Ok(conversation)
}

async fn record_inbound_in(
    tx: &mut crate::store::TenantTx,
    m: &InboundMessage,
) -> Result<Option<Uuid>, TurnError> {
    if conversations::message_exists(tx, &reply_id(m)).await? {
        return Ok(None);
    }
    let conversation =
        conversations::upsert(tx, m.connection_id, m.agent_id, &m.conversation_key).await?;
    if conversations::insert_message(
        tx,
        conversation,
        "inbound",
        &m.sender.id,
        &m.text,
        &m.provider_event_id,
    )
    .await?
    {
        audit::append(
            tx,
            &NewEvent::about(
                Actor::EndUser(conversation),
                "message.received",
                "conversation",
                conversation,
                serde_json::json!({
                    "channel": m.channel.as_str(),
                    "event": m.provider_event_id,
                    "chars": m.text.chars().count(),
                }),
            ),
        )
        .await?;
    }
    Ok(Some(conversation))
}

/// Runs one turn. `window` is the conversation actor's cached window (loaded if `None`); the
/// updated window is returned for the actor to keep.
pub async fn run(
    deps: &EngineDeps,
    d: &Delivery,
    window: Option<Window>,
) -> Result<Window, TurnError> {
    let m = &d.message;
    let mut window = match window {
        Some(w) => w,
        None => load_window(deps, m).await?,
    };
    // A message whose reply is already recorded was answered before a crash: acknowledge and
    // stop.
    let Some(begun) = begin(deps, m).await? else {
        deps.ingest.done(d).await?;
        return Ok(window);
    };
    let Some(agent) = begun.agent else {
        reply(
            deps,
            d,
            ReplyKind::Apology,
            "Sorry, no one is assigned to answer here yet.".into(),
        )
        .await?;
        return Ok(window);
    };
    let request = prompt::chat_request(
        &agent,
        &window,
        m.channel,
        &m.text,
        deps.settings.max_answer_tokens,
    );
    let answer = deps.pool.chat(None, &begun.credentials, &request).await;
    let (kind, text) = match &answer {
        Ok(report) => (ReplyKind::Answer, report.completion.text()),
        Err(e) => {
            tracing::warn!(tenant.id = %m.tenant_id, error = %e, "no LLM answer");
            (ReplyKind::Apology, e.user_message().to_string())
        }
    };
    window.push(
        Turn {
            speaker: Speaker::User,
            text: m.text.clone(),
        },
        deps.settings.window,
    );
    if kind == ReplyKind::Answer {
        window.push(
            Turn {
                speaker: Speaker::Agent,
                text: text.clone(),
            },
            deps.settings.window,
        );
    }
    deps.redis
        .set_string(
            &window_key(&deps.redis, m),
            &serde_json::to_string(&window)?,
        )
        .await?;
    let outcome = match &answer {
        Ok(report) => Outcome::Answered(report),
        Err(e) => Outcome::LlmFailed(e.to_string()),
    };
    finish(deps, d, kind, text, outcome).await?;
    Ok(window)
}
