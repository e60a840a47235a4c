//! The consumer: reads this node's ingest partitions and hands entries to the actors.
//!
//! One node owns every partition (the default). Entries are handed over in stream order; their
//! results arrive later. An entry whose turn failed stays pending and is reclaimed and retried
//! after `retry_after`; after `max_attempts` it is dead-lettered and the user gets an apology.

use std::time::Duration;

use actix::prelude::*;
use shared::channel::ReplyKind;

use super::actors::{Registry, Route};
use super::ingest::{AfterFailure, Delivery};
use super::turn::{self, EngineDeps};
use crate::store::audit::{self, Actor as AuditActor, NewEvent};

/// How long a failed or orphaned entry waits before it is taken up again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Starts the registry and one consumer loop per partition. Call inside an actix `System`.
pub fn start(deps: EngineDeps, consumer: &str) -> Addr<Registry> {
    let registry = Registry::new(deps.clone()).start();
    let (loop_deps, loop_registry, consumer) = (deps, registry.clone(), consumer.to_string());
    actix::spawn(async move { consume(loop_deps, loop_registry, consumer).await });
    registry
}

async fn consume(deps: EngineDeps, registry: Addr<Registry>, consumer: String) {
    let ingest = deps.ingest.clone();
    while let Err(e) = ingest.prepare().await {
        tracing::error!(error = %e, "ingest not ready; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // At start, everything pending was left by an earlier process (this node owns every
    // partition): take it all up again. Later, only what has been idle for RETRY_AFTER.
    let mut min_idle = 0u64;
    let mut last_reclaim: Option<std::time::Instant> = None;
    loop {
        let mut batch = Vec::new();
        if last_reclaim.is_none_or(|t| t.elapsed() >= RETRY_AFTER) {
            for partition in 0..ingest.partitions() {
                match ingest.reclaim(partition, &consumer, min_idle, 64).await {
                    Ok(claimed) => batch.extend(claimed),
                    Err(e) => tracing::error!(error = %e, "reclaim failed"),
                }
            }
            min_idle = RETRY_AFTER.as_millis() as u64;
            last_reclaim = Some(std::time::Instant::now());
        }
        match ingest.next_all(&consumer, 128, 200).await {
            Ok(new) => batch.extend(new),
            Err(e) => {
                tracing::error!(error = %e, "reading ingest failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        for d in batch {
            // `send` enqueues now, in stream order; the answer is awaited on the side.
            let request = registry.send(Route(d.clone()));
            let deps = deps.clone();
            actix::spawn(async move {
                let failure = match request.await {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                failed(&deps, &d, &failure).await;
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
