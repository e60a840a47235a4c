//! Customers: the people who talk to the tenant's AI employees (end users), most recently seen
//! first, searchable by name or channel id, filtered by channel, in pages. Read-only for everyone.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::channel::ChannelKind;
use shared::resources::{EndUser, Page};

use crate::api;
use crate::app::{Pager, use_session};

const PER_PAGE: u32 = 20;
/// How long typing pauses before the search runs.
const DEBOUNCE_MS: u32 = 300;

pub fn channel_label(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => "Slack",
        ChannelKind::Whatsapp => "WhatsApp",
        ChannelKind::Web => "Test chat",
    }
}

/// "2026-03-01 14:05 UTC": the same everywhere, whatever the browser's zone.
pub fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[component]
pub fn Customers() -> impl IntoView {
    let session = use_session();
    // What is typed, and what is searched (the same, once typing pauses or Enter is pressed).
    let typed = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let typing = StoredValue::new(0u32);
    let channel = RwSignal::new(None::<ChannelKind>);
    let page = RwSignal::new(1u32);
    let list = LocalResource::new(move || {
        let (tenant, q, c, p) = (session.tenant.get(), query.get(), channel.get(), page.get());
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            let mut path = format!(
                "/api/tenants/{tenant}/end-users?page={p}&per_page={PER_PAGE}&q={}",
                js_sys::encode_uri_component(q.trim())
            );
            if let Some(c) = c {
                path.push_str(&format!("&channel={}", c.as_str()));
            }
            api::get::<Page<EndUser>>(&path).await.map(Some)
        }
    });
    let on_input = move |ev| {
        typed.set(event_target_value(&ev));
        typing.update_value(|n| *n = n.wrapping_add(1));
        let mine = typing.get_value();
        spawn_local(async move {
            TimeoutFuture::new(DEBOUNCE_MS).await;
            if typing.try_get_value() == Some(mine) {
                query.set(typed.get_untracked());
                page.set(1);
            }
        });
    };
    let search_now = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        typing.update_value(|n| *n = n.wrapping_add(1));
        query.set(typed.get_untracked());
        page.set(1);
    };
    let on_channel = move |ev| {
        channel.set(match event_target_value(&ev).as_str() {
            "slack" => Some(ChannelKind::Slack),
            "whatsapp" => Some(ChannelKind::Whatsapp),
            "web" => Some(ChannelKind::Web),
            _ => None,
        });
        page.set(1);
    };
    let clear = move |_| {
        typing.update_value(|n| *n = n.wrapping_add(1));
        typed.set(String::new());
        query.set(String::new());
        channel.set(None);
        page.set(1);
    };
    let filtered = move || !query.get().trim().is_empty() || channel.get().is_some();
    // Another tenant starts on its first page.
    Effect::new(move |_| {
        session.tenant.track();
        page.set(1);
    });

    view! {
        <header class="page-head">
            <h1>"Customers"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("The people who talk to {}'s AI employees, most recently seen first.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
        </header>
        <form class="toolbar" role="search" aria-label="Find customers" on:submit=search_now>
            <label class="search">
                <span>"Search customers"</span>
                <input type="search" placeholder="Name or channel id"
                    prop:value=move || typed.get() on:input=on_input />
            </label>
            <label class="filter">
                <span>"Channel"</span>
                <select on:change=on_channel prop:value=move || channel.get().map(|c| c.as_str()).unwrap_or("")>
                    <option value="">"All channels"</option>
                    <option value="slack">"Slack"</option>
                    <option value="whatsapp">"WhatsApp"</option>
                    <option value="web">"Test chat (web)"</option>
                </select>
            </label>
        </form>
        {move || match list.get() {
            None => view! { <p class="loading" role="status">"Loading customers…"</p> }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(None)) => view! { <p class="empty">"Pick a tenant in the menu to see its customers."</p> }.into_any(),
            Some(Ok(Some(p))) if p.items.is_empty() && filtered() => view! {
                <div class="empty">
                    <p>"No customers match this search."</p>
                    <button class="secondary" on:click=clear>"Clear the search"</button>
                </div>
            }.into_any(),
            Some(Ok(Some(p))) if p.items.is_empty() => view! {
                <div class="card empty-state">
                    <h2>"No customers yet"</h2>
                    <p>"People appear here when they first write to one of your AI employees — on Slack, on WhatsApp, or in the test chat."</p>
                    <p class="muted">"Connect a Slack workspace under Channels, or say hello in the Test chat to see how it works."</p>
                </div>
            }.into_any(),
            Some(Ok(Some(p))) => {
                let total = p.total;
                view! {
                    <div class="table-wrap">
                        <table class="table stack">
                            <caption class="sr-only">"Customers"</caption>
                            <thead><tr><th>"Name"</th><th>"Channel"</th><th>"Channel id"</th><th>"First seen"</th><th>"Last seen"</th><th class="num">"Conversations"</th></tr></thead>
                            <tbody>
                                {p.items.into_iter().map(|u| view! {
                                    <tr>
                                        <td data-label="Name">{u.display_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "—".into())}</td>
                                        <td data-label="Channel"><span class="badge channel">{channel_label(u.channel)}</span></td>
                                        <td data-label="Channel id"><code class="id">{u.external_id.clone()}</code></td>
                                        <td data-label="First seen" class="date">{when(u.first_seen_at)}</td>
                                        <td data-label="Last seen" class="date">{when(u.last_seen_at)}</td>
                                        <td data-label="Conversations" class="num">{u.conversations}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                    <Pager page=page total=total per_page=PER_PAGE one="customer" many="customers" />
                }.into_any()
            }
        }}
    }
}
