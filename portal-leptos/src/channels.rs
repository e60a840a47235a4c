//! Channels: where the tenant's AI employees answer — its WhatsApp business numbers and its Slack
//! workspaces, each with its status and health, how to set the provider up, connecting by hand,
//! and disconnecting. Roles without `channels_manage` (customer operators) see all of it
//! read-only. This file holds the page and what both channels show alike; `whatsapp` and `slack`
//! hold each channel's list row, setup guide and connect form.

mod slack;
mod whatsapp;

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::auth::Permission;
use shared::channel::ConnectionStatus;
use shared::resources::{ChannelHealth, PlatformInfo};
use wasm_bindgen::JsCast;

use crate::api;
use crate::app::use_session;
use crate::customers::when;

/// Rows per page, for each list.
const PER_PAGE: u32 = 10;

/// How often the relative times ("5 minutes ago") are brought up to date.
const TICK_MS: u32 = 30_000;

/// The tenant's AI employees by id, for naming the one that answers on a connection.
type AgentNames = Memo<Vec<(AgentId, String)>>;

#[component]
pub fn Channels() -> impl IntoView {
    let session = use_session();
    let error = RwSignal::new(None::<String>);
    let platform = LocalResource::new(|| async { api::get::<PlatformInfo>("/api/platform").await });
    let agents = crate::agents::tenant_agents();
    let manage = Signal::derive(move || session.can(Permission::ChannelsManage));
    // Another tenant: no message about the last one.
    Effect::new(move |_| {
        session.tenant.track();
        error.set(None);
    });
    let agent_names: AgentNames = Memo::new(move |_| match agents.get() {
        Some(Ok(Some(list))) => list
            .into_iter()
            .map(|a| (a.id, a.input.name))
            .collect::<Vec<(AgentId, String)>>(),
        _ => Vec::new(),
    });
    // The clock the relative times are told by. The loop ends with the page (the signal is
    // disposed then, and `try_set` hands the value back).
    let now = RwSignal::new(js_sys::Date::now());
    spawn_local(async move {
        loop {
            TimeoutFuture::new(TICK_MS).await;
            if now.try_set(js_sys::Date::now()).is_some() {
                break;
            }
        }
    });
    let on_error = Callback::new(move |m| error.set(Some(m)));

    view! {
        <header class="page-head">
            <h1>"Channels"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("Where {}'s AI employees answer customers.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=move || session.tenant.get().is_some() && !manage.get()>
                <p class="readonly-note" role="note">"Read-only: your role can see the connected numbers and workspaces but not connect or disconnect them. A customer admin can."</p>
            </Show>
        </header>
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <Show when=move || session.tenant.get().is_some() fallback=|| view! { <p class="empty">"Pick a tenant in the menu to see its channels."</p> }>
            <div class="channel">
                <whatsapp::Whatsapp platform=platform agents=agents agent_names=agent_names manage=manage now=now.into() on_error=on_error />
            </div>
            <div class="channel">
                <slack::Slack platform=platform agents=agents agent_names=agent_names manage=manage now=now.into() on_error=on_error />
            </div>
        </Show>
    }
}

/// The name of the AI employee that answers on a connection.
fn agent_name(agent_names: AgentNames, agent: Option<AgentId>) -> String {
    let Some(agent) = agent else {
        return "—".to_string();
    };
    agent_names
        .get()
        .into_iter()
        .find(|(id, _)| *id == agent)
        .map_or_else(|| "an AI employee that was removed".into(), |(_, n)| n)
}

/// "just now", "5 minutes ago", "3 hours ago", "2 days ago"; the date beyond a month.
fn ago(at: chrono::DateTime<chrono::Utc>, now_ms: f64) -> String {
    // Times a little ahead of this browser's clock (the clocks differ) read as "just now".
    let seconds = (now_ms as i64 - at.timestamp_millis()) / 1000;
    let count = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match seconds {
        s if s < 60 => "just now".into(),
        s if s < 3_600 => count(s / 60, "minute"),
        s if s < 86_400 => count(s / 3_600, "hour"),
        s if s < 30 * 86_400 => count(s / 86_400, "day"),
        _ => format!("on {}", at.format("%Y-%m-%d")),
    }
}

/// The connection's status as a badge.
fn status_badge(status: ConnectionStatus) -> impl IntoView {
    let (text, class) = match status {
        ConnectionStatus::Active => ("Connected", "badge ok"),
        ConnectionStatus::Disabled => ("Disconnected", "badge muted-badge"),
        ConnectionStatus::Failed => ("Failed", "badge danger"),
    };
    view! { <span class=class>{text}</span> }
}

/// When the last message came in.
fn last_message(health: &ChannelHealth, now: Signal<f64>) -> impl IntoView + use<> {
    match health.last_received_at {
        Some(at) => view! { <span title=when(at)>{move || format!("Last message {}", ago(at, now.get()))}</span> }.into_any(),
        None => view! { <span class="muted">"No message yet"</span> }.into_any(),
    }
}

/// What goes wrong on a connection, shown across its row: why a failed one stopped (prominently),
/// or the last error of one that still answers. Nothing for a disconnected one.
fn error_note(
    health: &ChannelHealth,
    status: ConnectionStatus,
    provider: &'static str,
    now: Signal<f64>,
) -> Option<AnyView> {
    let at = health.last_error_at;
    let since = move |lead: &'static str| {
        move || match at {
            Some(at) => format!("{lead} {}: ", ago(at, now.get())),
            None => format!("{lead}: "),
        }
    };
    match status {
        ConnectionStatus::Failed => {
            let reason = health.last_error.clone().unwrap_or_else(|| {
                format!("{provider} refused the stored token: reconnect with a new one")
            });
            Some(view! {
                <p class="failure"><strong title=at.map(when)>{since("Stopped answering")}</strong>{reason}</p>
            }.into_any())
        }
        ConnectionStatus::Active => health.last_error.clone().map(|e| {
            view! {
                <p class="warning"><strong title=at.map(when)>{since("Last error")}</strong>{e}</p>
            }
            .into_any()
        }),
        ConnectionStatus::Disabled => None,
    }
}

/// Puts `text` on the clipboard; false when the browser will not.
async fn copy_to_clipboard(text: &str) -> bool {
    let Ok(navigator) = js_sys::Reflect::get(&window(), &"navigator".into()) else {
        return false;
    };
    let Ok(clipboard) = js_sys::Reflect::get(&navigator, &"clipboard".into()) else {
        return false;
    };
    let Ok(write) = js_sys::Reflect::get(&clipboard, &"writeText".into())
        .and_then(|f| f.dyn_into::<js_sys::Function>())
    else {
        return false;
    };
    let Ok(promise) = write
        .call1(&clipboard, &text.into())
        .and_then(|p| p.dyn_into::<js_sys::Promise>())
    else {
        return false;
    };
    wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
}

/// A value to paste at a provider (a URL, a verify token), read-only, with a copy button. When
/// the browser will not copy, the value is selected instead, so Ctrl+C copies it. It renders one
/// entry of a `<dl class="facts">`.
#[component]
fn CopyField(
    /// The input's id (unique in the page).
    id: String,
    label: &'static str,
    value: String,
    /// The copy button's accessible name, e.g. "Copy the Request URL".
    copy_label: String,
    /// What the note under it says until something is copied.
    note: String,
) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let note_id = format!("{id}-note");
    let copy = {
        let (value, id) = (value.clone(), id.clone());
        move |_| {
            let (value, id) = (value.clone(), id.clone());
            spawn_local(async move {
                let done = copy_to_clipboard(&value).await;
                if !done
                    && let Some(input) = document()
                        .get_element_by_id(&id)
                        .and_then(|e| e.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                {
                    input.select();
                }
                copied.set(Some(done));
                if done {
                    // "Copied" for a moment, then the button is a copy button again.
                    TimeoutFuture::new(4_000).await;
                    let _ = copied.try_set(None);
                }
            });
        }
    };
    view! {
        <div>
            <dt><label for=id.clone()>{label}</label></dt>
            <dd class="copy-row">
                <input id=id readonly prop:value=value aria-describedby=note_id.clone() spellcheck="false"
                    on:focus=move |ev| { if let Some(i) = ev.target().and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok()) { i.select(); } } />
                <button type="button" class="secondary" on:click=copy aria-label=copy_label>
                    {move || if copied.get() == Some(true) { "Copied" } else { "Copy" }}
                </button>
            </dd>
            <dd id=note_id class="hint" aria-live="polite">
                {move || match copied.get() {
                    Some(true) => "Copied to the clipboard.".to_string(),
                    Some(false) => "The browser would not copy it: it is selected, press Ctrl+C (⌘C on a Mac).".to_string(),
                    None => note.clone(),
                }}
            </dd>
        </div>
    }
}

/// The banner over a connect form's button: what the server said when it refused, and with a
/// 422, the fields it named that the form does not show.
fn form_error(e: &api::ApiError, shown: fn(&str) -> bool) -> impl IntoView + use<> {
    if e.body.fields.is_empty() {
        let title = match e.status {
            409 => "Already connected elsewhere.",
            503 => "Not possible right now.",
            _ => "Not connected.",
        };
        view! { <div class="error" role="alert"><strong>{title}</strong>" "{e.message()}</div> }
            .into_any()
    } else {
        let others: Vec<String> = e
            .body
            .fields
            .iter()
            .filter(|f| !shown(&f.field))
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect();
        view! { <p class="error" role="alert">"Please correct the marked fields." {others.into_iter().map(|o| view! { " " {o} }).collect_view()}</p> }
            .into_any()
    }
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
