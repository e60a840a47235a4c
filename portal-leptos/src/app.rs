//! The root: the session (who is signed in, loaded from `/api/me`), the tenant being worked on,
//! the router and the shell around every page (navigation by role, tenant switcher, the
//! impersonation banner).

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::hooks::use_navigate;
use leptos_router::path;
use shared::TenantId;
use shared::auth::{Me, Permission};
use shared::resources::{Page, Tenant};

use crate::api::{self, ApiError, HttpMethod};
use crate::{agents, audit, chat, jobs, login, tenants};

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
}

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
        spawn_local(async move {
            match api::get::<Me>("/api/me").await {
                Ok(me) => session.adopt(me),
                Err(_) => {
                    session.me.set(None);
                    session.tenant.set(None);
                }
            }
            session.checked.set(true);
        });
    }

    pub fn adopt(&self, me: Me) {
        let current = self.tenant.get_untracked();
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

#[component]
pub fn App() -> impl IntoView {
    let session = Session {
        me: RwSignal::new(None),
        checked: RwSignal::new(false),
        tenant: RwSignal::new(None),
        notice: RwSignal::new(None),
        flash: RwSignal::new(None),
    };
    provide_context(session);
    session.reload();
    view! {
        <Router>
            <Routes fallback=|| view! { <Shell><p class="empty">"This page does not exist."</p></Shell> }>
                <Route path=path!("/login") view=login::Login />
                <Route path=path!("/") view=|| view! { <Shell><Home /></Shell> } />
                <Route path=path!("/tenants") view=|| view! { <Shell><tenants::Tenants /></Shell> } />
                <Route path=path!("/agents") view=|| view! { <Shell><agents::AgentList /></Shell> } />
                <Route path=path!("/agents/new") view=|| view! { <Shell><agents::AgentEditor /></Shell> } />
                <Route path=path!("/agents/:id") view=|| view! { <Shell><agents::AgentEditor /></Shell> } />
                <Route path=path!("/chat") view=|| view! { <Shell><chat::TestChat /></Shell> } />
                <Route path=path!("/audit") view=|| view! { <Shell><audit::AuditTrail /></Shell> } />
                <Route path=path!("/jobs") view=|| view! { <Shell><jobs::Jobs /></Shell> } />
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
    }
}

#[component]
fn ImpersonationBanner() -> impl IntoView {
    let session = use_session();
    let error = RwSignal::new(None::<String>);
    let stop = move |_| {
        spawn_local(async move {
            match api::act::<serde_json::Value>(HttpMethod::DELETE, "/api/admin/impersonate").await
            {
                Ok(_) => {
                    session.tenant.set(None);
                    session.reload();
                }
                Err(e) => error.set(Some(e.message())),
            }
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
                    <button class="secondary" on:click=stop>"Stop impersonating"</button>
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
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::AgentsRead)>
                    <li><A href="/agents">"AI employees"</A></li>
                    <li><A href="/chat">"Test chat"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::AuditRead)>
                    <li><A href="/audit">"Audit trail"</A></li>
                </Show>
                <Show when=move || session.tenant.get().is_some() && session.can(Permission::JobsRead)>
                    <li><A href="/jobs">"Background jobs"</A></li>
                </Show>
            </ul>
            <div class="who">
                <span class="email">{move || session.me.get().map(|m| m.user.email).unwrap_or_default()}</span>
                <span class="role">{move || role_label(&session)}</span>
                <button class="link" on:click=sign_out>"Sign out"</button>
            </div>
        </nav>
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
        .map(|m| match m.role {
            shared::auth::TenantRole::CustomerAdmin => "Customer admin".to_string(),
            shared::auth::TenantRole::CustomerOperator => {
                "Customer operator (read-only)".to_string()
            }
        })
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
