//! Durable ingest: every inbound message is deduplicated on its provider event id and appended to
//! the Redis stream of its tenant's partition in one atomic step, before the webhook is
//! acknowledged. The engine reads its partitions through a consumer group and acknowledges an
//! entry only once its reply (or rejection notice) was sent and recorded; entries a crashed
//! consumer left unacknowledged are claimed by the next one. An entry that keeps failing is moved
//! to a dead-letter stream instead of looping forever.
//!
//! Partitions are by tenant (a stable hash), so one tenant's messages — and so its rate limiters
//! and conversations — are handled by whichever node owns that partition.

use shared::TenantId;
use shared::channel::InboundMessage;

use crate::redis::{Redis, RedisError};

/// The consumer group every engine node joins.
pub const GROUP: &str = "engine";

/// How ingest behaves.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub partitions: u32,
    /// How long an event id is remembered: longer than any provider retries (Slack retries for
    /// about 5 minutes, Meta for hours).
    pub dedupe_ttl_secs: u64,
    /// Deliveries of one entry before it is dead-lettered.
    pub max_attempts: u32,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            partitions: 8,
            dedupe_ttl_secs: 3 * 24 * 3600,
            max_attempts: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Appended; safe to acknowledge the provider.
    Queued { partition: u32, entry_id: String },
    /// Seen before (a provider retry): acknowledge, do nothing else.
    Duplicate,
}

/// One entry handed to the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub partition: u32,
    pub entry_id: String,
    pub message: InboundMessage,
}

/// What happened to a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// It stays pending and will be delivered again (after a reclaim).
    WillRetry { attempts: u32 },
    /// It was moved to the dead-letter stream and acknowledged.
    DeadLettered,
}

/// The ingest queue.
#[derive(Debug, Clone)]
pub struct Ingest {
    redis: Redis,
    /// The connection blocking reads wait on, so they never hold up other commands.
    reader: Redis,
    settings: IngestSettings,
}

/// FNV-1a with MurmurHash3's finaliser: stable across processes and versions (unlike the standard
/// library's hasher), and the finaliser mixes every input bit into the low bits the partition
/// number is taken from.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

impl Ingest {
    pub fn new(redis: Redis, settings: IngestSettings) -> Self {
        Self {
            reader: redis.duplicate(),
            redis,
            settings,
        }
    }

    pub fn partitions(&self) -> u32 {
        self.settings.partitions.max(1)
    }

    /// The partition that owns a tenant.
    pub fn partition_of(&self, tenant: TenantId) -> u32 {
        let p = stable_hash(tenant.as_uuid().as_bytes()) % u64::from(self.partitions());
        u32::try_from(p).unwrap_or(0)
    }

    pub fn stream(&self, partition: u32) -> String {
        self.redis.key(&format!("ingest:{partition}"))
    }

    pub fn dead_letter_stream(&self) -> String {
        self.redis.key("ingest:dead")
    }

    fn attempts_key(&self, partition: u32) -> String {
        self.redis.key(&format!("ingest:{partition}:attempts"))
    }

    fn dedupe_key(&self, m: &InboundMessage) -> String {
        self.redis.key(&format!(
            "{}:dedupe:{}:{}:{}",
            m.tenant_id,
            m.channel.as_str(),
            m.connection_id,
            m.provider_event_id
        ))
    }

    /// Creates every partition's stream and consumer group (idempotent).
    pub async fn prepare(&self) -> Result<(), IngestError> {
        for p in 0..self.partitions() {
            self.redis.ensure_group(&self.stream(p), GROUP).await?;
        }
        Ok(())
    }

    /// Deduplicates and appends one message atomically.
    pub async fn enqueue(&self, message: &InboundMessage) -> Result<Enqueued, IngestError> {
        let partition = self.partition_of(message.tenant_id);
        let payload = serde_json::to_string(message)?;
        let appended = self
            .redis
            .append_once(
                &self.stream(partition),
                &self.dedupe_key(message),
                self.settings.dedupe_ttl_secs,
                &payload,
            )
            .await?;
        Ok(match appended {
            Some(entry_id) => Enqueued::Queued {
                partition,
                entry_id,
            },
            None => Enqueued::Duplicate,
        })
    }

    /// New entries of a partition for `consumer`.
    pub async fn next(
        &self,
        partition: u32,
        consumer: &str,
        count: u64,
        block_ms: u64,
    ) -> Result<Vec<Delivery>, IngestError> {
        let raw = self
            .redis
            .read_group(&self.stream(partition), GROUP, consumer, count, block_ms)
            .await?;
        self.decode(partition, raw).await
    }

    /// New entries of the given partitions, in one blocking read on the reader connection.
    pub async fn next_of(
        &self,
        partitions: &[u32],
        consumer: &str,
        count: u64,
        block_ms: u64,
    ) -> Result<Vec<Delivery>, IngestError> {
        if partitions.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(block_ms)).await;
            return Ok(Vec::new());
        }
        let streams: Vec<String> = partitions.iter().map(|p| self.stream(*p)).collect();
        let raw = self
            .reader
            .read_group_many(&streams, GROUP, consumer, count, block_ms)
            .await?;
        let mut out = Vec::with_capacity(raw.len());
        for (stream, id, payload) in raw {
            let Some(partition) = streams
                .iter()
                .position(|s| *s == stream)
                .and_then(|i| partitions.get(i).copied())
            else {
                continue;
            };
            out.extend(self.decode(partition, vec![(id, payload)]).await?);
        }
        Ok(out)
    }

    /// Entries other consumers left unacknowledged for at least `min_idle_ms` (a crashed node).
    pub async fn reclaim(
        &self,
        partition: u32,
        consumer: &str,
        min_idle_ms: u64,
        count: u64,
    ) -> Result<Vec<Delivery>, IngestError> {
        let raw = self
            .redis
            .claim_stale(&self.stream(partition), GROUP, consumer, min_idle_ms, count)
            .await?;
        self.decode(partition, raw).await
    }

    /// Entries that cannot be decoded are dead-lettered at once: retrying cannot fix them.
    async fn decode(
        &self,
        partition: u32,
        raw: Vec<(String, String)>,
    ) -> Result<Vec<Delivery>, IngestError> {
        let mut out = Vec::with_capacity(raw.len());
        for (entry_id, payload) in raw {
            match serde_json::from_str::<InboundMessage>(&payload) {
                Ok(message) => out.push(Delivery {
                    partition,
                    entry_id,
                    message,
                }),
                Err(e) => {
                    tracing::error!(ingest.entry = %entry_id, error = %e, "undecodable ingest entry");
                    self.bury(partition, &entry_id, &payload, "undecodable")
                        .await?;
                }
            }
        }
        Ok(out)
    }

    /// The entry was handled (reply or notice sent and recorded): remove it from the pending list.
    pub async fn done(&self, d: &Delivery) -> Result<(), IngestError> {
        self.redis
            .ack(&self.stream(d.partition), GROUP, &d.entry_id)
            .await?;
        self.redis
            .hash_del(&self.attempts_key(d.partition), &d.entry_id)
            .await?;
        Ok(())
    }

    /// The entry could not be handled this time. After `max_attempts` it is dead-lettered.
    pub async fn failed(&self, d: &Delivery, reason: &str) -> Result<AfterFailure, IngestError> {
        let attempts = self
            .redis
            .hash_incr(&self.attempts_key(d.partition), &d.entry_id)
            .await?;
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        if attempts < self.settings.max_attempts {
            return Ok(AfterFailure::WillRetry { attempts });
        }
        let payload = serde_json::to_string(&d.message)?;
        self.bury(d.partition, &d.entry_id, &payload, reason)
            .await?;
        Ok(AfterFailure::DeadLettered)
    }

    async fn bury(
        &self,
        partition: u32,
        entry_id: &str,
        payload: &str,
        reason: &str,
    ) -> Result<(), IngestError> {
        self.redis
            .append(
                &self.dead_letter_stream(),
                vec![
                    ("m", payload.to_string()),
                    ("reason", reason.to_string()),
                    ("partition", partition.to_string()),
                    ("entry", entry_id.to_string()),
                ],
            )
            .await?;
        self.redis
            .ack(&self.stream(partition), GROUP, entry_id)
            .await?;
        self.redis
            .hash_del(&self.attempts_key(partition), entry_id)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_hash_is_stable_and_spreads() {
        // Pinned: a node of another version must agree on which partition owns a tenant.
        assert_eq!(stable_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(stable_hash(b"a"), 0x82a2_a958_a9be_ce5b);
        let buckets: std::collections::HashSet<u64> =
            (0u8..64).map(|i| stable_hash(&[i; 16]) % 8).collect();
        assert!(buckets.len() >= 6, "{buckets:?}");
    }
}
