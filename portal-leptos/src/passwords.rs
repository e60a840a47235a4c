//! Passwords without the shell: asking for a reset link by mail (`/forgot-password`) and choosing
//! a new password with one (`/reset-password#token=…`), plus the new-password fields and the
//! browser's own check of them that every password form shares. The server stays the authority
//! on what a password may be; the check here only spares a round trip.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use shared::auth::SessionToken;
use shared::people::{
    LinkToken, PasswordResetComplete, PasswordResetPreview, PasswordResetRequest,
    PasswordResetRequested,
};

use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;
use crate::customers::when;
use crate::link::use_link_token;
use crate::login::Frame;

/// The shortest password the server takes.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The browser's check of a new password (the form's field `field`) and its confirmation
/// (`confirm_password`), before anything is sent: the first problem, named like a server error.
pub fn check_new_password(field: &str, password: &str, confirm: &str) -> Option<ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(ApiError::local_field(
            field,
            &format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.trim().is_empty() {
        return Some(ApiError::local_field(field, "must not be only spaces"));
    }
    if password != confirm {
        return Some(ApiError::local_field(
            "confirm_password",
            "does not match the password above",
        ));
    }
    None
}

/// A new password and its confirmation, each with its error from `error` (the password's under
/// the server's name `field`, the confirmation's under `confirm_password`).
#[component]
pub fn NewPasswordFields(
    /// Prefix of the inputs' ids, unique in the page.
    id: &'static str,
    label: &'static str,
    confirm_label: &'static str,
    field: &'static str,
    password: RwSignal<String>,
    confirm: RwSignal<String>,
    error: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let message = move |name: &'static str| move || error.get().and_then(|e| e.field(name));
    let password_message = message(field);
    let confirm_message = message("confirm_password");
    view! {
        <div class="field">
            <label for=format!("{id}-password")>{label}</label>
            <input id=format!("{id}-password") type="password" autocomplete="new-password"
                prop:value=move || password.get()
                on:input=move |ev| password.set(event_target_value(&ev))
                aria-describedby=format!("{id}-password-hint {id}-password-error")
                aria-invalid=move || password_message().is_some().to_string() />
            <span id=format!("{id}-password-hint") class="hint">{format!("At least {MIN_PASSWORD_CHARS} characters. A few unrelated words make a strong one.")}</span>
            <span id=format!("{id}-password-error") class="field-error" role="alert">{password_message}</span>
        </div>
        <div class="field">
            <label for=format!("{id}-confirm")>{confirm_label}</label>
            <input id=format!("{id}-confirm") type="password" autocomplete="new-password"
                prop:value=move || confirm.get()
                on:input=move |ev| confirm.set(event_target_value(&ev))
                aria-describedby=format!("{id}-confirm-error")
                aria-invalid=move || confirm_message().is_some().to_string() />
            <span id=format!("{id}-confirm-error") class="field-error" role="alert">{confirm_message}</span>
        </div>
    }
}

/// The error of a whole form, when it is about no field in particular (a field's is shown at
/// the field).
pub fn form_error(error: RwSignal<Option<ApiError>>) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| e.body.fields.is_empty())
            .map(|e| view! { <p class="error" role="alert">{e.message()}</p> })
    }
}

#[component]
pub fn ForgotPassword() -> impl IntoView {
    let email = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let address = email.get_untracked().trim().to_string();
        if address.is_empty() {
            error.set(Some(ApiError::local_field("email", "is required")));
            return;
        }
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let body = PasswordResetRequest { email: address };
            match api::send::<_, PasswordResetRequested>(
                HttpMethod::POST,
                "/api/auth/password-reset",
                &body,
            )
            .await
            {
                Ok(answer) => done.set(Some(answer.message)),
                Err(e) => {
                    done.set(None);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };
    let email_message = move || error.get().and_then(|e| e.field("email"));
    view! {
        <Frame>
            <form class="card" on:submit=submit novalidate aria-label="Forgot your password?">
                <h2>"Forgot your password?"</h2>
                <p class="muted">"Enter the email you sign in with. If it has an account, we mail it a link to choose a new password."</p>
                <div class="field">
                    <label for="forgot-email">"Email"</label>
                    <input id="forgot-email" type="email" autocomplete="username"
                        prop:value=move || email.get()
                        on:input=move |ev| email.set(event_target_value(&ev))
                        aria-describedby="forgot-email-error"
                        aria-invalid=move || email_message().is_some().to_string() />
                    <span id="forgot-email-error" class="field-error" role="alert">{email_message}</span>
                </div>
                {form_error(error)}
                {move || done.get().map(|m| view! { <p class="notice" role="status">{m}</p> })}
                <button type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Sending…" } else { "Send reset link" }}
                </button>
                <a class="aside-link" href="/login">"Back to sign in"</a>
            </form>
        </Frame>
    }
}

#[component]
pub fn ResetPassword() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let token = use_link_token();
    let preview = LocalResource::new(move || {
        let token = token.get();
        async move {
            let token = token?;
            Some(
                api::send::<_, PasswordResetPreview>(
                    HttpMethod::POST,
                    "/api/auth/password-reset/lookup",
                    &LinkToken { token },
                )
                .await,
            )
        }
    });
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    // The link stopped working while the form was open (used or expired meanwhile).
    let dead = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(token) = token.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        let new = password.get_untracked();
        if let Some(e) = check_new_password("password", &new, &confirm.get_untracked()) {
            error.set(Some(e));
            return;
        }
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        spawn_local(async move {
            let body = PasswordResetComplete {
                token,
                password: new,
            };
            match api::send::<_, SessionToken>(
                HttpMethod::POST,
                "/api/auth/password-reset/complete",
                &body,
            )
            .await
            {
                Ok(signed_in) => {
                    session.enter(signed_in.me);
                    session.show_toast(
                        "Your password was changed. You were signed out everywhere else.",
                    );
                    navigate("/", Default::default());
                }
                Err(e) if e.status == 404 => dead.set(Some(e)),
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let submit = StoredValue::new(submit);
    let ask_again = || {
        view! { <a class="button secondary" href="/forgot-password">"Ask for a new link"</a> }
    };
    view! {
        <Frame>
            {move || {
                if let Some(e) = dead.get() {
                    return view! {
                        <div class="card link-problem">
                            <p class="error" role="alert">{e.message()}</p>
                            {ask_again()}
                        </div>
                    }.into_any();
                }
                match preview.get() {
                    None => view! { <p class="loading" role="status">"Checking your link…"</p> }.into_any(),
                    Some(None) => view! {
                        <div class="card link-problem">
                            <p class="error" role="alert">"This reset link is incomplete. Open the whole link from the mail, or ask for a new one."</p>
                            {ask_again()}
                        </div>
                    }.into_any(),
                    Some(Some(Err(e))) => view! {
                        <div class="card link-problem">
                            <p class="error" role="alert">{e.message()}</p>
                            {ask_again()}
                        </div>
                    }.into_any(),
                    Some(Some(Ok(p))) => view! {
                        <form class="card" on:submit=move |ev| submit.with_value(|s| s(ev)) novalidate aria-label="Choose a new password">
                            <h2>{format!("Choose a new password for {}", p.email)}</h2>
                            <p class="muted">{format!("This link works once, until {}. Setting a password signs you out everywhere else.", when(p.expires_at))}</p>
                            <NewPasswordFields id="reset" label="New password" confirm_label="Confirm new password"
                                field="password" password=password confirm=confirm error=error />
                            {form_error(error)}
                            <button type="submit" disabled=move || busy.get()>
                                {move || if busy.get() { "Setting your password…" } else { "Set new password" }}
                            </button>
                        </form>
                    }.into_any(),
                }
            }}
        </Frame>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_password_is_long_enough_and_confirmed() {
        let short = check_new_password("password", "short", "short").map(|e| e.body.fields);
        assert_eq!(
            short.map(|f| f[0].field.clone()).as_deref(),
            Some("password")
        );
        let spaces = " ".repeat(12);
        assert!(check_new_password("new_password", &spaces, &spaces).is_some());
        let typo = check_new_password("password", "long enough words", "long enough wordz")
            .map(|e| e.body.fields[0].field.clone());
        assert_eq!(typo.as_deref(), Some("confirm_password"));
        // Twelve characters, not twelve bytes.
        let umlauts = "ääääääääääää";
        assert_eq!(check_new_password("password", umlauts, umlauts), None);
        assert!(check_new_password("password", "äääääääääää", "äääääääääää").is_some());
    }
}
