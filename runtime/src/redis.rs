//! The runtime's Redis client (fred): ingest streams, dedupe keys, memory windows, leases.
//!
//! The client connects in the background and reconnects forever with backoff, so the process
//! starts, and `/readyz` reports the problem, even while Redis is down. Every command has a
//! timeout: a request never hangs on an unreachable cache.

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use fred::types::ConnectHandle;

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
        Ok((Self { client }, handle))
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
