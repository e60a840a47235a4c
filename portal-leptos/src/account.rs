//! Your account: who you are signed in as, and changing your own password (which signs out
//! every other session of the account). Not while impersonating: that session is not yours to
//! change, and the server refuses it.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::auth::SessionToken;
use shared::people::PasswordChange;

use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;
use crate::passwords::{NewPasswordFields, check_new_password, form_error};

#[component]
pub fn Account() -> impl IntoView {
    let session = use_session();
    let current = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let impersonating = move || session.me.get().is_some_and(|m| m.impersonation.is_some());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let (old, new) = (current.get_untracked(), password.get_untracked());
        let problem = if old.is_empty() {
            Some(ApiError::local_field("current_password", "is required"))
        } else {
            check_new_password("new_password", &new, &confirm.get_untracked())
        };
        if let Some(e) = problem {
            done.set(None);
            error.set(Some(e));
            return;
        }
        busy.set(true);
        error.set(None);
        done.set(None);
        spawn_local(async move {
            let body = PasswordChange {
                current_password: old,
                new_password: new,
            };
            match api::send::<_, SessionToken>(HttpMethod::POST, "/api/me/password", &body).await {
                // The server set this session's renewed cookies; the others have ended.
                Ok(token) => {
                    session.adopt(token.me);
                    for field in [current, password, confirm] {
                        field.set(String::new());
                    }
                    done.set(Some(
                        "Password changed. Your other sessions were signed out.".into(),
                    ));
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };
    let current_message = move || error.get().and_then(|e| e.field("current_password"));

    view! {
        <header class="page-head">
            <h1>"Your account"</h1>
            <p class="muted">{move || session.me.get().map(|m| format!("Signed in as {} ({}).", m.user.display_name, m.user.email)).unwrap_or_default()}</p>
        </header>
        {move || done.get().map(|m| view! { <p class="flash" role="status">{m}</p> })}
        <Show when=move || !impersonating() fallback=|| view! {
            <p class="readonly-note" role="note">"You are impersonating a tenant. Stop impersonating to change your own password."</p>
        }>
            <form class="card settings-form" on:submit=submit novalidate aria-label="Change your password">
                <h2>"Change your password"</h2>
                <p class="muted">"Every other browser and device signed in to your account is signed out; this one stays signed in."</p>
                <div class="field">
                    <label for="account-current">"Current password"</label>
                    <input id="account-current" type="password" autocomplete="current-password"
                        prop:value=move || current.get()
                        on:input=move |ev| current.set(event_target_value(&ev))
                        aria-describedby="account-current-error"
                        aria-invalid=move || current_message().is_some().to_string() />
                    <span id="account-current-error" class="field-error" role="alert">{current_message}</span>
                </div>
                <NewPasswordFields id="account" label="New password" confirm_label="Confirm new password"
                    field="new_password" password=password confirm=confirm error=error />
                {form_error(error)}
                <div class="form-actions">
                    <button type="submit" disabled=move || busy.get()>
                        {move || if busy.get() { "Changing…" } else { "Change password" }}
                    </button>
                </div>
            </form>
        </Show>
    }
}
