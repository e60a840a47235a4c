//! The consumer: reads the ingest partitions this node leases and hands entries to the actors.
//!
//! Partitions are owned through leases in Redis (`leases`) and fenced in Postgres
//! (`store::fences`): a partition is read only once its fence was advanced to this node's epoch,
//! and every delivery carries that epoch. Entries are handed over in stream order; their results
//! arrive later. At most `max_in_flight` entries are in the actors at once: the loop waits for
//! room (backpressure) instead of queueing without bound.
//!
//! A failed turn is dispatched by its `Disposition`: retryable failures are parked (see
//! `ingest`) and retried by this loop when due, permanent ones dead-lettered at once, and work for
//! a partition that moved to another node is left to that node. Entries a dead node left pending
//! are claimed after a lease time; entries still being handled here are never claimed twice.
//! Every renewal round also trims acknowledged entries from the owned streams.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::actors::{Registry, Route};
use super::config;
use super::ingest::{AfterFailure, Delivery, Source};
use super::leases::Leases;
use super::turn::{self, Disposition, EngineDeps, EngineEvent, Outcome, TurnError};
use crate::store::audit::{self, Action, Actor as AuditActor, NewEvent, Target};
use crate::store::fences;

/// A running engine: its registry, and a way to stop consuming.
#[derive(Debug, Clone)]
pub struct Engine {
    pub registry: Addr<Registry>,
    stop: Rc<tokio::sync::Notify>,
    /// Set by `stop`: the loop hands nothing more to the actors.
    stopping: Rc<Cell<bool>>,
    /// Turns true once the loop has given the partitions back and ended.
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Engine {
    /// Stops reading, gives the partitions back and leaves the set of live nodes, so another
    /// node takes over at once. Turns already handed to actors finish on their own.
    pub fn stop(&self) {
        self.stopping.set(true);
        self.stop.notify_one();
    }

    /// Waits (up to `within`) until the loop has given its partitions back; `false` if it did
    /// not in time (then they lapse after a lease).
    pub async fn stopped(&self, within: Duration) -> bool {
        let mut stopped = self.stopped.clone();
        matches!(
            tokio::time::timeout(within, stopped.wait_for(|s| *s)).await,
            Ok(Ok(_))
        )
    }
}

/// Starts the registry, the config listener and the consumer loop. Call inside an actix `System`.
pub fn start(deps: EngineDeps, consumer: &str) -> Engine {
    let registry = Registry::new(deps.clone()).start_bounded();
    config::listen(deps.store.clone(), registry.clone());
    let stop = Rc::new(tokio::sync::Notify::new());
    let (loop_deps, loop_registry, consumer) = (deps, registry.clone(), consumer.to_string());
    let stopping = Rc::new(Cell::new(false));
    let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
    let signals = Stop {
        notify: stop.clone(),
        stopping: stopping.clone(),
        stopped: stopped_tx,
    };
    actix::spawn(async move { consume(loop_deps, loop_registry, consumer, signals).await });
    Engine {
        registry,
        stop,
        stopping,
        stopped,
    }
}

/// How the loop is told to stop, and tells that it has.
struct Stop {
    notify: Rc<tokio::sync::Notify>,
    stopping: Rc<Cell<bool>>,
    stopped: tokio::sync::watch::Sender<bool>,
}

/// What the loop shares with the tasks that await results.
struct Shared {
    /// Entries handed to the actors and not finished yet, by (partition, entry id): entry ids are
    /// only unique within one stream.
    in_flight: RefCell<HashSet<(u32, String)>>,
    /// Parked heads among them.
    parked_in_flight: Cell<usize>,
    /// Parked heads whose attempt ended since the parked index was last read: a due list read
    /// before that may still hold one of them, though it is now rescheduled (or done), so it is
    /// not handed over from that list; the next read finds it as it is now.
    parked_ended: RefCell<HashSet<(u32, String)>>,
    /// Room for more entries in the actors.
    room: Arc<tokio::sync::Semaphore>,
}

async fn consume(deps: EngineDeps, registry: Addr<Registry>, consumer: String, stop: Stop) {
    let ingest = deps.ingest.clone();
    while let Err(e) = ingest.prepare().await {
        tracing::error!(error = %e, "ingest not ready; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut leases = Leases::new(
        deps.redis.clone(),
        &consumer,
        ingest.partitions(),
        deps.settings.partition_lease,
    );
    let stale_ms = u64::try_from(leases.ttl().as_millis()).unwrap_or(u64::MAX);
    let shared = Rc::new(Shared {
        in_flight: RefCell::default(),
        parked_in_flight: Cell::new(0),
        parked_ended: RefCell::default(),
        room: Arc::new(tokio::sync::Semaphore::new(
            deps.settings.max_in_flight.max(1),
        )),
    });
    let mut next_renew = Instant::now();
    let mut next_parked_check = Instant::now();
    loop {
        if stop.stopping.get() {
            return wind_down(&deps, &mut leases, &consumer, &shared, &stop).await;
        }
        let mut batch = Vec::new();
        if Instant::now() >= next_renew {
            renew(&deps, &mut leases, &consumer).await;
            for partition in leases.owned() {
                // What an earlier owner (or a failed park here) left pending for a lease time.
                match ingest.reclaim(partition, &consumer, stale_ms, 1024).await {
                    Ok(claimed) => batch.extend(claimed),
                    Err(e) => tracing::error!(error = %e, "reclaim failed"),
                }
                if let Err(e) = ingest.trim(partition).await {
                    tracing::warn!(error = %e, "trimming a partition's stream failed");
                }
            }
            next_renew = Instant::now() + leases.renew_every();
        }
        let owned = leases.owned();
        let now = Instant::now();
        if deps.take_parked_note() || shared.parked_in_flight.get() > 0 || now >= next_parked_check
        {
            let mut next = now + leases.renew_every();
            shared.parked_ended.borrow_mut().clear();
            for partition in &owned {
                match ingest.due_parked(*partition, 64).await {
                    Ok((due, later)) => {
                        batch.extend(due);
                        if let Some(at) = later.and_then(instant_of) {
                            next = next.min(at);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "reading parked entries failed"),
                }
            }
            next_parked_check = next;
        }
        // Short reads while parked heads drain, so the next one starts soon after the last.
        let block_ms = if shared.parked_in_flight.get() > 0 {
            20
        } else {
            200
        };
        tokio::select! {
            read = ingest.next_of(&owned, &consumer, 128, block_ms) => match read {
                Ok(new) => batch.extend(new),
                Err(e) => {
                    tracing::error!(error = %e, "reading ingest failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            () = stop.notify.notified() => {
                return wind_down(&deps, &mut leases, &consumer, &shared, &stop).await;
            }
        }
        'batch: for mut d in batch {
            // Stopping: what is not handed over yet stays pending for the next owner.
            if stop.stopping.get() {
                break;
            }
            let key = (d.partition, d.entry_id.clone());
            if matches!(d.source, Source::Parked(_)) && shared.parked_ended.borrow().contains(&key)
            {
                // Its attempt ended after this list was read: handing it over now would retry it
                // before its back-off (or a `Retry-After`). The next read has it as it is.
                deps.note_parked();
                continue;
            }
            if !shared.in_flight.borrow_mut().insert(key.clone()) {
                // Claimed again (or still due) while being handled here.
                continue;
            }
            d.epoch = deps.ownership.epoch(d.partition);
            // Backpressure: wait until the actors have room, renewing the leases meanwhile so a
            // long wait never lets them lapse.
            let permit = loop {
                let waited = tokio::select! {
                    permit = tokio::time::timeout(
                        leases.renew_every(),
                        shared.room.clone().acquire_owned(),
                    ) => permit,
                    // Stopping while the actors are full: stop waiting at once.
                    () = stop.notify.notified() => {
                        stop.notify.notify_one();
                        shared.in_flight.borrow_mut().remove(&key);
                        break 'batch;
                    }
                };
                match waited {
                    Ok(Ok(permit)) => break permit,
                    Ok(Err(_)) => return,
                    Err(_) if stop.stopping.get() => {
                        shared.in_flight.borrow_mut().remove(&key);
                        break 'batch;
                    }
                    Err(_) => {
                        renew(&deps, &mut leases, &consumer).await;
                        next_renew = Instant::now() + leases.renew_every();
                    }
                }
            };
            let parked = matches!(d.source, Source::Parked(_));
            if parked {
                shared
                    .parked_in_flight
                    .set(shared.parked_in_flight.get() + 1);
            }
            tracing::trace!(ingest.entry = %d.entry_id, "handing over");
            // `send` enqueues now, in stream order; the answer is awaited on the side.
            let request = registry.send(Route(d.clone()));
            let deps = deps.clone();
            let shared = shared.clone();
            actix::spawn(async move {
                let result = match request.await {
                    Ok(result) => result,
                    Err(e) => Err(TurnError::Mailbox(e.to_string())),
                };
                if let Err(e) = result {
                    failed(&deps, &d, &e).await;
                    deps.note_parked();
                }
                if parked {
                    shared.parked_ended.borrow_mut().insert(key.clone());
                }
                shared.in_flight.borrow_mut().remove(&key);
                if parked {
                    shared
                        .parked_in_flight
                        .set(shared.parked_in_flight.get().saturating_sub(1));
                    deps.note_parked();
                }
                drop(permit);
            });
        }
    }
}

/// How long a stopping node lets the turns it handed over finish before it lets go of their
/// partitions (a turn that posts after that cannot mark, and its part is sent again by the next
/// owner: the post→mark window).
const WIND_DOWN: Duration = Duration::from_secs(5);

/// Stops: lets the turns in the actors finish (up to `WIND_DOWN`), then stops claiming the
/// partitions here before giving them back, so another node never advances a fence while this
/// one still believes it holds it.
async fn wind_down(
    deps: &EngineDeps,
    leases: &mut Leases,
    consumer: &str,
    shared: &Shared,
    stop: &Stop,
) {
    let all = u32::try_from(deps.settings.max_in_flight.max(1)).unwrap_or(u32::MAX);
    let finished = tokio::time::timeout(WIND_DOWN, shared.room.acquire_many(all))
        .await
        .is_ok();
    if !finished {
        tracing::warn!(engine.node = %consumer, in_flight = shared.in_flight.borrow().len(), "turns still running at stop; their partitions' next owner answers them");
    }
    deps.ownership.clear_all();
    if let Err(e) = leases.release_all().await {
        tracing::warn!(error = %e, "could not give the partitions back");
    }
    tracing::info!(engine.node = %consumer, "stopped consuming");
    let _ = stop.stopped.send(true);
}

/// Renews the leases, advances the fence of every partition newly taken (giving it back when
/// that fails) and publishes the result in `deps.ownership`.
async fn renew(deps: &EngineDeps, leases: &mut Leases, node: &str) {
    match leases.renew().await {
        Ok(changes) => {
            for partition in &changes.released {
                deps.ownership.clear(*partition);
            }
            for partition in &changes.acquired {
                match fences::advance(&deps.store, *partition, node).await {
                    Ok(epoch) => deps.ownership.set(*partition, epoch),
                    Err(e) => {
                        tracing::warn!(error = %e, partition, "could not fence a partition; giving it back");
                        if let Err(e) = leases.give_back(*partition).await {
                            tracing::warn!(error = %e, "could not give a partition back");
                        }
                    }
                }
            }
            if !changes.acquired.is_empty() || !changes.released.is_empty() {
                tracing::info!(
                    engine.node = %node,
                    acquired = ?changes.acquired,
                    released = ?changes.released,
                    owned = ?leases.owned(),
                    "partition leases changed"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "renewing partition leases failed; pausing reads");
            leases.forget();
            deps.ownership.clear_all();
        }
    }
}

/// The `Instant` of a unix time in milliseconds (in the future, or now).
fn instant_of(unix_ms: i64) -> Option<Instant> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ahead = u64::try_from(unix_ms.saturating_sub(now_ms)).unwrap_or(0);
    Instant::now().checked_add(Duration::from_millis(ahead))
}

/// Handles a failed turn by what its error says: leave it to the partition's new owner, park it
/// for a retry, or dead-letter it.
async fn failed(deps: &EngineDeps, d: &Delivery, error: &TurnError) {
    let reason = error.to_string();
    let ingest = &deps.ingest;
    match error.disposition() {
        Disposition::Abandon => {
            tracing::info!(ingest.entry = %d.entry_id, "partition moved; leaving the entry to its new owner");
        }
        Disposition::DeadLetter => {
            tracing::warn!(ingest.entry = %d.entry_id, error = %reason, "permanent failure; dead-lettering");
            match ingest.dead_letter(d, &reason).await {
                Ok(()) => dead_lettered(deps, d, error).await,
                Err(e) => tracing::error!(error = %e, "could not dead-letter an entry"),
            }
        }
        Disposition::Retry { after } => match &d.source {
            Source::Stream => {
                let delay = ingest.settings().backoff(0, after);
                tracing::warn!(ingest.entry = %d.entry_id, error = %reason, delay_ms = delay.as_millis() as u64, "turn failed; parking it for a retry");
                if let Err(e) = ingest.park(d, &reason, delay).await {
                    // Redis itself is failing: the entry stays pending and is claimed again.
                    tracing::error!(error = %e, "could not park a failed entry");
                    match ingest.failed(d, &reason).await {
                        Ok(AfterFailure::DeadLettered) => dead_lettered(deps, d, error).await,
                        Ok(AfterFailure::WillRetry { .. }) => {}
                        Err(e) => tracing::error!(error = %e, "could not record a failed turn"),
                    }
                }
            }
            Source::Parked(parked)
                if !error.is_channel_failure()
                    && parked.attempts + 1 >= ingest.settings().max_attempts =>
            {
                // Not the channel: the message itself keeps failing (it would block its
                // connection for the whole horizon). Give up after the usual attempts.
                tracing::warn!(ingest.entry = %d.entry_id, error = %reason, "parked entry keeps failing; dead-lettering");
                match ingest.dead_letter(d, &reason).await {
                    Ok(()) => dead_lettered(deps, d, error).await,
                    Err(e) => tracing::error!(error = %e, "could not dead-letter an entry"),
                }
            }
            Source::Parked(parked) => {
                let delay = ingest.settings().backoff(parked.attempts, after);
                tracing::warn!(ingest.entry = %d.entry_id, attempts = parked.attempts + 1, error = %reason, "parked entry failed again");
                match ingest.retry_parked(d, parked, &reason, delay).await {
                    Ok(AfterFailure::DeadLettered) => dead_lettered(deps, d, error).await,
                    Ok(AfterFailure::WillRetry { .. }) => {}
                    Err(e) => tracing::error!(error = %e, "could not reschedule a parked entry"),
                }
            }
        },
    }
}

/// Audits a dead letter and, unless the channel itself failed, apologises to the user.
async fn dead_lettered(deps: &EngineDeps, d: &Delivery, error: &TurnError) {
    deps.report(EngineEvent::Finished {
        tenant: d.message.tenant_id,
        event_id: d.message.provider_event_id.clone(),
        outcome: Outcome::DeadLettered,
    });
    let recorded = async {
        let mut tx = deps.store.tenant_tx(d.message.tenant_id).await?;
        audit::append(
            &mut tx,
            &NewEvent::about(
                AuditActor::System,
                Action::MessageDeadLettered,
                Target::Connection(d.message.connection_id),
                serde_json::json!({
                    "event": d.message.provider_event_id,
                    // Our class of the failure; the provider's own words stay in the log.
                    "reason": error.class(),
                }),
            ),
        )
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not audit a dead-lettered message");
    }
    if !error.is_channel_failure() {
        turn::apologise(deps, d).await;
    }
}
