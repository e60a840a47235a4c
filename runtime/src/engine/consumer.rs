//! The consumer: reads the ingest partitions this node leases and hands entries to the actors.
//!
//! Partitions are owned through leases in Redis (`leases`); one node alone owns all of them.
//! Entries are handed over in stream order; their results arrive later. An entry whose turn
//! failed stays pending and is claimed again once it has been idle for the lease time; after
//! `max_attempts` it is dead-lettered and the user gets an apology. Entries still being handled
//! here are never claimed twice by this node.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Instant;

use actix::prelude::*;
use shared::channel::ReplyKind;

use super::actors::{Registry, Route};
use super::config;
use super::ingest::{AfterFailure, Delivery};
use super::leases::Leases;
use super::turn::{self, EngineDeps};
use crate::store::audit::{self, Actor as AuditActor, NewEvent};

/// A running engine: its registry, and a way to stop consuming.
#[derive(Debug, Clone)]
pub struct Engine {
    pub registry: Addr<Registry>,
    stop: Rc<tokio::sync::Notify>,
}

impl Engine {
    /// Stops reading, gives the partitions back and leaves the set of live nodes, so another
    /// node takes over at once. Turns already handed to actors finish on their own.
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

/// Starts the registry, the config listener and the consumer loop. Call inside an actix `System`.
pub fn start(deps: EngineDeps, consumer: &str) -> Engine {
    let registry = Registry::new(deps.clone()).start_bounded();
    config::listen(deps.store.clone(), registry.clone());
    let stop = Rc::new(tokio::sync::Notify::new());
    let (loop_deps, loop_registry, consumer) = (deps, registry.clone(), consumer.to_string());
    let loop_stop = stop.clone();
    actix::spawn(async move { consume(loop_deps, loop_registry, consumer, loop_stop).await });
    Engine { registry, stop }
}

async fn consume(
    deps: EngineDeps,
    registry: Addr<Registry>,
    consumer: String,
    stop: Rc<tokio::sync::Notify>,
) {
    let ingest = deps.ingest.clone();
    while let Err(e) = ingest.prepare().await {
        tracing::error!(error = %e, "ingest not ready; retrying");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let mut leases = Leases::new(
        deps.redis.clone(),
        &consumer,
        ingest.partitions(),
        deps.settings.partition_lease,
    );
    let stale_ms = u64::try_from(leases.ttl().as_millis()).unwrap_or(u64::MAX);
    // Entries handed to the actors and not finished yet, by (partition, entry id): entry ids are
    // only unique within one stream.
    let in_flight: Rc<RefCell<HashSet<(u32, String)>>> = Rc::default();
    let mut next_renew = Instant::now();
    loop {
        let mut batch = Vec::new();
        if Instant::now() >= next_renew {
            match leases.renew().await {
                Ok(changes) => {
                    if !changes.acquired.is_empty() || !changes.released.is_empty() {
                        tracing::info!(
                            engine.node = %consumer,
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
                }
            }
            // What an earlier owner (or a failed turn here) left pending for a lease time.
            for partition in leases.owned() {
                match ingest.reclaim(partition, &consumer, stale_ms, 64).await {
                    Ok(claimed) => batch.extend(claimed),
                    Err(e) => tracing::error!(error = %e, "reclaim failed"),
                }
            }
            next_renew = Instant::now() + leases.renew_every();
        }
        let owned = leases.owned();
        tokio::select! {
            read = ingest.next_of(&owned, &consumer, 128, 200) => match read {
                Ok(new) => batch.extend(new),
                Err(e) => {
                    tracing::error!(error = %e, "reading ingest failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            },
            () = stop.notified() => {
                if let Err(e) = leases.release_all().await {
                    tracing::warn!(error = %e, "could not give the partitions back");
                }
                tracing::info!(engine.node = %consumer, "stopped consuming");
                return;
            }
        }
        for d in batch {
            let key = (d.partition, d.entry_id.clone());
            if !in_flight.borrow_mut().insert(key.clone()) {
                // Claimed again while still being handled here (a long turn).
                continue;
            }
            tracing::trace!(ingest.entry = %d.entry_id, "handing over");
            // `send` enqueues now, in stream order; the answer is awaited on the side.
            let request = registry.send(Route(d.clone()));
            let deps = deps.clone();
            let in_flight = in_flight.clone();
            actix::spawn(async move {
                let failure = match request.await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                in_flight.borrow_mut().remove(&key);
                if let Some(failure) = failure {
                    failed(&deps, &d, &failure).await;
                }
            });
        }
    }
}

async fn failed(deps: &EngineDeps, d: &Delivery, reason: &str) {
    tracing::warn!(ingest.entry = %d.entry_id, error = reason, "turn failed");
    match deps.ingest.failed(d, reason).await {
        Ok(AfterFailure::DeadLettered) => {
            let recorded = async {
                let mut tx = deps.store.tenant_tx(d.message.tenant_id).await?;
                audit::append(
                    &mut tx,
                    &NewEvent::about(
                        AuditActor::System,
                        "message.dead_lettered",
                        "channel_connection",
                        d.message.connection_id,
                        serde_json::json!({
                            "event": d.message.provider_event_id,
                            "reason": reason,
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
            let apology = "I'm sorry, something went wrong on our side and I couldn't answer your \
                           message. Please send it again in a little while.";
            if let Err(e) = turn::reply(deps, d, ReplyKind::Apology, apology.into()).await {
                tracing::error!(error = %e, "could not apologise for a dead-lettered message");
            }
        }
        Ok(AfterFailure::WillRetry { .. }) => {}
        Err(e) => tracing::error!(error = %e, "could not record a failed turn"),
    }
}
