//! `/api/tenants/{tenant_id}/agents`: the AI employees of a tenant.

use actix_web::{HttpResponse, web};
use shared::resources::{Agent, AgentInput, EscalationRule, EscalationTrigger, Page, ScopeGuard};
use shared::{AgentId, ErrorBody};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, PageQuery, record};
use crate::store::agents::{self as store_agents, AgentFields, AgentRow};
use crate::store::audit::{Action, Target};

fn to_dto(row: AgentRow) -> Result<Agent, ApiError> {
    let tools: Vec<String> = serde_json::from_value(row.tools).map_err(ApiError::internal)?;
    let escalation_rules: Vec<EscalationRule> =
        serde_json::from_value(row.escalation_rules).map_err(ApiError::internal)?;
    Ok(Agent {
        id: row.id,
        tenant_id: row.tenant_id,
        input: AgentInput {
            name: row.name,
            role: row.job_title,
            persona: row.persona,
            system_prompt: row.system_prompt,
            job_description: row.job_description,
            model_preference: row.model_preference,
            tools,
            escalation_rules,
            business_function: row.business_function,
            scope_guard: ScopeGuard::parse(&row.scope_guard).unwrap_or_default(),
            in_scope_examples: serde_json::from_value(row.in_scope_examples)
                .map_err(ApiError::internal)?,
            ai_disclosure: row.ai_disclosure,
            cite_or_handoff: row.cite_or_handoff,
            long_term_memory: row.long_term_memory,
            max_tool_steps: row.max_tool_steps.and_then(|n| u32::try_from(n).ok()),
            turn_deadline_secs: row.turn_deadline_secs.and_then(|n| u32::try_from(n).ok()),
        },
        declined_last_30_days: 0,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Fills in how many requests each agent declined in the last 30 days.
async fn with_declines(
    tx: &mut crate::store::TenantTx,
    agents: &mut [Agent],
) -> Result<(), ApiError> {
    let since = (chrono::Utc::now() - chrono::TimeDelta::days(30)).date_naive();
    let counts = store_agents::declines_since(tx, since).await?;
    for agent in agents {
        agent.declined_last_30_days = counts
            .get(&agent.id)
            .map_or(0, |n| u64::try_from(*n).unwrap_or(0));
    }
    Ok(())
}

/// Checks every field; returns all problems at once. `tools` are the ids the tenant's agents
/// may be given.
fn validate(
    input: &AgentInput,
    tools: &[String],
    caps: super::tools::TurnCaps,
) -> Result<(), ApiError> {
    let mut e = Errors::default();
    e.text("name", &input.name, true, 100);
    e.text("role", &input.role, false, 100);
    e.text("persona", &input.persona, false, 4_000);
    e.text("system_prompt", &input.system_prompt, false, 20_000);
    e.text("job_description", &input.job_description, false, 20_000);
    e.text("business_function", &input.business_function, false, 500);
    e.text("ai_disclosure", &input.ai_disclosure, false, 500);
    if input.in_scope_examples.len() > 50 {
        e.add("in_scope_examples", "at most 50 examples");
    }
    for (i, example) in input.in_scope_examples.iter().enumerate() {
        e.text(&format!("in_scope_examples[{i}]"), example, true, 300);
    }
    if input.model_preference.chars().count() > 100
        || !input
            .model_preference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
    {
        e.add(
            "model_preference",
            "use at most 100 letters, digits and - _ . / :",
        );
    }
    if input.tools.len() > 50 {
        e.add("tools", "at most 50 tools");
    }
    super::tools::check_caps(&mut e, caps, input.max_tool_steps, input.turn_deadline_secs);
    for (i, tool) in input.tools.iter().enumerate() {
        if !tools.contains(tool) {
            e.add(
                format!("tools[{i}]"),
                format!("unknown tool {tool:?}; see GET /api/tenants/{{tenant_id}}/tools"),
            );
        } else if input.tools[..i].contains(tool) {
            e.add(format!("tools[{i}]"), "is listed twice");
        }
    }
    if input.escalation_rules.len() > 20 {
        e.add("escalation_rules", "at most 20 rules");
    }
    for (i, rule) in input.escalation_rules.iter().enumerate() {
        let at = format!("escalation_rules[{i}]");
        match &rule.trigger {
            EscalationTrigger::FailedResolutions { threshold } => {
                if !(1..=20).contains(threshold) {
                    e.add(
                        format!("{at}.trigger.threshold"),
                        "must be between 1 and 20",
                    );
                }
            }
            EscalationTrigger::Keywords { keywords } => {
                if keywords.is_empty() || keywords.len() > 50 {
                    e.add(format!("{at}.trigger.keywords"), "give 1 to 50 keywords");
                }
                for (k, word) in keywords.iter().enumerate() {
                    e.text(&format!("{at}.trigger.keywords[{k}]"), word, true, 100);
                }
            }
            EscalationTrigger::HumanRequested => {}
        }
        if let Some(target) = &rule.handoff_target {
            e.text(&format!("{at}.handoff_target"), target, true, 200);
        }
    }
    e.finish()
}

fn fields(input: &AgentInput) -> Result<AgentFields<'_>, ApiError> {
    Ok(AgentFields {
        name: input.name.trim(),
        job_title: input.role.trim(),
        persona: &input.persona,
        system_prompt: &input.system_prompt,
        job_description: &input.job_description,
        model_preference: input.model_preference.trim(),
        business_function: input.business_function.trim(),
        tools: serde_json::to_value(&input.tools).map_err(ApiError::internal)?,
        escalation_rules: serde_json::to_value(&input.escalation_rules)
            .map_err(ApiError::internal)?,
        scope_guard: input.scope_guard.as_str(),
        in_scope_examples: serde_json::to_value(
            input
                .in_scope_examples
                .iter()
                .map(|e| e.trim())
                .collect::<Vec<_>>(),
        )
        .map_err(ApiError::internal)?,
        ai_disclosure: input.ai_disclosure.trim(),
        cite_or_handoff: input.cite_or_handoff,
        long_term_memory: input.long_term_memory,
        max_tool_steps: input.max_tool_steps.and_then(|n| i32::try_from(n).ok()),
        turn_deadline_secs: input.turn_deadline_secs.and_then(|n| i32::try_from(n).ok()),
    })
}

fn summary(agent: &Agent) -> serde_json::Value {
    serde_json::json!({
        "name": agent.input.name,
        "role": agent.input.role,
        "model_preference": agent.input.model_preference,
        "tools": agent.input.tools,
        "max_tool_steps": agent.input.max_tool_steps,
        "turn_deadline_secs": agent.input.turn_deadline_secs,
        "escalation_rules": agent.input.escalation_rules.len(),
        "business_function": agent.input.business_function,
    })
}

/// The tenant's AI employees, oldest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/agents", tag = "agents",
    params(("tenant_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Agent>), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<Agent>>, ApiError> {
    let paging = query.resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) = store_agents::list(&mut tx, paging.limit(), paging.offset()).await?;
    let mut items = rows
        .into_iter()
        .map(to_dto)
        .collect::<Result<Vec<_>, _>>()?;
    with_declines(&mut tx, &mut items).await?;
    Ok(web::Json(paging.page(items, total)))
}

/// Hire an AI employee.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/agents", tag = "agents",
    params(("tenant_id" = Uuid, Path)), request_body = AgentInput,
    responses((status = 201, body = Agent), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<AgentInput>,
) -> Result<HttpResponse, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    validate(
        &body,
        &super::tools::assignable(&mut tx).await?,
        state.turn_caps,
    )?;
    let agent = to_dto(store_agents::create(&mut tx, &fields(&body)?).await?)?;
    record(
        &mut tx,
        &auth,
        Action::AgentCreated,
        Target::Agent(agent.id),
        serde_json::json!({ "after": summary(&agent) }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(agent))
}

/// One AI employee.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/agents/{agent_id}", tag = "agents",
    params(("tenant_id" = Uuid, Path), ("agent_id" = Uuid, Path)),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, AgentId)>,
) -> Result<web::Json<Agent>, ApiError> {
    let (_, agent_id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = store_agents::get(&mut tx, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("The agent"))?;
    let mut agent = [to_dto(row)?];
    with_declines(&mut tx, &mut agent).await?;
    let [agent] = agent;
    Ok(web::Json(agent))
}

/// Replace an AI employee's settings.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/agents/{agent_id}", tag = "agents",
    params(("tenant_id" = Uuid, Path), ("agent_id" = Uuid, Path)), request_body = AgentInput,
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, AgentId)>,
    body: web::Json<AgentInput>,
) -> Result<web::Json<Agent>, ApiError> {
    let (_, agent_id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let before = store_agents::get(&mut tx, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("The agent"))?;
    validate(
        &body,
        &super::tools::assignable(&mut tx).await?,
        state.turn_caps,
    )?;
    let before = to_dto(before)?;
    if body.business_function.trim().is_empty()
        && crate::store::channels::answers_whatsapp(&mut tx, agent_id).await?
    {
        return Err(ApiError::invalid_field(
            "business_function",
            "this AI employee answers a WhatsApp number, where Meta's terms allow only an \
             assistant for the business's own customers: it needs a business function (to clear it, \
             first connect the number to another AI employee, or disconnect it)",
        ));
    }
    let after = store_agents::update(&mut tx, agent_id, &fields(&body)?)
        .await?
        .ok_or_else(|| ApiError::not_found("The agent"))?;
    let after = to_dto(after)?;
    record(
        &mut tx,
        &auth,
        Action::AgentUpdated,
        Target::Agent(agent_id),
        serde_json::json!({ "before": summary(&before), "after": summary(&after) }),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(after))
}

/// Let an AI employee go.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/agents/{agent_id}", tag = "agents",
    params(("tenant_id" = Uuid, Path), ("agent_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, AgentId)>,
) -> Result<HttpResponse, ApiError> {
    let (_, agent_id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let before = store_agents::get(&mut tx, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("The agent"))?;
    let before = to_dto(before)?;
    store_agents::delete(&mut tx, agent_id).await?;
    record(
        &mut tx,
        &auth,
        Action::AgentDeleted,
        Target::Agent(agent_id),
        serde_json::json!({ "before": summary(&before) }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
