//! The trail's events, newest first: filters by action, by who acted (the system or a member)
//! and by dates, a table with *Load more* for older events, and a CSV download of the same
//! filters. Dates are days in the browser's own time zone (from the start of the first day to
//! the end of the last), and times are shown in it too; the server is sent UTC instants.

use chrono::{DateTime, FixedOffset, Utc};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::TenantId;
use shared::audit::{AuditActorKind, AuditEvent, AuditFilters};
use shared::resources::CursorPage;
use wasm_bindgen::JsValue;

use crate::api::{self, ApiError};
use crate::app::use_session;

/// Events per page.
const LIMIT: u32 = 50;

/// The filters as chosen on the page.
#[derive(Debug, Clone, Default, PartialEq)]
struct Chosen {
    action: String,
    actor: String,
    /// `YYYY-MM-DD`, as a date input gives it; empty when not set.
    from_day: String,
    to_day: String,
}

/// The UTC instant a local day starts at, `days_later` days after `day` (`YYYY-MM-DD`).
fn local_day_start(day: &str, days_later: u32) -> Option<String> {
    // A date and time without an offset is read as local time (a date alone would be UTC).
    let date = js_sys::Date::new(&JsValue::from_str(&format!("{day}T00:00:00")));
    if date.get_time().is_nan() {
        return None;
    }
    if days_later > 0 {
        // Local calendar arithmetic: a day across a daylight-saving change is 23 or 25 hours.
        date.set_date(date.get_date() + days_later);
    }
    Some(String::from(date.to_iso_string()))
}

impl Chosen {
    /// The query string for these filters (no leading `?`), or why they cannot be sent.
    fn query(&self) -> Result<String, ApiError> {
        let mut parts = Vec::new();
        let mut add = |name: &str, value: &str| {
            parts.push(format!("{name}={}", js_sys::encode_uri_component(value)));
        };
        if !self.action.is_empty() {
            add("action", &self.action);
        }
        if !self.actor.is_empty() {
            add("actor", &self.actor);
        }
        if !self.from_day.is_empty() {
            let from = local_day_start(&self.from_day, 0)
                .ok_or_else(|| ApiError::local_field("from", "must be a date"))?;
            add("from", &from);
        }
        if !self.to_day.is_empty() {
            // The last day is included: up to the start of the day after it.
            let to = local_day_start(&self.to_day, 1)
                .ok_or_else(|| ApiError::local_field("to", "must be a date"))?;
            add("to", &to);
        }
        if !self.from_day.is_empty() && !self.to_day.is_empty() && self.from_day > self.to_day {
            return Err(ApiError::local_field(
                "to",
                "must not be before the first day",
            ));
        }
        Ok(parts.join("&"))
    }

    fn is_filtered(&self) -> bool {
        *self != Chosen::default()
    }
}

fn list_path(tenant: TenantId, query: &str, before: Option<i64>) -> String {
    let mut path = format!("/api/tenants/{tenant}/audit?limit={LIMIT}");
    if !query.is_empty() {
        path.push('&');
        path.push_str(query);
    }
    if let Some(before) = before {
        path.push_str(&format!("&before={before}"));
    }
    path
}

/// `at` in the browser's time zone, to the second.
fn local_time(at: &DateTime<Utc>) -> String {
    // Milliseconds since 1970 fit an f64 exactly for millions of years.
    let millis = at.timestamp_millis() as f64;
    let date = js_sys::Date::new(&JsValue::from_f64(millis));
    // `getTimezoneOffset` is UTC minus local time, in whole minutes within a day.
    let east_secs = -(date.get_timezone_offset() as i32) * 60;
    match FixedOffset::east_opt(east_secs) {
        Some(zone) => at
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Who acted, in words: a member by name and e-mail, never anything of a customer.
fn actor(event: &AuditEvent) -> (String, Option<&'static str>) {
    let id = event
        .actor_id
        .map(|id| short(&id.to_string()).to_string())
        .unwrap_or_default();
    match event.actor_kind {
        AuditActorKind::System => ("System".into(), None),
        AuditActorKind::User => match (&event.actor_name, &event.actor_email) {
            (Some(name), Some(email)) => (format!("{name} ({email})"), None),
            (None, Some(email)) => (email.clone(), None),
            _ => (format!("Former member {id}…"), None),
        },
        AuditActorKind::PlatformAdmin if event.impersonator_id.is_some() => {
            (format!("Platform admin {id}…"), Some("while impersonating"))
        }
        AuditActorKind::PlatformAdmin => (format!("Platform admin {id}…"), None),
        AuditActorKind::EndUser => ("A customer".into(), None),
    }
}

fn target(event: &AuditEvent) -> String {
    match (&event.target_kind, &event.target_id) {
        (Some(kind), Some(id)) if kind == "http" => id.clone(),
        (Some(kind), Some(id)) => format!("{kind} {}", short(id)),
        (Some(kind), None) => kind.clone(),
        _ => "—".into(),
    }
}

fn details(event: &AuditEvent) -> String {
    match &event.details {
        serde_json::Value::Object(map) if map.is_empty() => "—".into(),
        value => value.to_string(),
    }
}

#[component]
pub fn AuditEvents(tenant: TenantId) -> impl IntoView {
    let session = use_session();
    let chosen = RwSignal::new(Chosen::default());
    let events = RwSignal::new(Vec::<AuditEvent>::new());
    let next = RwSignal::new(None::<i64>);
    let loaded = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    // Bumped by every new first page, so an answer for older filters is dropped.
    let generation = StoredValue::new(0u32);
    let choices = LocalResource::new(move || async move {
        api::get::<AuditFilters>(&format!("/api/tenants/{tenant}/audit/filters")).await
    });

    let load = move |before: Option<i64>| {
        let query = match chosen.get_untracked().query() {
            Ok(q) => q,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        if before.is_none() {
            generation.update_value(|g| *g = g.wrapping_add(1));
        }
        let mine = generation.get_value();
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let answer =
                api::get::<CursorPage<AuditEvent>>(&list_path(tenant, &query, before)).await;
            if generation.try_get_value() != Some(mine) {
                return;
            }
            match answer {
                Ok(page) => {
                    if before.is_none() {
                        events.set(page.items);
                    } else {
                        events.update(|all| all.extend(page.items));
                    }
                    next.set(page.next_before);
                    loaded.set(true);
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };
    // The first page, again whenever a filter changes.
    Effect::new(move |_| {
        chosen.track();
        load(None);
    });

    let csv_href = move || {
        let query = chosen.get().query().unwrap_or_default();
        if query.is_empty() {
            format!("/api/tenants/{tenant}/audit/export.csv")
        } else {
            format!("/api/tenants/{tenant}/audit/export.csv?{query}")
        }
    };
    let field = move |f: &'static str| move || error.get().and_then(|e| e.field(f));
    let set = move |apply: fn(&mut Chosen, String)| {
        move |ev: leptos::ev::Event| {
            let value = event_target_value(&ev);
            chosen.update(|c| apply(c, value));
        }
    };

    view! {
        <section class="card audit-events" aria-label="Events">
            <h2>"Events"</h2>
            <p class="muted">"Newest first. Dates are in your browser's time zone, and the last day is included."</p>
            <div class="toolbar">
                <label class="filter">
                    <span>"Action"</span>
                    <select on:change=set(|c, v| c.action = v) prop:value=move || chosen.get().action>
                        <option value="">"All actions"</option>
                        {move || choices.get().and_then(Result::ok).map(|f| f.actions.into_iter().map(|a| view! { <option value=a.clone()>{a.clone()}</option> }).collect_view())}
                    </select>
                </label>
                <label class="filter">
                    <span>"Who"</span>
                    <select on:change=set(|c, v| c.actor = v) prop:value=move || chosen.get().actor>
                        <option value="">"Anyone"</option>
                        <option value="system">"System"</option>
                        {move || choices.get().and_then(Result::ok).map(|f| f.members.into_iter().map(|m| {
                            let label = if m.display_name.is_empty() { m.email.clone() } else { format!("{} ({})", m.display_name, m.email) };
                            view! { <option value=m.user_id.to_string()>{label}</option> }
                        }).collect_view())}
                    </select>
                </label>
                <label class="filter">
                    <span>"From"</span>
                    <input type="date" prop:value=move || chosen.get().from_day on:change=set(|c, v| c.from_day = v)
                        aria-invalid=move || field("from")().is_some().to_string() />
                </label>
                <label class="filter">
                    <span>"To"</span>
                    <input type="date" prop:value=move || chosen.get().to_day on:change=set(|c, v| c.to_day = v)
                        aria-invalid=move || field("to")().is_some().to_string() />
                </label>
                <Show when=move || chosen.get().is_filtered()>
                    <button class="secondary" on:click=move |_| chosen.set(Chosen::default())>"Clear filters"</button>
                </Show>
                <a class="button secondary" href=csv_href download="">"Download CSV"</a>
            </div>
            {move || ["action", "actor", "from", "to", "before", "limit"].into_iter().filter_map(|f| field(f)().map(|m| view! {
                <p class="field-error" role="alert">{format!("{}: {m}", match f { "action" => "Action", "actor" => "Who", "from" => "From", "to" => "To", other => other })}</p>
            })).collect_view()}
            {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
            {move || match (loaded.get(), events.with(Vec::is_empty)) {
                (false, _) => view! { <p class="loading" role="status">"Loading events…"</p> }.into_any(),
                (true, true) => view! {
                    <p class="empty">{if chosen.get().is_filtered() { "No events match these filters." } else { "The trail has no events yet." }}</p>
                }.into_any(),
                (true, false) => view! {
                    <table class="table" aria-label="Audit events">
                        <thead><tr><th>"Record"</th><th>"When"</th><th>"Action"</th><th>"Who"</th><th>"About"</th><th>"Details"</th></tr></thead>
                        <tbody>
                            <For each=move || events.get() key=|e| e.seq let:event>
                                {
                                    let (who, how) = actor(&event);
                                    view! {
                                        <tr>
                                            <td title=format!("hash {}", event.hash)>{event.seq}</td>
                                            <td>{local_time(&event.created_at)}</td>
                                            <td><code>{event.action.clone()}</code></td>
                                            <td>{who}{how.map(|h| view! { " " <span class="badge warn">{h}</span> })}</td>
                                            <td>{target(&event)}</td>
                                            <td><code class="details">{details(&event)}</code></td>
                                        </tr>
                                    }
                                }
                            </For>
                        </tbody>
                    </table>
                }.into_any(),
            }}
            <Show when=move || next.get().is_some()>
                <button class="secondary" disabled=move || busy.get() on:click=move |_| load(next.get_untracked())>
                    {move || if busy.get() { "Loading…" } else { "Load more" }}
                </button>
            </Show>
        </section>
    }
}
