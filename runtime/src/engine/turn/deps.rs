//! What every turn needs: the engine's dependencies and settings, the errors a turn can end
//! with and what the consumer does about each, and the events the engine reports to observers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use shared::TenantId;
use shared::channel::ChannelKind;

use crate::channels::{ReplySink, SinkError};
use crate::crypto::Keyring;
use crate::engine::config::{self, TenantConfig};
use crate::engine::ingest::{Delivery, Ingest, IngestError};
use crate::engine::leases::Ownership;
use crate::engine::limiter::Limit;
use crate::engine::window::Budget;
use crate::llm::metering;
use crate::llm::pool::Pool;
use crate::redis::{Redis, RedisError};
use crate::store::{Store, StoreError};

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
    /// What "now" is for WhatsApp's 24-hour window, the AI disclosure and `current_time`.
    pub clock: crate::time::Clock,
    /// A turn's LLM steps (tool rounds) and its whole duration, at most; an agent may set less.
    pub tool_steps: u32,
    pub turn_deadline: std::time::Duration,
    /// Where a test may hold a turn (see [`Pauses`]); nothing by default.
    pub pauses: Pauses,
}

/// A test's hold on a turn at a named point of the reply protocol ([`BEFORE_RECORD`],
/// [`BEFORE_SEND`]): the engine awaits the hook there, so a test can act (claim the
/// conversation, say) at exactly that moment and then let the turn go on. Production code never
/// sets one.
/// The hook a test sets: awaited at each point with the turn's conversation.
pub type PauseHook = std::sync::Arc<
    dyn Fn(&'static str, shared::ConversationId) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + Sync,
>;

#[derive(Clone, Default)]
pub struct Pauses(Option<PauseHook>);

/// Before a turn records its result (the LLM has answered).
pub const BEFORE_RECORD: &str = "before_record";
/// Before a recorded part is cleared to be sent.
pub const BEFORE_SEND: &str = "before_send";

impl Pauses {
    /// Holds turns at each point for as long as `hook`'s future runs.
    pub fn new(
        hook: impl Fn(
            &'static str,
            shared::ConversationId,
        ) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self(Some(std::sync::Arc::new(hook)))
    }

    /// Waits at `point` if a hook is set.
    pub async fn at(&self, point: &'static str, conversation: shared::ConversationId) {
        if let Some(hook) = &self.0 {
            hook(point, conversation).await;
        }
    }
}

impl std::fmt::Debug for Pauses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Pauses(set)"
        } else {
            "Pauses(none)"
        })
    }
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
            tool_steps: c.tool_steps,
            turn_deadline: std::time::Duration::from_secs(c.turn_deadline_secs),
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
            clock: crate::time::Clock::default(),
            tool_steps: 6,
            turn_deadline: std::time::Duration::from_secs(60),
            pauses: Pauses::default(),
        }
    }
}

/// How an entry left the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged after its reply (or notice) was sent and recorded, or after it was recorded
    /// with nothing to answer (a suspended tenant, a handed-off conversation).
    Done,
    /// Moved to its connection's parked list, to be retried.
    Parked,
    /// Moved to the dead-letter stream.
    DeadLettered,
}

/// What the engine reports to whoever listens (tests and benchmarks wait for these instead of
/// sleeping; nothing in the engine depends on them being received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// An entry left the stream (or its parked list).
    Finished {
        tenant: TenantId,
        event_id: String,
        outcome: Outcome,
    },
    /// A tenant actor (re)loaded its configuration snapshot.
    ConfigLoaded { tenant: TenantId },
}

/// The tenants' configuration snapshots, as their tenant actors hold them: paths outside an
/// actor (the apology for a dead letter) read from here, so they send through the same opened
/// tokens. Written only by tenant actors, so an entry is never staler than its actor's.
#[derive(Debug, Default)]
pub struct Snapshots(Mutex<HashMap<TenantId, Arc<TenantConfig>>>);

impl Snapshots {
    pub fn put(&self, tenant: TenantId, config: Arc<TenantConfig>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant, config);
    }

    pub fn get(&self, tenant: TenantId) -> Option<Arc<TenantConfig>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .cloned()
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
    pub snapshots: Arc<Snapshots>,
    /// The knowledge base and long-term memory, when this node runs them.
    pub knowledge: Option<crate::knowledge::Knowledge>,
    /// The client tenants' HTTP tools call through (SSRF-safe); without it they fail.
    pub outbound: Option<crate::outbound::Outbound>,
    events: tokio::sync::broadcast::Sender<EngineEvent>,
    /// Set when an entry was parked or a parked head finished: the consumer looks at the
    /// parked index again (`note_parked`, `take_parked_note`).
    parked: Arc<AtomicBool>,
}

/// Events kept for a slow listener before it misses some (it is told it lagged).
const EVENT_BUFFER: usize = 65_536;

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
            snapshots: Arc::default(),
            knowledge: None,
            outbound: None,
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            parked: Arc::default(),
        }
    }

    /// Turns retrieve from the knowledge base and recall memories through `knowledge`.
    pub fn with_knowledge(mut self, knowledge: crate::knowledge::Knowledge) -> Self {
        self.knowledge = Some(knowledge);
        self
    }

    /// Tenants' HTTP tools call through `outbound`.
    pub fn with_outbound(mut self, outbound: crate::outbound::Outbound) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// Something was parked, or a parked head finished.
    pub fn note_parked(&self) {
        self.parked.store(true, Ordering::SeqCst);
    }

    /// Whether something was parked (or a parked head finished) since the last look.
    pub fn take_parked_note(&self) -> bool {
        self.parked.swap(false, Ordering::SeqCst)
    }

    /// Listens to the engine's events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// Tells listeners, if any.
    pub fn report(&self, event: EngineEvent) {
        // No listener is the normal case in production.
        let _ = self.events.send(event);
    }

    /// The entry is handled: acknowledge it, and say so.
    pub async fn done(&self, d: &Delivery) -> Result<(), TurnError> {
        self.ingest.done(d).await?;
        self.report(EngineEvent::Finished {
            tenant: d.message.tenant_id,
            event_id: d.message.provider_event_id.clone(),
            outcome: Outcome::Done,
        });
        Ok(())
    }

    /// The tenant's snapshot as its actor holds it, or freshly loaded when no actor here has one.
    pub async fn snapshot(&self, tenant: TenantId) -> Result<Arc<TenantConfig>, TurnError> {
        match self.snapshots.get(tenant) {
            Some(config) => Ok(config),
            None => Ok(Arc::new(config::load(self, tenant).await?)),
        }
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
    /// The tenant's snapshot has no such connection (it was deleted with the message queued).
    #[error("the channel connection no longer exists")]
    NoConnection,
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
            TurnError::Send(SinkError::Permanent(_) | SinkError::Revoked(_))
            | TurnError::NoSink(_)
            | TurnError::NoConnection => Disposition::DeadLetter,
            TurnError::Send(SinkError::Retryable { after, .. }) => {
                Disposition::Retry { after: *after }
            }
            TurnError::Send(SinkError::RecipientLimited { after, .. }) => Disposition::Retry {
                after: Some(*after),
            },
            _ => Disposition::Retry { after: None },
        }
    }

    /// The failure's class, in our own words (what the audit trail records: never a provider's
    /// or a database's text, which may quote what it was given).
    pub fn class(&self) -> &'static str {
        match self {
            TurnError::Store(_) => "database",
            TurnError::Redis(_) | TurnError::Ingest(_) => "queue",
            TurnError::Window(_) => "conversation_state",
            TurnError::Send(SinkError::Retryable { .. } | SinkError::RecipientLimited { .. }) => {
                "channel_unavailable"
            }
            TurnError::Send(SinkError::Permanent(_) | SinkError::Undeliverable(_)) => {
                "channel_refused"
            }
            TurnError::Send(SinkError::Revoked(_)) => "channel_revoked",
            TurnError::Fenced | TurnError::Send(SinkError::Fenced) => "partition_moved",
            TurnError::Metering(_) => "metering",
            TurnError::NoSink(_) => "no_channel",
            TurnError::NoConnection => "connection_gone",
            TurnError::ConfigUnavailable => "configuration_unavailable",
            TurnError::Mailbox(_) => "engine_busy",
        }
    }

    /// Whether the channel itself failed (then apologising through it is pointless).
    pub fn is_channel_failure(&self) -> bool {
        matches!(
            self,
            TurnError::Send(_) | TurnError::NoSink(_) | TurnError::NoConnection
        )
    }
}
