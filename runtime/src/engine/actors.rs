//! The actors: a registry of one supervised `TenantActor` per tenant, each with one
//! `ConversationActor` per conversation.
//!
//! Ordering: the consumer hands entries to the registry in stream order; each hop forwards with
//! `Addr::send`, which enqueues synchronously, so a conversation's mailbox receives its messages in
//! order, and the conversation actor runs one turn at a time (`AtomicResponse`). Different
//! conversations run concurrently. Mailboxes are bounded: a full one makes `send` wait, which
//! slows the consumer instead of growing memory.
//!
//! A tenant actor holds its tenant's configuration snapshot (`config`), loaded before it handles
//! its first message and reloaded, between two messages, when a `Refresh` arrives.
//!
//! The actors only route and keep order: what a turn does — answering, rejecting a message over
//! a rate limit, parking a failed one — is `engine::turn`'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use shared::{ConnectionId, TenantId};

use super::config::{self, TenantConfig};
use super::ingest::{Delivery, Source};
use super::limiter::{Decision, Gcra, Limit};
use super::turn::{self, EngineDeps, EngineEvent, TurnError, Work};
use crate::store::audit::{self, Action, Actor as AuditActor, NewEvent, Target};

/// The least time over which rejected messages are counted into one audit record.
const REJECTION_WINDOW_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Mailbox bounds. They are set when an actor is created, before anything can be sent to it:
/// senders parked on the default bound of a not-yet-started actor are not woken when `started`
/// raises it (found by the pipeline benchmark: the 17th message to a new tenant waited forever).
const REGISTRY_MAILBOX: usize = 1024;
const TENANT_MAILBOX: usize = 256;
const CONVERSATION_MAILBOX: usize = 64;

/// Handle one delivered entry; the reply is sent and the entry acknowledged on `Ok`.
#[derive(Debug)]
pub struct Route(pub Delivery);

impl Message for Route {
    type Result = Result<(), TurnError>;
}

/// Asks how many conversation actors are live, across every tenant (tests, metrics).
#[derive(Debug)]
pub struct CountLiveConversations;

impl Message for CountLiveConversations {
    type Result = usize;
}

/// The configuration of a tenant (or, with `None`, of every live tenant) changed: reload it.
#[derive(Debug, Clone, Copy)]
pub struct Refresh(pub Option<TenantId>);

impl Message for Refresh {
    type Result = ();
}

/// Reload a tenant's configuration now and answer once the new snapshot is in use (tests wait
/// on it instead of sleeping; a reload started after a change has committed sees the change).
/// A tenant with no live actor answers at once: it loads fresh for its next message.
#[derive(Debug, Clone, Copy)]
pub struct Reload(pub TenantId);

impl Message for Reload {
    type Result = ();
}

/// Maps tenants to their actors, starting them on first use.
pub struct Registry {
    /// Shared by every actor: one allocation, not a copy per conversation.
    deps: Arc<EngineDeps>,
    tenants: HashMap<TenantId, Addr<TenantActor>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tenants", &self.tenants.len())
            .finish()
    }
}

impl Registry {
    pub fn new(deps: EngineDeps) -> Self {
        Self {
            deps: Arc::new(deps),
            tenants: HashMap::new(),
        }
    }

    /// Starts the registry with its mailbox bound.
    pub fn start_bounded(self) -> Addr<Self> {
        Registry::create(|ctx| {
            ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
            self
        })
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Route> for Registry {
    type Result = ResponseFuture<Result<(), TurnError>>;

    fn handle(&mut self, msg: Route, _: &mut Context<Self>) -> Self::Result {
        let tenant = msg.0.message.tenant_id;
        tracing::trace!(ingest.entry = %msg.0.entry_id, "registry routes");
        let addr = match self.tenants.get(&tenant) {
            Some(addr) if addr.connected() => addr.clone(),
            _ => {
                let deps = self.deps.clone();
                // Supervised: if the actor stops, it is restarted with fresh limiters.
                let addr = Supervisor::start(move |ctx: &mut Context<TenantActor>| {
                    ctx.set_mailbox_capacity(TENANT_MAILBOX);
                    TenantActor::new(tenant, deps)
                });
                self.tenants.insert(tenant, addr.clone());
                addr
            }
        };
        let request = addr.send(Dispatch(msg.0));
        Box::pin(async move {
            request
                .await
                .unwrap_or_else(|e| Err(TurnError::Mailbox(e.to_string())))
        })
    }
}

impl Handler<Refresh> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Refresh, _: &mut Context<Self>) {
        self.tenants.retain(|_, addr| addr.connected());
        let targets: Vec<Addr<TenantActor>> = match msg.0 {
            // A tenant with no live actor loads fresh when its next message arrives.
            Some(tenant) => self.tenants.get(&tenant).cloned().into_iter().collect(),
            None => self.tenants.values().cloned().collect(),
        };
        for addr in targets {
            // Not the hot path; `send` still respects the mailbox bound.
            actix::spawn(async move {
                let _ = addr.send(Refresh(None)).await;
            });
        }
    }
}

impl Handler<Reload> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) -> Self::Result {
        let target = self
            .tenants
            .get(&msg.0)
            .filter(|addr| addr.connected())
            .cloned();
        Box::pin(async move {
            if let Some(addr) = target {
                let _ = addr.send(msg).await;
            }
        })
    }
}

impl Handler<CountLiveConversations> for Registry {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: CountLiveConversations, _: &mut Context<Self>) -> Self::Result {
        let requests: Vec<_> = self
            .tenants
            .values()
            .map(|t| t.send(CountLiveConversations))
            .collect();
        Box::pin(async move {
            let mut live = 0;
            for request in requests {
                live += request.await.unwrap_or(0);
            }
            live
        })
    }
}

impl Handler<CountLiveConversations> for TenantActor {
    type Result = usize;

    fn handle(&mut self, _: CountLiveConversations, _: &mut Context<Self>) -> usize {
        // Stopped (passivated) conversations are forgotten here too.
        self.conversations.retain(|_, addr| addr.connected());
        self.conversations.len()
    }
}

/// A message for one tenant.
#[derive(Debug)]
struct Dispatch(Delivery);

impl Message for Dispatch {
    type Result = Result<(), TurnError>;
}

/// One tenant: its configuration snapshot, its rate limiters and its live conversations.
#[derive(Debug)]
pub struct TenantActor {
    tenant: TenantId,
    deps: Arc<EngineDeps>,
    /// `None` until loaded (or when loading failed; messages then fail and are retried).
    config: Option<Arc<TenantConfig>>,
    /// The tenant's own limit.
    limiter: Gcra,
    /// One limit per channel connection.
    connection_limiters: HashMap<ConnectionId, Gcra>,
    conversations: HashMap<String, Addr<ConversationActor>>,
    /// Messages rejected by a rate limit in the current window, per connection; audited as one
    /// record with the count when the window ends, not one row per message.
    rejections: HashMap<ConnectionId, u64>,
}

/// A conversation actor stopped (it was idle): forget it.
#[derive(Debug)]
struct Forget(String);

impl Message for Forget {
    type Result = ();
}

impl Handler<Forget> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        if self
            .conversations
            .get(&msg.0)
            .is_some_and(|addr| !addr.connected())
        {
            self.conversations.remove(&msg.0);
        }
    }
}

impl TenantActor {
    /// Counts a rejected message; the first of a window schedules the window's audit record.
    fn count_rejection(
        &mut self,
        connection: ConnectionId,
        window: std::time::Duration,
        ctx: &mut Context<Self>,
    ) {
        let count = self.rejections.entry(connection).or_insert(0);
        *count += 1;
        if *count > 1 {
            return;
        }
        let window = window.max(REJECTION_WINDOW_MIN);
        ctx.run_later(window, move |act, _| {
            let Some(count) = act.rejections.remove(&connection) else {
                return;
            };
            let (deps, tenant) = (act.deps.clone(), act.tenant);
            actix::spawn(async move {
                let recorded = async {
                    let mut tx = deps.store.tenant_tx(tenant).await?;
                    audit::append(
                        &mut tx,
                        &NewEvent::about(
                            AuditActor::System,
                            Action::MessageRateLimited,
                            Target::Connection(connection),
                            serde_json::json!({
                                "rejected": count,
                                "window_secs": window.as_secs(),
                            }),
                        ),
                    )
                    .await?;
                    tx.commit().await
                }
                .await;
                if let Err(e) = recorded {
                    tracing::error!(tenant.id = %tenant, error = %e, "could not audit rate-limited messages");
                }
            });
        });
    }

    fn new(tenant: TenantId, deps: Arc<EngineDeps>) -> Self {
        Self {
            tenant,
            limiter: Gcra::new(deps.settings.tenant_limit),
            connection_limiters: HashMap::new(),
            conversations: HashMap::new(),
            rejections: HashMap::new(),
            config: None,
            deps,
        }
    }

    /// Loads the snapshot; the mailbox waits meanwhile, so no message is handled with a stale
    /// or missing configuration.
    fn load_config(&mut self, ctx: &mut Context<Self>) {
        let (deps, tenant) = (self.deps.clone(), self.tenant);
        tracing::debug!(tenant.id = %tenant, "loading tenant config");
        ctx.wait(
            async move {
                let loaded = config::load(&deps, tenant).await;
                tracing::debug!(tenant.id = %tenant, ok = loaded.is_ok(), "tenant config loaded");
                loaded
            }
                .into_actor(self)
                .map(|loaded, act, _| match loaded {
                    Ok(config) => act.apply(config),
                    Err(e) => {
                        tracing::error!(tenant.id = %act.tenant, error = %e, "tenant config not loaded");
                        act.config = None;
                    }
                }),
        );
    }

    /// Takes a new snapshot; limiters whose limit changed start afresh.
    fn apply(&mut self, config: TenantConfig) {
        if self.limiter.limit() != config.tenant_limit {
            self.limiter = Gcra::new(config.tenant_limit);
        }
        let connection_limit = config.connection_limit;
        self.connection_limiters
            .retain(|_, g| g.limit() == connection_limit);
        let config = Arc::new(config);
        self.deps.snapshots.put(self.tenant, config.clone());
        self.config = Some(config);
        self.deps.report(EngineEvent::ConfigLoaded {
            tenant: self.tenant,
        });
    }
}

impl Actor for TenantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.load_config(ctx);
    }
}

impl Supervised for TenantActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(tenant.id = %self.tenant, "tenant actor restarting");
        self.conversations.clear();
        // Their scheduled audit records were cancelled with the old context.
        self.rejections.clear();
        self.config = None;
    }
}

impl Handler<Refresh> for TenantActor {
    type Result = ();

    fn handle(&mut self, _: Refresh, ctx: &mut Context<Self>) {
        tracing::debug!(tenant.id = %self.tenant, "reloading tenant config");
        self.load_config(ctx);
    }
}

impl Handler<Reload> for TenantActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Reload, _: &mut Context<Self>) -> Self::Result {
        let (deps, tenant) = (self.deps.clone(), self.tenant);
        AtomicResponse::new(Box::pin(
            async move { config::load(&deps, tenant).await }
                .into_actor(self)
                .map(|loaded, act, _| match loaded {
                    Ok(config) => act.apply(config),
                    Err(e) => {
                        tracing::error!(tenant.id = %act.tenant, error = %e, "tenant config not loaded");
                        act.config = None;
                    }
                }),
        ))
    }
}

impl Handler<Dispatch> for TenantActor {
    type Result = ResponseFuture<Result<(), TurnError>>;

    fn handle(&mut self, msg: Dispatch, ctx: &mut Context<Self>) -> Self::Result {
        let Some(config) = self.config.clone() else {
            // Try again for the next message; this one is retried later.
            self.load_config(ctx);
            return Box::pin(async { Err(TurnError::ConfigUnavailable) });
        };
        let d = msg.0;
        tracing::trace!(ingest.entry = %d.entry_id, "tenant actor dispatches");
        // A parked entry passed the limits when it arrived; it is not charged again. A person's
        // reply and thread chatter (never answered by the AI) are not customer traffic: the
        // limits that ration customers' turns do not charge them.
        let decision = if matches!(d.source, Source::Parked(_))
            || d.message.origin != shared::channel::Origin::Customer
        {
            Decision::Allow
        } else {
            let now = Instant::now();
            let limit: Limit = config.connection_limit;
            let by_connection = self
                .connection_limiters
                .entry(d.message.connection_id)
                .or_insert_with(|| Gcra::new(limit))
                .check(now);
            match (self.limiter.check(now), by_connection) {
                (Decision::Allow, Decision::Allow) => Decision::Allow,
                (reject @ Decision::Reject { .. }, _) | (_, reject @ Decision::Reject { .. }) => {
                    reject
                }
            }
        };
        let key = format!(
            "{}:{}",
            d.message.connection_id,
            d.message.conversation_key()
        );
        let live = self
            .conversations
            .get(&key)
            .filter(|addr| addr.connected())
            .cloned();
        let work = match decision {
            Decision::Allow => Work::Answer { d, config },
            Decision::Reject {
                retry_after,
                notify,
            } => {
                self.count_rejection(d.message.connection_id, retry_after, ctx);
                let work = Work::Reject {
                    d,
                    config,
                    retry_after,
                    notify,
                };
                if live.is_none() {
                    // No turn of this conversation is queued, so nothing can be overtaken: handle
                    // it here, without starting a conversation actor for a rejected message.
                    let deps = self.deps.clone();
                    return Box::pin(async move { turn::handle(&deps, work).await });
                }
                work
            }
        };
        let addr = match live {
            Some(addr) => addr,
            None => {
                let addr =
                    ConversationActor::start_idle(self.deps.clone(), ctx.address(), key.clone());
                self.conversations.insert(key, addr.clone());
                addr
            }
        };
        let request = addr.send(TurnOf(work));
        Box::pin(async move {
            request
                .await
                .unwrap_or_else(|e| Err(TurnError::Mailbox(e.to_string())))
        })
    }
}

/// A turn for a conversation actor.
#[derive(Debug)]
struct TurnOf(Work);

impl Message for TurnOf {
    type Result = Result<(), TurnError>;
}

/// One conversation: the only writer of its memory window and escalation count, answering one
/// message at a time, in order. Each turn reads the state from Redis and writes it back once the
/// reply is recorded, so no stale copy can outlive a failed turn, a restart or a partition moving
/// to another node (one GET per turn is the price). It stops after `idle_after` without messages.
#[derive(Debug)]
pub struct ConversationActor {
    deps: Arc<EngineDeps>,
    /// When the actor last handled a message, for passivation.
    last_active: Instant,
    /// Told when this actor stops, so it leaves the tenant's map (`None` in benchmarks).
    tenant: Option<(Addr<TenantActor>, String)>,
}

impl ConversationActor {
    /// An idle conversation actor of `tenant` under `key`, started.
    pub fn start_idle(deps: Arc<EngineDeps>, tenant: Addr<TenantActor>, key: String) -> Addr<Self> {
        ConversationActor::create(|ctx| {
            ctx.set_mailbox_capacity(CONVERSATION_MAILBOX);
            Self {
                deps,
                last_active: Instant::now(),
                tenant: Some((tenant, key)),
            }
        })
    }

    /// An idle conversation actor belonging to no tenant actor (benchmarks measure what one
    /// costs).
    pub fn start_detached(deps: Arc<EngineDeps>) -> Addr<Self> {
        ConversationActor::create(|ctx| {
            ctx.set_mailbox_capacity(CONVERSATION_MAILBOX);
            Self {
                deps,
                last_active: Instant::now(),
                tenant: None,
            }
        })
    }
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let idle = self.deps.settings.idle_after;
        ctx.run_interval(idle, move |act, ctx| {
            if act.last_active.elapsed() >= idle {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some((tenant, key)) = self.tenant.take() {
            // Off the hot path; a full tenant mailbox only delays the clean-up to the next count.
            let _ = tenant.try_send(Forget(key));
        }
    }
}

impl Handler<TurnOf> for ConversationActor {
    type Result = AtomicResponse<Self, Result<(), TurnError>>;

    fn handle(&mut self, msg: TurnOf, _: &mut Context<Self>) -> Self::Result {
        self.last_active = Instant::now();
        tracing::trace!("conversation actor starts a turn");
        let deps = self.deps.clone();
        AtomicResponse::new(Box::pin(
            async move { turn::handle(&deps, msg.0).await }.into_actor(self),
        ))
    }
}
