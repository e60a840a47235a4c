//! `GET /api/tenants/{tenant_id}/audit` (the trail's events, newest first, filtered, a keyset
//! page at a time), `…/audit/export.csv` (the same filters as one CSV file) and
//! `…/audit/filters` (what the filters can be set to). Reads for `AuditRead`: customer admins
//! and operators.
//!
//! An export is streamed in batches, each read in a short transaction of its own, so a slow
//! download holds no database connection; it starts below the newest row as the export began,
//! so rows appended meanwhile never shift it. It stops at [`EXPORT_MAX_ROWS`] and then says so
//! in a header and in its last line, with the `before=` to go on from.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::audit::{AuditEvent, AuditFilters, AuditMember};
use shared::resources::CursorPage;
use shared::{ErrorBody, TenantId};
use uuid::Uuid;

use super::csv;
use crate::api::AppState;
use crate::api::auth::Authorized;
use crate::api::error::ApiError;
use crate::api::validate::Errors;
use crate::store::audit::{self as store_audit, Action, ActorFilter, EventFilter, EventRow};
use crate::store::users;

/// A page's size when the request names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
pub const MAX_LIMIT: u32 = 200;
/// The most events one export holds.
pub const EXPORT_MAX_ROWS: i64 = 100_000;
/// Events read per batch of an export.
const EXPORT_BATCH: i64 = 1_000;
/// Set on an export that stopped at [`EXPORT_MAX_ROWS`]: the `before=` to export the rest from.
pub const TRUNCATED_HEADER: &str = "x-audit-export-continue-before";
/// The members `…/audit/filters` offers, at most (by e-mail); any actor can still be filtered by
/// id.
const FILTER_MEMBERS: i64 = 1_000;

/// `?action=&actor=&from=&to=&before=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// An action's name, e.g. `agent.updated` (`…/audit/filters` lists them).
    pub action: Option<String>,
    /// A user id (a member, a platform admin or an end user), or `system`.
    pub actor: Option<String>,
    /// From this RFC 3339 instant, inclusive, e.g. `2026-12-01T00:00:00Z`.
    pub from: Option<String>,
    /// Up to this RFC 3339 instant, exclusive.
    pub to: Option<String>,
    /// Only events older than this seq: the previous page's `next_before`.
    pub before: Option<String>,
    /// 1 to 200; 50 when omitted.
    pub limit: Option<String>,
}

/// `?action=&actor=&from=&to=&before=`: the list's filters, without paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// An action's name, e.g. `agent.updated`.
    pub action: Option<String>,
    /// A user id, or `system`.
    pub actor: Option<String>,
    /// From this RFC 3339 instant, inclusive.
    pub from: Option<String>,
    /// Up to this RFC 3339 instant, exclusive.
    pub to: Option<String>,
    /// Only events older than this seq (to go on from a truncated export).
    pub before: Option<String>,
}

/// A query value, or none when absent or blank (as a form's empty select sends it).
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn instant(errors: &mut Errors, field: &str, value: Option<&str>) -> Option<DateTime<Utc>> {
    let value = value?;
    match DateTime::parse_from_rfc3339(value) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => {
            errors.add(
                field,
                "must be an RFC 3339 time such as 2026-12-01T09:00:00Z (write a + in an offset \
                 as %2B)",
            );
            None
        }
    }
}

/// The filter the query names; every problem with it as a field error.
fn parse_filter(
    errors: &mut Errors,
    action: &Option<String>,
    actor: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
    before: &Option<String>,
) -> EventFilter {
    let action = given(action).and_then(|name| {
        let known = Action::named(name);
        if known.is_none() {
            errors.add(
                "action",
                "is not an audit action (…/audit/filters lists them)",
            );
        }
        known
    });
    let actor = given(actor).and_then(|who| {
        if who == "system" {
            return Some(ActorFilter::System);
        }
        match Uuid::parse_str(who) {
            Ok(id) => Some(ActorFilter::Id(id)),
            Err(_) => {
                errors.add("actor", "must be a user id or system");
                None
            }
        }
    });
    let from = instant(errors, "from", given(from));
    let to = instant(errors, "to", given(to));
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        errors.add("to", "must not be before from");
    }
    let before = given(before).and_then(|b| match b.parse::<i64>() {
        Ok(seq) if seq >= 1 => Some(seq),
        _ => {
            errors.add("before", "must be a whole number, 1 or more");
            None
        }
    });
    EventFilter {
        action,
        actor,
        from,
        to,
        before,
    }
}

fn to_dto(row: EventRow) -> AuditEvent {
    AuditEvent {
        seq: row.seq,
        created_at: row.created_at,
        action: row.action,
        actor_kind: row.actor_kind,
        actor_id: row.actor_id,
        actor_name: row.actor_name.filter(|n| !n.is_empty()),
        actor_email: row.actor_email,
        impersonator_id: row.impersonator_id,
        target_kind: row.target_kind,
        target_id: row.target_id,
        details: row.details,
        request_id: row.request_id,
        hash: hex::encode(&row.hash),
    }
}

/// The tenant's audit events, newest first, filtered by action, actor and time; a page at a
/// time by seq (pass `next_before` as `before` for the next, older page).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/audit", tag = "audit",
    params(("tenant_id" = Uuid, Path), ListQuery),
    responses((status = 200, body = CursorPage<AuditEvent>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 422, description = "A filter is not valid (its field is named)", body = ErrorBody)))]
pub async fn list(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<CursorPage<AuditEvent>>, ApiError> {
    let q = query.into_inner();
    let mut errors = Errors::default();
    let filter = parse_filter(&mut errors, &q.action, &q.actor, &q.from, &q.to, &q.before);
    let limit = match given(&q.limit) {
        None => Some(DEFAULT_LIMIT),
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(n),
            _ => {
                errors.add("limit", format!("must be between 1 and {MAX_LIMIT}"));
                None
            }
        },
    };
    errors.finish()?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    // One more than a page, to know whether another follows without counting.
    let mut rows = store_audit::list(&mut tx, &filter, i64::from(limit) + 1).await?;
    tx.rollback().await?;
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_before = if rows.len() > page {
        rows.truncate(page);
        rows.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(web::Json(CursorPage {
        items: rows.into_iter().map(to_dto).collect(),
        limit,
        next_before,
    }))
}

/// What the filters can be set to: every action, and the tenant's members as actors.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/audit/filters", tag = "audit",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = AuditFilters), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn filters(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<AuditFilters>, ApiError> {
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (members, _) = users::list_members(&mut tx, FILTER_MEMBERS, 0).await?;
    tx.rollback().await?;
    let mut actions: Vec<String> = Action::ALL.iter().map(|a| a.to_string()).collect();
    actions.sort();
    Ok(web::Json(AuditFilters {
        actions,
        members: members
            .into_iter()
            .map(|m| AuditMember {
                user_id: m.user_id,
                display_name: m.display_name,
                email: m.email,
            })
            .collect(),
    }))
}

/// An export on its way out: what is left to read and write.
struct Export {
    state: web::Data<AppState>,
    tenant: TenantId,
    /// The filters, its `before` moved down past every batch written.
    filter: EventFilter,
    /// The first batch, read before the answer starts so that a failure there is an ordinary
    /// error answer, not a cut-off file.
    first: Option<Vec<EventRow>>,
    header_written: bool,
    written: i64,
    /// The last batch was full, so more rows may follow.
    more: bool,
    /// More rows match than [`EXPORT_MAX_ROWS`].
    truncated: bool,
    done: bool,
}

impl Export {
    /// The next batch after what was written (empty when none is left or the cap is reached).
    async fn read(&mut self) -> Result<Vec<EventRow>, ApiError> {
        let room = (EXPORT_MAX_ROWS - self.written).min(EXPORT_BATCH);
        if !self.more || room <= 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.state.store.tenant_tx(self.tenant).await?;
        let rows = store_audit::list(&mut tx, &self.filter, room).await?;
        tx.rollback().await?;
        self.more = i64::try_from(rows.len()).unwrap_or(i64::MAX) == room;
        Ok(rows)
    }

    /// The next piece of the file, or `None` when it is complete.
    async fn next(mut self) -> Option<(Result<web::Bytes, std::io::Error>, Self)> {
        if self.done {
            return None;
        }
        let mut out = String::new();
        if !self.header_written {
            csv::header(&mut out);
            self.header_written = true;
        }
        let rows = match self.first.take() {
            Some(rows) => rows,
            None => match self.read().await {
                Ok(rows) => rows,
                Err(e) => {
                    // The answer has started: all that is left is to cut the file short, which
                    // the client sees as a failed download. Logged here, the one place it is
                    // handled.
                    tracing::error!(
                        tenant.id = %self.tenant,
                        rows_written = self.written,
                        error.cause = e.cause_chain().as_deref().unwrap_or_default(),
                        "the audit export stopped"
                    );
                    self.done = true;
                    return Some((Err(std::io::Error::other("the audit export stopped")), self));
                }
            },
        };
        if rows.is_empty() {
            self.done = true;
            if self.truncated
                && let Some(last) = self.filter.before
            {
                csv::truncated(&mut out, EXPORT_MAX_ROWS, last);
            }
        } else {
            self.written += i64::try_from(rows.len()).unwrap_or(i64::MAX);
            self.filter.before = rows.last().map(|r| r.seq);
            for row in &rows {
                csv::event(&mut out, row);
            }
        }
        if out.is_empty() {
            return None;
        }
        Some((Ok(web::Bytes::from(out)), self))
    }
}

/// The tenant's audit events that match the filters, newest first, as CSV (at most 100,000;
/// when more match, the `x-audit-export-continue-before` header and the file's last line say
/// which `before=` exports the rest). Cells a spreadsheet would run as formulas start with an
/// apostrophe.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/audit/export.csv", tag = "audit",
    params(("tenant_id" = Uuid, Path), ExportQuery),
    responses((status = 200, description = "The events as CSV (`text/csv; charset=utf-8`), a header line first", content_type = "text/csv"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "A filter is not valid (its field is named)", body = ErrorBody)))]
pub async fn export(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let mut errors = Errors::default();
    let mut filter = parse_filter(&mut errors, &q.action, &q.actor, &q.from, &q.to, &q.before);
    errors.finish()?;
    let tenant = auth.tenant()?;

    // Fixed below the newest row now, so the file does not grow while it is read; these reads
    // see one snapshot, so the cap and the first batch agree.
    let mut tx = state.store.tenant_snapshot(tenant).await?;
    let end = store_audit::newest_seq(&mut tx).await? + 1;
    filter.before = Some(filter.before.map_or(end, |b| b.min(end)));
    // When more rows match than an export holds, the last one it writes (the row at the cap)
    // is where the next export goes on from.
    let continue_before = match store_audit::nth_seq(&mut tx, &filter, EXPORT_MAX_ROWS).await? {
        Some(_) => store_audit::nth_seq(&mut tx, &filter, EXPORT_MAX_ROWS - 1).await?,
        None => None,
    };
    let first = store_audit::list(&mut tx, &filter, EXPORT_BATCH).await?;
    tx.rollback().await?;

    let mut answer = HttpResponse::Ok();
    answer
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"audit-{tenant}-{}.csv\"",
                Utc::now().format("%Y%m%dT%H%M%SZ")
            ),
        ));
    if let Some(seq) = continue_before {
        answer.insert_header((TRUNCATED_HEADER, seq.to_string()));
    }
    let more = i64::try_from(first.len()).unwrap_or(i64::MAX) == EXPORT_BATCH;
    let export = Export {
        state,
        tenant,
        filter,
        first: Some(first),
        header_written: false,
        written: 0,
        more,
        truncated: continue_before.is_some(),
        done: false,
    };
    Ok(answer.streaming(futures_util::stream::unfold(export, Export::next)))
}
