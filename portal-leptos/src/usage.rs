//! Usage and cost of the tenant in focus: cost and tokens over time (SVG charts drawn here),
//! totals with the platform's keys and the tenant's own apart, breakdowns by agent and model,
//! each budget's gauge with its forecast to the month's end, the alerts budgets raised (a
//! banner for this month's newest, then the list), a date range, and a CSV download. Customer
//! admins set the monthly budget; operators read.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::auth::Permission;
use shared::usage::{
    BudgetAlert, BudgetInput, BudgetPolicy, BudgetScope, BudgetStatus, Granularity, LlmTotals,
    UsageLine, UsageReport, format_usd, parse_usd,
};

use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

/// Micro-dollars as a plain amount for an input: cents when whole (`25.50`), else every digit
/// (`0.000125`), so saving again never changes the amount.
fn usd_input(micro: i64) -> String {
    if micro % 10_000 == 0 {
        let cents = micro / 10_000;
        format!("{}.{:02}", cents / 100, cents % 100)
    } else {
        let text = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
        text.trim_end_matches('0').to_string()
    }
}

fn tokens(n: i64) -> String {
    match n {
        n if n >= 10_000_000 => format!("{:.1}M", n as f64 / 1_000_000.0),
        n if n >= 10_000 => format!("{:.1}k", n as f64 / 1_000.0),
        n => n.to_string(),
    }
}

fn cost(t: &LlmTotals) -> String {
    if t.unpriced_calls > 0 {
        format!(
            "{} + {} unpriced",
            format_usd(t.cost_micro_usd),
            t.unpriced_calls
        )
    } else {
        format_usd(t.cost_micro_usd)
    }
}

/// One bar chart: a bar per period, its value in a tooltip, the axis' top and the total in the
/// caption (what the figure shows, also for screen readers).
fn bar_chart(
    title: &'static str,
    points: Vec<(String, i64)>,
    label: fn(i64) -> String,
    class: &'static str,
) -> impl IntoView {
    let total: i64 = points.iter().map(|p| p.1).sum();
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let (w, h, pad) = (600.0_f64, 180.0_f64, 4.0_f64);
    let n = points.len().max(1) as f64;
    let slot = w / n;
    let bar = (slot - pad).max(1.0);
    let first = points.first().map(|p| p.0.clone()).unwrap_or_default();
    let last = points.last().map(|p| p.0.clone()).unwrap_or_default();
    let caption = format!("{title}: {} in total", label(total));
    view! {
        <figure class="chart" data-total=total.to_string()>
            <figcaption><strong>{title}</strong>" "<span class="chart-total">{label(total)}</span><span class="muted">" in total · peak " {label(max)}</span></figcaption>
            <svg viewBox=format!("0 0 {w} {}", h + 20.0) role="img" aria-label=caption preserveAspectRatio="none">
                <line x1="0" y1=h.to_string() x2=w.to_string() y2=h.to_string() class="axis" />
                {points.into_iter().enumerate().map(|(i, (day, value))| {
                    let height = (value as f64 / max as f64) * (h - 10.0);
                    let x = i as f64 * slot + pad / 2.0;
                    view! {
                        <rect class=class x=format!("{x:.2}") y=format!("{:.2}", h - height)
                            width=format!("{bar:.2}") height=format!("{height:.2}") data-value=value.to_string()>
                            <title>{format!("{day}: {}", label(value))}</title>
                        </rect>
                    }
                }).collect_view()}
                <text x="0" y=(h + 16.0).to_string() class="tick">{first}</text>
                <text x=w.to_string() y=(h + 16.0).to_string() class="tick end">{last}</text>
            </svg>
        </figure>
    }
}

fn breakdown(title: &'static str, lines: Vec<UsageLine>) -> impl IntoView {
    view! {
        <section class="section">
            <h2>{title}</h2>
            {if lines.is_empty() {
                view! { <p class="empty">"Nothing in this range."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table class="table">
                            <thead><tr><th>"Name"</th><th>"Calls"</th><th>"Tokens in / out"</th><th>"Cost (platform keys)"</th><th>"Own keys"</th></tr></thead>
                            <tbody>
                                {lines.into_iter().map(|l| view! {
                                    <tr>
                                        <td>{if l.label.is_empty() { "—".to_string() } else { l.label.clone() }}</td>
                                        <td>{l.platform.calls + l.own_keys.calls}</td>
                                        <td>{format!("{} / {}", tokens(l.platform.input_tokens + l.own_keys.input_tokens), tokens(l.platform.output_tokens + l.own_keys.output_tokens))}</td>
                                        <td>{cost(&l.platform)}</td>
                                        <td>{if l.own_keys.calls == 0 { "—".to_string() } else { format!("{} calls, {}", l.own_keys.calls, cost(&l.own_keys)) }}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
}

fn policy_words(p: BudgetPolicy) -> &'static str {
    match p {
        BudgetPolicy::Soft => "keep answering (alerts only)",
        BudgetPolicy::Downgrade => "switch to the cheaper model group",
        BudgetPolicy::Handoff => "hand every conversation to a person",
    }
}

fn gauge(s: &BudgetStatus) -> impl IntoView {
    let monthly = s.budget.monthly_micro_usd.max(1);
    let pct = |v: i64| ((v as f64 / monthly as f64) * 100.0).clamp(0.0, 100.0);
    let name = match (&s.budget.scope, &s.agent_name) {
        (BudgetScope::Tenant, _) => "Whole workspace".to_string(),
        (BudgetScope::Agent(_), Some(n)) => n.clone(),
        (BudgetScope::Agent(_), None) => "An agent".to_string(),
    };
    let state = if s.exhausted {
        "gauge-fill danger"
    } else if s.percent >= 80 {
        "gauge-fill warn"
    } else {
        "gauge-fill"
    };
    view! {
        <div class="card budget" data-percent=s.percent.to_string()>
            <h3>{name}" · "{s.period.clone()}</h3>
            <p class="budget-figures"><strong>{format_usd(s.spent_micro_usd)}</strong>" of "{format_usd(s.budget.monthly_micro_usd)}" ("{s.percent}" %)"</p>
            // Drawn in SVG (attributes, not inline styles: the portal's CSP forbids those).
            <svg class="gauge" viewBox="0 0 100 10" preserveAspectRatio="none" role="meter"
                aria-valuemin="0" aria-valuemax="100" aria-valuenow=s.percent.min(100).to_string()
                aria-label=format!("{} % of the monthly budget spent", s.percent)>
                <rect class="gauge-track" x="0" y="0" width="100" height="10" />
                <rect class=state x="0" y="0" width=format!("{:.1}", pct(s.spent_micro_usd)) height="10" />
                <rect class="gauge-forecast" x=format!("{:.1}", pct(s.forecast_micro_usd).min(99.4)) y="0" width="0.6" height="10">
                    <title>{format!("Forecast: {}", format_usd(s.forecast_micro_usd))}</title>
                </rect>
            </svg>
            <p class="muted">{format!("Forecast for the month: {} · at 100 %: {}", format_usd(s.forecast_micro_usd), policy_words(s.budget.policy))}</p>
            {(s.reserved_micro_usd > 0).then(|| view! { <p class="muted">{format!("{} held for calls in progress.", format_usd(s.reserved_micro_usd))}</p> })}
        </div>
    }
}

#[derive(Clone, Default, PartialEq)]
struct Draft {
    amount: String,
    thresholds: String,
    policy: String,
    downgrade_group: String,
    count_own_keys: bool,
    webhook_url: String,
}

impl Draft {
    fn of(s: Option<&BudgetStatus>) -> Self {
        match s {
            Some(s) => Self {
                amount: usd_input(s.budget.monthly_micro_usd),
                thresholds: s
                    .budget
                    .thresholds
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                policy: s.budget.policy.as_str().into(),
                downgrade_group: s.budget.downgrade_group.clone().unwrap_or_default(),
                count_own_keys: s.budget.count_own_keys,
                webhook_url: s.budget.webhook_url.clone().unwrap_or_default(),
            },
            None => Self {
                thresholds: "50, 80, 100".into(),
                policy: "soft".into(),
                ..Self::default()
            },
        }
    }

    fn input(&self) -> Result<BudgetInput, ApiError> {
        let monthly = parse_usd(&self.amount).ok_or_else(|| {
            ApiError::local_field(
                "monthly_micro_usd",
                "is not an amount in dollars, like 250 or 99.50",
            )
        })?;
        let thresholds = self
            .thresholds
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.trim_end_matches('%').trim().parse::<u8>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                ApiError::local_field("thresholds", "are not percentages, like 50, 80, 100")
            })?;
        let policy = BudgetPolicy::parse(&self.policy).unwrap_or_default();
        let group = self.downgrade_group.trim();
        let url = self.webhook_url.trim();
        Ok(BudgetInput {
            monthly_micro_usd: monthly,
            thresholds: Some(thresholds),
            policy,
            downgrade_group: (policy == BudgetPolicy::Downgrade && !group.is_empty())
                .then(|| group.to_string()),
            count_own_keys: self.count_own_keys,
            webhook_url: (!url.is_empty()).then(|| url.to_string()),
        })
    }
}

#[component]
pub fn Usage() -> impl IntoView {
    let session = use_session();
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let granularity = RwSignal::new("day".to_string());
    let version = RwSignal::new(0u32);
    let query = move || {
        let mut q = format!("granularity={}", granularity.get());
        for (name, v) in [("from", from.get()), ("to", to.get())] {
            if !v.is_empty() {
                q.push_str(&format!("&{name}={v}"));
            }
        }
        q
    };
    let report = LocalResource::new(move || {
        let (tenant, q, _) = (session.tenant.get(), query(), version.get());
        async move {
            match tenant {
                Some((id, _)) => api::get::<UsageReport>(&format!("/api/tenants/{id}/usage?{q}"))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
    });
    let budgets = LocalResource::new(move || {
        let (tenant, _) = (session.tenant.get(), version.get());
        async move {
            match tenant {
                Some((id, _)) => {
                    let budgets =
                        api::get::<Vec<BudgetStatus>>(&format!("/api/tenants/{id}/budgets"))
                            .await?;
                    let alerts = api::get::<Vec<BudgetAlert>>(&format!(
                        "/api/tenants/{id}/budget-alerts?limit=20"
                    ))
                    .await?;
                    Ok::<_, ApiError>(Some((budgets, alerts)))
                }
                None => Ok(None),
            }
        }
    });
    let csv = move || {
        session
            .tenant
            .get()
            .map(|(id, _)| format!("/api/tenants/{id}/usage/export?{}", query()))
    };

    view! {
        <header class="page-head">
            <h1>"Usage and cost"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("What {}'s AI employees used and cost, by the workspace's own calendar days. Calls on the workspace's own provider keys are shown apart: the provider bills those directly.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
        </header>
        {move || match budgets.get() {
            Some(Ok(Some((list, alerts)))) => {
                let period = list.first().map(|b| b.period.clone());
                let banner = alerts.iter().find(|a| Some(&a.period) == period.as_ref()).cloned();
                banner.map(|a| view! {
                    <p class={if a.threshold >= 100 { "banner danger" } else { "banner warn" }} role="alert">
                        {format!("Budget alert: {} reached {} % this month ({} of {}).{}",
                            a.agent_name.clone().unwrap_or_else(|| "The workspace's budget".into()),
                            a.threshold, format_usd(a.spent_micro_usd), format_usd(a.monthly_micro_usd),
                            if a.threshold >= 100 { format!(" Now: {}.", policy_words(a.policy)) } else { String::new() })}
                    </p>
                }).into_any()
            }
            _ => ().into_any(),
        }}
        <form class="toolbar range" on:submit=move |ev| { ev.prevent_default(); version.update(|v| *v += 1); } aria-label="Date range">
            <label class="filter"><span>"From"</span><input type="date" prop:value=move || from.get() on:change=move |ev| from.set(event_target_value(&ev)) /></label>
            <label class="filter"><span>"To"</span><input type="date" prop:value=move || to.get() on:change=move |ev| to.set(event_target_value(&ev)) /></label>
            <label class="filter"><span>"By"</span>
                <select prop:value=move || granularity.get() on:change=move |ev| granularity.set(event_target_value(&ev))>
                    <option value="day">"Day"</option>
                    <option value="week">"Week"</option>
                    <option value="month">"Month"</option>
                </select>
            </label>
            <button class="secondary" type="submit">"Refresh"</button>
            {move || csv().map(|href| view! { <a class="button secondary" href=href download="">"Download CSV"</a> })}
        </form>
        {move || match report.get() {
            None => view! { <p class="loading" role="status">"Loading usage…"</p> }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(None)) => view! { <p class="empty">"Pick a tenant in the menu to see its usage."</p> }.into_any(),
            Some(Ok(Some(r))) => {
                let t = r.totals.clone();
                let range = format!("{} – {} ({})", r.from, r.to, r.zone);
                let empty = t.platform.calls == 0 && t.own_keys.calls == 0 && t.messages == 0;
                let day_label = |g: Granularity, d: chrono::NaiveDate| match g {
                    Granularity::Month => d.format("%b %Y").to_string(),
                    _ => d.format("%b %-d").to_string(),
                };
                let g = r.granularity;
                let cost_points: Vec<(String, i64)> = r.series.iter().map(|p| (day_label(g, p.start), p.platform.cost_micro_usd)).collect();
                let token_points: Vec<(String, i64)> = r.series.iter().map(|p| (day_label(g, p.start), p.platform.input_tokens + p.platform.output_tokens + p.own_keys.input_tokens + p.own_keys.output_tokens)).collect();
                view! {
                    <p class="muted">{range}</p>
                    <ul class="stats">
                        <li class="card stat"><span class="muted">"Cost on platform keys"</span><strong data-testid="total-cost">{cost(&t.platform)}</strong></li>
                        <li class="card stat"><span class="muted">"LLM calls"</span><strong data-testid="total-calls">{t.platform.calls + t.own_keys.calls}</strong></li>
                        <li class="card stat"><span class="muted">"Tokens in / out"</span><strong>{format!("{} / {}", tokens(t.platform.input_tokens + t.own_keys.input_tokens), tokens(t.platform.output_tokens + t.own_keys.output_tokens))}</strong></li>
                        <li class="card stat"><span class="muted">"On your own keys"</span><strong>{format!("{} calls · {}", t.own_keys.calls, cost(&t.own_keys))}</strong></li>
                        <li class="card stat"><span class="muted">"Conversations · messages · hand-offs"</span><strong>{format!("{} · {} · {}", t.conversations, t.messages, t.handoffs)}</strong></li>
                    </ul>
                    {if empty {
                        view! { <div class="empty"><p>"No usage in this range yet."</p><p class="muted">"Every answer an AI employee gives is counted here — try the test chat, then refresh."</p></div> }.into_any()
                    } else {
                        view! {
                            <div class="charts">
                                {bar_chart("Cost over time", cost_points, format_usd, "bar cost")}
                                {bar_chart("Tokens over time", token_points, tokens, "bar tokens")}
                            </div>
                            {breakdown("By agent", r.by_agent)}
                            {breakdown("By model", r.by_model)}
                        }.into_any()
                    }}
                }.into_any()
            }
        }}
        <BudgetSection budgets=budgets version=version />
    }
}

type Budgets = LocalResource<Result<Option<(Vec<BudgetStatus>, Vec<BudgetAlert>)>, ApiError>>;

#[component]
fn BudgetSection(budgets: Budgets, version: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    let draft = RwSignal::new(None::<Draft>);
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    // The form starts from the saved budget, and a refresh of the figures keeps what is typed;
    // after a save or removal (which clear it) it starts again from what was saved.
    Effect::new(move |_| {
        if let Some(Ok(Some((list, _)))) = budgets.get()
            && draft.get_untracked().is_none()
        {
            let tenant = list.iter().find(|b| b.budget.scope == BudgetScope::Tenant);
            draft.set(Some(Draft::of(tenant)));
        }
    });
    let manage = move || session.can(Permission::BudgetsManage);
    // How a save or a removal ends: the toast and the saved budget afresh, or the error.
    let done = move |result: Result<String, ApiError>| {
        match result {
            Ok(toast) => {
                let _ = error.try_set(None);
                session.show_toast(toast);
                let _ = draft.try_set(None);
                version.update(|v| *v += 1);
            }
            Err(e) => {
                session.handle(&e);
                let _ = error.try_set(Some(e));
            }
        }
        let _ = busy.try_set(false);
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Some((tenant, _)), Some(d)) = (session.tenant.get_untracked(), draft.get_untracked())
        else {
            return;
        };
        let body = match d.input() {
            Ok(b) => b,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        busy.set(true);
        spawn_local(async move {
            let saved = api::send::<_, BudgetStatus>(
                HttpMethod::PUT,
                &format!("/api/tenants/{tenant}/budgets/tenant"),
                &body,
            )
            .await
            .map(|s| {
                format!(
                    "Budget saved: {} a month, {} % spent so far.",
                    format_usd(s.budget.monthly_micro_usd),
                    s.percent
                )
            });
            done(saved);
        });
    };
    let remove = move |_| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        busy.set(true);
        spawn_local(async move {
            let removed = api::act_empty(
                HttpMethod::DELETE,
                &format!("/api/tenants/{tenant}/budgets/tenant"),
            )
            .await
            .map(|()| "Budget removed: nothing caps the workspace's spend now.".to_string());
            done(removed);
        });
    };
    let edit = move |f: fn(&mut Draft, String)| {
        move |ev| {
            let v = event_target_value(&ev);
            draft.update(|d| {
                if let Some(d) = d {
                    f(d, v);
                }
            });
        }
    };
    let message = move |field: &'static str| move || error.get().and_then(|e| e.field(field));
    let value =
        move |f: fn(&Draft) -> String| move || draft.get().map(|d| f(&d)).unwrap_or_default();
    view! {
        <section class="section" aria-labelledby="budget-title">
            <h2 id="budget-title">"Monthly budget"</h2>
            <p class="muted">"A cap on what the AI employees spend on the platform's keys each calendar month (in the workspace's time zone). Alerts go to the workspace's admins by email at each threshold, once a month."</p>
            {move || match budgets.get() {
                None => view! { <p class="loading" role="status">"Loading budgets…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some((list, alerts)))) => view! {
                    {if list.is_empty() { view! { <p class="empty">"No budget is set: spend is not capped."</p> }.into_any() } else { view! { <div class="cards budgets">{list.iter().map(gauge).collect_view()}</div> }.into_any() }}
                    <h3>"Notifications"</h3>
                    {if alerts.is_empty() {
                        view! { <p class="empty">"No budget alerts yet."</p> }.into_any()
                    } else {
                        view! {
                            <ul class="notifications">
                                {alerts.into_iter().map(|a| view! {
                                    <li>
                                        <strong>{format!("{} %", a.threshold)}</strong>
                                        {format!(" · {} · {} of {} · {}{}", a.agent_name.clone().unwrap_or_else(|| "Workspace".into()), format_usd(a.spent_micro_usd), format_usd(a.monthly_micro_usd), a.at.format("%Y-%m-%d %H:%M UTC"),
                                            match a.mailed { Some(n) => format!(" · mailed to {n} admin{}", if n == 1 { "" } else { "s" }), None => " · mail pending".into() })}
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any()
                    }}
                }.into_any(),
            }}
            <Show when=move || draft.get().is_some()>
                <form class="card settings-form" on:submit=save aria-label="Monthly budget">
                    <fieldset disabled=move || !manage() || busy.get()>
                        {move || (!manage()).then(|| view! { <p class="readonly-note">"Read-only: only the workspace's admins set the budget."</p> })}
                        <div class="grid">
                            <div class="field">
                                <label for="budget-amount">"Monthly amount (US dollars)"</label>
                                <input id="budget-amount" inputmode="decimal" placeholder="250.00" prop:value=value(|d| d.amount.clone()) on:input=edit(|d, v| d.amount = v) />
                                <span class="field-error" role="alert">{message("monthly_micro_usd")}</span>
                            </div>
                            <div class="field">
                                <label for="budget-thresholds">"Alert at (percent)"</label>
                                <input id="budget-thresholds" prop:value=value(|d| d.thresholds.clone()) on:input=edit(|d, v| d.thresholds = v) />
                                <span class="field-error" role="alert">{message("thresholds")}</span>
                            </div>
                            <div class="field">
                                <label for="budget-policy">"At 100 %"</label>
                                <select id="budget-policy" prop:value=value(|d| d.policy.clone()) on:change=edit(|d, v| d.policy = v)>
                                    <option value="soft">"Keep answering (alerts only)"</option>
                                    <option value="downgrade">"Switch to a cheaper model group"</option>
                                    <option value="handoff">"Hand every conversation to a person"</option>
                                </select>
                            </div>
                            <Show when=move || draft.get().is_some_and(|d| d.policy == "downgrade")>
                                <div class="field">
                                    <label for="budget-group">"Cheaper model group"</label>
                                    <input id="budget-group" placeholder="ollama" prop:value=value(|d| d.downgrade_group.clone()) on:input=edit(|d, v| d.downgrade_group = v) />
                                    <span class="field-error" role="alert">{message("downgrade_group")}</span>
                                </div>
                            </Show>
                            <div class="field">
                                <label for="budget-webhook">"Also alert this webhook (optional)"</label>
                                <input id="budget-webhook" type="url" placeholder="https://example.com/hooks/budget" prop:value=value(|d| d.webhook_url.clone()) on:input=edit(|d, v| d.webhook_url = v) />
                                <span class="field-error" role="alert">{message("webhook_url")}</span>
                            </div>
                        </div>
                        <label class="check">
                            <input type="checkbox" prop:checked=move || draft.get().is_some_and(|d| d.count_own_keys)
                                on:change=move |ev| { let on = event_target_checked(&ev); draft.update(|d| if let Some(d) = d { d.count_own_keys = on; }); } />
                            <span>"Count calls on the workspace's own provider keys too"</span>
                        </label>
                        <div class="form-actions">
                            <button type="submit">{move || if busy.get() { "Saving…" } else { "Save budget" }}</button>
                            <Show when=move || matches!(budgets.get(), Some(Ok(Some((ref l, _)))) if l.iter().any(|b| b.budget.scope == BudgetScope::Tenant))>
                                <button type="button" class="secondary" on:click=remove>"Remove budget"</button>
                            </Show>
                        </div>
                    </fieldset>
                </form>
            </Show>
        </section>
    }
}
