//! `conversation.send`: a person's reply, recorded as pending parts by the API in the
//! transaction that took the conversation, is queued into the engine's ingest (the tenant's
//! partition, in the conversation's order), which sends it through the channel like any reply:
//! the reply protocol, the channel's pacing and tokens, WhatsApp's window. Queuing is
//! idempotent (ingest dedupes on the reply's event id, and a reply all sent is only
//! acknowledged), so the job may run twice.
//!
//! `handoff.notify`: mails the members who opted in and, when the tenant chose one, posts to a
//! Slack channel of its workspace. Only the agent, the channel, the reason and a link: never the
//! customer's words.

use futures_util::future::BoxFuture;
use serde_json::json;
use shared::ConversationId;
use shared::channel::{
    InboundMessage, Origin, OutboundReply, ReplyContext, ReplyKind, ReplyTarget, Sender,
};
use uuid::Uuid;

use crate::jobs::{Job, JobContext, JobError, JobHandler};
use crate::mail::templates;
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::jobs::{self as store_jobs, NewJob};
use crate::store::{StoreResult, TenantTx, inbox, tenants};

pub const SEND: &str = "conversation.send";
pub const NOTIFY: &str = "handoff.notify";

/// Hand-off mails one member gets per hour and tenant, at most.
pub const MAILS_PER_MEMBER_PER_HOUR: u64 = 20;

/// Enqueues the sending of a person's reply (`event`: its parts' `reply_to`).
pub async fn enqueue_send(
    tx: &mut TenantTx,
    conversation: ConversationId,
    event: &str,
) -> StoreResult<Option<Uuid>> {
    let mut job = NewJob::new(
        SEND,
        json!({ "conversation_id": conversation, "event": event }),
    );
    job.max_attempts = Some(30);
    store_jobs::enqueue(tx, &job).await
}

/// Enqueues telling the tenant's people of a hand-off, in the transaction that records it.
pub async fn enqueue_notify(
    tx: &mut TenantTx,
    conversation: ConversationId,
    escalation: Uuid,
) -> StoreResult<Option<Uuid>> {
    let mut job = NewJob::new(
        NOTIFY,
        json!({ "conversation_id": conversation, "escalation_id": escalation }),
    );
    job.max_attempts = Some(20);
    store_jobs::enqueue(tx, &job).await
}

fn unavailable(e: impl std::fmt::Display) -> JobError {
    tracing::warn!(error = %e, "an inbox job could not reach the database");
    JobError::retry("the database could not be reached")
}

fn field<T: std::str::FromStr>(job: &Job, name: &str) -> Result<T, JobError> {
    job.payload
        .get(name)
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| JobError::permanent(format!("the job names no {name}")))
}

/// Queues a person's reply into the engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendReply;

impl JobHandler for SendReply {
    fn kind(&self) -> &'static str {
        SEND
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let tenant = job
                .tenant
                .ok_or_else(|| JobError::permanent("the job names no tenant"))?;
            let conversation: Uuid = field(job, "conversation_id")?;
            let event: String = field(job, "event")?;
            let ingest = ctx
                .ingest
                .as_ref()
                .ok_or_else(|| JobError::permanent("this node cannot queue messages"))?;
            let mut tx = ctx.store.tenant_tx(tenant).await.map_err(unavailable)?;
            let Some(target) = inbox::delivery(&mut tx, ConversationId::from_uuid(conversation))
                .await
                .map_err(unavailable)?
            else {
                return Ok(()); // The conversation is gone (erased, tenant deleted).
            };
            tx.commit().await.map_err(unavailable)?;
            let Some(reply_to) = target.reply_target else {
                return Err(JobError::permanent(
                    "the conversation has no reply address yet; answer in the channel",
                ));
            };
            let message = InboundMessage {
                tenant_id: tenant,
                channel: target.channel,
                connection_id: target.connection_id,
                agent_id: target.agent_id,
                reply_to,
                // The customer, whom the reply goes to (templates greet them by name).
                sender: Sender {
                    id: target.customer_id.unwrap_or_default(),
                    display_name: target.customer_name,
                },
                text: String::new(),
                attachments: Vec::new(),
                unsupported: None,
                provider_event_id: event,
                // WhatsApp's window runs from the customer's last message, never from this.
                received_at: target
                    .last_inbound_at
                    .unwrap_or(chrono::DateTime::UNIX_EPOCH),
                origin: Origin::Person,
            };
            ingest.enqueue(&message).await.map_err(|e| {
                tracing::warn!(error = %e, "could not queue a person's reply");
                JobError::retry("the message queue could not be reached")
            })?;
            Ok(())
        })
    }
}

/// Tells the tenant's people of a hand-off.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotifyHandoff;

impl JobHandler for NotifyHandoff {
    fn kind(&self) -> &'static str {
        NOTIFY
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let tenant = job
                .tenant
                .ok_or_else(|| JobError::permanent("the job names no tenant"))?;
            let conversation = ConversationId::from_uuid(field::<Uuid>(job, "conversation_id")?);
            let mut tx = ctx.store.tenant_tx(tenant).await.map_err(unavailable)?;
            let Some(summary) = inbox::get(&mut tx, conversation)
                .await
                .map_err(unavailable)?
            else {
                return Ok(());
            };
            let packet = inbox::latest_packet(&mut tx, conversation)
                .await
                .map_err(unavailable)?;
            let recipients = inbox::handoff_recipients(&mut tx)
                .await
                .map_err(unavailable)?;
            let slack_channel = inbox::handoff_settings(&mut tx)
                .await
                .map_err(unavailable)?
                .1;
            let tenant_name = tenants::current(&mut tx)
                .await
                .map_err(unavailable)?
                .map(|t| t.name)
                .unwrap_or_default();
            // The workspace the channel is in: the conversation's own when it came from Slack,
            // else the tenant's Slack connection whose token opens (the same one every time).
            let slack = match (&slack_channel, &ctx.keyring) {
                (Some(_), Some(keyring)) => {
                    let mut usable: Vec<_> =
                        crate::engine::config::connections_in(&mut tx, keyring)
                            .await
                            .map_err(unavailable)?
                            .into_values()
                            .filter(|c| {
                                c.kind == shared::channel::ChannelKind::Slack
                                    && c.status == shared::channel::ConnectionStatus::Active
                                    && c.token.is_some()
                            })
                            .collect();
                    usable.sort_by_key(|c| (c.id != summary.connection_id, c.id.to_string()));
                    usable.into_iter().next()
                }
                _ => None,
            };
            tx.commit().await.map_err(unavailable)?;
            let agent = summary
                .agent_name
                .clone()
                .unwrap_or_else(|| "The AI".into());
            let channel = summary.channel.as_str();
            // Our own sentence for the reason, never the agent's words (which the customer shaped).
            let why = reason_sentence(packet.as_ref().map(|p| p.reason.as_str()));
            let link = ctx
                .people
                .as_ref()
                .map(|p| p.public_url.link(&format!("/inbox/{conversation}")))
                .unwrap_or_default();
            // Attempts after the first only do what the first could not: a mail the server took
            // is not sent again unless the job failed before recording it (at least once).
            let mut mailed = 0u32;
            let mut capped = 0u32;
            let mut mail_error = None;
            if !recipients.is_empty() {
                match ctx.people.as_ref().and_then(|p| p.mailer.as_ref()) {
                    Some(mailer) => {
                        for (user, email, _) in &recipients {
                            // A flood of hand-offs does not flood a member's mailbox: past the
                            // hourly cap they read the inbox (the badge and the live stream).
                            let key = ctx.redis.key(&format!("{tenant}:handoff_mails:{user}"));
                            match ctx
                                .redis
                                .count_within_limits(&[(key, MAILS_PER_MEMBER_PER_HOUR)], 3600)
                                .await
                            {
                                Ok(None) => {}
                                Ok(Some(_)) => {
                                    capped += 1;
                                    continue;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "could not count hand-off mails; sending");
                                }
                            }
                            let mail = templates::handoff(&templates::Handoff {
                                to: email,
                                tenant_name: &tenant_name,
                                agent_name: &agent,
                                channel,
                                why: &why,
                                link: &link,
                            });
                            match mailer.send(&mail, Some(&tenant_name)).await {
                                Ok(()) => mailed += 1,
                                Err(e) => mail_error = Some(e),
                            }
                        }
                    }
                    None => {
                        tracing::warn!(tenant.id = %tenant, "hand-off mails wait for a mail server (KONSTRUCT_SMTP_URL)")
                    }
                }
            }
            let mut posted = false;
            if let (Some(channel_id), Some(connection), Some(channels)) =
                (&slack_channel, &slack, &ctx.channels)
            {
                let sink: &dyn crate::channels::ReplySink = channels.slack.as_ref();
                let text = format!(
                    "{} handed a {channel} conversation to a person. {why} {link}",
                    slack_escape(&agent)
                );
                match sink
                    .send(
                        connection,
                        OutboundReply {
                            tenant_id: tenant,
                            connection_id: connection.id,
                            target: ReplyTarget::Slack {
                                channel: channel_id.clone(),
                                thread_ts: String::new(),
                            },
                            in_reply_to: format!("handoff:{conversation}"),
                            kind: ReplyKind::Notice,
                            text,
                            context: ReplyContext::default(),
                        },
                        crate::channels::Fence::open(),
                    )
                    .await
                {
                    Ok(_) => posted = true,
                    Err(e) => {
                        tracing::warn!(tenant.id = %tenant, error = %e, "could not post a hand-off to Slack")
                    }
                }
            }
            let mut tx = ctx.store.tenant_tx(tenant).await.map_err(unavailable)?;
            audit::append(
                &mut tx,
                &NewEvent::about(
                    Actor::System,
                    Action::HandoffNotified,
                    Target::Conversation(conversation),
                    json!({
                        "mailed": mailed,
                        "capped": capped,
                        "recipients": recipients.len(),
                        "slack": posted,
                        "attempt": job.attempt,
                    }),
                ),
            )
            .await
            .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            match mail_error {
                Some(crate::mail::MailError::Transient(reason)) if mailed == 0 => {
                    Err(JobError::retry(reason))
                }
                _ => Ok(()),
            }
        })
    }
}

/// The reason of a hand-off, in our words, for mails and channel posts.
fn reason_sentence(reason: Option<&str>) -> String {
    match reason {
        Some("keywords") => "The customer's message matched a hand-off keyword.",
        Some("human_requested") => "The customer asked for a person.",
        Some("failed_resolutions") => "The AI could not resolve the request.",
        Some("agent_requested") => "The AI decided a person should take over.",
        Some("budget") => "The month's AI budget is spent.",
        _ => "A customer needs a person.",
    }
    .to_string()
}

/// Text Slack shows as written: `&`, `<` and `>` escaped, so a name cannot ping a channel or
/// make a link.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_posts_cannot_ping_or_link_and_reasons_are_ours() {
        assert_eq!(
            slack_escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(
            reason_sentence(Some("agent_requested")),
            "The AI decided a person should take over."
        );
        assert_eq!(
            reason_sentence(Some("anything else")),
            "A customer needs a person."
        );
    }
}
