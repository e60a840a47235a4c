//! Tenants, for platform admins: search, pages, create, rename, suspend, delete (typing the
//! slug to confirm), open one, or act inside one (impersonation).

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use shared::auth::{ImpersonateRequest, SessionToken};
use shared::resources::{Page, Tenant, TenantCreate, TenantStatus, TenantUpdate};

use crate::api::{self, HttpMethod};
use crate::app::{Pager, use_session};

const PER_PAGE: u32 = 10;

#[component]
pub fn Tenants() -> impl IntoView {
    let session = use_session();
    let query = RwSignal::new(String::new());
    let page = RwSignal::new(1u32);
    let version = RwSignal::new(0u32);
    let flash = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let list = LocalResource::new(move || {
        let (q, p, _) = (query.get(), page.get(), version.get());
        async move {
            let path = format!(
                "/api/tenants?page={p}&per_page={PER_PAGE}&q={}",
                js_sys::encode_uri_component(q.trim())
            );
            api::get::<Page<Tenant>>(&path).await
        }
    });
    let refresh = move || version.update(|v| *v += 1);

    view! {
        <header class="page-head">
            <h1>"Tenants"</h1>
            <p class="muted">"Every customer account on the platform."</p>
        </header>
        {move || flash.get().map(|f| view! { <p class="flash" role="status">{f}</p> })}
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <CreateTenant on_created=Callback::new(move |t: Tenant| { flash.set(Some(format!("Created {}.", t.name))); refresh(); }) />
        <div class="toolbar">
            <label class="search">
                <span>"Search tenants"</span>
                <input type="search" placeholder="Name or slug"
                    prop:value=move || query.get()
                    on:input=move |ev| { query.set(event_target_value(&ev)); page.set(1); } />
            </label>
        </div>
        {move || match list.get() {
            None => view! { <p class="loading" role="status">"Loading tenants…"</p> }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(p)) if p.items.is_empty() => view! { <p class="empty">"No tenants match."</p> }.into_any(),
            Some(Ok(p)) => {
                let total = p.total;
                view! {
                    <table class="table">
                        <thead><tr><th>"Name"</th><th>"Slug"</th><th>"Status"</th><th>"Created"</th><th><span class="sr-only">"Actions"</span></th></tr></thead>
                        <tbody>
                            {p.items.into_iter().map(|t| view! {
                                <TenantRow tenant=t on_change=Callback::new(move |m: String| { flash.set(Some(m)); refresh(); }) on_error=Callback::new(move |m| error.set(Some(m))) />
                            }).collect_view()}
                        </tbody>
                    </table>
                    <Pager page=page total=total per_page=PER_PAGE one="tenant" many="tenants" />
                }.into_any()
            }
        }}
    }
}

#[component]
fn CreateTenant(on_created: Callback<Tenant>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let slug = RwSignal::new(String::new());
    let error = RwSignal::new(None::<crate::api::ApiError>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        let body = TenantCreate {
            name: name.get_untracked(),
            slug: Some(slug.get_untracked()).filter(|s| !s.trim().is_empty()),
        };
        spawn_local(async move {
            match api::send::<_, Tenant>(HttpMethod::POST, "/api/tenants", &body).await {
                Ok(t) => {
                    name.set(String::new());
                    slug.set(String::new());
                    error.set(None);
                    on_created.run(t);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let field = move |f: &'static str| move || error.get().and_then(|e| e.field(f));
    view! {
        <form class="card inline-form" on:submit=submit aria-label="New tenant">
            <h2>"New tenant"</h2>
            <label>
                <span>"Tenant name"</span>
                <input required prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                {move || field("name")().map(|m| view! { <span class="field-error">{m}</span> })}
            </label>
            <label>
                <span>"Slug (optional)"</span>
                <input prop:value=move || slug.get() on:input=move |ev| slug.set(event_target_value(&ev)) placeholder="acme" />
                {move || field("slug")().map(|m| view! { <span class="field-error">{m}</span> })}
            </label>
            <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Creating…" } else { "Create tenant" }}</button>
            {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
        </form>
    }
}

#[component]
fn TenantRow(
    tenant: Tenant,
    on_change: Callback<String>,
    on_error: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let confirming = RwSignal::new(false);
    let typed = RwSignal::new(String::new());
    let id = tenant.id;
    let name = tenant.name.clone();
    let slug = tenant.slug.clone();
    let suspended = tenant.status == TenantStatus::Suspended;
    let renaming = RwSignal::new(false);
    let new_name = RwSignal::new(tenant.name.clone());

    let rename = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = TenantUpdate {
            name: Some(new_name.get_untracked()),
            ..TenantUpdate::default()
        };
        spawn_local(async move {
            match api::send::<_, Tenant>(HttpMethod::PATCH, &format!("/api/tenants/{id}"), &body)
                .await
            {
                Ok(t) => {
                    renaming.set(false);
                    on_change.run(format!("Renamed to {}.", t.name));
                }
                Err(e) => on_error.run(
                    e.field("name")
                        .map_or_else(|| e.message(), |m| format!("Name {m}.")),
                ),
            }
        });
    };
    let toggle = {
        let name = name.clone();
        move |_| {
            let body = TenantUpdate {
                status: Some(if suspended {
                    TenantStatus::Active
                } else {
                    TenantStatus::Suspended
                }),
                ..TenantUpdate::default()
            };
            let name = name.clone();
            spawn_local(async move {
                match api::send::<_, Tenant>(
                    HttpMethod::PATCH,
                    &format!("/api/tenants/{id}"),
                    &body,
                )
                .await
                {
                    Ok(_) => on_change.run(format!(
                        "{name} is {}.",
                        if suspended {
                            "active again"
                        } else {
                            "suspended"
                        }
                    )),
                    Err(e) => on_error.run(e.message()),
                }
            });
        }
    };
    let delete = {
        let name = name.clone();
        move |_| {
            let confirm = typed.get_untracked();
            let name = name.clone();
            spawn_local(async move {
                let path = format!(
                    "/api/tenants/{id}?confirm={}",
                    js_sys::encode_uri_component(&confirm)
                );
                match api::act::<serde_json::Value>(HttpMethod::DELETE, &path).await {
                    Ok(_) => on_change.run(format!("{name} was deleted.")),
                    Err(e) => on_error.run(e.message()),
                }
            });
        }
    };
    let open = {
        let name = name.clone();
        let navigate = navigate.clone();
        move |_| {
            session.tenant.set(Some((id, name.clone())));
            navigate("/agents", Default::default());
        }
    };
    let impersonate = move |_| {
        let navigate = navigate.clone();
        spawn_local(async move {
            let body = ImpersonateRequest {
                tenant_id: id,
                minutes: Some(30),
            };
            match api::send::<_, SessionToken>(HttpMethod::POST, "/api/admin/impersonate", &body)
                .await
            {
                Ok(token) => {
                    session.adopt(token.me);
                    navigate("/agents", Default::default());
                }
                Err(e) => on_error.run(e.message()),
            }
        });
    };
    let slug_check = slug.clone();
    view! {
        <tr>
            <td>
                <Show when=move || renaming.get() fallback={
                    let name = name.clone();
                    move || view! {
                        <span>{name.clone()}</span>
                        " "
                        <button class="link" on:click=move |_| renaming.set(true) aria-label=format!("Rename {name}")>"Rename"</button>
                    }
                }>
                    <form class="rename" on:submit=rename aria-label="Rename tenant">
                        <label class="sr-only" for=format!("rename-{id}")>"New name"</label>
                        <input id=format!("rename-{id}") prop:value=move || new_name.get() on:input=move |ev| new_name.set(event_target_value(&ev)) />
                        <button type="submit">"Save"</button>
                        <button type="button" class="link" on:click=move |_| renaming.set(false)>"Cancel"</button>
                    </form>
                </Show>
            </td>
            <td><code>{slug.clone()}</code></td>
            <td><span class=if suspended { "badge warn" } else { "badge ok" }>{if suspended { "Suspended" } else { "Active" }}</span></td>
            <td class="date">{tenant.created_at.format("%Y-%m-%d").to_string()}</td>
            <td class="row-actions">
                <div class="actions">
                    <button class="secondary" on:click=open aria-label=format!("Open {name}")>"Open"</button>
                    <button class="secondary" on:click=impersonate aria-label=format!("Impersonate {name}")>"Impersonate"</button>
                    <button class="secondary" on:click=toggle>{if suspended { "Reactivate" } else { "Suspend" }}</button>
                    <button class="danger" on:click=move |_| confirming.set(true) aria-label=format!("Delete {name}")>"Delete"</button>
                </div>
                <Show when=move || confirming.get()>
                    <div class="confirm" role="group" aria-label="Confirm deletion">
                        <label>
                            <span>{format!("Type {} to delete it and all its data", slug.clone())}</span>
                            <input prop:value=move || typed.get() on:input=move |ev| typed.set(event_target_value(&ev)) />
                        </label>
                        <button class="danger" disabled={
                            let slug_check = slug_check.clone();
                            move || typed.get() != slug_check
                        } on:click=delete.clone()>"Delete for good"</button>
                        <button class="link" on:click=move |_| { confirming.set(false); typed.set(String::new()); }>"Cancel"</button>
                    </div>
                </Show>
            </td>
        </tr>
    }
}
