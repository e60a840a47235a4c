//! Accepting an invitation (`/invitation#token=…`), without the shell. The token is read from the
//! fragment and sent only in the bodies of the calls that use it; it stays in the address bar, so
//! a reload works. A newcomer chooses a name and a password and is signed in; someone who already
//! has an account accepts while signed in with it — after signing in (and coming back here), or
//! signing out of another account first. Either way the portal opens in the tenant just joined.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use shared::TenantId;
use shared::auth::{Me, Membership, SessionToken};
use shared::people::{INVITATION_PATH, InvitationAccept, InvitationPreview, LinkToken};

use crate::api::{self, ApiError, HttpMethod};
use crate::app::{Session, use_session};
use crate::customers::when;
use crate::link::{sign_in_path, use_link_token};
use crate::login::Frame;
use crate::members::role_words;
use crate::passwords::{NewPasswordFields, check_new_password, form_error};

#[component]
pub fn Invitation() -> impl IntoView {
    let token = use_link_token();
    let preview = LocalResource::new(move || {
        let token = token.get();
        async move {
            let token = token?;
            Some(
                api::send::<_, InvitationPreview>(
                    HttpMethod::POST,
                    "/api/invitations/lookup",
                    &LinkToken {
                        token: token.clone(),
                    },
                )
                .await
                .map(|p| (token, p)),
            )
        }
    });
    // The link stopped working while the page was open (used, withdrawn or expired meanwhile).
    let dead = RwSignal::new(None::<ApiError>);
    view! {
        <Frame>
            {move || {
                if let Some(e) = dead.get() {
                    return problem(e.message());
                }
                match preview.get() {
                    None => view! { <p class="loading" role="status">"Looking up your invitation…"</p> }.into_any(),
                    Some(None) => problem("This invitation link is incomplete. Open the whole link from the invitation mail.".into()),
                    Some(Some(Err(e))) => problem(e.message()),
                    Some(Some(Ok((token, p)))) => view! { <Join preview=p token=token dead=dead /> }.into_any(),
                }
            }}
        </Frame>
    }
}

/// A link that does not work: why, and the way to the sign-in page.
fn problem(message: String) -> AnyView {
    view! {
        <div class="card link-problem">
            <p class="error" role="alert">{message}</p>
            <a class="button secondary" href="/login">"Go to sign-in"</a>
        </div>
    }
    .into_any()
}

/// The tenant an invitation added to `memberships`: the one not among `before`, else the one
/// named `name` (the preview names the tenant, not its id).
fn joined(
    memberships: &[Membership],
    before: &[TenantId],
    name: &str,
) -> Option<(TenantId, String)> {
    memberships
        .iter()
        .find(|m| !before.contains(&m.tenant_id))
        .or_else(|| memberships.iter().find(|m| m.tenant_name == name))
        .map(|m| (m.tenant_id, m.tenant_name.clone()))
}

/// Signs in as `me`, who just joined `preview`'s tenant, with that tenant in focus.
fn enter_joined(session: Session, me: Me, before: &[TenantId], preview: &InvitationPreview) {
    let focus = joined(&me.memberships, before, &preview.tenant_name);
    session.enter(me);
    if focus.is_some() {
        session.tenant.set(focus);
    }
    session.show_toast(format!(
        "Welcome to {}. You work here as a {}.",
        preview.tenant_name,
        role_words(preview.role)
    ));
}

#[component]
fn Join(
    preview: InvitationPreview,
    token: String,
    dead: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let who = match &preview.invited_by {
        Some(name) => format!("{name} invited you"),
        None => "You are invited".into(),
    };
    let facts = format!(
        "{who} to work in {} as a {}, with the address {}.",
        preview.tenant_name,
        role_words(preview.role),
        preview.email
    );
    let expires = format!(
        "The invitation is valid until {}.",
        when(preview.expires_at)
    );
    let heading = format!("Join {}", preview.tenant_name);
    let exists = preview.account_exists;
    let preview = StoredValue::new(preview);
    let token = StoredValue::new(token);
    view! {
        <section class="card invitation" aria-labelledby="invitation-heading">
            <h2 id="invitation-heading">{heading}</h2>
            <p>{facts}</p>
            <p class="muted">{expires}</p>
            {if exists {
                view! { <ExistingAccount preview=preview token=token dead=dead /> }.into_any()
            } else {
                view! { <NewAccount preview=preview token=token dead=dead /> }.into_any()
            }}
        </section>
    }
}

/// No account with the invited address yet: choose a name and a password, and join.
#[component]
fn NewAccount(
    preview: StoredValue<InvitationPreview>,
    token: StoredValue<String>,
    dead: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let (display_name, new) = (
            name.get_untracked().trim().to_string(),
            password.get_untracked(),
        );
        let problem = if display_name.is_empty() {
            Some(ApiError::local_field("display_name", "is required"))
        } else {
            check_new_password("password", &new, &confirm.get_untracked())
        };
        if let Some(e) = problem {
            error.set(Some(e));
            return;
        }
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        spawn_local(async move {
            let body = InvitationAccept {
                token: token.get_value(),
                display_name,
                password: new,
            };
            match api::send::<_, SessionToken>(HttpMethod::POST, "/api/invitations/accept", &body)
                .await
            {
                Ok(signed_in) => {
                    preview.with_value(|p| enter_joined(session, signed_in.me, &[], p));
                    navigate("/", Default::default());
                }
                Err(e) if e.status == 404 => dead.set(Some(e)),
                Err(e) => {
                    error.set(Some(e));
                    busy.set(false);
                }
            }
        });
    };
    let name_message = move || error.get().and_then(|e| e.field("display_name"));
    let (email, tenant) = preview.with_value(|p| (p.email.clone(), p.tenant_name.clone()));
    view! {
        <form on:submit=submit novalidate aria-label="Create your account">
            <h3>"Create your account"</h3>
            {move || session.me.get().map(|m| view! {
                <p class="muted">{format!("You are signed in as {}. Joining signs you in as {} instead.", m.user.email, email)}</p>
            })}
            <div class="field">
                <label for="invitation-name">"Name"</label>
                <input id="invitation-name" autocomplete="name"
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                    aria-describedby="invitation-name-hint invitation-name-error"
                    aria-invalid=move || name_message().is_some().to_string() />
                <span id="invitation-name-hint" class="hint">"How your colleagues see you in Konstruct."</span>
                <span id="invitation-name-error" class="field-error" role="alert">{name_message}</span>
            </div>
            <NewPasswordFields id="invitation" label="Password" confirm_label="Confirm password"
                field="password" password=password confirm=confirm error=error />
            {form_error(error)}
            <button type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Joining…".to_string() } else { format!("Join {tenant}") }}
            </button>
        </form>
    }
}

/// The invited address has an account: accept while signed in with it.
#[component]
fn ExistingAccount(
    preview: StoredValue<InvitationPreview>,
    token: StoredValue<String>,
    dead: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let email = preview.with_value(|p| p.email.clone());
    // Where the sign-in page brings the invitee back to.
    let back = StoredValue::new(sign_in_path(
        &email,
        &format!("{INVITATION_PATH}#token={}", token.get_value()),
    ));
    let join = {
        let navigate = navigate.clone();
        move |_| {
            if busy.get_untracked() {
                return;
            }
            let before: Vec<TenantId> = session
                .me
                .get_untracked()
                .map(|m| m.memberships.iter().map(|t| t.tenant_id).collect())
                .unwrap_or_default();
            busy.set(true);
            error.set(None);
            let navigate = navigate.clone();
            spawn_local(async move {
                let body = LinkToken {
                    token: token.get_value(),
                };
                match api::send::<_, Me>(HttpMethod::POST, "/api/invitations/join", &body).await {
                    Ok(me) => {
                        preview.with_value(|p| enter_joined(session, me, &before, p));
                        navigate("/", Default::default());
                    }
                    Err(e) if e.status == 404 => dead.set(Some(e)),
                    Err(e) => {
                        session.handle(&e);
                        // The server's own words: "This invitation is for …", not a generic
                        // "no permission".
                        error.set(Some(e.body.message));
                        busy.set(false);
                    }
                }
            });
        }
    };
    let switch = move |_| {
        let navigate = navigate.clone();
        busy.set(true);
        spawn_local(async move {
            let _ = api::act::<serde_json::Value>(HttpMethod::POST, "/api/auth/logout").await;
            session.me.set(None);
            session.tenant.set(None);
            navigate(&back.get_value(), Default::default());
        });
    };
    let join = StoredValue::new(join);
    let switch = StoredValue::new(switch);
    view! {
        {move || {
            let email = email.clone();
            match (session.checked.get(), session.me.get()) {
                (false, _) => view! { <p class="loading" role="status">"Checking who is signed in…"</p> }.into_any(),
                (true, None) => view! {
                    <p>{format!("{email} already has a Konstruct account. Sign in with it to accept; you come back here afterwards.")}</p>
                    <a class="button" href=back.get_value()>"Sign in to accept"</a>
                }.into_any(),
                (true, Some(me)) if me.user.email.trim().eq_ignore_ascii_case(email.trim()) => view! {
                    <p>{format!("You are signed in as {email}.")}</p>
                    {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                    <button on:click=move |ev| join.with_value(|j| j(ev)) disabled=move || busy.get()>
                        {move || if busy.get() { "Joining…" } else { "Accept and join" }}
                    </button>
                }.into_any(),
                (true, Some(me)) => view! {
                    <p>{format!("You are signed in as {}, but this invitation is for {email}.", me.user.email)}</p>
                    <button class="secondary" on:click=move |ev| switch.with_value(|s| s(ev)) disabled=move || busy.get()>
                        {format!("Sign out and sign in as {email}")}
                    </button>
                }.into_any(),
            }
        }}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::auth::TenantRole;

    fn membership(n: u128, name: &str) -> Membership {
        Membership {
            tenant_id: TenantId::from_uuid(uuid::Uuid::from_u128(n)),
            tenant_slug: name.to_lowercase(),
            tenant_name: name.into(),
            role: TenantRole::CustomerOperator,
        }
    }

    #[test]
    fn the_tenant_joined_is_the_new_membership() {
        let old = membership(1, "Old");
        let new = membership(2, "Acme");
        let all = [old.clone(), new.clone()];
        assert_eq!(
            joined(&all, &[old.tenant_id], "Acme"),
            Some((new.tenant_id, "Acme".into()))
        );
        // A new account has only the one.
        assert_eq!(
            joined(std::slice::from_ref(&new), &[], "Acme"),
            Some((new.tenant_id, "Acme".into()))
        );
        // Nothing new (the answer raced another change): the one of that name.
        assert_eq!(
            joined(&all, &[old.tenant_id, new.tenant_id], "Acme"),
            Some((new.tenant_id, "Acme".into()))
        );
    }
}
