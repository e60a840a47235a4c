//! Cost and usage: what the usage API reports (in the tenant's own calendar), the budgets a
//! tenant sets over its spend, and the alerts they raise. Money is in millionths of a US dollar
//! (`micro_usd`), never a float.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AgentId, TenantId, text_enum};

/// The length of one point of a usage series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Day,
    /// Weeks start on Monday.
    Week,
    Month,
}

text_enum!(Granularity { Day => "day", Week => "week", Month => "month" });

/// Whose key paid for a call: the platform's (billed by the platform) or the tenant's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyOwner {
    Platform,
    Tenant,
}

text_enum!(KeyOwner { Platform => "platform", Tenant => "tenant" });

/// `GET /api/tenants/{tenant_id}/usage` (and its CSV export). Dates are days of the tenant's
/// own calendar, both included; the default is the current month so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
pub struct UsageQuery {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub granularity: Option<Granularity>,
    pub agent: Option<AgentId>,
    /// `slack`, `whatsapp` or `web`.
    pub channel: Option<String>,
    pub key_owner: Option<KeyOwner>,
    pub model: Option<String>,
}

/// LLM calls added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmTotals {
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    /// The cost of the calls whose model has a price.
    pub cost_micro_usd: i64,
    /// Calls whose model has no price: their cost is unknown, not zero.
    pub unpriced_calls: i64,
}

impl LlmTotals {
    pub fn add(&mut self, other: &LlmTotals) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cost_micro_usd += other.cost_micro_usd;
        self.unpriced_calls += other.unpriced_calls;
    }
}

/// One period of usage: LLM calls on the platform's keys and on the tenant's own, apart, and
/// the conversation traffic of the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsagePoint {
    /// The period's first day (tenant's calendar).
    pub start: NaiveDate,
    pub platform: LlmTotals,
    pub own_keys: LlmTotals,
    /// Conversations started in the period.
    pub conversations: i64,
    /// Messages customers sent in the period.
    pub messages: i64,
    /// Conversations handed to a person in the period.
    pub handoffs: i64,
}

/// One line of a breakdown (by agent, model, channel or key owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageLine {
    /// What the line is about: an agent's id, `provider/model`, a channel, a key owner; empty
    /// for calls made for no agent or channel (e.g. memory summaries are of no channel).
    pub key: String,
    /// The same in words (an agent's name; "deleted agent" for one that is gone).
    pub label: String,
    pub platform: LlmTotals,
    pub own_keys: LlmTotals,
}

/// The answer of `GET /api/tenants/{tenant_id}/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    /// The tenant's time zone the days are of.
    pub zone: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: Granularity,
    /// Every period from `from` to `to`, empty ones included.
    pub series: Vec<UsagePoint>,
    /// The whole range (its `start` is `from`).
    pub totals: UsagePoint,
    pub by_agent: Vec<UsageLine>,
    pub by_model: Vec<UsageLine>,
    pub by_channel: Vec<UsageLine>,
    pub by_key_owner: Vec<UsageLine>,
}

/// `GET /api/platform/usage`: every tenant's usage over a range of UTC days.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
pub struct PlatformUsageQuery {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// How many of the top spenders to list (1–100, default 20).
    pub top: Option<u32>,
}

/// One tenant's spend in the platform's view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantSpend {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub platform: LlmTotals,
    pub own_keys: LlmTotals,
}

/// The answer of `GET /api/platform/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformUsage {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub platform: LlmTotals,
    pub own_keys: LlmTotals,
    pub tenants: i64,
    /// Highest platform-key spend first.
    pub top: Vec<TenantSpend>,
}

/// What happens once a budget is spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BudgetPolicy {
    /// Keep answering; the alerts are the only effect.
    #[default]
    Soft,
    /// Keep answering with a cheaper model group (`downgrade_group`).
    Downgrade,
    /// Stop calling the LLM: every conversation that would need a call is handed to a person,
    /// and the customer is told so politely.
    Handoff,
}

text_enum!(BudgetPolicy { Soft => "soft", Downgrade => "downgrade", Handoff => "handoff" });

/// What a budget applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "agent_id", rename_all = "snake_case")]
pub enum BudgetScope {
    /// Everything the tenant spends.
    Tenant,
    /// One agent's calls.
    Agent(AgentId),
}

/// `PUT /api/tenants/{tenant_id}/budgets/tenant` and `…/budgets/agents/{agent_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    /// The monthly amount (calendar month in the tenant's time zone), > 0.
    pub monthly_micro_usd: i64,
    /// Percentages of the amount that raise an alert, 1–100, each once a month. Default
    /// 50, 80, 100.
    #[serde(default)]
    pub thresholds: Option<Vec<u8>>,
    #[serde(default)]
    pub policy: BudgetPolicy,
    /// The model group to switch to under the `downgrade` policy.
    #[serde(default)]
    pub downgrade_group: Option<String>,
    /// Count calls made with the tenant's own keys too (by default only the platform's keys).
    #[serde(default)]
    pub count_own_keys: bool,
    /// Also alert this URL (an HTTPS POST with a JSON body), through the outbound allowlist.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// A budget as set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Budget {
    pub id: Uuid,
    pub scope: BudgetScope,
    pub monthly_micro_usd: i64,
    pub thresholds: Vec<u8>,
    pub policy: BudgetPolicy,
    pub downgrade_group: Option<String>,
    pub count_own_keys: bool,
    pub webhook_url: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A budget with where its month stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetStatus {
    pub budget: Budget,
    /// The agent's name for an agent's budget.
    pub agent_name: Option<String>,
    /// `YYYY-MM` of the tenant's calendar.
    pub period: String,
    /// Settled spend counted against the budget this month.
    pub spent_micro_usd: i64,
    /// Held for calls in flight (worst case), released when they settle or expire.
    pub reserved_micro_usd: i64,
    /// Spent as a percentage of the amount (may pass 100).
    pub percent: u32,
    /// Spend at the end of the month at this month's pace so far.
    pub forecast_micro_usd: i64,
    /// Spent in full: the policy applies now.
    pub exhausted: bool,
    /// The thresholds already crossed this month.
    pub crossed: Vec<u8>,
}

/// A threshold crossed: shown as a banner and in the notifications list, mailed to the
/// tenant's admins and posted to the budget's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetAlert {
    pub id: Uuid,
    pub budget_id: Uuid,
    pub scope: BudgetScope,
    pub agent_name: Option<String>,
    pub period: String,
    pub threshold: u8,
    pub spent_micro_usd: i64,
    pub monthly_micro_usd: i64,
    pub policy: BudgetPolicy,
    pub at: DateTime<Utc>,
    /// Admins mailed (count), once the mail went.
    pub mailed: Option<i32>,
    /// The webhook's answer, once it was posted (`None` without a webhook or before).
    pub webhook_status: Option<i32>,
}

/// The default alert thresholds.
pub const DEFAULT_THRESHOLDS: [u8; 3] = [50, 80, 100];

/// Dollars and cents of an amount in micro-dollars, for people (`$12.34`; below a cent, every
/// digit that counts: `$0.0042`, `$0.000054`).
pub fn format_usd(micro_usd: i64) -> String {
    let sign = if micro_usd < 0 { "-" } else { "" };
    let m = micro_usd.unsigned_abs();
    if m != 0 && m < 10_000 {
        // Below a cent: every digit that is not a trailing zero, four at least.
        let digits = format!("{m:06}");
        let kept = digits.trim_end_matches('0');
        return format!("{sign}$0.{kept:0<4}");
    }
    let cents = (m + 5_000) / 10_000;
    let dollars = cents / 100;
    let mut grouped = String::new();
    let digits = dollars.to_string();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}${grouped}.{:02}", cents % 100)
}

/// A dollar amount typed by a person (`25`, `25.5`, `$1,200.00`) in micro-dollars; `None` for
/// anything else (negative, more than six decimals, not a number).
pub fn parse_usd(text: &str) -> Option<i64> {
    let t: String = text
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 6
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_typed_by_people_become_micro_dollars_exactly() {
        assert_eq!(parse_usd("25"), Some(25_000_000));
        assert_eq!(parse_usd("$1,200.50"), Some(1_200_500_000));
        assert_eq!(parse_usd("0.000001"), Some(1));
        assert_eq!(parse_usd(".5"), Some(500_000));
        assert_eq!(parse_usd(""), None);
        assert_eq!(parse_usd("-5"), None);
        assert_eq!(parse_usd("1.0000001"), None);
        assert_eq!(parse_usd("ten"), None);
        assert_eq!(parse_usd("99999999999999999999"), None);
    }

    #[test]
    fn amounts_read_as_dollars_and_cents() {
        assert_eq!(format_usd(0), "$0.00");
        assert_eq!(format_usd(1_234_567), "$1.23");
        assert_eq!(format_usd(1_235_000), "$1.24");
        assert_eq!(format_usd(12_345_678_900), "$12,345.68");
        assert_eq!(format_usd(4_200), "$0.0042");
        assert_eq!(format_usd(54), "$0.000054");
        assert_eq!(format_usd(1), "$0.000001");
        assert_eq!(format_usd(9_999), "$0.009999");
        assert_eq!(format_usd(100), "$0.0001");
        assert_eq!(format_usd(-2_500_000), "-$2.50");
    }

    #[test]
    fn names_match_serde() {
        for g in Granularity::ALL {
            assert_eq!(serde_json::to_value(g).unwrap(), g.as_str());
        }
        for p in BudgetPolicy::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for k in KeyOwner::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let scope = BudgetScope::Agent(AgentId::from(Uuid::nil()));
        let json = serde_json::to_value(scope).unwrap();
        assert_eq!(json["kind"], "agent");
    }
}
