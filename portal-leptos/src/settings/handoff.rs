//! The settings' "Hand-offs" section: the business hours in which people answer (what the
//! customer is told when the AI hands off) and the Slack channel that hears of every hand-off.
//! Customer admins change them; others who can read conversations see them.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::auth::Permission;
use shared::inbox::{BusinessHours, HandoffSettings};

use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

/// ISO weekdays (1 = Monday) with their names.
const DAYS: [(u8, &str); 7] = [
    (1, "Monday"),
    (2, "Tuesday"),
    (3, "Wednesday"),
    (4, "Thursday"),
    (5, "Friday"),
    (6, "Saturday"),
    (7, "Sunday"),
];

/// What the form edits: the hours are kept while switched off, so switching back restores them.
#[derive(Clone, PartialEq)]
struct Draft {
    hours_on: bool,
    days: Vec<u8>,
    opens: String,
    closes: String,
    response_minutes: String,
    slack_channel: String,
}

impl Draft {
    fn of(s: &HandoffSettings) -> Self {
        let hours = s.business_hours.clone().unwrap_or_default();
        Self {
            hours_on: s.business_hours.is_some(),
            days: hours.days,
            opens: hours.opens,
            closes: hours.closes,
            response_minutes: hours.response_minutes.to_string(),
            slack_channel: s.slack_channel.clone().unwrap_or_default(),
        }
    }

    /// The settings to save, or the field that is not a number.
    fn settings(&self) -> Result<HandoffSettings, ApiError> {
        let business_hours = if self.hours_on {
            let response_minutes = self.response_minutes.trim().parse::<u32>().map_err(|_| {
                ApiError::local_field(
                    "business_hours.response_minutes",
                    "is not a whole number of minutes",
                )
            })?;
            let mut days = self.days.clone();
            days.sort_unstable();
            days.dedup();
            Some(BusinessHours {
                days,
                opens: self.opens.trim().to_string(),
                closes: self.closes.trim().to_string(),
                response_minutes,
            })
        } else {
            None
        };
        let channel = self.slack_channel.trim();
        Ok(HandoffSettings {
            business_hours,
            slack_channel: (!channel.is_empty()).then(|| channel.to_string()),
        })
    }
}

#[component]
pub fn HandoffSection() -> impl IntoView {
    let session = use_session();
    let current = RwSignal::new(None::<HandoffSettings>);
    let draft = RwSignal::new(None::<Draft>);
    let load_error = RwSignal::new(None::<ApiError>);
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    Effect::new(move |_| {
        let tenant = session.tenant.get();
        current.set(None);
        draft.set(None);
        load_error.set(None);
        error.set(None);
        let Some((tenant, _)) = tenant else {
            return;
        };
        spawn_local(async move {
            let answer =
                api::get::<HandoffSettings>(&format!("/api/tenants/{tenant}/settings/handoff"))
                    .await;
            if session.tenant.get_untracked().map(|t| t.0) != Some(tenant) {
                return;
            }
            match answer {
                Ok(s) => {
                    let _ = draft.try_set(Some(Draft::of(&s)));
                    let _ = current.try_set(Some(s));
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = load_error.try_set(Some(e));
                }
            }
        });
    });
    let writable = move || session.can(Permission::SettingsManage);
    let dirty = move || {
        current
            .get()
            .is_some_and(|s| Some(Draft::of(&s)) != draft.get())
    };
    let edit = move |f: fn(&mut Draft, String)| {
        move |ev| {
            let v = event_target_value(&ev);
            draft.update(|d| {
                if let Some(d) = d {
                    f(d, v);
                }
            });
        }
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let Some(d) = draft.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        let body = match d.settings() {
            Ok(b) => b,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        busy.set(true);
        spawn_local(async move {
            match api::send::<_, HandoffSettings>(
                HttpMethod::PUT,
                &format!("/api/tenants/{tenant}/settings/handoff"),
                &body,
            )
            .await
            {
                Ok(s) => {
                    let _ = error.try_set(None);
                    session.show_toast(match &s.business_hours {
                        Some(_) => {
                            "Hand-off settings saved. Customers are told when a person will answer."
                        }
                        None => "Hand-off settings saved. People answer hand-offs at any hour.",
                    });
                    let _ = draft.try_set(Some(Draft::of(&s)));
                    let _ = current.try_set(Some(s));
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = error.try_set(Some(e));
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let message = move |field: &'static str| move || error.get().and_then(|e| e.field(field));
    let hours_on = move || draft.get().is_some_and(|d| d.hours_on);
    // Field errors the form has no place for (a name it does not know) are listed at its foot.
    let unplaced = move || {
        const PLACED: [&str; 5] = [
            "business_hours.days",
            "business_hours.opens",
            "business_hours.closes",
            "business_hours.response_minutes",
            "slack_channel",
        ];
        error
            .get()
            .map(|e| {
                e.body
                    .fields
                    .iter()
                    .filter(|f| !PLACED.contains(&f.field.as_str()))
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };

    view! {
        <section class="section" aria-labelledby="handoff-title">
            <h2 id="handoff-title">"Hand-offs"</h2>
            <p class="muted">"When an AI employee hands a conversation to a person, the customer is told when to expect an answer, and a Slack channel can hear of it."</p>
            {move || match (current.get(), load_error.get()) {
                (_, Some(e)) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
                (None, None) => view! { <p class="loading" role="status">"Loading hand-off settings…"</p> }.into_any(),
                (Some(_), None) => ().into_any(),
            }}
            <Show when=move || draft.get().is_some()>
                <form class="card settings-form" on:submit=save aria-label="Hand-off settings">
                    <fieldset disabled=move || !writable()>
                        <label class="check">
                            <input type="checkbox" prop:checked=hours_on
                                on:change=move |ev| { let on = event_target_checked(&ev); draft.update(|d| if let Some(d) = d { d.hours_on = on; }); } />
                            <span>"People answer only during business hours"</span>
                        </label>
                        <span class="hint">"Off: the customer is told a person answers as soon as they can, at any hour. Hours are in the tenant's time zone (above)."</span>
                        <Show when=hours_on>
                            <fieldset class="group days" aria-describedby="handoff-days-error">
                                <legend>"Days"</legend>
                                <div class="day-list">
                                    {DAYS.into_iter().map(|(n, name)| view! {
                                        <label class="check">
                                            <input type="checkbox"
                                                prop:checked=move || draft.get().is_some_and(|d| d.days.contains(&n))
                                                on:change=move |ev| {
                                                    let on = event_target_checked(&ev);
                                                    draft.update(|d| if let Some(d) = d {
                                                        d.days.retain(|x| *x != n);
                                                        if on { d.days.push(n); d.days.sort_unstable(); }
                                                    });
                                                } />
                                            <span>{name}</span>
                                        </label>
                                    }).collect_view()}
                                </div>
                                <span id="handoff-days-error" class="field-error" role="alert">{message("business_hours.days")}</span>
                            </fieldset>
                            <div class="grid hours">
                                <div class="field">
                                    <label for="handoff-opens">"Opens"</label>
                                    <input id="handoff-opens" type="time" prop:value=move || draft.get().map(|d| d.opens).unwrap_or_default()
                                        on:input=edit(|d, v| d.opens = v) aria-describedby="handoff-opens-error"
                                        aria-invalid=move || message("business_hours.opens")().is_some().to_string() />
                                    <span id="handoff-opens-error" class="field-error" role="alert">{message("business_hours.opens")}</span>
                                </div>
                                <div class="field">
                                    <label for="handoff-closes">"Closes"</label>
                                    <input id="handoff-closes" type="time" prop:value=move || draft.get().map(|d| d.closes).unwrap_or_default()
                                        on:input=edit(|d, v| d.closes = v) aria-describedby="handoff-closes-error"
                                        aria-invalid=move || message("business_hours.closes")().is_some().to_string() />
                                    <span id="handoff-closes-error" class="field-error" role="alert">{message("business_hours.closes")}</span>
                                </div>
                            </div>
                            <div class="field">
                                <label for="handoff-response">"Answer within (minutes)"</label>
                                <input id="handoff-response" type="number" min="1" step="1" inputmode="numeric"
                                    prop:value=move || draft.get().map(|d| d.response_minutes).unwrap_or_default()
                                    on:input=edit(|d, v| d.response_minutes = v)
                                    aria-describedby="handoff-response-hint handoff-response-error"
                                    aria-invalid=move || message("business_hours.response_minutes")().is_some().to_string() />
                                <span id="handoff-response-hint" class="hint">"What the customer is told during business hours: “a person will answer within …”."</span>
                                <span id="handoff-response-error" class="field-error" role="alert">{message("business_hours.response_minutes")}</span>
                            </div>
                        </Show>
                        <div class="field">
                            <label for="handoff-slack">"Slack channel id"</label>
                            <input id="handoff-slack" autocomplete="off" spellcheck="false" placeholder="e.g. C0123456789"
                                prop:value=move || draft.get().map(|d| d.slack_channel).unwrap_or_default()
                                on:input=edit(|d, v| d.slack_channel = v)
                                aria-describedby="handoff-slack-hint handoff-slack-error"
                                aria-invalid=move || message("slack_channel")().is_some().to_string() />
                            <span id="handoff-slack-hint" class="hint">"A channel in the tenant's connected Slack workspace that is told of every hand-off (its id starts with C). Empty: none."</span>
                            <span id="handoff-slack-error" class="field-error" role="alert">{message("slack_channel")}</span>
                        </div>
                    </fieldset>
                    {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
                    {move || error.get().filter(|e| !e.body.fields.is_empty()).map(|_| view! {
                        <div class="error" role="alert">
                            <p>"Please correct the marked fields."</p>
                            {move || unplaced().into_iter().map(|m| view! { <p>{m}</p> }).collect_view()}
                        </div>
                    })}
                    <Show when=writable>
                        <div class="form-actions">
                            <button type="submit" disabled=move || busy.get() || !dirty()>{move || if busy.get() { "Saving…" } else { "Save hand-off settings" }}</button>
                            <Show when=dirty>
                                <span class="unsaved" role="status">"Unsaved changes"</span>
                            </Show>
                        </div>
                    </Show>
                </form>
            </Show>
        </section>
    }
}
