//! One conversation: who and where it is, who has it and where it stands, then the hand-off
//! packet and the transcript, read again whenever the live stream says it changed. Roles with
//! `conversations_handle` (customer admins) claim it, assign it, snooze, resolve or reopen it,
//! hand it back to the AI, reply to the customer through its channel and write private notes;
//! everyone else reads.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use shared::ConversationId;
use shared::auth::Permission;
use shared::inbox::{
    AssignRequest, ConversationDetail, ConversationSummary, HandBackRequest, InboxStatus, Owner,
    ReplyAvailability, StatusRequest, TextRequest, TranscriptItem,
};
use shared::resources::{Member, Page};
use uuid::Uuid;
use wasm_bindgen::JsCast;

use super::transcript::{Packet, Transcript};
use super::{ago, duration, live, owner_label, reason_label, status_class, status_label};
use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;
use crate::customers::{channel_label, when};

/// The composer's textarea, focused when a suggested reply is taken.
const COMPOSER_ID: &str = "composer-text";

/// What the composer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// To the customer, through the conversation's channel.
    Reply,
    /// Private: never sent.
    Note,
}

#[component]
pub fn Conversation() -> impl IntoView {
    let session = use_session();
    let params = use_params_map();
    let id = Memo::new(move |_| {
        params
            .read()
            .get("id")
            .and_then(|s| s.parse::<ConversationId>().ok())
    });
    // Bumped to read the conversation again (after an action, or an event about it).
    let version = RwSignal::new(0u32);
    let detail = LocalResource::new(move || {
        let (tenant, id, _) = (session.tenant.get(), id.get(), version.get());
        async move {
            let (Some((tenant, _)), Some(id)) = (tenant, id) else {
                return Ok(None);
            };
            api::get::<ConversationDetail>(&format!("/api/tenants/{tenant}/conversations/{id}"))
                .await
                .map(Some)
        }
    });
    let reload = move || {
        let _ = version.try_update(|v| *v = v.wrapping_add(1));
    };
    live::on_change(
        move |about| about.is_none() || about == id.get_untracked(),
        reload,
    );
    let loaded = Memo::new(move |_| detail.get().and_then(Result::ok).flatten());
    let summary = Memo::new(move |_| loaded.get().map(|d| d.conversation));
    let packet = Memo::new(move |_| loaded.get().and_then(|d| d.packet));
    let transcript = Memo::new(move |_| {
        loaded
            .get()
            .map(|d| (d.transcript, d.conversation.customer, d.truncated))
    });
    let reply = Memo::new(move |_| loaded.get().map(|d| d.reply));
    let handle = Signal::derive(move || session.can(Permission::ConversationsHandle));
    let draft = RwSignal::new(String::new());
    let mode = RwSignal::new(Mode::Reply);
    let use_reply = Callback::new(move |text: String| {
        draft.set(text);
        mode.set(Mode::Reply);
        if let Some(el) = document()
            .get_element_by_id(COMPOSER_ID)
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    });
    let done = Callback::new(move |()| reload());

    view! {
        <p class="back"><A href="/inbox">"← Inbox"</A></p>
        {move || match detail.get() {
            None => view! { <p class="loading" role="status">"Loading the conversation…"</p> }.into_any(),
            Some(Err(e)) if e.status == 404 => view! {
                <p class="error" role="alert">"This conversation does not exist in this tenant. It may belong to another tenant than the one in focus."</p>
            }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(None)) if session.tenant.get().is_none() => view! { <p class="empty">"Pick a tenant in the menu first."</p> }.into_any(),
            Some(Ok(None)) => view! { <p class="error" role="alert">"This address does not name a conversation."</p> }.into_any(),
            Some(Ok(Some(_))) => ().into_any(),
        }}
        <Show when=move || summary.get().is_some()>
            <Header summary=summary handle=handle on_done=done />
            {move || packet.get().map(|p| view! { <Packet packet=p use_reply=handle.get().then_some(use_reply) /> })}
            {move || transcript.get().map(|(items, customer, truncated)| view! { <Transcript items=items customer=customer truncated=truncated /> })}
            <Show when=move || handle.get() fallback=|| view! {
                <p class="readonly-note" role="note">"Read-only: your role can follow this conversation but not answer it. A customer admin can."</p>
            }>
                <Composer summary=summary reply=reply draft=draft mode=mode on_sent=done />
            </Show>
        </Show>
    }
}

/// The conversation's facts, and what a person can do with it.
#[component]
fn Header(
    summary: Memo<Option<ConversationSummary>>,
    handle: Signal<bool>,
    on_done: Callback<()>,
) -> impl IntoView {
    let fact = move |f: fn(&ConversationSummary) -> Option<String>| {
        move || summary.get().as_ref().and_then(f)
    };
    view! {
        <header class="page-head conversation-head">
            <h1>{move || summary.get().map(|c| format!("Conversation with {}", c.customer)).unwrap_or_default()}</h1>
            <dl class="pairs conversation-facts" aria-label="About this conversation">
                <dt>"Channel"</dt>
                <dd>{move || summary.get().map(|c| view! { <span class="badge channel">{channel_label(c.channel)}</span> })}</dd>
                <dt>"AI employee"</dt>
                <dd>{fact(|c| Some(c.agent_name.clone().unwrap_or_else(|| "—".into())))}</dd>
                <dt>"Owner"</dt>
                <dd>{move || summary.get().map(|c| {
                    let class = match c.owner { Owner::Ai => "badge muted", Owner::Queue => "badge warn", Owner::Person => "badge info" };
                    let label = match c.owner { Owner::Queue => "Waiting for a person".to_string(), _ => owner_label(&c) };
                    view! { <span class=class>{label}</span> }
                })}</dd>
                <dt>"Status"</dt>
                <dd>{move || summary.get().map(|c| {
                    let until = (c.status == InboxStatus::Snoozed).then_some(c.snoozed_until).flatten().map(|u| format!(" until {}", when(u)));
                    view! { <span class=status_class(c.status)>{status_label(c.status)}</span>{until} }
                })}</dd>
                {move || summary.get().and_then(|c| c.handed_off_at.map(|at| {
                    let why = c.handoff_reason.as_deref().map(|r| format!(" — {}", reason_label(r).to_lowercase())).unwrap_or_default();
                    view! { <dt>"Handed off"</dt><dd><span title=when(at)>{ago(at)}</span>{why}</dd> }
                }))}
                {move || summary.get().and_then(|c| c.first_response_secs).map(|s| view! { <dt>"First reply"</dt><dd>{format!("after {}", duration(s))}</dd> })}
                {move || summary.get().and_then(|c| c.resolution_secs).map(|s| view! { <dt>"Resolved"</dt><dd>{format!("after {}", duration(s))}</dd> })}
                <dt>"Last activity"</dt>
                <dd>{move || summary.get().map(|c| view! { <span title=when(c.last_message_at)>{ago(c.last_message_at)}</span> })}</dd>
            </dl>
        </header>
        <Show when=move || handle.get()>
            <Actions summary=summary on_done=on_done />
        </Show>
    }
}

/// A change of the conversation: which button, what it is called while it runs, the request.
#[derive(Clone)]
struct Change {
    action: &'static str,
    path: &'static str,
    body: Option<serde_json::Value>,
}

/// Claim, assign, snooze, resolve, reopen, hand back: each says it is running, and what came of
/// it (a toast, or the server's error).
#[component]
fn Actions(summary: Memo<Option<ConversationSummary>>, on_done: Callback<()>) -> impl IntoView {
    let session = use_session();
    // The action running, if one is: every button waits for it.
    let busy = RwSignal::new(None::<&'static str>);
    let error = RwSignal::new(None::<ApiError>);
    let assignee = RwSignal::new(String::new());
    let snooze_until = RwSignal::new(String::new());
    let hand_back_summary = RwSignal::new(String::new());
    let members = LocalResource::new(move || {
        let tenant = session.tenant.get();
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(Vec::new());
            };
            api::get::<Page<Member>>(&format!("/api/tenants/{tenant}/members?per_page=100"))
                .await
                .map(|p| p.items)
        }
    });
    // The select starts at whoever has the conversation now.
    Effect::new(move |_| {
        let current = summary
            .get()
            .and_then(|c| c.assignee_id)
            .map(|a| a.to_string())
            .unwrap_or_default();
        assignee.set(current);
    });
    let me = move || session.me.get().map(|m| m.user.id);
    let member_name = move |id: Uuid| {
        members
            .get_untracked()
            .and_then(Result::ok)
            .and_then(|list| list.into_iter().find(|m| m.user_id == id))
            .map(|m| {
                if m.display_name.trim().is_empty() {
                    m.email
                } else {
                    m.display_name
                }
            })
    };

    let run = move |change: Change, said: Box<dyn FnOnce(&ConversationSummary) -> String>| {
        let (Some((tenant, _)), Some(c)) =
            (session.tenant.get_untracked(), summary.get_untracked())
        else {
            return;
        };
        if busy.get_untracked().is_some() {
            return;
        }
        busy.set(Some(change.action));
        error.set(None);
        let path = format!(
            "/api/tenants/{tenant}/conversations/{}/{}",
            c.id, change.path
        );
        spawn_local(async move {
            let answer = match &change.body {
                Some(body) => {
                    api::send::<_, ConversationSummary>(HttpMethod::POST, &path, body).await
                }
                None => api::act::<ConversationSummary>(HttpMethod::POST, &path).await,
            };
            match answer {
                Ok(after) => {
                    session.show_toast(said(&after));
                    on_done.run(());
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = error.try_set(Some(e));
                }
            }
            let _ = busy.try_set(None);
        });
    };

    let claim = move |_| {
        run(
            Change {
                action: "claim",
                path: "claim",
                body: None,
            },
            Box::new(|c| {
                format!(
                    "You have the conversation with {}. The AI stays silent while it is yours.",
                    c.customer
                )
            }),
        );
    };
    let assign = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let picked = assignee.get_untracked().parse::<Uuid>().ok();
        let name = picked.and_then(member_name);
        let body = serde_json::to_value(AssignRequest {
            assignee_id: picked,
        })
        .ok();
        run(
            Change {
                action: "assign",
                path: "assign",
                body,
            },
            Box::new(move |_| match name {
                Some(n) => format!("Assigned to {n}."),
                None => "Back in the queue: it waits for a person again.".into(),
            }),
        );
    };
    let status = move |to: InboxStatus, action: &'static str| {
        let body = serde_json::to_value(StatusRequest {
            status: to,
            snoozed_until: None,
        })
        .ok();
        run(
            Change {
                action,
                path: "status",
                body,
            },
            Box::new(move |c| match to {
                InboxStatus::Resolved => format!("Resolved the conversation with {}.", c.customer),
                _ => format!("Reopened the conversation with {}.", c.customer),
            }),
        );
    };
    let snooze = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let until = match local_to_utc(&snooze_until.get_untracked()) {
            Ok(t) => t,
            Err(message) => {
                error.set(Some(ApiError::local_field("snoozed_until", message)));
                return;
            }
        };
        let body = serde_json::to_value(StatusRequest {
            status: InboxStatus::Snoozed,
            snoozed_until: Some(until),
        })
        .ok();
        run(
            Change {
                action: "snooze",
                path: "status",
                body,
            },
            Box::new(move |_| {
                format!(
                    "Snoozed until {}. It comes back by itself then, or when the customer writes.",
                    when(until)
                )
            }),
        );
    };
    let hand_back = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = serde_json::to_value(HandBackRequest {
            summary: hand_back_summary.get_untracked().trim().to_string(),
        })
        .ok();
        run(
            Change {
                action: "hand_back",
                path: "hand-back",
                body,
            },
            Box::new(move |c| {
                let _ = hand_back_summary.try_set(String::new());
                format!("Handed back: the AI answers {} again.", c.customer)
            }),
        );
    };

    let label = move |action: &'static str, idle: &'static str, running: &'static str| {
        move || {
            if busy.get() == Some(action) {
                running
            } else {
                idle
            }
        }
    };
    let waiting = move || busy.get().is_some();
    let owner = move || summary.get().map(|c| c.owner);
    let state = move || summary.get().map(|c| c.status);
    let mine = move || {
        summary.get().is_some_and(|c| {
            c.owner == Owner::Person && c.assignee_id.is_some() && c.assignee_id == me()
        })
    };
    let field = move |name: &'static str| move || error.get().and_then(|e| e.field(name));

    view! {
        <section class="card actions-card" aria-label="Actions">
            <div class="actions">
                <Show when=move || !mine()>
                    <button disabled=waiting on:click=claim>{label("claim", "Claim", "Claiming…")}</button>
                </Show>
                <Show when=move || state() != Some(InboxStatus::Resolved)>
                    <button class="secondary" disabled=waiting on:click=move |_| status(InboxStatus::Resolved, "resolve")>{label("resolve", "Resolve", "Resolving…")}</button>
                </Show>
                <Show when=move || matches!(state(), Some(InboxStatus::Resolved | InboxStatus::Snoozed | InboxStatus::Pending))>
                    <button class="secondary" disabled=waiting on:click=move |_| status(InboxStatus::Open, "reopen")>{label("reopen", "Reopen", "Reopening…")}</button>
                </Show>
            </div>
            <div class="action-forms">
                <form class="inline-form" on:submit=assign aria-label="Assign">
                    <div class="field">
                        <label for="assign-to">"Assign to…"</label>
                        <select id="assign-to" on:change=move |ev| assignee.set(event_target_value(&ev)) prop:value=move || assignee.get()
                            aria-describedby="assign-error" aria-invalid=move || field("assignee_id")().is_some().to_string()>
                            <option value="">"Nobody (back to the queue)"</option>
                            {move || members.get().and_then(Result::ok).unwrap_or_default().into_iter().map(|m| {
                                let id = m.user_id.to_string();
                                let selected = assignee.get_untracked() == id;
                                let name = if m.display_name.trim().is_empty() { m.email.clone() } else { format!("{} ({})", m.display_name, m.email) };
                                view! { <option value=id selected=selected>{name}</option> }
                            }).collect_view()}
                        </select>
                        <span id="assign-error" class="field-error" role="alert">{field("assignee_id")}</span>
                    </div>
                    <button type="submit" class="secondary" disabled=waiting>{label("assign", "Assign", "Assigning…")}</button>
                </form>
                <form class="inline-form" on:submit=snooze aria-label="Snooze">
                    <div class="field">
                        <label for="snooze-until">"Snooze until"</label>
                        <input id="snooze-until" type="datetime-local" prop:value=move || snooze_until.get()
                            on:input=move |ev| snooze_until.set(event_target_value(&ev))
                            aria-describedby="snooze-hint snooze-error" aria-invalid=move || field("snoozed_until")().is_some().to_string() />
                        <span id="snooze-hint" class="hint">"In this browser's time zone. Out of the open list until then."</span>
                        <span id="snooze-error" class="field-error" role="alert">{field("snoozed_until")}</span>
                    </div>
                    <button type="submit" class="secondary" disabled=move || waiting() || snooze_until.get().is_empty()>{label("snooze", "Snooze", "Snoozing…")}</button>
                </form>
                <Show when=move || owner().is_some_and(|o| o != Owner::Ai)>
                    <form class="inline-form hand-back" on:submit=hand_back aria-label="Hand back to AI">
                        <div class="field">
                            <label for="hand-back-summary">"What you did, for the AI (optional)"</label>
                            <textarea id="hand-back-summary" rows="2" prop:value=move || hand_back_summary.get()
                                on:input=move |ev| hand_back_summary.set(event_target_value(&ev))
                                aria-describedby="hand-back-error" placeholder="e.g. Refund issued; the customer only needs the tracking link now."></textarea>
                            <span id="hand-back-error" class="field-error" role="alert">{field("summary")}</span>
                        </div>
                        <button type="submit" class="secondary" disabled=waiting>{label("hand_back", "Hand back to AI", "Handing back…")}</button>
                    </form>
                </Show>
            </div>
            {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
        </section>
    }
}

/// A `datetime-local` value (this browser's zone) as a moment in UTC, if it is one in the future.
fn local_to_utc(value: &str) -> Result<chrono::DateTime<chrono::Utc>, &'static str> {
    if value.trim().is_empty() {
        return Err("choose a date and time");
    }
    // `Date` reads a date-time without a zone as local time, which is what the input holds.
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(value));
    if date.get_time().is_nan() {
        return Err("is not a date and time");
    }
    if date.get_time() <= js_sys::Date::now() {
        return Err("must be in the future");
    }
    String::from(date.to_iso_string())
        .parse::<chrono::DateTime<chrono::Utc>>()
        .map_err(|_| "is not a date and time")
}

/// Writes to the customer (through the channel, taking the conversation) or a private note.
#[component]
fn Composer(
    summary: Memo<Option<ConversationSummary>>,
    reply: Memo<Option<ReplyAvailability>>,
    draft: RwSignal<String>,
    mode: RwSignal<Mode>,
    on_sent: Callback<()>,
) -> impl IntoView {
    let session = use_session();
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    let can_reply = move || reply.get().is_some_and(|r| r.can_reply);
    let note = move || reply.get().and_then(|r| r.note);
    // A conversation that cannot be answered now can still take notes.
    Effect::new(move |_| {
        if reply.get().is_some_and(|r| !r.can_reply) {
            mode.set(Mode::Note);
        }
    });
    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = draft.get_untracked().trim().to_string();
        let (Some((tenant, _)), Some(c)) =
            (session.tenant.get_untracked(), summary.get_untracked())
        else {
            return;
        };
        if text.is_empty() || busy.get_untracked() {
            return;
        }
        let m = mode.get_untracked();
        let path = format!(
            "/api/tenants/{tenant}/conversations/{}/{}",
            c.id,
            if m == Mode::Reply { "replies" } else { "notes" }
        );
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::send::<_, TranscriptItem>(HttpMethod::POST, &path, &TextRequest { text })
                .await
            {
                Ok(_) => {
                    let _ = draft.try_set(String::new());
                    session.show_toast(match m {
                        Mode::Reply => format!("Reply sent to {}.", c.customer),
                        Mode::Note => {
                            "Private note added. The customer does not see it.".to_string()
                        }
                    });
                    on_sent.run(());
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = error.try_set(Some(e));
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let text_label = move || match mode.get() {
        Mode::Reply => "Your reply",
        Mode::Note => "Your private note",
    };
    let text_error = move || error.get().and_then(|e| e.field("text"));
    view! {
        <form class="card composer-box" class:noting=move || mode.get() == Mode::Note on:submit=send aria-label="Write">
            <fieldset class="modes">
                <legend class="sr-only">"What to write"</legend>
                <label class="check">
                    <input type="radio" name="composer-mode" prop:checked=move || mode.get() == Mode::Reply
                        disabled=move || !can_reply() on:change=move |_| mode.set(Mode::Reply) />
                    <span>"Reply to customer"</span>
                </label>
                <label class="check">
                    <input type="radio" name="composer-mode" prop:checked=move || mode.get() == Mode::Note
                        on:change=move |_| mode.set(Mode::Note) />
                    <span>"Private note"</span>
                </label>
            </fieldset>
            <p id="composer-hint" class="hint">
                {move || match (mode.get(), can_reply(), note()) {
                    (_, false, Some(n)) => format!("Replies cannot be sent now: {n}"),
                    (_, false, None) => "Replies cannot be sent now.".to_string(),
                    (Mode::Reply, true, Some(n)) => n,
                    (Mode::Reply, true, None) => "Goes to the customer through the conversation's channel, and makes the conversation yours.".to_string(),
                    (Mode::Note, true, _) => "Only your colleagues see notes; they are never sent.".to_string(),
                }}
            </p>
            <label class="sr-only" for=COMPOSER_ID>{text_label}</label>
            <textarea id=COMPOSER_ID rows="4" prop:value=move || draft.get()
                on:input=move |ev| draft.set(event_target_value(&ev))
                placeholder=move || if mode.get() == Mode::Reply { "Write to the customer…" } else { "Write a note for your colleagues…" }
                aria-describedby="composer-hint composer-error" aria-invalid=move || text_error().is_some().to_string()></textarea>
            <span id="composer-error" class="field-error" role="alert">{text_error}</span>
            {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
            <div class="form-actions">
                <button type="submit" disabled=move || busy.get() || draft.get().trim().is_empty()>
                    {move || match (mode.get(), busy.get()) {
                        (Mode::Reply, false) => "Send reply",
                        (Mode::Reply, true) => "Sending…",
                        (Mode::Note, false) => "Add private note",
                        (Mode::Note, true) => "Adding…",
                    }}
                </button>
            </div>
        </form>
    }
}
