//! WhatsApp on the Channels page: the tenant's business numbers (status, health, quality,
//! templates, and for a tenant's own Meta app the webhook to enter there), what to set up in
//! Meta's dashboard, connecting a number with its ids and a permanent token, and disconnecting.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::channel::ConnectionStatus;
use shared::resources::{
    Agent, Page, PlatformInfo, TemplateVariable, WhatsappConnection, WhatsappConnectionInput,
    WhatsappTemplate,
};

use super::{
    AgentNames, CopyField, PER_PAGE, agent_name, error_note, focus, form_error, last_message,
    status_badge,
};
use crate::api::{self, ApiError, HttpMethod};
use crate::app::{Pager, use_session};
use crate::customers::when;

/// The form's own fields, by the names the server uses in its 422 answers (the templates' are
/// `templates[i].…`).
const FIELDS: &[&str] = &[
    "phone_number_id",
    "waba_id",
    "access_token",
    "agent_id",
    "app_secret",
];

/// As many templates, and variables per template, as the server takes.
const MAX_TEMPLATES: usize = 10;
const MAX_VARIABLES: usize = 10;

/// The WhatsApp half of the Channels page: the numbers, the setup guide, the connect form.
#[component]
pub(super) fn Whatsapp(
    platform: LocalResource<Result<PlatformInfo, ApiError>>,
    agents: LocalResource<Result<Option<Vec<Agent>>, ApiError>>,
    agent_names: AgentNames,
    manage: Signal<bool>,
    now: Signal<f64>,
    on_error: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let page = RwSignal::new(1u32);
    let version = RwSignal::new(0u32);
    // A failed number's "Reconnect": the form is filled in with it, but for the token.
    let reconnect = RwSignal::new(None::<WhatsappConnection>);
    let list = LocalResource::new(move || {
        let (tenant, p, _) = (session.tenant.get(), page.get(), version.get());
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            api::get::<Page<WhatsappConnection>>(&format!(
                "/api/tenants/{tenant}/channels/whatsapp?page={p}&per_page={PER_PAGE}"
            ))
            .await
            .map(Some)
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    // Another tenant: its first page.
    Effect::new(move |_| {
        session.tenant.track();
        page.set(1);
    });

    view! {
        <section class="section" aria-labelledby="whatsapp-numbers">
            <h2 id="whatsapp-numbers">"WhatsApp numbers"</h2>
            {move || match list.get() {
                None => view! { <p class="loading" role="status">"Loading WhatsApp numbers…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some(p))) if p.items.is_empty() => view! {
                    <div class="card empty-state">
                        <p><strong>"No WhatsApp number is connected yet."</strong></p>
                        <p class="muted">{if manage.get() {
                            "Set the number up in Meta's dashboard with the steps below, then connect it with its ids and a permanent access token."
                        } else {
                            "A customer admin connects one with the steps below."
                        }}</p>
                    </div>
                }.into_any(),
                Some(Ok(Some(p))) => {
                    let total = p.total;
                    view! {
                        <div class="table-wrap">
                            <table class="table stack">
                                <caption class="sr-only">"WhatsApp numbers"</caption>
                                <thead><tr><th>"Number"</th><th>"Answered by"</th><th>"Status"</th><th>"Templates"</th><th>"Token"</th><th><span class="sr-only">"Actions"</span></th></tr></thead>
                                <tbody>
                                    {p.items.into_iter().map(|c| view! {
                                        <NumberRow connection=c agent_names=agent_names manage=manage now=now
                                            on_change=Callback::new(move |m: String| { session.show_toast(m); refresh(); })
                                            on_error=on_error
                                            on_reconnect=Callback::new(move |c| reconnect.set(Some(c))) />
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                        <Show when=move || { total > u64::from(PER_PAGE) }>
                            <Pager page=page total=total per_page=PER_PAGE one="number" many="numbers" />
                        </Show>
                    }.into_any()
                }
            }}
        </section>
        <SetupGuide platform=platform manage=manage />
        <Show when=move || manage.get()>
            <ConnectWhatsapp agents=agents reconnect=reconnect
                on_connected=Callback::new(move |m: String| { session.show_toast(m); page.set(1); refresh(); }) />
        </Show>
    }
}

/// How the number is named in the page: its display number, else its id.
fn display(c: &WhatsappConnection) -> String {
    if c.display_phone_number.trim().is_empty() {
        c.phone_number_id.clone()
    } else {
        c.display_phone_number.clone()
    }
}

/// Meta's quality rating as a badge (Meta's colours, in words).
fn quality(rating: Option<&str>) -> impl IntoView + use<> {
    let (text, class) = match rating {
        Some("GREEN") => ("High", "badge ok"),
        Some("YELLOW") => ("Medium", "badge warn"),
        Some("RED") => ("Low", "badge danger"),
        _ => ("Unknown", "badge muted-badge"),
    };
    let title = format!(
        "Meta's quality rating: {}",
        rating.unwrap_or("not reported")
    );
    view! { <span>"Quality "<span class=class title=title>{text}</span></span> }
}

/// What fills a template variable, as shown.
fn variable_label(v: TemplateVariable) -> &'static str {
    match v {
        TemplateVariable::CustomerName => "the customer's name",
        TemplateVariable::AgentName => "the AI employee's name",
        TemplateVariable::Message => "the message",
    }
}

/// `{{1}}`, as the variable is written in the template's body.
fn placeholder(index: usize) -> String {
    format!("{{{{{}}}}}", index + 1)
}

fn templates_cell(templates: &[WhatsappTemplate]) -> impl IntoView + use<> {
    if templates.is_empty() {
        return view! { <span class="muted" title="Replies more than 24 hours after the customer's last message cannot be sent">"None"</span> }.into_any();
    }
    let first = templates.len() > 1;
    view! {
        <ul class="templates">
            {templates.iter().enumerate().map(|(i, t)| {
                let vars = if t.variables.is_empty() {
                    "no variables".to_string()
                } else {
                    t.variables.iter().enumerate()
                        .map(|(j, v)| format!("{} {}", placeholder(j), variable_label(*v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                view! {
                    <li>
                        <code>{t.name.clone()}</code>" · "{t.language.clone()}
                        {(first && i == 0).then(|| view! { " " <span class="badge info" title="The first template is the one sent">"in use"</span> })}
                        <span class="hint">{vars}</span>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn NumberRow(
    connection: WhatsappConnection,
    agent_names: AgentNames,
    manage: Signal<bool>,
    now: Signal<f64>,
    on_change: Callback<String>,
    on_error: Callback<String>,
    on_reconnect: Callback<WhatsappConnection>,
) -> impl IntoView {
    let session = use_session();
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let id = connection.id;
    let status = connection.status;
    let connected = status != ConnectionStatus::Disabled;
    let name = display(&connection);
    let agent = connection.agent_id;
    let disconnect = {
        let name = name.clone();
        move |_| {
            let Some((tenant, _)) = session.tenant.get_untracked() else {
                return;
            };
            let name = name.clone();
            busy.set(true);
            spawn_local(async move {
                let path = format!("/api/tenants/{tenant}/channels/whatsapp/{id}");
                match api::act_empty(HttpMethod::DELETE, &path).await {
                    Ok(()) => {
                        confirming.set(false);
                        on_change.run(format!(
                            "Disconnected {name}. Its access token was erased; its conversations are kept."
                        ));
                    }
                    Err(e) => {
                        session.handle(&e);
                        on_error.run(e.message());
                    }
                }
                busy.set(false);
            });
        }
    };
    let failed = status == ConnectionStatus::Failed;
    let note = error_note(&connection.health, status, "WhatsApp", now);
    // The webhook of the tenant's own Meta app, while the number is connected.
    let own = connection.own_webhook.clone().filter(|_| connected);
    let reconnect = {
        let connection = connection.clone();
        move |_| on_reconnect.run(connection.clone())
    };
    let has_detail = note.is_some() || own.is_some();
    let detail = has_detail.then(|| {
        let name = name.clone();
        view! {
            <tr class="detail-row" class:failed-row=failed>
                <td colspan="6" class="detail">
                    {note.map(|note| view! {
                        <div class="detail-box" class:failed-box=failed class:warn-box=!failed>
                            {note}
                            <Show when=move || manage.get() && failed>
                                <button type="button" class="secondary" on:click=reconnect.clone()
                                    aria-label=format!("Reconnect {name} with a new token")>"Reconnect with a new token"</button>
                            </Show>
                        </div>
                    })}
                    {own.map(|w| view! {
                        <div class="detail-box" role="group" aria-label=format!("Webhook of {}", display(&connection))>
                            <p>
                                <strong>"Your own Meta app."</strong>
                                " In its "<strong>"WhatsApp → Configuration"</strong>", enter this callback URL and verify token, then subscribe the "<code>"messages"</code>" webhook field."
                            </p>
                            <dl class="facts pair">
                                <CopyField id=format!("wa-{id}-callback") label="Callback URL" value=w.callback_url
                                    copy_label=format!("Copy the callback URL of {}", display(&connection))
                                    note="Meta asks it for the verify token when you save.".to_string() />
                                <CopyField id=format!("wa-{id}-verify-token") label="Verify token" value=w.verify_token
                                    copy_label=format!("Copy the verify token of {}", display(&connection))
                                    note="Made for this number; connecting it again makes a new one.".to_string() />
                            </dl>
                        </div>
                    })}
                </td>
            </tr>
        }
    });
    let ids = format!(
        "ID {} · WABA {}",
        connection.phone_number_id, connection.waba_id
    );
    let added = connection.created_at;
    view! {
        <tr class:failed-row=failed class:has-detail=has_detail>
            <td data-label="Number"><div class="cell">
                <span class="strong nowrap">{name.clone()}</span>
                {(!connection.verified_name.is_empty()).then(|| view! { <span>{connection.verified_name.clone()}</span> })}
                <span class="hint">{ids}</span>
                <span class="hint" title=when(added)>{format!("Added {}", added.format("%Y-%m-%d"))}</span>
            </div></td>
            <td data-label="Answered by">{move || agent_name(agent_names, agent)}</td>
            <td data-label="Status"><div class="cell">
                {status_badge(status)}
                <span class="health">
                    {connected.then(|| quality(connection.quality_rating.as_deref()))}
                    {last_message(&connection.health, now)}
                </span>
            </div></td>
            <td data-label="Templates">{templates_cell(&connection.templates)}</td>
            <td data-label="Token">{if connected {
                view! { <code class="id nowrap" title="Only the last characters are ever shown">{connection.token_hint.clone()}</code> }.into_any()
            } else {
                view! { <span class="muted">"Erased"</span> }.into_any()
            }}</td>
            <td class="row-actions">
                <div class="actions">
                    <Show when=move || manage.get() && connected>
                        <button class="danger" on:click=move |_| confirming.set(true) aria-label=format!("Disconnect {}", name.clone())>"Disconnect"</button>
                    </Show>
                </div>
                <Show when=move || confirming.get()>
                    <div class="confirm" role="group" aria-label="Confirm disconnecting">
                        <p>"Its AI employee stops answering on this number and the access token is erased. Conversations are kept."</p>
                        <button class="danger" disabled=move || busy.get() on:click=disconnect.clone()>"Yes, disconnect"</button>
                        <button class="link" on:click=move |_| confirming.set(false)>"Cancel"</button>
                    </div>
                </Show>
            </td>
        </tr>
        {detail}
    }
}

/// What to set up in Meta's dashboard: the callback URL (with a copy button), the verify token,
/// the `messages` field, a permanent system-user token, where the ids are, and templates.
#[component]
fn SetupGuide(
    platform: LocalResource<Result<PlatformInfo, ApiError>>,
    manage: Signal<bool>,
) -> impl IntoView {
    let session = use_session();
    view! {
        <section class="card guide" aria-labelledby="whatsapp-setup">
            <h2 id="whatsapp-setup">"Set up WhatsApp"</h2>
            {move || match platform.get() {
                None => view! { <p class="loading" role="status">"Loading…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(info)) => {
                    let configured = info.whatsapp_configured;
                    view! {
                        <dl class="facts">
                            <CopyField id="whatsapp-callback-url".to_string() label="Callback URL" value=info.whatsapp_webhook_url.clone()
                                copy_label="Copy the callback URL".to_string()
                                note="For the platform's Meta app: WhatsApp → Configuration → Callback URL.".to_string() />
                            <div>
                                <dt>"Verify token"</dt>
                                <dd>{if configured {
                                    view! { <span>"Set on this server ("<code>"KONSTRUCT_WHATSAPP_VERIFY_TOKEN"</code>"); not shown here. The platform operator enters it with the callback URL."</span> }.into_any()
                                } else {
                                    view! { <span class="warn-text">"Not configured on this server"</span> }.into_any()
                                }}</dd>
                            </div>
                        </dl>
                        {(!configured).then(|| view! {
                            <p class="readonly-note" role="note">"This server has no app secret and verify token for the platform's Meta app (KONSTRUCT_WHATSAPP_APP_SECRET, KONSTRUCT_WHATSAPP_VERIFY_TOKEN), so that app's webhooks are refused: numbers can be connected, but their messages arrive only once the platform operator sets both — or through your own Meta app."</p>
                        })}
                        <ol class="steps">
                            <li>
                                "In the Meta app, under "<strong>"WhatsApp → Configuration"</strong>", set the "<strong>"Callback URL"</strong>" and the "<strong>"Verify token"</strong>
                                " (Meta checks them at once), then subscribe the webhook field "<code>"messages"</code>
                                ". For the platform's app the platform operator does this once. With your own app you do it yourself, with the callback URL and verify token shown beside your number once it is connected."
                            </li>
                            <li>
                                "In Meta's "<strong>"Business settings → System users"</strong>", add a system user, assign it the app and your WhatsApp Business Account, and generate a "
                                <strong>"permanent token"</strong>" with "<code>"whatsapp_business_messaging"</code>" and "<code>"whatsapp_business_management"</code>
                                ". (The temporary token on the API setup page expires within a day.)"
                            </li>
                            <li>"Under "<strong>"WhatsApp → API setup"</strong>", copy the number's "<strong>"Phone number ID"</strong>" and the "<strong>"WhatsApp Business Account ID"</strong>"."</li>
                            <li>
                                {move || if manage.get() { "Fill in the form below with both ids and the token" } else { "A customer admin fills in this page's connect form with both ids and the token" }}
                                " and picks the AI employee that answers. Konstruct asks Meta whether the token reads that number in that account, shows the number and verified name Meta reports, and subscribes the app to the account's webhooks."
                            </li>
                            <li>
                                "WhatsApp allows free-form replies only within 24 hours of the customer's last message; later, only templates Meta approved. Create one under "
                                <strong>"WhatsApp Manager → Message templates"</strong>" and add its name, language and variables here. Without one, such replies are not sent and the number's health says so."
                            </li>
                            <li>"Message the number from a phone: the AI employee answers, and its first reply says it is an AI assistant."</li>
                        </ol>
                    }.into_any()
                }
            }}
        </section>
    }
}

/// One template as the form edits it; `key` tells the rows apart while they are added and
/// removed.
#[derive(Clone, PartialEq)]
struct TemplateDraft {
    key: u32,
    name: String,
    language: String,
    variables: Vec<TemplateVariable>,
}

impl TemplateDraft {
    fn is_blank(&self) -> bool {
        self.name.trim().is_empty() && self.language.trim().is_empty() && self.variables.is_empty()
    }
}

#[component]
fn ConnectWhatsapp(
    agents: LocalResource<Result<Option<Vec<Agent>>, ApiError>>,
    /// Set by a failed number's "Reconnect": the form takes it over.
    reconnect: RwSignal<Option<WhatsappConnection>>,
    on_connected: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let phone_number_id = RwSignal::new(String::new());
    let waba_id = RwSignal::new(String::new());
    let access_token = RwSignal::new(String::new());
    let agent = RwSignal::new(None::<AgentId>);
    let templates = RwSignal::new(Vec::<TemplateDraft>::new());
    let next_key = StoredValue::new(0u32);
    let own_app = RwSignal::new(false);
    let app_secret = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    // The templates' keys in the order they were sent, to put `templates[i]` errors on the row
    // they are about (blank rows are not sent).
    let sent = RwSignal::new(Vec::<u32>::new());
    let busy = RwSignal::new(false);
    // The number being reconnected, as shown.
    let reconnecting = RwSignal::new(None::<String>);
    let agent_list = move || match agents.get() {
        Some(Ok(Some(list))) => list,
        _ => Vec::new(),
    };
    let clear = move || {
        for field in [phone_number_id, waba_id, access_token, app_secret] {
            field.set(String::new());
        }
        templates.set(Vec::new());
        own_app.set(false);
        reconnecting.set(None);
    };
    // Another tenant: nothing typed for the last one is kept, least of all its token.
    Effect::new(move |_| {
        session.tenant.track();
        clear();
        error.set(None);
    });
    // The first AI employee is picked when the list arrives, and again when the one picked is
    // not in the list (another tenant's).
    Effect::new(move |_| {
        let list = agent_list();
        let picked = agent.get_untracked();
        if !picked.is_some_and(|p| list.iter().any(|a| a.id == p)) {
            agent.set(list.first().map(|a| a.id));
        }
    });
    let new_draft = move |t: Option<&WhatsappTemplate>| {
        let key = next_key.get_value();
        next_key.set_value(key.wrapping_add(1));
        TemplateDraft {
            key,
            name: t.map(|t| t.name.clone()).unwrap_or_default(),
            language: t.map(|t| t.language.clone()).unwrap_or_default(),
            variables: t.map(|t| t.variables.clone()).unwrap_or_default(),
        }
    };
    // "Reconnect": everything but the secrets is filled in, and the token field is focused.
    Effect::new(move |_| {
        let Some(c) = reconnect.get() else {
            return;
        };
        reconnect.set(None);
        clear();
        phone_number_id.set(c.phone_number_id.clone());
        waba_id.set(c.waba_id.clone());
        if let Some(a) = c.agent_id {
            agent.set(Some(a));
        }
        templates.set(c.templates.iter().map(|t| new_draft(Some(t))).collect());
        own_app.set(c.own_webhook.is_some());
        reconnecting.set(Some(display(&c)));
        error.set(None);
        focus("wa-access_token");
    });

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        let Some(agent_id) = agent.get_untracked() else {
            error.set(Some(ApiError::local_field(
                "agent_id",
                "pick the AI employee that answers on this number",
            )));
            return;
        };
        let drafts: Vec<TemplateDraft> = templates
            .get_untracked()
            .into_iter()
            .filter(|t| !t.is_blank())
            .collect();
        sent.set(drafts.iter().map(|t| t.key).collect());
        let body = WhatsappConnectionInput {
            phone_number_id: phone_number_id.get_untracked().trim().to_string(),
            waba_id: waba_id.get_untracked().trim().to_string(),
            access_token: access_token.get_untracked().trim().to_string(),
            agent_id,
            templates: drafts
                .into_iter()
                .map(|t| WhatsappTemplate {
                    name: t.name.trim().to_string(),
                    language: t.language.trim().to_string(),
                    variables: t.variables,
                })
                .collect(),
            app_secret: own_app
                .get_untracked()
                .then(|| app_secret.get_untracked().trim().to_string()),
        };
        let agent_shown = agent_list()
            .into_iter()
            .find(|a| a.id == agent_id)
            .map_or_else(
                || "the AI employee you picked".to_string(),
                |a| a.input.name,
            );
        busy.set(true);
        spawn_local(async move {
            match api::send_with_status::<_, WhatsappConnection>(
                HttpMethod::POST,
                &format!("/api/tenants/{tenant}/channels/whatsapp"),
                &body,
            )
            .await
            {
                Ok((status, c)) => {
                    error.set(None);
                    // The token is sealed on the server now; the browser forgets it too.
                    clear();
                    let name = if c.verified_name.is_empty() {
                        display(&c)
                    } else {
                        format!("{} ({})", display(&c), c.verified_name)
                    };
                    let own = if c.own_webhook.is_some() {
                        " Enter its callback URL and verify token, shown with the number, in your Meta app."
                    } else {
                        ""
                    };
                    on_connected.run(if status == 201 {
                        format!("Connected {name}. Its messages now go to {agent_shown}.{own}")
                    } else {
                        format!("Updated {name}: the new access token is in use.{own}")
                    });
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };

    let message = move |field: &'static str| move || error.get().and_then(|e| e.field(field));
    let text_field = move |label: &'static str,
                           field: &'static str,
                           value: RwSignal<String>,
                           kind: &'static str,
                           mode: &'static str,
                           placeholder: &'static str,
                           hint: &'static str| {
        let id = format!("wa-{field}");
        let hint_id = format!("wa-{field}-hint");
        let error_id = format!("wa-{field}-error");
        let msg = message(field);
        view! {
            <div class="field">
                <label for=id.clone()>{label}</label>
                <input id=id type=kind inputmode=mode placeholder=placeholder autocomplete="off" spellcheck="false"
                    prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))
                    aria-describedby=format!("{hint_id} {error_id}")
                    aria-invalid=move || msg().is_some().to_string() />
                <span id=hint_id class="hint">{hint}</span>
                <span id=error_id class="field-error" role="alert">{msg}</span>
            </div>
        }
    };
    let agent_message = message("agent_id");
    let templates_message = message("templates");
    let add_template = move |_| {
        if templates.with_untracked(Vec::len) < MAX_TEMPLATES {
            let draft = new_draft(None);
            let key = draft.key;
            templates.update(|ts| ts.push(draft));
            focus(&format!("wa-template-{key}-name"));
        }
    };
    let shown = |f: &str| FIELDS.contains(&f) || f.starts_with("templates");

    view! {
        <form class="card connect" on:submit=submit aria-label="Connect a WhatsApp number" aria-busy=move || busy.get().to_string()>
            <h2>"Connect a WhatsApp number"</h2>
            {move || (agents.get().is_some() && agent_list().is_empty()).then(|| view! {
                <p class="readonly-note" role="note">"Hire an AI employee first: every number needs one to answer there. "<a href="/agents/new">"Hire an AI employee"</a></p>
            })}
            {move || reconnecting.get().map(|n| view! {
                <p class="readonly-note" role="note">
                    {format!("Reconnecting {n}: enter a new access token")}
                    {move || own_app.get().then_some(" and your app's secret")}
                    ". "
                    <button type="button" class="link" on:click=move |_| { clear(); error.set(None); }>"Start over"</button>
                </p>
            })}
            <div class="grid">
                {text_field("Phone number ID", "phone_number_id", phone_number_id, "text", "numeric", "1234567890", "WhatsApp Manager → API setup. Digits; not the phone number itself.")}
                {text_field("WhatsApp Business Account ID", "waba_id", waba_id, "text", "numeric", "2345678901", "The account (WABA) the number belongs to, on the same page.")}
            </div>
            {text_field("Access token", "access_token", access_token, "password", "text", "EAAG…", "A permanent system-user token with whatsapp_business_messaging and whatsapp_business_management. Stored encrypted and never shown again.")}
            <div class="grid">
                <div class="field">
                    <label for="wa-agent_id">"AI employee that answers"</label>
                    <select id="wa-agent_id"
                        on:change=move |ev| agent.set(event_target_value(&ev).parse().ok())
                        prop:value=move || agent.get().map(|a| a.to_string()).unwrap_or_default()
                        aria-describedby="wa-agent_id-error"
                        aria-invalid=move || agent_message().is_some().to_string()>
                        {move || {
                            let chosen = agent.get();
                            agent_list().into_iter().map(|a| {
                                let selected = Some(a.id) == chosen;
                                view! { <option value=a.id.to_string() selected=selected>{format!("{} — {}", a.input.name, a.input.role)}</option> }
                            }).collect_view()
                        }}
                    </select>
                    <span id="wa-agent_id-error" class="field-error" role="alert">{agent_message}</span>
                </div>
            </div>
            <fieldset class="group">
                <legend>"Templates for replies after 24 hours (optional)"</legend>
                <p class="muted">"Templates approved in WhatsApp Manager, by name and language, and what fills their variables in order. The first one is sent."</p>
                <For each=move || templates.get() key=|t| t.key let:t>
                    <TemplateRow draft=t.key templates=templates error=error sent=sent />
                </For>
                <span class="field-error" role="alert">{templates_message}</span>
                <Show when=move || templates.with(Vec::len) < MAX_TEMPLATES>
                    <button type="button" class="secondary" on:click=add_template>"Add a template"</button>
                </Show>
            </fieldset>
            <div class="own-app">
                <label class="check">
                    <input type="checkbox" id="wa-own-app" prop:checked=move || own_app.get()
                        on:change=move |ev| { let on = event_target_checked(&ev); own_app.set(on); if !on { app_secret.set(String::new()); } }
                        aria-describedby="wa-own-app-hint" />
                    <span>"I use my own Meta app"</span>
                </label>
                <span id="wa-own-app-hint" class="hint">"Only if the number's webhooks go to a Meta app of yours rather than the platform's. The number then gets a callback URL and verify token of its own, to enter in your app."</span>
            </div>
            <Show when=move || own_app.get()>
                {text_field("App secret", "app_secret", app_secret, "password", "text", "", "Your app's App settings → Basic → App secret. It checks that webhooks come from your app. Stored encrypted and never shown again.")}
            </Show>
            {move || error.get().map(|e| form_error(&e, shown))}
            <div class="form-actions">
                <button type="submit" disabled=move || busy.get() || agent_list().is_empty()>
                    {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
                    {move || if busy.get() { "Checking with Meta…" } else { "Connect number" }}
                </button>
                <span class="sr-only" role="status">{move || if busy.get() { "Checking the number with Meta…" } else { "" }}</span>
            </div>
        </form>
    }
}

/// One template row of the connect form: name, language, and the variables in order.
#[component]
fn TemplateRow(
    /// The draft's key.
    draft: u32,
    templates: RwSignal<Vec<TemplateDraft>>,
    error: RwSignal<Option<ApiError>>,
    sent: RwSignal<Vec<u32>>,
) -> impl IntoView {
    let edit = move |f: &dyn Fn(&mut TemplateDraft)| {
        templates.update(|ts| {
            if let Some(t) = ts.iter_mut().find(|t| t.key == draft) {
                f(t);
            }
        });
    };
    let read = move |f: fn(&TemplateDraft) -> String| {
        move || {
            templates.with(|ts| {
                ts.iter()
                    .find(|t| t.key == draft)
                    .map(f)
                    .unwrap_or_default()
            })
        }
    };
    let variables = move || {
        templates.with(|ts| {
            ts.iter()
                .find(|t| t.key == draft)
                .map(|t| t.variables.clone())
                .unwrap_or_default()
        })
    };
    let number = move || {
        templates
            .with(|ts| ts.iter().position(|t| t.key == draft))
            .map_or(0, |i| i + 1)
    };
    // The server's message about this row's `part`, by the place the row had when sent.
    let message = move |part: &'static str| {
        move || {
            let sent_as = sent.with(|s| s.iter().position(|k| *k == draft))?;
            error.get()?.field(&format!("templates[{sent_as}].{part}"))
        }
    };
    let (name_msg, language_msg, variables_msg) =
        (message("name"), message("language"), message("variables"));
    let id = |part: &str| format!("wa-template-{draft}-{part}");
    let add_variable = move |_| {
        let current = variables();
        if current.len() < MAX_VARIABLES {
            // The first kind not used yet, else the message again.
            let next = TemplateVariable::ALL
                .iter()
                .copied()
                .find(|v| !current.contains(v))
                .unwrap_or(TemplateVariable::Message);
            edit(&|t| t.variables.push(next));
        }
    };
    let remove = move |_| {
        templates.update(|ts| ts.retain(|t| t.key != draft));
        // Errors name rows by their place when sent; once rows go, those places mean nothing.
        error.update(|e| {
            if let Some(e) = e {
                e.body.fields.retain(|f| !f.field.starts_with("templates"));
            }
        });
    };
    view! {
        <div class="template" role="group" aria-label=move || format!("Template {}", number())>
            <div class="template-head">
                <div class="field">
                    <label for=id("name")>"Name"</label>
                    <input id=id("name") placeholder="service_follow_up" autocomplete="off" spellcheck="false"
                        prop:value=read(|t| t.name.clone())
                        on:input=move |ev| { let v = event_target_value(&ev); edit(&|t| t.name = v.clone()); }
                        aria-describedby=id("name-error") aria-invalid=move || name_msg().is_some().to_string() />
                    <span id=id("name-error") class="field-error" role="alert">{name_msg}</span>
                </div>
                <div class="field">
                    <label for=id("language")>"Language"</label>
                    <input id=id("language") placeholder="en_US" autocomplete="off" spellcheck="false"
                        prop:value=read(|t| t.language.clone())
                        on:input=move |ev| { let v = event_target_value(&ev); edit(&|t| t.language = v.clone()); }
                        aria-describedby=id("language-error") aria-invalid=move || language_msg().is_some().to_string() />
                    <span id=id("language-error") class="field-error" role="alert">{language_msg}</span>
                </div>
                <button type="button" class="link" on:click=remove aria-label=move || format!("Remove template {}", number())>"Remove"</button>
            </div>
            <div class="variables" role="group" aria-label=move || format!("Variables of template {}", number())>
                <span class="variables-title">"Variables, in order"</span>
                <For each=move || 0..variables().len() key=|i| *i let:i>
                    {
                        let current = move || variables().get(i).copied();
                        let vid = format!("wa-template-{draft}-variable-{i}");
                        view! {
                            <div class="variable">
                                <label for=vid.clone()>{placeholder(i)}</label>
                                <select id=vid
                                    prop:value=move || current().map(|v| v.as_str()).unwrap_or_default()
                                    on:change=move |ev| {
                                        if let Some(v) = TemplateVariable::parse(&event_target_value(&ev)) {
                                            edit(&|t| if let Some(slot) = t.variables.get_mut(i) { *slot = v; });
                                        }
                                    }>
                                    {TemplateVariable::ALL.iter().map(|v| {
                                        let v = *v;
                                        view! { <option value=v.as_str() selected=move || current() == Some(v)>{variable_label(v)}</option> }
                                    }).collect_view()}
                                </select>
                                <button type="button" class="link" aria-label=move || format!("Remove variable {} of template {}", placeholder(i), number())
                                    on:click=move |_| edit(&|t| if i < t.variables.len() { t.variables.remove(i); })>"Remove"</button>
                            </div>
                        }
                    }
                </For>
                {move || variables().is_empty().then(|| view! { <span class="muted">"None: the template's body has no "<code>"{{1}}"</code>"."</span> })}
                <Show when=move || variables().len() < MAX_VARIABLES>
                    <button type="button" class="secondary small" on:click=add_variable>"Add a variable"</button>
                </Show>
                <span class="field-error" role="alert">{variables_msg}</span>
            </div>
        </div>
    }
}
