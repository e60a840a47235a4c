//! After a call: its usage and cost go to the tenant's usage (per quarter hour) and its audit trail, in one
//! transaction, and a tenant's own key the provider refused is marked on the key (audited once
//! per refusal episode). Before a call: the tenant's own keys are opened for the pool.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use shared::{AgentId, TenantId};

use super::pool::{Credentials, KeyFailure};
use super::types::CallReport;
use crate::crypto::{CryptoError, Keyring};
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::llm::{self as store_llm, UsageRecord};
use crate::store::{Store, StoreError, TenantTx};

/// Why metering or key loading failed.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Records one successful call; returns its cost in micro-dollars when the price is known.
pub async fn record_call(
    store: &Store,
    tenant: TenantId,
    agent: Option<AgentId>,
    report: &CallReport,
    at: DateTime<Utc>,
) -> Result<Option<i64>, MeteringError> {
    let mut tx = store.tenant_tx(tenant).await?;
    let cost = record_in(&mut tx, agent, report, at, 0).await?;
    tx.commit().await?;
    Ok(cost)
}

/// Like `record_call` (a call made for no conversation), inside the caller's transaction.
/// `slot` spreads concurrent writers over the quarter hour's rows (see `UsageRecord::slot`).
pub async fn record_in(
    tx: &mut TenantTx,
    agent: Option<AgentId>,
    report: &CallReport,
    at: DateTime<Utc>,
    slot: i16,
) -> Result<Option<i64>, MeteringError> {
    let cost = add_usage_in(tx, agent, None, report, at, slot).await?;
    audit::append(tx, &call_event(agent, report, cost)).await?;
    Ok(cost)
}

/// Adds the call to the usage of the quarter hour of `at`, for `agent` on `channel`; returns
/// its cost in micro-dollars when the price is known. The caller appends `call_event` to the
/// audit trail in the same transaction.
pub async fn add_usage_in(
    tx: &mut TenantTx,
    agent: Option<AgentId>,
    channel: Option<&str>,
    report: &CallReport,
    at: DateTime<Utc>,
    slot: i16,
) -> Result<Option<i64>, MeteringError> {
    let usage = &report.completion.usage;
    let cost = super::cost::micro_usd(report.provider, &report.model, usage, SystemTime::now());
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    store_llm::add_usage(
        tx,
        &UsageRecord {
            at,
            agent,
            channel,
            key_owner: if report.byo_key {
                shared::usage::KeyOwner::Tenant
            } else {
                shared::usage::KeyOwner::Platform
            },
            provider: report.provider,
            model: &report.model,
            input_tokens: as_i64(usage.input_tokens),
            output_tokens: as_i64(usage.output_tokens),
            cached_input_tokens: as_i64(usage.cached_input_tokens),
            cost_micro_usd: cost,
            slot,
        },
    )
    .await?;
    Ok(cost)
}

/// The `llm.call` audit event of one call.
pub fn call_event(agent: Option<AgentId>, report: &CallReport, cost: Option<i64>) -> NewEvent {
    let usage = &report.completion.usage;
    NewEvent {
        actor: Actor::System,
        action: Action::LlmCall,
        target: agent.map_or(Target::None, Target::Agent),
        details: serde_json::json!({
            "provider": report.provider,
            "model": report.model,
            "deployment": report.deployment,
            "group": report.group,
            "latency_ms": report.latency.as_millis() as u64,
            "attempts": report.attempts,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "cost_micro_usd": cost,
            "byo_key": report.byo_key,
        }),
        request_id: None,
    }
}

/// The slot a provider's key is sealed in (part of the associated data).
pub fn key_slot(provider: &str) -> String {
    format!("llm_key:{provider}")
}

/// Opens the tenant's own keys, for the pool to prefer over the platform's.
pub async fn tenant_credentials(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
) -> Result<Credentials, MeteringError> {
    let mut tx = store.tenant_tx(tenant).await?;
    let credentials = credentials_in(&mut tx, keyring).await?;
    drop(tx);
    Ok(credentials)
}

/// Like `tenant_credentials`, inside the caller's transaction.
pub async fn credentials_in(
    tx: &mut TenantTx,
    keyring: &Keyring,
) -> Result<Credentials, MeteringError> {
    let tenant = tx.tenant();
    let rows = store_llm::keys(tx).await?;
    let (mut openai, mut anthropic) = (None, None);
    for row in rows {
        let key = keyring.open(tenant, &key_slot(&row.provider), &row.ciphertext)?;
        match row.provider.as_str() {
            "openai" => openai = Some(key),
            "anthropic" => anthropic = Some(key),
            _ => {}
        }
    }
    Ok(Credentials::of_tenant(tenant, openai, anthropic))
}

/// Marks the tenant's own keys the provider refused during a call (`CallReport::key_failures`,
/// `PoolError::key_failures`) and audits `llm.key_refused` once per refusal episode: a key
/// already marked is left as it was, so a tenant's many refused calls make one audit row. Does
/// nothing for an empty list.
pub async fn record_key_failures(
    store: &Store,
    tenant: TenantId,
    failures: &[KeyFailure],
) -> Result<(), MeteringError> {
    if failures.is_empty() {
        return Ok(());
    }
    let mut tx = store.tenant_tx(tenant).await?;
    let mut newly_refused = Vec::new();
    for failure in failures {
        let provider = failure.provider.as_str();
        if store_llm::mark_key_refused(&mut tx, provider, &failure.reason()).await? {
            newly_refused.push(failure);
        }
    }
    // Audit rows last: appending holds the tenant's chain lock until commit.
    for failure in newly_refused {
        audit::append(&mut tx, &key_refused_event(failure)).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The `llm.key_refused` audit event: which key and the class of failure, never key material or
/// the provider's message.
fn key_refused_event(failure: &KeyFailure) -> NewEvent {
    let provider = failure.provider.as_str();
    NewEvent::about(
        Actor::System,
        Action::LlmKeyRefused,
        Target::LlmKey(provider),
        serde_json::json!({
            "provider": provider,
            "failure": failure.kind.name(),
            "http_status": failure.http_status(),
        }),
    )
}
