//! The runtime's Redis client (fred): ingest streams, dedupe keys, memory windows, leases.
//!
//! The client connects in the background and reconnects forever with backoff, so the process
//! starts, and `/readyz` reports the problem, even while Redis is down. Every command has a
//! timeout: a request never hangs on an unreachable cache.

use std::time::Duration;

use fred::interfaces::{HashesInterface, KeysInterface, LuaInterface, StreamsInterface};
use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use fred::types::{ConnectHandle, Expiration};

use crate::config::RedisSettings;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis.url is not a valid Redis URL")]
    InvalidUrl,
    #[error("redis command failed")]
    Command(#[source] fred::error::Error),
}

/// A cheaply cloneable handle on the shared Redis connection.
#[derive(Clone)]
pub struct Redis {
    client: fred::prelude::Client,
    /// Prepended to every key, so several deployments (or tests) can share one Redis.
    prefix: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").finish_non_exhaustive()
    }
}

impl Redis {
    /// Builds the client and starts connecting in the background.
    pub fn connect(settings: &RedisSettings) -> Result<(Self, ConnectHandle), RedisError> {
        let config = Config::from_url(settings.url.expose()).map_err(|_| RedisError::InvalidUrl)?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(2);
            })
            // Retry forever, 100 ms doubling up to 5 s between attempts.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(|_| RedisError::InvalidUrl)?;
        let handle = client.connect();
        Ok((
            Self {
                client,
                prefix: settings.key_prefix.clone(),
            },
            handle,
        ))
    }

    /// A second connection with the same settings, for blocking reads (a blocked connection
    /// holds up every command queued behind it).
    pub fn duplicate(&self) -> Self {
        let client = self.client.clone_new();
        // The connection task runs on its own; the handle is not needed.
        drop(client.connect());
        Self {
            client,
            prefix: self.prefix.clone(),
        }
    }

    /// A key under this deployment's prefix, e.g. `konstruct:login:addr:127.0.0.1`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Adds one to a counter that expires `window_secs` after its first increment, in one
    /// atomic step (a crash between the increment and the expiry cannot leave a counter that
    /// never expires); returns the new count.
    pub async fn incr_in_window(&self, key: &str, window_secs: u64) -> Result<i64, RedisError> {
        const SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) \
            if n == 1 or redis.call('TTL', KEYS[1]) < 0 then \
              redis.call('EXPIRE', KEYS[1], ARGV[1]) end \
            return n";
        self.eval(
            SCRIPT,
            vec![key.to_string()],
            vec![window_secs.max(1).to_string()],
        )
        .await
    }

    /// Counts one event against every `(key, limit)` counter, in one atomic step (a Lua script),
    /// but only if each is still under its limit; a counter expires `window_secs` after its first
    /// event. Returns `None` when counted, else the index of the first counter at its limit and
    /// the seconds until it resets. A refused event counts against none of them, so a caller over
    /// its own limit cannot use up a limit it shares with others.
    pub async fn count_within_limits(
        &self,
        counters: &[(String, u64)],
        window_secs: u64,
    ) -> Result<Option<(usize, u64)>, RedisError> {
        const SCRIPT: &str = "for i, key in ipairs(KEYS) do \
                                if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then \
                                  local ttl = redis.call('TTL', key) \
                                  if ttl < 0 then \
                                    redis.call('EXPIRE', key, ARGV[1]) \
                                    ttl = tonumber(ARGV[1]) \
                                  end \
                                  return {i, ttl} \
                                end \
                              end \
                              for _, key in ipairs(KEYS) do \
                                if redis.call('INCR', key) == 1 or redis.call('TTL', key) < 0 then \
                                  redis.call('EXPIRE', key, ARGV[1]) \
                                end \
                              end \
                              return {0, 0}";
        let keys: Vec<String> = counters.iter().map(|(key, _)| key.clone()).collect();
        let mut args = vec![window_secs.max(1).to_string()];
        args.extend(counters.iter().map(|(_, limit)| limit.to_string()));
        let (index, ttl): (i64, i64) = self
            .client
            .eval(SCRIPT, keys, args)
            .await
            .map_err(RedisError::Command)?;
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .map(|i| (i, u64::try_from(ttl).unwrap_or(0))))
    }

    /// One server setting (`CONFIG GET`), `None` when the server does not know it. A managed
    /// Redis may refuse `CONFIG` altogether: that is an error, for the caller to treat as unknown.
    pub async fn config_get(&self, parameter: &str) -> Result<Option<String>, RedisError> {
        let command = fred::types::CustomCommand::new_static(
            "CONFIG",
            fred::types::ClusterHash::FirstKey,
            false,
        );
        let answer: std::collections::HashMap<String, String> = self
            .client
            .custom(command, vec!["GET", parameter])
            .await
            .map_err(RedisError::Command)?;
        Ok(answer.get(parameter).cloned())
    }

    /// A counter's value and the seconds until it resets (0 when absent).
    pub async fn counter(&self, key: &str) -> Result<(i64, u64), RedisError> {
        let count: Option<i64> = self.client.get(key).await.map_err(RedisError::Command)?;
        let ttl: i64 = self.client.ttl(key).await.map_err(RedisError::Command)?;
        Ok((count.unwrap_or(0), u64::try_from(ttl).unwrap_or(0)))
    }

    pub async fn get_string(&self, key: &str) -> Result<Option<String>, RedisError> {
        self.client.get(key).await.map_err(RedisError::Command)
    }

    /// Takes one from a counter that still exists (keeping its expiry; a counter that expired
    /// meanwhile is not brought back without one).
    pub async fn decrement(&self, key: &str) -> Result<(), RedisError> {
        const SCRIPT: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then \
            return redis.call('DECR', KEYS[1]) end return 0";
        let _: i64 = self.eval(SCRIPT, vec![key.to_string()], Vec::new()).await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), RedisError> {
        let _: i64 = self.client.del(key).await.map_err(RedisError::Command)?;
        Ok(())
    }

    /// Remembers `member` in the bounded set `key` as seen at `now` (unix milliseconds): the set keeps
    /// the `keep` most recently seen members and disappears `ttl_secs` after the last one.
    pub async fn remember_recent(
        &self,
        key: &str,
        member: &str,
        now: i64,
        keep: usize,
        ttl_secs: u64,
    ) -> Result<(), RedisError> {
        const SCRIPT: &str = "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) \
            redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1 - tonumber(ARGV[3])) \
            redis.call('EXPIRE', KEYS[1], ARGV[4]) return 0";
        let _: i64 = self
            .eval(
                SCRIPT,
                vec![key.to_string()],
                vec![
                    member.to_string(),
                    now.to_string(),
                    keep.max(1).to_string(),
                    ttl_secs.max(1).to_string(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Whether `member` of the set `key` (see [`Redis::remember_recent`]) was seen at `since`
    /// (unix milliseconds) or later.
    pub async fn seen_since(
        &self,
        key: &str,
        member: &str,
        since: i64,
    ) -> Result<bool, RedisError> {
        const SCRIPT: &str = "local seen = redis.call('ZSCORE', KEYS[1], ARGV[1]) \
            if seen and tonumber(seen) >= tonumber(ARGV[2]) then return 1 end return 0";
        let seen: i64 = self
            .eval(
                SCRIPT,
                vec![key.to_string()],
                vec![member.to_string(), since.to_string()],
            )
            .await?;
        Ok(seen == 1)
    }

    /// Sets a marker that disappears after `ttl_secs`.
    pub async fn set_marker(&self, key: &str, ttl_secs: u64) -> Result<(), RedisError> {
        self.set_string_ex(key, "1", ttl_secs).await
    }

    /// Appends `payload` to `stream` unless `dedupe_key` was seen within `ttl_secs`, in one atomic
    /// step (a Lua script), so a crash between the check and the append can neither lose nor
    /// duplicate the entry. Returns the new entry's id, or `None` for a duplicate.
    pub async fn append_once(
        &self,
        stream: &str,
        dedupe_key: &str,
        ttl_secs: u64,
        payload: &str,
    ) -> Result<Option<String>, RedisError> {
        const SCRIPT: &str = "if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then \
                                return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2]) \
                              end \
                              return false";
        self.client
            .eval(
                SCRIPT,
                vec![dedupe_key.to_string(), stream.to_string()],
                vec![ttl_secs.max(1).to_string(), payload.to_string()],
            )
            .await
            .map_err(RedisError::Command)
    }

    /// Runs a Lua script and converts its answer.
    pub async fn eval<R: fred::types::FromValue>(
        &self,
        script: &str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R, RedisError> {
        self.client
            .eval(script, keys, args)
            .await
            .map_err(RedisError::Command)
    }

    /// Sets `key` to `value`, expiring after `ttl_secs`.
    pub async fn set_string_ex(
        &self,
        key: &str,
        value: &str,
        ttl_secs: u64,
    ) -> Result<(), RedisError> {
        let secs = i64::try_from(ttl_secs.max(1)).unwrap_or(i64::MAX);
        let _: () = self
            .client
            .set(key, value, Some(Expiration::EX(secs)), None, false)
            .await
            .map_err(RedisError::Command)?;
        Ok(())
    }

    /// Deletes every key matching `pattern` (a SCAN glob under this deployment's prefix, e.g.
    /// `konstruct:<tenant>:*`); returns how many were deleted. Used when a tenant is deleted.
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, RedisError> {
        const SCRIPT: &str = "local cursor = ARGV[2] \
            local res = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 500) \
            local n = 0 \
            for _, k in ipairs(res[2]) do n = n + redis.call('UNLINK', k) end \
            return {res[1], n}";
        let mut cursor = "0".to_string();
        let mut deleted = 0u64;
        loop {
            let (next, n): (String, i64) = self
                .eval(
                    SCRIPT,
                    Vec::new(),
                    vec![pattern.to_string(), cursor.clone()],
                )
                .await?;
            deleted += u64::try_from(n).unwrap_or(0);
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// The keys matching `pattern` (a SCAN glob, e.g. `konstruct:login:*`), walking the whole key
    /// space in steps; for tests and maintenance, never on a request's path.
    pub async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let mut cursor = "0".to_string();
        let mut keys = Vec::new();
        loop {
            let (next, found): (String, Vec<String>) = self
                .eval(
                    "return redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 500)",
                    Vec::new(),
                    vec![cursor.clone(), pattern.to_string()],
                )
                .await?;
            keys.extend(found);
            if next == "0" {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// A key's time to live in seconds: -1 when it has none, -2 when it does not exist.
    pub async fn ttl(&self, key: &str) -> Result<i64, RedisError> {
        self.client.ttl(key).await.map_err(RedisError::Command)
    }

    /// Runs a Lua script that returns an integer.
    pub async fn eval_int(
        &self,
        script: &str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<i64, RedisError> {
        self.eval(script, keys, args).await
    }

    /// Creates the consumer group (and the stream) if missing.
    pub async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), RedisError> {
        let created: Result<(), _> = self.client.xgroup_create(stream, group, "0", true).await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.details().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(RedisError::Command(e)),
        }
    }

    /// Reads up to `count` new entries for `consumer`, waiting up to `block_ms` for the first.
    pub async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: u64,
        block_ms: u64,
    ) -> Result<Vec<(String, String)>, RedisError> {
        let entries = self
            .read_group_many(&[stream.to_string()], group, consumer, count, block_ms)
            .await?;
        Ok(entries
            .into_iter()
            .map(|(_, id, payload)| (id, payload))
            .collect())
    }

    /// Like `read_group` over several streams at once; returns (stream, id, payload).
    pub async fn read_group_many(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
        count: u64,
        block_ms: u64,
    ) -> Result<Vec<(String, String, String)>, RedisError> {
        let ids: Vec<&str> = streams.iter().map(|_| ">").collect();
        let raw: fred::types::Value = self
            .client
            .xreadgroup(
                group,
                consumer,
                Some(count),
                Some(block_ms),
                false,
                streams.to_vec(),
                ids,
            )
            .await
            .map_err(RedisError::Command)?;
        // A read that times out answers nil (or an empty array): no entries, not a map to convert.
        let empty = match &raw {
            fred::types::Value::Null => true,
            fred::types::Value::Array(items) => items.is_empty(),
            _ => false,
        };
        if empty {
            return Ok(Vec::new());
        }
        let response: fred::types::streams::XReadResponse<String, String, String, String> =
            raw.into_xread_response().map_err(RedisError::Command)?;
        Ok(response
            .into_iter()
            .flat_map(|(stream, values)| {
                entries(values)
                    .into_iter()
                    .map(move |(id, payload)| (stream.clone(), id, payload))
            })
            .collect())
    }

    /// Takes over entries another consumer read but did not acknowledge for `min_idle_ms`,
    /// starting at `cursor`; returns the cursor to continue from (`0-0` when the scan is done).
    pub async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle_ms: u64,
        cursor: &str,
        count: u64,
    ) -> Result<(String, Vec<(String, String)>), RedisError> {
        let (next, claimed): (
            String,
            Vec<fred::types::streams::XReadValue<String, String, String>>,
        ) = self
            .client
            .xautoclaim_values(
                stream,
                group,
                consumer,
                min_idle_ms,
                cursor,
                Some(count),
                false,
            )
            .await
            .map_err(RedisError::Command)?;
        Ok((next, entries(claimed)))
    }

    pub async fn ack(&self, stream: &str, group: &str, id: &str) -> Result<(), RedisError> {
        let _: i64 = self
            .client
            .xack(stream, group, id)
            .await
            .map_err(RedisError::Command)?;
        Ok(())
    }

    /// Appends to a stream without deduplication (the dead-letter stream).
    pub async fn append(
        &self,
        stream: &str,
        fields: Vec<(&str, String)>,
    ) -> Result<String, RedisError> {
        self.client
            .xadd(stream, false, None::<()>, "*", fields)
            .await
            .map_err(RedisError::Command)
    }

    pub async fn stream_len(&self, stream: &str) -> Result<u64, RedisError> {
        self.client.xlen(stream).await.map_err(RedisError::Command)
    }

    /// Adds to a field of a hash; returns the new value.
    pub async fn hash_incr(&self, key: &str, field: &str) -> Result<i64, RedisError> {
        self.client
            .hincrby(key, field, 1)
            .await
            .map_err(RedisError::Command)
    }

    pub async fn hash_del(&self, key: &str, field: &str) -> Result<(), RedisError> {
        let _: i64 = self
            .client
            .hdel(key, field)
            .await
            .map_err(RedisError::Command)?;
        Ok(())
    }

    /// Whether any of `keys` exists.
    pub async fn exists_any(&self, keys: &[String]) -> Result<bool, RedisError> {
        let n: i64 = self
            .client
            .exists(keys.to_vec())
            .await
            .map_err(RedisError::Command)?;
        Ok(n > 0)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, RedisError> {
        let n: i64 = self.client.exists(key).await.map_err(RedisError::Command)?;
        Ok(n > 0)
    }

    /// A round trip, for readiness.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let _: String = fred::interfaces::ClientLike::ping(&self.client, None)
            .await
            .map_err(RedisError::Command)?;
        Ok(())
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}

/// Flattens stream entries to (id, payload of field `m`).
fn entries(
    values: impl IntoIterator<Item = fred::types::streams::XReadValue<String, String, String>>,
) -> Vec<(String, String)> {
    values
        .into_iter()
        .map(|(id, mut fields)| (id, fields.remove("m").unwrap_or_default()))
        .collect()
}
