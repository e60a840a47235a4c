//! The `Runner`: one per node. It claims due jobs (at most `concurrency` at once), runs each
//! under a lease it renews every third of the lease, and records the outcome: succeeded, queued
//! again with exponential back-off and jitter, or failed for good.
//!
//! It wakes when Postgres tells it a job was queued (`LISTEN konstruct_jobs`, notified by a
//! trigger at commit), when one of its jobs finishes, when the earliest known retry or lease end
//! comes, and at the latest every poll interval. A handler that panics is caught as a failed
//! attempt; a job whose lease another worker took over is stopped, its result discarded. On
//! shutdown it stops claiming and lets running jobs finish.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::{Job, JobContext, JobError, Registry};
use crate::store::jobs::{self as store_jobs, Claimed, Failed};

/// The longest wait a handler may ask for before its next attempt.
const MAX_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The shortest pause between two claim rounds that found due work they could not take (another
/// node was claiming it at that moment).
const MIN_PAUSE: Duration = Duration::from_millis(50);
/// What a panicking handler's attempt records.
const PANICKED: &str = "the job's handler crashed (panicked)";
/// Our own words are short: longer reasons are cut.
const MAX_ERROR_CHARS: usize = 500;

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claimed job stays this runner's unrenewed; renewed every third of it.
    pub lease: Duration,
    /// The longest the runner waits before looking for due work unprompted.
    pub poll_interval: Duration,
    /// The first retry's delay; doubled per attempt, with ±20 % jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl RunnerSettings {
    /// From the runtime's `[jobs]` settings.
    pub fn from_config(c: &crate::config::JobsSettings) -> Self {
        Self {
            concurrency: usize::try_from(c.concurrency).unwrap_or(1).max(1),
            lease: Duration::from_secs(c.lease_secs),
            poll_interval: Duration::from_secs(c.poll_secs),
            retry_base: Duration::from_secs(c.retry_base_secs),
            retry_max: Duration::from_secs(c.retry_max_secs),
        }
    }
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self::from_config(&crate::config::JobsSettings::default())
    }
}

/// The wait before the next attempt after attempt `attempt` (1-based) failed: what the handler
/// asked for (`after`, at most a day), else `base` doubled per earlier attempt, capped at `max`,
/// scaled by `jitter` (clamped to 0.8–1.2, so runners that failed together do not retry
/// together) and capped again.
pub fn retry_delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(after) = after {
        return after.min(MAX_AFTER);
    }
    let doublings = attempt.saturating_sub(1).min(31);
    let backoff = base.saturating_mul(1u32 << doublings).min(max);
    backoff.mul_f64(jitter.clamp(0.8, 1.2)).min(max)
}

/// A running job runner. Dropping it stops everything at once, as a crash would (leases lapse
/// and other runners take the jobs over); [`Runner::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Runner {
    worker: Arc<str>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Runner {
    /// Starts claiming and running jobs as `worker` (a name unique to this node). Call inside a
    /// Tokio runtime.
    pub fn start(
        ctx: JobContext,
        registry: Registry,
        settings: RunnerSettings,
        worker: &str,
    ) -> Runner {
        let worker: Arc<str> = Arc::from(worker);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_loop(
            ctx,
            Arc::new(registry),
            settings,
            worker.clone(),
            stopped,
        ));
        Runner {
            worker,
            stop,
            task: Some(task),
        }
    }

    /// The name leases are taken under.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Stops claiming new jobs; running ones go on. [`Runner::shutdown`] then waits for them.
    pub fn stop_claiming(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops claiming and waits up to `grace` for running jobs to finish. Jobs still running
    /// then are abandoned: their leases lapse and another runner runs them again. Returns
    /// whether every job finished.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.stop_claiming();
        let Some(mut task) = self.task.take() else {
            return true;
        };
        match tokio::time::timeout(grace, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                task.abort();
                tracing::warn!(worker = %self.worker, "jobs still running at shutdown were abandoned; another runner will run them again");
                false
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Aborts a task when dropped, so the listener ends with the loop that owns it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_loop(
    ctx: JobContext,
    registry: Arc<Registry>,
    settings: RunnerSettings,
    worker: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let wake = Arc::new(Notify::new());
    let _listener = AbortOnDrop(tokio::spawn(listen(ctx.clone(), wake.clone())));
    // Dropped with this task (an abort), it aborts every running job: a crash.
    let mut running: JoinSet<()> = JoinSet::new();
    let concurrency = settings.concurrency.max(1);
    let mut claim_failures = 0u32;
    tracing::info!(worker = %worker, jobs.concurrency = concurrency, "job runner started");
    while !*stop.borrow() {
        let free = concurrency.saturating_sub(running.len());
        let mut wait = settings.poll_interval;
        if free > 0 {
            match store_jobs::claim(&ctx.store, &worker, free, settings.lease).await {
                Ok(claimed) => {
                    claim_failures = 0;
                    let full = claimed.len() == free;
                    for job in claimed {
                        running.spawn(run_one(
                            ctx.clone(),
                            registry.clone(),
                            settings.clone(),
                            worker.clone(),
                            job,
                        ));
                    }
                    if !full {
                        // Sleep until the earliest retry or lease end, if that comes first.
                        match store_jobs::next_due_in(&ctx.store).await {
                            Ok(Some(due)) => wait = wait.min(due.max(MIN_PAUSE)),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "could not read when jobs are due next")
                            }
                        }
                    }
                }
                Err(e) => {
                    claim_failures = claim_failures.saturating_add(1);
                    wait = wait.min(retry_delay(
                        claim_failures,
                        Duration::from_millis(500),
                        Duration::from_secs(30),
                        None,
                        1.0,
                    ));
                    tracing::warn!(error = %e, "could not claim jobs; trying again");
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = wake.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!(worker = %worker, jobs.running = running.len(), "job runner stopping; letting running jobs finish");
    while running.join_next().await.is_some() {}
}

/// Wakes the loop whenever a job is queued (the notice comes at the enqueuing commit) and when
/// the listening connection was re-established (notices may have been missed meanwhile).
async fn listen(ctx: JobContext, wake: Arc<Notify>) {
    loop {
        let mut listener = match store_jobs::listener(&ctx.store).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for queued jobs yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "job listener failed; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// How one attempt ended.
enum Outcome {
    Succeeded,
    Failed(JobError),
    /// Another worker holds the job now: nothing may be recorded.
    LostLease,
}

async fn run_one(
    ctx: JobContext,
    registry: Arc<Registry>,
    settings: RunnerSettings,
    worker: Arc<str>,
    claimed: Claimed,
) {
    let job = Job {
        id: claimed.id,
        tenant: claimed.tenant,
        kind: claimed.kind,
        payload: claimed.payload,
        attempt: claimed.attempt,
        max_attempts: claimed.max_attempts,
        budget: claimed.budget,
    };
    let span = tracing::info_span!(
        "job",
        job.id = %job.id,
        job.kind = %job.kind,
        job.attempt = job.attempt,
        tenant.id = job.tenant.map(|t| t.to_string()).unwrap_or_default(),
    );
    async move {
        let started = Instant::now();
        let outcome = attempt(&ctx, &registry, &settings, &worker, &job).await;
        record(&ctx, &settings, &worker, &job, outcome, started).await;
    }
    .instrument(span)
    .await;
}

/// Runs the handler, renewing the lease every third of it, until it ends or the lease is lost.
async fn attempt(
    ctx: &JobContext,
    registry: &Registry,
    settings: &RunnerSettings,
    worker: &str,
    job: &Job,
) -> Outcome {
    let Some(handler) = registry.get(&job.kind) else {
        return Outcome::Failed(JobError::permanent(format!(
            "no handler is registered for the job kind {}",
            job.kind
        )));
    };
    // A panic is a failed attempt, whether it comes while the handler builds its future or while
    // the future runs.
    let crashed = || Outcome::Failed(JobError::retry(PANICKED));
    let Ok(work) = std::panic::catch_unwind(AssertUnwindSafe(|| handler.run(ctx, job))) else {
        return crashed();
    };
    let work = AssertUnwindSafe(work).catch_unwind();
    tokio::pin!(work);
    let every = (settings.lease / 3).max(Duration::from_millis(10));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = &mut work => {
                return match result {
                    Ok(Ok(())) => Outcome::Succeeded,
                    Ok(Err(e)) => Outcome::Failed(e),
                    Err(_) => crashed(),
                };
            }
            _ = beat.tick() => {
                match store_jobs::extend(&ctx.store, worker, job.id, job.attempt, settings.lease).await {
                    Ok(true) => {}
                    Ok(false) => return Outcome::LostLease,
                    // The lease still runs for a while; the next beat tries again.
                    Err(e) => tracing::warn!(error = %e, "could not renew the job's lease"),
                }
            }
        }
    }
}

/// Writes the outcome, trying a few times while the database is unreachable (else the job stays
/// running until its lease lapses, and runs again).
async fn record(
    ctx: &JobContext,
    settings: &RunnerSettings,
    worker: &str,
    job: &Job,
    outcome: Outcome,
    started: Instant,
) {
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let failure = match outcome {
        Outcome::LostLease => {
            tracing::warn!(
                duration_ms,
                "the job's lease moved to another worker; stopped it"
            );
            return;
        }
        Outcome::Succeeded => None,
        Outcome::Failed(e) => Some(e),
    };
    for round in 0..3u32 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(500) * round).await;
        }
        let written = match &failure {
            None => store_jobs::complete(&ctx.store, worker, job.id, job.attempt)
                .await
                .map(|ours| ours.then_some("succeeded")),
            Some(e) => {
                let (reason, retry_after) = match e {
                    JobError::Retry { reason, after } => {
                        let jitter = rand::rng().random_range(0.8..=1.2);
                        let delay = retry_delay(
                            job.attempt_in_run(),
                            settings.retry_base,
                            settings.retry_max,
                            *after,
                            jitter,
                        );
                        (reason, Some(delay))
                    }
                    JobError::Permanent { reason } => (reason, None),
                };
                let reason = truncate(reason);
                store_jobs::fail(
                    &ctx.store,
                    worker,
                    job.id,
                    job.attempt,
                    &reason,
                    retry_after,
                )
                .await
                .map(|status| {
                    status.map(|s| match s {
                        Failed::Requeued => "queued again",
                        Failed::Final => "failed",
                    })
                })
            }
        };
        match written {
            Ok(Some(status)) => {
                match &failure {
                    None => tracing::info!(duration_ms, "job succeeded"),
                    Some(e) => {
                        tracing::warn!(duration_ms, job.status = status, reason = %e, "job attempt failed")
                    }
                }
                return;
            }
            Ok(None) => {
                tracing::warn!(
                    duration_ms,
                    "the job's lease moved to another worker; its result was discarded"
                );
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not record the job's outcome"),
        }
    }
    tracing::error!(
        duration_ms,
        "gave up recording the job's outcome; it runs again once its lease lapses"
    );
}

fn truncate(reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() {
        return "failed without a reason".into();
    }
    reason.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(600);

    #[test]
    fn retries_double_from_two_seconds_to_a_ten_minute_cap() {
        let delays: Vec<u64> = (1..=11)
            .map(|attempt| retry_delay(attempt, BASE, MAX, None, 1.0).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(retry_delay(u32::MAX, BASE, MAX, None, 1.0), MAX);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_under_the_cap() {
        assert_eq!(
            retry_delay(3, BASE, MAX, None, 0.0),
            Duration::from_millis(6400)
        );
        assert_eq!(
            retry_delay(3, BASE, MAX, None, 9.0),
            Duration::from_millis(9600)
        );
        assert_eq!(retry_delay(10, BASE, MAX, None, 1.2), MAX);
    }

    #[test]
    fn a_handlers_own_wait_is_honoured_up_to_a_day() {
        let after = Some(Duration::from_secs(90));
        assert_eq!(
            retry_delay(1, BASE, MAX, after, 1.2),
            Duration::from_secs(90)
        );
        assert_eq!(
            retry_delay(1, BASE, MAX, Some(Duration::from_secs(3 * 24 * 3600)), 1.0),
            MAX_AFTER
        );
    }

    #[test]
    fn long_reasons_are_cut_and_empty_ones_named() {
        assert_eq!(truncate(&"é".repeat(600)).chars().count(), MAX_ERROR_CHARS);
        assert_eq!(truncate("  "), "failed without a reason");
    }
}
