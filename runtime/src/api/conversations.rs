//! `/api/tenants/{tenant_id}/conversations` and `/inbox`: conversations with their transcripts
//! and hand-off packets (`ConversationsRead`: admins and operators), and what people do with
//! them (`ConversationsHandle`: admins, and platform admins impersonating): claim, assign, reply
//! through the conversation's channel, write private notes, snooze, resolve, hand back to the
//! AI. `…/inbox/events` is the live stream (server-sent events).
//!
//! A person's reply is recorded as pending parts in the transaction that gives them the
//! conversation (withholding any AI part not yet sent), with a `conversation.send` job that
//! queues it into the engine; the engine sends it like any reply, in the conversation's order.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::Utc;
use shared::auth::Permission;
use shared::channel::{ChannelKind, ConnectionStatus, DeliveryStatus, MessageDirection, ReplyKind};
use shared::inbox::{
    AssignRequest, BusinessHours, ConversationDetail, ConversationQuery, ConversationSummary,
    HandBackRequest, HandoffSettings, InboxCounts, InboxEvent, InboxStatus, NotificationSettings,
    Owner, ReplyAvailability, StatusRequest, TextRequest, TranscriptItem,
};
use shared::resources::Page;
use shared::{ConversationId, ErrorBody, ErrorCode, TenantId};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, PageQuery, record};
use crate::channels::{ConnectionSettings, ReplySink};
use crate::engine::turn::state;
use crate::inbox::live::{Change, Refused};
use crate::store::audit::{Action, Target};
use crate::store::inbox::{self, Locked, Taker};
use crate::store::{TenantTx, channels as store_channels, conversations};

/// The longest reply or note a person may write.
pub const MAX_REPLY_CHARS: usize = 4000;
pub const MAX_NOTE_CHARS: usize = 10_000;
/// How far ahead a conversation may be snoozed.
pub const MAX_SNOOZE_DAYS: i64 = 90;

fn not_found() -> ApiError {
    ApiError::not_found("The conversation")
}

/// The conversation's tenant and id from the path.
fn ids(path: web::Path<(Uuid, Uuid)>) -> ConversationId {
    ConversationId::from_uuid(path.into_inner().1)
}

/// The tenant's conversations, newest activity first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ConversationQuery),
    responses((status = 200, body = Page<ConversationSummary>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<ConversationQuery>,
) -> Result<web::Json<Page<ConversationSummary>>, ApiError> {
    let query = query.into_inner();
    if query.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::invalid_field("q", "at most 200 characters"));
    }
    let paging = PageQuery {
        page: query.page,
        per_page: query.per_page,
    }
    .resolve()?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (items, total) = inbox::list(
        &mut tx,
        &query,
        auth.principal().user.id,
        paging.limit(),
        paging.offset(),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(
        paging.page(items, i64::try_from(total).unwrap_or(i64::MAX)),
    ))
}

/// Whether a person can reply through the conversation's channel now.
async fn availability(
    tx: &mut TenantTx,
    state: &AppState,
    c: &Locked,
) -> Result<ReplyAvailability, ApiError> {
    let no = |why: &str| ReplyAvailability {
        can_reply: false,
        note: Some(why.to_string()),
    };
    if c.reply_target.is_none() {
        return Ok(no(
            "This conversation started before replies from the portal; answer in the channel, \
             or wait for the customer's next message.",
        ));
    }
    let Some(connection) = store_channels::get(tx, c.connection_id).await? else {
        return Ok(no("The channel is no longer connected."));
    };
    if connection.kind != ChannelKind::Web && connection.status != ConnectionStatus::Active {
        return Ok(no(
            "The channel is disconnected or its credentials were refused; connect it again on \
             the Channels page.",
        ));
    }
    if connection.kind == ChannelKind::Whatsapp {
        let open = c
            .last_inbound_at
            .is_some_and(|at| state.clock.now() - at < chrono::TimeDelta::hours(24));
        if !open {
            let template = match ConnectionSettings::parse(connection.kind, &connection.settings) {
                Ok(ConnectionSettings::Whatsapp(s)) => s.templates.first().map(|t| t.name.clone()),
                _ => None,
            };
            return Ok(match template {
                Some(name) => ReplyAvailability {
                    can_reply: true,
                    note: Some(format!(
                        "The customer last wrote more than 24 hours ago: WhatsApp allows only an \
                         approved template now, so the template “{name}” is sent instead of \
                         your text."
                    )),
                },
                None => no(
                    "The customer last wrote more than 24 hours ago and this number has no \
                     approved template: WhatsApp does not allow a free-form message until the \
                     customer writes again.",
                ),
            });
        }
    }
    Ok(ReplyAvailability {
        can_reply: true,
        note: None,
    })
}

/// One conversation: its packet first, its transcript, and whether a reply can go out.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ("conversation_id" = Uuid, Path)),
    responses((status = 200, body = ConversationDetail), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<ConversationDetail>, ApiError> {
    let id = ids(path);
    let mut tx = state.store.tenant_snapshot(auth.tenant()?).await?;
    let conversation = inbox::get(&mut tx, id).await?.ok_or_else(not_found)?;
    let target = inbox::delivery(&mut tx, id).await?.ok_or_else(not_found)?;
    let locked = Locked {
        id,
        owner: conversation.owner,
        assignee_id: conversation.assignee_id,
        status: conversation.status,
        channel: conversation.channel,
        connection_id: conversation.connection_id,
        agent_id: conversation.agent_id,
        end_user_id: conversation.end_user_id,
        reply_target: target.reply_target,
        last_inbound_at: target.last_inbound_at,
        handed_off_at: conversation.handed_off_at,
        external_key: String::new(),
    };
    let reply = availability(&mut tx, &state, &locked).await?;
    let packet = inbox::latest_packet(&mut tx, id).await?;
    let (transcript, truncated) = inbox::transcript(
        &mut tx,
        id,
        conversation.agent_name.as_deref(),
        &conversation.customer,
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(ConversationDetail {
        conversation,
        packet,
        transcript,
        truncated,
        reply,
    }))
}

/// Who the caller is as the one who takes a conversation: a member by id; a platform admin (not
/// a member) by name.
async fn taker_name(
    tx: &mut TenantTx,
    auth: &Authorized,
) -> Result<(Option<Uuid>, String), ApiError> {
    let user = &auth.principal().user;
    match inbox::member_name(tx, user.id).await? {
        Some(name) => Ok((Some(user.id), name)),
        None => {
            let name = if user.display_name.trim().is_empty() {
                user.email.clone()
            } else {
                user.display_name.clone()
            };
            Ok((None, format!("{name} (platform support)")))
        }
    }
}

fn taker(member: Option<Uuid>, name: &str) -> Taker<'_> {
    match member {
        Some(id) => Taker::Member(id),
        None => Taker::Colleague(name),
    }
}

async fn locked(tx: &mut TenantTx, id: ConversationId) -> Result<Locked, ApiError> {
    inbox::lock(tx, id).await?.ok_or_else(not_found)
}

async fn summary_after(
    mut tx: TenantTx,
    id: ConversationId,
) -> Result<web::Json<ConversationSummary>, ApiError> {
    let summary = inbox::get(&mut tx, id).await?.ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(web::Json(summary))
}

/// Take the conversation: from the queue, from the AI (which stops at once: its replies not
/// yet sent are withheld), or from another person.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/claim", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ("conversation_id" = Uuid, Path)),
    responses((status = 200, body = ConversationSummary), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn claim(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<ConversationSummary>, ApiError> {
    let id = ids(path);
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let c = locked(&mut tx, id).await?;
    let (member, name) = taker_name(&mut tx, &auth).await?;
    if c.owner == Owner::Person && member.is_some() && c.assignee_id == member {
        return summary_after(tx, id).await; // Already the caller's.
    }
    let withheld = inbox::set_owner(&mut tx, id, Some(taker(member, &name))).await?;
    inbox::add_event(
        &mut tx,
        id,
        "claimed",
        Some(auth.principal().user.id),
        Some(&name),
        "",
        serde_json::json!({ "from": c.owner.as_str(), "withheld_parts": withheld }),
    )
    .await?;
    record(
        &mut tx,
        &auth,
        Action::ConversationClaimed,
        Target::Conversation(id),
        serde_json::json!({ "from": c.owner.as_str(), "withheld_parts": withheld }),
    )
    .await?;
    summary_after(tx, id).await
}

/// Give the conversation to a member, or back to the queue (`null`).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/assign", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ("conversation_id" = Uuid, Path)),
    request_body = AssignRequest,
    responses((status = 200, body = ConversationSummary), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn assign(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<AssignRequest>,
) -> Result<web::Json<ConversationSummary>, ApiError> {
    let id = ids(path);
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let c = locked(&mut tx, id).await?;
    let (kind, name, withheld) = match body.assignee_id {
        Some(member) => {
            let name = inbox::assignable_name(&mut tx, member)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "assignee_id",
                        "must be a customer admin of this tenant (operators only read)",
                    )
                })?;
            let withheld = inbox::set_owner(&mut tx, id, Some(Taker::Member(member))).await?;
            ("assigned", Some(name), withheld)
        }
        None => {
            if c.owner == Owner::Ai {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "The AI has this conversation; claim it, or assign it to a member.",
                ));
            }
            let withheld = inbox::set_owner(&mut tx, id, None).await?;
            ("unassigned", None, withheld)
        }
    };
    let (_, actor) = taker_name(&mut tx, &auth).await?;
    inbox::add_event(
        &mut tx,
        id,
        kind,
        Some(auth.principal().user.id),
        Some(&actor),
        "",
        serde_json::json!({ "assignee": name, "assignee_id": body.assignee_id }),
    )
    .await?;
    record(
        &mut tx,
        &auth,
        Action::ConversationAssigned,
        Target::Conversation(id),
        serde_json::json!({ "assignee_id": body.assignee_id, "withheld_parts": withheld }),
    )
    .await?;
    summary_after(tx, id).await
}

fn text_of(body: &TextRequest, max: usize) -> Result<String, ApiError> {
    let text = body.text.trim();
    let mut errors = Errors::default();
    errors.text("text", text, true, max);
    errors.finish()?;
    Ok(text.to_string())
}

/// The most characters one part may have on `channel`.
fn max_part_chars(state: &AppState, channel: ChannelKind) -> usize {
    match channel {
        ChannelKind::Slack => state.channels.slack.max_part_chars(),
        ChannelKind::Whatsapp => state.channels.whatsapp.max_part_chars(),
        ChannelKind::Web => usize::MAX,
    }
}

/// Reply to the customer through the conversation's channel, as a person: the caller takes
/// the conversation, and the reply goes out through the engine.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/replies", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ("conversation_id" = Uuid, Path)),
    request_body = TextRequest,
    responses((status = 201, body = TranscriptItem), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, description = "the channel cannot take a reply now (why in the message)", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn reply(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<TextRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = ids(path);
    let text = text_of(&body, MAX_REPLY_CHARS)?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let c = locked(&mut tx, id).await?;
    let can = availability(&mut tx, &state, &c).await?;
    if !can.can_reply {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            can.note
                .unwrap_or_else(|| "A reply cannot be sent now.".into()),
        ));
    }
    let (member, name) = taker_name(&mut tx, &auth).await?;
    let event = format!("person:{}", Uuid::new_v4());
    let parts = crate::engine::reply::split(&text, max_part_chars(&state, c.channel));
    let now = state.clock.now();
    let ids = conversations::record_reply(
        &mut tx,
        id,
        &event,
        ReplyKind::Human,
        &parts,
        now,
        DeliveryStatus::Pending,
    )
    .await?;
    inbox::set_author(&mut tx, &event, member, &name).await?;
    let withheld = inbox::set_owner(&mut tx, id, Some(taker(member, &name))).await?;
    inbox::note_human_reply(&mut tx, id).await?;
    crate::inbox::jobs::enqueue_send(&mut tx, id, &event).await?;
    let first = ids.first().copied().unwrap_or_default();
    record(
        &mut tx,
        &auth,
        Action::ConversationReplied,
        Target::Conversation(id),
        serde_json::json!({
            "message": first,
            "parts": ids.len(),
            "channel": c.channel.as_str(),
            "withheld_parts": withheld,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(TranscriptItem::Message {
        id: first,
        at: now,
        direction: MessageDirection::Outbound,
        kind: Some(ReplyKind::Human),
        author: Some(name),
        body: text,
        delivery: Some(DeliveryStatus::Pending),
        failure: None,
        citations: Vec::new(),
    }))
}

/// A private note: kept with the conversation, never sent to any channel.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/notes", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ("conversation_id" = Uuid, Path)),
    request_body = TextRequest,
    responses((status = 201, body = TranscriptItem), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn note(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<TextRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = ids(path);
    let text = text_of(&body, MAX_NOTE_CHARS)?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    locked(&mut tx, id).await?;
    let (_, name) = taker_name(&mut tx, &auth).await?;
    let (event, at) = inbox::add_event(
        &mut tx,
        id,
        "note",
        Some(auth.principal().user.id),
        Some(&name),
        &text,
        serde_json::json!({}),
    )
    .await?;
    record(
        &mut tx,
        &auth,
        Action::ConversationNoteAdded,
        Target::Conversation(id),
        serde_json::json!({ "note": event }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(TranscriptItem::Event {
        id: event,
        at,
        kind: "note".into(),
        actor: Some(name),
        body: text,
        details: serde_json::json!({}),
    }))
}

/// Open, pending (waiting on the customer), snoozed until a time, or resolved.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/status", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ("conversation_id" = Uuid, Path)),
    request_body = StatusRequest,
    responses((status = 200, body = ConversationSummary), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn status(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<StatusRequest>,
) -> Result<web::Json<ConversationSummary>, ApiError> {
    let id = ids(path);
    let body = body.into_inner();
    let now = Utc::now();
    match (body.status, body.snoozed_until) {
        (InboxStatus::Snoozed, None) => {
            return Err(ApiError::invalid_field(
                "snoozed_until",
                "is required to snooze",
            ));
        }
        (InboxStatus::Snoozed, Some(until))
            if until <= now || until > now + chrono::TimeDelta::days(MAX_SNOOZE_DAYS) =>
        {
            return Err(ApiError::invalid_field(
                "snoozed_until",
                format!("must be in the future and within {MAX_SNOOZE_DAYS} days"),
            ));
        }
        (InboxStatus::Snoozed, Some(_)) => {}
        (_, Some(_)) => {
            return Err(ApiError::invalid_field(
                "snoozed_until",
                "is only for snoozed conversations",
            ));
        }
        (_, None) => {}
    }
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let c = locked(&mut tx, id).await?;
    inbox::set_status(&mut tx, id, body.status, body.snoozed_until).await?;
    let (_, name) = taker_name(&mut tx, &auth).await?;
    inbox::add_event(
        &mut tx,
        id,
        "status",
        Some(auth.principal().user.id),
        Some(&name),
        "",
        serde_json::json!({
            "from": c.status.as_str(),
            "status": body.status.as_str(),
            "snoozed_until": body.snoozed_until,
        }),
    )
    .await?;
    record(
        &mut tx,
        &auth,
        Action::ConversationStatusChanged,
        Target::Conversation(id),
        serde_json::json!({ "from": c.status.as_str(), "status": body.status.as_str() }),
    )
    .await?;
    summary_after(tx, id).await
}

/// Give the conversation back to the AI, with what the person did: the AI continues from a
/// dated marker and does not hand off again at once for the same reason.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/hand-back", tag = "inbox",
    params(("tenant_id" = Uuid, Path), ("conversation_id" = Uuid, Path)),
    request_body = HandBackRequest,
    responses((status = 200, body = ConversationSummary), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, description = "the AI has it already", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn hand_back(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<HandBackRequest>,
) -> Result<web::Json<ConversationSummary>, ApiError> {
    let id = ids(path);
    let summary = body.summary.trim().to_string();
    let mut errors = Errors::default();
    errors.text("summary", &summary, false, 2000);
    errors.finish()?;
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let c = locked(&mut tx, id).await?;
    if c.owner == Owner::Ai {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "The AI has this conversation already.",
        ));
    }
    inbox::hand_back(&mut tx, id, &summary).await?;
    let (_, name) = taker_name(&mut tx, &auth).await?;
    inbox::add_event(
        &mut tx,
        id,
        "handed_back",
        Some(auth.principal().user.id),
        Some(&name),
        "",
        serde_json::json!({ "summary": summary }),
    )
    .await?;
    record(
        &mut tx,
        &auth,
        Action::ConversationHandedBack,
        Target::Conversation(id),
        serde_json::json!({ "from": c.owner.as_str() }),
    )
    .await?;
    tx.commit().await?;
    // The AI's window is rebuilt from Postgres with what the person said. The hand-back has
    // committed: a Redis failure here only means the AI may miss the person's replies in its
    // window (the marker still carries them), so it is logged, not answered as an error.
    if let Err(e) = state
        .redis
        .delete(&state::key_of(
            &state.redis,
            tenant,
            c.connection_id,
            &c.external_key,
        ))
        .await
    {
        tracing::warn!(error = %e, "could not drop a handed-back conversation's window");
    }
    let mut tx = state.store.tenant_tx(tenant).await?;
    let summary = inbox::get(&mut tx, id).await?.ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(web::Json(summary))
}

/// The inbox's badge.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/inbox/counts", tag = "inbox",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = InboxCounts), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn counts(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<InboxCounts>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let counts = inbox::counts(&mut tx, auth.principal().user.id).await?;
    tx.commit().await?;
    Ok(web::Json(counts))
}

/// How often a live stream says it is alive and checks its member still has access.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

struct Live {
    state: web::Data<AppState>,
    changes: tokio::sync::broadcast::Receiver<Change>,
    heartbeat: tokio::time::Interval,
    claims: crate::auth::tokens::Claims,
    tenant: TenantId,
    me: Uuid,
    /// Hand-offs announced already (conversation, hand-off time), bounded.
    announced: HashSet<(ConversationId, i64)>,
    started: chrono::DateTime<Utc>,
    first: bool,
    done: bool,
    _place: crate::inbox::live::Place,
}

fn frame(event: &str, data: &impl serde::Serialize) -> web::Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    web::Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}

impl Live {
    async fn allowed(&self) -> bool {
        match super::auth::still_allowed(
            &self.state,
            &self.claims,
            self.tenant,
            Permission::ConversationsRead,
        )
        .await
        {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::warn!(error = ?e.code(), "could not check a live stream's access; ending it");
                false
            }
        }
    }

    /// The frame for a change of `conversation`, if it still exists.
    async fn about(
        &mut self,
        conversation: ConversationId,
    ) -> Result<Option<web::Bytes>, ApiError> {
        let mut tx = self.state.store.tenant_tx(self.tenant).await?;
        let summary = inbox::get(&mut tx, conversation).await?;
        let counts = inbox::counts(&mut tx, self.me).await?;
        tx.commit().await?;
        let Some(summary) = summary else {
            return Ok(None);
        };
        let event = InboxEvent {
            conversation_id: conversation,
            owner: summary.owner,
            status: summary.status,
            counts,
        };
        let new_handoff = summary.owner == Owner::Queue
            && summary
                .handed_off_at
                .is_some_and(|at| at >= self.started - chrono::TimeDelta::seconds(5))
            && {
                let key = (
                    conversation,
                    summary.handed_off_at.map_or(0, |t| t.timestamp_micros()),
                );
                if self.announced.len() >= 1000 {
                    self.announced.clear();
                }
                self.announced.insert(key)
            };
        Ok(Some(frame(
            if new_handoff {
                "handoff"
            } else {
                "conversation"
            },
            &event,
        )))
    }

    async fn counts_frame(&self) -> Result<web::Bytes, ApiError> {
        let mut tx = self.state.store.tenant_tx(self.tenant).await?;
        let counts = inbox::counts(&mut tx, self.me).await?;
        tx.commit().await?;
        Ok(frame("counts", &counts))
    }

    /// The next frame; `None` ends the stream.
    async fn next(&mut self) -> Option<web::Bytes> {
        if self.done {
            return None;
        }
        if self.first {
            self.first = false;
            return Some(
                self.counts_frame()
                    .await
                    .unwrap_or_else(|_| web::Bytes::from_static(b": ready\n\n")),
            );
        }
        loop {
            tokio::select! {
                change = self.changes.recv() => match change {
                    Ok(Change::Conversation { tenant, conversation }) if tenant == self.tenant => {
                        match self.about(conversation).await {
                            Ok(Some(frame)) => return Some(frame),
                            Ok(None) => continue,
                            Err(_) => return Some(web::Bytes::from_static(b"event: resync\ndata: {}\n\n")),
                        }
                    }
                    Ok(Change::Access { tenant }) if tenant == self.tenant => {
                        if !self.allowed().await {
                            self.done = true;
                            return Some(frame("end", &serde_json::json!({ "reason": "access" })));
                        }
                    }
                    Ok(Change::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        return Some(web::Bytes::from_static(b"event: resync\ndata: {}\n\n"));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => {
                    if !self.allowed().await {
                        self.done = true;
                        return Some(frame("end", &serde_json::json!({ "reason": "access" })));
                    }
                    return Some(web::Bytes::from_static(b": alive\n\n"));
                }
            }
        }
    }
}

/// The live inbox: server-sent events (`counts` first, then `conversation` or `handoff` with an
/// `InboxEvent` for each change, `resync` when changes may have been missed, `end` when the
/// member lost access, after which the stream closes).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/inbox/events", tag = "inbox",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, description = "text/event-stream of InboxEvent", content_type = "text/event-stream", body = String),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, description = "too many live streams open", body = ErrorBody)))]
pub async fn events(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = auth.tenant()?;
    let me = auth.principal().user.id;
    let place = state
        .inbox
        .open(tenant, me)
        .map_err(|refused| match refused {
            Refused::Member => ApiError::new(
                ErrorCode::RateLimited,
                "You have too many live inbox tabs open; close one and reload.",
            )
            .with_retry_after(5),
            Refused::Node => ApiError::new(
                ErrorCode::Unavailable,
                "This server has too many live inbox streams open; try again shortly.",
            )
            .with_retry_after(5),
        })?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let live = Live {
        changes: state.inbox.subscribe(),
        state: state.clone(),
        heartbeat,
        claims: auth.principal().claims.clone(),
        tenant,
        me,
        announced: HashSet::new(),
        started: Utc::now(),
        first: true,
        done: false,
        _place: place,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        live.next()
            .await
            .map(|frame| (Ok::<_, actix_web::Error>(frame), live))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// The caller's own hand-off notifications in this tenant.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/me/notifications", tag = "inbox",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = NotificationSettings), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn my_notifications(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<NotificationSettings>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let on = inbox::notify_handoffs(&mut tx, auth.principal().user.id).await?;
    tx.commit().await?;
    Ok(web::Json(NotificationSettings {
        email_handoffs: on.unwrap_or(false),
    }))
}

/// Choose whether to be emailed about hand-offs (members only: a platform admin who is not a
/// member gets 409).
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/me/notifications", tag = "inbox",
    params(("tenant_id" = Uuid, Path)),
    request_body = NotificationSettings,
    responses((status = 200, body = NotificationSettings), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn set_my_notifications(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<NotificationSettings>,
) -> Result<web::Json<NotificationSettings>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    if !inbox::set_notify_handoffs(&mut tx, auth.principal().user.id, body.email_handoffs).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "Only the tenant's members get hand-off mails.",
        ));
    }
    tx.commit().await?;
    Ok(web::Json(body.into_inner()))
}

fn hours_of(value: Option<serde_json::Value>) -> Option<BusinessHours> {
    value.and_then(|v| serde_json::from_value(v).ok())
}

/// The tenant's hand-off settings.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/settings/handoff", tag = "inbox",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = HandoffSettings), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn handoff_settings(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<HandoffSettings>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (hours, slack_channel) = inbox::handoff_settings(&mut tx).await?;
    tx.commit().await?;
    Ok(web::Json(HandoffSettings {
        business_hours: hours_of(hours),
        slack_channel,
    }))
}

/// Change business hours (what customers are told about when a person answers) and the Slack
/// channel that hears of hand-offs.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/settings/handoff", tag = "inbox",
    params(("tenant_id" = Uuid, Path)),
    request_body = HandoffSettings,
    responses((status = 200, body = HandoffSettings), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_handoff_settings(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<HandoffSettings>,
) -> Result<web::Json<HandoffSettings>, ApiError> {
    let mut body = body.into_inner();
    let mut errors = Errors::default();
    if let Some(hours) = &mut body.business_hours {
        hours.days.sort_unstable();
        hours.days.dedup();
        if let Some(problem) = crate::engine::handoff::problem(hours) {
            errors.add("business_hours", problem);
        }
    }
    body.slack_channel = body
        .slack_channel
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if let Some(channel) = &body.slack_channel
        && !(2..=30).contains(&channel.len())
            | !channel
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        errors.add(
            "slack_channel",
            "must be a Slack channel id, like C0123ABCD (in Slack: the channel's details, at the bottom)",
        );
    }
    errors.finish()?;
    let hours = body
        .business_hours
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(ApiError::internal)?;
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    inbox::set_handoff_settings(&mut tx, hours, body.slack_channel.as_deref()).await?;
    record(
        &mut tx,
        &auth,
        Action::TenantSettingsChanged,
        Target::None,
        serde_json::json!({
            "handoff": {
                "business_hours": body.business_hours.is_some(),
                "slack_channel": body.slack_channel.is_some(),
            }
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(body))
}
