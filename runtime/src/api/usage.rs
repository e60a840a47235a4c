//! `GET /api/tenants/{tenant_id}/usage`: tokens, cost (and calls without a price), calls,
//! conversations, customers' messages and hand-offs, by day, week or month of the tenant's own
//! calendar, with breakdowns by agent, model, channel and whose key paid (the platform's or the
//! tenant's own, always apart). For `UsageRead`: customer admins and operators.

use actix_web::web;
use chrono::{Datelike, Duration, NaiveDate};
use serde::Deserialize;
use shared::usage::{Granularity, KeyOwner, UsageReport};
use shared::{AgentId, ErrorBody};
use uuid::Uuid;

use super::AppState;
use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use crate::store::tenants;
use crate::store::usage::{self as store_usage, ReportQuery};
use crate::time::TenantZone;

/// The longest range one report covers.
pub const MAX_DAYS: i64 = 400;

/// `?from=&to=&granularity=&agent=&channel=&key_owner=&model=`, read as text so every problem
/// is a field error.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UsageParams {
    /// First day (`YYYY-MM-DD`, the tenant's calendar), inclusive; default the 1st of this month.
    pub from: Option<String>,
    /// Last day, inclusive; default today.
    pub to: Option<String>,
    /// `day` (default), `week` (from Monday) or `month`.
    pub granularity: Option<String>,
    /// An agent's id.
    pub agent: Option<String>,
    /// `slack`, `whatsapp` or `web`.
    pub channel: Option<String>,
    /// `platform` or `tenant`.
    pub key_owner: Option<String>,
    /// `provider/model`, e.g. `openai/gpt-4o-mini`.
    pub model: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn date(errors: &mut Errors, field: &str, value: Option<&str>) -> Option<NaiveDate> {
    let value = value?;
    match value.parse::<NaiveDate>() {
        Ok(day) => Some(day),
        Err(_) => {
            errors.add(field, "must be a date such as 2026-12-01");
            None
        }
    }
}

/// The range from `from` to `to` (both included): by default the 1st of `today`'s month to
/// `today`; at most `MAX_DAYS` days, `to` not before `from`.
fn range(
    errors: &mut Errors,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    today: NaiveDate,
) -> (NaiveDate, NaiveDate) {
    let to = to.unwrap_or(today);
    let from = from.unwrap_or_else(|| to.with_day(1).unwrap_or(to));
    if from > to {
        errors.add("to", "must not be before from");
    } else if (to - from) >= Duration::days(MAX_DAYS) {
        errors.add("from", format!("a report covers at most {MAX_DAYS} days"));
    }
    (from, to)
}

/// The query the parameters name, in the tenant's calendar at `today`.
pub fn parse(p: &UsageParams, today: NaiveDate) -> Result<ReportQuery, ApiError> {
    let mut errors = Errors::default();
    let from = date(&mut errors, "from", given(&p.from));
    let to = date(&mut errors, "to", given(&p.to));
    let granularity = given(&p.granularity).and_then(|g| {
        let parsed = Granularity::parse(g);
        if parsed.is_none() {
            errors.add("granularity", "must be day, week or month");
        }
        parsed
    });
    let agent = given(&p.agent).and_then(|a| match Uuid::parse_str(a) {
        Ok(id) => Some(AgentId::from_uuid(id)),
        Err(_) => {
            errors.add("agent", "must be an agent's id");
            None
        }
    });
    let channel = given(&p.channel).and_then(|c| {
        let known = ["slack", "whatsapp", "web"].contains(&c);
        if !known {
            errors.add("channel", "must be slack, whatsapp or web");
        }
        known.then(|| c.to_string())
    });
    let key_owner = given(&p.key_owner).and_then(|k| {
        let parsed = KeyOwner::parse(k);
        if parsed.is_none() {
            errors.add("key_owner", "must be platform or tenant");
        }
        parsed.map(|k| k.as_str().to_string())
    });
    let model = given(&p.model).and_then(|m| {
        if m.len() > 200 || !m.contains('/') {
            errors.add("model", "must be provider/model, e.g. openai/gpt-4o-mini");
            return None;
        }
        Some(m.to_string())
    });
    let (from, to) = range(&mut errors, from, to, today);
    errors.finish()?;
    Ok(ReportQuery {
        from,
        to,
        granularity: granularity.unwrap_or_default(),
        agent,
        channel,
        key_owner,
        model,
    })
}

/// The tenant's usage report.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/usage", tag = "usage",
    params(("tenant_id" = Uuid, Path), UsageParams),
    responses((status = 200, body = UsageReport), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn report(
    auth: Authorized,
    state: web::Data<AppState>,
    params: web::Query<UsageParams>,
) -> Result<web::Json<UsageReport>, ApiError> {
    Ok(web::Json(tenant_report(&auth, &state, &params).await?))
}

/// The report the parameters ask for, in the tenant's calendar (its "today" by the clock).
async fn tenant_report(
    auth: &Authorized,
    state: &AppState,
    params: &UsageParams,
) -> Result<UsageReport, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let zone = tenants::zone(&mut tx).await?;
    let query = parse(params, zone.day(state.clock.now()))?;
    let report = store_usage::report(&mut tx, &zone, &query).await?;
    tx.commit().await?;
    Ok(report)
}

/// The report's series as CSV: one row per day, week or month, platform keys and the tenant's
/// own apart, amounts in dollars with six decimals (exact: micro-dollars).
pub fn csv(report: &UsageReport) -> String {
    let usd = |micro: i64| {
        let sign = if micro < 0 { "-" } else { "" };
        let m = micro.unsigned_abs();
        format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
    };
    let mut out = String::from(
        "period_start,calls,input_tokens,output_tokens,cached_input_tokens,cost_usd,unpriced_calls,\
         own_key_calls,own_key_input_tokens,own_key_output_tokens,own_key_cost_usd,\
         own_key_unpriced_calls,conversations,customer_messages,handoffs\r\n",
    );
    for p in &report.series {
        let (a, o) = (&p.platform, &p.own_keys);
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
            p.start,
            a.calls,
            a.input_tokens,
            a.output_tokens,
            a.cached_input_tokens,
            usd(a.cost_micro_usd),
            a.unpriced_calls,
            o.calls,
            o.input_tokens,
            o.output_tokens,
            usd(o.cost_micro_usd),
            o.unpriced_calls,
            p.conversations,
            p.messages,
            p.handoffs,
        ));
    }
    out
}

/// The usage report's series as a CSV download (same parameters as the report).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/usage/export", tag = "usage",
    params(("tenant_id" = Uuid, Path), UsageParams),
    responses((status = 200, content_type = "text/csv", body = String),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn export(
    auth: Authorized,
    state: web::Data<AppState>,
    params: web::Query<UsageParams>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let report = tenant_report(&auth, &state, &params).await?;
    Ok(actix_web::HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"usage-{}-to-{}.csv\"",
                report.from, report.to
            ),
        ))
        .body(csv(&report)))
}

/// `?from=&to=&top=` of the platform's report: UTC days.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PlatformParams {
    /// First UTC day, inclusive; default the 1st of this month.
    pub from: Option<String>,
    /// Last UTC day, inclusive; default today.
    pub to: Option<String>,
    /// How many of the top spenders to list: 1–100, default 20.
    pub top: Option<String>,
}

/// Every tenant's usage added up, and the top spenders on the platform's keys (platform admins;
/// each listed tenant's trail records the read).
#[utoipa::path(get, path = "/api/platform/usage", tag = "usage",
    params(PlatformParams),
    responses((status = 200, body = shared::usage::PlatformUsage), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn platform(
    auth: Authorized,
    state: web::Data<AppState>,
    params: web::Query<PlatformParams>,
) -> Result<web::Json<shared::usage::PlatformUsage>, ApiError> {
    let mut errors = Errors::default();
    let from = date(&mut errors, "from", given(&params.from));
    let to = date(&mut errors, "to", given(&params.to));
    let top = match given(&params.top) {
        None => 20,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                errors.add("top", "must be 1 to 100");
                20
            }
        },
    };
    let today = state.clock.now().date_naive();
    let (from, to) = range(&mut errors, from, to, today);
    errors.finish()?;
    let utc = TenantZone::default();
    let (start, end) = (utc.start_of(from), utc.start_of(to + Duration::days(1)));
    let spends = store_usage::across_tenants(&state.store, start, end).await?;
    let mut platform = shared::usage::LlmTotals::default();
    let mut own_keys = shared::usage::LlmTotals::default();
    for s in &spends {
        platform.add(&s.platform);
        own_keys.add(&s.own_keys);
    }
    let tenants = i64::try_from(spends.len()).unwrap_or(i64::MAX);
    let listed: Vec<_> = spends.into_iter().take(top).collect();
    // Each tenant whose figures are shown learns of it in its own trail.
    for spend in &listed {
        let mut tx = state.store.tenant_tx(spend.tenant_id).await?;
        super::record(
            &mut tx,
            &auth,
            crate::store::audit::Action::UsageReadByPlatform,
            crate::store::audit::Target::None,
            serde_json::json!({ "from": from, "to": to }),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(web::Json(shared::usage::PlatformUsage {
        from,
        to,
        platform,
        own_keys,
        tenants,
        top: listed,
    }))
}
