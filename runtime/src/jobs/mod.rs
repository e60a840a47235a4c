//! The durable job runner every background task uses: job handlers by kind, and the `Runner`
//! each node runs.
//!
//! A job is a row in Postgres (`store::jobs`), enqueued inside the transaction that makes the
//! change needing it, so the change and its follow-up work commit together (the transactional
//! outbox). Runners claim due jobs fairly across tenants, hold each under a lease they renew while
//! it runs, and retry failures with exponential back-off; a worker that lost its lease cannot
//! record anything for the job any more (see `store::jobs`). So a job runs at least once, and a
//! handler must be safe to run again: deleting keys, sending with an idempotency key.
//!
//! Every handler of the product is registered in one place, [`Registry::builtin`].

pub mod budget_alert;
mod runner;
pub mod tenant_purge;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use shared::TenantId;
use uuid::Uuid;

use crate::redis::Redis;
use crate::store::Store;

pub use runner::{Runner, RunnerSettings, retry_delay};

/// One attempt of a job, as its handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    /// `None` for a platform job.
    pub tenant: Option<TenantId>,
    pub kind: String,
    /// Ids and parameters, as enqueued.
    pub payload: Value,
    /// 1 for the first run; counted on across retries by hand.
    pub attempt: u32,
    pub max_attempts: u32,
    /// The attempts each run of it is given (at enqueue, and again by each retry by hand).
    pub budget: u32,
}

impl Job {
    /// Which attempt this is since the job was last queued by hand (1 for the first): what the
    /// runner's back-off is measured on.
    pub fn attempt_in_run(&self) -> u32 {
        let before = self.max_attempts.saturating_sub(self.budget);
        self.attempt.saturating_sub(before).max(1)
    }
}

/// What handlers can reach.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub store: Store,
    pub redis: Redis,
    /// The knowledge base and memory service (its jobs need it).
    pub knowledge: Option<crate::knowledge::Knowledge>,
    /// The LLM pool (memory summaries call it).
    pub llm: Option<Arc<crate::llm::pool::Pool>>,
    /// The mail sender and the links it mails (the mail jobs need it).
    pub people: Option<crate::people::People>,
    /// The engine's queue (a person's reply is sent through it).
    pub ingest: Option<crate::engine::ingest::Ingest>,
    /// The channel adapters and the keyring that opens tenants' tokens (hand-off notices).
    pub channels: Option<crate::channels::Channels>,
    pub keyring: Option<Arc<crate::crypto::Keyring>>,
    /// The one client for URLs tenants supply (budget alert webhooks).
    pub outbound: Option<crate::outbound::Outbound>,
}

/// Why an attempt failed. The reason is recorded as the job's `last_error` and shown to the
/// tenant: our own short words, never a provider's text, a secret or end-user content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt: after `after` when the handler knows (a provider's `Retry-After`),
    /// else after the runner's exponential back-off.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Will never work: the job fails at once.
    #[error("{reason}")]
    Permanent { reason: String },
}

impl JobError {
    /// A failure worth retrying after the usual back-off.
    pub fn retry(reason: impl Into<String>) -> Self {
        JobError::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    /// A failure that no retry will fix.
    pub fn permanent(reason: impl Into<String>) -> Self {
        JobError::Permanent {
            reason: reason.into(),
        }
    }
}

/// The work behind one kind of job. `run` must be safe to run again for the same job: an
/// attempt whose worker died is run once more by another.
pub trait JobHandler: Send + Sync + 'static {
    /// The kind this handler runs: dotted lower-case words, e.g. `tenant.purge_redis`.
    fn kind(&self) -> &'static str;

    /// Runs one attempt.
    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>>;
}

/// Whether `kind` is a valid job kind: dotted lower-case words (`tenant.purge_redis`), at most
/// 100 characters (the table checks the same).
pub fn is_valid_kind(kind: &str) -> bool {
    let word = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    kind.len() <= 100 && kind.split('.').count() >= 2 && kind.split('.').all(word)
}

/// Why a handler could not be registered: a bug in the registration, found at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("job kind {0:?} is not dotted lower-case words")]
    InvalidKind(&'static str),
    #[error("job kind {0:?} has two handlers")]
    Duplicate(&'static str),
}

/// The handlers a runner knows, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn JobHandler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every handler of the product: the one place a new job kind is registered.
    pub fn builtin() -> Result<Self, RegistryError> {
        use crate::knowledge::jobs as k;
        Self::new()
            .with(tenant_purge::PurgeRedis)?
            .with(k::IndexDocument)?
            .with(k::Unindex)?
            .with(k::Reindex)?
            .with(k::Summarise)?
            .with(k::PurgeTenantVectors)?
            .with(crate::people::jobs::SendInvitation)?
            .with(crate::people::jobs::SendPasswordReset)?
            .with(crate::inbox::jobs::SendReply)?
            .with(crate::inbox::jobs::NotifyHandoff)?
            .with(budget_alert::SendBudgetAlert)
    }

    /// Adds a handler for its kind.
    pub fn with(self, handler: impl JobHandler) -> Result<Self, RegistryError> {
        self.with_shared(Arc::new(handler))
    }

    /// Adds a shared handler for its kind.
    pub fn with_shared(mut self, handler: Arc<dyn JobHandler>) -> Result<Self, RegistryError> {
        let kind = handler.kind();
        if !is_valid_kind(kind) {
            return Err(RegistryError::InvalidKind(kind));
        }
        if self.handlers.insert(kind, handler).is_some() {
            return Err(RegistryError::Duplicate(kind));
        }
        Ok(self)
    }

    /// The handler for `kind`, if any.
    pub fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }

    /// The kinds with a handler.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_dotted_lower_case_words() {
        for good in ["tenant.purge_redis", "mail.send", "a.b.c2"] {
            assert!(is_valid_kind(good), "{good}");
        }
        for bad in [
            "purge",
            "Tenant.purge",
            "tenant..purge",
            "tenant.purge-redis",
            ".a",
            "a.1b",
        ] {
            assert!(!is_valid_kind(bad), "{bad}");
        }
        assert!(!is_valid_kind(&format!("a.{}", "b".repeat(100))));
    }

    #[test]
    fn back_off_starts_again_after_a_retry_by_hand() {
        let job = |attempt, max_attempts| Job {
            id: Uuid::nil(),
            tenant: None,
            kind: "a.b".into(),
            payload: Value::Null,
            attempt,
            max_attempts,
            budget: 8,
        };
        assert_eq!(job(1, 8).attempt_in_run(), 1);
        assert_eq!(job(8, 8).attempt_in_run(), 8);
        // Failed 8 times, queued again by hand (8 more): attempt 9 is the first of its run.
        assert_eq!(job(9, 16).attempt_in_run(), 1);
        assert_eq!(job(11, 16).attempt_in_run(), 3);
        assert_eq!(job(17, 24).attempt_in_run(), 1);
    }

    #[test]
    fn the_builtin_registry_registers_every_kind_once() {
        let registry = Registry::builtin().unwrap();
        use crate::knowledge::jobs as k;
        assert_eq!(
            registry.kinds().collect::<Vec<_>>(),
            vec![
                crate::llm::budget::ALERT_JOB,
                crate::inbox::jobs::SEND,
                crate::inbox::jobs::NOTIFY,
                k::INDEX,
                k::REINDEX,
                k::UNINDEX,
                crate::people::jobs::INVITATION,
                crate::people::jobs::PASSWORD_RESET,
                k::SUMMARISE,
                tenant_purge::KIND,
                k::PURGE_TENANT
            ]
        );
        assert_eq!(
            registry.with(tenant_purge::PurgeRedis).unwrap_err(),
            RegistryError::Duplicate(tenant_purge::KIND)
        );
    }
}
