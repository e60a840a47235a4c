//! The tenant's settings: its time zone (its days, months and business hours) and locale, with
//! its local time now, and (in `handoff`) its hand-off settings. Customer admins change them;
//! everyone else who can see the tenant reads them.

mod handoff;
mod llm_keys;

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::auth::Permission;
use shared::resources::{TenantSettings, TenantSettingsInput};

use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

/// The locales offered, as (code, name). The server accepts any `xx` or `xx-YY`; a tenant's
/// locale that is not here is offered as it is.
const LOCALES: &[(&str, &str)] = &[
    ("en", "English"),
    ("en-GB", "English (United Kingdom)"),
    ("en-US", "English (United States)"),
    ("de", "German — Deutsch"),
    ("fr", "French — Français"),
    ("es", "Spanish — Español"),
    ("it", "Italian — Italiano"),
    ("nl", "Dutch — Nederlands"),
    ("pt", "Portuguese — Português"),
    ("pt-BR", "Portuguese (Brazil) — Português do Brasil"),
    ("sv", "Swedish — Svenska"),
    ("da", "Danish — Dansk"),
    ("nb", "Norwegian Bokmål — Norsk bokmål"),
    ("fi", "Finnish — Suomi"),
    ("pl", "Polish — Polski"),
    ("ja", "Japanese — 日本語"),
    ("zh", "Chinese — 中文"),
];

/// What the form edits.
#[derive(Clone, PartialEq, Default)]
struct Draft {
    time_zone: String,
    locale: String,
}

impl Draft {
    fn of(s: &TenantSettings) -> Self {
        Self {
            time_zone: s.time_zone.clone(),
            locale: s.locale.clone(),
        }
    }
}

/// The browser's own time zone, to offer as a shortcut.
fn browser_time_zone() -> Option<String> {
    let format = js_sys::Intl::DateTimeFormat::new(&js_sys::Array::new(), &js_sys::Object::new());
    js_sys::Reflect::get(&format.resolved_options(), &"timeZone".into())
        .ok()?
        .as_string()
}

#[component]
pub fn Settings() -> impl IntoView {
    let session = use_session();
    // The server's last answer; `None` until it arrives.
    let current = RwSignal::new(None::<TenantSettings>);
    let draft = RwSignal::new(Draft::default());
    let load_error = RwSignal::new(None::<ApiError>);
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let zones = LocalResource::new(|| async {
        api::get::<Vec<String>>("/api/time-zones")
            .await
            .unwrap_or_default()
    });
    let browser_zone = browser_time_zone();

    // Load the settings of the tenant in focus (again when the focus changes).
    Effect::new(move |_| {
        let tenant = session.tenant.get();
        current.set(None);
        load_error.set(None);
        error.set(None);
        let Some((tenant, _)) = tenant else {
            return;
        };
        spawn_local(async move {
            let answer =
                api::get::<TenantSettings>(&format!("/api/tenants/{tenant}/settings")).await;
            // A slower answer for a tenant no longer in focus is dropped.
            if session.tenant.get_untracked().map(|t| t.0) != Some(tenant) {
                return;
            }
            match answer {
                Ok(s) => {
                    draft.set(Draft::of(&s));
                    current.set(Some(s));
                }
                Err(e) => {
                    session.handle(&e);
                    load_error.set(Some(e));
                }
            }
        });
    });

    let writable = move || session.can(Permission::SettingsManage);
    let dirty = move || current.get().is_some_and(|s| Draft::of(&s) != draft.get());
    // Closing or reloading the tab with unsaved changes asks first, as in the agent designer.
    let guard = window_event_listener(leptos::ev::beforeunload, move |ev| {
        if dirty() {
            ev.prevent_default();
            ev.set_return_value("You have unsaved changes.");
        }
    });
    on_cleanup(move || guard.remove());

    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        let d = draft.get_untracked();
        let body = TenantSettingsInput {
            time_zone: d.time_zone.trim().to_string(),
            locale: d.locale.trim().to_string(),
        };
        spawn_local(async move {
            match api::send::<_, TenantSettings>(
                HttpMethod::PUT,
                &format!("/api/tenants/{tenant}/settings"),
                &body,
            )
            .await
            {
                Ok(s) => {
                    error.set(None);
                    session.show_toast(format!(
                        "Settings saved. It is now {} in {}.",
                        s.local_time, s.time_zone
                    ));
                    draft.set(Draft::of(&s));
                    current.set(Some(s));
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };
    let discard = move |_| {
        let sure = window()
            .confirm_with_message("Discard your unsaved changes?")
            .unwrap_or(false);
        if sure && let Some(s) = current.get_untracked() {
            draft.set(Draft::of(&s));
            error.set(None);
        }
    };

    let message = move |field: &'static str| move || error.get().and_then(|e| e.field(field));
    let zone_message = message("time_zone");
    let locale_message = message("locale");

    view! {
        <header class="page-head">
            <h1>"Settings"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("How {} keeps time and speaks to its customers.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=move || session.tenant.get().is_some() && !writable()>
                <p class="readonly-note" role="note">"Read-only: your role can see these settings but not change them. A customer admin can."</p>
            </Show>
        </header>
        {move || match (session.tenant.get(), current.get(), load_error.get()) {
            (None, _, _) => view! { <p class="empty">"Pick a tenant in the menu to see its settings."</p> }.into_any(),
            (_, _, Some(e)) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
            (_, None, None) => view! { <p class="loading" role="status">"Loading settings…"</p> }.into_any(),
            (Some(_), Some(_), None) => ().into_any(),
        }}
        <Show when=move || current.get().is_some()>
            <p class="local-time">
                "Local time now: "
                <strong>{move || current.get().map(|s| s.local_time).unwrap_or_default()}</strong>
                <span class="muted">{move || current.get().map(|s| format!(" ({})", s.time_zone)).unwrap_or_default()}</span>
            </p>
            <form class="card settings-form" on:submit=save aria-label="Tenant settings">
                <fieldset disabled=move || !writable()>
                    <div class="field">
                        <label for="settings-time-zone">"Time zone"</label>
                        <input id="settings-time-zone" list="settings-time-zones" autocomplete="off" spellcheck="false"
                            placeholder="e.g. Europe/Berlin"
                            prop:value=move || draft.get().time_zone
                            on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| d.time_zone = v); }
                            aria-describedby="settings-time-zone-hint settings-time-zone-error"
                            aria-invalid=move || zone_message().is_some().to_string() />
                        <datalist id="settings-time-zones">
                            {move || zones.get().unwrap_or_default().into_iter().map(|z| view! { <option value=z></option> }).collect_view()}
                        </datalist>
                        <span id="settings-time-zone-hint" class="hint">
                            {move || match zones.get().map(|z| z.len()).filter(|n| *n > 0) {
                                Some(n) if writable() => format!("Type a city or region to pick from {n} IANA zones. The tenant's days, months and business hours follow it."),
                                None if writable() => "An IANA name such as Europe/Berlin. The tenant's days, months and business hours follow it.".to_string(),
                                _ => "The tenant's days, months and business hours follow it.".to_string(),
                            }}
                        </span>
                        <span id="settings-time-zone-error" class="field-error" role="alert">{zone_message}</span>
                        {
                            let browser_zone = browser_zone.clone();
                            move || {
                                let zone = browser_zone.clone()?;
                                let known = zones.get().is_some_and(|z| z.contains(&zone));
                                (known && writable() && draft.get().time_zone != zone).then(|| {
                                    let pick = zone.clone();
                                    view! {
                                        <button type="button" class="link zone-shortcut"
                                            on:click=move |_| { let z = pick.clone(); draft.update(|d| d.time_zone = z); }>
                                            {format!("Use this browser's time zone ({zone})")}
                                        </button>
                                    }
                                })
                            }
                        }
                    </div>
                    <div class="field">
                        <label for="settings-locale">"Locale"</label>
                        <select id="settings-locale"
                            on:change=move |ev| { let v = event_target_value(&ev); draft.update(|d| d.locale = v); }
                            prop:value=move || draft.get().locale
                            aria-describedby="settings-locale-hint settings-locale-error"
                            aria-invalid=move || locale_message().is_some().to_string()>
                            {move || {
                                let chosen = draft.get().locale;
                                let saved = current.get().map(|s| s.locale).unwrap_or_default();
                                let mut options: Vec<(String, String)> = LOCALES.iter().map(|(c, n)| (c.to_string(), format!("{n} ({c})"))).collect();
                                // A locale set through the API that is not in the list is offered too.
                                for extra in [saved, chosen.clone()] {
                                    if !extra.is_empty() && !options.iter().any(|(c, _)| *c == extra) {
                                        options.insert(0, (extra.clone(), extra));
                                    }
                                }
                                options.into_iter().map(|(code, name)| {
                                    let selected = code == chosen;
                                    view! { <option value=code selected=selected>{name}</option> }
                                }).collect_view()
                            }}
                        </select>
                        <span id="settings-locale-hint" class="hint">"The language (and region) the tenant's customers are addressed in."</span>
                        <span id="settings-locale-error" class="field-error" role="alert">{locale_message}</span>
                    </div>
                </fieldset>
                {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
                {move || error.get().filter(|e| !e.body.fields.is_empty()).map(|_| view! { <p class="error" role="alert">"Please correct the marked fields."</p> })}
                <Show when=writable>
                    <div class="form-actions">
                        <button type="submit" disabled=move || busy.get() || !dirty()>{move || if busy.get() { "Saving…" } else { "Save settings" }}</button>
                        <Show when=dirty>
                            <button type="button" class="secondary" on:click=discard>"Discard changes"</button>
                            <span class="unsaved" role="status">"Unsaved changes"</span>
                        </Show>
                    </div>
                </Show>
            </form>
        </Show>
        <Show when=move || session.tenant.get().is_some() && session.can(Permission::ConversationsRead)>
            <handoff::HandoffSection />
        </Show>
        <Show when=move || session.tenant.get().is_some() && session.can(Permission::LlmKeysManage)>
            <llm_keys::LlmKeysSection />
        </Show>
    }
}
