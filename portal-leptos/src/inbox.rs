//! The hand-off inbox: the conversations the AI employees handed to a person, and every other
//! conversation of the tenant in focus, newest activity first, filtered by owner and status,
//! channel, AI employee and words, in pages, kept current by the live stream (`live`) without a
//! reload. Also the member's own notification choices (desktop notifications in this browser,
//! email about new hand-offs in this tenant). `conversation` is one conversation's page;
//! `transcript` shows its hand-off packet and what was said.

mod conversation;
pub mod live;
mod transcript;

pub use conversation::Conversation;

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use shared::AgentId;
use shared::auth::Permission;
use shared::channel::ChannelKind;
use shared::inbox::{ConversationSummary, InboxCounts, InboxStatus, NotificationSettings, Owner};
use shared::resources::Page;

use crate::api::{self, HttpMethod};
use crate::app::{Pager, use_session};
use crate::customers::{channel_label, when};
use live::{StreamState, use_live};

const PER_PAGE: u32 = 20;
/// How long typing pauses before the search runs.
const DEBOUNCE_MS: u32 = 300;

/// Who has a conversation, in a word: the AI, nobody yet, or the person's name.
pub fn owner_label(c: &ConversationSummary) -> String {
    match c.owner {
        Owner::Ai => "AI".into(),
        Owner::Queue => "Waiting".into(),
        Owner::Person => c.owner_name.clone().unwrap_or_else(|| "A person".into()),
    }
}

/// The owner as a badge class.
fn owner_class(owner: Owner) -> &'static str {
    match owner {
        Owner::Ai => "badge muted",
        Owner::Queue => "badge warn",
        Owner::Person => "badge info",
    }
}

pub fn status_label(status: InboxStatus) -> &'static str {
    match status {
        InboxStatus::Open => "Open",
        InboxStatus::Pending => "Waiting on the customer",
        InboxStatus::Snoozed => "Snoozed",
        InboxStatus::Resolved => "Resolved",
    }
}

pub fn status_class(status: InboxStatus) -> &'static str {
    match status {
        InboxStatus::Open => "badge info",
        InboxStatus::Pending | InboxStatus::Snoozed => "badge muted",
        InboxStatus::Resolved => "badge ok",
    }
}

/// Why the AI handed off, in words (the server's reason names).
pub fn reason_label(reason: &str) -> String {
    match reason {
        "keywords" => "A keyword rule".into(),
        "human_requested" => "The customer asked for a person".into(),
        "failed_resolutions" => "The AI could not resolve it".into(),
        "agent_requested" => "The AI asked for a person".into(),
        "budget" => "The month's AI budget is spent".into(),
        other => other.replace('_', " "),
    }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago": how long ago `at` was by this browser's
/// clock (the absolute time goes in the element's title).
pub fn ago(at: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (js_sys::Date::now() as i64 - at.timestamp_millis()) / 1000;
    match secs {
        s if s < 45 => "just now".into(),
        s if s < 3_600 => format!("{} min ago", (s + 30) / 60),
        s if s < 86_400 => format!("{} h ago", s / 3_600),
        s if s < 2 * 86_400 => "yesterday".into(),
        s => format!("{} days ago", s / 86_400),
    }
}

/// A span of seconds in the largest unit that fits: "40 s", "12 min", "3 h 5 min", "2 days".
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3_600 => format!("{} min", s / 60),
        s if s < 86_400 => match (s % 3_600) / 60 {
            0 => format!("{} h", s / 3_600),
            m => format!("{} h {m} min", s / 3_600),
        },
        s => match s / 86_400 {
            1 => "1 day".into(),
            d => format!("{d} days"),
        },
    }
}

/// The list's views: what the tabs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Waiting,
    Mine,
    Open,
    Resolved,
    All,
}

impl View {
    const ALL: [View; 5] = [
        View::Waiting,
        View::Mine,
        View::Open,
        View::Resolved,
        View::All,
    ];

    fn label(self) -> &'static str {
        match self {
            View::Waiting => "Waiting for a person",
            View::Mine => "Mine",
            View::Open => "All open",
            View::Resolved => "Resolved",
            View::All => "Everything",
        }
    }

    /// The view's filters in the query string.
    fn query(self) -> &'static str {
        match self {
            View::Waiting => "&owner=queue",
            View::Mine => "&mine=true",
            View::Open => "&status=open",
            View::Resolved => "&status=resolved",
            View::All => "",
        }
    }

    /// The badge on the view's tab: how many wait, or are the member's own.
    fn count(self, counts: Option<InboxCounts>) -> Option<u64> {
        let counts = counts?;
        match self {
            View::Waiting => Some(counts.queue),
            View::Mine => Some(counts.mine),
            View::Open | View::Resolved | View::All => None,
        }
        .filter(|n| *n > 0)
    }

    fn empty(self) -> &'static str {
        match self {
            View::Waiting => {
                "Nobody is waiting for a person. When an AI employee hands a conversation off, it appears here at once."
            }
            View::Mine => {
                "No conversations are yours. Claim one that waits for a person, or reply to it."
            }
            View::Open => "No open conversations.",
            View::Resolved => "No resolved conversations yet.",
            View::All => {
                "No conversations yet. They appear when customers write to your AI employees."
            }
        }
    }
}

#[component]
pub fn Inbox() -> impl IntoView {
    let session = use_session();
    let live = use_live();
    let view = RwSignal::new(View::Waiting);
    let channel = RwSignal::new(None::<ChannelKind>);
    let agent = RwSignal::new(None::<AgentId>);
    // What is typed, and what is searched (the same once typing pauses or Enter is pressed).
    let typed = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let typing = StoredValue::new(0u32);
    let page = RwSignal::new(1u32);
    // Bumped to read the list again (after an event of the live stream).
    let version = RwSignal::new(0u32);
    let agents = crate::agents::tenant_agents();
    let list = LocalResource::new(move || {
        let (tenant, v, c, a, q, p, _) = (
            session.tenant.get(),
            view.get(),
            channel.get(),
            agent.get(),
            query.get(),
            page.get(),
            version.get(),
        );
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            let mut path = format!(
                "/api/tenants/{tenant}/conversations?page={p}&per_page={PER_PAGE}{}",
                v.query()
            );
            if let Some(c) = c {
                path.push_str(&format!("&channel={}", c.as_str()));
            }
            if let Some(a) = a {
                path.push_str(&format!("&agent={a}"));
            }
            let q = q.trim();
            if !q.is_empty() {
                path.push_str(&format!("&q={}", js_sys::encode_uri_component(q)));
            }
            api::get::<Page<ConversationSummary>>(&path).await.map(Some)
        }
    });
    live::on_change(
        |_| true,
        move || {
            let _ = version.try_update(|v| *v = v.wrapping_add(1));
        },
    );
    // Another tenant starts on its first page, with no filter of the last one.
    Effect::new(move |_| {
        session.tenant.track();
        // Only when they differ: setting a signal reads the list again even to the same value.
        if page.get_untracked() != 1 {
            page.set(1);
        }
        if agent.get_untracked().is_some() {
            agent.set(None);
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
    let clear = move |_| {
        typing.update_value(|n| *n = n.wrapping_add(1));
        typed.set(String::new());
        query.set(String::new());
        channel.set(None);
        agent.set(None);
        page.set(1);
    };
    let filtered =
        move || !query.get().trim().is_empty() || channel.get().is_some() || agent.get().is_some();

    view! {
        <header class="page-head">
            <h1>"Inbox"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("Conversations {}'s AI employees handed to a person, and all the others, newest first.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=move || session.tenant.get().is_some() && !session.can(Permission::ConversationsHandle)>
                <p class="readonly-note" role="note">"Read-only: your role can follow conversations but not claim, answer or resolve them. A customer admin can."</p>
            </Show>
        </header>
        {move || match live.state.get() {
            StreamState::Refused(m) => Some(view! { <p class="error" role="alert">{m}</p> }.into_any()),
            StreamState::Reconnecting => Some(view! { <p class="stream-note" role="status">"Live updates paused: reconnecting…"</p> }.into_any()),
            _ => None,
        }}
        <Show when=move || session.tenant.get().is_some() fallback=|| view! { <p class="empty">"Pick a tenant in the menu to see its inbox."</p> }>
            <Notifications />
            <div class="inbox-tabs" role="group" aria-label="Show">
                {View::ALL.into_iter().map(|v| view! {
                    <button class="tab" aria-pressed=move || (view.get() == v).to_string()
                        on:click=move |_| { view.set(v); page.set(1); }>
                        {v.label()}
                        {move || v.count(live.counts.get()).map(|n| view! { <span class="count">{n}</span> })}
                    </button>
                }).collect_view()}
            </div>
            <form class="toolbar" role="search" aria-label="Find conversations" on:submit=search_now>
                <label class="search">
                    <span>"Search conversations"</span>
                    <input type="search" placeholder="Words in a message"
                        prop:value=move || typed.get() on:input=on_input />
                </label>
                <label class="filter">
                    <span>"Channel"</span>
                    <select on:change=move |ev| { channel.set(ChannelKind::parse(&event_target_value(&ev))); page.set(1); }
                        prop:value=move || channel.get().map(|c| c.as_str()).unwrap_or("")>
                        <option value="">"All channels"</option>
                        {ChannelKind::ALL.iter().map(|c| view! { <option value=c.as_str()>{channel_label(*c)}</option> }).collect_view()}
                    </select>
                </label>
                <label class="filter">
                    <span>"AI employee"</span>
                    <select on:change=move |ev| { agent.set(event_target_value(&ev).parse().ok()); page.set(1); }
                        prop:value=move || agent.get().map(|a| a.to_string()).unwrap_or_default()>
                        <option value="">"All AI employees"</option>
                        {move || agents.get().and_then(|r| r.ok()).flatten().unwrap_or_default().into_iter().map(|a| {
                            let id = a.id.to_string();
                            let selected = agent.get_untracked() == Some(a.id);
                            view! { <option value=id selected=selected>{a.input.name}</option> }
                        }).collect_view()}
                    </select>
                </label>
            </form>
            {move || match list.get() {
                None => view! { <p class="loading" role="status">"Loading conversations…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some(p))) if p.items.is_empty() && filtered() => view! {
                    <div class="empty">
                        <p>"No conversations match these filters."</p>
                        <button class="secondary" on:click=clear>"Clear the filters"</button>
                    </div>
                }.into_any(),
                Some(Ok(Some(p))) if p.items.is_empty() => view! {
                    <div class="card empty-state">
                        <h2>"Nothing here"</h2>
                        <p>{view.get_untracked().empty()}</p>
                    </div>
                }.into_any(),
                Some(Ok(Some(p))) => {
                    let total = p.total;
                    view! {
                        <div class="table-wrap">
                            <table class="table stack inbox-table">
                                <caption class="sr-only">"Conversations"</caption>
                                <thead><tr>
                                    <th>"Customer"</th><th>"Channel"</th><th>"AI employee"</th><th>"Owner"</th><th>"Status"</th><th>"Latest message"</th><th>"Last activity"</th>
                                </tr></thead>
                                <tbody>
                                    {p.items.into_iter().map(|c| view! { <Row c=c /> }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                        <Pager page=page total=total per_page=PER_PAGE one="conversation" many="conversations" />
                    }.into_any()
                }
            }}
        </Show>
    }
}

/// One conversation in the list; the customer's name opens it.
#[component]
fn Row(c: ConversationSummary) -> impl IntoView {
    let href = format!("/inbox/{}", c.id);
    let (customer, owner) = (c.customer.clone(), owner_label(&c));
    let waiting = c.owner == Owner::Queue;
    let handoff = c.handoff_reason.as_deref().map(reason_label);
    let first_response = c
        .first_response_secs
        .map(|s| format!("First reply after {}", duration(s)));
    let snoozed = (c.status == InboxStatus::Snoozed)
        .then_some(c.snoozed_until)
        .flatten()
        .map(|t| format!("Until {}", when(t)));
    view! {
        <tr class:waiting-row=waiting>
            <td data-label="Customer">
                <div class="cell">
                    <A href=href>{customer}</A>
                    {handoff.map(|h| view! { <span class="hint">{format!("Handed off: {h}")}</span> })}
                </div>
            </td>
            <td data-label="Channel"><span class="badge channel">{channel_label(c.channel)}</span></td>
            <td data-label="AI employee">{c.agent_name.clone().unwrap_or_else(|| "—".into())}</td>
            <td data-label="Owner"><span class=owner_class(c.owner)>{owner}</span></td>
            <td data-label="Status">
                <div class="cell">
                    <span class=status_class(c.status)>{status_label(c.status)}</span>
                    {snoozed.map(|s| view! { <span class="hint">{s}</span> })}
                </div>
            </td>
            <td data-label="Latest message" class="preview">{c.preview.clone()}</td>
            <td data-label="Last activity" class="date">
                <div class="cell">
                    <span title=when(c.last_message_at)>{ago(c.last_message_at)}</span>
                    {first_response.map(|f| view! { <span class="hint">{f}</span> })}
                </div>
            </td>
        </tr>
    }
}

/// The member's own notification choices: desktop notifications in this browser (asked for only
/// from the button) and email about new hand-offs in this tenant.
#[component]
fn Notifications() -> impl IntoView {
    let session = use_session();
    let permission = RwSignal::new(live::notification_permission());
    let asking = RwSignal::new(false);
    let settings = RwSignal::new(None::<NotificationSettings>);
    let saving = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let tenant = session.tenant.get();
        settings.set(None);
        error.set(None);
        let Some((tenant, _)) = tenant else {
            return;
        };
        spawn_local(async move {
            let answer = api::get::<NotificationSettings>(&format!(
                "/api/tenants/{tenant}/me/notifications"
            ))
            .await;
            if session.tenant.get_untracked().map(|t| t.0) != Some(tenant) {
                return;
            }
            match answer {
                Ok(s) => {
                    let _ = settings.try_set(Some(s));
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = error.try_set(Some(e.message()));
                }
            }
        });
    });
    let enable = move |_| {
        asking.set(true);
        spawn_local(async move {
            let answer = live::request_notifications().await;
            let _ = permission.try_set(answer);
            let _ = asking.try_set(false);
            if answer == Some(web_sys::NotificationPermission::Granted) {
                session.show_toast(
                    "Desktop notifications are on: this browser tells you about each hand-off.",
                );
            }
        });
    };
    let toggle_email = move |ev| {
        let on = event_target_checked(&ev);
        let Some((tenant, name)) = session.tenant.get_untracked() else {
            return;
        };
        saving.set(true);
        error.set(None);
        spawn_local(async move {
            let body = NotificationSettings { email_handoffs: on };
            match api::send::<_, NotificationSettings>(
                HttpMethod::PUT,
                &format!("/api/tenants/{tenant}/me/notifications"),
                &body,
            )
            .await
            {
                Ok(s) => {
                    let _ = settings.try_set(Some(s));
                    session.show_toast(if s.email_handoffs {
                        format!("You will get an email about each new hand-off in {name}.")
                    } else {
                        format!("You will no longer get emails about hand-offs in {name}.")
                    });
                }
                Err(e) => {
                    session.handle(&e);
                    // The box shows what is saved, not what was clicked.
                    let _ = settings.try_update(|_| {});
                    let _ = error.try_set(Some(e.message()));
                }
            }
            let _ = saving.try_set(false);
        });
    };
    view! {
        <section class="card inbox-notify" aria-label="Notifications">
            <div class="notify-item">
                {move || match permission.get() {
                    None => view! { <span class="hint">"This browser cannot show desktop notifications."</span> }.into_any(),
                    Some(web_sys::NotificationPermission::Granted) => view! { <span class="hint">"Desktop notifications are on in this browser."</span> }.into_any(),
                    Some(web_sys::NotificationPermission::Denied) => view! { <span class="hint">"Desktop notifications are blocked for this site in the browser's settings."</span> }.into_any(),
                    Some(_) => view! {
                        <button class="secondary" disabled=move || asking.get() on:click=enable>
                            {move || if asking.get() { "Asking the browser…" } else { "Enable desktop notifications" }}
                        </button>
                    }.into_any(),
                }}
            </div>
            <label class="check notify-item">
                <input type="checkbox"
                    prop:checked=move || settings.get().is_some_and(|s| s.email_handoffs)
                    disabled=move || settings.get().is_none() || saving.get()
                    on:change=toggle_email />
                <span>"Email me about new hand-offs"</span>
            </label>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}
