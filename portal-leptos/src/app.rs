//! The root component. For now a landing page that shows the API's health, proving that the app
//! is served by the runtime and can talk to it; the real portal (sign-in, tenants, agents) grows
//! from here.

use leptos::prelude::*;

/// The app.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <main class="landing">
            <header class="brand">
                <span class="logo" aria-hidden="true">"K"</span>
                <h1>"Konstruct"</h1>
            </header>
            <p class="tagline">"Hire an AI employee that answers your customers on Slack and WhatsApp."</p>
            <p class="status">"The portal is being built. The API is served under " <code>"/api"</code> "."</p>
        </main>
    }
}
