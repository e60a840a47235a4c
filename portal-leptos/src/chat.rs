//! The test chat: talk to an AI employee through the web channel — the same pipeline as Slack —
//! and watch the replies arrive, each with the tools the AI employee called on the way (with their
//! arguments and results), the knowledge-base passages it cites and what it recalled about the
//! customer. Sending costs an LLM call: roles without `chat_send`
//! (customer operators) see the conversation without the send box, and a refusal by the server's
//! send limit (429) keeps the draft and says when to try again.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::auth::Permission;
use shared::channel::{ChatAccepted, ChatMessage, ChatSend, MessageDirection};
use shared::knowledge::Citation;
use shared::tools::ToolCall;

use crate::api::{self, HttpMethod};
use crate::app::use_session;

#[component]
pub fn TestChat() -> impl IntoView {
    let session = use_session();
    let agents = crate::agents::tenant_agents();
    let agent = RwSignal::new(None::<AgentId>);
    let conversation = RwSignal::new(None::<String>);
    let messages = RwSignal::new(Vec::<ChatMessage>::new());
    let draft = RwSignal::new(String::new());
    let waiting = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let can_send = move || session.can(Permission::ChatSend);

    // The first agent is picked when the list arrives.
    Effect::new(move |_| {
        if agent.get_untracked().is_none()
            && let Some(Ok(Some(list))) = agents.get()
        {
            agent.set(list.first().map(|a| a.id));
        }
    });

    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = draft.get_untracked().trim().to_string();
        let (Some((tenant, _)), Some(agent_id)) =
            (session.tenant.get_untracked(), agent.get_untracked())
        else {
            return;
        };
        if text.is_empty() || waiting.get_untracked() {
            return;
        }
        draft.set(String::new());
        error.set(None);
        waiting.set(true);
        let path = format!("/api/tenants/{tenant}/agents/{agent_id}/messages");
        let body = ChatSend {
            text: text.clone(),
            conversation: conversation.get_untracked(),
        };
        spawn_local(async move {
            let accepted = match api::send::<_, ChatAccepted>(HttpMethod::POST, &path, &body).await
            {
                Ok(a) => a,
                Err(e) => {
                    session.handle(&e);
                    // Nothing was sent: give the text back so it can be sent again.
                    if draft.get_untracked().is_empty() {
                        draft.set(text);
                    }
                    let message = if e.status == 429 {
                        format!(
                            "Not sent — you are over the test chat's limit. {}",
                            e.body.message
                        )
                    } else {
                        e.message()
                    };
                    error.set(Some(message));
                    waiting.set(false);
                    return;
                }
            };
            conversation.set(Some(accepted.conversation.clone()));
            let before = messages
                .get_untracked()
                .iter()
                .filter(|m| m.direction == MessageDirection::Outbound)
                .count();
            // Show the message at once; the server's copy replaces it on the next poll.
            messages.update(|m| {
                m.push(ChatMessage {
                    id: uuid::Uuid::nil(),
                    direction: MessageDirection::Inbound,
                    text,
                    // The browser has no system clock for Rust here; the server's copy has the time.
                    created_at: chrono::DateTime::UNIX_EPOCH,
                    citations: Vec::new(),
                    memories: Vec::new(),
                    tool_calls: Vec::new(),
                })
            });
            let poll = format!("{path}?conversation={}", accepted.conversation);
            for _ in 0..120 {
                TimeoutFuture::new(250).await;
                match api::get::<Vec<ChatMessage>>(&poll).await {
                    Ok(list) => {
                        let answered = list
                            .iter()
                            .filter(|m| m.direction == MessageDirection::Outbound)
                            .count()
                            > before;
                        if answered || list.len() >= messages.get_untracked().len() {
                            messages.set(list);
                        }
                        if answered {
                            waiting.set(false);
                            return;
                        }
                    }
                    Err(e) => {
                        session.handle(&e);
                        error.set(Some(e.message()));
                        break;
                    }
                }
            }
            waiting.set(false);
            if error.get_untracked().is_none() {
                error.set(Some("No reply yet. The AI employee may be busy; the reply will appear here when you send your next message.".into()));
            }
        });
    };

    let pick = move |ev| {
        let value = event_target_value(&ev);
        agent.set(value.parse().ok());
        conversation.set(None);
        messages.set(Vec::new());
    };

    view! {
        <header class="page-head">
            <h1>"Test chat"</h1>
            <p class="muted">"Talk to an AI employee as a customer would. Messages go through the same pipeline as Slack."</p>
        </header>
        {move || match agents.get() {
            None => view! { <p class="loading" role="status">"Loading AI employees…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
            Some(Ok(None)) => view! { <p class="empty">"Pick a tenant in the menu first."</p> }.into_any(),
            Some(Ok(Some(list))) if list.is_empty() => view! { <p class="empty">"Hire an AI employee first, then talk to it here."</p> }.into_any(),
            Some(Ok(Some(list))) => view! {
                <div class="chat card">
                    <label class="field">
                        <span>"AI employee"</span>
                        <select on:change=pick prop:value=move || agent.get().map(|a| a.to_string()).unwrap_or_default()>
                            {list.into_iter().map(|a| view! { <option value=a.id.to_string()>{format!("{} — {}", a.input.name, a.input.role)}</option> }).collect_view()}
                        </select>
                    </label>
                    <ol class="messages" aria-label="Conversation" aria-live="polite">
                        <Show when=move || messages.get().is_empty() && !waiting.get() && can_send()>
                            <li class="hint">"Say hello — the reply appears here."</li>
                        </Show>
                        {move || messages.get().into_iter().map(|m| {
                            let mine = m.direction == MessageDirection::Inbound;
                            view! {
                                <li class=if mine { "message mine" } else { "message agent" }>
                                    <span class="who">{if mine { "You" } else { "AI employee" }}</span>
                                    <p class="text">{m.text}</p>
                                    {(!mine).then(|| tool_calls(m.tool_calls))}
                                    {(!mine).then(|| sources(m.citations, m.memories))}
                                </li>
                            }
                        }).collect_view()}
                        <Show when=move || waiting.get()>
                            <li class="message agent typing" role="status"><span class="who">"AI employee"</span><p>"typing…"</p></li>
                        </Show>
                    </ol>
                    {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                    <Show when=can_send fallback=|| view! {
                        <p class="readonly-note" role="note">"Read-only: your role can watch the test chat but not send messages, because each message costs an LLM call. A customer admin can send them."</p>
                    }>
                        <form class="composer" on:submit=send>
                            <label class="sr-only" for="chat-input">"Message"</label>
                            <input id="chat-input" placeholder="Write a message…" autocomplete="off"
                                prop:value=move || draft.get() on:input=move |ev| draft.set(event_target_value(&ev)) />
                            <button type="submit" disabled=move || waiting.get() || draft.get().trim().is_empty()>"Send"</button>
                        </form>
                    </Show>
                </div>
            }.into_any(),
        }}
    }
}

/// Under a reply: the tools called on the way to it, in order, each with how it ended and how
/// long it took, and its arguments and result behind a disclosure.
fn tool_calls(calls: Vec<ToolCall>) -> impl IntoView {
    (!calls.is_empty()).then(|| {
        view! {
            <ul class="chat-tool-calls" aria-label="Tool calls">
                {calls.into_iter().map(|c| view! {
                    <li>
                        <div class="tool-call-head">
                            <code>{c.name.clone()}</code>
                            {crate::tools::outcome_badge(c.outcome)}
                            <span class="hint">{crate::tools::duration_label(c.duration_ms)}</span>
                        </div>
                        {crate::tools::call_details(&c)}
                    </li>
                }).collect_view()}
            </ul>
        }
    })
}

/// Under a reply: the passages it cites, numbered as in its text ("[1] Refunds — Card
/// payments"), and what it recalled about the customer.
fn sources(citations: Vec<Citation>, memories: Vec<String>) -> impl IntoView {
    let cited = (!citations.is_empty()).then(|| {
        view! {
            <ol class="citations" aria-label="Sources">
                {citations.into_iter().map(|c| {
                    let title = match crate::knowledge::web_link(c.url.as_deref()) {
                        Some(url) => view! { <a href=url target="_blank" rel="noopener noreferrer">{c.title}</a> }.into_any(),
                        None => view! { <span>{c.title}</span> }.into_any(),
                    };
                    let heading = (!c.heading.trim().is_empty()).then(|| format!(" — {}", c.heading));
                    view! { <li>{format!("[{}] ", c.n)}{title}{heading}</li> }
                }).collect_view()}
            </ol>
        }
    });
    let remembered = (!memories.is_empty()).then(|| {
        view! { <p class="remembered">"Remembered: "{memories.join(" · ")}</p> }
    });
    view! { {cited}{remembered} }
}
