//! Slack on the Channels page: the tenant's workspaces, how to set the Slack app up (the Request
//! URL to paste, the scopes), connecting a workspace by hand with its bot token, and
//! disconnecting one.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::channel::ConnectionStatus;
use shared::resources::{Agent, Page, PlatformInfo, SlackInstallation, SlackInstallationInput};

use super::{
    AgentNames, CopyField, PER_PAGE, agent_name, error_note, focus, form_error, last_message,
    status_badge,
};
use crate::api::{self, ApiError, HttpMethod};
use crate::app::{Pager, use_session};
use crate::customers::when;

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

/// The Slack half of the Channels page: the workspaces, the setup guide, the connect form.
#[component]
pub(super) fn Slack(
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
    // A failed workspace's "Reconnect": the form is filled in with it, but for the token.
    let reconnect = RwSignal::new(None::<SlackInstallation>);
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
    // Another tenant: its first page.
    Effect::new(move |_| {
        session.tenant.track();
        page.set(1);
    });
    // Which workspaces are connected now (or failed), to tell a new connection from a refreshed
    // token.
    let connected_teams = move || -> Vec<String> {
        match list.get() {
            Some(Ok(Some(p))) => p
                .items
                .into_iter()
                .filter(|i| i.status != ConnectionStatus::Disabled)
                .map(|i| i.team_id)
                .collect(),
            _ => Vec::new(),
        }
    };

    view! {
        <section class="section" aria-labelledby="slack-workspaces">
            <h2 id="slack-workspaces">"Slack workspaces"</h2>
            {move || match list.get() {
                None => view! { <p class="loading" role="status">"Loading Slack workspaces…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some(p))) if p.items.is_empty() => view! {
                    <div class="card empty-state">
                        <p><strong>"No Slack workspace is connected yet."</strong></p>
                        <p class="muted">{if manage.get() {
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
                                        <InstallationRow installation=i agent_names=agent_names manage=manage now=now
                                            on_change=Callback::new(move |m: String| { session.show_toast(m); refresh(); })
                                            on_error=on_error
                                            on_reconnect=Callback::new(move |i| reconnect.set(Some(i))) />
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
        <SetupGuide platform=platform manage=manage />
        <Show when=move || manage.get()>
            <ConnectSlack agents=agents connected_teams=Signal::derive(connected_teams) reconnect=reconnect
                on_connected=Callback::new(move |m: String| { session.show_toast(m); page.set(1); refresh(); }) />
        </Show>
    }
}

#[component]
fn InstallationRow(
    installation: SlackInstallation,
    agent_names: AgentNames,
    manage: Signal<bool>,
    now: Signal<f64>,
    on_change: Callback<String>,
    on_error: Callback<String>,
    on_reconnect: Callback<SlackInstallation>,
) -> impl IntoView {
    let session = use_session();
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let id = installation.id;
    let status = installation.status;
    let connected = status != ConnectionStatus::Disabled;
    let name = installation
        .team_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| installation.team_id.clone());
    let agent = installation.agent_id;
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
    let name_for_reconnect = name.clone();
    let team_id = installation.team_id.clone();
    let show_team_id = installation.team_name.is_some();
    let note = error_note(&installation.health, status, "Slack", now);
    let failed = status == ConnectionStatus::Failed;
    let reconnect = {
        let installation = installation.clone();
        move |_| on_reconnect.run(installation.clone())
    };
    view! {
        <tr class:failed-row=failed class:has-detail=note.is_some()>
            <td data-label="Workspace"><div class="cell">
                <span class="strong">{name.clone()}</span>
                {show_team_id.then(|| view! { <code class="id">{team_id.clone()}</code> })}
            </div></td>
            <td data-label="Bot user"><code class="id">{installation.bot_user_id.clone()}</code></td>
            <td data-label="Token">{if connected {
                view! { <code class="id" title="Only the last characters are ever shown">{installation.token_hint.clone()}</code> }.into_any()
            } else {
                view! { <span class="muted">"Erased"</span> }.into_any()
            }}</td>
            <td data-label="Answered by">{move || agent_name(agent_names, agent)}</td>
            <td data-label="Status"><div class="cell">{status_badge(status)}<span class="health">{last_message(&installation.health, now)}</span></div></td>
            <td data-label="Added" class="date">{when(installation.created_at)}</td>
            <td class="row-actions">
                <div class="actions">
                    <Show when=move || manage.get() && connected>
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
        {note.map(|note| {
            let name = name_for_reconnect.clone();
            view! {
                <tr class="detail-row" class:failed-row=failed>
                    <td colspan="7" class="detail">
                        <div class="detail-box" class:failed-box=failed class:warn-box=!failed>
                            {note}
                            <Show when=move || manage.get() && failed>
                                <button type="button" class="secondary" on:click=reconnect.clone()
                                    aria-label=format!("Reconnect {name} with a new token")>"Reconnect with a new token"</button>
                            </Show>
                        </div>
                    </td>
                </tr>
            }
        })}
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
    view! {
        <section class="card guide" aria-labelledby="slack-setup">
            <h2 id="slack-setup">"Set up Slack"</h2>
            {move || match platform.get() {
                None => view! { <p class="loading" role="status">"Loading…"</p> }.into_any(),
                Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Some(Ok(info)) => {
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
                            <CopyField id="slack-request-url".to_string() label="Request URL" value=info.slack_events_url.clone()
                                copy_label="Copy the Request URL".to_string()
                                note="Paste it into the Slack app's Event Subscriptions.".to_string() />
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
    /// Set by a failed workspace's "Reconnect": the form takes it over.
    reconnect: RwSignal<Option<SlackInstallation>>,
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
    // "Reconnect": everything but the token is filled in, and the token field is focused.
    Effect::new(move |_| {
        let Some(i) = reconnect.get() else {
            return;
        };
        reconnect.set(None);
        team_id.set(i.team_id);
        bot_user_id.set(i.bot_user_id);
        team_name.set(i.team_name.unwrap_or_default());
        bot_token.set(String::new());
        if !i.scopes.is_empty() {
            scopes.set(i.scopes.join(", "));
        }
        if let Some(a) = i.agent_id {
            agent.set(Some(a));
        }
        error.set(None);
        focus("slack-bot_token");
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
            {move || error.get().map(|e| form_error(&e, |f| FIELDS.contains(&f)))}
            <div class="form-actions">
                <button type="submit" disabled=move || busy.get() || agent_list().is_empty()>
                    {move || if busy.get() { "Checking with Slack…" } else { "Connect workspace" }}
                </button>
            </div>
        </form>
    }
}
