//! The reply protocol: a reply is produced once and sent once.
//!
//! 1. The turn's result — the reply's parts, usage, escalation and audit events — is recorded as
//!    *pending* in one transaction (`commit`), which also holds the partition's fence, so a node
//!    that lost the partition cannot record anything.
//! 2. Each pending part is sent through the channel's `ReplySink` (`deliver`), but only while this
//!    node still holds the partition's lease.
//! 3. Each part is marked *sent*, with the provider's message id, in a fenced transaction.
//! 4. The entry is acknowledged (by the caller).
//!
//! An entry delivered again resumes from what was recorded: pending parts are sent without
//! asking the LLM again; a reply whose parts are all sent is only acknowledged. The one window
//! in which a part can be sent twice is between the channel accepting it and its mark: a crash
//! there re-sends that part.

use shared::ConversationId;
use shared::channel::{DeliveryStatus, InboundMessage, OutboundReply, ReplyContext, ReplyKind};

use super::ingest::Delivery;
use super::turn::{EngineDeps, TurnError};
use crate::channels::{ConnectionConfig, Fence, SinkError};
use crate::failpoint;
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::conversations::{self, ReplyPart};
use crate::store::{TenantTx, channels, fences, inbox};

/// Splits `text` into parts of at most `max` characters, at a paragraph, line, sentence or word
/// boundary (in that order of preference) where one is in the last half of the part.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        let cut = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let head = &rest[..cut];
        // Prefer a boundary in the last half of the part.
        let floor = head.len() / 2;
        // (separator, bytes of it that stay with the part before): a sentence keeps its stop.
        let at = [
            ("\n\n", 0),
            ("\n", 0),
            (". ", 1),
            ("! ", 1),
            ("? ", 1),
            ("。", 3),
            (" ", 0),
        ]
        .iter()
        .find_map(|(sep, keep)| head.rfind(sep).filter(|&i| i > floor).map(|i| i + keep))
        .unwrap_or(cut);
        parts.push(rest[..at].trim_end().to_string());
        rest = rest[at..].trim_start();
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

/// Opens the transaction that records a turn's result for `d`, holding the partition's fence.
pub async fn fenced_tx(deps: &EngineDeps, d: &Delivery) -> Result<TenantTx, TurnError> {
    let mut tx = deps.store.tenant_tx(d.message.tenant_id).await?;
    fences::hold(&mut tx, d.partition, d.epoch).await?;
    Ok(tx)
}

/// Records the reply's parts as pending in `tx` (which the caller commits after adding the rest
/// of the turn's result).
pub async fn record_pending(
    deps: &EngineDeps,
    tx: &mut TenantTx,
    d: &Delivery,
    conversation: ConversationId,
    kind: ReplyKind,
    text: &str,
    status: DeliveryStatus,
) -> Result<Vec<ReplyPart>, TurnError> {
    let max = deps
        .sinks
        .get(&d.message.channel)
        .map_or(usize::MAX, |s| s.max_part_chars());
    let parts = split(text, max);
    // Recorded at the engine's clock's time: the day of silence before an AI disclosure is
    // measured on it.
    let ids = conversations::record_reply(
        tx,
        conversation,
        &d.message.provider_event_id,
        kind,
        &parts,
        deps.settings.clock.now(),
        status,
    )
    .await?;
    Ok(ids
        .into_iter()
        .zip(parts)
        .enumerate()
        .map(|(i, (id, body))| ReplyPart {
            id,
            part: i16::try_from(i).unwrap_or(i16::MAX),
            kind,
            body,
            status,
        })
        .collect())
}

/// How many times one part is sent within its turn while only its recipient is limited
/// (WhatsApp's 131056, too many messages to this customer), waiting as the channel asks in
/// between, before the entry is parked. Waiting here holds up only this conversation; a parked
/// entry holds up every later message of its connection.
pub const RECIPIENT_LIMITED_ATTEMPTS: u32 = 4;

/// Sends the parts not sent yet, in order, marking each sent. Stops with `Fenced` as soon as
/// this node no longer holds the partition (the new owner sends what is left).
///
/// Each part is judged against the time the customer last wrote in `conversation` (WhatsApp's
/// 24-hour window), or the answered message's time if that is later. A part refused only because
/// its recipient had too many messages is sent again within the turn, up to
/// `RECIPIENT_LIMITED_ATTEMPTS` times.
///
/// A part the channel can never deliver (outside WhatsApp's window with no template) is marked
/// failed with the reason and audited, and the rest of the reply goes on; credentials refused for
/// good fail the connection (audited, shown on the Channels page) before the error is returned.
/// Every failure is noted in the connection's health; a success clears it.
pub async fn deliver(
    deps: &EngineDeps,
    d: &Delivery,
    connection: &ConnectionConfig,
    conversation: ConversationId,
    parts: &[ReplyPart],
) -> Result<(), TurnError> {
    let m = &d.message;
    let sink = deps
        .sinks
        .get(&m.channel)
        .cloned()
        .ok_or(TurnError::NoSink(m.channel))?;
    let agent_name = match deps.snapshots.get(m.tenant_id) {
        Some(config) => config.agent(m.agent_id).map(|a| a.profile.name.clone()),
        None => None,
    };
    let customer_wrote_at = {
        let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
        let last = conversations::last_inbound_at(&mut tx, conversation).await?;
        tx.commit().await?;
        Some(last.map_or(m.received_at, |last| last.max(m.received_at)))
    };
    for part in parts.iter().filter(|p| p.status == DeliveryStatus::Pending) {
        // Ownership is checked at send time: an AI part goes only while the AI owns the
        // conversation, and this check and any claim are serialised on the conversation's row.
        deps.settings
            .pauses
            .at(super::turn::deps::BEFORE_SEND, conversation)
            .await;
        let mut attempt = 1;
        let sent = loop {
            if !deps.ownership.holds(d.partition, d.epoch) {
                return Err(TurnError::Fenced);
            }
            // Checked before every attempt: a claim during a wait for the channel stops it.
            let cleared = {
                let mut tx = fenced_tx(deps, d).await?;
                let cleared = inbox::may_send(&mut tx, part.id).await?;
                tx.commit().await?;
                cleared
            };
            if !cleared {
                break None;
            }
            let sent = sink
                .send(
                    connection,
                    OutboundReply {
                        tenant_id: m.tenant_id,
                        connection_id: m.connection_id,
                        target: m.reply_to.clone(),
                        in_reply_to: m.provider_event_id.clone(),
                        kind: part.kind,
                        text: part.body.clone(),
                        context: ReplyContext {
                            customer_wrote_at,
                            now: Some(deps.settings.clock.now()),
                            customer_name: m.sender.display_name.clone(),
                            agent_name: agent_name.clone(),
                        },
                    },
                    {
                        let (ownership, partition, epoch) =
                            (deps.ownership.clone(), d.partition, d.epoch);
                        Fence::new(move || ownership.holds(partition, epoch))
                    },
                )
                .await;
            match sent {
                Err(SinkError::RecipientLimited { after, .. })
                    if attempt < RECIPIENT_LIMITED_ATTEMPTS =>
                {
                    tracing::info!(tenant.id = %m.tenant_id, channel = m.channel.as_str(), attempt, wait_ms = after.as_millis() as u64, "the recipient is limited; sending the part again after a wait");
                    tokio::time::sleep(after).await;
                    attempt += 1;
                }
                sent => break Some(sent),
            }
        };
        let Some(sent) = sent else {
            tracing::info!(tenant.id = %m.tenant_id, conversation.id = %conversation, "a person has the conversation; the AI's part is not sent");
            continue;
        };
        let sent = match sent {
            Ok(sent) => sent,
            Err(SinkError::Undeliverable(reason)) => {
                tracing::warn!(tenant.id = %m.tenant_id, channel = m.channel.as_str(), reason = %reason, "a reply part cannot be delivered");
                let mut tx = fenced_tx(deps, d).await?;
                conversations::mark_failed(&mut tx, part.id, &reason).await?;
                channels::note_error(&mut tx, m.connection_id, Some(&reason)).await?;
                audit::append(
                    &mut tx,
                    &NewEvent::about(
                        Actor::System,
                        Action::ReplyUndeliverable,
                        Target::Connection(m.connection_id),
                        serde_json::json!({
                            "in_reply_to": m.provider_event_id,
                            "part": part.part,
                            "channel": m.channel.as_str(),
                            "reason": reason,
                        }),
                    ),
                )
                .await?;
                tx.commit().await?;
                continue;
            }
            // The partition moved while the part waited for the channel: its new owner sends it.
            Err(SinkError::Fenced) => return Err(TurnError::Fenced),
            Err(error) => {
                note_failure(deps, m, &error).await;
                return Err(TurnError::Send(error));
            }
        };
        failpoint::hit(failpoint::AFTER_POST).await;
        let mut tx = fenced_tx(deps, d).await?;
        let (status, code) = conversations::mark_sent(&mut tx, part.id, sent.as_deref()).await?;
        channels::note_error(&mut tx, m.connection_id, None).await?;
        if status == DeliveryStatus::Failed {
            audit::append(
                &mut tx,
                &failed_event(m.connection_id, sent.as_deref(), code),
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// The audit record of a message the channel accepted and later reported undeliverable.
pub fn failed_event(
    connection: shared::ConnectionId,
    provider_message_id: Option<&str>,
    error_code: Option<i64>,
) -> NewEvent {
    NewEvent::about(
        Actor::System,
        Action::ReplyFailed,
        Target::Connection(connection),
        serde_json::json!({
            "provider_message_id": provider_message_id,
            "error_code": error_code,
        }),
    )
}

/// Notes a send failure in the connection's health; a revoked credential also fails the
/// connection (audited once). Best effort: the turn's own error is what matters.
async fn note_failure(deps: &EngineDeps, m: &InboundMessage, error: &SinkError) {
    let result = async {
        let mut tx = deps.store.tenant_tx(m.tenant_id).await?;
        let reason = match error {
            SinkError::Retryable { reason, .. }
            | SinkError::RecipientLimited { reason, .. }
            | SinkError::Permanent(reason)
            | SinkError::Undeliverable(reason)
            | SinkError::Revoked(reason) => reason.as_str(),
            SinkError::Fenced => return Ok(()),
        };
        channels::note_error(&mut tx, m.connection_id, Some(reason)).await?;
        if matches!(error, SinkError::Revoked(_)) && channels::fail(&mut tx, m.connection_id).await? {
            tracing::error!(tenant.id = %m.tenant_id, connection.id = %m.connection_id, "the channel refused the connection's credentials; connection failed");
            audit::append(
                &mut tx,
                &NewEvent::about(
                    Actor::System,
                    Action::ChannelFailed,
                    Target::Connection(m.connection_id),
                    serde_json::json!({ "kind": m.channel.as_str(), "reason": reason }),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok::<_, crate::store::StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not record a channel failure");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part_and_long_text_splits_at_boundaries_without_losing_words() {
        assert_eq!(split("hello", 10), ["hello"]);
        assert_eq!(split("", 10), [""]);
        let text = "one two three four five six seven eight nine ten";
        let parts = split(text, 12);
        assert!(parts.iter().all(|p| p.chars().count() <= 12), "{parts:?}");
        assert_eq!(parts.join(" "), text);
        let paragraphs = format!("{}\n\n{}", "a".repeat(8), "b".repeat(8));
        assert_eq!(split(&paragraphs, 12), ["a".repeat(8), "b".repeat(8)]);
        // A sentence boundary wins over a later word boundary, and keeps its full stop.
        let sentences = "Your order left today. It should arrive by Friday at noon.";
        let parts = split(sentences, 40);
        assert_eq!(
            parts,
            [
                "Your order left today.",
                "It should arrive by Friday at noon."
            ]
        );
        // No boundary at all: cut at the limit, on a character boundary.
        let word = "é".repeat(25);
        let parts = split(&word, 10);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), word);
    }
}
