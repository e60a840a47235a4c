//! Sign-in. The server sets the session cookie; the app keeps only what `/api/me` says.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use shared::auth::{LoginRequest, SessionToken};

use crate::api::{self, HttpMethod};
use crate::app::use_session;

#[component]
pub fn Login() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    {
        let navigate = navigate.clone();
        Effect::new(move |_| {
            if session.me.get().is_some() {
                navigate("/", Default::default());
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
                    session.notice.set(None);
                    session.adopt(token.me);
                    session.checked.set(true);
                    navigate("/", Default::default());
                }
                Err(e) => error.set(Some(e.message())),
            }
            busy.set(false);
        });
    };
    view! {
        <main class="login">
            <div class="brand">
                <span class="logo" aria-hidden="true">"K"</span>
                <h1>"Konstruct"</h1>
            </div>
            <p class="tagline">"Hire an AI employee that answers your customers on Slack and WhatsApp."</p>
            <form class="card" on:submit=submit>
                <h2>"Sign in"</h2>
                {move || session.notice.get().map(|n| view! { <p class="notice" role="status">{n}</p> })}
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
            </form>
        </main>
    }
}
