//! Inviting someone into the tenant by email, and the invitations not yet accepted: their role,
//! who sent them, when their link expires and how their mail is doing — asked again every two
//! seconds while a mail is on its way, so the admin sees it go out — with resend and revoke.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::auth::TenantRole;
use shared::people::{DeliveryState, Invitation, InvitationCreate, InvitationStatus, MailDelivery};
use shared::resources::Page;
use uuid::Uuid;

use super::{PER_PAGE, role_label};
use crate::api::{self, ApiError, HttpMethod};
use crate::app::{Pager, use_session};
use crate::customers::when;
use crate::passwords::form_error;

/// How often the list is asked again while a mail is queued or being retried.
const POLL_MS: u32 = 2_000;

#[component]
pub fn InviteForm(on_sent: Callback<()>) -> impl IntoView {
    let session = use_session();
    let email = RwSignal::new(String::new());
    // The least a newcomer needs; an admin picks "Customer admin" on purpose.
    let role = RwSignal::new(TenantRole::CustomerOperator);
    let error = RwSignal::new(None::<ApiError>);
    let sent = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        sent.set(None);
        let address = email.get_untracked().trim().to_string();
        if address.is_empty() {
            error.set(Some(ApiError::local_field("email", "is required")));
            return;
        }
        busy.set(true);
        error.set(None);
        let body = InvitationCreate {
            email: address,
            role: role.get_untracked(),
        };
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/invitations");
            match api::send::<_, Invitation>(HttpMethod::POST, &path, &body).await {
                Ok(i) => {
                    email.set(String::new());
                    sent.set(Some(format!("Invitation sent to {}.", i.email)));
                    on_sent.run(());
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
    let email_message = message("email");
    let role_message = message("role");
    view! {
        <form class="card inline-form invite" on:submit=submit novalidate aria-label="Invite someone">
            <h2>"Invite someone"</h2>
            <div class="field">
                <label for="invite-email">"Email"</label>
                <input id="invite-email" type="email" autocomplete="off" spellcheck="false"
                    placeholder="colleague@example.com"
                    prop:value=move || email.get()
                    on:input=move |ev| email.set(event_target_value(&ev))
                    aria-describedby="invite-email-error"
                    aria-invalid=move || email_message().is_some().to_string() />
                <span id="invite-email-error" class="field-error" role="alert">{email_message}</span>
            </div>
            <div class="field">
                <label for="invite-role">"Role"</label>
                <select id="invite-role"
                    prop:value=move || role.get().as_str()
                    on:change=move |ev| if let Some(r) = TenantRole::parse(&event_target_value(&ev)) { role.set(r) }
                    aria-describedby="invite-role-error"
                    aria-invalid=move || role_message().is_some().to_string()>
                    {TenantRole::ALL.iter().copied().map(|r| view! {
                        <option value=r.as_str() selected=move || role.get() == r>{role_label(r)}</option>
                    }).collect_view()}
                </select>
                <span id="invite-role-error" class="field-error" role="alert">{role_message}</span>
            </div>
            <button type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Sending…" } else { "Send invitation" }}
            </button>
            {form_error(error)}
            {move || sent.get().map(|m| view! { <p class="flash" role="status">{m}</p> })}
        </form>
    }
}

/// How an invitation's mail is doing: a badge's class and word, and what follows it.
fn delivery_pill(d: Option<&MailDelivery>) -> (&'static str, &'static str, Option<String>) {
    let Some(d) = d else {
        return ("badge muted-badge", "Not queued", None);
    };
    match (d.state, &d.last_error) {
        (DeliveryState::Queued, _) => ("badge info", "Queued", None),
        (DeliveryState::Retrying, None) => ("badge info", "Sending…", None),
        (DeliveryState::Retrying, Some(e)) => ("badge warn", "Retrying:", Some(e.clone())),
        (DeliveryState::Sent, _) => ("badge ok", "Sent", d.sent_at.map(when)),
        (DeliveryState::Failed, None) => ("badge danger", "Failed", None),
        (DeliveryState::Failed, Some(e)) => ("badge danger", "Failed:", Some(e.clone())),
    }
}

/// Whether the mail is still on its way (the list is then asked again soon).
fn on_its_way(i: &Invitation) -> bool {
    i.delivery
        .as_ref()
        .is_some_and(|d| matches!(d.state, DeliveryState::Queued | DeliveryState::Retrying))
}

/// What the list shows apart from its rows: kept apart so that a poll which only moves one
/// mail along re-renders that row, not the table (an open confirmation stays).
#[derive(Clone, PartialEq)]
enum Listing {
    Loading,
    Failed(ApiError),
    Empty,
    Rows { total: u64 },
}

/// Row state that outlives a re-render of the rows by a poll.
#[derive(Clone, Copy)]
struct RowUi {
    confirming: RwSignal<Option<Uuid>>,
    refused: RwSignal<Option<(Uuid, String)>>,
}

#[component]
pub fn Invitations(write: Signal<bool>, version: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    let page = RwSignal::new(1u32);
    let list = LocalResource::new(move || {
        let (tenant, p, _) = (session.tenant.get(), page.get(), version.get());
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            api::get::<Page<Invitation>>(&format!(
                "/api/tenants/{tenant}/invitations?page={p}&per_page={PER_PAGE}"
            ))
            .await
            .map(Some)
        }
    });
    let ui = RowUi {
        confirming: RwSignal::new(None),
        refused: RwSignal::new(None),
    };
    Effect::new(move |_| {
        session.tenant.track();
        if page.get_untracked() != 1 {
            page.set(1);
        }
        ui.confirming.set(None);
        ui.refused.set(None);
    });
    // While a mail is on its way, the list is asked again in a while; each answer arms the next
    // ask and only the latest answer's timer counts, so one poll runs, and it stops with the
    // first answer in which no mail is on its way.
    let poll = StoredValue::new(0u32);
    Effect::new(move |_| {
        let active = matches!(list.get(), Some(Ok(Some(p))) if p.items.iter().any(on_its_way));
        poll.update_value(|g| *g = g.wrapping_add(1));
        if !active {
            return;
        }
        let mine = poll.get_value();
        spawn_local(async move {
            TimeoutFuture::new(POLL_MS).await;
            if poll.try_get_value() == Some(mine) {
                let _ = version.try_update(|v| *v += 1);
            }
        });
    });
    // The last invitation of a later page revoked: the page before it.
    Effect::new(move |_| {
        if let Some(Ok(Some(p))) = list.get()
            && p.items.is_empty()
            && p.page > 1
        {
            page.set(p.page - 1);
        }
    });
    let listing = Memo::new(move |_| match list.get() {
        None | Some(Ok(None)) => Listing::Loading,
        Some(Err(e)) => Listing::Failed(e),
        Some(Ok(Some(p))) if p.items.is_empty() => Listing::Empty,
        Some(Ok(Some(p))) => Listing::Rows { total: p.total },
    });
    let rows = Memo::new(move |_| match list.get() {
        Some(Ok(Some(p))) => p.items,
        _ => Vec::new(),
    });
    let on_change = Callback::new(move |m: String| {
        ui.refused.set(None);
        session.show_toast(m);
        version.update(|v| *v += 1);
    });

    view! {
        <section class="section" aria-labelledby="members-invitations">
            <h2 id="members-invitations">"Pending invitations"</h2>
            {move || match listing.get() {
                Listing::Loading => view! { <p class="loading" role="status">"Loading invitations…"</p> }.into_any(),
                Listing::Failed(e) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Listing::Empty => view! { <p class="empty">"No pending invitations."</p> }.into_any(),
                Listing::Rows { total } => view! {
                    <div class="table-wrap">
                        <table class="table stack invitations">
                            <caption class="sr-only">"Pending invitations"</caption>
                            <thead><tr>
                                <th>"Email"</th><th>"Role"</th><th>"Invited by"</th><th>"Expires"</th><th>"Mail"</th><th class="num">"Sends"</th>
                                {move || write.get().then(|| view! { <th><span class="sr-only">"Actions"</span></th> })}
                            </tr></thead>
                            <tbody>
                                <For each=move || rows.get() key=|i| serde_json::to_string(i).unwrap_or_else(|_| i.id.to_string())
                                    children=move |invitation| view! {
                                        <InvitationRow invitation=invitation write=write ui=ui on_change=on_change />
                                    } />
                            </tbody>
                        </table>
                    </div>
                    <Show when=move || { total > u64::from(PER_PAGE) }>
                        <Pager page=page total=total per_page=PER_PAGE one="invitation" many="invitations" />
                    </Show>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn InvitationRow(
    invitation: Invitation,
    write: Signal<bool>,
    ui: RowUi,
    on_change: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let id = invitation.id;
    let email = StoredValue::new(invitation.email.clone());
    let busy = RwSignal::new(false);
    let expired = invitation.status == InvitationStatus::Expired;
    let (class, word, detail) = delivery_pill(invitation.delivery.as_ref());
    let refused = move || {
        ui.refused
            .get()
            .filter(|(who, _)| *who == id)
            .map(|(_, m)| m)
    };
    // Resend and revoke: `method` on `path`, then `done` in a toast; a refusal under the row.
    let act = move |method: HttpMethod, path: String, done: String| {
        busy.set(true);
        spawn_local(async move {
            match api::act::<serde_json::Value>(method, &path).await {
                Ok(_) => {
                    ui.confirming.set(None);
                    let _ = on_change.try_run(done);
                }
                Err(e) => {
                    session.handle(&e);
                    ui.confirming.set(None);
                    ui.refused.set(Some((id, e.message())));
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let resend = move |_| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        act(
            HttpMethod::POST,
            format!("/api/tenants/{tenant}/invitations/{id}/resend"),
            format!(
                "Invitation sent to {} again. The earlier link no longer works.",
                email.get_value()
            ),
        );
    };
    let revoke = move |_| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        act(
            HttpMethod::DELETE,
            format!("/api/tenants/{tenant}/invitations/{id}"),
            format!(
                "Revoked the invitation to {}. Its link no longer works.",
                email.get_value()
            ),
        );
    };
    let confirming = move || ui.confirming.get() == Some(id);

    view! {
        <tr>
            <td data-label="Email" class="strong">{invitation.email.clone()}</td>
            <td data-label="Role">{role_label(invitation.role)}</td>
            <td data-label="Invited by">{invitation.invited_by.clone().unwrap_or_else(|| "—".into())}</td>
            <td data-label="Expires" class="date">{if expired {
                view! { <span class="badge warn">"Expired"</span> }.into_any()
            } else {
                view! { <span>{when(invitation.expires_at)}</span> }.into_any()
            }}</td>
            <td data-label="Mail"><div class="cell delivery">
                <span class=class>{word}</span>
                {detail.map(|d| view! { <span class="hint">{d}</span> })}
            </div></td>
            <td data-label="Sends" class="num">{invitation.sends}</td>
            <Show when=move || write.get()>
                <td class="row-actions">
                    <div class="actions">
                        <button class="secondary" disabled=move || busy.get() on:click=resend
                            aria-label=format!("Resend to {}", email.get_value())>"Resend"</button>
                        <button class="danger" disabled=move || busy.get()
                            on:click=move |_| { ui.refused.set(None); ui.confirming.set(Some(id)); }
                            aria-label=format!("Revoke invitation to {}", email.get_value())>"Revoke"</button>
                    </div>
                    <Show when=confirming>
                        <div class="confirm" role="group" aria-label="Confirm revoking">
                            <p>{move || format!("Revoke the invitation to {}? Its link stops working; you can invite them again later.", email.get_value())}</p>
                            <button class="danger" disabled=move || busy.get() on:click=revoke>"Yes, revoke"</button>
                            <button class="link" on:click=move |_| ui.confirming.set(None)>"Cancel"</button>
                        </div>
                    </Show>
                </td>
            </Show>
        </tr>
        {move || refused().map(|m| view! {
            <tr class="detail-row">
                <td colspan="7" class="detail"><p class="error" role="alert">{m}</p></td>
            </tr>
        })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(state: DeliveryState, last_error: Option<&str>) -> MailDelivery {
        MailDelivery {
            state,
            attempts: 1,
            last_error: last_error.map(str::to_string),
            sent_at: (state == DeliveryState::Sent).then_some(chrono::DateTime::UNIX_EPOCH),
            next_attempt_at: None,
        }
    }

    #[test]
    fn a_mail_says_how_it_is_doing() {
        let pill = |state, e| {
            let (_, word, detail) = delivery_pill(Some(&delivery(state, e)));
            (word, detail)
        };
        assert_eq!(pill(DeliveryState::Queued, None), ("Queued", None));
        assert_eq!(pill(DeliveryState::Retrying, None), ("Sending…", None));
        assert_eq!(
            pill(
                DeliveryState::Retrying,
                Some("The mail server did not answer.")
            ),
            (
                "Retrying:",
                Some("The mail server did not answer.".to_string())
            )
        );
        assert_eq!(
            pill(DeliveryState::Sent, None),
            ("Sent", Some("1970-01-01 00:00 UTC".to_string()))
        );
        assert_eq!(
            pill(DeliveryState::Failed, Some("The address was refused.")),
            ("Failed:", Some("The address was refused.".to_string()))
        );
        assert_eq!(pill(DeliveryState::Failed, None), ("Failed", None));
        assert_eq!(delivery_pill(None).1, "Not queued");
    }
}
