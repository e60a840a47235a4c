//! What a conversation's page shows of it: the hand-off packet (why the AI handed off and what a
//! person needs to answer), then the transcript — the customer's messages on the left, the AI's
//! and people's replies on the right with how their delivery went, private notes apart in yellow,
//! and what happened to the conversation (claimed, handed back, …) as small lines between.

use leptos::prelude::*;
use shared::channel::{DeliveryStatus, MessageDirection, ReplyKind};
use shared::inbox::{HandoffPacket, TranscriptItem};
use shared::knowledge::Citation;

use super::reason_label;
use crate::customers::when;

/// Why a part was withheld, as its tooltip says.
const WITHHELD: &str = "not sent: a person took the conversation";

/// The hand-off packet. `use_reply` fills the composer with the suggested reply (only for those
/// who may reply).
#[component]
pub fn Packet(packet: HandoffPacket, use_reply: Option<Callback<String>>) -> impl IntoView {
    let suggested = packet.suggested_reply.clone();
    let has_suggestion = !suggested.trim().is_empty();
    let target = packet
        .handoff_target
        .clone()
        .filter(|t| !t.trim().is_empty());
    let list = |items: Vec<String>| {
        view! { <ul class="packet-list">{items.into_iter().map(|t| view! { <li>{t}</li> }).collect_view()}</ul> }
    };
    view! {
        <section class="card packet" aria-labelledby="packet-title">
            <h2 id="packet-title">"Hand-off"</h2>
            <p class="hint">{format!("{} · {}", reason_label(&packet.reason), when(packet.at))}{target.map(|t| format!(" · for {t}"))}</p>
            <dl class="facts packet-facts">
                <div><dt>"Why"</dt><dd>{packet.why.clone()}</dd></div>
                <Show when={let s = packet.summary.clone(); move || !s.trim().is_empty()}>
                    <div><dt>"Summary"</dt><dd class="pre">{packet.summary.clone()}</dd></div>
                </Show>
                <Show when={let s = packet.intent.clone(); move || !s.trim().is_empty()}>
                    <div><dt>"What the customer wants"</dt><dd>{packet.intent.clone()}</dd></div>
                </Show>
                {(!packet.tried.is_empty()).then(|| view! { <div><dt>"What the AI tried"</dt><dd>{list(packet.tried.clone())}</dd></div> })}
                {(!packet.cited.is_empty()).then(|| view! { <div><dt>"Documents it cited"</dt><dd>{list(packet.cited.clone())}</dd></div> })}
                <Show when={let s = packet.expected_reply.clone(); move || !s.trim().is_empty()}>
                    <div><dt>"What the customer was told"</dt><dd>{packet.expected_reply.clone()}</dd></div>
                </Show>
            </dl>
            {has_suggestion.then(|| view! {
                <div class="suggested">
                    <span class="io-title">"Suggested reply"</span>
                    <blockquote class="pre">{suggested.clone()}</blockquote>
                    {use_reply.map(|f| {
                        let text = suggested.clone();
                        view! { <button type="button" class="secondary small" on:click=move |_| f.run(text.clone())>"Use this reply"</button> }
                    })}
                </div>
            })}
        </section>
    }
}

/// How far an outbound part got, in a word, with its badge class.
fn delivery_label(d: DeliveryStatus) -> (&'static str, &'static str) {
    match d {
        DeliveryStatus::Pending => ("badge muted", "Sending"),
        DeliveryStatus::Sent => ("badge muted", "Sent"),
        DeliveryStatus::Delivered => ("badge ok", "Delivered"),
        DeliveryStatus::Read => ("badge ok", "Read"),
        DeliveryStatus::Failed => ("badge danger", "Not delivered"),
        DeliveryStatus::Withheld => ("badge muted", "Withheld"),
    }
}

/// What an AI part was, when it was not a plain answer.
fn kind_label(kind: ReplyKind) -> Option<&'static str> {
    match kind {
        ReplyKind::Answer | ReplyKind::Human => None,
        ReplyKind::Notice => Some("notice"),
        ReplyKind::Apology => Some("apology"),
        ReplyKind::Handoff => Some("hand-off notice"),
        ReplyKind::Decline => Some("declined"),
    }
}

/// A string field of an event's details, if it has one.
fn detail(details: &serde_json::Value, key: &str) -> Option<String> {
    details
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty())
}

/// An event in words ("Claimed by Ada Admin"); `None` for what the transcript shows otherwise (a
/// reply is its message).
fn event_words(kind: &str, actor: Option<&str>, details: &serde_json::Value) -> Option<String> {
    let by = actor.map(|a| format!(" by {a}")).unwrap_or_default();
    let who = actor.unwrap_or("Someone");
    Some(match kind {
        "replied" | "note" => return None,
        "handed_off" => match detail(details, "reason") {
            Some(r) => format!(
                "Handed off to a person: {}",
                reason_label(&r).to_lowercase()
            ),
            None => "Handed off to a person".into(),
        },
        "claimed" => format!("Claimed{by}"),
        "assigned" => match detail(details, "assignee") {
            Some(a) => format!("Assigned to {a}{by}"),
            None => format!("Assigned{by}"),
        },
        "unassigned" => format!("Returned to the queue{by}"),
        "status" => {
            let status = detail(details, "status").unwrap_or_else(|| "changed".into());
            let until = detail(details, "snoozed_until")
                .and_then(|u| u.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .map(|u| format!(" until {}", when(u)))
                .unwrap_or_default();
            format!("Marked {}{until}{by}", status.replace('_', " "))
        }
        "handed_back" => match detail(details, "summary") {
            Some(s) => format!("Handed back to the AI{by}: “{s}”"),
            None => format!("Handed back to the AI{by}"),
        },
        "taken_in_channel" => format!("{who} answered in the channel and took the conversation"),
        other => format!("{}{by}", other.replace('_', " ")),
    })
}

/// The passages an AI reply cites, numbered as in its text.
fn citations(list: Vec<Citation>) -> impl IntoView {
    (!list.is_empty()).then(|| {
        view! {
            <ol class="citations" aria-label="Sources">
                {list.into_iter().map(|c| {
                    let heading = (!c.heading.trim().is_empty()).then(|| format!(" — {}", c.heading));
                    view! { <li>{format!("[{}] {}", c.n, c.title)}{heading}</li> }
                }).collect_view()}
            </ol>
        }
    })
}

/// The transcript, oldest first. `customer` names the customer's messages without an author.
#[component]
pub fn Transcript(items: Vec<TranscriptItem>, customer: String, truncated: bool) -> impl IntoView {
    let empty = items.is_empty();
    view! {
        <section class="transcript-wrap" aria-labelledby="transcript-title">
            <h2 id="transcript-title">"Conversation"</h2>
            {truncated.then(|| view! { <p class="hint">"Older messages are left out: the newest 500 entries are shown."</p> })}
            {empty.then(|| view! { <p class="empty">"Nothing was said yet."</p> })}
            <ol class="transcript" aria-label="Transcript">
                {items.into_iter().map(|item| entry(item, &customer)).collect_view()}
            </ol>
        </section>
    }
}

fn entry(item: TranscriptItem, customer: &str) -> AnyView {
    match item {
        TranscriptItem::Message {
            at,
            direction: MessageDirection::Inbound,
            author,
            body,
            ..
        } => view! {
            <li class="msg customer">
                <span class="who">{author.unwrap_or_else(|| customer.to_string())}</span>
                <p class="text">{body}</p>
                <span class="meta">{when(at)}</span>
            </li>
        }
        .into_any(),
        TranscriptItem::Message {
            at,
            kind,
            author,
            body,
            delivery,
            failure,
            citations: cited,
            ..
        } => {
            let human = kind == Some(ReplyKind::Human);
            let who = if human {
                author.unwrap_or_else(|| "A person".into())
            } else {
                "AI".to_string()
            };
            let withheld = delivery == Some(DeliveryStatus::Withheld);
            let text = if withheld {
                view! { <p class="text"><del title=WITHHELD>{body}</del></p> }.into_any()
            } else {
                view! { <p class="text">{body}</p> }.into_any()
            };
            let tag = kind.and_then(kind_label);
            view! {
                <li class="msg reply" class:human=human class:withheld=withheld>
                    <span class="who">{who}{tag.map(|t| view! { <span class="tag">{format!(" · {t}")}</span> })}</span>
                    {text}
                    {withheld.then(|| view! { <span class="hint">{format!("Withheld — {WITHHELD}.")}</span> })}
                    {citations(cited)}
                    <span class="meta">
                        {when(at)}
                        {delivery.filter(|d| *d != DeliveryStatus::Withheld).map(|d| {
                            let (class, label) = delivery_label(d);
                            view! { " " <span class=class>{label}</span> }
                        })}
                    </span>
                    {failure.map(|f| view! { <span class="failure">{f}</span> })}
                </li>
            }
            .into_any()
        }
        TranscriptItem::ToolCall {
            at, name, outcome, ..
        } => view! {
            <li class="event">
                <span>"Tool "<code>{name}</code>{format!(": {}", outcome.replace('_', " "))}</span>
                <span class="meta">{format!(" · {}", when(at))}</span>
            </li>
        }
        .into_any(),
        TranscriptItem::Event {
            at,
            kind,
            actor,
            body,
            details,
            ..
        } if kind == "note" => view! {
            <li class="note">
                <span class="who">"Private note"{actor.map(|a| format!(" · {a}"))}</span>
                <p class="text">{if body.is_empty() { detail(&details, "text").unwrap_or_default() } else { body }}</p>
                <span class="meta">{format!("{} · never sent to the customer", when(at))}</span>
            </li>
        }
        .into_any(),
        TranscriptItem::Event {
            at,
            kind,
            actor,
            details,
            ..
        } => match event_words(&kind, actor.as_deref(), &details) {
            Some(words) => view! {
                <li class="event">
                    <span>{words}</span>
                    <span class="meta">{format!(" · {}", when(at))}</span>
                </li>
            }
            .into_any(),
            None => ().into_any(),
        },
    }
}
