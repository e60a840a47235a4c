//! Channels: the tenant's Slack workspaces, how to set the Slack app up (the Request URL to paste,
//! the scopes), connecting a workspace by hand with its bot token, and disconnecting one. Roles
//! without `channels_manage` (customer operators) see all of it read-only.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::auth::Permission;
use shared::channel::ConnectionStatus;
use shared::resources::{Agent, Page, PlatformInfo, SlackInstallation, SlackInstallationInput};
use wasm_bindgen::JsCast;

use crate::api::{self, ApiError, HttpMethod};
use crate::app::{Pager, use_session};
use crate::customers::when;

const PER_PAGE: u32 = 10;

/// The bot scopes the app needs (README, "Connecting Slack"): mentions, replies, direct
/// messages, files, and `users:read` so Slack says which app a bot belongs to.
const SCOPES: &[&str] = &[
    "app_mentions:read",
    "chat:write",
    "im:history",
    "files:read",
    "users:read",
];

/// The form fields, by the names the server uses in its 422 answers.
const FIELDS: &[&str] = &[
    "team_id",
    "bot_user_id",
    "bot_token",
    "team_name",
    "scopes",
    "agent_id",
];

/// Puts `text` on the clipboard; false when the browser will not.
async fn copy_to_clipboard(text: &str) -> bool {
    let Ok(navigator) = js_sys::Reflect::get(&window(), &"navigator".into()) else {
        return false;
    };
    let Ok(clipboard) = js_sys::Reflect::get(&navigator, &"clipboard".into()) else {
        return false;
    };
    let Ok(write) = js_sys::Reflect::get(&clipboard, &"writeText".into())
        .and_then(|f| f.dyn_into::<js_sys::Function>())
    else {
        return false;
    };
    let Ok(promise) = write
        .call1(&clipboard, &text.into())
        .and_then(|p| p.dyn_into::<js_sys::Promise>())
    else {
        return false;
    };
    wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
}

#[component]
pub fn Channels() -> impl IntoView {
    let session = use_session();
    let page = RwSignal::new(1u32);
    let version = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let platform = LocalResource::new(|| async { api::get::<PlatformInfo>("/api/platform").await });
    let agents = crate::agents::tenant_agents();
    let list = LocalResource::new(move || {
        let (tenant, p, _) = (session.tenant.get(), page.get(), version.get());
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            api::get::<Page<SlackInstallation>>(&format!(
                "/api/tenants/{tenant}/channels/slack?page={p}&per_page={PER_PAGE}"
            ))
            .await
            .map(Some)
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    let manage = move || session.can(Permission::ChannelsManage);
    // Another tenant: its first page, and no message about the last one.
    Effect::new(move |_| {
        session.tenant.track();
        page.set(1);
        error.set(None);
    });
    let agent_names = Memo::new(move |_| match agents.get() {
        Some(Ok(Some(list))) => list
            .into_iter()
            .map(|a| (a.id, a.input.name))
            .collect::<Vec<(AgentId, String)>>(),
        _ => Vec::new(),
    });
    // Which workspaces are connected now, to tell a new connection from a refreshed token.
    let connected_teams = move || -> Vec<String> {
        match list.get() {
            Some(Ok(Some(p))) => p
                .items
                .into_iter()
                .filter(|i| i.status == ConnectionStatus::Active)
                .map(|i| i.team_id)
                .collect(),
            _ => Vec::new(),
        }
    };

    view! {
        <header class="page-head">
            <h1>"Channels"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("Where {}'s AI employees answer customers.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=move || session.tenant.get().is_some() && !manage()>
                <p class="readonly-note" role="note">"Read-only: your role can see the connected workspaces but not connect or disconnect them. A customer admin can."</p>
            </Show>
        </header>
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <Show when=move || session.tenant.get().is_some() fallback=|| view! { <p class="empty">"Pick a tenant in the menu to see its channels."</p> }>
            <section class="section" aria-labelledby="slack-workspaces">
                <h2 id="slack-workspaces">"Slack workspaces"</h2>
                {move || match list.get() {
                    None => view! { <p class="loading" role="status">"Loading Slack workspaces…"</p> }.into_any(),
                    Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                    Some(Ok(None)) => ().into_any(),
                    Some(Ok(Some(p))) if p.items.is_empty() => view! {
                        <div class="card empty-state">
                            <p><strong>"No Slack workspace is connected yet."</strong></p>
                            <p class="muted">{if manage() {
                                "Set up the Slack app with the steps below, then connect the workspace with its bot token."
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
                                    <caption class="sr-only">"Slack workspaces"</caption>
                                    <thead><tr><th>"Workspace"</th><th>"Bot user"</th><th>"Token"</th><th>"Answered by"</th><th>"Status"</th><th>"Added"</th><th><span class="sr-only">"Actions"</span></th></tr></thead>
                                    <tbody>
                                        {p.items.into_iter().map(|i| view! {
                                            <InstallationRow installation=i agent_names=agent_names manage=Signal::derive(manage)
                                                on_change=Callback::new(move |m: String| { session.show_toast(m); refresh(); })
                                                on_error=Callback::new(move |m| error.set(Some(m))) />
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                            <Show when=move || { total > u64::from(PER_PAGE) }>
                                <Pager page=page total=total per_page=PER_PAGE one="workspace" many="workspaces" />
                            </Show>
                        }.into_any()
                    }
                }}
            </section>
            <SetupGuide platform=platform manage=Signal::derive(manage) />
            <Show when=manage>
                <ConnectSlack agents=agents connected_teams=Signal::derive(connected_teams)
                    on_connected=Callback::new(move |m: String| { error.set(None); session.show_toast(m); page.set(1); refresh(); }) />
            </Show>
        </Show>
    }
}

#[component]
fn InstallationRow(
    installation: SlackInstallation,
    agent_names: Memo<Vec<(AgentId, String)>>,
    manage: Signal<bool>,
    on_change: Callback<String>,
    on_error: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let id = installation.id;
    let active = installation.status == ConnectionStatus::Active;
    let name = installation
        .team_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| installation.team_id.clone());
    let agent = installation.agent_id;
    let agent_name = move || {
        let Some(agent) = agent else {
            return "—".to_string();
        };
        agent_names
            .get()
            .into_iter()
            .find(|(id, _)| *id == agent)
            .map_or_else(|| "an AI employee that was removed".into(), |(_, n)| n)
    };
    let disconnect = {
        let name = name.clone();
        move |_| {
            let Some((tenant, _)) = session.tenant.get_untracked() else {
                return;
            };
            let name = name.clone();
            busy.set(true);
            spawn_local(async move {
                let path = format!("/api/tenants/{tenant}/channels/slack/{id}");
                match api::act_empty(HttpMethod::DELETE, &path).await {
                    Ok(()) => {
                        confirming.set(false);
                        on_change.run(format!(
                            "Disconnected {name}. Its bot token was erased; its conversations are kept."
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
    let team_id = installation.team_id.clone();
    let show_team_id = installation.team_name.is_some();
    view! {
        <tr>
            <td data-label="Workspace">
                <span class="strong">{name.clone()}</span>
                {show_team_id.then(|| view! { <br /><code class="id">{team_id.clone()}</code> })}
            </td>
            <td data-label="Bot user"><code class="id">{installation.bot_user_id.clone()}</code></td>
            <td data-label="Token">{if active {
                view! { <code class="id" title="Only the last characters are ever shown">{installation.token_hint.clone()}</code> }.into_any()
            } else {
                view! { <span class="muted">"Erased"</span> }.into_any()
            }}</td>
            <td data-label="Answered by">{agent_name}</td>
            <td data-label="Status">{if active {
                view! { <span class="badge ok">"Connected"</span> }.into_any()
            } else {
                view! { <span class="badge muted-badge">"Disconnected"</span> }.into_any()
            }}</td>
            <td data-label="Added" class="date">{when(installation.created_at)}</td>
            <td class="row-actions">
                <div class="actions">
                    <Show when=move || manage.get() && active>
                        <button class="danger" on:click=move |_| confirming.set(true) aria-label=format!("Disconnect {}", name.clone())>"Disconnect"</button>
                    </Show>
                </div>
                <Show when=move || confirming.get()>
                    <div class="confirm" role="group" aria-label="Confirm disconnecting">
                        <p>"Its AI employee stops answering there and the bot token is erased. Conversations are kept."</p>
                        <button class="danger" disabled=move || busy.get() on:click=disconnect.clone()>"Yes, disconnect"</button>
                        <button class="link" on:click=move |_| confirming.set(false)>"Cancel"</button>
                    </div>
                </Show>
            </td>
        </tr>
    }
}

/// The facts and steps for setting up the Slack app: the scopes, the Request URL to paste (with a
/// copy button), the platform's app id.
#[component]
fn SetupGuide(
    platform: LocalResource<Result<PlatformInfo, ApiError>>,
    manage: Signal<bool>,
) -> impl IntoView {
    let session = use_session();
    let copied = RwSignal::new(None::<bool>);
    view! {
        <section class="card guide" aria-labelledby="slack-setup">
            <h2 id="slack-setup">"Set up Slack"</h2>
            {move || match platform.get() {
                None => view! { <p class="loading" role="status">"Loading…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(info)) => {
                    let url = info.slack_events_url.clone();
                    let copy = {
                        let url = url.clone();
                        move |_| {
                            let url = url.clone();
                            spawn_local(async move {
                                let done = copy_to_clipboard(&url).await;
                                // "Copied" for a moment, then the button is a copy button again.
                                let reset = async move {
                                    TimeoutFuture::new(4_000).await;
                                    copied.set(None);
                                };
                                if !done {
                                    // Select it instead, so Ctrl+C or ⌘C copies it.
                                    if let Some(input) = document()
                                        .get_element_by_id("slack-request-url")
                                        .and_then(|e| e.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                                    {
                                        input.select();
                                    }
                                }
                                copied.set(Some(done));
                                if done {
                                    reset.await;
                                }
                            });
                        }
                    };
                    let app = info.slack_app_id.clone();
                    view! {
                        <dl class="facts">
                            <div>
                                <dt>"Slack app"</dt>
                                <dd>{match app.clone() {
                                    Some(id) => view! { <code>{id}</code> }.into_any(),
                                    None => view! { <span class="warn-text">"Not configured on this server"</span> }.into_any(),
                                }}</dd>
                            </div>
                            <div>
                                <dt><label for="slack-request-url">"Request URL"</label></dt>
                                <dd class="copy-row">
                                    <input id="slack-request-url" readonly prop:value=url.clone()
                                        aria-describedby="slack-request-url-note"
                                        on:focus=move |ev| { if let Some(i) = ev.target().and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok()) { i.select(); } } />
                                    <button type="button" class="secondary" on:click=copy aria-label="Copy the Request URL">
                                        {move || if copied.get() == Some(true) { "Copied" } else { "Copy" }}
                                    </button>
                                </dd>
                                <dd id="slack-request-url-note" class="hint" aria-live="polite">
                                    {move || match copied.get() {
                                        Some(true) => "Copied to the clipboard.",
                                        Some(false) => "The browser would not copy it: it is selected, press Ctrl+C (⌘C on a Mac).",
                                        None => "Paste it into the Slack app's Event Subscriptions.",
                                    }}
                                </dd>
                            </div>
                        </dl>
                        {app.is_none().then(|| view! {
                            <p class="readonly-note" role="note">"This server has no Slack app id (KONSTRUCT_SLACK_APP_ID), so connecting a workspace is refused until the platform operator sets it."</p>
                        })}
                        <ol class="steps">
                            <li>
                                "In the Slack app" {app.clone().map(|a| format!(" ({a})"))} ", under "<strong>"OAuth & Permissions"</strong>", add the bot scopes "
                                {SCOPES.iter().enumerate().map(|(i, s)| view! {
                                    {if i == 0 { "" } else if i + 1 == SCOPES.len() { " and " } else { ", " }}
                                    <code>{*s}</code>
                                }).collect_view()}
                                ", install it into your workspace and copy the "<strong>"Bot User OAuth Token"</strong>" ("<code>"xoxb-…"</code>")."
                            </li>
                            <li>
                                "Under "<strong>"Event Subscriptions"</strong>", turn events on and paste the Request URL above (Slack checks it at once). Subscribe to the bot events "
                                <code>"app_mention"</code>" and "<code>"message.im"</code>" and save. Under "<strong>"App Home"</strong>", allow users to send messages to the app."
                            </li>
                            <li>
                                {move || if manage.get() { "Fill in the form below with" } else { "A customer admin fills in this page's connect form with" }}
                                " the workspace id ("<code>"T…"</code>") and the bot's user id ("<code>"U…"</code>") — Slack's "
                                <code>"auth.test"</code>" answers both for the bot token — and pick the AI employee that answers. Konstruct asks Slack too, and refuses a token of another workspace or another app."
                            </li>
                            <li>"Mention the app in a channel it was invited to, or message it directly: the AI employee answers in the thread."</li>
                        </ol>
                    }.into_any()
                }
            }}
        </section>
    }
}

#[component]
fn ConnectSlack(
    agents: LocalResource<Result<Option<Vec<Agent>>, ApiError>>,
    connected_teams: Signal<Vec<String>>,
    on_connected: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let team_id = RwSignal::new(String::new());
    let bot_user_id = RwSignal::new(String::new());
    let bot_token = RwSignal::new(String::new());
    let team_name = RwSignal::new(String::new());
    let scopes = RwSignal::new(SCOPES.join(", "));
    let agent = RwSignal::new(None::<AgentId>);
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let agent_list = move || match agents.get() {
        Some(Ok(Some(list))) => list,
        _ => Vec::new(),
    };
    // Another tenant: nothing typed for the last one is kept, least of all its token.
    Effect::new(move |_| {
        session.tenant.track();
        for field in [team_id, bot_user_id, bot_token, team_name] {
            field.set(String::new());
        }
        scopes.set(SCOPES.join(", "));
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
                "pick the AI employee that answers in this workspace",
            )));
            return;
        };
        let body = SlackInstallationInput {
            team_id: team_id.get_untracked().trim().to_string(),
            enterprise_id: None,
            team_name: Some(team_name.get_untracked().trim().to_string()).filter(|n| !n.is_empty()),
            bot_user_id: bot_user_id.get_untracked().trim().to_string(),
            bot_token: bot_token.get_untracked().trim().to_string(),
            scopes: scopes
                .get_untracked()
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            agent_id,
        };
        let refreshed = connected_teams.get_untracked().contains(&body.team_id);
        busy.set(true);
        spawn_local(async move {
            match api::send::<_, SlackInstallation>(
                HttpMethod::POST,
                &format!("/api/tenants/{tenant}/channels/slack"),
                &body,
            )
            .await
            {
                Ok(i) => {
                    error.set(None);
                    // The token is sealed on the server now; the browser forgets it too.
                    bot_token.set(String::new());
                    team_id.set(String::new());
                    bot_user_id.set(String::new());
                    team_name.set(String::new());
                    let name = i.team_name.unwrap_or(i.team_id);
                    on_connected.run(if refreshed {
                        format!("Updated {name}: the new bot token is in use.")
                    } else {
                        format!(
                            "Connected {name}. Its messages now go to the AI employee you picked."
                        )
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
                           placeholder: &'static str,
                           hint: &'static str| {
        let id = format!("slack-{field}");
        let hint_id = format!("slack-{field}-hint");
        let error_id = format!("slack-{field}-error");
        let msg = message(field);
        view! {
            <div class="field">
                <label for=id.clone()>{label}</label>
                <input id=id type=kind placeholder=placeholder autocomplete="off" spellcheck="false"
                    prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))
                    aria-describedby=format!("{hint_id} {error_id}")
                    aria-invalid=move || msg().is_some().to_string() />
                <span id=hint_id class="hint">{hint}</span>
                <span id=error_id class="field-error" role="alert">{msg}</span>
            </div>
        }
    };
    let agent_message = message("agent_id");

    view! {
        <form class="card connect" on:submit=submit aria-label="Connect a Slack workspace">
            <h2>"Connect a Slack workspace"</h2>
            {move || (agents.get().is_some() && agent_list().is_empty()).then(|| view! {
                <p class="readonly-note" role="note">"Hire an AI employee first: every workspace needs one to answer there. "<a href="/agents/new">"Hire an AI employee"</a></p>
            })}
            <div class="grid">
                {text_field("Workspace id", "team_id", team_id, "text", "T0123ABCD", "Starts with T.")}
                {text_field("Bot user id", "bot_user_id", bot_user_id, "text", "U0123ABCD", "The app's bot user in that workspace; starts with U.")}
            </div>
            {text_field("Bot token", "bot_token", bot_token, "password", "xoxb-…", "The Bot User OAuth Token, starting with xoxb-. Stored encrypted and never shown again.")}
            <div class="grid">
                {text_field("Workspace name (optional)", "team_name", team_name, "text", "Acme HQ", "How the workspace is shown here.")}
                <div class="field">
                    <label for="slack-agent_id">"AI employee that answers"</label>
                    <select id="slack-agent_id"
                        on:change=move |ev| agent.set(event_target_value(&ev).parse().ok())
                        prop:value=move || agent.get().map(|a| a.to_string()).unwrap_or_default()
                        aria-describedby="slack-agent_id-error"
                        aria-invalid=move || agent_message().is_some().to_string()>
                        {move || {
                            let chosen = agent.get();
                            agent_list().into_iter().map(|a| {
                                let selected = Some(a.id) == chosen;
                                view! { <option value=a.id.to_string() selected=selected>{format!("{} — {}", a.input.name, a.input.role)}</option> }
                            }).collect_view()
                        }}
                    </select>
                    <span id="slack-agent_id-error" class="field-error" role="alert">{agent_message}</span>
                </div>
            </div>
            {text_field("Scopes", "scopes", scopes, "text", "", "The bot scopes granted at installation, separated by commas.")}
            {move || error.get().map(|e| {
                if e.body.fields.is_empty() {
                    let title = match e.status {
                        409 => "Already connected elsewhere.",
                        503 => "Not possible right now.",
                        _ => "Not connected.",
                    };
                    view! { <div class="error" role="alert"><strong>{title}</strong>" "{e.message()}</div> }.into_any()
                } else {
                    // Fields the form does not show (the server may name others) are listed here.
                    let others: Vec<String> = e.body.fields.iter()
                        .filter(|f| !FIELDS.contains(&f.field.as_str()))
                        .map(|f| format!("{}: {}", f.field, f.message))
                        .collect();
                    view! { <p class="error" role="alert">"Please correct the marked fields." {others.into_iter().map(|o| view! { " " {o} }).collect_view()}</p> }.into_any()
                }
            })}
            <div class="form-actions">
                <button type="submit" disabled=move || busy.get() || agent_list().is_empty()>
                    {move || if busy.get() { "Checking with Slack…" } else { "Connect workspace" }}
                </button>
            </div>
        </form>
    }
}
