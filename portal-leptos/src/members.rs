//! Members: who works in the tenant in focus and with which role, and the invitations not yet
//! accepted (with how their mail is doing, followed live while one is on its way). Roles with
//! `members_write` (customer admins) invite, change roles and remove members, resend and revoke
//! invitations; the others read. The tenant's last customer admin can be neither demoted nor
//! removed: the server refuses (409), and the page says so before anyone tries. This file holds
//! the page and the member list; `invitations` holds the invite form and the pending invitations.

mod invitations;

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::auth::{Permission, TenantRole};
use shared::resources::{Member, MemberUpdate, Page};
use uuid::Uuid;

use crate::api::{self, ApiError, HttpMethod};
use crate::app::{Pager, use_session};
use crate::customers::when;

/// Members (and invitations) per page.
const PER_PAGE: u32 = 20;

/// A role as the portal names it.
pub fn role_label(role: TenantRole) -> &'static str {
    match role {
        TenantRole::CustomerAdmin => "Customer admin",
        TenantRole::CustomerOperator => "Customer operator (read-only)",
    }
}

/// A role inside a sentence ("… is now a customer operator.").
pub fn role_words(role: TenantRole) -> &'static str {
    match role {
        TenantRole::CustomerAdmin => "customer admin",
        TenantRole::CustomerOperator => "customer operator",
    }
}

/// Why the last admin's controls are disabled.
const LAST_ADMIN: &str = "The last customer admin cannot be removed or demoted.";

#[component]
pub fn Members() -> impl IntoView {
    let session = use_session();
    let write = Signal::derive(move || session.can(Permission::MembersWrite));
    // Bumped when an invitation was sent, so the pending list shows it.
    let invitations = RwSignal::new(0u32);
    view! {
        <header class="page-head">
            <h1>"Members"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("The people who work in {} on Konstruct, and those invited to.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=move || session.tenant.get().is_some() && !write.get()>
                <p class="readonly-note" role="note">"Read-only: your role can see the members but not invite, change or remove anyone. A customer admin can."</p>
            </Show>
        </header>
        <Show when=move || session.tenant.get().is_some() fallback=|| view! { <p class="empty">"Pick a tenant in the menu to see its members."</p> }>
            <Show when=move || write.get()>
                <invitations::InviteForm on_sent=Callback::new(move |()| invitations.update(|v| *v += 1)) />
            </Show>
            <MemberList write=write />
            <invitations::Invitations write=write version=invitations />
        </Show>
    }
}

/// What the list shows apart from its rows (kept apart so a change re-renders only its row).
#[derive(Clone, PartialEq)]
enum Listing {
    Loading,
    Failed(ApiError),
    Empty,
    Rows { total: u64 },
}

/// Row state that outlives a re-render of the rows: the removal being confirmed, and the
/// server's refusal of a change, by member.
#[derive(Clone, Copy)]
struct RowUi {
    confirming: RwSignal<Option<Uuid>>,
    refused: RwSignal<Option<(Uuid, String)>>,
}

/// The member who is the tenant's only customer admin, when the page lists every member. (With
/// more members than one page holds, the admins on other pages are unknown here: the server's
/// 409 then says it.)
fn last_admin(page: &Page<Member>) -> Option<Uuid> {
    if (page.items.len() as u64) < page.total {
        return None;
    }
    let mut admins = page
        .items
        .iter()
        .filter(|m| m.role == TenantRole::CustomerAdmin);
    match (admins.next(), admins.next()) {
        (Some(only), None) => Some(only.user_id),
        _ => None,
    }
}

#[component]
fn MemberList(write: Signal<bool>) -> impl IntoView {
    let session = use_session();
    let page = RwSignal::new(1u32);
    let version = RwSignal::new(0u32);
    let list = LocalResource::new(move || {
        let (tenant, p, _) = (session.tenant.get(), page.get(), version.get());
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            api::get::<Page<Member>>(&format!(
                "/api/tenants/{tenant}/members?page={p}&per_page={PER_PAGE}"
            ))
            .await
            .map(Some)
        }
    });
    let ui = RowUi {
        confirming: RwSignal::new(None),
        refused: RwSignal::new(None),
    };
    // Another tenant: its first page, and nothing said about the last one's members.
    Effect::new(move |_| {
        session.tenant.track();
        if page.get_untracked() != 1 {
            page.set(1);
        }
        ui.confirming.set(None);
        ui.refused.set(None);
    });
    let listing = Memo::new(move |_| match list.get() {
        None | Some(Ok(None)) => Listing::Loading,
        Some(Err(e)) => Listing::Failed(e),
        Some(Ok(Some(p))) if p.items.is_empty() => Listing::Empty,
        Some(Ok(Some(p))) => Listing::Rows { total: p.total },
    });
    let rows = Memo::new(move |_| match list.get() {
        Some(Ok(Some(p))) => {
            let last = last_admin(&p);
            p.items
                .into_iter()
                .map(|m| {
                    let is_last = Some(m.user_id) == last;
                    (m, is_last)
                })
                .collect()
        }
        _ => Vec::new(),
    });
    let on_change = Callback::new(move |m: String| {
        ui.refused.set(None);
        session.show_toast(m);
        version.update(|v| *v += 1);
    });

    view! {
        <section class="section" aria-labelledby="members-list">
            <h2 id="members-list">"Current members"</h2>
            {move || match listing.get() {
                Listing::Loading => view! { <p class="loading" role="status">"Loading members…"</p> }.into_any(),
                Listing::Failed(e) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Listing::Empty => view! { <p class="empty">"No members yet. Invite someone to work in this tenant."</p> }.into_any(),
                Listing::Rows { total } => view! {
                    <div class="table-wrap">
                        <table class="table stack members">
                            <caption class="sr-only">"Members"</caption>
                            <thead><tr>
                                <th>"Name"</th><th>"Email"</th><th>"Role"</th><th>"Joined"</th><th>"Last sign-in"</th>
                                {move || write.get().then(|| view! { <th><span class="sr-only">"Actions"</span></th> })}
                            </tr></thead>
                            <tbody>
                                <For each=move || rows.get() key=|(m, last)| (serde_json::to_string(m).unwrap_or_default(), *last)
                                    children=move |(member, last)| view! {
                                        <MemberRow member=member last_admin=last write=write ui=ui on_change=on_change />
                                    } />
                            </tbody>
                        </table>
                    </div>
                    <Show when=move || { total > u64::from(PER_PAGE) }>
                        <Pager page=page total=total per_page=PER_PAGE one="member" many="members" />
                    </Show>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn MemberRow(
    member: Member,
    /// The tenant's only customer admin: neither demoted nor removed.
    last_admin: bool,
    write: Signal<bool>,
    ui: RowUi,
    on_change: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let id = member.user_id;
    let email = StoredValue::new(member.email.clone());
    let name = StoredValue::new(if member.display_name.trim().is_empty() {
        member.email.clone()
    } else {
        member.display_name.clone()
    });
    let saved = member.role;
    // What the select shows: the choice while it is being saved, the saved role after a refusal.
    let role = RwSignal::new(saved);
    let busy = RwSignal::new(false);
    let is_me = session.me.get_untracked().map(|m| m.user.id) == Some(id);
    // The id of the note that says why the last admin's controls are disabled.
    let note = StoredValue::new(format!("member-{id}-note"));
    let refused = move || {
        ui.refused
            .get()
            .filter(|(who, _)| *who == id)
            .map(|(_, m)| m)
    };
    let refuse = move |e: ApiError| {
        session.handle(&e);
        ui.refused.set(Some((id, e.message())));
    };

    let change_role = move |to: TenantRole| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        if to == saved {
            return;
        }
        role.set(to);
        busy.set(true);
        let email = email.get_value();
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/members/{id}");
            match api::send::<_, Member>(HttpMethod::PATCH, &path, &MemberUpdate { role: to }).await
            {
                Ok(m) => {
                    let _ = on_change.try_run(format!("{email} is now a {}.", role_words(m.role)));
                    // One's own role changed: what this session may do changed with it.
                    if is_me {
                        session.reload();
                    }
                }
                Err(e) => {
                    let _ = role.try_set(saved);
                    refuse(e);
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let remove = move || {
        let Some((tenant, tenant_name)) = session.tenant.get_untracked() else {
            return;
        };
        busy.set(true);
        let email = email.get_value();
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/members/{id}");
            match api::act_empty(HttpMethod::DELETE, &path).await {
                Ok(()) => {
                    ui.confirming.set(None);
                    let _ = on_change.try_run(format!("Removed {email} from {tenant_name}."));
                    if is_me {
                        session.reload();
                    }
                }
                Err(e) => {
                    ui.confirming.set(None);
                    refuse(e);
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let confirming = move || ui.confirming.get() == Some(id);
    let described = move || last_admin.then(|| note.get_value());

    view! {
        <tr>
            <td data-label="Name"><div class="cell">
                <span class="strong">{name.get_value()}</span>
                {is_me.then(|| view! { <span class="badge muted-badge">"You"</span> })}
            </div></td>
            <td data-label="Email">{member.email.clone()}</td>
            <td data-label="Role">
                {move || if write.get() {
                    view! {
                        <select aria-label=format!("Role of {}", email.get_value())
                            aria-describedby=described
                            disabled=move || last_admin || busy.get()
                            prop:value=move || role.get().as_str()
                            on:change=move |ev| {
                                if let Some(to) = TenantRole::parse(&event_target_value(&ev)) {
                                    change_role(to);
                                }
                            }>
                            {TenantRole::ALL.iter().copied().map(|r| view! {
                                <option value=r.as_str() selected=move || role.get() == r>{role_label(r)}</option>
                            }).collect_view()}
                        </select>
                    }.into_any()
                } else {
                    view! { <span>{role_label(saved)}</span> }.into_any()
                }}
            </td>
            <td data-label="Joined" class="date">{when(member.joined_at)}</td>
            <td data-label="Last sign-in" class="date">{member.last_sign_in_at.map(when).unwrap_or_else(|| "Never".into())}</td>
            <Show when=move || write.get()>
                <td class="row-actions">
                    <div class="actions">
                        <button class="danger" aria-label=format!("Remove {}", email.get_value())
                            aria-describedby=described
                            disabled=move || last_admin || busy.get()
                            on:click=move |_| { ui.refused.set(None); ui.confirming.set(Some(id)); }>"Remove"</button>
                    </div>
                    {last_admin.then(|| view! { <p id=note.get_value() class="hint">{LAST_ADMIN}</p> })}
                    <Show when=confirming>
                        <div class="confirm" role="group" aria-label="Confirm removal">
                            <p>{move || format!(
                                "Remove {} ({}) from {}? They lose access at once; their account stays.",
                                name.get_value(), email.get_value(),
                                session.tenant.get().map(|t| t.1).unwrap_or_default()
                            )}</p>
                            <button class="danger" disabled=move || busy.get() on:click=move |_| remove()>"Yes, remove"</button>
                            <button class="link" on:click=move |_| ui.confirming.set(None)>"Cancel"</button>
                        </div>
                    </Show>
                </td>
            </Show>
        </tr>
        {move || refused().map(|m| view! {
            <tr class="detail-row">
                <td colspan="6" class="detail"><p class="error" role="alert">{m}</p></td>
            </tr>
        })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(n: u128, role: TenantRole) -> Member {
        Member {
            user_id: Uuid::from_u128(n),
            email: "someone@example.com".into(),
            display_name: "Someone".into(),
            role,
            joined_at: chrono::DateTime::UNIX_EPOCH,
            last_sign_in_at: None,
        }
    }

    fn page(items: Vec<Member>, total: u64) -> Page<Member> {
        Page {
            items,
            page: 1,
            per_page: PER_PAGE,
            total,
        }
    }

    #[test]
    fn the_only_admin_of_a_complete_list_is_the_last() {
        let admin = member(1, TenantRole::CustomerAdmin);
        let id = admin.user_id;
        let items = vec![admin, member(2, TenantRole::CustomerOperator)];
        assert_eq!(last_admin(&page(items.clone(), 2)), Some(id));
        // Other pages may hold more admins: unknown, so the server's 409 says it.
        assert_eq!(last_admin(&page(items, 30)), None);
        let two = vec![
            member(1, TenantRole::CustomerAdmin),
            member(2, TenantRole::CustomerAdmin),
        ];
        assert_eq!(last_admin(&page(two, 2)), None);
        assert_eq!(
            last_admin(&page(vec![member(1, TenantRole::CustomerOperator)], 1)),
            None
        );
    }
}
