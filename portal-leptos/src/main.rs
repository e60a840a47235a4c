//! The portal's entry point: mounts the app on `<body>`.

use leptos::prelude::*;

mod account;
mod agents;
mod api;
mod app;
mod audit;
mod channels;
mod chat;
mod customers;
mod inbox;
mod invitation;
mod jobs;
mod knowledge;
mod link;
mod login;
mod members;
mod passwords;
mod settings;
mod tenants;
mod tools;
mod usage;

fn main() {
    console_error_panic_hook::set_once();
    mount_to_body(app::App);
}
