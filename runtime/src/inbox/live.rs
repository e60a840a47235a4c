//! The live inbox. Triggers on `conversations`, `conversation_events` and outbound `messages`
//! `pg_notify('konstruct_inbox', 'tenant:conversation')` at commit, to every node; each node
//! listens on one connection ([`Hub::start`]) and fans the changes out to the streams of the
//! members watching on it. A change is only a hint ("read this conversation again"): streams
//! read what they show through the member's own tenant transaction.
//!
//! Bounded: one broadcast buffer per node ([`BUFFER`]; a stream that falls behind is told to
//! read everything again), at most [`STREAMS_PER_NODE`] streams on a node and
//! [`STREAMS_PER_MEMBER`] per member and tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shared::{ConversationId, TenantId};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::store::Store;

/// The notification channel the triggers use.
pub const CHANNEL: &str = "konstruct_inbox";
/// Changes kept for a slow stream before it misses some.
pub const BUFFER: usize = 4096;
/// Live streams one node serves at once.
pub const STREAMS_PER_NODE: usize = 2000;
/// Live streams one member may hold open per tenant (a few tabs).
pub const STREAMS_PER_MEMBER: usize = 5;

/// What the hub tells streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A conversation of a tenant changed.
    Conversation {
        tenant: TenantId,
        conversation: ConversationId,
    },
    /// Someone's access to the tenant changed (a role, a removal): streams check theirs again.
    Access { tenant: TenantId },
    /// Changes may have been missed (the listening connection dropped): read everything again.
    Resync,
}

/// This node's fan-out of inbox changes, and the count of open streams.
#[derive(Clone)]
pub struct Hub {
    changes: broadcast::Sender<Change>,
    open: Arc<Mutex<HashMap<(TenantId, Uuid), usize>>>,
    total: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            changes: broadcast::channel(BUFFER).0,
            open: Arc::default(),
            total: Arc::new(tokio::sync::Semaphore::new(STREAMS_PER_NODE)),
        }
    }
}

/// An open stream's place; given back when dropped.
#[derive(Debug)]
pub struct Place {
    _slot: tokio::sync::OwnedSemaphorePermit,
    key: (TenantId, Uuid),
    open: Arc<Mutex<HashMap<(TenantId, Uuid), usize>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This member has [`STREAMS_PER_MEMBER`] open already.
    Member,
    /// The node serves [`STREAMS_PER_NODE`] already.
    Node,
}

impl Hub {
    /// A hub whose changes come from Postgres notifications, listened to for as long as the
    /// runtime runs (reconnecting with back-off; every reconnect tells streams to resync).
    pub fn start(store: Store) -> Self {
        let hub = Self::default();
        let changes = hub.changes.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(store.pool())
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "inbox listener could not connect; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "inbox listener could not listen; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                delay = Duration::from_millis(200);
                let _ = changes.send(Change::Resync);
                loop {
                    match listener.recv().await {
                        Ok(n) => {
                            if let Some(change) = parse(n.payload()) {
                                // Nobody listening is fine.
                                let _ = changes.send(change);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "inbox listener lost its connection; reconnecting");
                            break;
                        }
                    }
                }
            }
        });
        hub
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Takes a place for a member's stream in a tenant.
    pub fn open(&self, tenant: TenantId, member: Uuid) -> Result<Place, Refused> {
        let slot = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Node)?;
        let key = (tenant, member);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= STREAMS_PER_MEMBER {
            return Err(Refused::Member);
        }
        *n += 1;
        Ok(Place {
            _slot: slot,
            key,
            open: self.open.clone(),
        })
    }
}

/// Reads a notification's payload, `tenant:conversation`.
fn parse(payload: &str) -> Option<Change> {
    let (tenant, conversation) = payload.split_once(':')?;
    let tenant = TenantId::from_uuid(tenant.parse().ok()?);
    let conversation: Uuid = conversation.parse().ok()?;
    Some(if conversation.is_nil() {
        Change::Access { tenant }
    } else {
        Change::Conversation {
            tenant,
            conversation: ConversationId::from_uuid(conversation),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_as_changes_and_junk_does_not() {
        let t = Uuid::new_v4();
        let c = Uuid::new_v4();
        assert_eq!(
            parse(&format!("{t}:{c}")),
            Some(Change::Conversation {
                tenant: TenantId::from_uuid(t),
                conversation: ConversationId::from_uuid(c),
            })
        );
        assert_eq!(
            parse(&format!("{t}:{}", Uuid::nil())),
            Some(Change::Access {
                tenant: TenantId::from_uuid(t)
            })
        );
        assert_eq!(parse("nonsense"), None);
        assert_eq!(parse(&format!("{t}:x")), None);
    }

    #[test]
    fn a_member_gets_a_few_streams_and_gets_them_back_when_closed() {
        let hub = Hub::default();
        let t = TenantId::from_uuid(Uuid::new_v4());
        let m = Uuid::new_v4();
        let places: Vec<_> = (0..STREAMS_PER_MEMBER)
            .map(|_| hub.open(t, m).unwrap())
            .collect();
        assert_eq!(hub.open(t, m).unwrap_err(), Refused::Member);
        // Another member, or the same in another tenant, is not held up.
        assert!(hub.open(t, Uuid::new_v4()).is_ok());
        assert!(hub.open(TenantId::from_uuid(Uuid::new_v4()), m).is_ok());
        drop(places);
        assert!(hub.open(t, m).is_ok());
    }
}
