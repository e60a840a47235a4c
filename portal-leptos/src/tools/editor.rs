//! An HTTP tool's page (`/tools/new`, `/tools/{id}`): the form that creates or edits it — name,
//! description, method and URL template, headers (secret ones sealed and shown by their hint
//! only), the JSON Schema of its arguments, response cap, timeout, confirmation — with the
//! server's errors under the fields they are about; then, for a saved tool, trying it and its
//! last calls.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde_json::Value;
use shared::auth::Permission;
use shared::tools::{
    DEFAULT_RESPONSE_BYTES, DEFAULT_TIMEOUT_MS, HeaderInput, HttpMethod as ToolMethod, HttpTool,
    HttpToolInput, MAX_RESPONSE_BYTES, MAX_TIMEOUT_MS,
};

use super::{ToolCalls, focus, json_error, json_messages, pretty, try_it::TryIt};
use crate::api::{self, ApiError};
use crate::app::use_session;

/// What a new tool's parameters start as: an object schema without properties yet.
const DEFAULT_PARAMETERS: &str =
    "{\n  \"type\": \"object\",\n  \"properties\": {},\n  \"required\": []\n}";

/// The fields the form shows by the names the server uses in its 422 answers (besides
/// `parameters…` and `headers…`, which have their own places).
const FIELDS: &[&str] = &[
    "name",
    "description",
    "method",
    "url",
    "max_response_bytes",
    "timeout_ms",
    "needs_confirmation",
];

/// One header as the form edits it; `key` tells the rows apart while they are added and
/// removed.
#[derive(Clone, PartialEq)]
struct HeaderDraft {
    key: u32,
    name: String,
    value: String,
    secret: bool,
    /// The hint of the secret value stored on the server: an empty value keeps it.
    stored: Option<String>,
}

impl HeaderDraft {
    fn is_blank(&self) -> bool {
        self.name.trim().is_empty() && self.value.trim().is_empty() && self.stored.is_none()
    }

    /// As sent: a stored secret left empty is sent without a value, so the server keeps it.
    fn to_input(&self) -> HeaderInput {
        let value = self.value.trim();
        let keep = self.secret && self.stored.is_some() && value.is_empty();
        HeaderInput {
            name: self.name.trim().to_string(),
            value: (!keep).then(|| value.to_string()),
            secret: self.secret,
        }
    }
}

/// Everything the form holds but the headers.
#[derive(Clone, PartialEq)]
struct Draft {
    name: String,
    description: String,
    method: ToolMethod,
    url: String,
    parameters: String,
    max_response_bytes: String,
    timeout_ms: String,
    needs_confirmation: bool,
}

impl Default for Draft {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            method: ToolMethod::Get,
            url: String::new(),
            parameters: DEFAULT_PARAMETERS.into(),
            max_response_bytes: DEFAULT_RESPONSE_BYTES.to_string(),
            timeout_ms: DEFAULT_TIMEOUT_MS.to_string(),
            needs_confirmation: false,
        }
    }
}

impl Draft {
    fn from_tool(t: &HttpTool) -> Self {
        Self {
            name: t.name.clone(),
            description: t.description.clone(),
            method: t.method,
            url: t.url.clone(),
            parameters: pretty(&t.parameters),
            max_response_bytes: t.max_response_bytes.to_string(),
            timeout_ms: t.timeout_ms.to_string(),
            needs_confirmation: t.needs_confirmation,
        }
    }

    /// The input to send, or the errors found in the browser (nothing is sent then).
    fn to_input(&self, headers: Vec<HeaderInput>) -> Result<HttpToolInput, ApiError> {
        let mut problems = Vec::new();
        let parameters = match serde_json::from_str::<Value>(self.parameters.trim()) {
            Ok(v) if v.is_object() => Some(v),
            Ok(_) => {
                problems.push((
                    "parameters",
                    "must be a JSON object: a JSON Schema such as {\"type\": \"object\", …}"
                        .to_string(),
                ));
                None
            }
            Err(e) => {
                problems.push(("parameters", json_error(&e)));
                None
            }
        };
        let number = |field: &'static str,
                      text: &str,
                      default: u32,
                      problems: &mut Vec<(&'static str, String)>| {
            let text = text.trim();
            if text.is_empty() {
                return default;
            }
            text.parse::<u32>().unwrap_or_else(|_| {
                problems.push((field, "enter a whole number".to_string()));
                default
            })
        };
        let max_response_bytes = number(
            "max_response_bytes",
            &self.max_response_bytes,
            DEFAULT_RESPONSE_BYTES,
            &mut problems,
        );
        let timeout_ms = number(
            "timeout_ms",
            &self.timeout_ms,
            DEFAULT_TIMEOUT_MS,
            &mut problems,
        );
        if let Some((field, message)) = problems.first() {
            let mut e = ApiError::local_field(field, message);
            e.body
                .fields
                .extend(problems.iter().skip(1).map(|(f, m)| shared::FieldError {
                    field: (*f).into(),
                    message: m.clone(),
                }));
            return Err(e);
        }
        Ok(HttpToolInput {
            name: self.name.trim().to_string(),
            description: self.description.trim().to_string(),
            parameters: parameters.unwrap_or_default(),
            method: self.method,
            url: self.url.trim().to_string(),
            headers,
            max_response_bytes,
            timeout_ms,
            needs_confirmation: self.needs_confirmation,
        })
    }
}

#[component]
pub fn ToolEditor() -> impl IntoView {
    let session = use_session();
    let params = use_params_map();
    let navigate = use_navigate();
    let tool_id = move || params.read().get("id");
    let manage = Signal::derive(move || session.can(Permission::ToolsManage));
    let draft = RwSignal::new(Draft::default());
    let headers = RwSignal::new(Vec::<HeaderDraft>::new());
    let next_key = StoredValue::new(0u32);
    // The tool as the server last answered (a saved one).
    let saved = RwSignal::new(None::<HttpTool>);
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    // The header rows' keys in the order they were sent, to put `headers[i]` errors on the row
    // they are about (blank rows are not sent).
    let sent = RwSignal::new(Vec::<u32>::new());
    let busy = RwSignal::new(false);
    // Bumped after a test run, so the last calls are asked again.
    let ran = RwSignal::new(0u32);
    let agents = crate::agents::tenant_agents();

    let new_header = move |name: String, value: String, secret: bool, stored: Option<String>| {
        let key = next_key.get_value();
        next_key.set_value(key.wrapping_add(1));
        HeaderDraft {
            key,
            name,
            value,
            secret,
            stored,
        }
    };
    let fill = move |t: &HttpTool| {
        draft.set(Draft::from_tool(t));
        headers.set(
            t.headers
                .iter()
                .map(|h| {
                    let stored = h.secret.then(|| h.hint.clone().unwrap_or_default());
                    new_header(
                        h.name.clone(),
                        // A secret's value never comes back; the field stays empty.
                        if h.secret {
                            String::new()
                        } else {
                            h.value.clone().unwrap_or_default()
                        },
                        h.secret,
                        stored,
                    )
                })
                .collect(),
        );
        saved.set(Some(t.clone()));
    };

    // Load the tool (or start empty).
    Effect::new(move |_| {
        let (Some((tenant, _)), id) = (session.tenant.get(), tool_id()) else {
            return;
        };
        error.set(None);
        sent.set(Vec::new());
        match id {
            None => {
                draft.set(Draft::default());
                headers.set(Vec::new());
                saved.set(None);
                loaded.set(true);
            }
            Some(id) => {
                loaded.set(false);
                spawn_local(async move {
                    match api::get::<HttpTool>(&format!("/api/tenants/{tenant}/tools/{id}")).await {
                        Ok(t) => {
                            fill(&t);
                            loaded.set(true);
                        }
                        Err(e) => {
                            session.handle(&e);
                            error.set(Some(e));
                        }
                    }
                });
            }
        }
    });

    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        let rows: Vec<HeaderDraft> = headers
            .get_untracked()
            .into_iter()
            .filter(|h| !h.is_blank())
            .collect();
        let body = match draft
            .get_untracked()
            .to_input(rows.iter().map(HeaderDraft::to_input).collect())
        {
            Ok(body) => body,
            Err(e) => {
                let first = e.body.fields.first().map(|f| f.field.clone());
                error.set(Some(e));
                if let Some(field) = first {
                    focus(&format!("tool-{field}"));
                }
                return;
            }
        };
        sent.set(rows.iter().map(|h| h.key).collect());
        error.set(None);
        busy.set(true);
        let id = tool_id();
        let navigate = navigate.clone();
        spawn_local(async move {
            let result: Result<HttpTool, _> = api::save(
                &format!("/api/tenants/{tenant}/tools"),
                id.as_deref(),
                &body,
            )
            .await;
            match result {
                Ok(t) => {
                    error.set(None);
                    // The secrets are sealed on the server now; the form forgets them too.
                    fill(&t);
                    if id.is_none() {
                        session.show_toast(format!(
                            "Created {}. Try it below, then give it to an AI employee in the Agent Designer.",
                            t.name
                        ));
                        navigate(&format!("/tools/{}", t.id), Default::default());
                    } else {
                        session.show_toast(format!("Saved {}.", t.name));
                    }
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            let _ = busy.try_set(false);
        });
    };

    let message = move |field: &'static str| {
        move || {
            let e = error.get()?;
            // A name already taken (409) is about the name.
            e.field(field)
                .or_else(|| (field == "name" && e.status == 409).then(|| e.message()))
        }
    };
    let text_field = move |label: &'static str,
                           field: &'static str,
                           placeholder: &'static str,
                           hint: &'static str,
                           get: fn(&Draft) -> String,
                           set: fn(&mut Draft, String)| {
        let id = format!("tool-{field}");
        let hint_id = format!("tool-{field}-hint");
        let error_id = format!("tool-{field}-error");
        let msg = message(field);
        let numeric = matches!(field, "max_response_bytes" | "timeout_ms");
        view! {
            <div class="field">
                <label for=id.clone()>{label}</label>
                <input id=id placeholder=placeholder autocomplete="off" spellcheck="false"
                    inputmode=if numeric { "numeric" } else { "text" }
                    prop:value=move || get(&draft.get())
                    on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| set(d, v)); }
                    aria-describedby=format!("{hint_id} {error_id}")
                    aria-invalid=move || msg().is_some().to_string() />
                <span id=hint_id class="hint">{hint}</span>
                <span id=error_id class="field-error" role="alert">{msg}</span>
            </div>
        }
    };
    let description_msg = message("description");
    let method_msg = message("method");
    let confirmation_msg = message("needs_confirmation");
    let parameters_msgs = move || {
        error
            .get()
            .map(|e| json_messages(&e, "parameters"))
            .unwrap_or_default()
    };
    let headers_msg = move || error.get().and_then(|e| e.field("headers"));
    let add_header = move |_| {
        let row = new_header(String::new(), String::new(), false, None);
        let key = row.key;
        headers.update(|h| h.push(row));
        focus(&format!("tool-header-{key}-name"));
    };
    let shown =
        |f: &str| FIELDS.contains(&f) || f.starts_with("parameters") || f.starts_with("headers");
    let given_to = move || {
        let ids = saved.get().map(|t| t.agents).unwrap_or_default();
        let names: Vec<String> = match agents.get() {
            Some(Ok(Some(list))) => list
                .into_iter()
                .filter(|a| ids.contains(&a.id))
                .map(|a| a.input.name)
                .collect(),
            _ => Vec::new(),
        };
        match ids.len() {
            0 => "Not given to any AI employee yet: tick it under Tools in the Agent Designer."
                .to_string(),
            _ if names.is_empty() => format!("Given to {} AI employees.", ids.len()),
            _ => format!("Given to {}.", names.join(", ")),
        }
    };
    let existing = move || tool_id().is_some();

    view! {
        <header class="page-head">
            <h1>{move || if existing() { saved.get().map(|t| t.name).unwrap_or_else(|| "HTTP tool".into()) } else { "New HTTP tool".to_string() }}</h1>
            <p class="muted"><a href="/tools">"← All tools"</a></p>
            <Show when=move || existing() && loaded.get()>
                <p class="muted">{given_to}</p>
            </Show>
            <Show when=move || !manage.get()>
                <p class="readonly-note" role="note">"Read-only: your role can see this tool and the calls AI employees made, but not change or try it. A customer admin can."</p>
            </Show>
        </header>
        <Show when=move || loaded.get() fallback=move || view! {
            {move || match error.get() {
                Some(e) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
                None => view! { <p class="loading" role="status">"Loading…"</p> }.into_any(),
            }}
        }>
            <form class="card designer tool-form" on:submit=save.clone() aria-label="HTTP tool" aria-busy=move || busy.get().to_string()>
                <fieldset disabled=move || !manage.get()>
                    <div class="grid">
                        {text_field("Name", "name", "order_status", "What the AI employee calls it: letters, digits, _ and -, at most 64.", |d| d.name.clone(), |d, v| d.name = v)}
                    </div>
                    <div class="field long">
                        <label for="tool-description">"Description"</label>
                        <textarea id="tool-description" rows="3"
                            placeholder="Looks up an order by its number: its status, carrier and expected delivery. Use it when a customer asks where their order is."
                            prop:value=move || draft.get().description
                            on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| d.description = v); }
                            aria-describedby="tool-description-hint tool-description-error"
                            aria-invalid=move || description_msg().is_some().to_string()></textarea>
                        <span id="tool-description-hint" class="hint">"What it does and when to use it: the AI employee reads this to decide when to call it."</span>
                        <span id="tool-description-error" class="field-error" role="alert">{description_msg}</span>
                    </div>
                    <div class="url-row">
                        <div class="field">
                            <label for="tool-method">"Method"</label>
                            <select id="tool-method"
                                prop:value=move || draft.get().method.as_str()
                                on:change=move |ev| { if let Some(m) = ToolMethod::parse(&event_target_value(&ev)) { draft.update(|d| d.method = m); } }
                                aria-describedby="tool-method-error"
                                aria-invalid=move || method_msg().is_some().to_string()>
                                {ToolMethod::ALL.iter().map(|m| {
                                    let m = *m;
                                    view! { <option value=m.as_str() selected=move || draft.get().method == m>{m.as_str()}</option> }
                                }).collect_view()}
                            </select>
                            <span id="tool-method-error" class="field-error" role="alert">{method_msg}</span>
                        </div>
                        {text_field("URL", "url", "https://shop.example.com/api/orders/{order_id}",
                            "https:// is required (plain http only for a host the platform allows). {name} is replaced by the argument of that name, percent-encoded; the other arguments go into the query string (GET, DELETE) or a JSON body (POST, PUT, PATCH).",
                            |d| d.url.clone(), |d, v| d.url = v)}
                    </div>
                    <fieldset class="group">
                        <legend>"Headers"</legend>
                        <p class="muted">"Sent with every call, e.g. an API key. Mark a value secret to store it encrypted: it is never shown again, not even to you, and is kept out of logs and of what the AI employee sees."</p>
                        <For each=move || headers.get() key=|h| h.key let:h>
                            <HeaderRow row=h.key headers=headers error=error sent=sent />
                        </For>
                        <span class="field-error" role="alert">{headers_msg}</span>
                        <Show when=move || manage.get()>
                            <button type="button" class="secondary" on:click=add_header>"Add a header"</button>
                        </Show>
                    </fieldset>
                    <div class="field long">
                        <label for="tool-parameters">"Parameters (JSON Schema)"</label>
                        <textarea id="tool-parameters" class="json" rows="10" spellcheck="false"
                            prop:value=move || draft.get().parameters
                            on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| d.parameters = v); }
                            aria-describedby="tool-parameters-hint tool-parameters-error"
                            aria-invalid=move || (!parameters_msgs().is_empty()).to_string()></textarea>
                        <span id="tool-parameters-hint" class="hint">"The arguments the AI employee fills in, as a JSON Schema object: each property with a type and a description, and which are required. Every call is checked against it before it runs."</span>
                        <span id="tool-parameters-error" class="field-error" role="alert">
                            {move || parameters_msgs().into_iter().map(|m| view! { <span class="error-line">{m}</span> }).collect_view()}
                        </span>
                    </div>
                    <div class="grid">
                        {text_field("Response cap (bytes)", "max_response_bytes", "16384",
                            number_hint(NumberField::Bytes), |d| d.max_response_bytes.clone(), |d, v| d.max_response_bytes = v)}
                        {text_field("Timeout (ms)", "timeout_ms", "10000",
                            number_hint(NumberField::Timeout), |d| d.timeout_ms.clone(), |d, v| d.timeout_ms = v)}
                    </div>
                    <div class="check-field">
                        <label class="check">
                            <input type="checkbox" id="tool-needs_confirmation"
                                prop:checked=move || draft.get().needs_confirmation
                                on:change=move |ev| { let on = event_target_checked(&ev); draft.update(|d| d.needs_confirmation = on); }
                                aria-describedby="tool-needs_confirmation-hint tool-needs_confirmation-error" />
                            <span>"Needs the customer's confirmation"</span>
                        </label>
                        <span id="tool-needs_confirmation-hint" class="hint">"For a tool that changes something (a booking, a cancellation): the AI employee asks the customer and runs it only after a yes."</span>
                        <span id="tool-needs_confirmation-error" class="field-error" role="alert">{confirmation_msg}</span>
                    </div>
                </fieldset>
                {move || error.get().filter(|_| loaded.get()).map(|e| form_error(&e, shown))}
                <div class="form-actions">
                    <Show when=move || manage.get()>
                        <button type="submit" disabled=move || busy.get()>
                            {move || match (busy.get(), existing()) {
                                (true, _) => "Saving…",
                                (false, true) => "Save",
                                (false, false) => "Create tool",
                            }}
                        </button>
                    </Show>
                    <a class="button secondary" href="/tools">"Back to the list"</a>
                    <span class="sr-only" role="status">{move || if busy.get() { "Saving the tool…" } else { "" }}</span>
                </div>
            </form>
            {move || saved.get().map(|t| {
                let id = t.id;
                view! {
                    <Show when=move || manage.get()>
                        <TryIt tool_id=id parameters=t.parameters.clone() on_ran=Callback::new(move |()| ran.update(|v| *v += 1)) />
                    </Show>
                    <section class="card section" aria-labelledby="tool-calls">
                        <h2 id="tool-calls">"Last calls"</h2>
                        <p class="muted">"The calls AI employees made to this tool in conversations, newest first."</p>
                        <ToolCalls filter=format!("tool={id}") caption="Last calls".to_string() show_tool=false show_agent=true version=ran />
                    </section>
                }
            })}
        </Show>
    }
}

/// Which number field a hint is for.
enum NumberField {
    Bytes,
    Timeout,
}

/// The hints of the number fields, with the platform's limits.
fn number_hint(of: NumberField) -> &'static str {
    // The hints say the limits of `shared::tools` in words: a change there fails the build here.
    const _: () = assert!(MAX_RESPONSE_BYTES == 256 * 1024 && MAX_TIMEOUT_MS == 30_000);
    const _: () = assert!(DEFAULT_RESPONSE_BYTES == 16_384 && DEFAULT_TIMEOUT_MS == 10_000);
    match of {
        NumberField::Bytes => {
            "The largest response the tool may return: a larger one fails the call, and the AI employee is told so. Up to 262144 (256 KB); 16384 when empty."
        }
        NumberField::Timeout => {
            "How long a call may take before it counts as timed out. Up to 30000 (30 s); 10000 when empty."
        }
    }
}

/// The banner over the form's buttons: what the server said when it refused, and with a 422,
/// the fields it named that the form does not show.
fn form_error(e: &ApiError, shown: fn(&str) -> bool) -> impl IntoView + use<> {
    if e.body.fields.is_empty() && e.status != 409 {
        view! { <p class="error" role="alert">{e.message()}</p> }.into_any()
    } else {
        let others: Vec<String> = e
            .body
            .fields
            .iter()
            .filter(|f| !shown(&f.field))
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect();
        view! { <p class="error" role="alert">"Please correct the marked fields." {others.into_iter().map(|o| view! { " " {o} }).collect_view()}</p> }
            .into_any()
    }
}

/// One header row: name, value (a secret one stored shows its hint, and left empty keeps it),
/// whether it is secret.
#[component]
fn HeaderRow(
    /// The row's key.
    row: u32,
    headers: RwSignal<Vec<HeaderDraft>>,
    error: RwSignal<Option<ApiError>>,
    sent: RwSignal<Vec<u32>>,
) -> impl IntoView {
    let edit = move |f: &dyn Fn(&mut HeaderDraft)| {
        headers.update(|hs| {
            if let Some(h) = hs.iter_mut().find(|h| h.key == row) {
                f(h);
            }
        });
    };
    let read = move || headers.with(|hs| hs.iter().find(|h| h.key == row).cloned());
    let number = move || {
        headers
            .with(|hs| hs.iter().position(|h| h.key == row))
            .map_or(0, |i| i + 1)
    };
    // The server's messages about this row, by the place the row had when sent: `part` is
    // `.name` or `.value`, and "" for the rest (the row as a whole).
    let messages = move || -> Vec<(String, String)> {
        let Some(sent_as) = sent.with(|s| s.iter().position(|k| *k == row)) else {
            return Vec::new();
        };
        error
            .get()
            .map(|e| e.fields_within(&format!("headers[{sent_as}]")))
            .unwrap_or_default()
    };
    let message = move |part: &'static str| {
        move || {
            messages()
                .into_iter()
                .find(|(at, _)| at == part)
                .map(|(_, m)| m)
        }
    };
    let (name_msg, value_msg) = (message(".name"), message(".value"));
    let other_msg = move || {
        let rest: Vec<String> = messages()
            .into_iter()
            .filter(|(at, _)| at != ".name" && at != ".value")
            .map(|(_, m)| m)
            .collect();
        (!rest.is_empty()).then(|| rest.join(" "))
    };
    let id = |part: &str| format!("tool-header-{row}-{part}");
    let secret = move || read().is_some_and(|h| h.secret);
    let stored = move || read().and_then(|h| h.stored.filter(|_| h.secret));
    let remove = move |_| {
        headers.update(|hs| hs.retain(|h| h.key != row));
        // Errors name rows by their place when sent; once rows go, those places mean nothing.
        error.update(|e| {
            if let Some(e) = e {
                e.body.fields.retain(|f| !f.field.starts_with("headers"));
            }
        });
    };
    view! {
        <div class="header-row" role="group" aria-label=move || format!("Header {}", number())>
            <div class="field">
                <label for=id("name")>"Header name"</label>
                <input id=id("name") placeholder="X-Api-Key" autocomplete="off" spellcheck="false"
                    prop:value=move || read().map(|h| h.name).unwrap_or_default()
                    on:input=move |ev| { let v = event_target_value(&ev); edit(&|h| h.name = v.clone()); }
                    aria-describedby=id("name-error") aria-invalid=move || name_msg().is_some().to_string() />
                <span id=id("name-error") class="field-error" role="alert">{name_msg}</span>
            </div>
            <div class="field">
                <label for=id("value")>"Header value"</label>
                <input id=id("value") type=move || if secret() { "password" } else { "text" }
                    autocomplete="off" spellcheck="false"
                    placeholder=move || if stored().is_some() { "Unchanged" } else { "" }
                    prop:value=move || read().map(|h| h.value).unwrap_or_default()
                    on:input=move |ev| { let v = event_target_value(&ev); edit(&|h| h.value = v.clone()); }
                    aria-describedby=format!("{} {}", id("value-hint"), id("value-error"))
                    aria-invalid=move || value_msg().is_some().to_string() />
                <span id=id("value-hint") class="hint">{move || match stored() {
                    Some(hint) => view! {
                        "Stored encrypted, ending in " <code class="secret-hint">{hint}</code>
                        {move || if read().is_some_and(|h| h.value.trim().is_empty()) { ". Leave empty to keep it." } else { ". What you type replaces it." }}
                    }.into_any(),
                    None => ().into_any(),
                }}</span>
                <span id=id("value-error") class="field-error" role="alert">{value_msg}</span>
            </div>
            <label class="check secret-check">
                <input type="checkbox" prop:checked=secret
                    on:change=move |ev| { let on = event_target_checked(&ev); edit(&|h| h.secret = on); } />
                <span>"Secret"</span>
            </label>
            <button type="button" class="link" on:click=remove aria-label=move || format!("Remove header {}", number())>"Remove"</button>
            <span class="field-error row-error" role="alert">{other_msg}</span>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str, secret: bool, stored: Option<&str>) -> HeaderDraft {
        HeaderDraft {
            key: 0,
            name: " X-Shop-Key ".into(),
            value: value.into(),
            secret,
            stored: stored.map(str::to_string),
        }
    }

    #[test]
    fn a_stored_secret_left_empty_is_kept_and_anything_typed_replaces_it() {
        let kept = header("", true, Some("…1234")).to_input();
        assert_eq!(kept.name, "X-Shop-Key");
        assert_eq!(kept.value, None);
        assert_eq!(
            header(" new ", true, Some("…1234"))
                .to_input()
                .value
                .as_deref(),
            Some("new")
        );
        // No longer secret: the value is what is typed, even empty.
        assert_eq!(
            header("", false, Some("…1234")).to_input().value.as_deref(),
            Some("")
        );
        // A row with nothing typed is not sent; one with a stored secret is.
        let untouched = HeaderDraft {
            name: " ".into(),
            ..header(" ", false, None)
        };
        assert!(untouched.is_blank());
        assert!(
            !HeaderDraft {
                name: String::new(),
                ..header("", true, Some("…1234"))
            }
            .is_blank()
        );
    }

    #[test]
    fn parameters_that_are_not_json_are_refused_before_sending() {
        let draft = Draft {
            parameters: "{\"type\": \"object\",".into(),
            ..Draft::default()
        };
        let e = draft.to_input(Vec::new()).unwrap_err();
        assert_eq!(e.body.fields[0].field, "parameters");
        assert!(e.body.fields[0].message.starts_with("not valid JSON"));
        let draft = Draft {
            parameters: "[1]".into(),
            timeout_ms: "ten".into(),
            ..Draft::default()
        };
        let fields: Vec<String> = draft
            .to_input(Vec::new())
            .unwrap_err()
            .body
            .fields
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["parameters", "timeout_ms"]);
    }

    #[test]
    fn a_new_tool_starts_with_the_documented_defaults() {
        let input = Draft {
            name: "order_status".into(),
            max_response_bytes: " ".into(),
            ..Draft::default()
        }
        .to_input(Vec::new())
        .unwrap();
        assert_eq!(
            input.parameters,
            serde_json::json!({"type": "object", "properties": {}, "required": []})
        );
        assert_eq!(input.max_response_bytes, DEFAULT_RESPONSE_BYTES);
        assert_eq!(input.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(input.method, ToolMethod::Get);
    }
}
