//! The inbox's live stream: one `EventSource` per tab on `GET …/inbox/events` for the tenant in
//! focus, opened while the member may read conversations and closed on a tenant switch, on
//! sign-out and when the app goes. It keeps the badge's counts, tells the pages which
//! conversation changed (they read it again), and announces hand-offs with a toast and, where the
//! member allowed it, a desktop notification. The browser reconnects a dropped stream by itself;
//! a stream the server refuses (the member lost access) is not tried again and the inbox says so.

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use shared::auth::Permission;
use shared::inbox::{InboxCounts, InboxEvent};
use shared::{ConversationId, TenantId};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use crate::api;
use crate::app::{Session, use_session};

/// The stream's event names (`conversation`: something changed; `handoff`: it was handed off).
const EVENT_CONVERSATION: &str = "conversation";
const EVENT_HANDOFF: &str = "handoff";
/// The first wait before opening a failed stream again, doubled up to [`RETRY_MAX_MS`].
const RETRY_FIRST_MS: u32 = 2_000;
const RETRY_MAX_MS: u32 = 60_000;
/// At most one reload of a page's data per this long, however many events arrive.
const REFRESH_MS: u32 = 400;

/// What the stream is doing, for the inbox to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// No tenant in focus, or no right to its inbox: nothing is open.
    Off,
    Connecting,
    Live,
    /// The connection dropped; the browser (or a timer, after a failure) opens it again.
    Reconnecting,
    /// The server refused the stream: the member lost access. Not tried again.
    Refused(String),
}

/// The live inbox, for every page: provided by the app, kept by [`LiveStream`].
#[derive(Clone, Copy)]
pub struct Live {
    /// The badge: conversations waiting for a person, and the member's own open ones.
    pub counts: RwSignal<Option<InboxCounts>>,
    /// Bumped on every event, with the conversation it was about; `None` after a reconnection
    /// (events may have been missed, so anything may have changed).
    pub changed: RwSignal<(u32, Option<ConversationId>)>,
    pub state: RwSignal<StreamState>,
}

impl Live {
    pub fn new() -> Self {
        Self {
            counts: RwSignal::new(None),
            changed: RwSignal::new((0, None)),
            state: RwSignal::new(StreamState::Off),
        }
    }

    fn bump(&self, about: Option<ConversationId>) {
        self.changed.update(|(n, c)| {
            *n = n.wrapping_add(1);
            *c = about;
        });
    }
}

pub fn use_live() -> Live {
    expect_context::<Live>()
}

/// Calls `reload` after events that `concerns`, at most once per [`REFRESH_MS`]: the first event
/// schedules one reload, and the events that arrive before it runs are covered by it. A storm of
/// events is one request, never one per event.
pub fn on_change(
    concerns: impl Fn(Option<ConversationId>) -> bool + 'static,
    reload: impl Fn() + Clone + 'static,
) {
    let live = use_live();
    let pending = StoredValue::new(false);
    Effect::new(move |first: Option<()>| {
        let (_, about) = live.changed.get();
        // The effect's own first run is not an event.
        if first.is_none() || !concerns(about) || pending.get_value() {
            return;
        }
        pending.set_value(true);
        let reload = reload.clone();
        spawn_local(async move {
            TimeoutFuture::new(REFRESH_MS).await;
            // The page may have gone meanwhile.
            if pending.try_set_value(false).is_none() {
                reload();
            }
        });
    });
}

/// Keeps the stream for the tenant in focus. Rendered once inside the router (beside the
/// impersonation timer), so it outlives page changes and can open a conversation from a
/// notification.
#[component]
pub fn LiveStream() -> impl IntoView {
    let session = use_session();
    let live = use_live();
    // The tenant whose inbox to follow: re-evaluated when `/api/me` answers again, but the stream
    // is opened again only when the answer changes.
    let target = Memo::new(move |_| {
        session
            .tenant
            .get()
            .map(|t| t.0)
            .filter(|_| session.can(Permission::ConversationsRead))
    });
    // Bumped to open the stream again after a failure that was not a refusal.
    let retry = RwSignal::new(0u32);
    let backoff = StoredValue::new(RETRY_FIRST_MS);
    // Which opening is current: a late callback or answer of an older one does nothing.
    let generation = StoredValue::new(0u32);
    let stream = StoredValue::new_local(None::<Stream>);
    let navigate = use_navigate();
    let open_conversation = move |id: ConversationId| {
        navigate(&format!("/inbox/{id}"), Default::default());
    };
    Effect::new(move |_| {
        retry.track();
        let tenant = target.get();
        generation.update_value(|g| *g = g.wrapping_add(1));
        // Dropping the old stream closes it.
        stream.set_value(None);
        live.counts.set(None);
        let Some(tenant) = tenant else {
            live.state.set(StreamState::Off);
            backoff.set_value(RETRY_FIRST_MS);
            return;
        };
        live.state.set(StreamState::Connecting);
        let ctx = StreamContext {
            tenant,
            generation: generation.get_value(),
            generations: generation,
            session,
            live,
            retry,
            backoff,
            open_conversation: std::rc::Rc::new(open_conversation.clone()),
        };
        match Stream::open(ctx) {
            Ok(s) => stream.set_value(Some(s)),
            Err(message) => live.state.set(StreamState::Refused(message)),
        }
    });
    on_cleanup(move || {
        let _ = stream.try_set_value(None);
    });
}

/// What a stream's callbacks need.
#[derive(Clone)]
struct StreamContext {
    tenant: TenantId,
    /// This opening's number, and where the current one is kept.
    generation: u32,
    generations: StoredValue<u32>,
    session: Session,
    live: Live,
    retry: RwSignal<u32>,
    backoff: StoredValue<u32>,
    open_conversation: std::rc::Rc<dyn Fn(ConversationId)>,
}

impl StreamContext {
    fn current(&self) -> bool {
        self.generations.try_get_value() == Some(self.generation)
    }

    /// The counts now (on opening, and after a reconnection in which events may have been lost).
    fn load_counts(&self) {
        let ctx = self.clone();
        spawn_local(async move {
            let answer =
                api::get::<InboxCounts>(&format!("/api/tenants/{}/inbox/counts", ctx.tenant)).await;
            if !ctx.current() {
                return;
            }
            match answer {
                Ok(c) => ctx.live.counts.set(Some(c)),
                Err(e) => ctx.session.handle(&e),
            }
        });
    }

    /// The browser gave the stream up: find out whether the server refuses the member (then stop
    /// and say so) or the failure passes (then open it again after a back-off).
    fn diagnose(&self) {
        let ctx = self.clone();
        spawn_local(async move {
            let answer =
                api::get::<InboxCounts>(&format!("/api/tenants/{}/inbox/counts", ctx.tenant)).await;
            if !ctx.current() {
                return;
            }
            match answer {
                Err(e) if e.is_unauthenticated() => ctx.session.handle(&e),
                Err(e) if e.status == 403 || e.status == 404 => {
                    ctx.live.counts.set(None);
                    ctx.live.state.set(StreamState::Refused(format!(
                        "The live inbox stopped: you no longer have access to this tenant's conversations. {}",
                        e.body.message
                    )));
                    // The role or the membership changed: the menu and the tenant follow.
                    ctx.session.refresh().await;
                }
                other => {
                    if let Ok(c) = other {
                        ctx.live.counts.set(Some(c));
                    }
                    ctx.live.state.set(StreamState::Reconnecting);
                    let wait = ctx.backoff.get_value();
                    ctx.backoff
                        .set_value(wait.saturating_mul(2).min(RETRY_MAX_MS));
                    TimeoutFuture::new(wait).await;
                    if ctx.current() {
                        ctx.retry.update(|r| *r = r.wrapping_add(1));
                    }
                }
            }
        });
    }

    fn on_event(&self, name: &str, data: Option<String>) {
        let Some(event) = data.and_then(|d| serde_json::from_str::<InboxEvent>(&d).ok()) else {
            return;
        };
        self.live.counts.set(Some(event.counts));
        self.live.bump(Some(event.conversation_id));
        if name == EVENT_HANDOFF {
            let waiting = event.counts.queue;
            self.session.show_toast(format!(
                "A conversation was handed off and is waiting for a person ({waiting} waiting)."
            ));
            notify(
                event.conversation_id,
                waiting,
                self.open_conversation.clone(),
            );
        }
    }
}

/// An open `EventSource` with the callbacks it calls; dropping it closes the stream.
struct Stream {
    source: web_sys::EventSource,
    _on_open: Closure<dyn Fn(web_sys::Event)>,
    _on_error: Closure<dyn Fn(web_sys::Event)>,
    _on_conversation: Closure<dyn Fn(web_sys::MessageEvent)>,
    _on_handoff: Closure<dyn Fn(web_sys::MessageEvent)>,
}

impl Stream {
    fn open(ctx: StreamContext) -> Result<Self, String> {
        let url = format!("/api/tenants/{}/inbox/events", ctx.tenant);
        // Same origin: the session cookie goes with it.
        let source = web_sys::EventSource::new(&url).map_err(|_| {
            "This browser cannot follow the inbox live. Reload the page to see what changed."
                .to_string()
        })?;
        let opened_before = std::cell::Cell::new(false);
        let on_open = {
            let ctx = ctx.clone();
            Closure::<dyn Fn(web_sys::Event)>::new(move |_| {
                if !ctx.current() {
                    return;
                }
                ctx.live.state.set(StreamState::Live);
                ctx.backoff.set_value(RETRY_FIRST_MS);
                ctx.load_counts();
                // After a reconnection, what happened in between was not heard: pages read
                // again what they show.
                if opened_before.replace(true) {
                    ctx.live.bump(None);
                }
            })
        };
        let on_error = {
            let ctx = ctx.clone();
            let source = source.clone();
            Closure::<dyn Fn(web_sys::Event)>::new(move |_| {
                if !ctx.current() {
                    return;
                }
                if source.ready_state() == web_sys::EventSource::CLOSED {
                    // The browser will not try again (an answer other than a stream: 401, 403,
                    // 404, 5xx).
                    ctx.diagnose();
                } else {
                    ctx.live.state.set(StreamState::Reconnecting);
                }
            })
        };
        let listener = |name: &'static str| {
            let ctx = ctx.clone();
            Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                if ctx.current() {
                    ctx.on_event(name, ev.data().as_string());
                }
            })
        };
        let on_conversation = listener(EVENT_CONVERSATION);
        let on_handoff = listener(EVENT_HANDOFF);
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        for (name, f) in [
            (EVENT_CONVERSATION, &on_conversation),
            (EVENT_HANDOFF, &on_handoff),
        ] {
            let _ = source.add_event_listener_with_callback(name, f.as_ref().unchecked_ref());
        }
        Ok(Self {
            source,
            _on_open: on_open,
            _on_error: on_error,
            _on_conversation: on_conversation,
            _on_handoff: on_handoff,
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Closed first, so none of the callbacks dropped with it can be called afterwards.
        self.source.close();
        self.source.set_onopen(None);
        self.source.set_onerror(None);
    }
}

/// Whether this browser has desktop notifications at all (some phones do not).
pub fn notifications_supported() -> bool {
    js_sys::Reflect::has(&window(), &"Notification".into()).unwrap_or(false)
}

/// The member's answer to "may this site show notifications?", if the browser has them.
pub fn notification_permission() -> Option<web_sys::NotificationPermission> {
    notifications_supported().then(web_sys::Notification::permission)
}

/// Asks the browser for permission to show notifications (only ever from a click on the inbox
/// page, never on load) and returns the answer.
pub async fn request_notifications() -> Option<web_sys::NotificationPermission> {
    if !notifications_supported() {
        return None;
    }
    if let Ok(promise) = web_sys::Notification::request_permission() {
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
    notification_permission()
}

/// A desktop notification for a hand-off, when the member allowed them; a click on it brings the
/// tab forward on the conversation. One per conversation (its id is the tag), so repeats replace
/// each other.
fn notify(conversation: ConversationId, waiting: u64, open: std::rc::Rc<dyn Fn(ConversationId)>) {
    if notification_permission() != Some(web_sys::NotificationPermission::Granted) {
        return;
    }
    let options = web_sys::NotificationOptions::new();
    options.set_body(&format!(
        "A customer is waiting for a person. {waiting} conversation{} in the queue.",
        if waiting == 1 { "" } else { "s" }
    ));
    options.set_tag(&conversation.to_string());
    let Ok(notification) =
        web_sys::Notification::new_with_options("Konstruct: a hand-off", &options)
    else {
        return;
    };
    // Called at most once; the browser lets go of it with the notification.
    let on_click = Closure::once_into_js(move || {
        let _ = window().focus();
        open(conversation);
    });
    notification.set_onclick(Some(on_click.unchecked_ref()));
}
