//! `budget.alert`: tells a tenant a budget crossed a threshold — a mail to each of its admins
//! (through the mail sender) and a JSON `POST` to the budget's webhook (through the outbound
//! client, so never to our own network unless allowlisted). The alert row records what was
//! done (`mailed`, `webhook_status`), so a retried job does not mail or post again once that
//! step is recorded; a step that failed for now is retried.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use shared::usage::{BudgetPolicy, format_usd};
use uuid::Uuid;

use super::{Job, JobContext, JobError, JobHandler};
use crate::mail::templates;
use crate::outbound::OutboundRequest;
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::budgets as store_budgets;

use crate::store::tenants;

/// How long the webhook has to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one alert.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendBudgetAlert;

fn unavailable(e: impl std::fmt::Display) -> JobError {
    tracing::warn!(error = %e, "a budget alert could not reach the database");
    JobError::retry("the database could not be reached")
}

/// What the policy does at 100 %, in a sentence for the mail.
fn policy_sentence(policy: BudgetPolicy) -> &'static str {
    match policy {
        BudgetPolicy::Soft => "the AI keeps answering; only these alerts tell you.",
        BudgetPolicy::Downgrade => "the AI keeps answering with the cheaper model group.",
        BudgetPolicy::Handoff => {
            "the AI stops answering and every conversation goes to a person in the inbox."
        }
    }
}

/// The admins of the tenant: (email) of active customer admins.
async fn admins(tx: &mut crate::store::TenantTx) -> Result<Vec<String>, JobError> {
    sqlx::query_scalar(
        "SELECT u.email FROM tenant_members tm JOIN users u ON u.id = tm.user_id \
          WHERE tm.role = 'customer_admin' AND u.status = 'active' ORDER BY u.email LIMIT 200",
    )
    .fetch_all(tx.connection())
    .await
    .map_err(unavailable)
}

impl JobHandler for SendBudgetAlert {
    fn kind(&self) -> &'static str {
        crate::llm::budget::ALERT_JOB
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let tenant = job
                .tenant
                .ok_or_else(|| JobError::permanent("the job names no tenant"))?;
            let id: Uuid = job
                .payload
                .get("alert_id")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| JobError::permanent("the job names no alert"))?;
            let mut tx = ctx.store.tenant_tx(tenant).await.map_err(unavailable)?;
            let Some(alert) = store_budgets::alert(&mut tx, id)
                .await
                .map_err(unavailable)?
            else {
                // The budget was removed since: nothing to tell.
                return Ok(());
            };
            let tenant_name = tenants::current(&mut tx)
                .await
                .map_err(unavailable)?
                .map(|t| t.name)
                .unwrap_or_default();
            let recipients = admins(&mut tx).await?;
            tx.commit().await.map_err(unavailable)?;
            let policy = BudgetPolicy::parse(&alert.policy).unwrap_or_default();
            let threshold = u8::try_from(alert.threshold).unwrap_or(100);
            let mut retry: Option<String> = None;

            let mut mailed = alert.mailed;
            if mailed.is_none() {
                match ctx
                    .people
                    .as_ref()
                    .and_then(|p| p.mailer.as_ref().map(|m| (p, m)))
                {
                    Some((people, mailer)) => {
                        let link = people.public_url.link("/usage");
                        let (spent, monthly) = (
                            format_usd(alert.spent_micro_usd),
                            format_usd(alert.monthly_micro_usd),
                        );
                        let mut sent = 0i32;
                        let mut failed = None;
                        for to in &recipients {
                            let mail = templates::budget_alert(&templates::BudgetAlert {
                                to,
                                tenant_name: &tenant_name,
                                agent_name: alert.agent_name.as_deref(),
                                threshold,
                                spent: &spent,
                                monthly: &monthly,
                                policy: policy_sentence(policy),
                                link: &link,
                            });
                            match mailer.send(&mail, Some(&tenant_name)).await {
                                Ok(()) => sent += 1,
                                Err(e) => failed = Some(e),
                            }
                        }
                        match failed {
                            Some(crate::mail::MailError::Transient(reason)) if sent == 0 => {
                                retry = Some(reason);
                            }
                            _ => mailed = Some(sent),
                        }
                    }
                    None => {
                        tracing::warn!(tenant.id = %tenant, "budget alert mails need a mail server (KONSTRUCT_SMTP_URL)");
                    }
                }
            }

            let mut posted = alert.webhook_status;
            if let (Some(url), None, Some(outbound)) =
                (&alert.webhook_url, posted, ctx.outbound.as_ref())
            {
                let body = serde_json::json!({
                    "type": "budget.threshold_crossed",
                    "alert_id": alert.id,
                    "tenant_id": tenant,
                    "budget_id": alert.budget_id,
                    "agent_id": alert.agent_id,
                    "period": alert.period,
                    "threshold": threshold,
                    "spent_micro_usd": alert.spent_micro_usd,
                    "monthly_micro_usd": alert.monthly_micro_usd,
                    "policy": policy.as_str(),
                    "at": alert.created_at,
                });
                let request = OutboundRequest::new(Method::POST, url.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body.to_string().into_bytes())
                    .timeout(WEBHOOK_TIMEOUT)
                    .max_bytes(64 * 1024)
                    .max_redirects(0);
                match outbound.send(request).await {
                    Ok(res) => {
                        let status = res.status.as_u16();
                        if res.status.is_server_error() || status == 429 {
                            retry.get_or_insert_with(|| format!("the webhook answered {status}"));
                        } else {
                            posted = Some(i32::from(status));
                        }
                    }
                    Err(e) => {
                        // Our own words: the error names the host, never the URL's secrets.
                        retry.get_or_insert_with(|| {
                            format!("the webhook could not be reached: {e}")
                        });
                    }
                }
            }

            let mut tx = ctx.store.tenant_tx(tenant).await.map_err(unavailable)?;
            if let (Some(n), None) = (mailed, alert.mailed) {
                store_budgets::mark_mailed(&mut tx, id, n)
                    .await
                    .map_err(unavailable)?;
            }
            if let (Some(status), None) = (posted, alert.webhook_status) {
                store_budgets::mark_posted(&mut tx, id, status)
                    .await
                    .map_err(unavailable)?;
            }
            if retry.is_none() {
                audit::append(
                    &mut tx,
                    &NewEvent {
                        actor: Actor::System,
                        action: Action::BudgetAlertSent,
                        target: alert.agent_id.map_or(Target::None, Target::Agent),
                        details: serde_json::json!({
                            "alert_id": id,
                            "budget_id": alert.budget_id,
                            "threshold": threshold,
                            "mailed": mailed,
                            "webhook_status": posted,
                        }),
                        request_id: None,
                    },
                )
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
            match retry {
                Some(reason) => Err(JobError::retry(reason)),
                None => Ok(()),
            }
        })
    }
}
