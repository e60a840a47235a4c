//! Durable ingest: every inbound message is deduplicated on its provider event id and appended to
//! the Redis stream of its tenant's partition in one atomic step, before the webhook is
//! acknowledged. The engine reads its partitions through a consumer group and acknowledges an
//! entry only once its reply (or rejection notice) was sent and recorded; entries a crashed
//! consumer left unacknowledged are claimed by the next one. An entry that keeps failing is moved
//! to a dead-letter stream instead of looping forever.
//!
//! Partitions are by tenant (a stable hash), so one tenant's messages — and so its rate limiters
//! and conversations — are handled by whichever node owns that partition.
//!
//! **Retries are scheduled, not reclaimed.** A turn that fails for a reason that may pass (the
//! channel's API is down, Postgres is unreachable) is *parked*: moved, in one atomic step, from
//! the stream to its channel connection's parked list, behind anything parked there already,
//! with a next-attempt time in the partition's parked index. While a connection has a parked
//! list, its new entries join the list in order, so nothing overtakes; every other connection
//! goes on. Only the head of a list is retried, with exponential back-off and jitter, until it
//! succeeds (then the next one runs at once) or the retry horizon passes (then it is
//! dead-lettered). Parked lists and the index live in Redis under the partition, so whoever owns
//! the partition next carries on. Reclaim (`reclaim`) is only for entries a dead node left
//! pending, and is quick: a lease time.
//!
//! **Bounds.** Acknowledged entries are trimmed from the streams (`trim`); dedupe keys expire
//! after `dedupe_ttl_secs`; dead letters older than `dead_letter_ttl_secs` are trimmed whenever
//! one is added; a parked list exists only while something is parked.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use shared::TenantId;
use shared::channel::InboundMessage;

use crate::redis::{Redis, RedisError};

/// The consumer group every engine node joins.
pub const GROUP: &str = "engine";

/// How ingest behaves.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub partitions: u32,
    /// How long an event id is remembered in Redis, so a provider's retry is not queued twice.
    /// A retry arriving later is still answered once: the reply recorded in Postgres under the
    /// event id is found and the entry only acknowledged.
    pub dedupe_ttl_secs: u64,
    /// Deliveries of one entry that could not even be parked (Redis failing) before it is
    /// dead-lettered.
    pub max_attempts: u32,
    /// How long a parked entry is retried before it is dead-lettered.
    pub retry_horizon: Duration,
    /// The first retry's delay; it doubles per attempt, with jitter, up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Dead letters older than this are trimmed.
    pub dead_letter_ttl_secs: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            partitions: 8,
            dedupe_ttl_secs: 3600,
            max_attempts: 5,
            retry_horizon: Duration::from_secs(3600),
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            dead_letter_ttl_secs: 7 * 24 * 3600,
        }
    }
}

impl IngestSettings {
    /// From the runtime's settings.
    pub fn from_config(c: &crate::config::EngineConfig) -> Self {
        Self {
            dedupe_ttl_secs: c.dedupe_ttl_secs,
            retry_horizon: Duration::from_secs(c.retry_horizon_secs),
            retry_max_delay: Duration::from_secs(c.retry_max_delay_secs),
            dead_letter_ttl_secs: c.dead_letter_ttl_secs,
            ..Self::default()
        }
    }

    /// The delay before attempt `attempts + 1` of a parked entry: exponential, capped, with up
    /// to ±20 % jitter so parked connections do not retry in step; never shorter than what the
    /// provider asked for.
    pub fn backoff(&self, attempts: u32, provider_asked: Option<Duration>) -> Duration {
        let exp = self
            .retry_base_delay
            .saturating_mul(2u32.saturating_pow(attempts.min(20)))
            .min(self.retry_max_delay);
        let jitter = rand::rng().random_range(0.8..1.2);
        let delay = exp.mul_f64(jitter);
        provider_asked.map_or(delay, |asked| delay.max(asked))
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
    /// The epoch of this node's lease on the partition when the entry was handed over; commits
    /// check it (see `store::fences`). 0 until the consumer sets it.
    pub epoch: i64,
    /// Where the entry is kept until it is done.
    pub source: Source,
}

/// Where an entry waits while it is being handled.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Pending in the partition's stream.
    Stream,
    /// The head of its connection's parked list, on attempt `attempts + 1`.
    Parked(Box<Parked>),
}

/// An entry in a parked list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    pub entry_id: String,
    pub partition: u32,
    pub message: InboundMessage,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it first failed (unix ms), for the retry horizon.
    pub first_failed_ms: i64,
    /// Why it last failed (our own words, never message content).
    pub reason: String,
}

impl Parked {
    fn of(d: &Delivery, attempts: u32, first_failed_ms: i64, reason: &str) -> Self {
        Self {
            entry_id: d.entry_id.clone(),
            partition: d.partition,
            message: d.message.clone(),
            attempts,
            first_failed_ms,
            reason: reason.to_string(),
        }
    }
}

/// What `park` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkResult {
    /// The entry heads a new parked list.
    Head,
    /// The entry joined an existing list behind others.
    Queued,
    /// (only with `if_parked`) The connection has nothing parked: handle the entry now.
    NotParked,
}

/// Moves an entry from the stream to its connection's parked list (creating it, and its place in
/// the index, when `ARGV[6]` is `always`; only joining an existing one when it is `if_parked`).
/// KEYS: stream, index, list, attempts. ARGV: group, entry id, member, parked json, due ms, mode.
const PARK: &str = "local exists = redis.call('EXISTS', KEYS[3]) == 1 \
    if not exists and ARGV[6] ~= 'always' then return 0 end \
    if not exists then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3]) end \
    redis.call('RPUSH', KEYS[3], ARGV[4]) \
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) \
    redis.call('XDEL', KEYS[1], ARGV[2]) \
    redis.call('HDEL', KEYS[4], ARGV[2]) \
    if exists then return 2 end return 1";

/// The head of a parked list is done: pop it, and schedule the next one now (or forget the
/// connection when the list is empty). KEYS: list, index. ARGV: member, entry id, now ms.
const POP_HEAD: &str = "local head = redis.call('LINDEX', KEYS[1], 0) \
    if head and cjson.decode(head)['entry_id'] == ARGV[2] then redis.call('LPOP', KEYS[1]) end \
    if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) return 0 end \
    redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) return 1";

/// The head of a parked list failed again: store its new state and next attempt time.
/// KEYS: list, index. ARGV: member, entry id, new head json, due ms.
const RESCHEDULE: &str = "local head = redis.call('LINDEX', KEYS[1], 0) \
    if not head or cjson.decode(head)['entry_id'] ~= ARGV[2] then return 0 end \
    redis.call('LSET', KEYS[1], 0, ARGV[3]) \
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) return 1";

/// Trims what every reader of the group has acknowledged: entries older than the oldest pending
/// one, or (nothing pending) than the last delivered one. KEYS: stream. ARGV: group.
const TRIM: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1]) \
    local minid = pending[2] \
    if not minid then \
      for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do \
        local name, last \
        for i = 1, #g, 2 do \
          if g[i] == 'name' then name = g[i + 1] end \
          if g[i] == 'last-delivered-id' then last = g[i + 1] end \
        end \
        if name == ARGV[1] then minid = last end \
      end \
    end \
    if not minid then return 0 end \
    return redis.call('XTRIM', KEYS[1], 'MINID', minid)";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The unix time (ms) `delay` after `now_ms`.
fn due_in(now_ms: i64, delay: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
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

    /// Appends to the dead-letter stream, trimming dead letters older than their time to live
    /// (stream ids start with the time they were added).
    async fn bury_payload(
        &self,
        partition: u32,
        entry_id: &str,
        payload: &str,
        reason: &str,
    ) -> Result<(), IngestError> {
        const BURY: &str = "redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', \
            'm', ARGV[2], 'reason', ARGV[3], 'partition', ARGV[4], 'entry', ARGV[5]) return 1";
        let ttl_ms = i64::try_from(self.settings.dead_letter_ttl_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let _: i64 = self
            .redis
            .eval(
                BURY,
                vec![self.dead_letter_stream()],
                vec![
                    now_ms().saturating_sub(ttl_ms).max(0).to_string(),
                    payload.to_string(),
                    reason.to_string(),
                    partition.to_string(),
                    entry_id.to_string(),
                ],
            )
            .await?;
        Ok(())
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

    /// Entries left unacknowledged for at least `min_idle_ms` (a crashed node's, or this node's
    /// when parking them failed), up to `limit`, walking the whole pending list.
    pub async fn reclaim(
        &self,
        partition: u32,
        consumer: &str,
        min_idle_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, IngestError> {
        let stream = self.stream(partition);
        let mut cursor = "0-0".to_string();
        let mut out = Vec::new();
        loop {
            let (next, raw) = self
                .redis
                .claim_stale(&stream, GROUP, consumer, min_idle_ms, &cursor, 100)
                .await?;
            out.extend(self.decode(partition, raw).await?);
            if next == "0-0" || out.len() >= limit {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Removes what was acknowledged from a partition's stream; returns how many entries went.
    pub async fn trim(&self, partition: u32) -> Result<u64, IngestError> {
        let trimmed: i64 = self
            .redis
            .eval(TRIM, vec![self.stream(partition)], vec![GROUP.to_string()])
            .await?;
        Ok(u64::try_from(trimmed).unwrap_or(0))
    }

    /// The index of parked connections of a partition (member `tenant:connection`, score = next
    /// attempt in unix ms).
    fn parked_index(&self, partition: u32) -> String {
        self.redis.key(&format!("ingest:{partition}:parked"))
    }

    fn parked_member(m: &InboundMessage) -> String {
        format!("{}:{}", m.tenant_id, m.connection_id)
    }

    /// A connection's parked list; under the tenant's namespace, so deleting a tenant's keys
    /// removes it. (`DUE` builds the same key from an index member in Lua.)
    fn parked_list(&self, m: &InboundMessage) -> String {
        self.redis
            .key(&format!("{}:parked:{}", m.tenant_id, m.connection_id))
    }

    /// Parks a stream entry that failed for a reason that may pass: it heads a new parked list
    /// (first attempt after `delay`) or joins its connection's existing one.
    pub async fn park(
        &self,
        d: &Delivery,
        reason: &str,
        delay: Duration,
    ) -> Result<ParkResult, IngestError> {
        let now = now_ms();
        let parked = Parked::of(d, 1, now, reason);
        self.park_with(d, &parked, due_in(now, delay), "always")
            .await
    }

    /// Parks a stream entry behind its connection's parked list, if the connection has one; a
    /// turn calls this first, so no entry overtakes one that is waiting for its channel.
    pub async fn park_if_parked(&self, d: &Delivery) -> Result<ParkResult, IngestError> {
        if d.source != Source::Stream {
            return Ok(ParkResult::NotParked);
        }
        let now = now_ms();
        let parked = Parked::of(d, 0, now, "behind an earlier message of its connection");
        self.park_with(d, &parked, now, "if_parked").await
    }

    async fn park_with(
        &self,
        d: &Delivery,
        parked: &Parked,
        due_ms: i64,
        mode: &str,
    ) -> Result<ParkResult, IngestError> {
        let code: i64 = self
            .redis
            .eval(
                PARK,
                vec![
                    self.stream(d.partition),
                    self.parked_index(d.partition),
                    self.parked_list(&d.message),
                    self.attempts_key(d.partition),
                ],
                vec![
                    GROUP.to_string(),
                    d.entry_id.clone(),
                    Self::parked_member(&d.message),
                    serde_json::to_string(parked)?,
                    due_ms.to_string(),
                    mode.to_string(),
                ],
            )
            .await?;
        Ok(match code {
            1 => ParkResult::Head,
            2 => ParkResult::Queued,
            _ => ParkResult::NotParked,
        })
    }

    /// The heads of parked lists in `partition` whose next attempt is due, up to `limit`, and
    /// when the next one after them is due (unix ms), if any.
    pub async fn due_parked(
        &self,
        partition: u32,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<i64>), IngestError> {
        const DUE: &str = "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], \
                'LIMIT', 0, ARGV[2]) \
            local out = {} \
            for _, member in ipairs(due) do \
              local sep = string.find(member, ':', 1, true) \
              local list = ARGV[3] .. string.sub(member, 1, sep) .. 'parked:' .. string.sub(member, sep + 1) \
              local head = redis.call('LINDEX', list, 0) \
              if head then table.insert(out, head) else redis.call('ZREM', KEYS[1], member) end \
            end \
            local next = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', \
                'WITHSCORES', 'LIMIT', 0, 1) \
            table.insert(out, next[2] or '') \
            return out";
        let now = now_ms();
        let mut raw: Vec<String> = self
            .redis
            .eval(
                DUE,
                vec![self.parked_index(partition)],
                vec![now.to_string(), limit.to_string(), self.redis.key("")],
            )
            .await?;
        let next = raw
            .pop()
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| n as i64);
        let mut out = Vec::with_capacity(raw.len());
        for json in raw {
            match serde_json::from_str::<Parked>(&json) {
                Ok(parked) => out.push(Delivery {
                    partition,
                    entry_id: parked.entry_id.clone(),
                    message: parked.message.clone(),
                    epoch: 0,
                    source: Source::Parked(Box::new(parked)),
                }),
                Err(e) => tracing::error!(error = %e, "undecodable parked entry"),
            }
        }
        Ok((out, next))
    }

    /// A parked head failed again: try again after `delay`, or dead-letter it once the retry
    /// horizon has passed. Returns whether it was dead-lettered.
    pub async fn retry_parked(
        &self,
        d: &Delivery,
        parked: &Parked,
        reason: &str,
        delay: Duration,
    ) -> Result<AfterFailure, IngestError> {
        let now = now_ms();
        let horizon = i64::try_from(self.settings.retry_horizon.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(parked.first_failed_ms) >= horizon {
            self.dead_letter(d, reason).await?;
            return Ok(AfterFailure::DeadLettered);
        }
        let next = Parked {
            attempts: parked.attempts.saturating_add(1),
            reason: reason.to_string(),
            ..parked.clone()
        };
        let _: i64 = self
            .redis
            .eval(
                RESCHEDULE,
                vec![self.parked_list(&d.message), self.parked_index(d.partition)],
                vec![
                    Self::parked_member(&d.message),
                    d.entry_id.clone(),
                    serde_json::to_string(&next)?,
                    due_in(now, delay).to_string(),
                ],
            )
            .await?;
        Ok(AfterFailure::WillRetry {
            attempts: next.attempts,
        })
    }

    /// How many entries wait in a connection's parked list (tests, metrics).
    pub async fn parked_len(&self, m: &InboundMessage) -> Result<u64, IngestError> {
        let n: i64 = self
            .redis
            .eval(
                "return redis.call('LLEN', KEYS[1])",
                vec![self.parked_list(m)],
                Vec::new(),
            )
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub fn settings(&self) -> &IngestSettings {
        &self.settings
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
                    epoch: 0,
                    source: Source::Stream,
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

    /// The entry was handled (reply or notice sent and recorded): remove it from the pending list
    /// (or, for a parked head, from its list, letting the next one run at once).
    pub async fn done(&self, d: &Delivery) -> Result<(), IngestError> {
        if let Source::Parked(_) = &d.source {
            let _: i64 = self
                .redis
                .eval(
                    POP_HEAD,
                    vec![self.parked_list(&d.message), self.parked_index(d.partition)],
                    vec![
                        Self::parked_member(&d.message),
                        d.entry_id.clone(),
                        now_ms().to_string(),
                    ],
                )
                .await?;
            return Ok(());
        }
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
        self.dead_letter(d, reason).await?;
        Ok(AfterFailure::DeadLettered)
    }

    /// Moves an entry to the dead-letter stream at once (a permanent failure), wherever it waits.
    pub async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), IngestError> {
        match &d.source {
            Source::Stream => {
                self.bury(
                    d.partition,
                    &d.entry_id,
                    &serde_json::to_string(&d.message)?,
                    reason,
                )
                .await
            }
            Source::Parked(_) => {
                self.bury_payload(
                    d.partition,
                    &d.entry_id,
                    &serde_json::to_string(&d.message)?,
                    reason,
                )
                .await?;
                self.done(d).await
            }
        }
    }

    async fn bury(
        &self,
        partition: u32,
        entry_id: &str,
        payload: &str,
        reason: &str,
    ) -> Result<(), IngestError> {
        self.bury_payload(partition, entry_id, payload, reason)
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
