//! Background jobs of the tenant in focus: what ran, what waits and what failed and why, with a
//! status filter and pages; customer admins queue a failed job again, operators read only.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::auth::Permission;
use shared::resources::{Job, JobStatus, Page};

use crate::api::{self, HttpMethod};
use crate::app::{Pager, use_session};

const PER_PAGE: u32 = 20;

fn pill(status: JobStatus) -> (&'static str, &'static str) {
    match status {
        JobStatus::Queued => ("badge info", "Queued"),
        JobStatus::Running => ("badge info", "Running"),
        JobStatus::Succeeded => ("badge ok", "Succeeded"),
        JobStatus::Failed => ("badge danger", "Failed"),
        JobStatus::Cancelled => ("badge muted", "Cancelled"),
    }
}

fn when(job: &Job) -> String {
    let at = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    match (job.status, &job.finished_at) {
        (JobStatus::Queued, _) => format!("Next run {}", at(&job.run_at)),
        (JobStatus::Running, _) => "Running now".into(),
        (_, Some(finished)) => format!("Finished {}", at(finished)),
        (_, None) => String::new(),
    }
}

/// The last error, marked as an earlier attempt's when the job went on to succeed.
fn last_error(job: &Job) -> String {
    match (&job.last_error, job.status) {
        (None, _) => "—".into(),
        (Some(e), JobStatus::Succeeded) => format!("Earlier attempt: {e}"),
        (Some(e), _) => e.clone(),
    }
}

#[component]
pub fn Jobs() -> impl IntoView {
    let session = use_session();
    let status = RwSignal::new(String::new());
    let page = RwSignal::new(1u32);
    let version = RwSignal::new(0u32);
    let flash = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let list = LocalResource::new(move || {
        let (tenant, status, page, _) = (
            session.tenant.get(),
            status.get(),
            page.get(),
            version.get(),
        );
        async move {
            match tenant {
                Some((id, _)) => {
                    let filter = if status.is_empty() {
                        String::new()
                    } else {
                        format!("&status={status}")
                    };
                    api::get::<Page<Job>>(&format!(
                        "/api/tenants/{id}/jobs?page={page}&per_page={PER_PAGE}{filter}"
                    ))
                    .await
                    .map(Some)
                }
                None => Ok(None),
            }
        }
    });
    let manage = move || session.can(Permission::JobsManage);
    let retry = move |id: uuid::Uuid, kind: String| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        error.set(None);
        spawn_local(async move {
            match api::act::<Job>(
                HttpMethod::POST,
                &format!("/api/tenants/{tenant}/jobs/{id}/retry"),
            )
            .await
            {
                Ok(_) => {
                    flash.set(Some(format!("{kind} is queued again.")));
                    version.update(|v| *v += 1);
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e.message()));
                }
            }
        });
    };

    view! {
        <header class="page-head">
            <h1>"Background jobs"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("Work Konstruct does for {} behind the scenes, retried when something it depends on is down.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            {move || (!manage()).then(|| view! { <p class="readonly-note">"Read-only: your role can view background jobs but not retry them."</p> })}
        </header>
        {move || flash.get().map(|f| view! { <p class="flash" role="status">{f}</p> })}
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <div class="toolbar">
            <label class="filter">
                <span>"Status"</span>
                <select on:change=move |ev| { status.set(event_target_value(&ev)); page.set(1); flash.set(None); } prop:value=move || status.get()>
                    <option value="">"All"</option>
                    {JobStatus::ALL.into_iter().map(|s| view! { <option value=s.as_str()>{pill(s).1}</option> }).collect_view()}
                </select>
            </label>
            <button class="secondary" on:click=move |_| version.update(|v| *v += 1)>"Refresh"</button>
        </div>
        {move || match list.get() {
            None => view! { <p class="loading" role="status">"Loading background jobs…"</p> }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(None)) => view! { <p class="empty">"Pick a tenant in the menu to see its background jobs."</p> }.into_any(),
            Some(Ok(Some(p))) if p.items.is_empty() => view! {
                <div class="empty">
                    <p>{if status.get_untracked().is_empty() { "No background jobs yet." } else { "No jobs with this status." }}</p>
                    <p class="muted">"Background jobs are the follow-up work Konstruct does for this tenant after a change — for example, clearing cached conversation data after a deletion. They run on their own, are retried when a service they need is down, and show up here with any error."</p>
                </div>
            }.into_any(),
            Some(Ok(Some(p))) => {
                let total = p.total;
                view! {
                    <table class="table">
                        <thead><tr><th>"Status"</th><th>"Kind"</th><th>"Attempts"</th><th>"Next run / finished"</th><th>"Last error"</th><th><span class="sr-only">"Actions"</span></th></tr></thead>
                        <tbody>
                            {p.items.into_iter().map(|job| {
                                let (class, label) = pill(job.status);
                                let retryable = job.status.is_retryable();
                                let (id, kind) = (job.id, job.kind.clone());
                                view! {
                                    <tr>
                                        <td><span class=class>{label}</span></td>
                                        <td><code>{job.kind.clone()}</code></td>
                                        <td>{format!("{} of {}", job.attempts, job.max_attempts)}</td>
                                        <td>{when(&job)}</td>
                                        <td class="job-error">{last_error(&job)}</td>
                                        <td>
                                            <Show when=move || retryable && manage()>
                                                <button class="secondary" aria-label=format!("Retry {}", kind.clone()) on:click={
                                                    let kind = kind.clone();
                                                    move |_| retry(id, kind.clone())
                                                }>"Retry"</button>
                                            </Show>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                    <Pager page=page total=total per_page=PER_PAGE one="job" many="jobs" />
                }.into_any()
            }
        }}
    }
}
