//! The root: the session (who is signed in, loaded from `/api/me`), the tenant being worked on,
//! the router and the shell around every page (navigation by role, tenant switcher, the
//! impersonation banner and its expiry, toasts, the inbox's badge) and the inbox's live stream,
//! which outlives page changes.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::hooks::use_navigate;
use leptos_router::{StaticSegment, path};
use shared::TenantId;
use shared::auth::{Me, Permission};
use shared::resources::{Page, Tenant};

use crate::api::{self, ApiError, HttpMethod};
use crate::inbox::live::{Live, LiveStream, use_live};
use crate::{
    account, agents, audit, channels, chat, customers, inbox, invitation, jobs, knowledge, login,
    members, passwords, settings, tenants, tools, usage,
};

/// What every page can reach: the signed-in user and the tenant in focus.
#[derive(Clone, Copy)]
pub struct Session {
    pub me: RwSignal<Option<Me>>,
    /// Set once `/api/me` answered (signed in or not), so pages do not flash the sign-in form.
    pub checked: RwSignal<bool>,
    pub tenant: RwSignal<Option<(TenantId, String)>>,
    /// A message for the sign-in page (e.g. "your session ended").
    pub notice: RwSignal<Option<String>>,
    /// A confirmation that outlives a navigation (e.g. "Saved." after creating).
    pub flash: RwSignal<Option<String>>,
    /// The toast on screen (a result: "Settings saved."), with a number so an older toast's
    /// timer never dismisses a newer one.
    pub toast: RwSignal<Option<(u32, String)>>,
}

/// How long a toast stays up.
const TOAST_MS: u32 = 7_000;

impl Session {
    /// Whether the user may do `p` in the tenant in focus. A courtesy: the server decides.
    pub fn can(&self, p: Permission) -> bool {
        let Some(me) = self.me.get() else {
            return false;
        };
        let Some((tenant, _)) = self.tenant.get() else {
            return false;
        };
        if me.platform_admin && me.impersonation.is_none() {
            return true;
        }
        me.tenant_permissions
            .iter()
            .any(|t| t.tenant_id == tenant && t.permissions.contains(&p))
    }

    pub fn is_platform_admin(&self) -> bool {
        self.me
            .get()
            .is_some_and(|m| m.platform_admin && m.impersonation.is_none())
    }

    /// Reloads `/api/me` and picks a sensible tenant in focus.
    pub fn reload(&self) {
        let session = *self;
        spawn_local(async move { session.refresh().await });
    }

    /// Reloads `/api/me` now: who is signed in, and whether an impersonation still lasts.
    pub async fn refresh(&self) {
        match api::get::<Me>("/api/me").await {
            Ok(me) => self.adopt(me),
            Err(_) => {
                self.me.set(None);
                self.tenant.set(None);
            }
        }
        self.checked.set(true);
    }

    /// Shows a result for a few seconds (announced politely to screen readers).
    pub fn show_toast(&self, text: impl Into<String>) {
        let id = self
            .toast
            .get_untracked()
            .map_or(1, |(id, _)| id.wrapping_add(1));
        self.toast.set(Some((id, text.into())));
        let toast = self.toast;
        spawn_local(async move {
            TimeoutFuture::new(TOAST_MS).await;
            if toast
                .get_untracked()
                .is_some_and(|(current, _)| current == id)
            {
                toast.set(None);
            }
        });
    }

    /// A session this page started itself (a sign-in, a link from a mail): taken as `/api/me`
    /// would answer it, without a notice left over from before.
    pub fn enter(&self, me: Me) {
        self.notice.set(None);
        self.adopt(me);
        self.checked.set(true);
    }

    pub fn adopt(&self, me: Me) {
        // After a reload of the tab, the tenant it was working in (if still allowed).
        let current = self.tenant.get_untracked().or_else(stored_focus);
        let focus = if let Some(imp) = &me.impersonation {
            Some((imp.tenant_id, imp.tenant_name.clone()))
        } else if let Some(current) = current.filter(|(id, _)| {
            me.platform_admin || me.memberships.iter().any(|m| m.tenant_id == *id)
        }) {
            Some(current)
        } else {
            me.memberships
                .first()
                .map(|m| (m.tenant_id, m.tenant_name.clone()))
        };
        self.tenant.set(focus);
        self.me.set(Some(me));
    }

    /// An API error: a lost session sends the user back to sign in, with a message.
    pub fn handle(&self, e: &ApiError) {
        if e.is_unauthenticated() {
            self.me.set(None);
            self.notice
                .set(Some("Your session has ended. Please sign in again.".into()));
        }
    }
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// The tenant in focus outlives a reload of the tab (not the tab itself): it is kept in the
/// tab's `sessionStorage`, read through JS reflection since nothing else here needs web-sys'
/// storage bindings. Only an id and a name; `adopt` checks it against what `/api/me` allows.
const FOCUS_KEY: &str = "konstruct.tenant";

fn session_storage() -> Option<wasm_bindgen::JsValue> {
    js_sys::Reflect::get(&window(), &"sessionStorage".into())
        .ok()
        .filter(|s| !s.is_undefined() && !s.is_null())
}

fn storage_call(method: &str, args: &[wasm_bindgen::JsValue]) -> Option<wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    let storage = session_storage()?;
    let f = js_sys::Reflect::get(&storage, &method.into())
        .ok()?
        .dyn_into::<js_sys::Function>()
        .ok()?;
    let args: js_sys::Array = args.iter().collect();
    f.apply(&storage, &args).ok()
}

fn stored_focus() -> Option<(TenantId, String)> {
    let text = storage_call("getItem", &[FOCUS_KEY.into()])?.as_string()?;
    serde_json::from_str(&text).ok()
}

fn store_focus(focus: Option<&(TenantId, String)>) {
    match focus.and_then(|f| serde_json::to_string(f).ok()) {
        Some(json) => storage_call("setItem", &[FOCUS_KEY.into(), json.into()]),
        None => storage_call("removeItem", &[FOCUS_KEY.into()]),
    };
}

#[component]
pub fn App() -> impl IntoView {
    let session = Session {
        me: RwSignal::new(None),
        checked: RwSignal::new(false),
        tenant: RwSignal::new(None),
        notice: RwSignal::new(None),
        flash: RwSignal::new(None),
        toast: RwSignal::new(None),
    };
    provide_context(session);
    provide_context(Live::new());
    session.reload();
    Effect::new(move |_| {
        let focus = session.tenant.get();
        // Only once `/api/me` has answered, so the stored focus is not wiped before it is read.
        if session.checked.get() {
            store_focus(focus.as_ref());
        }
    });
    view! {
        <Router>
            <ImpersonationExpiry />
            <LiveStream />
            <Routes fallback=|| view! { <Shell><p class="empty">"This page does not exist."</p></Shell> }>
                <Route path=path!("/login") view=login::Login />
                <Route path=path!("/forgot-password") view=passwords::ForgotPassword />
                <Route path=(StaticSegment(shared::people::RESET_PATH),) view=passwords::ResetPassword />
                <Route path=(StaticSegment(shared::people::INVITATION_PATH),) view=invitation::Invitation />
                <Route path=path!("/") view=|| view! { <Shell><Home /></Shell> } />
                <Route path=path!("/tenants") view=|| view! { <Shell><tenants::Tenants /></Shell> } />
                <Route path=path!("/agents") view=|| view! { <Shell><agents::AgentList /></Shell> } />
                <Route path=path!("/agents/new") view=|| view! { <Shell><agents::AgentEditor /></Shell> } />
                <Route path=path!("/agents/:id") view=|| view! { <Shell><agents::AgentEditor /></Shell> } />
                <Route path=path!("/chat") view=|| view! { <Shell><chat::TestChat /></Shell> } />
                <Route path=path!("/knowledge") view=|| view! { <Shell><knowledge::Knowledge /></Shell> } />
                <Route path=path!("/tools") view=|| view! { <Shell><tools::Tools /></Shell> } />
                <Route path=path!("/tools/new") view=|| view! { <Shell><tools::ToolEditor /></Shell> } />
                <Route path=path!("/tools/:id") view=|| view! { <Shell><tools::ToolEditor /></Shell> } />
                <Route path=path!("/audit") view=|| view! { <Shell><audit::AuditTrail /></Shell> } />
                <Route path=path!("/jobs") view=|| view! { <Shell><jobs::Jobs /></Shell> } />
                <Route path=path!("/usage") view=|| view! { <Shell><usage::Usage /></Shell> } />
                <Route path=path!("/customers") view=|| view! { <Shell><customers::Customers /></Shell> } />
                <Route path=path!("/inbox") view=|| view! { <Shell><inbox::Inbox /></Shell> } />
                <Route path=path!("/inbox/:id") view=|| view! { <Shell><inbox::Conversation /></Shell> } />
                <Route path=path!("/channels") view=|| view! { <Shell><channels::Channels /></Shell> } />
                <Route path=path!("/settings") view=|| view! { <Shell><settings::Settings /></Shell> } />
                <Route path=path!("/members") view=|| view! { <Shell><members::Members /></Shell> } />
                <Route path=path!("/account") view=|| view! { <Shell><account::Account /></Shell> } />
            </Routes>
        </Router>
    }
}

/// Sends a signed-in user to the right first page.
#[component]
fn Home() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if session.me.get().is_some() {
            let to = if session.is_platform_admin() && session.tenant.get().is_none() {
                "/tenants"
            } else {
                "/agents"
            };
            navigate(to, Default::default());
        }
    });
    view! { <p class="loading" role="status">"Loading…"</p> }
}

/// The frame of every signed-in page. Not signed in: off to the sign-in page.
#[component]
pub fn Shell(children: ChildrenFn) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if session.checked.get() && session.me.get().is_none() {
            navigate("/login", Default::default());
        }
    });
    let children = StoredValue::new(children);
    view! {
        <Show
            when=move || session.me.get().is_some()
            fallback=|| view! { <p class="loading" role="status">"Loading…"</p> }
        >
            <ImpersonationBanner />
            <div class="shell">
                <Nav />
                <main class="page">{move || children.read_value()()}</main>
            </div>
        </Show>
        <Toast />
    }
}

/// The toast region: always in the page, so screen readers announce what appears in it.
#[component]
fn Toast() -> impl IntoView {
    let session = use_session();
    view! {
        <div class="toasts" role="status" aria-live="polite">
            {move || session.toast.get().map(|(_, text)| view! {
                <div class="toast">
                    <span>{text}</span>
                    <button class="link" aria-label="Dismiss" on:click=move |_| session.toast.set(None)>"×"</button>
                </div>
            })}
        </div>
    }
}

/// Watches the impersonation's end: when `expires_at` passes, `/api/me` is asked again. The
/// server then answers as the admin's own session, so the banner goes and the admin's pages come
/// back without a sign-in.
#[component]
fn ImpersonationExpiry() -> impl IntoView {
    let session = use_session();
    // Bumped on every change of the impersonation, so only the latest timer acts.
    let generation = StoredValue::new(0u32);
    Effect::new(move |_| {
        let imp = session.me.get().and_then(|m| m.impersonation);
        generation.update_value(|g| *g = g.wrapping_add(1));
        let Some(imp) = imp else {
            return;
        };
        let mine = generation.get_value();
        let left_ms = imp.expires_at.timestamp_millis() - js_sys::Date::now() as i64;
        // A second after the end, so the server surely sees it as ended too. Already past by
        // this browser's clock but still running by the server's (the clocks differ): ask again
        // in a while rather than in a tight loop.
        let wait = if left_ms > 0 {
            left_ms.saturating_add(1_000)
        } else {
            15_000
        };
        let wait = u32::try_from(wait).unwrap_or(u32::MAX);
        spawn_local(async move {
            TimeoutFuture::new(wait).await;
            if generation.try_get_value() != Some(mine) {
                return;
            }
            session.refresh().await;
            if session
                .me
                .get_untracked()
                .is_some_and(|m| m.impersonation.is_none())
            {
                session.show_toast(format!(
                    "Your impersonation of {} has ended. You are back in your own session.",
                    imp.tenant_name
                ));
            }
        });
    });
}

#[component]
fn ImpersonationBanner() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // Stopping ends only the impersonation (204, its cookie cleared); the admin's own session
    // was never touched, so `/api/me` answers as the admin again and the tenants page is theirs.
    let stop = move |_| {
        let navigate = navigate.clone();
        let name = session
            .me
            .get_untracked()
            .and_then(|m| m.impersonation)
            .map(|i| i.tenant_name)
            .unwrap_or_default();
        busy.set(true);
        spawn_local(async move {
            match api::act_empty(HttpMethod::DELETE, "/api/admin/impersonate").await {
                Ok(()) => {
                    error.set(None);
                    session.tenant.set(None);
                    session.refresh().await;
                    if session.me.get_untracked().is_some() {
                        navigate("/tenants", Default::default());
                        session.show_toast(format!(
                            "You stopped impersonating {name}. You are back in your own session."
                        ));
                    }
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e.message()));
                }
            }
            busy.set(false);
        });
    };
    move || {
        session.me.get().and_then(|me| me.impersonation).map(|imp| {
            view! {
                <div class="banner" role="alert">
                    <span>
                        "You are acting as an admin of "
                        <strong>{imp.tenant_name.clone()}</strong>
                        " until " {imp.expires_at.format("%H:%M UTC").to_string()}
                        ". Everything you do is recorded in their audit trail."
                    </span>
                    <button class="secondary" on:click=stop.clone() disabled=move || busy.get()>"Stop impersonating"</button>
                    {move || error.get().map(|e| view! { <span class="error">{e}</span> })}
                </div>
            }
        })
    }
}

#[component]
fn Nav() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let sign_out = move |_| {
        let navigate = navigate.clone();
        spawn_local(async move {
            let _ = api::act::<serde_json::Value>(HttpMethod::POST, "/api/auth/logout").await;
            session.me.set(None);
            session.tenant.set(None);
            session.notice.set(Some("You are signed out.".into()));
            navigate("/login", Default::default());
        });
    };
    view! {
        <nav class="nav" aria-label="Main">
            <div class="brand">
                <span class="logo" aria-hidden="true">"K"</span>
                <span class="name">"Konstruct"</span>
            </div>
            <TenantSwitcher />
            <ul>
                <Show when=move || session.is_platform_admin()>
                    <li><A href="/tenants">"Tenants"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::ConversationsRead)>
                    <li><A href="/inbox">"Inbox"<QueueBadge /></A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::AgentsRead)>
                    <li><A href="/agents">"AI employees"</A></li>
                    <li><A href="/chat">"Test chat"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::KnowledgeRead)>
                    <li><A href="/knowledge">"Knowledge"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::ToolsRead)>
                    <li><A href="/tools">"Tools"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::EndUsersRead)>
                    <li><A href="/customers">"Customers"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::ChannelsRead)>
                    <li><A href="/channels">"Channels"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::AuditRead)>
                    <li><A href="/audit">"Audit trail"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::UsageRead)>
                    <li><A href="/usage">"Usage and cost"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::JobsRead)>
                    <li><A href="/jobs">"Background jobs"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::MembersRead)>
                    <li><A href="/members">"Members"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::TenantRead)>
                    <li><A href="/settings">"Settings"</A></li>
                </Show>
            </ul>
            <div class="who">
                <span class="email">{move || session.me.get().map(|m| m.user.email).unwrap_or_default()}</span>
                <span class="role">{move || role_label(&session)}</span>
                // While impersonating, the session is not the admin's own to change.
                <Show when=move || session.me.get().is_some_and(|m| m.impersonation.is_none())>
                    <A href="/account">"Your account"</A>
                </Show>
                <button class="link" on:click=sign_out>"Sign out"</button>
            </div>
        </nav>
    }
}

/// Beside "Inbox": how many conversations wait for a person, kept by the live stream.
#[component]
fn QueueBadge() -> impl IntoView {
    let live = use_live();
    move || {
        live.counts.get().filter(|c| c.queue > 0).map(|c| {
            view! {
                <span class="nav-badge">
                    <span aria-hidden="true">{c.queue}</span>
                    <span class="sr-only">{format!(" ({} waiting for a person)", c.queue)}</span>
                </span>
            }
        })
    }
}

fn role_label(session: &Session) -> String {
    let Some(me) = session.me.get() else {
        return String::new();
    };
    if me.impersonation.is_some() {
        return "Impersonating (customer admin)".into();
    }
    if me.platform_admin {
        return "Platform admin".into();
    }
    let tenant = session.tenant.get().map(|(id, _)| id);
    me.memberships
        .iter()
        .find(|m| Some(m.tenant_id) == tenant)
        .map(|m| members::role_label(m.role).to_string())
        .unwrap_or_default()
}

/// The tenant in focus: members pick among their tenants; platform admins among all.
#[component]
fn TenantSwitcher() -> impl IntoView {
    let session = use_session();
    let all = LocalResource::new(move || async move {
        if session.is_platform_admin() {
            api::get::<Page<Tenant>>("/api/tenants?per_page=100")
                .await
                .map(|p| p.items.into_iter().map(|t| (t.id, t.name)).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    });
    let options = move || -> Vec<(TenantId, String)> {
        let Some(me) = session.me.get() else {
            return Vec::new();
        };
        if me.impersonation.is_some() {
            return session.tenant.get().into_iter().collect();
        }
        if me.platform_admin {
            return all.get().unwrap_or_default();
        }
        me.memberships
            .iter()
            .map(|m| (m.tenant_id, m.tenant_name.clone()))
            .collect()
    };
    let on_change = move |ev| {
        let value = event_target_value(&ev);
        let picked = options()
            .into_iter()
            .find(|(id, _)| id.to_string() == value);
        session.tenant.set(picked);
    };
    let visible = move || options().len() > 1 || session.is_platform_admin();
    view! {
        <Show when=visible>
            <label class="switcher">
                <span>"Tenant"</span>
                <select on:change=on_change prop:value=move || session.tenant.get().map(|t| t.0.to_string()).unwrap_or_default()>
                    <option value="">"— choose —"</option>
                    {move || {
                        let current = session.tenant.get().map(|t| t.0);
                        options().into_iter().map(|(id, name)| {
                            view! { <option value=id.to_string() selected=current == Some(id)>{name}</option> }
                        }).collect_view()
                    }}
                </select>
            </label>
        </Show>
    }
}

/// Previous / Next and where the list stands, for a paged list (`page` counts from 1).
#[component]
pub fn Pager(
    page: RwSignal<u32>,
    total: u64,
    per_page: u32,
    /// What one item is called, and several.
    one: &'static str,
    many: &'static str,
) -> impl IntoView {
    let pages = total.div_ceil(u64::from(per_page)).max(1);
    let last_page = move || u64::from(page.get()) >= pages;
    let noun = if total == 1 { one } else { many };
    view! {
        <div class="pager">
            <button class="secondary" disabled=move || page.get() <= 1 on:click=move |_| page.update(|p| *p -= 1)>"Previous"</button>
            <span>{move || format!("Page {} of {pages} · {total} {noun}", page.get())}</span>
            <button class="secondary" disabled=last_page on:click=move |_| page.update(|p| *p += 1)>"Next"</button>
        </div>
    }
}
