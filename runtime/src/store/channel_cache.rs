//! What [`Store::resolve_channel`] found, kept in memory so a webhook delivery needs no database
//! round trip to learn its tenant and connection.
//!
//! Correct only while this node hears every change: the cache is used only while its listener
//! is subscribed to `konstruct_config` (the triggers on `tenants`, `agents`, `tenant_llm_keys`
//! and `channel_connections` notify it at commit with the tenant's id). A notice drops that
//! tenant's entries; subscribing (first or again, after the connection dropped and notices may
//! have been lost) drops everything. A lookup that raced with a notice is not kept: each fill
//! carries the generation it started in and is discarded if a notice came meanwhile. Unknown
//! external ids are never cached (a new connection has no tenant to be notified under until it
//! exists). Bounded: at [`MAX_ENTRIES`] the cache starts again from empty, and an entry is used
//! for at most [`TTL`], so a subscription that silently stopped delivering (a half-open
//! connection) is stale for no longer than that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared::TenantId;
use shared::channel::ChannelKind;

use super::{ResolvedChannel, Store};

/// Entries kept at most (one per installed Slack workspace or WhatsApp number).
pub const MAX_ENTRIES: usize = 100_000;

/// How long an entry is used before it is read from Postgres again.
pub const TTL: Duration = Duration::from_secs(30);

/// The channel the configuration triggers notify (shared with the engine's snapshots).
const CHANNEL: &str = "konstruct_config";

#[derive(Debug, Default)]
struct Inner {
    /// Advances with every notice; a fill from an older generation is dropped.
    generation: u64,
    entries: HashMap<(ChannelKind, String), (ResolvedChannel, Instant)>,
}

/// Resolved channels by kind and external id; see the module's documentation.
#[derive(Debug, Default)]
pub struct ChannelCache {
    listening: AtomicBool,
    inner: Mutex<Inner>,
}

impl ChannelCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached answer, if any, and the generation a fill must present to be kept (`None`
    /// while the cache is not in use).
    pub(super) fn get(
        &self,
        kind: ChannelKind,
        external_id: &str,
    ) -> (Option<ResolvedChannel>, Option<u64>) {
        if !self.listening.load(Ordering::Acquire) {
            return (None, None);
        }
        let inner = self.lock();
        let hit = inner
            .entries
            .get(&(kind, external_id.to_string()))
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(resolved, _)| resolved.clone());
        (hit, Some(inner.generation))
    }

    /// Keeps what a lookup that started at `generation` found, unless a notice came since.
    pub(super) fn put(
        &self,
        kind: ChannelKind,
        external_id: &str,
        resolved: &ResolvedChannel,
        generation: u64,
    ) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(
            (kind, external_id.to_string()),
            (resolved.clone(), Instant::now()),
        );
    }

    /// A tenant's configuration changed: forget its channels.
    pub fn forget_tenant(&self, tenant: TenantId) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|_, (r, _)| r.tenant != tenant);
    }

    /// Forgets everything and starts (`true`) or stops (`false`) using the cache.
    pub fn reset(&self, listening: bool) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
        self.listening.store(listening, Ordering::Release);
    }

    /// How many entries it holds (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether lookups are served from memory now.
    pub fn in_use(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// Keeps `store`'s channel cache in step with the database, for as long as the runtime runs:
/// LISTEN on `konstruct_config`, forget a tenant's entries on each notice, and use no cache at
/// all while not subscribed.
pub fn listen(store: Store) {
    // A plain Tokio task: its connection must be dropped inside the runtime at shutdown.
    tokio::spawn(async move {
        let cache = store.channel_cache().clone();
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(store.pool()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "channel cache: cannot listen yet; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::debug!(error = %e, "channel cache: LISTEN failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            // Anything may have changed while no one listened.
            cache.reset(true);
            loop {
                match listener.try_recv().await {
                    Ok(Some(notice)) => match notice.payload().parse::<TenantId>() {
                        Ok(tenant) => cache.forget_tenant(tenant),
                        Err(_) => cache.reset(true),
                    },
                    // The connection dropped: notices may have been lost, so nothing cached can
                    // be trusted, and nothing is cached until a new subscription stands.
                    Ok(None) => {
                        cache.reset(false);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "channel cache: listener failed; reconnecting");
                        cache.reset(false);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ConnectionId;

    fn resolved(tenant: TenantId) -> ResolvedChannel {
        ResolvedChannel {
            tenant,
            connection_id: ConnectionId::from_uuid(uuid::Uuid::new_v4()),
            agent_id: None,
            active: true,
            settings: serde_json::json!({}),
        }
    }

    #[test]
    fn nothing_is_kept_or_served_while_not_subscribed() {
        let cache = ChannelCache::default();
        let (hit, generation) = cache.get(ChannelKind::Slack, "T1");
        assert_eq!(
            (hit, generation),
            (None, None),
            "not in use before the listener runs"
        );
        cache.put(
            ChannelKind::Slack,
            "T1",
            &resolved(TenantId::from_uuid(uuid::Uuid::new_v4())),
            0,
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn a_fill_is_served_until_its_tenant_changes() {
        let cache = ChannelCache::default();
        cache.reset(true);
        let (a, b) = (
            TenantId::from_uuid(uuid::Uuid::new_v4()),
            TenantId::from_uuid(uuid::Uuid::new_v4()),
        );
        let (_, generation) = cache.get(ChannelKind::Slack, "TA");
        cache.put(ChannelKind::Slack, "TA", &resolved(a), generation.unwrap());
        let (_, generation) = cache.get(ChannelKind::Slack, "TB");
        cache.put(ChannelKind::Slack, "TB", &resolved(b), generation.unwrap());
        assert_eq!(cache.get(ChannelKind::Slack, "TA").0.unwrap().tenant, a);
        assert!(
            cache.get(ChannelKind::Whatsapp, "TA").0.is_none(),
            "kinds are apart"
        );
        cache.forget_tenant(a);
        assert!(cache.get(ChannelKind::Slack, "TA").0.is_none());
        assert_eq!(
            cache.get(ChannelKind::Slack, "TB").0.unwrap().tenant,
            b,
            "others stay"
        );
    }

    #[test]
    fn a_lookup_that_raced_a_notice_is_not_kept() {
        let cache = ChannelCache::default();
        cache.reset(true);
        let tenant = TenantId::from_uuid(uuid::Uuid::new_v4());
        let (_, started) = cache.get(ChannelKind::Slack, "T1");
        // The change commits and its notice arrives while the lookup is on its way.
        cache.forget_tenant(TenantId::from_uuid(uuid::Uuid::new_v4()));
        cache.put(
            ChannelKind::Slack,
            "T1",
            &resolved(tenant),
            started.unwrap(),
        );
        assert!(cache.is_empty(), "what it read may predate the change");
    }

    #[test]
    fn losing_the_subscription_forgets_everything_and_stops_the_cache() {
        let cache = ChannelCache::default();
        cache.reset(true);
        let (_, generation) = cache.get(ChannelKind::Slack, "T1");
        cache.put(
            ChannelKind::Slack,
            "T1",
            &resolved(TenantId::from_uuid(uuid::Uuid::new_v4())),
            generation.unwrap(),
        );
        assert_eq!(cache.len(), 1);
        cache.reset(false);
        assert!(cache.is_empty());
        assert!(!cache.in_use());
        assert_eq!(cache.get(ChannelKind::Slack, "T1"), (None, None));
    }
}
