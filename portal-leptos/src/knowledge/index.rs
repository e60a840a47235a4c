//! The embedding index: which model the tenant's passages are embedded with, a rebuild with
//! another model while it runs (followed live), why the last one failed, and for customer admins
//! the choice of another model.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::knowledge::{KnowledgeIndex, KnowledgeIndexChange};

use super::POLL_MS;
use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

#[component]
pub(super) fn IndexPanel(manage: Signal<bool>) -> impl IntoView {
    let session = use_session();
    let version = RwSignal::new(0u32);
    let index = LocalResource::new(move || {
        let (tenant, _) = (session.tenant.get(), version.get());
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            api::get::<KnowledgeIndex>(&format!("/api/tenants/{tenant}/knowledge/index"))
                .await
                .map(Some)
        }
    });
    // While a rebuild runs it is asked again in a while, one timer at a time (as for the list).
    let poll = StoredValue::new(0u32);
    Effect::new(move |_| {
        let building = matches!(index.get(), Some(Ok(Some(i))) if i.building.is_some());
        poll.update_value(|g| *g = g.wrapping_add(1));
        if !building {
            return;
        }
        let mine = poll.get_value();
        spawn_local(async move {
            TimeoutFuture::new(POLL_MS).await;
            if poll.try_get_value() == Some(mine) {
                let _ = version.try_update(|v| *v += 1);
            }
        });
    });
    let on_started = Callback::new(move |()| version.update(|v| *v += 1));

    view! {
        <section class="card guide" aria-labelledby="knowledge-index">
            <h2 id="knowledge-index">"Search index"</h2>
            {move || match index.get() {
                None => view! { <p class="loading" role="status">"Loading…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some(i))) => view! { <IndexFacts index=i manage=manage on_started=on_started /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn IndexFacts(
    index: KnowledgeIndex,
    manage: Signal<bool>,
    on_started: Callback<()>,
) -> impl IntoView {
    let building = index.building.clone().map(|model| {
        let (done, total) = (index.building_done, index.building_total);
        view! {
            <div class="detail-box" role="status">
                <p><strong>{format!("Rebuilding with {model}: {done}/{total}")}</strong></p>
                {if total > 0 {
                    view! { <progress max=total.to_string() value=done.to_string() aria-label=format!("Rebuilding with {model}")></progress> }.into_any()
                } else {
                    view! { <progress aria-label=format!("Rebuilding with {model}")></progress> }.into_any()
                }}
                <p class="hint">"The current index keeps answering until the new one is complete; then the new one takes over."</p>
            </div>
        }
    });
    let failure = index.building_error.clone().map(|e| {
        view! {
            <div class="detail-box failed-box" role="alert">
                <p class="failure"><strong>"The last rebuild failed: "</strong>{e}</p>
                <p class="hint">"The current index stayed in use."</p>
            </div>
        }
    });
    let choices: Vec<String> = index
        .available
        .iter()
        .filter(|m| **m != index.model && Some(*m) != index.building.as_ref())
        .cloned()
        .collect();
    let rebuilding = index.building.is_some();
    view! {
        <dl class="facts pair">
            <div>
                <dt>"Embedding model"</dt>
                <dd><code>{index.model.clone()}</code>{(index.model == "local").then_some(" — shipped with Konstruct, runs on this server")}</dd>
            </div>
            <div>
                <dt>"Dimensions"</dt>
                <dd>{index.dimension}</dd>
            </div>
        </dl>
        {building}
        {failure}
        <Show when=move || manage.get()>
            <ChangeModel choices=choices.clone() rebuilding=rebuilding on_started=on_started />
        </Show>
    }
}

/// Picking another embedding model, which rebuilds the index with it.
#[component]
fn ChangeModel(choices: Vec<String>, rebuilding: bool, on_started: Callback<()>) -> impl IntoView {
    let session = use_session();
    let model = RwSignal::new(choices.first().cloned().unwrap_or_default());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    if choices.is_empty() {
        return view! { <p class="muted">"No other embedding model is offered on this server."</p> }
            .into_any();
    }
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let body = KnowledgeIndexChange {
            model: model.get_untracked(),
        };
        busy.set(true);
        spawn_local(async move {
            match api::send::<_, KnowledgeIndex>(
                HttpMethod::PUT,
                &format!("/api/tenants/{tenant}/knowledge/index"),
                &body,
            )
            .await
            {
                Ok(i) => {
                    error.set(None);
                    session.show_toast(format!(
                        "Rebuilding the index with {}. The current one keeps answering until it is complete.",
                        i.building.unwrap_or(body.model)
                    ));
                    let _ = on_started.try_run(());
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let model_msg = move || error.get().and_then(|e| e.field("model"));
    view! {
        <form class="inline-form" on:submit=submit aria-label="Change the embedding model">
            <div class="field">
                <label for="knowledge-model">"Rebuild with another model"</label>
                <select id="knowledge-model" on:change=move |ev| model.set(event_target_value(&ev))
                    prop:value=move || model.get()
                    aria-describedby="knowledge-model-hint knowledge-model-error"
                    aria-invalid=move || model_msg().is_some().to_string()>
                    {choices.into_iter().map(|m| view! { <option value=m.clone()>{m.clone()}</option> }).collect_view()}
                </select>
                <span id="knowledge-model-hint" class="hint">"Every passage is embedded again with it (a provider's model is sent each passage once). The current index keeps answering until the new one is complete."</span>
                <span id="knowledge-model-error" class="field-error" role="alert">{model_msg}</span>
            </div>
            <button type="submit" disabled=move || busy.get() || rebuilding>
                {move || if busy.get() { "Starting…" } else { "Rebuild the index" }}
            </button>
            {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
        </form>
    }
    .into_any()
}
