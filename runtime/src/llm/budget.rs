//! Budget arithmetic for one LLM call: the worst case it may cost, reserved before it, and what
//! it is charged after it. A model without a price is charged at a deliberately high default
//! price, so it is never free by accident.

use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use shared::{AgentId, TenantId};
use tokio::sync::Notify;
use uuid::Uuid;

use super::cost;
use super::pool::Pool;
use super::types::{CallReport, ChatRequest, Part, Usage};
use crate::store::audit::{Action, Actor, NewEvent, Target};
use crate::store::budgets::{self, BudgetRow, Standing};
use crate::store::jobs::{self as store_jobs, NewJob};
use crate::store::{Store, StoreResult, TenantTx};
use crate::time::TenantZone;

/// What a call to a model without a price is charged per million input tokens ($15; the store
/// charges the same when it opens a month from recorded usage).
pub const UNPRICED_INPUT_MICRO_USD_PER_MTOK: i64 = 15_000_000;
/// … and per million output tokens ($75).
pub const UNPRICED_OUTPUT_MICRO_USD_PER_MTOK: i64 = 75_000_000;

/// What one image is counted as, in input tokens: more than any provider bills for one.
const TOKENS_PER_IMAGE: usize = 5_000;

/// An upper bound of the request's input tokens: the providers' tokenizers are byte-level, so a
/// token covers at least one byte of text; every message and tool costs a few tokens of framing.
pub fn estimated_input_tokens(req: &ChatRequest) -> u64 {
    let mut bytes = req.system.as_ref().map_or(0, String::len);
    let mut framing = 8usize;
    for message in &req.messages {
        framing += 8;
        for part in &message.parts {
            bytes += match part {
                Part::Text(text) => text.len(),
                // Providers bill an image by its size in tiles, never above this.
                Part::Image { .. } => TOKENS_PER_IMAGE,
                Part::ToolCall {
                    name, arguments, ..
                } => name.len() + arguments.to_string().len(),
                Part::ToolResult { content, .. } => content.len(),
            };
        }
    }
    for tool in &req.tools {
        framing += 16;
        bytes += tool.name.len() + tool.description.len() + tool.parameters.to_string().len();
    }
    (bytes + framing) as u64
}

/// What `usage` costs on `provider`'s `model`, the default price for a model without one.
pub fn charged_micro_usd(provider: &str, model: &str, usage: &Usage) -> i64 {
    cost::micro_usd(provider, model, usage, SystemTime::now())
        .unwrap_or_else(|| unpriced_micro_usd(usage))
}

/// The default price of `usage`.
pub fn unpriced_micro_usd(usage: &Usage) -> i64 {
    let per = |tokens: u64, rate: i64| -> i64 {
        let micro = i128::from(tokens) * i128::from(rate) / 1_000_000;
        i64::try_from(micro).unwrap_or(i64::MAX)
    };
    per(usage.input_tokens, UNPRICED_INPUT_MICRO_USD_PER_MTOK)
        .saturating_add(per(usage.output_tokens, UNPRICED_OUTPUT_MICRO_USD_PER_MTOK))
}

/// The most the request can cost on any of `models` (`(provider, model)`: every deployment the
/// pool may fall back to): its estimated input and `max_tokens` of output.
pub fn worst_case_micro_usd<'a>(
    models: impl IntoIterator<Item = (&'a str, &'a str)>,
    req: &ChatRequest,
) -> i64 {
    let usage = Usage {
        input_tokens: estimated_input_tokens(req),
        output_tokens: u64::from(req.max_tokens),
        cached_input_tokens: 0,
    };
    models
        .into_iter()
        .map(|(provider, model)| charged_micro_usd(provider, model, &usage))
        .max()
        .unwrap_or_else(|| unpriced_micro_usd(&usage))
}

/// The most `req` can cost on any deployment of `pool` (it may fall back to any of them).
pub fn worst_case_on(pool: &Pool, req: &ChatRequest) -> i64 {
    worst_case_micro_usd(
        pool.groups()
            .iter()
            .flat_map(|g| &g.deployments)
            .map(|d| (d.provider.name(), d.model.as_str())),
        req,
    )
}

/// The job that tells a tenant's admins (and its webhook) a threshold was crossed.
pub const ALERT_JOB: &str = "budget.alert";

/// A call's hold on the budgets that apply to it: settled with the call's real cost in the
/// transaction that records it, or released if the call fails.
#[derive(Debug, Default)]
pub struct Hold {
    period: String,
    /// Each budget, with the reservation held on it (`None`: the budget is spent and its policy
    /// let the call through; its spend is still counted).
    entries: Vec<(Option<Uuid>, BudgetRow)>,
    /// The call's worst case: what a call whose cost is unknown (it timed out) is charged.
    worst_case: i64,
}

/// What the budgets say about one more call.
#[derive(Debug)]
pub enum Gate {
    /// Make the call — on the group `downgrade` names, when a spent budget says so — and settle
    /// `hold` after it.
    Call {
        hold: Hold,
        downgrade: Option<String>,
    },
    /// A spent budget hands new work to a person: the call is not made.
    HandOff { budget: Uuid },
}

/// Wakes a call waiting for room when another of its tenant's calls settles or lets go: one
/// waiter per settlement, which chains (its own call settles in turn). Sharded by tenant, a
/// fixed number, so memory stays bounded; a wake that lands on another tenant's waiter (or on
/// another node's settlement, which never wakes anyone here) is covered by the waiters' polling.
static SETTLED: LazyLock<Vec<Notify>> = LazyLock::new(|| (0..64).map(|_| Notify::new()).collect());

fn settled(tenant: TenantId) -> &'static Notify {
    let bytes = tenant.as_uuid().as_u128();
    &SETTLED[(bytes % SETTLED.len() as u128) as usize]
}

/// One call's request for admission.
#[derive(Debug)]
pub struct Ask<'a> {
    pub tenant: TenantId,
    /// The agent the call is for (its own budget applies too).
    pub agent: Option<AgentId>,
    /// The tenant's budgets (from its configuration snapshot, or read for the call).
    pub budgets: &'a [BudgetRow],
    pub zone: &'a TenantZone,
    /// The call's worst-case cost (`worst_case_on`).
    pub worst_case: i64,
    pub now: DateTime<Utc>,
    /// How long the hold lives if the call is never settled (a crashed turn).
    pub hold_for: Duration,
    /// How long to wait for calls in flight to settle when they hold the rest of a budget whose
    /// policy is not soft, before treating it as spent.
    pub wait: Duration,
}

/// Admits a call, or not: reserves its worst case on every budget that applies (the tenant's
/// and the agent's), all or nothing, each under its month's row lock. A budget that is spent
/// applies its policy: `soft` lets the call through, `downgrade` sends it to the cheaper group,
/// `handoff` stops it. One whose remaining room is held by calls in flight is waited for (they
/// may settle below their worst case) for up to `ask.wait`.
pub async fn admit(store: &Store, ask: &Ask<'_>) -> StoreResult<Gate> {
    let applying: Vec<&BudgetRow> = ask
        .budgets
        .iter()
        .filter(|b| b.agent_id.is_none() || b.agent_id == ask.agent)
        .collect();
    if applying.is_empty() {
        return Ok(Gate::Call {
            hold: Hold::default(),
            downgrade: None,
        });
    }
    let period = ask.zone.month_key(ask.now);
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        // Listening before looking, so a settlement in between is not missed.
        let wake = settled(ask.tenant).notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let waited_out = started.elapsed() >= ask.wait;
        let mut tx = store.tenant_tx(ask.tenant).await?;
        // A hold is worth no disk flush: should Postgres crash before it reaches the disk, the
        // call still settles (against no hold) — only the admission of calls in that instant
        // could have been stricter.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(tx.connection())
            .await?;
        let mut entries = Vec::with_capacity(applying.len());
        let (mut waiting, mut handoff, mut downgrade) = (false, None, None);
        // The tenant's budget first, then the agent's: every caller locks in the same order.
        for budget in &applying {
            let id = Uuid::new_v4();
            let expires = ask.now + ask.hold_for;
            let standing = budgets::reserve(
                &mut tx,
                id,
                budget,
                &period,
                ask.worst_case,
                ask.now,
                expires,
            )
            .await?;
            let spent = match standing {
                Standing::Reserved => {
                    entries.push((Some(id), (*budget).clone()));
                    continue;
                }
                // Removed since the snapshot was taken: it caps nothing.
                Standing::Gone => continue,
                Standing::Spent => true,
                Standing::HeldByCallsInFlight => waited_out,
            };
            entries.push((None, (*budget).clone()));
            match (budget.policy.as_str(), spent) {
                ("soft", _) => {}
                (_, false) => waiting = true,
                ("downgrade", true) => {
                    downgrade = downgrade.or_else(|| budget.downgrade_group.clone());
                }
                (_, true) => handoff = handoff.or(Some(budget.id)),
            }
        }
        if let Some(budget) = handoff {
            // Nothing is held: the transaction is rolled back.
            drop(tx);
            return Ok(Gate::HandOff { budget });
        }
        if waiting {
            drop(tx);
            tokio::select! {
                () = &mut wake => {}
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(100));
            continue;
        }
        tx.commit().await?;
        return Ok(Gate::Call {
            hold: Hold {
                period,
                entries,
                worst_case: ask.worst_case,
            },
            downgrade,
        });
    }
}

/// Lets go of a call's reservations (it failed: the provider charged nothing).
pub async fn release(store: &Store, tenant: TenantId, hold: &Hold) -> StoreResult<()> {
    if hold.entries.iter().all(|(r, _)| r.is_none()) {
        return Ok(());
    }
    let mut tx = store.tenant_tx(tenant).await?;
    for (reservation, budget) in &hold.entries {
        if let Some(id) = reservation {
            budgets::release(&mut tx, *id, budget.id).await?;
        }
    }
    tx.commit().await?;
    settled(tenant).notify_one();
    Ok(())
}

/// Settles a call in the transaction that records it: its real cost (nothing on the tenant's
/// own key, unless the budget counts those) goes to each budget's month and the hold is
/// deleted; each threshold it crosses is recorded once a month and its alert job enqueued.
/// Returns the audit events of the crossings, for the caller to append last.
pub async fn settle_in(
    tx: &mut TenantTx,
    hold: &Hold,
    report: &CallReport,
) -> StoreResult<Vec<NewEvent>> {
    if hold.entries.is_empty() {
        return Ok(Vec::new());
    }
    let cost = charged_micro_usd(report.provider, &report.model, &report.completion.usage);
    charge(tx, hold, |budget| {
        if report.byo_key && !budget.count_own_keys {
            0
        } else {
            cost
        }
    })
    .await
}

/// Settles a call whose cost is unknown — it ran past the turn's deadline, and the provider may
/// well have billed it — at its worst case, in a transaction of its own; the crossings' audit
/// events are appended with it.
pub async fn settle_unknown(store: &Store, tenant: TenantId, hold: &Hold) -> StoreResult<()> {
    if hold.entries.is_empty() {
        return Ok(());
    }
    let mut tx = store.tenant_tx(tenant).await?;
    let events = charge(&mut tx, hold, |_| hold.worst_case).await?;
    for event in &events {
        crate::store::audit::append(&mut tx, event).await?;
    }
    tx.commit().await
}

/// Charges each of the hold's budgets what `charged` says, records the thresholds crossed and
/// enqueues their alerts; returns the crossings' audit events.
async fn charge(
    tx: &mut TenantTx,
    hold: &Hold,
    charged: impl Fn(&BudgetRow) -> i64,
) -> StoreResult<Vec<NewEvent>> {
    let mut events = Vec::new();
    for (reservation, budget) in &hold.entries {
        let Some((before, after)) =
            budgets::settle(tx, *reservation, budget.id, &hold.period, charged(budget)).await?
        else {
            // Removed since the call was admitted: nothing to count it against.
            continue;
        };
        for threshold in
            budgets::crossed(&budget.thresholds, budget.monthly_micro_usd, before, after)
        {
            let Some(alert) =
                budgets::record_alert(tx, budget, &hold.period, threshold, after).await?
            else {
                continue;
            };
            let mut job = NewJob::new(ALERT_JOB, serde_json::json!({ "alert_id": alert }));
            job.max_attempts = Some(20);
            store_jobs::enqueue(tx, &job).await?;
            events.push(NewEvent {
                actor: Actor::System,
                action: Action::BudgetThresholdCrossed,
                target: budget.agent_id.map_or(Target::None, Target::Agent),
                details: serde_json::json!({
                    "budget_id": budget.id,
                    "alert_id": alert,
                    "period": hold.period,
                    "threshold": threshold,
                    "spent_micro_usd": after,
                    "monthly_micro_usd": budget.monthly_micro_usd,
                }),
                request_id: None,
            });
        }
    }
    // A waiter wakes and asks again; its reservation waits on the period rows this
    // transaction holds, so it sees the settled spend once this commits.
    if hold.entries.iter().any(|(r, _)| r.is_some()) {
        settled(tx.tenant()).notify_one();
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::Message;

    fn request(text: &str, max_tokens: u32) -> ChatRequest {
        ChatRequest {
            system: Some("You are helpful.".into()),
            messages: vec![Message::user(text)],
            tools: Vec::new(),
            temperature: None,
            max_tokens,
        }
    }

    #[test]
    fn a_model_without_a_price_is_charged_the_default_never_nothing() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cached_input_tokens: 0,
        };
        assert_eq!(charged_micro_usd("ollama", "llama3.2", &usage), 90_000_000);
        // A priced model is charged its price (gpt-4o-mini: $0.15 + $0.60 per million).
        assert_eq!(charged_micro_usd("openai", "gpt-4o-mini", &usage), 750_000);
        let small = Usage {
            input_tokens: 1,
            output_tokens: 0,
            cached_input_tokens: 0,
        };
        assert!(charged_micro_usd("ollama", "llama3.2", &small) >= 0);
    }

    #[test]
    fn the_worst_case_covers_the_dearest_model_a_fallback_may_reach() {
        let req = request(&"word ".repeat(300), 500);
        let input = estimated_input_tokens(&req);
        // 1,500 bytes of text and a 16-byte system prompt, a token a byte at most, plus framing.
        assert!(input >= 1_516, "{input}");
        let cheap = worst_case_micro_usd([("openai", "gpt-4o-mini")], &req);
        let both = worst_case_micro_usd(
            [
                ("openai", "gpt-4o-mini"),
                ("anthropic", "claude-3-5-haiku-latest"),
            ],
            &req,
        );
        assert!(both > cheap, "{both} > {cheap}");
        // What a call that used all of its output and the estimated input costs is covered.
        let used = Usage {
            input_tokens: input,
            output_tokens: 500,
            cached_input_tokens: 0,
        };
        assert_eq!(cheap, charged_micro_usd("openai", "gpt-4o-mini", &used));
        // No deployments at all: the default price, not zero.
        assert!(worst_case_micro_usd([], &req) > 0);
    }
}
