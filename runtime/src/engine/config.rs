//! A tenant's engine configuration as one immutable snapshot — its status, rate limits, agents,
//! channel connections (with their opened tokens) and own LLM keys — which the `TenantActor`
//! loads when it starts and reloads when it is told the configuration changed. Turns read the
//! snapshot instead of the database, and replies never decrypt a token.
//!
//! Change notices come from Postgres: triggers on `tenants`, `agents`, `tenant_llm_keys` and
//! `channel_connections` call `pg_notify('konstruct_config', tenant_id)`, delivered when the
//! changing transaction commits, to every node that listens. So a change made through the API, a
//! migration or by hand reaches every node, and none can be forgotten. If the listening
//! connection drops, notices sent meanwhile are lost: the listener then tells every live tenant
//! to reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use shared::resources::{EscalationRule, TenantStatus};
use shared::{AgentId, ConnectionId, TenantId};

use super::actors::{Refresh, Registry};
use super::limiter::Limit;
use super::prompt::AgentProfile;
use super::turn::{EngineDeps, TurnError};
use crate::channels::{ConnectionConfig, ConnectionSettings, secret_slot};
use crate::crypto::Keyring;
use crate::llm::metering;
use crate::llm::pool::Credentials;
use crate::store::channels::{self as store_channels, ConnectionRow};
use crate::store::tools as store_tools;
use crate::store::{Store, TenantTx, agents, tenants};
use crate::time::TenantZone;

/// The channel the triggers notify on.
pub const CHANNEL: &str = "konstruct_config";

/// One agent, as turns need it.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    pub profile: AgentProfile,
    /// The model group to try first, if the agent names one.
    pub model_preference: Option<String>,
    pub escalation_rules: Vec<EscalationRule>,
    /// Where it keeps to its business function.
    pub scope_guard: shared::resources::ScopeGuard,
    pub in_scope_examples: Vec<String>,
    /// Its AI disclosure; empty for the default.
    pub ai_disclosure: String,
    /// Without a relevant passage it says so and offers a person instead of answering.
    pub cite_or_handoff: bool,
    /// Its conversations are summarised into memories of the customer, and recalled.
    pub long_term_memory: bool,
    /// The tools assigned to it: built-in ids and the tenant's HTTP tools' uuids.
    pub tools: Vec<String>,
    /// Its own bounds of a turn (never above the platform's).
    pub max_tool_steps: Option<u32>,
    pub turn_deadline: Option<Duration>,
}

/// A tenant's configuration at one moment.
#[derive(Debug)]
pub struct TenantConfig {
    /// False once the tenant was deleted: its remaining messages are dropped.
    pub exists: bool,
    /// Suspended tenants' messages are recorded, not answered.
    pub active: bool,
    pub tenant_limit: Limit,
    pub connection_limit: Limit,
    pub agents: HashMap<AgentId, Arc<AgentConfig>>,
    /// Every channel connection, with its opened token.
    pub connections: HashMap<ConnectionId, Arc<ConnectionConfig>>,
    /// The tenant's own provider keys, preferred over the platform's.
    pub credentials: Credentials,
    /// The tenant's calendar: its usage days are its own.
    pub zone: TenantZone,
    /// The tenant's HTTP tools, secrets opened and schemas compiled, by id.
    pub tools: HashMap<uuid::Uuid, crate::tools::Registered>,
    /// When people answer a hand-off (what the customer is told); `None`: at any hour.
    pub business_hours: Option<shared::inbox::BusinessHours>,
    /// The tenant's monthly budgets (the tenant-wide one first), checked before every call.
    pub budgets: Vec<crate::store::budgets::BudgetRow>,
}

impl TenantConfig {
    pub fn agent(&self, id: Option<AgentId>) -> Option<Arc<AgentConfig>> {
        id.and_then(|id| self.agents.get(&id).cloned())
    }

    pub fn connection(&self, id: ConnectionId) -> Option<Arc<ConnectionConfig>> {
        self.connections.get(&id).cloned()
    }
}

/// An agent as turns need it.
fn agent_config(row: agents::AgentRow) -> AgentConfig {
    let escalation_rules = match serde_json::from_value(row.escalation_rules) {
        Ok(rules) => rules,
        Err(e) => {
            tracing::error!(agent.id = %row.id, error = %e, "unreadable escalation rules; ignoring them");
            Vec::new()
        }
    };
    let preference = row.model_preference.trim().to_string();
    AgentConfig {
        profile: AgentProfile {
            name: row.name,
            role: row.job_title,
            persona: row.persona,
            system_prompt: row.system_prompt,
            job_description: row.job_description,
            business_function: row.business_function,
        },
        model_preference: (!preference.is_empty()).then_some(preference),
        escalation_rules,
        scope_guard: shared::resources::ScopeGuard::parse(&row.scope_guard).unwrap_or_default(),
        in_scope_examples: serde_json::from_value(row.in_scope_examples).unwrap_or_default(),
        ai_disclosure: row.ai_disclosure,
        cite_or_handoff: row.cite_or_handoff,
        long_term_memory: row.long_term_memory,
        tools: serde_json::from_value(row.tools).unwrap_or_default(),
        max_tool_steps: row.max_tool_steps.and_then(|n| u32::try_from(n).ok()),
        turn_deadline: row
            .turn_deadline_secs
            .and_then(|n| u64::try_from(n).ok())
            .map(Duration::from_secs),
    }
}

/// An HTTP tool as turns call it: its secret headers opened, its schema compiled. A tool whose
/// secrets cannot be opened (a key removed) or whose schema no longer compiles is left out, and
/// said so in the log.
pub fn http_tool(
    tenant: TenantId,
    keyring: &Keyring,
    row: &store_tools::ToolRow,
) -> Option<crate::tools::Registered> {
    let mut secrets: HashMap<String, String> = HashMap::new();
    if let Some(sealed) = &row.secrets {
        match keyring.open(tenant, &store_tools::secrets_slot(row.id), sealed) {
            Ok(opened) => {
                secrets = serde_json::from_str(opened.expose()).unwrap_or_default();
            }
            Err(e) => {
                tracing::error!(tool.id = %row.id, error = %e, "a tool's secret headers cannot be opened; it is left out");
                return None;
            }
        }
    }
    let mut headers = Vec::new();
    for h in row.stored_headers() {
        let value = if h.secret {
            secrets.get(&h.name).cloned()
        } else {
            h.value.clone()
        };
        let (Ok(name), Some(value)) = (
            reqwest::header::HeaderName::from_bytes(h.name.as_bytes()),
            value,
        ) else {
            tracing::error!(tool.id = %row.id, "a tool's header is unusable; it is left out");
            return None;
        };
        headers.push(crate::tools::http::Header {
            name,
            value: crate::config::Secret::new(value),
            secret: h.secret,
        });
    }
    let tool = crate::tools::http::HttpTool::new(
        row.id,
        row.name.clone(),
        row.description.clone(),
        row.parameters.clone(),
        row.method(),
        row.url.clone(),
        headers,
        u32::try_from(row.max_response_bytes).unwrap_or(shared::tools::DEFAULT_RESPONSE_BYTES),
        u32::try_from(row.timeout_ms).unwrap_or(shared::tools::DEFAULT_TIMEOUT_MS),
        row.needs_confirmation,
    );
    match crate::tools::Registered::new(Arc::new(tool)) {
        Ok(registered) => Some(registered),
        Err(problems) => {
            tracing::error!(tool.id = %row.id, ?problems, "a tool's schema does not compile; it is left out");
            None
        }
    }
}

/// A connection as the engine uses it: settings typed, secret opened (or why it could not be).
fn connection_config(tenant: TenantId, keyring: &Keyring, row: ConnectionRow) -> ConnectionConfig {
    let settings = match ConnectionSettings::parse(row.kind, &row.settings) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(connection.id = %row.id, error = %e, "unreadable connection settings");
            ConnectionSettings::Web
        }
    };
    let (token, token_error) = match &row.secret_ciphertext {
        None => (None, None),
        Some(sealed) => match keyring.open(tenant, &secret_slot(row.kind, row.id), sealed) {
            Ok(token) => (Some(token), None),
            Err(e) => {
                tracing::error!(connection.id = %row.id, error = %e, "a connection's secret cannot be opened");
                (None, Some(e.to_string()))
            }
        },
    };
    ConnectionConfig {
        id: row.id,
        kind: row.kind,
        status: row.status,
        agent_id: row.agent_id,
        settings,
        token,
        token_error,
    }
}

pub async fn connections_in(
    tx: &mut TenantTx,
    keyring: &Keyring,
) -> Result<HashMap<ConnectionId, Arc<ConnectionConfig>>, TurnError> {
    let tenant = tx.tenant();
    Ok(store_channels::all(tx)
        .await?
        .into_iter()
        .map(|row| (row.id, Arc::new(connection_config(tenant, keyring, row))))
        .collect())
}

/// One agent, read now: for an agent hired after the tenant's snapshot was loaded (its change
/// notice may reach the tenant actor after the first message for it does).
pub async fn load_agent(
    deps: &EngineDeps,
    tenant: TenantId,
    id: AgentId,
) -> Result<Option<Arc<AgentConfig>>, TurnError> {
    let mut tx = deps.store.tenant_tx(tenant).await?;
    let row = agents::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row.map(|row| Arc::new(agent_config(row))))
}

/// One connection, read now: for a connection made after the tenant's snapshot was loaded.
pub async fn load_connection(
    deps: &EngineDeps,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Option<Arc<ConnectionConfig>>, TurnError> {
    let mut tx = deps.store.tenant_tx(tenant).await?;
    let row = store_channels::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row.map(|row| Arc::new(connection_config(tenant, &deps.keyring, row))))
}

/// Reads the tenant's configuration in one transaction. A tenant that no longer exists loads as
/// inactive with no agents.
pub async fn load(deps: &EngineDeps, tenant: TenantId) -> Result<TenantConfig, TurnError> {
    let mut tx = deps.store.tenant_tx(tenant).await?;
    let Some(row) = tenants::current(&mut tx).await? else {
        return Ok(TenantConfig {
            exists: false,
            active: false,
            tenant_limit: deps.settings.tenant_limit,
            connection_limit: deps.settings.connection_limit,
            agents: HashMap::new(),
            connections: HashMap::new(),
            credentials: Credentials::platform(),
            zone: TenantZone::default(),
            tools: HashMap::new(),
            business_hours: None,
            budgets: Vec::new(),
        });
    };
    let own = tenants::limits(&mut tx).await?.unwrap_or_default();
    let limit = |own: Option<(u32, u32)>, default: Limit| {
        own.map_or(default, |(per_minute, burst)| Limit { per_minute, burst })
    };
    let mut agents_by_id = HashMap::new();
    for row in agents::all(&mut tx).await? {
        agents_by_id.insert(row.id, Arc::new(agent_config(row)));
    }
    let connections = connections_in(&mut tx, &deps.keyring).await?;
    let tools = store_tools::list(&mut tx)
        .await?
        .iter()
        .filter_map(|row| http_tool(tenant, &deps.keyring, row).map(|t| (row.id, t)))
        .collect();
    let zone = match tenants::settings(&mut tx).await? {
        Some(settings) => TenantZone::parse(&settings.time_zone).unwrap_or_else(|| {
            tracing::error!(tenant.id = %tenant, "unknown time zone stored; using UTC");
            TenantZone::default()
        }),
        None => TenantZone::default(),
    };
    let business_hours = crate::store::inbox::handoff_settings(&mut tx)
        .await?
        .0
        .and_then(|hours| serde_json::from_value(hours).ok());
    let credentials = match metering::credentials_in(&mut tx, &deps.keyring).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(tenant.id = %tenant, error = %e, "tenant LLM keys unreadable; using the platform's");
            Credentials::platform()
        }
    };
    let budgets = crate::store::budgets::list(&mut tx).await?;
    tx.commit().await?;
    Ok(TenantConfig {
        exists: true,
        active: row.status == TenantStatus::Active,
        tenant_limit: limit(own.tenant, deps.settings.tenant_limit),
        connection_limit: limit(own.per_connection, deps.settings.connection_limit),
        agents: agents_by_id,
        connections,
        credentials,
        zone,
        tools,
        business_hours,
        budgets,
    })
}

/// Listens for configuration changes and tells the registry, for as long as the system runs.
pub fn listen(store: Store, registry: Addr<Registry>) {
    // A plain Tokio task, not one on the actor arbiter: the listener's connection must be
    // dropped inside the runtime when the system shuts down.
    tokio::spawn(async move {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(store.pool()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for config changes yet; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            // Anything may have changed while no one listened.
            let _ = registry.send(Refresh(None)).await;
            loop {
                match listener.try_recv().await {
                    Ok(Some(notice)) => match notice.payload().parse::<TenantId>() {
                        Ok(id) => {
                            let _ = registry.send(Refresh(Some(id))).await;
                        }
                        Err(_) => tracing::warn!("config notice without a tenant id"),
                    },
                    // The connection dropped (and will reconnect): notices may be lost.
                    Ok(None) => {
                        let _ = registry.send(Refresh(None)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "config listener failed; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    });
}
