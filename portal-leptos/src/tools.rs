//! Tools: what the tenant's AI employees can do besides answering — the built-in tools and the
//! tenant's own HTTP tools — with the AI employees each is given to, creating, editing and
//! deleting HTTP tools, trying one with sample arguments, and the calls agents made. Roles
//! without `tools_manage` (customer operators) see all of it read-only and cannot try a tool.
//! This file holds the page and its list; `editor` holds an HTTP tool's page, `try_it` its test
//! run and `calls` the list of recorded calls (also shown in the Agent Designer).

mod calls;
mod editor;
mod try_it;

pub use calls::{ToolCalls, call_details};
pub use editor::ToolEditor;

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::auth::Permission;
use shared::tools::{ToolInfo, ToolKind, ToolOutcome};
use wasm_bindgen::JsCast;

use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

/// The tools the tenant in focus can give its AI employees (`None` when no tenant is chosen),
/// asked again when the focus changes or `version` is bumped.
pub fn tenant_tools(
    version: Option<RwSignal<u32>>,
) -> LocalResource<Result<Option<Vec<ToolInfo>>, ApiError>> {
    let session = use_session();
    LocalResource::new(move || {
        let tenant = session.tenant.get();
        if let Some(v) = version {
            v.track();
        }
        async move {
            match tenant {
                Some((id, _)) => api::get::<Vec<ToolInfo>>(&format!("/api/tenants/{id}/tools"))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
    })
}

/// The tenant's AI employees with their names and the tool ids they were given.
type AgentTools = Memo<Vec<(AgentId, String, Vec<String>)>>;

#[component]
pub fn Tools() -> impl IntoView {
    let session = use_session();
    let manage = Signal::derive(move || session.can(Permission::ToolsManage));
    let version = RwSignal::new(0u32);
    let tools = tenant_tools(Some(version));
    let agents = crate::agents::tenant_agents();
    let agent_tools: AgentTools = Memo::new(move |_| match agents.get() {
        Some(Ok(Some(list))) => list
            .into_iter()
            .map(|a| (a.id, a.input.name, a.input.tools))
            .collect(),
        _ => Vec::new(),
    });
    let error = RwSignal::new(None::<String>);
    // Which row's delete confirmation, and which built-in tool's calls, are open.
    let confirming = RwSignal::new(None::<String>);
    let open_calls = RwSignal::new(None::<String>);
    // Another tenant: nothing open or said about the last one.
    Effect::new(move |_| {
        session.tenant.track();
        error.set(None);
        confirming.set(None);
        open_calls.set(None);
    });
    let on_change = Callback::new(move |m: String| {
        session.show_toast(m);
        version.update(|v| *v += 1);
    });
    let on_error = Callback::new(move |m| error.set(Some(m)));

    view! {
        <header class="page-head">
            <h1>"Tools"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("What {}'s AI employees can do besides answering: look things up, hand over to a person, call your own systems.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=move || session.tenant.get().is_some() && !manage.get()>
                <p class="readonly-note" role="note">"Read-only: your role can see the tools and the calls AI employees made, but not add, change, try or delete tools. A customer admin can."</p>
            </Show>
            <Show when=move || session.tenant.get().is_some() && manage.get()>
                <a class="button" href="/tools/new">"New HTTP tool"</a>
            </Show>
        </header>
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {move || match tools.get() {
            None => view! { <p class="loading" role="status">"Loading tools…"</p> }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(None)) => view! { <p class="empty">"Pick a tenant in the menu to see its tools."</p> }.into_any(),
            Some(Ok(Some(list))) => {
                let has_http = list.iter().any(|t| t.kind == ToolKind::Http);
                view! {
                    <div class="table-wrap">
                        <table class="table stack tools">
                            <caption class="sr-only">"Tools"</caption>
                            <thead><tr>
                                <th>"Tool"</th><th>"What it does"</th><th>"Given to"</th>
                                <th><span class="sr-only">"Actions"</span></th>
                            </tr></thead>
                            <tbody>
                                {list.into_iter().map(|t| view! {
                                    <ToolRow tool=t agent_tools=agent_tools manage=manage confirming=confirming
                                        open_calls=open_calls on_change=on_change on_error=on_error />
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                    {(!has_http).then(|| view! {
                        <div class="card empty-state">
                            <h2>"No HTTP tools yet"</h2>
                            <p>"An HTTP tool lets an AI employee call one of your own systems — look up an order, book a slot — with the arguments it fills in from the conversation, checked against the schema you give."</p>
                            <p class="muted">{if manage.get_untracked() {
                                "Create one with “New HTTP tool”, try it with sample arguments, then give it to an AI employee in the Agent Designer."
                            } else {
                                "A customer admin creates them."
                            }}</p>
                        </div>
                    })}
                }.into_any()
            }
        }}
    }
}

#[component]
fn ToolRow(
    tool: ToolInfo,
    agent_tools: AgentTools,
    manage: Signal<bool>,
    confirming: RwSignal<Option<String>>,
    open_calls: RwSignal<Option<String>>,
    on_change: Callback<String>,
    on_error: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let busy = RwSignal::new(false);
    let id = StoredValue::new(tool.id.clone());
    let name = StoredValue::new(tool.name.clone());
    let http = tool.kind == ToolKind::Http;
    let given_to = move || {
        let id = id.get_value();
        agent_tools
            .get()
            .into_iter()
            .filter(|(_, _, tools)| tools.contains(&id))
            .map(|(_, name, _)| name)
            .collect::<Vec<_>>()
    };
    let is_confirming = move || confirming.get() == Some(id.get_value());
    let calls_open = move || open_calls.get() == Some(id.get_value());
    let delete = move || {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let (tool_id, tool_name) = (id.get_value(), name.get_value());
        busy.set(true);
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/tools/{tool_id}");
            match api::act_empty(HttpMethod::DELETE, &path).await {
                Ok(()) => {
                    confirming.set(None);
                    let _ = on_change.try_run(format!(
                        "Deleted {tool_name}. No AI employee can call it any more."
                    ));
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = on_error.try_run(e.message());
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let page = format!("/tools/{}", tool.id);
    let needs_confirmation = tool.needs_confirmation;

    view! {
        <tr class:has-detail=calls_open>
            <td data-label="Tool"><div class="cell">
                {if http {
                    view! { <a class="strong" href=page.clone()><code>{tool.name.clone()}</code></a> }.into_any()
                } else {
                    view! { <code class="strong">{tool.name.clone()}</code> }.into_any()
                }}
                <span class="badges">
                    {kind_badge(tool.kind)}
                    {needs_confirmation.then(|| view! { <span class="badge warn" title="The AI employee asks the customer before it runs">"Needs confirmation"</span> })}
                </span>
            </div></td>
            <td data-label="What it does" class="tool-description">{tool.description.clone()}</td>
            <td data-label="Given to">{move || {
                let names = given_to();
                if names.is_empty() {
                    view! { <span class="muted">"No AI employee"</span> }.into_any()
                } else {
                    view! { <span>{names.join(", ")}</span> }.into_any()
                }
            }}</td>
            <td class="row-actions">
                <div class="actions">
                    {if http {
                        let label = if manage.get_untracked() { "Edit" } else { "Open" };
                        view! { <a class="button secondary" href=page.clone() aria-label=format!("{label} {}", tool.name)>{label}</a> }.into_any()
                    } else {
                        view! {
                            <button class="secondary" aria-expanded=move || calls_open().to_string()
                                aria-label=move || format!("Last calls of {}", name.get_value())
                                on:click=move |_| open_calls.set(if calls_open() { None } else { Some(id.get_value()) })>
                                "Last calls"
                            </button>
                        }.into_any()
                    }}
                    <Show when=move || http && manage.get()>
                        <button class="danger" on:click=move |_| confirming.set(Some(id.get_value()))
                            aria-label=move || format!("Delete {}", name.get_value())>"Delete"</button>
                    </Show>
                </div>
                <Show when=is_confirming>
                    <div class="confirm" role="group" aria-label="Confirm deletion">
                        <p>{move || {
                            let names = given_to();
                            if names.is_empty() {
                                format!("{} is deleted for good.", name.get_value())
                            } else {
                                format!("{} is deleted for good and taken away from {}.", name.get_value(), names.join(", "))
                            }
                        }}</p>
                        <button class="danger" disabled=move || busy.get() on:click=move |_| delete()>"Yes, delete"</button>
                        <button class="link" on:click=move |_| confirming.set(None)>"Cancel"</button>
                    </div>
                </Show>
            </td>
        </tr>
        <Show when=calls_open>
            <tr class="detail-row">
                <td colspan="4" class="detail">
                    <div class="detail-box">
                        <ToolCalls filter=Signal::derive(move || format!("tool={}", id.get_value()))
                            caption=format!("Last calls of {}", name.get_value()) show_tool=false show_agent=true />
                    </div>
                </td>
            </tr>
        </Show>
    }
}

/// A tool's kind as a badge.
fn kind_badge(kind: ToolKind) -> impl IntoView {
    let (class, text) = match kind {
        ToolKind::Builtin => ("badge muted-badge", "Built-in"),
        ToolKind::Http => ("badge info", "HTTP"),
    };
    view! { <span class=class>{text}</span> }
}

/// How a call ended, as a badge's class and words.
pub fn outcome_pill(outcome: ToolOutcome) -> (&'static str, &'static str) {
    match outcome {
        ToolOutcome::Running => ("badge info", "Running"),
        ToolOutcome::Ok => ("badge ok", "OK"),
        ToolOutcome::Failed => ("badge danger", "Failed"),
        ToolOutcome::Timeout => ("badge danger", "Timed out"),
        ToolOutcome::InvalidArguments => ("badge warn", "Invalid arguments"),
        ToolOutcome::NotAssigned => ("badge warn", "Not given to this AI employee"),
        ToolOutcome::Refused => ("badge danger", "Address refused"),
        ToolOutcome::AwaitingConfirmation => ("badge info", "Awaiting confirmation"),
        ToolOutcome::Declined => ("badge muted-badge", "Declined"),
    }
}

pub fn outcome_badge(outcome: ToolOutcome) -> impl IntoView {
    let (class, text) = outcome_pill(outcome);
    view! { <span class=class>{text}</span> }
}

/// "420 ms", "1.3 s"; "—" when it did not finish.
pub fn duration_label(ms: Option<u64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// A JSON value as indented text.
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The server's messages about a JSON value (`parameters`, `arguments`) and the places inside
/// it: "At /properties/order_id/type: …" for a place, the message alone for the value itself.
fn json_messages(error: &ApiError, field: &str) -> Vec<String> {
    error
        .fields_within(field)
        .into_iter()
        .map(|(at, message)| {
            if at.is_empty() {
                message
            } else {
                format!("At {at}: {message}")
            }
        })
        .collect()
}

/// The parse error of JSON typed into a textarea, said for a person.
fn json_error(e: &serde_json::Error) -> String {
    format!("not valid JSON: {e}")
}

/// Moves the keyboard focus to the element with `id` (which also scrolls it into view).
fn focus(id: &str) {
    if let Some(el) = document()
        .get_element_by_id(id)
        .and_then(|e| e.dyn_into::<leptos::web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_milliseconds_then_seconds() {
        assert_eq!(duration_label(None), "—");
        assert_eq!(duration_label(Some(420)), "420 ms");
        assert_eq!(duration_label(Some(1_340)), "1.3 s");
    }

    #[test]
    fn json_errors_name_the_place_inside_the_value() {
        let mut e = ApiError::local_field("parameters", "must be an object schema");
        e.body.fields.push(shared::FieldError {
            field: "parameters/properties/x/type".into(),
            message: "12 is not a valid type".into(),
        });
        e.body.fields.push(shared::FieldError {
            field: "parametersx".into(),
            message: "another field".into(),
        });
        assert_eq!(
            json_messages(&e, "parameters"),
            vec![
                "Must be an object schema".to_string(),
                "At /properties/x/type: 12 is not a valid type".to_string()
            ]
        );
    }
}
