//! Channel adapters: one per kind, each translating its provider's webhooks into
//! `InboundMessage`s (`Inbound`) and sending replies back through the provider's API
//! (`ReplySink`). The engine and the API never see a provider's format: the webhook route of every
//! kind is the one generic handler in `api::webhooks`, and the engine sends through `ReplySink`.
//!
//! A connection's settings are typed per kind (`ConnectionSettings`), parsed from the stored JSON
//! here and nowhere else. The opened secret (a bot token) travels in the tenant's configuration
//! snapshot (`ConnectionConfig`), loaded when the snapshot is and refreshed when it changes, so a
//! reply never decrypts anything.

#[cfg(test)]
mod properties;
pub mod slack;
mod strict_json;
pub mod whatsapp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use futures_util::future::BoxFuture;
use shared::channel::{ChannelKind, ConnectionStatus, InboundMessage, OutboundReply};
use shared::{AgentId, ConnectionId, TenantId};

use crate::config::Secret;
pub use strict_json::read_json;

/// Why a channel did not take a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// It may work later: the API could not be reached, timed out, answered 5xx or asked us to
    /// slow down (`after`, when it said how long).
    #[error("the channel is unavailable: {reason}")]
    Retryable {
        reason: String,
        after: Option<Duration>,
    },
    /// Only this recipient is limited for now (WhatsApp's 131056: too many messages to one
    /// customer in a short time): this send may work after `after`; sends to others are not
    /// affected.
    #[error("the recipient cannot take more messages for now: {reason}")]
    RecipientLimited { reason: String, after: Duration },
    /// It will never work: the installation is gone, the channel deleted, the request refused.
    #[error("the channel refused the reply for good: {0}")]
    Permanent(String),
    /// This part can never reach the user (outside WhatsApp's 24-hour window with no template,
    /// a recipient who cannot receive it): the part is recorded as failed with the reason and
    /// the turn goes on.
    #[error("the reply cannot be delivered: {0}")]
    Undeliverable(String),
    /// The connection's credentials were refused for good (a revoked token): the connection
    /// is marked failed until an admin connects it again.
    #[error("the channel refused the connection's credentials: {0}")]
    Revoked(String),
    /// Not sent: the send's fence no longer holds (the partition moved while it waited).
    #[error("not sent: this node no longer holds the conversation's partition")]
    Fenced,
}

impl SinkError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        SinkError::Retryable {
            reason: reason.into(),
            after: None,
        }
    }
}

/// Sends replies out through one kind of channel.
pub trait ReplySink: Send + Sync {
    /// Sends one part through `connection` (from the tenant's snapshot, with its opened token);
    /// returns the provider's id for the message it created, if it has one. `fence` is asked
    /// right before every request to the provider, after any wait for the channel's pace: when
    /// it no longer holds, nothing is sent and the answer is [`SinkError::Fenced`].
    fn send(
        &self,
        connection: &ConnectionConfig,
        reply: OutboundReply,
        fence: Fence,
    ) -> BoxFuture<'static, Result<Option<String>, SinkError>>;

    /// The longest text one message may carry; longer replies are sent in parts.
    fn max_part_chars(&self) -> usize {
        usize::MAX
    }

    /// Tells the provider the user's message was read (WhatsApp's blue ticks), where it has
    /// such a thing.
    fn mark_read(
        &self,
        _connection: &ConnectionConfig,
        _message: &InboundMessage,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Spaces out sends per key (a Slack channel, a WhatsApp business number): each send books the
/// key's next slot `gap` after its own. Keys whose slots have passed are dropped once there are
/// more than 10 000, so the map stays bounded. Cheap to clone: clones share the slots. Time is
/// tokio's, so tests with paused time see exact instants.
#[derive(Debug, Clone)]
pub struct Pacer {
    next: Arc<std::sync::Mutex<HashMap<String, tokio::time::Instant>>>,
    gap: Duration,
}

impl Pacer {
    pub fn new(gap: Duration) -> Self {
        Self {
            next: Arc::default(),
            gap,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::time::Instant>> {
        self.next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `key` may send again, and books its next slot.
    pub async fn wait(&self, key: &str) {
        let wait = {
            let mut next = self.slots();
            let now = tokio::time::Instant::now();
            let at = next.get(key).copied().unwrap_or(now).max(now);
            next.insert(key.to_string(), at + self.gap);
            if next.len() > 10_000 {
                next.retain(|_, t| *t > now);
            }
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Pushes `key`'s next slot back by `by` (the provider said to slow down).
    pub fn push_back(&self, key: &str, by: Duration) {
        let mut next = self.slots();
        let now = tokio::time::Instant::now();
        let at = next.get(key).copied().unwrap_or(now).max(now);
        next.insert(key.to_string(), at + by);
    }
}

/// The web channel's sink: the reply is recorded in the conversation, which the portal reads, so
/// sending is done.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordedOnly;

impl ReplySink for RecordedOnly {
    fn send(
        &self,
        _connection: &ConnectionConfig,
        _reply: OutboundReply,
        _fence: Fence,
    ) -> BoxFuture<'static, Result<Option<String>, SinkError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Whether a send may still go out: the engine's sends hold while this node holds the
/// conversation's partition at the epoch the turn started under, so a part that waited for the
/// channel's pace while the partition moved is left to its new owner instead of sent twice.
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl Fence {
    /// For a send bound to no partition (a hand-off notice from a job).
    pub fn open() -> Self {
        Self(None)
    }

    pub fn new(holds: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(holds)))
    }

    pub fn holds(&self) -> bool {
        self.0.as_ref().is_none_or(|holds| holds())
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Fence(bound)"
        } else {
            "Fence(open)"
        })
    }
}

/// The slot (associated data) a connection's secret is sealed under, bound to the connection.
pub fn secret_slot(kind: ChannelKind, id: ConnectionId) -> String {
    match kind {
        ChannelKind::Slack => slack::token_slot(id),
        ChannelKind::Whatsapp => whatsapp::token_slot(id),
        ChannelKind::Web => format!("{kind}_token:{id}"),
    }
}

/// A connection's settings, by kind: what the adapter needs besides the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionSettings {
    Slack(slack::InstallationSettings),
    Whatsapp(whatsapp::NumberSettings),
    /// The web test chat has none.
    Web,
}

/// Settings that do not match their connection's kind (a bug or a hand edit).
#[derive(Debug, thiserror::Error)]
#[error("the {kind} connection's settings are unreadable: {source}")]
pub struct SettingsError {
    kind: ChannelKind,
    source: serde_json::Error,
}

impl ConnectionSettings {
    /// Reads the stored JSON of a connection of `kind`.
    pub fn parse(kind: ChannelKind, json: &serde_json::Value) -> Result<Self, SettingsError> {
        let err = |source| SettingsError { kind, source };
        Ok(match kind {
            ChannelKind::Slack => {
                ConnectionSettings::Slack(serde_json::from_value(json.clone()).map_err(err)?)
            }
            ChannelKind::Whatsapp => {
                ConnectionSettings::Whatsapp(serde_json::from_value(json.clone()).map_err(err)?)
            }
            ChannelKind::Web => ConnectionSettings::Web,
        })
    }

    /// The JSON to store.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ConnectionSettings::Slack(s) => serde_json::to_value(s).unwrap_or_default(),
            ConnectionSettings::Whatsapp(s) => serde_json::to_value(s).unwrap_or_default(),
            ConnectionSettings::Web => serde_json::json!({}),
        }
    }
}

/// One connection as the engine sends through it: part of the tenant's configuration snapshot.
#[derive(Clone)]
pub struct ConnectionConfig {
    pub id: ConnectionId,
    pub kind: ChannelKind,
    pub status: ConnectionStatus,
    pub agent_id: Option<AgentId>,
    pub settings: ConnectionSettings,
    /// The opened secret (Slack's bot token); `None` when the connection has none (the web
    /// chat, a disconnected installation) or it could not be opened (`token_error` says why).
    pub token: Option<Secret<String>>,
    /// Why the stored secret could not be opened (our keyring's fault, not the channel's).
    pub token_error: Option<String>,
}

impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("has_token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl ConnectionConfig {
    /// The opened token, or the reason the reply cannot be sent: a disconnected connection will
    /// never work again; a secret our keyring cannot open may, once the keys are fixed.
    pub fn require_token(&self) -> Result<&Secret<String>, SinkError> {
        if self.status != ConnectionStatus::Active {
            return Err(SinkError::Permanent(format!(
                "the {} connection was disconnected",
                self.kind
            )));
        }
        match (&self.token, &self.token_error) {
            (Some(token), _) => Ok(token),
            (None, Some(why)) => Err(SinkError::retryable(why.clone())),
            (None, None) => Err(SinkError::Permanent(format!(
                "the {} connection has no token",
                self.kind
            ))),
        }
    }
}

/// A webhook delivery as the adapter reads it: headers, query string and the raw body (which the
/// signature covers, so it is never re-serialised).
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub headers: &'a HeaderMap,
    pub query: &'a str,
    pub body: &'a [u8],
    /// Unix seconds, for replay windows.
    pub now: i64,
}

impl WebhookRequest<'_> {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a delivery holds.
#[derive(Debug)]
pub enum Inbound<E> {
    /// Answer the provider with this body (a verification challenge), nothing else to do.
    Respond {
        content_type: &'static str,
        body: String,
    },
    /// Acknowledge it and do nothing (the reason is logged).
    Ignore(&'static str),
    /// Events to route, each to the connection its provider id names.
    Events(Vec<Routed<E>>),
}

/// One event of a delivery, with what routes it.
#[derive(Debug)]
pub struct Routed<E> {
    /// The connection's id at the provider (a Slack `team_id`, a WhatsApp `phone_number_id`).
    pub external_id: String,
    /// The provider's id for the event, for deduplication and logs.
    pub event_id: String,
    pub event: E,
}

/// Why a delivery was refused; the API answers with the matching status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The channel is not configured on this server (e.g. no signing secret).
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The delivery is not from the provider (signature, timestamp).
    #[error("this request is not from the provider: {0}")]
    Unauthenticated(String),
    /// From the provider, but for another app of theirs.
    #[error("{0}")]
    Forbidden(String),
    /// Not a delivery we can read.
    #[error("{0}")]
    Malformed(String),
}

/// A connection found from its provider id, before its tenant's snapshot is at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConnection {
    pub tenant: TenantId,
    pub id: ConnectionId,
    pub agent_id: Option<AgentId>,
    /// False when the tenant is suspended or the connection disabled: acknowledge, do not process.
    pub active: bool,
    pub settings: ConnectionSettings,
}

/// What an event of a delivery is, once its connection is known.
#[derive(Debug)]
pub enum Accepted {
    /// A user's message, for the engine.
    Message(InboundMessage),
    /// A report on one of our messages (WhatsApp's `statuses[]`).
    Delivery(DeliveryReport),
}

/// The provider's word on how far one of our messages got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The provider's id for our message (a `wamid`).
    pub provider_message_id: String,
    pub status: shared::channel::DeliveryStatus,
    /// Why it failed, in the provider's terms.
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The inbound half of an adapter: verify and read a webhook delivery, then turn each of its
/// events into a message once its connection is known.
pub trait Receive: Send + Sync + 'static {
    /// What one event of a delivery is, before its connection is known.
    type Event: Send;

    fn kind(&self) -> ChannelKind;

    /// Verifies the delivery (signature, replay window, app) and reads it.
    fn inbound(&self, request: &WebhookRequest<'_>) -> Result<Inbound<Self::Event>, InboundError>;

    /// What an event is for `connection` (a message, a delivery report), or why it is not
    /// taken (its own bot's message, an edit, a type we do not handle).
    fn accept(
        &self,
        routed: Routed<Self::Event>,
        connection: &ResolvedConnection,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Accepted, &'static str>;
}

/// Every channel's adapter, built once from the settings.
#[derive(Clone)]
pub struct Channels {
    pub slack: Arc<slack::SlackChannel>,
    pub whatsapp: Arc<whatsapp::WhatsappChannel>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

impl Channels {
    pub fn new(
        slack: &crate::config::SlackSettings,
        whatsapp: &crate::config::WhatsappSettings,
    ) -> Self {
        Self {
            slack: Arc::new(slack::SlackChannel::new(slack)),
            whatsapp: Arc::new(whatsapp::WhatsappChannel::new(whatsapp)),
        }
    }

    /// The reply side of every channel: the web test chat (recorded only), Slack and WhatsApp.
    pub fn sinks(&self) -> HashMap<ChannelKind, Arc<dyn ReplySink>> {
        HashMap::from([
            (
                ChannelKind::Web,
                Arc::new(RecordedOnly) as Arc<dyn ReplySink>,
            ),
            (ChannelKind::Slack, self.slack.clone() as Arc<dyn ReplySink>),
            (
                ChannelKind::Whatsapp,
                self.whatsapp.clone() as Arc<dyn ReplySink>,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// When each of `keys` got its slot, after `start`, waiting for all of them at once.
    async fn slots(pacer: &Pacer, keys: &[&str]) -> Vec<Duration> {
        let start = Instant::now();
        let waits = keys.iter().map(|key| async move {
            pacer.wait(key).await;
            Instant::now() - start
        });
        futures_util::future::join_all(waits).await
    }

    #[tokio::test(start_paused = true)]
    async fn one_keys_sends_are_spaced_by_the_gap_and_other_keys_do_not_wait() {
        // 4 messages a second.
        let pacer = Pacer::new(Duration::from_secs(1) / 4);
        let ms = Duration::from_millis;
        assert_eq!(
            slots(
                &pacer,
                &["number-a", "number-a", "number-b", "number-a", "number-b"]
            )
            .await,
            [ms(0), ms(250), ms(0), ms(500), ms(250)]
        );
        // The next slot of a key that was busy is one gap after its last send; a key that has
        // been idle sends at once.
        assert_eq!(
            slots(&pacer, &["number-a", "number-c"]).await,
            [ms(250), ms(0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_push_back_delays_only_its_own_key() {
        let pacer = Pacer::new(Duration::from_millis(100));
        pacer.push_back("number-a", Duration::from_secs(2));
        assert_eq!(
            slots(&pacer, &["number-a", "number-b", "number-a"]).await,
            [
                Duration::from_secs(2),
                Duration::ZERO,
                Duration::from_millis(2100)
            ]
        );
    }
}
