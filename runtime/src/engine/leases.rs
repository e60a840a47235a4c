//! Partition leases: which node consumes which ingest partition.
//!
//! Each partition has a lease key in Redis holding the owning node's name with a time to live;
//! the owner renews it every third of that time. A node that stops renewing (it died, or lost
//! Redis) loses its partitions when the keys expire, and the others take them. Every node also
//! keeps a heartbeat in a sorted set, so each knows how many nodes are live and takes no more
//! than its fair share (`ceil(partitions / live nodes)`), giving back the excess when a node
//! joins. One node alone owns every partition.
//!
//! All decisions are single Lua scripts, so two nodes can never both believe they own a
//! partition after a renewal: a renewal succeeds only while the key still names the renewing node.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::redis::{Redis, RedisError};

/// Take the lease if it is free (2), or renew it if this node holds it (1); 0 = another's.
const ACQUIRE: &str = "local owner = redis.call('GET', KEYS[1]) \
    if owner == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end \
    if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
    return 0";

/// Give the lease back if this node holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// Record this node's heartbeat, forget nodes silent for longer than the lease, count the live.
const HEARTBEAT: &str = "local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
    redis.call('ZADD', KEYS[1], now, ARGV[1]) \
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2])) \
    redis.call('PEXPIRE', KEYS[1], ARGV[2] * 2) \
    return redis.call('ZCARD', KEYS[1])";

/// Leaves the set of live nodes.
const LEAVE: &str = "return redis.call('ZREM', KEYS[1], ARGV[1])";

/// What one acquire did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// The lease was free and is ours now.
    Taken,
    /// It was ours and is renewed.
    Renewed,
    /// Another node holds it.
    No,
}

/// One node's view of the partitions it owns.
#[derive(Debug, Clone)]
pub struct Leases {
    redis: Redis,
    node: String,
    partitions: u32,
    ttl: Duration,
    owned: BTreeSet<u32>,
}

/// What one round of renewing changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Partitions this node took over; their stale pending entries should be claimed.
    pub acquired: Vec<u32>,
    /// Partitions this node lost or gave back.
    pub released: Vec<u32>,
}

impl Leases {
    pub fn new(redis: Redis, node: &str, partitions: u32, ttl: Duration) -> Self {
        Self {
            redis,
            node: node.to_string(),
            partitions,
            ttl,
            owned: BTreeSet::new(),
        }
    }

    /// How often `renew` should run.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn owned(&self) -> Vec<u32> {
        self.owned.iter().copied().collect()
    }

    fn key(&self, partition: u32) -> String {
        self.redis.key(&format!("engine:lease:{partition}"))
    }

    fn nodes_key(&self) -> String {
        self.redis.key("engine:nodes")
    }

    fn ttl_ms(&self) -> String {
        self.ttl.as_millis().max(1).to_string()
    }

    /// Renews what this node holds, drops what it lost, gives back what exceeds its fair share
    /// and takes free partitions up to it.
    pub async fn renew(&mut self) -> Result<Changes, RedisError> {
        let live = self
            .redis
            .eval_int(
                HEARTBEAT,
                vec![self.nodes_key()],
                vec![self.node.clone(), self.ttl_ms()],
            )
            .await?
            .max(1);
        let live = u32::try_from(live).unwrap_or(u32::MAX);
        let fair = self.partitions.div_ceil(live);
        let mut changes = Changes::default();
        // Renew first, so a partition is never briefly free while we hold it.
        for partition in self.owned.clone() {
            match self.acquire(partition).await? {
                Held::Renewed => {}
                // It lapsed and was free again: someone may have held it meanwhile, so it is
                // taken anew (and fenced anew).
                Held::Taken => changes.acquired.push(partition),
                Held::No => {
                    self.owned.remove(&partition);
                    changes.released.push(partition);
                }
            }
        }
        // Give back the excess (highest first), so a joining node finds free partitions.
        while self.owned.len() > fair as usize {
            let Some(partition) = self.owned.pop_last() else {
                break;
            };
            self.release(partition).await?;
            changes.released.push(partition);
        }
        // Take free ones, starting at a node-specific offset so nodes do not all race for 0.
        let start = self.start_offset();
        for i in 0..self.partitions {
            if self.owned.len() >= fair as usize {
                break;
            }
            let partition = (start + i) % self.partitions;
            if !self.owned.contains(&partition) && self.acquire(partition).await? != Held::No {
                self.owned.insert(partition);
                changes.acquired.push(partition);
            }
        }
        Ok(changes)
    }

    fn start_offset(&self) -> u32 {
        let hash = self
            .node
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        hash % self.partitions.max(1)
    }

    async fn acquire(&self, partition: u32) -> Result<Held, RedisError> {
        let held = self
            .redis
            .eval_int(
                ACQUIRE,
                vec![self.key(partition)],
                vec![self.node.clone(), self.ttl_ms()],
            )
            .await?;
        Ok(match held {
            2 => Held::Taken,
            1 => Held::Renewed,
            _ => Held::No,
        })
    }

    async fn release(&self, partition: u32) -> Result<(), RedisError> {
        self.redis
            .eval_int(RELEASE, vec![self.key(partition)], vec![self.node.clone()])
            .await?;
        Ok(())
    }

    /// Gives one partition back (its fence could not be advanced).
    pub async fn give_back(&mut self, partition: u32) -> Result<(), RedisError> {
        self.owned.remove(&partition);
        self.release(partition).await
    }

    /// Stops believing in the leases held (renewing failed, e.g. Redis is unreachable): until a
    /// renewal succeeds nothing is read, since the leases may expire and be taken meanwhile. A
    /// later renewal takes back those still ours.
    pub fn forget(&mut self) {
        self.owned.clear();
    }

    /// Gives every partition back and leaves the set of live nodes (a clean shutdown), so the
    /// others take over at once instead of after the lease expires.
    pub async fn release_all(&mut self) -> Result<(), RedisError> {
        for partition in std::mem::take(&mut self.owned) {
            self.release(partition).await?;
        }
        self.redis
            .eval_int(LEAVE, vec![self.nodes_key()], vec![self.node.clone()])
            .await?;
        Ok(())
    }
}

/// Which partitions this node holds and at which fence epoch (see `store::fences`), readable by
/// every turn. The consumer sets an epoch once it has advanced the partition's fence, and clears
/// it the moment the lease is lost or given back, so a turn never sends for a partition this
/// node no longer holds.
#[derive(Debug)]
pub struct Ownership {
    /// Per partition: the epoch held, or 0 when not held.
    epochs: Vec<AtomicI64>,
}

impl Ownership {
    pub fn new(partitions: u32) -> Self {
        Self {
            epochs: (0..partitions.max(1)).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    pub fn set(&self, partition: u32, epoch: i64) {
        if let Some(e) = self.epochs.get(partition as usize) {
            e.store(epoch, Ordering::SeqCst);
        }
    }

    pub fn clear(&self, partition: u32) {
        self.set(partition, 0);
    }

    pub fn clear_all(&self) {
        for e in &self.epochs {
            e.store(0, Ordering::SeqCst);
        }
    }

    /// The epoch held for `partition`, 0 when not held.
    pub fn epoch(&self, partition: u32) -> i64 {
        self.epochs
            .get(partition as usize)
            .map_or(0, |e| e.load(Ordering::SeqCst))
    }

    /// Whether this node still holds `partition` at `epoch`.
    pub fn holds(&self, partition: u32, epoch: i64) -> bool {
        epoch > 0 && self.epoch(partition) == epoch
    }
}
