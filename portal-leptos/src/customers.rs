//! Customers: the people who talk to the tenant's AI employees (end users), most recently seen
//! first, searchable by name or channel id, filtered by channel, in pages. Roles with
//! `end_users_manage` (customer admins) also see and delete what the AI employees remember about
//! each one, and can forget a customer altogether (their messages, memories and files); everyone
//! else reads the list only.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::EndUserId;
use shared::auth::Permission;
use shared::channel::ChannelKind;
use shared::knowledge::Memory;
use shared::resources::{EndUser, Page};

use crate::api::{self, HttpMethod};
use crate::app::{Pager, use_session};

const PER_PAGE: u32 = 20;
/// Memories per page, under a customer's row.
const MEMORIES_PER_PAGE: u32 = 10;
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
    // Bumped to ask for the list again after a customer was forgotten.
    let version = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let manage = Signal::derive(move || session.can(Permission::EndUsersManage));
    let list = LocalResource::new(move || {
        let (tenant, q, c, p, _) = (
            session.tenant.get(),
            query.get(),
            channel.get(),
            page.get(),
            version.get(),
        );
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
    // Another tenant starts on its first page, without a message about the last one.
    Effect::new(move |_| {
        session.tenant.track();
        page.set(1);
        error.set(None);
    });
    let on_change = Callback::new(move |m: String| {
        error.set(None);
        session.show_toast(m);
        version.update(|v| *v += 1);
    });
    let on_error = Callback::new(move |m| error.set(Some(m)));

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
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
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
                            <thead><tr>
                                <th>"Name"</th><th>"Channel"</th><th>"Channel id"</th><th>"First seen"</th><th>"Last seen"</th><th class="num">"Conversations"</th>
                                {move || manage.get().then(|| view! { <th><span class="sr-only">"Actions"</span></th> })}
                            </tr></thead>
                            <tbody>
                                {p.items.into_iter().map(|u| view! { <CustomerRow user=u manage=manage on_change=on_change on_error=on_error /> }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                    <Pager page=page total=total per_page=PER_PAGE one="customer" many="customers" />
                }.into_any()
            }
        }}
    }
}

/// How a customer is named in the page: their name, else their channel id.
fn display_name(u: &EndUser) -> String {
    u.display_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| u.external_id.clone())
}

#[component]
fn CustomerRow(
    user: EndUser,
    manage: Signal<bool>,
    on_change: Callback<String>,
    on_error: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let id = user.id;
    let name = StoredValue::new(display_name(&user));
    let showing = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let forget = move || {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let name = name.get_value();
        busy.set(true);
        spawn_local(async move {
            match api::act_empty(
                HttpMethod::DELETE,
                &format!("/api/tenants/{tenant}/end-users/{id}"),
            )
            .await
            {
                Ok(()) => {
                    let _ = confirming.try_set(false);
                    let _ = on_change.try_run(format!(
                        "Forgot {name}: their messages, memories and files are erased."
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
    let open = move || manage.get() && showing.get();
    view! {
        <tr class:has-detail=open>
            <td data-label="Name">{user.display_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "—".into())}</td>
            <td data-label="Channel"><span class="badge channel">{channel_label(user.channel)}</span></td>
            <td data-label="Channel id"><code class="id">{user.external_id.clone()}</code></td>
            <td data-label="First seen" class="date">{when(user.first_seen_at)}</td>
            <td data-label="Last seen" class="date">{when(user.last_seen_at)}</td>
            <td data-label="Conversations" class="num">{user.conversations}</td>
            <Show when=move || manage.get()>
                <td class="row-actions">
                    <div class="actions">
                        <button class="secondary" aria-expanded=move || showing.get().to_string()
                            aria-label=move || format!("Memories of {}", name.get_value())
                            on:click=move |_| showing.update(|s| *s = !*s)>"Memories"</button>
                        <button class="danger" aria-label=move || format!("Forget {}", name.get_value())
                            on:click=move |_| confirming.set(true)>"Forget"</button>
                    </div>
                    <Show when=move || confirming.get()>
                        <div class="confirm" role="group" aria-label="Confirm forgetting">
                            <p>{move || format!(
                                "Forget {} for good? Their messages in every conversation, what the AI employees remember about them and the files they sent are erased permanently. This cannot be undone.",
                                name.get_value()
                            )}</p>
                            <button class="danger" disabled=move || busy.get() on:click=move |_| forget()>"Yes, forget this customer"</button>
                            <button class="link" on:click=move |_| confirming.set(false)>"Cancel"</button>
                        </div>
                    </Show>
                </td>
            </Show>
        </tr>
        <Show when=open>
            <tr class="detail-row">
                <td colspan="7" class="detail">
                    <Memories end_user=id name=name.get_value() />
                </td>
            </tr>
        </Show>
    }
}

/// What the AI employees remember about one customer, newest first, each deletable.
#[component]
fn Memories(end_user: EndUserId, name: String) -> impl IntoView {
    let session = use_session();
    let page = RwSignal::new(1u32);
    let version = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let list = LocalResource::new(move || {
        let (tenant, p, _) = (session.tenant.get(), page.get(), version.get());
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            api::get::<Page<Memory>>(&format!(
                "/api/tenants/{tenant}/end-users/{end_user}/memories?page={p}&per_page={MEMORIES_PER_PAGE}"
            ))
            .await
            .map(Some)
        }
    });
    let delete = move |memory: uuid::Uuid| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/end-users/{end_user}/memories/{memory}");
            match api::act_empty(HttpMethod::DELETE, &path).await {
                Ok(()) => {
                    let _ = error.try_set(None);
                    session.show_toast("Memory deleted. The AI employees no longer recall it.");
                    let _ = version.try_update(|v| *v += 1);
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = error.try_set(Some(e.message()));
                }
            }
        });
    };
    view! {
        <section class="detail-box memories" aria-label=format!("Memories of {name}")>
            <h3>"What the AI employees remember"</h3>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || match list.get() {
                None => view! { <p class="loading" role="status">"Loading memories…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some(p))) if p.items.is_empty() => view! {
                    <p class="muted">"Nothing remembered about this customer. AI employees with “Remember customers across conversations” on keep short facts a customer shares, such as a name or an order number."</p>
                }.into_any(),
                Some(Ok(Some(p))) => {
                    let total = p.total;
                    view! {
                        <ul class="memory-list">
                            {p.items.into_iter().map(|m| {
                                let memory = m.id;
                                let label = format!("Delete the memory “{}”", clip(&m.text, 60));
                                view! {
                                    <li class="memory">
                                        <div class="cell">
                                            <span>{m.text.clone()}</span>
                                            <span class="hint">{format!("Learnt {}", when(m.created_at))}</span>
                                        </div>
                                        <button class="danger small" aria-label=label on:click=move |_| delete(memory)>"Delete"</button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                        <Show when=move || { total > u64::from(MEMORIES_PER_PAGE) }>
                            <Pager page=page total=total per_page=MEMORIES_PER_PAGE one="memory" many="memories" />
                        </Show>
                    }.into_any()
                }
            }}
        </section>
    }
}

/// The first `max` characters of `text`, with an ellipsis when there was more.
fn clip(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}
