//! "What would the agent find?": a customer's question run against the knowledge base as an AI
//! employee would run it, showing the passages it would be given, best first, with their scores.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::knowledge::{KnowledgeQuery, KnowledgeResults, Passage};

use super::{AgentNames, web_link};
use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

#[component]
pub(super) fn Search(names: AgentNames) -> impl IntoView {
    let session = use_session();
    let q = RwSignal::new(String::new());
    let agent = RwSignal::new(None::<AgentId>);
    let results = RwSignal::new(None::<Result<KnowledgeResults, ApiError>>);
    let busy = RwSignal::new(false);
    // Another tenant: nothing of the last one's search is kept.
    Effect::new(move |_| {
        session.tenant.track();
        q.set(String::new());
        agent.set(None);
        results.set(None);
    });
    let search = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let question = q.get_untracked().trim().to_string();
        if question.is_empty() {
            results.set(Some(Err(ApiError::local_field(
                "q",
                "type a question as a customer would ask it",
            ))));
            return;
        }
        let body = KnowledgeQuery {
            q: question,
            agent_id: agent.get_untracked(),
            limit: None,
        };
        busy.set(true);
        spawn_local(async move {
            let answer = api::send::<_, KnowledgeResults>(
                HttpMethod::POST,
                &format!("/api/tenants/{tenant}/knowledge/search"),
                &body,
            )
            .await;
            if let Err(e) = &answer {
                session.handle(e);
            }
            let _ = results.try_set(Some(answer));
            let _ = busy.try_set(false);
        });
    };
    let q_msg = move || match results.get() {
        Some(Err(e)) => e.field("q"),
        _ => None,
    };

    view! {
        <section class="card guide" aria-labelledby="knowledge-search">
            <h2 id="knowledge-search">"What would the agent find?"</h2>
            <p class="muted">"Ask as a customer would: these are the passages an AI employee would be given to answer from, best first."</p>
            <form class="toolbar" role="search" aria-label="What would the agent find?" on:submit=search>
                <div class="field search">
                    <label for="knowledge-q">"Customer question"</label>
                    <input id="knowledge-q" type="search" placeholder="e.g. How long do refunds take?"
                        prop:value=move || q.get() on:input=move |ev| q.set(event_target_value(&ev))
                        aria-describedby="knowledge-q-error" aria-invalid=move || q_msg().is_some().to_string() />
                    <span id="knowledge-q-error" class="field-error" role="alert">{q_msg}</span>
                </div>
                <label class="filter">
                    <span>"As answered by"</span>
                    <select on:change=move |ev| agent.set(event_target_value(&ev).parse().ok())
                        prop:value=move || agent.get().map(|a| a.to_string()).unwrap_or_default()>
                        <option value="">"Any AI employee (every document)"</option>
                        {move || names.get().into_iter().map(|(id, name)| view! { <option value=id.to_string()>{name}</option> }).collect_view()}
                    </select>
                </label>
                <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Searching…" } else { "Search" }}</button>
            </form>
            {move || match results.get() {
                None => ().into_any(),
                Some(Err(e)) if e.field("q").is_some() => ().into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
                Some(Ok(r)) if r.passages.is_empty() => view! {
                    <div class="empty" role="status">
                        <p>{format!("Nothing above the relevance floor ({:.2}).", r.floor)}</p>
                        <p class="muted">"An AI employee would find nothing to cite for this question. Add a document that answers it, or word the question as your documents do."</p>
                    </div>
                }.into_any(),
                Some(Ok(r)) => {
                    let count = r.passages.len();
                    view! {
                        <p class="muted" role="status">{format!(
                            "{} above the relevance floor ({:.2}) · embedded with {}",
                            if count == 1 { "1 passage".to_string() } else { format!("{count} passages") },
                            r.floor,
                            r.model
                        )}</p>
                        <ol class="passages" aria-label="Passages found">
                            {r.passages.into_iter().map(passage).collect_view()}
                        </ol>
                    }.into_any()
                }
            }}
        </section>
    }
}

/// One passage found: where it comes from, its text (a few lines of it), and how close it is.
fn passage(p: Passage) -> impl IntoView {
    let title = match web_link(p.url.as_deref()) {
        Some(url) => view! { <a class="strong" href=url target="_blank" rel="noopener noreferrer">{p.title}</a> }.into_any(),
        None => view! { <span class="strong">{p.title}</span> }.into_any(),
    };
    view! {
        <li class="passage">
            <div class="passage-head">
                {title}
                <span class="badge info" title="Similarity to the question, up to 1.00">{format!("Score {:.2}", p.score)}</span>
            </div>
            {(!p.heading.trim().is_empty()).then(|| view! { <span class="hint">{p.heading}</span> })}
            <p class="clamp">{p.text}</p>
        </li>
    }
}
