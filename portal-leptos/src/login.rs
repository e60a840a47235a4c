//! Sign-in, and the frame of the pages shown without the portal's shell (sign-in, the links that
//! arrive by mail). The server sets the session cookie; the app keeps only what `/api/me` says.
//!
//! The sign-in page can be sent an email to fill in and a page to return to, in its fragment
//! (`/login#email=…&next=/invitation%23token%3D…`), so an invitee signs in and comes back to their
//! invitation without its token ever reaching a server.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_location, use_navigate};
use shared::auth::{LoginRequest, SessionToken};

use crate::api::{self, HttpMethod};
use crate::app::use_session;
use crate::link::{fragment_param, safe_next};

/// The brand and the tagline above a page that has no shell.
#[component]
pub fn Frame(children: Children) -> impl IntoView {
    view! {
        <main class="login">
            <div class="brand">
                <span class="logo" aria-hidden="true">"K"</span>
                <h1>"Konstruct"</h1>
            </div>
            <p class="tagline">"Hire an AI employee that answers your customers on Slack and WhatsApp."</p>
            {children()}
        </main>
    }
}

#[component]
pub fn Login() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let location = use_location();
    let hash = location.hash.get_untracked();
    // Where to go once signed in: a page of this site named in the fragment, else the start.
    let next = StoredValue::new(
        fragment_param(&hash, "next")
            .filter(|n| safe_next(n).is_some())
            .unwrap_or_else(|| "/".into()),
    );
    let invited = next.with_value(|n| n.starts_with(shared::people::INVITATION_PATH));
    let email = RwSignal::new(fragment_param(&hash, "email").unwrap_or_default());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    {
        let navigate = navigate.clone();
        Effect::new(move |_| {
            if session.me.get().is_some() {
                navigate(&next.get_value(), Default::default());
            }
        });
    }
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        let request = LoginRequest {
            email: email.get_untracked().trim().to_string(),
            password: password.get_untracked(),
        };
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::send::<_, SessionToken>(HttpMethod::POST, "/api/auth/login", &request).await
            {
                Ok(token) => {
                    session.enter(token.me);
                    navigate(&next.get_value(), Default::default());
                }
                Err(e) => error.set(Some(e.message())),
            }
            busy.set(false);
        });
    };
    view! {
        <Frame>
            <form class="card" on:submit=submit>
                <h2>"Sign in"</h2>
                {move || session.notice.get().map(|n| view! { <p class="notice" role="status">{n}</p> })}
                {invited.then(|| view! { <p class="muted">"Sign in to accept your invitation; you come back to it afterwards."</p> })}
                <label>
                    <span>"Email"</span>
                    <input type="email" name="email" autocomplete="username" required
                        prop:value=move || email.get()
                        on:input=move |ev| email.set(event_target_value(&ev)) />
                </label>
                <label>
                    <span>"Password"</span>
                    <input type="password" name="password" autocomplete="current-password" required
                        prop:value=move || password.get()
                        on:input=move |ev| password.set(event_target_value(&ev)) />
                </label>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <button type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Signing in…" } else { "Sign in" }}
                </button>
                <a class="aside-link" href="/forgot-password">"Forgot your password?"</a>
            </form>
        </Frame>
    }
}
