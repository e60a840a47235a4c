//! Budgets: `GET /api/tenants/{tenant_id}/budgets` (each with where its month stands and a
//! forecast to the month's end), `PUT`/`DELETE …/budgets/tenant` and
//! `…/budgets/agents/{agent_id}` (customer admins), and `GET …/budget-alerts` (the thresholds
//! crossed, newest first: the portal's banner and notifications list).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Deserialize;
use shared::usage::{
    Budget, BudgetAlert, BudgetInput, BudgetPolicy, BudgetScope, BudgetStatus, DEFAULT_THRESHOLDS,
};
use shared::{AgentId, ErrorBody};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, record};
use crate::store::agents as store_agents;
use crate::store::audit::{Action, Target};
use crate::store::budgets::{self as store_budgets, AlertRow, BudgetRow, NewBudget};
use crate::store::{TenantTx, tenants};
use crate::time::TenantZone;

/// The largest monthly amount a budget takes: ten million dollars.
pub const MAX_MONTHLY_MICRO_USD: i64 = 10_000_000 * 1_000_000;

fn policy_of(text: &str) -> BudgetPolicy {
    BudgetPolicy::parse(text).unwrap_or_default()
}

fn to_dto(row: &BudgetRow) -> Budget {
    Budget {
        id: row.id,
        scope: row.agent_id.map_or(BudgetScope::Tenant, BudgetScope::Agent),
        monthly_micro_usd: row.monthly_micro_usd,
        thresholds: row
            .thresholds
            .iter()
            .map(|t| u8::try_from(*t).unwrap_or(100))
            .collect(),
        policy: policy_of(&row.policy),
        downgrade_group: row.downgrade_group.clone(),
        count_own_keys: row.count_own_keys,
        webhook_url: row.webhook_url.clone(),
        updated_at: row.updated_at,
    }
}

fn alert_dto(row: AlertRow) -> BudgetAlert {
    BudgetAlert {
        id: row.id,
        budget_id: row.budget_id,
        scope: row.agent_id.map_or(BudgetScope::Tenant, BudgetScope::Agent),
        agent_name: row.agent_name,
        period: row.period,
        threshold: u8::try_from(row.threshold).unwrap_or(100),
        spent_micro_usd: row.spent_micro_usd,
        monthly_micro_usd: row.monthly_micro_usd,
        policy: policy_of(&row.policy),
        at: row.created_at,
        mailed: row.mailed,
        webhook_status: row.webhook_status,
    }
}

/// The month's spend at its end, at the pace so far (straight-line, from the month's first
/// instant in the tenant's calendar).
pub fn forecast(zone: &TenantZone, now: DateTime<Utc>, spent: i64) -> i64 {
    let first = zone.month_start(now);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .unwrap_or(first);
    let (start, end) = (zone.start_of(first), zone.start_of(next));
    // At least an hour in, so the first minutes' spend does not extrapolate wildly.
    let elapsed = (now - start).num_seconds().max(3_600);
    let total = (end - start).num_seconds().max(elapsed);
    let projected = i128::from(spent) * i128::from(total) / i128::from(elapsed);
    i64::try_from(projected).unwrap_or(i64::MAX)
}

async fn status(
    tx: &mut TenantTx,
    zone: &TenantZone,
    now: DateTime<Utc>,
    row: &BudgetRow,
    agent_name: Option<String>,
) -> Result<BudgetStatus, ApiError> {
    let period = zone.month_key(now);
    let (spent, reserved) = store_budgets::standing(tx, row.id, &period, now).await?;
    let crossed = store_budgets::crossed_in(tx, row.id, &period).await?;
    let percent = i128::from(spent) * 100 / i128::from(row.monthly_micro_usd.max(1));
    Ok(BudgetStatus {
        budget: to_dto(row),
        agent_name,
        spent_micro_usd: spent,
        reserved_micro_usd: reserved,
        percent: u32::try_from(percent).unwrap_or(u32::MAX),
        forecast_micro_usd: forecast(zone, now, spent),
        exhausted: spent >= row.monthly_micro_usd,
        crossed: crossed
            .iter()
            .map(|t| u8::try_from(*t).unwrap_or(100))
            .collect(),
        period,
    })
}

/// The tenant's budgets, the tenant-wide one first, each with its month.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/budgets", tag = "usage",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = Vec<BudgetStatus>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<BudgetStatus>>, ApiError> {
    let tenant = auth.tenant()?;
    // A webhook URL often carries its own secret (chat services' hook URLs do): only those who
    // may change the budget see it whole; others see where it goes.
    let manages = matches!(
        auth.principal().access_to(tenant),
        crate::auth::principal::TenantAccess::Granted(p) if p.contains(&shared::auth::Permission::BudgetsManage)
    );
    let mut tx = state.store.tenant_tx(tenant).await?;
    let zone = tenants::zone(&mut tx).await?;
    let now = state.clock.now();
    let mut out = Vec::new();
    for row in store_budgets::list(&mut tx).await? {
        let name = match row.agent_id {
            Some(agent) => store_agents::get(&mut tx, agent).await?.map(|a| a.name),
            None => None,
        };
        let mut one = status(&mut tx, &zone, now, &row, name).await?;
        if !manages {
            one.budget.webhook_url = one.budget.webhook_url.as_deref().map(webhook_hint);
        }
        out.push(one);
    }
    tx.commit().await?;
    Ok(web::Json(out))
}

/// Where a webhook posts, without its path or query (which may carry its secret).
pub fn webhook_hint(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}/…", u.scheme())))
        .unwrap_or_else(|| "…".into())
}

/// Checks a budget's settings; field errors name what is wrong.
async fn validate(state: &AppState, input: &BudgetInput) -> Result<Vec<i16>, ApiError> {
    let mut errors = Errors::default();
    if !(1..=MAX_MONTHLY_MICRO_USD).contains(&input.monthly_micro_usd) {
        errors.add(
            "monthly_micro_usd",
            "must be more than zero and at most $10,000,000 (in micro-dollars)",
        );
    }
    let mut thresholds: Vec<i16> = input
        .thresholds
        .clone()
        .unwrap_or_else(|| DEFAULT_THRESHOLDS.to_vec())
        .into_iter()
        .map(i16::from)
        .collect();
    thresholds.sort_unstable();
    thresholds.dedup();
    if thresholds.is_empty()
        || thresholds.len() > 10
        || thresholds.iter().any(|t| !(1..=100).contains(t))
    {
        errors.add(
            "thresholds",
            "must be one to ten percentages, each 1 to 100",
        );
    }
    let groups: Vec<&str> = state.llm.groups().iter().map(|g| g.name.as_str()).collect();
    match (
        input.policy,
        input.downgrade_group.as_deref().map(str::trim),
    ) {
        (BudgetPolicy::Downgrade, Some(group)) if groups.contains(&group) => {}
        (BudgetPolicy::Downgrade, _) => errors.add(
            "downgrade_group",
            format!(
                "must name the model group to switch to: one of {}",
                if groups.is_empty() {
                    "(none is configured)".to_string()
                } else {
                    groups.join(", ")
                }
            ),
        ),
        (_, Some(group)) if !group.is_empty() => {
            errors.add("downgrade_group", "is only for the downgrade policy")
        }
        _ => {}
    }
    if let Some(url) = input
        .webhook_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        match url::Url::parse(url) {
            Err(_) => errors.add(
                "webhook_url",
                "must be a URL, like https://example.com/hook",
            ),
            Ok(parsed) => {
                if url.len() > 2000 {
                    errors.add("webhook_url", "must be at most 2000 characters");
                } else if !parsed.username().is_empty() || parsed.password().is_some() {
                    errors.add("webhook_url", "must not carry a user name or password");
                } else if !(parsed.scheme() == "https"
                    || (parsed.scheme() == "http" && state.outbound.allows(&parsed)))
                {
                    errors.add("webhook_url", "must be an https URL");
                } else if let Err(e) = state.outbound.check(url).await {
                    errors.add("webhook_url", e.to_string());
                }
            }
        }
    }
    errors.finish()?;
    Ok(thresholds)
}

async fn put(
    auth: &Authorized,
    state: &AppState,
    agent: Option<AgentId>,
    input: BudgetInput,
) -> Result<BudgetStatus, ApiError> {
    let thresholds = validate(state, &input).await?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let agent_name = match agent {
        Some(id) => Some(
            store_agents::get(&mut tx, id)
                .await?
                .ok_or_else(|| ApiError::not_found("The agent"))?
                .name,
        ),
        None => None,
    };
    let downgrade = (input.policy == BudgetPolicy::Downgrade)
        .then(|| input.downgrade_group.as_deref().map(str::trim))
        .flatten();
    let webhook = input
        .webhook_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let row = store_budgets::put(
        &mut tx,
        &NewBudget {
            agent,
            monthly_micro_usd: input.monthly_micro_usd,
            thresholds: &thresholds,
            policy: input.policy.as_str(),
            downgrade_group: downgrade,
            count_own_keys: input.count_own_keys,
            webhook_url: webhook,
        },
    )
    .await?;
    let zone = tenants::zone(&mut tx).await?;
    // The month opens now with what it already spent, so the budget shows it at once.
    store_budgets::open_period(&mut tx, &row, &zone.month_key(state.clock.now())).await?;
    let out = status(&mut tx, &zone, state.clock.now(), &row, agent_name).await?;
    record(
        &mut tx,
        auth,
        Action::BudgetSet,
        agent.map_or(Target::None, Target::Agent),
        serde_json::json!({
            "budget_id": row.id,
            "monthly_micro_usd": row.monthly_micro_usd,
            "thresholds": row.thresholds,
            "policy": row.policy,
            "downgrade_group": row.downgrade_group,
            "count_own_keys": row.count_own_keys,
            "webhook": row.webhook_url.is_some(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

async fn remove(
    auth: &Authorized,
    state: &AppState,
    agent: Option<AgentId>,
) -> Result<HttpResponse, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    if !store_budgets::delete(&mut tx, agent).await? {
        return Err(ApiError::not_found("The budget"));
    }
    record(
        &mut tx,
        auth,
        Action::BudgetRemoved,
        agent.map_or(Target::None, Target::Agent),
        serde_json::json!({ "scope": if agent.is_some() { "agent" } else { "tenant" } }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sets the tenant-wide monthly budget (replacing the one set before).
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/budgets/tenant", tag = "usage",
    params(("tenant_id" = Uuid, Path)), request_body = BudgetInput,
    responses((status = 200, body = BudgetStatus), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_tenant(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<BudgetInput>,
) -> Result<web::Json<BudgetStatus>, ApiError> {
    Ok(web::Json(
        put(&auth, &state, None, body.into_inner()).await?,
    ))
}

/// Removes the tenant-wide budget.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/budgets/tenant", tag = "usage",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_tenant(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    remove(&auth, &state, None).await
}

/// Sets one agent's monthly budget (its calls count against the tenant's budget too).
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/budgets/agents/{agent_id}", tag = "usage",
    params(("tenant_id" = Uuid, Path), ("agent_id" = Uuid, Path)), request_body = BudgetInput,
    responses((status = 200, body = BudgetStatus), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_agent(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, AgentId)>,
    body: web::Json<BudgetInput>,
) -> Result<web::Json<BudgetStatus>, ApiError> {
    let (_, agent) = path.into_inner();
    Ok(web::Json(
        put(&auth, &state, Some(agent), body.into_inner()).await?,
    ))
}

/// Removes one agent's budget.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/budgets/agents/{agent_id}", tag = "usage",
    params(("tenant_id" = Uuid, Path), ("agent_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_agent(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, AgentId)>,
) -> Result<HttpResponse, ApiError> {
    let (_, agent) = path.into_inner();
    remove(&auth, &state, Some(agent)).await
}

/// `?before=<alert id>&limit=`: the page after the alert `before` (newest first).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AlertParams {
    pub before: Option<Uuid>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

/// The thresholds crossed, newest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/budget-alerts", tag = "usage",
    params(("tenant_id" = Uuid, Path), AlertParams),
    responses((status = 200, body = Vec<BudgetAlert>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn alerts(
    auth: Authorized,
    state: web::Data<AppState>,
    params: web::Query<AlertParams>,
) -> Result<web::Json<Vec<BudgetAlert>>, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        let mut errors = Errors::default();
        errors.add("limit", "must be 1 to 200");
        errors.finish()?;
    }
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let before = match params.before {
        Some(id) => {
            let row = store_budgets::alert(&mut tx, id)
                .await?
                .ok_or_else(|| ApiError::not_found("The alert"))?;
            Some((row.created_at, row.id))
        }
        None => None,
    };
    let rows = store_budgets::alerts(&mut tx, before, limit).await?;
    tx.commit().await?;
    Ok(web::Json(rows.into_iter().map(alert_dto).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forecast_runs_the_months_pace_to_its_end_in_the_tenants_calendar() {
        let utc = TenantZone::default();
        // Ten days into a 31-day month with $10 spent: $31 by its end.
        let now: DateTime<Utc> = "2026-12-11T00:00:00Z".parse().unwrap();
        assert_eq!(forecast(&utc, now, 10_000_000), 31_000_000);
        // Minutes into the month, the pace is taken over an hour at least.
        let early: DateTime<Utc> = "2026-12-01T00:01:00Z".parse().unwrap();
        assert_eq!(forecast(&utc, early, 1_000), 1_000 * 24 * 31);
        // In Kolkata the month began 5h30 before UTC's.
        let kolkata = TenantZone::parse("Asia/Kolkata").unwrap();
        let at: DateTime<Utc> = "2026-11-30T19:30:00Z".parse().unwrap();
        assert_eq!(forecast(&kolkata, at, 1_000), 1_000 * 24 * 31);
    }
}
