//! The calls AI employees made to a tool, or that one AI employee made, newest first: when, by
//! whom, how it ended and how long it took, with the arguments and the result (secrets redacted
//! by the server) behind a disclosure.

use leptos::prelude::*;
use shared::AgentId;
use shared::resources::Page;
use shared::tools::ToolCall;

use super::{duration_label, outcome_badge, pretty};
use crate::api;
use crate::app::{Pager, use_session};
use crate::customers::when;

/// Calls per page.
const PER_PAGE: u32 = 10;

#[component]
pub fn ToolCalls(
    /// What to list, as the query names it: `tool={id}` or `agent={id}`.
    #[prop(into)]
    filter: Signal<String>,
    /// The table's name.
    caption: String,
    /// Whether a row names the tool (an AI employee's calls) and the AI employee (a tool's).
    show_tool: bool,
    show_agent: bool,
    /// Bumped by the page to ask again (after it ran the tool).
    #[prop(optional)]
    version: Option<RwSignal<u32>>,
) -> impl IntoView {
    let session = use_session();
    let page = RwSignal::new(1u32);
    let asked = RwSignal::new(0u32);
    let agents = crate::agents::tenant_agents();
    let names = Memo::new(move |_| match agents.get() {
        Some(Ok(Some(list))) => list
            .into_iter()
            .map(|a| (a.id, a.input.name))
            .collect::<Vec<(AgentId, String)>>(),
        _ => Vec::new(),
    });
    let list = LocalResource::new(move || {
        let (tenant, filter, p, _) = (session.tenant.get(), filter.get(), page.get(), asked.get());
        if let Some(v) = version {
            v.track();
        }
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            api::get::<Page<ToolCall>>(&format!(
                "/api/tenants/{tenant}/tool-calls?{filter}&page={p}&per_page={PER_PAGE}"
            ))
            .await
            .map(Some)
        }
    });
    // Another tool or AI employee, or another tenant: its first page.
    Effect::new(move |_| {
        session.tenant.track();
        filter.track();
        if page.get_untracked() != 1 {
            page.set(1);
        }
    });
    let agent_name = move |agent: Option<AgentId>| match agent {
        None => "—".to_string(),
        Some(agent) => names
            .get()
            .into_iter()
            .find(|(id, _)| *id == agent)
            .map_or_else(|| "an AI employee that was removed".into(), |(_, n)| n),
    };
    let caption = StoredValue::new(caption);

    view! {
        <div class="tool-calls-list">
            <div class="toolbar">
                <button type="button" class="secondary" on:click=move |_| asked.update(|v| *v += 1)
                    aria-label=move || format!("Refresh {}", caption.get_value().to_lowercase())>"Refresh"</button>
            </div>
            {move || match list.get() {
                None => view! { <p class="loading" role="status">"Loading calls…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some(p))) if p.items.is_empty() => view! {
                    <p class="empty">{if show_tool {
                        "No tool calls yet. They appear here once this AI employee uses a tool in a conversation."
                    } else {
                        "No calls yet. They appear here once an AI employee uses this tool in a conversation."
                    }}</p>
                }.into_any(),
                Some(Ok(Some(p))) => {
                    let total = p.total;
                    view! {
                        <div class="table-wrap">
                            <table class="table stack calls">
                                <caption class="sr-only">{caption.get_value()}</caption>
                                <thead><tr>
                                    <th>"Time"</th>
                                    {show_tool.then(|| view! { <th>"Tool"</th> })}
                                    {show_agent.then(|| view! { <th>"AI employee"</th> })}
                                    <th>"Outcome"</th><th class="num">"Duration"</th><th>"Details"</th>
                                </tr></thead>
                                <tbody>
                                    {p.items.into_iter().map(|c| view! {
                                        <tr>
                                            <td data-label="Time" class="date">{when(c.created_at)}</td>
                                            {show_tool.then(|| view! { <td data-label="Tool"><code>{c.name.clone()}</code></td> })}
                                            {show_agent.then(|| view! { <td data-label="AI employee">{agent_name(c.agent_id)}</td> })}
                                            <td data-label="Outcome">{outcome_badge(c.outcome)}</td>
                                            <td data-label="Duration" class="num nowrap">{duration_label(c.duration_ms)}</td>
                                            <td data-label="Details">{call_details(&c)}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                        <Show when=move || { total > u64::from(PER_PAGE) }>
                            <Pager page=page total=total per_page=PER_PAGE one="call" many="calls" />
                        </Show>
                    }.into_any()
                }
            }}
        </div>
    }
}

/// A call's arguments and result, behind a disclosure.
pub fn call_details(call: &ToolCall) -> impl IntoView + use<> {
    let step = if call.step == 0 {
        "In the first step of its turn".to_string()
    } else {
        format!("In step {} of its turn", u32::from(call.step) + 1)
    };
    view! {
        <details class="call-io">
            <summary>"Arguments and result"</summary>
            <span class="hint">{step}</span>
            <span class="io-title">"Arguments"</span>
            <pre>{pretty(&call.arguments)}</pre>
            <span class="io-title">"Result"</span>
            <pre>{if call.result.is_empty() { "(nothing)".to_string() } else { call.result.clone() }}</pre>
        </details>
    }
}
