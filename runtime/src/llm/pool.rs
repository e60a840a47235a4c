//! The pool: named model groups of deployments, tried in order with retries, fallback and
//! cooldown.
//!
//! For one call the pool walks the preferred group first, then every other group in configured
//! order. Inside a group the first deployment is picked by weight (weight 0 = fallback only) and
//! the rest follow in configured order. A retryable failure (connect, timeout, 5xx, 429, malformed
//! answer) is retried on the same deployment with exponential backoff, or after the provider's
//! `Retry-After` when it sent one; a key fault (401/403/404, out of quota) is not retried and cools
//! the key down at once, so a bad key is not hammered. A key that fails
//! `failures_before_cooldown` times in a row is skipped for `cooldown`, then one probe call is let
//! through: success heals it, failure cools it again. A failure that is the request's own fault
//! (context too long, content policy, malformed request) ends the call at once.
//!
//! **Bounded.** At most `PoolSettings::max_in_flight` calls are open to one deployment at once,
//! whoever makes them. A call that finds it full waits for room, up to the deployment's timeout,
//! and then moves on to the next deployment as if this one had timed out; after the wait it is
//! admitted afresh, so a cooldown that began meanwhile is respected. A provider that hangs thus
//! holds at most that many requests (and their connections and bodies), however many turns run.
//!
//! Health is kept per (deployment, key owner): the platform, or a tenant calling with its own key.
//! One tenant's refused, over-quota or model-less key therefore cools only that tenant's use of
//! the deployment; the platform's key and every other tenant keep being served, and a success on
//! one key never resets another key's failures.
//!
//! A tenant's own key is used only on deployments that say they take it (`Deployment::byo_slot`):
//! its OpenAI key on the `openai` group, its Anthropic key on the `anthropic` group, never on
//! `ollama` or any other server that merely speaks the same wire format. While a tenant's own key
//! is cooling down, that tenant's calls move on to the other groups; they do not fall back to the
//! platform's key on the same deployment, because the tenant chose to pay for that provider with
//! its own key (and the platform's key may not be meant for it). The pool does no IO besides the
//! provider calls: refusals of a tenant's own key come back as `KeyFailure`s in the `CallReport`
//! or `PoolError`, for the caller to record (`metering::record_key_failures`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use shared::TenantId;
use shared::resources::LlmProvider;

use super::error::{FailureKind, ProviderError, retry_after};
use super::provider::{Anthropic, OpenAi, Provider};
use super::types::{CallReport, ChatRequest, Completion};
use crate::config::Secret;

/// The wire format a deployment speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI Chat Completions: OpenAI, Ollama's `/v1`, and compatible servers.
    OpenAi,
    Anthropic,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        self.implementation().name()
    }

    /// The wire format's implementation.
    pub fn implementation(self) -> &'static dyn Provider {
        match self {
            ProviderKind::OpenAi => &OpenAi,
            ProviderKind::Anthropic => &Anthropic,
        }
    }
}

/// One model at one endpoint with one key.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Unique across the pool, e.g. `openai/gpt-4o-mini`.
    pub id: String,
    pub provider: ProviderKind,
    /// The server's base URL, with or without a trailing `/v1`.
    pub base_url: String,
    pub model: String,
    /// The platform's key.
    pub api_key: Option<Secret<String>>,
    /// Which of a tenant's own keys this deployment takes in place of `api_key`, if any: set
    /// for the platform's `openai` and `anthropic` groups, `None` for servers (like Ollama) that
    /// must never see a tenant's key.
    pub byo_slot: Option<LlmProvider>,
    /// Share of first picks inside the group; 0 = used only as a fallback.
    pub weight: u32,
    pub timeout: Duration,
    /// Retries on this deployment after the first attempt, for retryable failures.
    pub max_retries: u32,
}

/// Deployments that can stand in for each other.
#[derive(Debug, Clone)]
pub struct ModelGroup {
    pub name: String,
    pub deployments: Vec<Deployment>,
}

/// How hard the pool tries.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub failures_before_cooldown: u32,
    pub cooldown: Duration,
    /// First backoff; doubles on each retry, with jitter.
    pub backoff_base: Duration,
    /// A `Retry-After` longer than this moves on to the next deployment instead of waiting.
    pub max_retry_after: Duration,
    /// Calls open to one deployment at once, at most (see the module's **Bounded**).
    pub max_in_flight: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            failures_before_cooldown: 3,
            cooldown: Duration::from_secs(30),
            backoff_base: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(10),
            max_in_flight: 256,
        }
    }
}

/// The keys one call may use: a tenant's own keys, per provider, and whose they are. The default
/// has no tenant keys (the platform's keys only).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Whose `openai` and `anthropic` keys are; health and refusals are counted against it.
    tenant: Option<TenantId>,
    openai: Option<Secret<String>>,
    anthropic: Option<Secret<String>>,
}

impl Credentials {
    /// The platform's keys only.
    pub fn platform() -> Self {
        Self::default()
    }

    /// `tenant`'s own keys (either may be absent: the platform's key is used there).
    pub fn of_tenant(
        tenant: TenantId,
        openai: Option<Secret<String>>,
        anthropic: Option<Secret<String>>,
    ) -> Self {
        Self {
            tenant: Some(tenant),
            openai,
            anthropic,
        }
    }

    /// Whose keys these are, when they are a tenant's.
    pub fn tenant(&self) -> Option<TenantId> {
        self.tenant
    }

    /// The tenant's own key for `provider`.
    pub fn key(&self, provider: LlmProvider) -> Option<&Secret<String>> {
        match provider {
            LlmProvider::Openai => self.openai.as_ref(),
            LlmProvider::Anthropic => self.anthropic.as_ref(),
        }
    }

    /// The tenant's key for a deployment's slot, with its owner.
    fn own_key(&self, slot: LlmProvider) -> Option<(TenantId, &Secret<String>)> {
        Some((self.tenant?, self.key(slot)?))
    }
}

/// Whose key a call uses, and so whose health its failures count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    Platform,
    Tenant(TenantId),
}

/// A tenant's own key that the provider would not take, for the caller to record and show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    /// Which of the tenant's keys.
    pub provider: LlmProvider,
    /// A key fault (`FailureKind::is_key_fault`).
    pub kind: FailureKind,
}

impl KeyFailure {
    /// Our own short sentence for the operator; never the provider's text, which may quote the key.
    pub fn reason(&self) -> String {
        match self.kind {
            FailureKind::Auth(404) => {
                "the model is not available with this key (HTTP 404)".to_string()
            }
            FailureKind::Auth(403) => "the provider denied this key access (HTTP 403)".to_string(),
            FailureKind::Auth(status) => format!("the provider refused the key (HTTP {status})"),
            FailureKind::QuotaExceeded => "the key's account is out of quota or credit".to_string(),
            ref other => format!("the key failed ({})", other.name()),
        }
    }

    /// The HTTP status behind the failure, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self.kind {
            FailureKind::Auth(status) => Some(status),
            _ => None,
        }
    }
}

/// Time, injectable so cooldown can be tested without waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Why a call produced no answer. `user_message` is what an end user may be told.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("no LLM deployment is configured")]
    NotConfigured,
    #[error("every LLM deployment is cooling down after repeated failures")]
    AllCoolingDown,
    #[error("every LLM deployment failed after {attempts} attempts; last: {last}")]
    Exhausted {
        attempts: u32,
        last: ProviderError,
        /// The tenant's own keys refused on the way.
        key_failures: Vec<KeyFailure>,
    },
    #[error("the LLM refused the request: {error}")]
    Rejected {
        error: ProviderError,
        /// The tenant's own keys refused before the request was refused.
        key_failures: Vec<KeyFailure>,
    },
}

impl PoolError {
    /// The tenant's own keys the providers refused during the call, for the caller to record.
    pub fn key_failures(&self) -> &[KeyFailure] {
        match self {
            PoolError::NotConfigured | PoolError::AllCoolingDown => &[],
            PoolError::Exhausted { key_failures, .. }
            | PoolError::Rejected { key_failures, .. } => key_failures,
        }
    }

    /// The failure's class, for audit records: never the provider's own text, which may quote
    /// the key or the request.
    pub fn class(&self) -> &'static str {
        match self {
            PoolError::NotConfigured => "not_configured",
            PoolError::AllCoolingDown => "all_cooling_down",
            PoolError::Exhausted { last, .. } => last.kind.name(),
            PoolError::Rejected { error, .. } => error.kind.name(),
        }
    }

    /// A polite sentence for the person waiting for an answer.
    pub fn user_message(&self) -> &'static str {
        match self {
            PoolError::Rejected { error, .. } if error.kind == FailureKind::ContextTooLong => {
                "This conversation has grown too long for me to follow. Could you start a new one?"
            }
            PoolError::Rejected { error, .. } if error.kind == FailureKind::ContentPolicy => {
                "I'm sorry, I can't help with that request."
            }
            _ => "I'm sorry, I can't answer right now. Please try again in a few minutes.",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Health {
    consecutive_failures: u32,
    cooled_until: Option<Instant>,
    /// A probe is in flight after a cooldown ended; others keep skipping until it reports.
    probing: bool,
}

/// The LLM backend pool.
#[derive(Debug)]
pub struct Pool {
    groups: Vec<ModelGroup>,
    settings: PoolSettings,
    http: reqwest::Client,
    /// Per (deployment id, key owner): one key's failures never count against another's.
    health: Mutex<HashMap<(String, KeyOwner), Health>>,
    /// Room for more calls, per deployment id (`PoolSettings::max_in_flight` each).
    room: HashMap<String, Arc<tokio::sync::Semaphore>>,
    clock: Arc<dyn Clock>,
}

/// The key a deployment is called with for these credentials, and whose it is: the tenant's own
/// key for the deployment's slot when it has one, otherwise the platform's.
fn key_for<'a>(
    deployment: &'a Deployment,
    credentials: &'a Credentials,
) -> (Option<&'a Secret<String>>, KeyOwner) {
    match deployment
        .byo_slot
        .and_then(|slot| credentials.own_key(slot))
    {
        Some((tenant, key)) => (Some(key), KeyOwner::Tenant(tenant)),
        None => (deployment.api_key.as_ref(), KeyOwner::Platform),
    }
}

enum Admission {
    Skip,
    Normal,
    Probe,
}

impl Pool {
    /// The platform's pool from the settings: one group per configured provider, in the order
    /// anthropic, openai, ollama.
    pub fn from_settings(llm: &crate::config::LlmSettings) -> Self {
        let timeout = Duration::from_secs(llm.timeout_secs);
        let mut groups = Vec::new();
        let mut add = |name: &str,
                       provider,
                       base_url: &str,
                       model: &str,
                       key: Option<Secret<String>>,
                       byo_slot: Option<LlmProvider>| {
            groups.push(ModelGroup {
                name: name.to_string(),
                deployments: vec![Deployment {
                    id: format!("{name}/{model}"),
                    provider,
                    base_url: base_url.to_string(),
                    model: model.to_string(),
                    api_key: key,
                    byo_slot,
                    weight: 1,
                    timeout,
                    max_retries: llm.max_retries,
                }],
            });
        };
        if let Some(key) = &llm.anthropic_api_key {
            add(
                "anthropic",
                ProviderKind::Anthropic,
                &llm.anthropic_base_url,
                &llm.anthropic_model,
                Some(key.clone()),
                Some(LlmProvider::Anthropic),
            );
        }
        if let Some(key) = &llm.openai_api_key {
            add(
                "openai",
                ProviderKind::OpenAi,
                &llm.openai_base_url,
                &llm.openai_model,
                Some(key.clone()),
                Some(LlmProvider::Openai),
            );
        }
        if let Some(url) = &llm.ollama_url {
            // A server of the platform's own: a tenant's OpenAI key must never be sent to it.
            add(
                "ollama",
                ProviderKind::OpenAi,
                url,
                &llm.ollama_model,
                None,
                None,
            );
        }
        let settings = PoolSettings {
            cooldown: Duration::from_secs(llm.cooldown_secs),
            max_in_flight: usize::try_from(llm.max_in_flight).unwrap_or(usize::MAX),
            ..PoolSettings::default()
        };
        Self::new(groups, settings, Arc::new(SystemClock))
    }

    pub fn new(groups: Vec<ModelGroup>, settings: PoolSettings, clock: Arc<dyn Clock>) -> Self {
        let room = groups
            .iter()
            .flat_map(|g| &g.deployments)
            .map(|d| {
                let permits = settings
                    .max_in_flight
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
                (d.id.clone(), Arc::new(tokio::sync::Semaphore::new(permits)))
            })
            .collect();
        Self {
            groups,
            settings,
            http: super::http_client(),
            health: Mutex::new(HashMap::new()),
            room,
            clock,
        }
    }

    pub fn groups(&self) -> &[ModelGroup] {
        &self.groups
    }

    /// Answers `req`, preferring the group named `preference` (an agent's model preference).
    pub async fn chat(
        &self,
        preference: Option<&str>,
        credentials: &Credentials,
        req: &ChatRequest,
    ) -> Result<CallReport, PoolError> {
        if self.groups.iter().all(|g| g.deployments.is_empty()) {
            return Err(PoolError::NotConfigured);
        }
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut last: Option<ProviderError> = None;
        let mut key_failures: Vec<KeyFailure> = Vec::new();
        let preferred = preference.filter(|p| !p.is_empty());
        let groups = self
            .groups
            .iter()
            .filter(|g| Some(g.name.as_str()) == preferred)
            .chain(
                self.groups
                    .iter()
                    .filter(|g| Some(g.name.as_str()) != preferred),
            );
        for group in groups {
            for deployment in self.order(group) {
                let (key, owner) = key_for(deployment, credentials);
                if self.cooling(&deployment.id, owner) {
                    continue;
                }
                // Held for this deployment's tries; admitted only once there is room, so a
                // cooldown that began while this waited is seen.
                let Some(_room) = self.room(deployment).await else {
                    tracing::warn!(
                        llm.deployment = %deployment.id,
                        max_in_flight = self.settings.max_in_flight,
                        "LLM deployment had no room for another call within its timeout"
                    );
                    last = Some(ProviderError::new(
                        FailureKind::Timeout,
                        format!(
                            "{} calls were open to the deployment for its whole timeout",
                            self.settings.max_in_flight
                        ),
                    ));
                    continue;
                };
                let probe = match self.admit(&deployment.id, owner) {
                    Admission::Skip => continue,
                    Admission::Normal => false,
                    Admission::Probe => true,
                };
                let tries = if probe { 1 } else { deployment.max_retries + 1 };
                for attempt in 0..tries {
                    attempts += 1;
                    match self.call(deployment, key, req).await {
                        Ok(completion) => {
                            self.record(&deployment.id, owner, None);
                            return Ok(CallReport {
                                model: deployment.model.clone(),
                                completion,
                                provider: deployment.provider.name(),
                                group: group.name.clone(),
                                deployment: deployment.id.clone(),
                                latency: started.elapsed(),
                                attempts,
                                byo_key: owner != KeyOwner::Platform,
                                key_failures,
                            });
                        }
                        Err(e) if !e.kind.is_deployment_fault() => {
                            // The request's own fault: another deployment would refuse it too.
                            self.record(&deployment.id, owner, None);
                            return Err(PoolError::Rejected {
                                error: e,
                                key_failures,
                            });
                        }
                        Err(e) => {
                            tracing::warn!(
                                llm.deployment = %deployment.id,
                                llm.failure = e.kind.name(),
                                llm.byo_key = owner != KeyOwner::Platform,
                                attempt,
                                "LLM call failed"
                            );
                            if let (KeyOwner::Tenant(_), Some(slot)) = (owner, deployment.byo_slot)
                                && e.kind.is_key_fault()
                                && !key_failures.iter().any(|f| f.provider == slot)
                            {
                                key_failures.push(KeyFailure {
                                    provider: slot,
                                    kind: e.kind.clone(),
                                });
                            }
                            let cooled = self.record(&deployment.id, owner, Some(&e.kind));
                            let wait = match &e.kind {
                                _ if cooled || attempt + 1 == tries => None,
                                FailureKind::RateLimited(Some(after)) => {
                                    (*after <= self.settings.max_retry_after).then_some(*after)
                                }
                                kind if kind.is_retryable() => Some(self.backoff(attempt)),
                                _ => None,
                            };
                            last = Some(e);
                            match wait {
                                Some(wait) => tokio::time::sleep(wait).await,
                                None => break,
                            }
                        }
                    }
                }
            }
        }
        match last {
            Some(last) => Err(PoolError::Exhausted {
                attempts,
                last,
                key_failures,
            }),
            None => Err(PoolError::AllCoolingDown),
        }
    }

    /// The group's deployments for one call: a weighted pick first, then the rest in order.
    fn order<'a>(&self, group: &'a ModelGroup) -> Vec<&'a Deployment> {
        let total: u64 = group.deployments.iter().map(|d| u64::from(d.weight)).sum();
        let mut ordered: Vec<&Deployment> = group.deployments.iter().collect();
        if total > 0 && ordered.len() > 1 {
            let mut pick = rand::rng().random_range(0..total);
            let first = group
                .deployments
                .iter()
                .position(|d| {
                    let w = u64::from(d.weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            let chosen = ordered.remove(first);
            ordered.insert(0, chosen);
        }
        ordered
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .settings
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt));
        // Up to 25 % jitter, so many callers do not retry in step.
        let jitter = rand::rng().random_range(0.0..0.25);
        base.mul_f64(1.0 + jitter)
    }

    /// Waits for room for one more call to `d`, up to its timeout; `None` if none came.
    async fn room(&self, d: &Deployment) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let room = self.room.get(&d.id)?.clone();
        tokio::time::timeout(d.timeout, room.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Whether `admit` would skip the deployment now (it is cooling down, or probed).
    fn cooling(&self, id: &str, owner: KeyOwner) -> bool {
        let now = self.clock.now();
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        health
            .get(&(id.to_string(), owner))
            .and_then(|h| h.cooled_until.map(|until| now < until || h.probing))
            .unwrap_or(false)
    }

    fn admit(&self, id: &str, owner: KeyOwner) -> Admission {
        let now = self.clock.now();
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let h = health.entry((id.to_string(), owner)).or_default();
        match h.cooled_until {
            None => Admission::Normal,
            Some(until) if now < until || h.probing => Admission::Skip,
            Some(_) => {
                h.probing = true;
                Admission::Probe
            }
        }
    }

    /// Records an outcome of one key on one deployment; returns whether that pair is now
    /// cooling down.
    fn record(&self, id: &str, owner: KeyOwner, failure: Option<&FailureKind>) -> bool {
        let now = self.clock.now();
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let h = health.entry((id.to_string(), owner)).or_default();
        match failure {
            None => {
                *h = Health::default();
                false
            }
            Some(kind) => {
                h.consecutive_failures += 1;
                let cool = h.probing
                    || kind.is_key_fault()
                    || h.consecutive_failures >= self.settings.failures_before_cooldown;
                if cool {
                    h.cooled_until = Some(now + self.settings.cooldown);
                    h.probing = false;
                    let tenant = match owner {
                        KeyOwner::Platform => None,
                        KeyOwner::Tenant(t) => Some(t.to_string()),
                    };
                    tracing::warn!(
                        llm.deployment = %id,
                        tenant.id = tenant.as_deref(),
                        cooldown_ms = self.settings.cooldown.as_millis() as u64,
                        "LLM deployment cooling down for this key"
                    );
                }
                cool
            }
        }
    }

    async fn call(
        &self,
        d: &Deployment,
        key: Option<&Secret<String>>,
        req: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        let provider = d.provider.implementation();
        let base = d.base_url.trim_end_matches('/').trim_end_matches("/v1");
        let request = self
            .http
            .post(provider.chat_url(base))
            .timeout(d.timeout)
            .json(&provider.body(&d.model, req));
        let request = provider.authorize(request, key.map(|k| k.expose().as_str()));
        let scrub = |e: ProviderError| match key {
            Some(k) if !k.expose().is_empty() => {
                ProviderError::new(e.kind, e.detail.replace(k.expose().as_str(), "[redacted]"))
            }
            _ => e,
        };
        let response = request
            .send()
            .await
            .map_err(|e| scrub(ProviderError::from_transport(&e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            return Err(scrub(ProviderError::from_status(status, after, &text)));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|e| ProviderError::new(FailureKind::Malformed, e.to_string()))?;
        provider.parse(&answer)
    }
}
