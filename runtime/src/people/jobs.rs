//! The mail jobs: `mail.invitation` (a tenant's job: an invitation's current link) and
//! `mail.password_reset` (a platform job: a reset link). Each makes its link's token again from
//! the row's id and generation (the same link on every attempt), checks it still matches what the
//! row stores, and sends. A link superseded, revoked, used or expired since is not sent. Run
//! twice (a worker died after the server took the mail), the same link is mailed twice; it still
//! works once.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use super::{LinkPurpose, People, role_words, token_hash};
use crate::jobs::{Job, JobContext, JobError, JobHandler};
use crate::mail::{MailError, templates};
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::jobs::{self as store_jobs, NewJob};
use crate::store::{StoreResult, TenantTx, people as store, tenants};

pub const INVITATION: &str = "mail.invitation";
pub const PASSWORD_RESET: &str = "mail.password_reset";

/// Attempts a mail gets: with the runner's back-off (doubling to its cap) a mail server that is
/// down for hours still gets the mail once it is back.
const MAIL_ATTEMPTS: u32 = 20;
/// How long a mail waits for a mail server to be configured before asking again.
const NO_SERVER_WAIT: Duration = Duration::from_secs(300);

/// Enqueues the mail of an invitation's link `generation`, inside the transaction that made the
/// link; returns the job.
pub async fn enqueue_invitation(
    tx: &mut TenantTx,
    invitation: Uuid,
    generation: i32,
) -> StoreResult<Option<Uuid>> {
    let mut job = NewJob::new(
        INVITATION,
        json!({ "invitation_id": invitation, "generation": generation }),
    );
    job.max_attempts = Some(MAIL_ATTEMPTS);
    store_jobs::enqueue(tx, &job).await
}

/// Enqueues a reset link's mail (a platform job).
pub async fn enqueue_reset(store: &crate::store::Store, reset: Uuid) -> StoreResult<Option<Uuid>> {
    let mut job = NewJob::new(PASSWORD_RESET, json!({ "reset_id": reset }));
    job.max_attempts = Some(MAIL_ATTEMPTS);
    store_jobs::enqueue_platform(store, &job).await
}

fn people(ctx: &JobContext) -> Result<&People, JobError> {
    ctx.people
        .as_ref()
        .ok_or_else(|| JobError::permanent("this node cannot send mail"))
}

fn unavailable(e: impl std::fmt::Display) -> JobError {
    tracing::warn!(error = %e, "a mail job could not reach the database");
    JobError::retry("the database could not be reached")
}

fn uuid_field(job: &Job, field: &str) -> Result<Uuid, JobError> {
    job.payload
        .get(field)
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| JobError::permanent(format!("the job names no {field}")))
}

/// What a failed send means for the job.
fn failed(e: MailError) -> JobError {
    match e {
        MailError::Transient(reason) => JobError::retry(reason),
        MailError::Permanent(reason) => JobError::permanent(reason),
    }
}

/// Mails an invitation's current link.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendInvitation;

impl JobHandler for SendInvitation {
    fn kind(&self) -> &'static str {
        INVITATION
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let people = people(ctx)?;
            let tenant = job
                .tenant
                .ok_or_else(|| JobError::permanent("the job names no tenant"))?;
            let id = uuid_field(job, "invitation_id")?;
            let generation = job
                .payload
                .get("generation")
                .and_then(|v| v.as_i64())
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| JobError::permanent("the job names no link generation"))?;
            let mut tx = ctx.store.tenant_tx(tenant).await.map_err(unavailable)?;
            let Some(row) = store::get(&mut tx, id).await.map_err(unavailable)? else {
                return Ok(()); // The tenant or the invitation is gone: nothing to send.
            };
            if row.generation != generation
                || row.status != "pending"
                || row.expires_at <= chrono::Utc::now()
            {
                return Ok(()); // Resent, revoked, accepted or expired since: not this link.
            }
            let token = people.links.token(LinkPurpose::Invitation, id, generation);
            if token_hash(&token) != row.token_hash {
                return Err(JobError::permanent(
                    "the key links are made with changed since this link was made; resend the invitation",
                ));
            }
            let Some(mailer) = &people.mailer else {
                return Err(JobError::Retry {
                    reason: "no mail server is configured (KONSTRUCT_SMTP_URL)".into(),
                    after: Some(NO_SERVER_WAIT),
                });
            };
            let tenant_name = tenants::current(&mut tx)
                .await
                .map_err(unavailable)?
                .map(|t| t.name)
                .unwrap_or_default();
            // Nothing is held while the mail server is talked to.
            tx.commit().await.map_err(unavailable)?;
            let link = people.link(shared::people::INVITATION_PATH, &token);
            let mail = templates::invitation(&templates::Invitation {
                to: &row.email,
                tenant_name: &tenant_name,
                inviter: row.inviter.as_deref(),
                role: role_words(row.role),
                link: &link,
                expires_at: row.expires_at,
            });
            let sent = mailer.send(&mail, Some(&tenant_name)).await;
            if let Err(e) = sent {
                let error = failed(e);
                if matches!(error, JobError::Permanent { .. }) || job.attempt >= job.max_attempts {
                    record_failure(ctx, tenant, id, &error.to_string()).await;
                }
                return Err(error);
            }
            let mut tx = ctx.store.tenant_tx(tenant).await.map_err(unavailable)?;
            store::mark_sent(&mut tx, id, generation)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            tracing::info!(tenant.id = %tenant, invitation.id = %id, "invitation mail sent");
            Ok(())
        })
    }
}

/// Audits that an invitation's mail failed for good (best effort: the job's own record stays).
async fn record_failure(ctx: &JobContext, tenant: shared::TenantId, id: Uuid, reason: &str) {
    let recorded = async {
        let mut tx = ctx.store.tenant_tx(tenant).await?;
        audit::append(
            &mut tx,
            &NewEvent {
                actor: Actor::System,
                action: Action::InvitationMailFailed,
                target: Target::Invitation(id),
                details: json!({ "reason": reason }),
                request_id: None,
            },
        )
        .await?;
        tx.commit().await
    };
    if let Err(e) = recorded.await {
        tracing::warn!(error = %e, "could not audit a failed invitation mail");
    }
}

/// Mails a password-reset link.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendPasswordReset;

impl JobHandler for SendPasswordReset {
    fn kind(&self) -> &'static str {
        PASSWORD_RESET
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let people = people(ctx)?;
            let id = uuid_field(job, "reset_id")?;
            let Some(row) = store::reset(&ctx.store, id).await.map_err(unavailable)? else {
                return Ok(()); // The account is gone.
            };
            if row.used_at.is_some() || row.expires_at <= chrono::Utc::now() {
                return Ok(());
            }
            let token = people.links.token(LinkPurpose::PasswordReset, id, 1);
            if token_hash(&token) != row.token_hash {
                return Err(JobError::permanent(
                    "the key links are made with changed since this link was made",
                ));
            }
            let Some(mailer) = &people.mailer else {
                return Err(JobError::Retry {
                    reason: "no mail server is configured (KONSTRUCT_SMTP_URL)".into(),
                    after: Some(NO_SERVER_WAIT),
                });
            };
            let link = people.link(shared::people::RESET_PATH, &token);
            let mail = templates::password_reset(&templates::PasswordReset {
                to: &row.email,
                link: &link,
                minutes: i64::from(people.settings.reset_minutes),
            });
            mailer.send(&mail, None).await.map_err(failed)?;
            store::mark_reset_sent(&ctx.store, id)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }
}
