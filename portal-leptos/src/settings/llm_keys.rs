//! The settings' "LLM keys" section: the tenant's own provider keys (used before the
//! platform's, billed by the provider to the tenant). Per provider: add or replace a key (the
//! provider checks it before it is saved), remove it, its hint and status (never the key), and
//! what it paid for this month. Customer admins only.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::resources::{LlmKey, LlmKeyInput, LlmProvider};
use shared::usage::{UsageLine, UsageReport, format_usd};

use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

const PROVIDERS: [(LlmProvider, &str); 2] = [
    (LlmProvider::Openai, "OpenAI"),
    (LlmProvider::Anthropic, "Anthropic"),
];

type Loaded = (Vec<LlmKey>, Vec<UsageLine>);

#[component]
pub fn LlmKeysSection() -> impl IntoView {
    let session = use_session();
    let version = RwSignal::new(0u32);
    let keys = LocalResource::new(move || {
        let (tenant, _) = (session.tenant.get(), version.get());
        async move {
            let Some((id, _)) = tenant else {
                return Ok::<Option<Loaded>, ApiError>(None);
            };
            let keys = api::get::<Vec<LlmKey>>(&format!("/api/tenants/{id}/llm-keys")).await?;
            let usage = api::get::<UsageReport>(&format!(
                "/api/tenants/{id}/usage?key_owner=tenant&granularity=month"
            ))
            .await?;
            Ok(Some((keys, usage.by_model)))
        }
    });
    view! {
        <section class="section" aria-labelledby="llm-keys-title">
            <h2 id="llm-keys-title">"LLM keys"</h2>
            <p class="muted">"Your own provider keys. Your AI employees use them before the platform's, and the provider bills you directly; the platform's budget does not count them unless you say so. Keys are stored encrypted and never shown again — only their last characters."</p>
            {move || match keys.get() {
                None => view! { <p class="loading" role="status">"Loading keys…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some((list, lines)))) => view! {
                    <div class="cards">
                        {PROVIDERS.into_iter().map(|(provider, name)| {
                            let key = list.iter().find(|k| k.provider == provider).cloned();
                            let paid: Vec<UsageLine> = lines.iter().filter(|l| l.key.starts_with(&format!("{}/", provider.as_str()))).cloned().collect();
                            view! { <KeyCard provider=provider name=name key=key paid=paid version=version /> }
                        }).collect_view()}
                    </div>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn KeyCard(
    provider: LlmProvider,
    name: &'static str,
    key: Option<LlmKey>,
    paid: Vec<UsageLine>,
    version: RwSignal<u32>,
) -> impl IntoView {
    let session = use_session();
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let has_key = key.is_some();
    // How a save or a removal ends: the toast and the keys afresh, or the error.
    let done = move |result: Result<String, ApiError>| {
        match result {
            Ok(toast) => {
                let _ = draft.try_set(String::new());
                let _ = error.try_set(None);
                session.show_toast(toast);
                version.update(|v| *v += 1);
            }
            Err(e) => {
                session.handle(&e);
                let _ = error.try_set(Some(e));
            }
        }
        let _ = busy.try_set(false);
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let body = LlmKeyInput {
            api_key: draft.get_untracked().trim().to_string(),
        };
        busy.set(true);
        spawn_local(async move {
            let saved = api::send::<_, LlmKey>(
                HttpMethod::PUT,
                &format!("/api/tenants/{tenant}/llm-keys/{}", provider.as_str()),
                &body,
            )
            .await
            .map(|k| format!("{name} accepted the key ({}); it is saved.", k.hint));
            done(saved);
        });
    };
    let remove = move |_| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        busy.set(true);
        spawn_local(async move {
            let removed = api::act_empty(
                HttpMethod::DELETE,
                &format!("/api/tenants/{tenant}/llm-keys/{}", provider.as_str()),
            )
            .await
            .map(|()| format!("{name} key removed: the platform's key answers now."));
            done(removed);
        });
    };
    let input_id = format!("llm-key-{}", provider.as_str());
    let status = match &key {
        None => view! { <p><span class="badge muted">"Not set"</span>" The platform's key is used."</p> }.into_any(),
        Some(k) => match (&k.refused_at, &k.refused_reason) {
            (Some(at), reason) => view! {
                <p><span class="badge danger">"Refused"</span>{format!(" {} since {} — {}. The platform's key answers meanwhile; save a working key to use yours again.", k.hint, at.format("%Y-%m-%d %H:%M UTC"), reason.clone().unwrap_or_else(|| "the provider refused it".into()))}</p>
            }.into_any(),
            (None, _) => view! { <p><span class="badge ok">"Working"</span>{format!(" {} · saved {}", k.hint, k.updated_at.format("%Y-%m-%d"))}</p> }.into_any(),
        },
    };
    let paid_view = if paid.is_empty() {
        view! { <p class="muted">"No calls on this key this month."</p> }.into_any()
    } else {
        view! {
            <ul class="plain">
                {paid.into_iter().map(|l| view! {
                    <li>{format!("{}: {} calls, {} in / {} out tokens, {}", l.label, l.own_keys.calls, l.own_keys.input_tokens, l.own_keys.output_tokens, format_usd(l.own_keys.cost_micro_usd))}</li>
                }).collect_view()}
            </ul>
        }.into_any()
    };
    view! {
        <div class="card llm-key" aria-label=format!("{name} key")>
            <h3>{name}</h3>
            {status}
            <h4>"Paid for this month"</h4>
            {paid_view}
            <form on:submit=save aria-label=format!("{name} key form")>
                <fieldset disabled=move || busy.get()>
                    <div class="field">
                        <label for=input_id.clone()>{if has_key { format!("Replace the {name} key") } else { format!("Add an {name} key") }}</label>
                        <input id=input_id type="password" autocomplete="off" spellcheck="false" prop:value=move || draft.get() on:input=move |ev| draft.set(event_target_value(&ev)) />
                        <span class="field-error" role="alert">{move || error.get().and_then(|e| e.field("api_key").or_else(|| Some(e.message())))}</span>
                    </div>
                    <div class="form-actions">
                        <button type="submit" disabled=move || draft.get().trim().is_empty()>{move || if busy.get() { "Checking…" } else { "Check and save" }}</button>
                        {has_key.then(|| view! { <button type="button" class="secondary" on:click=remove>"Remove"</button> })}
                    </div>
                </fieldset>
            </form>
        </div>
    }
}
