//! Slack: verifying and normalising Events API deliveries, and posting replies with
//! `chat.postMessage` into the thread they answer.
//!
//! Pure parts (signature, event filtering, mention stripping) are functions of their inputs, so
//! they are unit-tested without a network; `SlackChannel` is the adapter: `Receive` for the
//! Events API webhook, `ReplySink` for the engine's replies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use shared::ConnectionId;
use shared::channel::{ChannelKind, InboundMessage, OutboundReply, ReplyTarget, Sender};

use super::{
    ConnectionConfig, ConnectionSettings, Fence, Inbound, InboundError, Pacer, Receive, ReplySink,
    ResolvedConnection, Routed, SinkError, WebhookRequest,
};
use crate::config::Secret;

/// How far a request's timestamp may be from now (Slack's replay window).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The sealed bot token's slot (associated data), bound to its connection.
pub fn token_slot(connection: ConnectionId) -> String {
    format!("slack_bot_token:{connection}")
}

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Slack-Request-Timestamp or X-Slack-Signature header is missing")]
    Missing,
    #[error("the request timestamp is not a number")]
    BadTimestamp,
    #[error("the request timestamp is more than five minutes away")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks `X-Slack-Signature` (`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`) in constant
/// time, and that the timestamp is within five minutes of `now_secs`.
pub fn verify_signature(
    signing_secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    // abs_diff: a hostile timestamp such as i64::MIN must neither overflow nor pass.
    if now_secs.abs_diff(ts) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The Events API envelope, as far as we read it.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub challenge: Option<String>,
    pub team_id: Option<String>,
    /// The Slack app the event was sent for; it must be ours.
    pub api_app_id: Option<String>,
    pub event_id: Option<String>,
    pub event: Option<Event>,
}

/// The inner event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub subtype: Option<String>,
    pub channel: Option<String>,
    pub channel_type: Option<String>,
    pub user: Option<String>,
    /// The sender's own workspace, when it is not the installing one (a shared channel).
    pub user_team: Option<String>,
    pub bot_id: Option<String>,
    pub text: Option<String>,
    pub ts: Option<String>,
    pub thread_ts: Option<String>,
}

/// A message worth answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub channel: String,
    pub user: String,
    /// The text without the bot's mention.
    pub text: String,
    /// Where the reply goes: the thread, or the message that starts one.
    pub thread_ts: String,
    /// Written in a thread without addressing the bot: the customer going on, or a colleague
    /// answering (the engine tells which); never answered by the AI.
    pub in_thread: bool,
}

/// Decides whether an event is a message to answer, and normalises it.
pub fn accept(event: &Event, bot_user_id: &str) -> Result<Accepted, &'static str> {
    let in_thread = match (event.kind.as_str(), event.channel_type.as_deref()) {
        ("app_mention", _) => false,
        ("message", Some("im")) => false,
        ("message", _) => {
            let replies_in_thread = event
                .thread_ts
                .as_deref()
                .is_some_and(|thread| Some(thread) != event.ts.as_deref());
            if !replies_in_thread {
                return Err("a channel message without a mention");
            }
            if event
                .text
                .as_deref()
                .is_some_and(|t| t.contains(&format!("<@{bot_user_id}")))
            {
                return Err("a mention in a thread (its app_mention event carries it)");
            }
            true
        }
        _ => return Err("an event type we do not handle"),
    };
    if event.subtype.is_some() {
        // message_changed, message_deleted, bot_message, channel_join, …
        return Err("a message subtype (edit, delete, bot or system message)");
    }
    if event.bot_id.is_some() {
        return Err("a bot's message");
    }
    let user = event.user.as_deref().unwrap_or_default();
    if user.is_empty() || user == bot_user_id {
        return Err("the app's own message");
    }
    let (Some(channel), Some(ts)) = (event.channel.as_deref(), event.ts.as_deref()) else {
        return Err("no channel or timestamp");
    };
    let text = strip_mention(event.text.as_deref().unwrap_or_default(), bot_user_id);
    if text.is_empty() {
        return Err("no text besides the mention");
    }
    Ok(Accepted {
        channel: channel.to_string(),
        user: user.to_string(),
        text,
        thread_ts: event.thread_ts.as_deref().unwrap_or(ts).to_string(),
        in_thread,
    })
}

/// Removes `<@BOT>` and `<@BOT|name>` mentions of the bot and tidies the spaces left behind.
pub fn strip_mention(text: &str, bot_user_id: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let open = format!("<@{bot_user_id}");
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        match after.chars().next() {
            Some('>') | Some('|') => {
                out.push_str(&rest[..at]);
                rest = after.find('>').map_or("", |end| &after[end + 1..]);
            }
            _ => {
                // Another user whose id merely starts with ours.
                out.push_str(&rest[..at + open.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Who a bot token belongs to, as `auth.test` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identity {
    pub team_id: String,
    /// The bot's own user in that workspace.
    pub user_id: String,
    /// The bot (`B…`), whose app `bots.info` tells.
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub enterprise_id: Option<String>,
}

/// A bot, as `bots.info` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BotInfo {
    pub id: String,
    /// The Slack app the bot belongs to.
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

/// Why a token could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenCheckError {
    #[error("Slack refused the token ({0})")]
    Refused(String),
    #[error("Slack could not be reached: {0}")]
    Unreachable(String),
}

/// The Web API calls made outside the reply path, and the HTTP client replies use too.
#[derive(Debug, Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: String,
}

impl SlackApi {
    pub fn new(api_base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            base: api_base.trim_end_matches('/').to_string(),
        }
    }

    /// Calls a Web API method with the bot token; returns the `ok:true` answer or Slack's error.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        token: &str,
        form: &[(&str, &str)],
    ) -> Result<T, TokenCheckError> {
        let res = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(token)
            .form(form)
            .send()
            .await
            .map_err(|e| TokenCheckError::Unreachable(e.without_url().to_string()))?;
        if !res.status().is_success() {
            return Err(TokenCheckError::Unreachable(format!(
                "HTTP {}",
                res.status()
            )));
        }
        let answer: serde_json::Value = res
            .json()
            .await
            .map_err(|e| TokenCheckError::Unreachable(e.without_url().to_string()))?;
        if answer["ok"].as_bool() != Some(true) {
            return Err(TokenCheckError::Refused(
                answer["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
            ));
        }
        serde_json::from_value(answer).map_err(|e| {
            TokenCheckError::Unreachable(format!("Slack's answer was not understood: {e}"))
        })
    }

    /// `auth.test`: the workspace, bot user and bot a token belongs to.
    pub async fn identify(&self, token: &str) -> Result<Identity, TokenCheckError> {
        self.call("auth.test", token, &[]).await
    }

    /// `bots.info`: which app a bot belongs to.
    pub async fn bot_info(&self, token: &str, bot_id: &str) -> Result<BotInfo, TokenCheckError> {
        #[derive(Deserialize)]
        struct Answer {
            bot: BotInfo,
        }
        let answer: Answer = self.call("bots.info", token, &[("bot", bot_id)]).await?;
        Ok(answer.bot)
    }
}

/// What a Slack installation keeps besides its sealed token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationSettings {
    /// The workspace (`T…`); kept here as well as in the connection's external id, which is
    /// freed when the installation is disconnected. (Empty only for a row written by hand.)
    #[serde(default)]
    pub team_id: String,
    #[serde(default)]
    pub team_name: Option<String>,
    #[serde(default)]
    pub enterprise_id: Option<String>,
    /// The app's bot user in the workspace; its own messages are not answered.
    #[serde(default)]
    pub bot_user_id: String,
    /// The bot (`B…`) and the app it belongs to, as Slack said at registration.
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The token's last characters, to show.
    #[serde(default)]
    pub token_hint: String,
}

/// Workspaces Slack told to wait, by connection (one installation, one workspace): until the
/// `Retry-After` of a 429 has passed, nothing is posted through the connection in any of its
/// channels, since Slack limits a method per workspace. Cheap to clone: clones share the holds.
/// Holds that have passed are dropped once there are more than 10 000. Time is tokio's.
#[derive(Debug, Clone, Default)]
struct Holds(Arc<Mutex<HashMap<ConnectionId, tokio::time::Instant>>>);

impl Holds {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, tokio::time::Instant>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nothing goes through `connection` for `wait` from now (or longer, if it already waits).
    fn hold(&self, connection: ConnectionId, wait: Duration) {
        let now = tokio::time::Instant::now();
        let mut map = self.map();
        let until = map.entry(connection).or_insert(now);
        *until = (*until).max(now + wait);
        if map.len() > 10_000 {
            map.retain(|_, until| *until > now);
        }
    }

    /// `Retryable` with the time still to wait, while `connection` is held.
    fn check(&self, connection: ConnectionId) -> Result<(), SinkError> {
        let now = tokio::time::Instant::now();
        match self.map().get(&connection) {
            Some(until) if *until > now => Err(SinkError::Retryable {
                reason: "Slack asked the workspace to wait (Retry-After)".into(),
                after: Some(*until - now),
            }),
            _ => Ok(()),
        }
    }
}

/// The Slack adapter: verifies and reads Events API deliveries for the platform's one Slack app,
/// and posts replies with `chat.postMessage` into the thread they answer, one message a second
/// per channel at most, and none while the workspace waits out a `Retry-After`. Cheap to clone:
/// clones share the HTTP client, the pacing and the holds.
#[derive(Clone)]
pub struct SlackChannel {
    signing_secret: Option<Secret<String>>,
    /// The platform's own app (`A…`): events for any other app are refused.
    app_id: Option<String>,
    api: SlackApi,
    /// One message a second per channel.
    pacer: Pacer,
    /// Workspaces waiting out a 429's `Retry-After`.
    holds: Holds,
    max_attempts: u32,
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("api_base", &self.api.base)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

/// What `chat.postMessage` answers.
#[derive(Debug, Deserialize)]
struct PostAnswer {
    ok: bool,
    error: Option<String>,
    /// The posted message's timestamp: its id within the channel.
    ts: Option<String>,
}

/// Whether an `ok:false` error from the Web API may pass on its own. Everything else (a revoked
/// token, an uninstalled app, a deleted or archived channel, a malformed request) will not.
fn transient(error: &str) -> bool {
    matches!(
        error,
        "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "team_added_to_org"
    )
}

/// Whether an error means the installation's token will never work again.
fn revoked(error: &str) -> bool {
    matches!(
        error,
        "token_revoked" | "invalid_auth" | "account_inactive" | "not_authed" | "token_expired"
    )
}

/// Slack's largest recommended message; longer replies are sent in several messages.
const MAX_MESSAGE_CHARS: usize = 3_500;

impl SlackChannel {
    pub fn new(settings: &crate::config::SlackSettings) -> Self {
        Self {
            signing_secret: settings.signing_secret.clone(),
            app_id: settings.app_id.clone(),
            api: SlackApi::new(&settings.api_base_url),
            pacer: Pacer::new(Duration::from_secs(1)),
            holds: Holds::default(),
            max_attempts: 2,
        }
    }

    /// The Web API client (installation checks).
    pub fn api(&self) -> &SlackApi {
        &self.api
    }

    /// The platform's Slack app, if configured.
    pub fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }

    /// Posts one message. Nothing here waits out an outage or a long `Retry-After`: the engine
    /// parks the message and retries it later, so no turn is held open. Only a 5xx is retried
    /// once at once, since Slack's are usually momentary. After a 429 the workspace is held for
    /// its `Retry-After`: a post through it meanwhile (another thread's, already on its way
    /// through the engine) is not sent but answered `Retryable` with the time left.
    async fn post(
        &self,
        token: Secret<String>,
        connection: ConnectionId,
        reply: OutboundReply,
        fence: &Fence,
    ) -> Result<Option<String>, SinkError> {
        let ReplyTarget::Slack { channel, thread_ts } = &reply.target else {
            return Err(SinkError::Permanent("not a Slack reply target".into()));
        };
        // An empty thread starts a message of its own in the channel (a hand-off notice).
        let body = if thread_ts.is_empty() {
            serde_json::json!({ "channel": channel, "text": reply.text })
        } else {
            serde_json::json!({ "channel": channel, "thread_ts": thread_ts, "text": reply.text })
        };
        let url = format!("{}/chat.postMessage", self.api.base);
        let channel_key = format!("{connection}:{channel}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.holds.check(connection)?;
            self.pacer.wait(&channel_key).await;
            if !fence.holds() {
                return Err(SinkError::Fenced);
            }
            // A 429 may have come in while this waited for its channel's pace.
            self.holds.check(connection)?;
            let res = self
                .api
                .http
                .post(&url)
                .bearer_auth(token.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    SinkError::retryable(format!("Slack could not be reached: {}", e.without_url()))
                })?;
            let status = res.status();
            if status.as_u16() == 429 {
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 3600);
                tracing::warn!(
                    slack.channel = %channel,
                    retry_after,
                    "Slack rate-limited a reply"
                );
                self.holds
                    .hold(connection, Duration::from_secs(retry_after));
                return Err(SinkError::Retryable {
                    reason: "Slack rate-limited the reply".into(),
                    after: Some(Duration::from_secs(retry_after)),
                });
            }
            if status.is_server_error() {
                if attempt < self.max_attempts {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                return Err(SinkError::retryable(format!(
                    "Slack answered HTTP {status}"
                )));
            }
            if !status.is_success() {
                return Err(SinkError::Permanent(format!(
                    "Slack answered HTTP {status}"
                )));
            }
            let answer: PostAnswer = res.json().await.map_err(|e| {
                SinkError::retryable(format!(
                    "Slack's answer was not understood: {}",
                    e.without_url()
                ))
            })?;
            return match (answer.ok, answer.error) {
                (true, _) => Ok(answer.ts),
                (false, Some(error)) if revoked(&error) => Err(SinkError::Revoked(format!(
                    "Slack refused the bot token ({error}): install the app again"
                ))),
                (false, Some(error)) if transient(&error) => Err(SinkError::retryable(format!(
                    "Slack could not take the message: {error}"
                ))),
                (false, error) => Err(SinkError::Permanent(format!(
                    "Slack refused the message: {}",
                    error.as_deref().unwrap_or("unknown error")
                ))),
            };
        }
    }
}

impl Receive for SlackChannel {
    type Event = (Envelope, Event);

    fn kind(&self) -> ChannelKind {
        ChannelKind::Slack
    }

    fn inbound(&self, request: &WebhookRequest<'_>) -> Result<Inbound<Self::Event>, InboundError> {
        let secret = self
            .signing_secret
            .as_ref()
            .ok_or(InboundError::NotConfigured(
                "Slack is not configured on this server (KONSTRUCT_SLACK_SIGNING_SECRET).",
            ))?;
        verify_signature(
            secret.expose(),
            request.header("x-slack-request-timestamp"),
            request.header("x-slack-signature"),
            request.body,
            request.now,
        )
        .map_err(|e| InboundError::Unauthenticated(e.to_string()))?;
        let mut envelope: Envelope = super::read_json(request.body).map_err(|_| {
            InboundError::Malformed("The body is not a Slack Events API envelope.".into())
        })?;
        match envelope.kind.as_str() {
            "url_verification" => {
                let challenge = envelope.challenge.unwrap_or_default();
                return Ok(Inbound::Respond {
                    content_type: "application/json",
                    body: serde_json::json!({ "challenge": challenge }).to_string(),
                });
            }
            "event_callback" => {}
            _ => return Ok(Inbound::Ignore("a Slack delivery type we do not handle")),
        }
        let ours = self.app_id.as_deref().ok_or(InboundError::NotConfigured(
            "Slack events need the platform's Slack app id on this server (KONSTRUCT_SLACK_APP_ID).",
        ))?;
        if envelope.api_app_id.as_deref() != Some(ours) {
            return Err(InboundError::Forbidden(
                "This event is for another Slack app.".into(),
            ));
        }
        let (Some(team_id), Some(event_id), Some(event)) = (
            envelope.team_id.clone(),
            envelope.event_id.clone(),
            envelope.event.take(),
        ) else {
            return Err(InboundError::Malformed(
                "The event callback lacks team_id, event_id or event.".into(),
            ));
        };
        Ok(Inbound::Events(vec![Routed {
            external_id: team_id,
            event_id,
            event: (envelope, event),
        }]))
    }

    fn accept(
        &self,
        routed: Routed<Self::Event>,
        connection: &ResolvedConnection,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<super::Accepted, &'static str> {
        let ConnectionSettings::Slack(settings) = &connection.settings else {
            return Err("the connection is not a Slack installation");
        };
        let (_, event) = routed.event;
        let accepted = accept(&event, &settings.bot_user_id)?;
        // Someone from another workspace (a shared channel) is never one of the tenant's people,
        // and is known by their own workspace.
        let team = event
            .user_team
            .as_deref()
            .filter(|team| !team.is_empty())
            .unwrap_or(&settings.team_id);
        if accepted.in_thread && team != settings.team_id {
            return Err("a thread reply from another workspace");
        }
        Ok(super::Accepted::Message(InboundMessage {
            tenant_id: connection.tenant,
            channel: ChannelKind::Slack,
            connection_id: connection.id,
            agent_id: connection.agent_id,
            reply_to: ReplyTarget::Slack {
                channel: accepted.channel,
                thread_ts: accepted.thread_ts,
            },
            sender: Sender {
                id: format!("{team}:{}", accepted.user),
                display_name: None,
            },
            text: accepted.text,
            attachments: Vec::new(),
            unsupported: None,
            provider_event_id: routed.event_id,
            received_at,
            origin: if accepted.in_thread {
                shared::channel::Origin::Thread
            } else {
                shared::channel::Origin::Customer
            },
        }))
    }
}

impl ReplySink for SlackChannel {
    fn send(
        &self,
        connection: &ConnectionConfig,
        reply: OutboundReply,
        fence: Fence,
    ) -> BoxFuture<'static, Result<Option<String>, SinkError>> {
        let token = connection.require_token().cloned();
        let id = connection.id;
        let this = self.clone();
        Box::pin(async move { this.post(token?, id, reply, &fence).await })
    }

    fn max_part_chars(&self) -> usize {
        MAX_MESSAGE_CHARS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| {
            unreachable!("HMAC takes keys of any length");
        });
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_correct_signature_passes_and_any_change_fails() {
        let body = br#"{"type":"event_callback"}"#;
        let now = 1_700_000_000;
        let sig = sign("s3cret", "1700000000", body);
        assert_eq!(
            verify_signature("s3cret", Some("1700000000"), Some(&sig), body, now),
            Ok(())
        );
        let altered = br#"{"type":"event_callback" }"#;
        assert_eq!(
            verify_signature("s3cret", Some("1700000000"), Some(&sig), altered, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("other", Some("1700000000"), Some(&sig), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("s3cret", Some("1700000000"), None, body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature("s3cret", Some("1700000000"), Some(&sig), body, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature("s3cret", Some("soon"), Some(&sig), body, now),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify_signature(
                "s3cret",
                Some("-9223372036854775808"),
                Some(&sig),
                body,
                now
            ),
            Err(SignatureError::Stale)
        );
    }

    fn event(kind: &str) -> Event {
        Event {
            kind: kind.into(),
            channel: Some("C1".into()),
            user: Some("U1".into()),
            text: Some("<@UBOT> where is my order?".into()),
            ts: Some("1700000000.000100".into()),
            ..Event::default()
        }
    }

    #[test]
    fn mentions_and_direct_messages_are_answered_and_the_rest_is_not() {
        let got = accept(&event("app_mention"), "UBOT");
        assert_eq!(
            got,
            Ok(Accepted {
                channel: "C1".into(),
                user: "U1".into(),
                text: "where is my order?".into(),
                thread_ts: "1700000000.000100".into(),
                in_thread: false,
            })
        );
        let mut dm = event("message");
        dm.channel_type = Some("im".into());
        dm.thread_ts = Some("1699999999.000001".into());
        assert_eq!(
            accept(&dm, "UBOT").map(|a| a.thread_ts),
            Ok("1699999999.000001".into())
        );
        let mut own = event("app_mention");
        own.user = Some("UBOT".into());
        assert!(accept(&own, "UBOT").is_err());
        let mut bot = event("app_mention");
        bot.bot_id = Some("B1".into());
        assert!(accept(&bot, "UBOT").is_err());
        let mut edited = dm.clone();
        edited.subtype = Some("message_changed".into());
        assert!(accept(&edited, "UBOT").is_err());
        let mut channel_message = event("message");
        channel_message.channel_type = Some("channel".into());
        assert!(accept(&channel_message, "UBOT").is_err());
        // In a thread: without a mention it is read (not answered); with one, its
        // app_mention event carries it.
        let mut in_thread = channel_message.clone();
        in_thread.thread_ts = Some("1699999999.000001".into());
        in_thread.text = Some("I'll take this one".into());
        assert_eq!(accept(&in_thread, "UBOT").map(|a| a.in_thread), Ok(true));
        let mut mention_in_thread = in_thread.clone();
        mention_in_thread.text = Some("<@UBOT> help".into());
        assert!(accept(&mention_in_thread, "UBOT").is_err());
        // The thread's own first message is not a reply in it.
        let mut starter = in_thread.clone();
        starter.thread_ts = starter.ts.clone();
        assert!(accept(&starter, "UBOT").is_err());
    }

    /// A connection as the engine's snapshot has it, with a bot token.
    fn connection() -> ConnectionConfig {
        ConnectionConfig {
            id: ConnectionId::from_uuid(uuid::Uuid::nil()),
            kind: ChannelKind::Slack,
            status: shared::channel::ConnectionStatus::Active,
            agent_id: None,
            settings: ConnectionSettings::Slack(InstallationSettings {
                team_id: "T1".into(),
                team_name: None,
                enterprise_id: None,
                bot_user_id: "UBOT".into(),
                bot_id: None,
                app_id: None,
                scopes: Vec::new(),
                token_hint: "…abcd".into(),
            }),
            token: Some(Secret::new("xoxb-test".into())),
            token_error: None,
        }
    }

    fn reply(text: &str) -> OutboundReply {
        OutboundReply {
            tenant_id: shared::TenantId::from_uuid(uuid::Uuid::nil()),
            connection_id: ConnectionId::from_uuid(uuid::Uuid::nil()),
            target: ReplyTarget::Slack {
                channel: "C1".into(),
                thread_ts: "1700000000.000100".into(),
            },
            in_reply_to: "Ev1".into(),
            kind: shared::channel::ReplyKind::Answer,
            text: text.into(),
            context: shared::channel::ReplyContext::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fence_lost_while_a_reply_waits_for_its_channels_pace_stops_it_before_the_api() {
        use std::sync::atomic::{AtomicBool, Ordering};
        crate::llm::install_crypto();
        // The Web API: a listener that is never served, so any request would be seen on it.
        let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        api.set_nonblocking(true).unwrap();
        let channel = SlackChannel::new(&crate::config::SlackSettings {
            api_base_url: format!("http://{}/api", api.local_addr().unwrap()),
            ..crate::config::SlackSettings::default()
        });
        let held = Arc::new(AtomicBool::new(true));
        let fence = {
            let held = held.clone();
            Fence::new(move || held.load(Ordering::SeqCst))
        };
        // The channel's slot is taken: the next reply in it waits a second for its pace.
        channel
            .pacer
            .wait("00000000-0000-0000-0000-000000000000:C1")
            .await;
        let started = tokio::time::Instant::now();
        let send = tokio::spawn(channel.send(&connection(), reply("hello"), fence));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!send.is_finished(), "the reply waits for its pace");
        // The partition moves while it waits.
        held.store(false, Ordering::SeqCst);
        let sent = send.await.unwrap();
        assert_eq!(sent, Err(SinkError::Fenced));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "it waited its pace, then stopped"
        );
        assert!(
            matches!(api.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "nothing reached the API"
        );
    }

    #[test]
    fn only_the_bots_own_mention_is_stripped() {
        assert_eq!(
            strip_mention("<@UBOT>  hi <@UBOT|nia> there", "UBOT"),
            "hi there"
        );
        assert_eq!(
            strip_mention("ask <@UBOTX> about it", "UBOT"),
            "ask <@UBOTX> about it"
        );
        assert_eq!(strip_mention("<@UBOT>", "UBOT"), "");
    }
}
