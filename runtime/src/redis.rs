//! The runtime's Redis client (fred): ingest streams, dedupe keys, memory windows, leases.
//!
//! The client connects in the background and reconnects forever with backoff, so the process
//! starts, and `/readyz` reports the problem, even while Redis is down. Every command has a
//! timeout: a request never hangs on an unreachable cache.

use std::time::Duration;

use fred::interfaces::KeysInterface;
use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use fred::types::{ConnectHandle, Expiration, ExpireOptions};

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

    /// A key under this deployment's prefix, e.g. `konstruct:login:addr:127.0.0.1`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Adds one to a counter that expires `window_secs` after its first increment; returns the
    /// new count.
    pub async fn incr_in_window(&self, key: &str, window_secs: u64) -> Result<i64, RedisError> {
        let count: i64 = self.client.incr(key).await.map_err(RedisError::Command)?;
        let secs = i64::try_from(window_secs).unwrap_or(i64::MAX);
        let _: i64 = self
            .client
            .expire(key, secs, Some(ExpireOptions::NX))
            .await
            .map_err(RedisError::Command)?;
        Ok(count)
    }

    /// A counter's value and the seconds until it resets (0 when absent).
    pub async fn counter(&self, key: &str) -> Result<(i64, u64), RedisError> {
        let count: Option<i64> = self.client.get(key).await.map_err(RedisError::Command)?;
        let ttl: i64 = self.client.ttl(key).await.map_err(RedisError::Command)?;
        Ok((count.unwrap_or(0), u64::try_from(ttl).unwrap_or(0)))
    }

    /// Takes one from a counter.
    pub async fn decrement(&self, key: &str) -> Result<(), RedisError> {
        let _: i64 = self.client.decr(key).await.map_err(RedisError::Command)?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), RedisError> {
        let _: i64 = self.client.del(key).await.map_err(RedisError::Command)?;
        Ok(())
    }

    /// Sets a marker that disappears after `ttl_secs`.
    pub async fn set_marker(&self, key: &str, ttl_secs: u64) -> Result<(), RedisError> {
        let secs = i64::try_from(ttl_secs.max(1)).unwrap_or(i64::MAX);
        let _: () = self
            .client
            .set(key, 1, Some(Expiration::EX(secs)), None, false)
            .await
            .map_err(RedisError::Command)?;
        Ok(())
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
