//! The usage report: LLM calls (per quarter hour, so any time zone's days add up exactly) and
//! conversation traffic, summed by the tenant's own calendar days, then into days, weeks or
//! months, with breakdowns by agent, model, channel and whose key paid.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use shared::AgentId;
use shared::usage::{Granularity, LlmTotals, UsageLine, UsagePoint, UsageReport};

use super::{StoreResult, TenantTx};
use crate::time::TenantZone;

/// What to report on: days of the tenant's calendar, both included, and optional filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: Granularity,
    pub agent: Option<AgentId>,
    pub channel: Option<String>,
    /// `platform` or `tenant`.
    pub key_owner: Option<String>,
    /// `provider/model`.
    pub model: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct CallRow {
    day: NaiveDate,
    agent_id: Option<AgentId>,
    agent_name: Option<String>,
    channel: Option<String>,
    key_owner: String,
    provider: String,
    model: String,
    #[sqlx(flatten)]
    counters: Counters,
}

/// The counters of `llm_usage` summed, as a row carries them.
#[derive(Debug, sqlx::FromRow)]
struct Counters {
    calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cost_micro_usd: i64,
    unpriced_calls: i64,
}

impl Counters {
    fn totals(&self) -> LlmTotals {
        LlmTotals {
            calls: self.calls,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cost_micro_usd: self.cost_micro_usd,
            unpriced_calls: self.unpriced_calls,
        }
    }
}

/// Of a pair of totals kept apart by whose key paid, the one of `key_owner`.
fn side<'a>(
    platform: &'a mut LlmTotals,
    own_keys: &'a mut LlmTotals,
    key_owner: &str,
) -> &'a mut LlmTotals {
    if key_owner == "tenant" {
        own_keys
    } else {
        platform
    }
}

#[derive(Debug, sqlx::FromRow)]
struct TrafficRow {
    day: NaiveDate,
    conversations: i64,
    messages: i64,
    handoffs: i64,
}

/// The first day of the period `day` is in.
pub fn period_start(day: NaiveDate, granularity: Granularity) -> NaiveDate {
    match granularity {
        Granularity::Day => day,
        Granularity::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Granularity::Month => day.with_day(1).unwrap_or(day),
    }
}

/// The first day of the period after the one starting on `start`.
fn next_period(start: NaiveDate, granularity: Granularity) -> NaiveDate {
    match granularity {
        Granularity::Day => start + Duration::days(1),
        Granularity::Week => start + Duration::days(7),
        Granularity::Month => start
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(start + Duration::days(31)),
    }
}

/// The report for `q` in the tenant's `zone`.
pub async fn report(
    tx: &mut TenantTx,
    zone: &TenantZone,
    q: &ReportQuery,
) -> StoreResult<UsageReport> {
    let from_at = zone.start_of(q.from);
    let to_at = zone.start_of(q.to + Duration::days(1));
    let calls = sqlx::query_as::<_, CallRow>(
        "SELECT (u.bucket AT TIME ZONE $3)::date AS day, u.agent_id, a.name AS agent_name, \
                u.channel, u.key_owner, u.provider, u.model, \
                sum(u.calls)::bigint AS calls, sum(u.input_tokens)::bigint AS input_tokens, \
                sum(u.output_tokens)::bigint AS output_tokens, \
                sum(u.cached_input_tokens)::bigint AS cached_input_tokens, \
                sum(u.cost_micro_usd)::bigint AS cost_micro_usd, \
                sum(u.unpriced_calls)::bigint AS unpriced_calls \
           FROM llm_usage u LEFT JOIN agents a ON a.id = u.agent_id \
          WHERE u.bucket >= $1 AND u.bucket < $2 \
            AND ($4::uuid IS NULL OR u.agent_id = $4) \
            AND ($5::text IS NULL OR u.channel = $5) \
            AND ($6::text IS NULL OR u.key_owner = $6) \
            AND ($7::text IS NULL OR u.provider || '/' || u.model = $7) \
          GROUP BY 1, u.agent_id, a.name, u.channel, u.key_owner, u.provider, u.model",
    )
    .bind(from_at)
    .bind(to_at)
    .bind(zone.name())
    .bind(q.agent)
    .bind(q.channel.as_deref())
    .bind(q.key_owner.as_deref())
    .bind(q.model.as_deref())
    .fetch_all(tx.connection())
    .await?;
    // Conversation traffic is not of a key or a model: with those filters it is not counted.
    let traffic = if q.key_owner.is_some() || q.model.is_some() {
        Vec::new()
    } else {
        sqlx::query_as::<_, TrafficRow>(
            "WITH convs AS ( \
                 SELECT c.id, c.created_at FROM conversations c \
                   JOIN channel_connections k ON k.id = c.channel_connection_id \
                  WHERE ($4::uuid IS NULL OR c.agent_id = $4) AND ($5::text IS NULL OR k.kind = $5)), \
             days AS ( \
                 SELECT (created_at AT TIME ZONE $3)::date AS day, 1 AS c, 0 AS m, 0 AS h \
                   FROM convs WHERE created_at >= $1 AND created_at < $2 \
                 UNION ALL \
                 SELECT (m.created_at AT TIME ZONE $3)::date, 0, 1, 0 \
                   FROM messages m JOIN convs ON convs.id = m.conversation_id \
                  WHERE m.direction = 'inbound' AND m.created_at >= $1 AND m.created_at < $2 \
                 UNION ALL \
                 SELECT (e.created_at AT TIME ZONE $3)::date, 0, 0, 1 \
                   FROM escalations e JOIN convs ON convs.id = e.conversation_id \
                  WHERE e.created_at >= $1 AND e.created_at < $2) \
             SELECT day, sum(c)::bigint AS conversations, sum(m)::bigint AS messages, \
                    sum(h)::bigint AS handoffs \
               FROM days GROUP BY day",
        )
        .bind(from_at)
        .bind(to_at)
        .bind(zone.name())
        .bind(q.agent)
        .bind(q.channel.as_deref())
        .fetch_all(tx.connection())
        .await?
    };
    Ok(assemble(zone, q, &calls, &traffic))
}

fn add_to(point: &mut UsagePoint, key_owner: &str, t: &LlmTotals) {
    side(&mut point.platform, &mut point.own_keys, key_owner).add(t);
}

fn add_line(
    lines: &mut BTreeMap<String, UsageLine>,
    key: String,
    label: String,
    owner: &str,
    t: &LlmTotals,
) {
    let line = lines.entry(key.clone()).or_insert_with(|| UsageLine {
        key,
        label,
        platform: LlmTotals::default(),
        own_keys: LlmTotals::default(),
    });
    side(&mut line.platform, &mut line.own_keys, owner).add(t);
}

/// Dearest first, then by key.
fn sorted(lines: BTreeMap<String, UsageLine>) -> Vec<UsageLine> {
    let mut lines: Vec<UsageLine> = lines.into_values().collect();
    lines.sort_by(|a, b| {
        let cost = |l: &UsageLine| l.platform.cost_micro_usd + l.own_keys.cost_micro_usd;
        cost(b).cmp(&cost(a)).then_with(|| a.key.cmp(&b.key))
    });
    lines
}

fn assemble(
    zone: &TenantZone,
    q: &ReportQuery,
    calls: &[CallRow],
    traffic: &[TrafficRow],
) -> UsageReport {
    let mut series: BTreeMap<NaiveDate, UsagePoint> = BTreeMap::new();
    let mut start = period_start(q.from, q.granularity);
    while start <= q.to {
        series.insert(
            start,
            UsagePoint {
                start,
                ..UsagePoint::default()
            },
        );
        start = next_period(start, q.granularity);
    }
    let mut totals = UsagePoint {
        start: q.from,
        ..UsagePoint::default()
    };
    let (mut by_agent, mut by_model, mut by_channel, mut by_owner) = (
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    for r in calls {
        let t = r.counters.totals();
        if let Some(point) = series.get_mut(&period_start(r.day, q.granularity)) {
            add_to(point, &r.key_owner, &t);
        }
        add_to(&mut totals, &r.key_owner, &t);
        let (agent_key, agent_label) = match (r.agent_id, &r.agent_name) {
            (Some(id), Some(name)) => (id.to_string(), name.clone()),
            (Some(id), None) => (id.to_string(), "Deleted agent".to_string()),
            (None, _) => (String::new(), "No agent".to_string()),
        };
        add_line(&mut by_agent, agent_key, agent_label, &r.key_owner, &t);
        let model = format!("{}/{}", r.provider, r.model);
        add_line(&mut by_model, model.clone(), model, &r.key_owner, &t);
        let channel = r.channel.clone().unwrap_or_default();
        let channel_label = if channel.is_empty() {
            "No conversation".to_string()
        } else {
            channel.clone()
        };
        add_line(&mut by_channel, channel, channel_label, &r.key_owner, &t);
        let owner_label = if r.key_owner == "tenant" {
            "Your own keys"
        } else {
            "Platform keys"
        };
        add_line(
            &mut by_owner,
            r.key_owner.clone(),
            owner_label.to_string(),
            &r.key_owner,
            &t,
        );
    }
    for r in traffic {
        for point in [
            series.get_mut(&period_start(r.day, q.granularity)),
            Some(&mut totals),
        ]
        .into_iter()
        .flatten()
        {
            point.conversations += r.conversations;
            point.messages += r.messages;
            point.handoffs += r.handoffs;
        }
    }
    UsageReport {
        zone: zone.name().to_string(),
        from: q.from,
        to: q.to,
        granularity: q.granularity,
        series: series.into_values().collect(),
        totals,
        by_agent: sorted(by_agent),
        by_model: sorted(by_model),
        by_channel: sorted(by_channel),
        by_key_owner: sorted(by_owner),
    }
}

/// Every tenant's LLM usage from `from` (inclusive) to `to` (exclusive), through the one
/// cross-tenant path (`platform_usage`): per tenant, the platform's keys and the tenant's own
/// apart. For platform admins only: the caller checks, and records the read.
pub async fn across_tenants(
    store: &super::Store,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Vec<shared::usage::TenantSpend>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        tenant_id: uuid::Uuid,
        tenant_name: String,
        key_owner: String,
        #[sqlx(flatten)]
        counters: Counters,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant_id, tenant_name, key_owner, calls, input_tokens, output_tokens, \
                cached_input_tokens, cost_micro_usd, unpriced_calls \
           FROM platform_usage($1, $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_all(store.pool())
    .await?;
    let mut by_tenant: BTreeMap<uuid::Uuid, shared::usage::TenantSpend> = BTreeMap::new();
    for row in rows {
        let spend = by_tenant
            .entry(row.tenant_id)
            .or_insert_with(|| shared::usage::TenantSpend {
                tenant_id: shared::TenantId::from_uuid(row.tenant_id),
                tenant_name: row.tenant_name,
                platform: LlmTotals::default(),
                own_keys: LlmTotals::default(),
            });
        side(&mut spend.platform, &mut spend.own_keys, &row.key_owner).add(&row.counters.totals());
    }
    let mut out: Vec<_> = by_tenant.into_values().collect();
    out.sort_by(|a, b| {
        b.platform
            .cost_micro_usd
            .cmp(&a.platform.cost_micro_usd)
            .then(b.platform.calls.cmp(&a.platform.calls))
            .then(a.tenant_id.as_uuid().cmp(b.tenant_id.as_uuid()))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn periods_start_on_the_day_the_monday_or_the_first() {
        assert_eq!(
            period_start(day("2026-12-02"), Granularity::Day),
            day("2026-12-02")
        );
        // 2 December 2026 is a Wednesday.
        assert_eq!(
            period_start(day("2026-12-02"), Granularity::Week),
            day("2026-11-30")
        );
        assert_eq!(
            period_start(day("2026-12-31"), Granularity::Month),
            day("2026-12-01")
        );
        assert_eq!(
            next_period(day("2026-12-01"), Granularity::Month),
            day("2027-01-01")
        );
    }
}
