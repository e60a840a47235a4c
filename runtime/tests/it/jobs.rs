//! The durable job runner: jobs run, fail, retry with back-off and fail for good as they should;
//! they survive a restart and a dead worker (whose lease lapses and who can record nothing
//! after); claiming is fair across tenants; dedupe keys, the jobs API with its permissions and
//! tenant isolation; and the first real job, purging a deleted tenant's Redis keys, retried while
//! Redis is down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::{Method, StatusCode};
use runtime::config::{RedisSettings, Secret};
use runtime::jobs::{Job, JobContext, JobError, JobHandler, Registry, Runner, RunnerSettings};
use runtime::store::jobs::{self as store_jobs, JobRow, NewJob};
use serde_json::{Value, json};
use shared::TenantId;
use shared::resources::{Job as JobDto, JobStatus, Page};
use uuid::Uuid;

use crate::support::{AppOptions, TestApp};
use crate::world::World;

/// Quick settings: a short lease, retries from 100 ms, and a poll long enough that a test
/// passing quickly proves the runner was woken, not that it happened to look.
fn quick() -> RunnerSettings {
    RunnerSettings {
        concurrency: 4,
        lease: Duration::from_secs(3),
        poll_interval: Duration::from_secs(30),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(2),
    }
}

/// One call of a probe handler.
#[derive(Debug, Clone)]
struct Run {
    job: Uuid,
    tenant: Option<TenantId>,
    attempt: u32,
    payload: Value,
    at: Instant,
}

type Behaviour =
    Arc<dyn Fn(JobContext, Job) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// A handler whose behaviour the test chooses; it records every call.
#[derive(Clone)]
struct Probe {
    kind: &'static str,
    behaviour: Behaviour,
    runs: Arc<Mutex<Vec<Run>>>,
}

impl Probe {
    fn new(
        kind: &'static str,
        behaviour: impl Fn(JobContext, Job) -> BoxFuture<'static, Result<(), JobError>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            kind,
            behaviour: Arc::new(behaviour),
            runs: Arc::default(),
        }
    }

    /// A probe that answers at once with what `f` says about the attempt.
    fn sync(
        kind: &'static str,
        f: impl Fn(&Job) -> Result<(), JobError> + Send + Sync + 'static,
    ) -> Self {
        Self::new(kind, move |_, job| {
            let result = f(&job);
            Box::pin(async move { result })
        })
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    fn registry(&self) -> Registry {
        Registry::new().with(self.clone()).unwrap()
    }
}

impl JobHandler for Probe {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        self.runs.lock().unwrap().push(Run {
            job: job.id,
            tenant: job.tenant,
            attempt: job.attempt,
            payload: job.payload.clone(),
            at: Instant::now(),
        });
        (self.behaviour)(ctx.clone(), job.clone())
    }
}

/// Enqueues a job in `tenant`'s own transaction.
async fn enqueue(app: &TestApp, tenant: TenantId, job: NewJob<'_>) -> Option<Uuid> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    let id = store_jobs::enqueue(&mut tx, &job).await.unwrap();
    tx.commit().await.unwrap();
    id
}

async fn enqueue_kind(app: &TestApp, tenant: TenantId, kind: &str) -> Uuid {
    enqueue(app, tenant, NewJob::new(kind, json!({ "n": 1 })))
        .await
        .unwrap()
}

async fn row(app: &TestApp, tenant: TenantId, id: Uuid) -> JobRow {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    store_jobs::get(&mut tx, id).await.unwrap().unwrap()
}

/// Polls the job until `done` holds for it (ten seconds at most).
async fn wait_until(
    app: &TestApp,
    tenant: TenantId,
    id: Uuid,
    what: &str,
    done: impl Fn(&JobRow) -> bool,
) -> JobRow {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = row(app, tenant, id).await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never {what}: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_status(app: &TestApp, tenant: TenantId, id: Uuid, status: JobStatus) -> JobRow {
    wait_until(app, tenant, id, status.as_str(), |j| {
        j.status == status.as_str()
    })
    .await
}

fn start(app: &TestApp, registry: Registry, settings: RunnerSettings, worker: &str) -> Runner {
    Runner::start(app.job_context(), registry, settings, worker)
}

/// A job of tenant A that failed for good (no runner involved).
pub async fn failed_job(app: &TestApp, tenant: TenantId) -> Uuid {
    let id = enqueue_kind(app, tenant, "test.failed").await;
    // As the database's administrator: the runtime's role cannot set attempts by hand.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.superuser_url())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE jobs SET status = 'failed', attempts = 8, finished_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&mut admin)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_queued_job_wakes_the_runner_runs_once_and_succeeds() {
    let probe = Probe::sync("test.hello", |_| Ok(()));
    let app = TestApp::spawn_with(AppOptions {
        jobs: Some((quick(), probe.registry())),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.jobs.as_ref().map(Runner::worker), Some("test-node"));
    let w = World::new(&app).await;
    let id = enqueue(
        &app,
        w.a,
        NewJob::new("test.hello", json!({ "invoice_id": "inv_1" })),
    )
    .await
    .unwrap();
    // The poll interval is 30 s: done well before it, the runner was woken by the enqueue.
    let started = Instant::now();
    let job = wait_status(&app, w.a, id, JobStatus::Succeeded).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!((job.attempts, job.last_error), (1, None));
    assert!(job.finished_at.is_some());
    let runs = probe.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].job, runs[0].tenant, runs[0].attempt),
        (id, Some(w.a), 1)
    );
    assert_eq!(runs[0].payload, json!({ "invoice_id": "inv_1" }));
}

#[tokio::test]
async fn a_handler_that_fails_twice_is_retried_with_back_off_and_ends_succeeded() {
    // Each attempt reads the error the previous one left, as the tenant would see it.
    let seen = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let seen_in = seen.clone();
    let probe = Probe::new("test.flaky", move |ctx, job| {
        let seen = seen_in.clone();
        Box::pin(async move {
            let tenant = job.tenant.unwrap();
            let mut tx = ctx.store.tenant_tx(tenant).await.unwrap();
            let before = store_jobs::get(&mut tx, job.id).await.unwrap().unwrap();
            seen.lock().unwrap().push(before.last_error);
            if job.attempt < 3 {
                Err(JobError::retry(format!("attempt {} failed", job.attempt)))
            } else {
                Ok(())
            }
        })
    });
    let settings = RunnerSettings {
        retry_base: Duration::from_millis(300),
        ..quick()
    };
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let _runner = start(&app, probe.registry(), settings, "w1");
    let id = enqueue_kind(&app, w.a, "test.flaky").await;
    let job = wait_status(&app, w.a, id, JobStatus::Succeeded).await;
    assert_eq!(job.attempts, 3);
    // The last failure stays visible after the success.
    assert_eq!(job.last_error.as_deref(), Some("attempt 2 failed"));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            None,
            Some("attempt 1 failed".to_string()),
            Some("attempt 2 failed".to_string())
        ]
    );
    // Back-off: 300 ms, then 600 ms, each within ±20 %.
    let runs = probe.runs();
    assert_eq!(
        runs.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let first = runs[1].at - runs[0].at;
    let second = runs[2].at - runs[1].at;
    assert!(first >= Duration::from_millis(240), "{first:?}");
    assert!(second >= Duration::from_millis(480), "{second:?}");
    assert!(
        second > first,
        "the wait doubles: {first:?}, then {second:?}"
    );
}

#[tokio::test]
async fn a_permanent_error_fails_the_job_at_once_and_the_api_shows_why() {
    let probe = Probe::sync("test.doomed", |_| {
        Err(JobError::permanent("the invoice does not exist"))
    });
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let _runner = start(&app, probe.registry(), quick(), "w1");
    let id = enqueue_kind(&app, w.a, "test.doomed").await;
    wait_status(&app, w.a, id, JobStatus::Failed).await;
    assert_eq!(probe.runs().len(), 1, "a permanent error is not retried");

    let admin = app.token_for(w.admin_a, None).await;
    let job: JobDto = app
        .get_json(&format!("/api/tenants/{}/jobs/{id}", w.a), &admin)
        .await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!((job.attempts, job.max_attempts), (1, 8));
    assert_eq!(
        job.last_error.as_deref(),
        Some("the invoice does not exist")
    );
    assert!(job.finished_at.is_some());
    let failed: Page<JobDto> = app
        .get_json(&format!("/api/tenants/{}/jobs?status=failed", w.a), &admin)
        .await;
    assert_eq!(failed.items.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
    let raw: Value = app
        .get_json(&format!("/api/tenants/{}/jobs/{id}", w.a), &admin)
        .await;
    assert!(
        raw.get("payload").is_none(),
        "payloads are never shown: {raw}"
    );
}

#[tokio::test]
async fn a_job_that_keeps_failing_fails_for_good_after_max_attempts() {
    let probe = Probe::sync("test.down", |job| {
        Err(JobError::retry(format!(
            "still down at attempt {}",
            job.attempt
        )))
    });
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let _runner = start(&app, probe.registry(), quick(), "w1");
    let id = enqueue(
        &app,
        w.a,
        NewJob {
            max_attempts: Some(3),
            ..NewJob::new("test.down", json!({}))
        },
    )
    .await
    .unwrap();
    let job = wait_status(&app, w.a, id, JobStatus::Failed).await;
    assert_eq!((job.attempts, job.max_attempts), (3, 3));
    assert_eq!(job.last_error.as_deref(), Some("still down at attempt 3"));
    assert_eq!(probe.runs().len(), 3);
}

#[tokio::test]
async fn a_job_enqueued_while_no_runner_runs_is_done_by_a_runner_started_later() {
    let probe = Probe::sync("test.later", |_| Ok(()));
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let id = enqueue_kind(&app, w.a, "test.later").await;
    let job = row(&app, w.a, id).await;
    assert_eq!((job.status.as_str(), job.attempts), ("queued", 0));

    let _runner = start(&app, probe.registry(), quick(), "w1");
    let job = wait_status(&app, w.a, id, JobStatus::Succeeded).await;
    assert_eq!(job.attempts, 1);
}

#[tokio::test]
async fn a_job_whose_worker_died_is_taken_over_after_its_lease_and_the_dead_worker_is_fenced() {
    // The first attempt never ends (its worker will die); the second waits for the test.
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let release_in = release.clone();
    let probe = Probe::new("test.crash", move |_, job| {
        let (started_tx, release) = (started_tx.clone(), release_in.clone());
        Box::pin(async move {
            let _ = started_tx.send(job.attempt);
            if job.attempt == 1 {
                std::future::pending::<()>().await;
            }
            release.notified().await;
            Ok(())
        })
    });
    let lease = Duration::from_millis(600);
    let settings = RunnerSettings { lease, ..quick() };
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let id = enqueue_kind(&app, w.a, "test.crash").await;

    let dead = start(&app, probe.registry(), settings.clone(), "worker-dead");
    assert_eq!(started.recv().await, Some(1));
    let claimed = row(&app, w.a, id).await;
    assert_eq!((claimed.status.as_str(), claimed.attempts), ("running", 1));
    // The worker dies: nothing is completed, failed or renewed any more.
    drop(dead);

    let _survivor = start(&app, probe.registry(), settings, "worker-new");
    assert_eq!(started.recv().await, Some(2));
    let runs = probe.runs();
    assert!(
        runs[1].at - runs[0].at >= lease - Duration::from_millis(100),
        "taken over only once the lease lapsed: {:?}",
        runs[1].at - runs[0].at
    );

    // While the new worker runs it, the dead one, were it to come back, can record nothing.
    let store = &app.store;
    assert!(
        !store_jobs::complete(store, "worker-dead", id, 1)
            .await
            .unwrap()
    );
    assert_eq!(
        store_jobs::fail(store, "worker-dead", id, 1, "late", None)
            .await
            .unwrap(),
        None
    );
    assert!(
        !store_jobs::extend(store, "worker-dead", id, 1, lease)
            .await
            .unwrap()
    );
    let (holder, _, attempts, live) = lease_of(&app, w.a, id).await;
    assert_eq!(
        (holder.as_deref(), attempts, live),
        (Some("worker-new"), 2, true)
    );
    let taken_over = row(&app, w.a, id).await;
    assert_eq!(taken_over.status, "running");
    assert_eq!(
        taken_over.last_error.as_deref(),
        Some("the worker running the previous attempt stopped renewing its lease")
    );

    release.notify_one();
    let job = wait_status(&app, w.a, id, JobStatus::Succeeded).await;
    assert_eq!(job.attempts, 2);
    assert_eq!(probe.runs().len(), 2);
}

#[tokio::test]
async fn a_job_whose_worker_died_on_its_last_attempt_fails_instead_of_running_again() {
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let probe = Probe::new("test.last", move |_, _| {
        let started_tx = started_tx.clone();
        Box::pin(async move {
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
            Ok(())
        })
    });
    let settings = RunnerSettings {
        lease: Duration::from_millis(600),
        ..quick()
    };
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let id = enqueue(
        &app,
        w.a,
        NewJob {
            max_attempts: Some(1),
            ..NewJob::new("test.last", json!({}))
        },
    )
    .await
    .unwrap();
    let dead = start(&app, probe.registry(), settings.clone(), "worker-dead");
    started.recv().await.unwrap();
    drop(dead);
    let _other = start(&app, probe.registry(), settings, "worker-new");
    let job = wait_status(&app, w.a, id, JobStatus::Failed).await;
    assert_eq!((job.attempts, job.max_attempts), (1, 1));
    assert_eq!(
        job.last_error.as_deref(),
        Some("the worker running the last attempt stopped renewing its lease")
    );
    assert_eq!(probe.runs().len(), 1);
}

/// Who holds the job's lease, until when, at which attempt, and whether it is live now.
async fn lease_of(
    app: &TestApp,
    tenant: TenantId,
    id: Uuid,
) -> (Option<String>, chrono::DateTime<chrono::Utc>, i32, bool) {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_as(
        "SELECT locked_by, locked_until, attempts, locked_until > now() FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(tx.connection())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_running_job_keeps_its_lease_while_its_worker_lives() {
    let release = Arc::new(tokio::sync::Notify::new());
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let release_in = release.clone();
    let probe = Probe::new("test.long", move |_, _| {
        let (release, started_tx) = (release_in.clone(), started_tx.clone());
        Box::pin(async move {
            let _ = started_tx.send(());
            release.notified().await;
            Ok(())
        })
    });
    let lease = Duration::from_millis(600);
    let settings = RunnerSettings { lease, ..quick() };
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let id = enqueue_kind(&app, w.a, "test.long").await;
    let _holder = start(&app, probe.registry(), settings.clone(), "holder");
    started.recv().await.unwrap();
    // Another runner is looking for due work the whole time.
    let _rival = start(&app, probe.registry(), settings, "rival");

    let (_, first_end, _, _) = lease_of(&app, w.a, id).await;
    // Wait until the lease was renewed past twice its first length: the first lease has long
    // lapsed by then, so only renewals kept the job from the rival.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (holder, end, attempts, live) = lease_of(&app, w.a, id).await;
        assert_eq!((holder.as_deref(), attempts), (Some("holder"), 1));
        assert!(live, "the lease lapsed while its worker lived");
        if end > first_end + chrono::Duration::from_std(lease * 2).unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "the lease was never renewed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.notify_one();
    let job = wait_status(&app, w.a, id, JobStatus::Succeeded).await;
    assert_eq!(job.attempts, 1);
    assert_eq!(probe.runs().len(), 1, "the rival never ran it");
}

#[tokio::test]
async fn a_tenant_with_many_queued_jobs_does_not_starve_a_tenant_with_one() {
    let probe = Probe::sync("test.fair", |_| Ok(()));
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push((w.a, enqueue_kind(&app, w.a, "test.fair").await));
    }
    ids.push((w.b, enqueue_kind(&app, w.b, "test.fair").await));
    let _runner = start(
        &app,
        probe.registry(),
        RunnerSettings {
            concurrency: 1,
            ..quick()
        },
        "w1",
    );
    for (tenant, id) in &ids {
        wait_status(&app, *tenant, *id, JobStatus::Succeeded).await;
    }
    let order: Vec<Option<TenantId>> = probe.runs().iter().map(|r| r.tenant).collect();
    assert_eq!(order.len(), 21);
    let b_at = order.iter().position(|t| *t == Some(w.b)).unwrap();
    assert!(b_at < 2, "B's only job ran {}th: {order:?}", b_at + 1);
}

#[tokio::test]
async fn an_enqueue_whose_dedupe_key_is_queued_or_running_is_a_no_op() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let keyed = |key| NewJob {
        dedupe_key: Some(key),
        ..NewJob::new("test.digest", json!({}))
    };
    let first = enqueue(&app, w.a, keyed("2026-12-01")).await.unwrap();
    assert_eq!(enqueue(&app, w.a, keyed("2026-12-01")).await, None);
    // Another key, another kind or another tenant is another job.
    assert!(enqueue(&app, w.a, keyed("2026-12-02")).await.is_some());
    assert!(
        enqueue(
            &app,
            w.a,
            NewJob {
                dedupe_key: Some("2026-12-01"),
                ..NewJob::new("test.other", json!({}))
            }
        )
        .await
        .is_some()
    );
    assert!(enqueue(&app, w.b, keyed("2026-12-01")).await.is_some());
    // Platform jobs dedupe among themselves.
    let platform = |key| NewJob {
        dedupe_key: Some(key),
        ..NewJob::new("test.platform", json!({}))
    };
    assert!(
        store_jobs::enqueue_platform(&app.store, &platform("k"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store_jobs::enqueue_platform(&app.store, &platform("k"))
            .await
            .unwrap(),
        None
    );

    // Once the first is done, the key is free again.
    let probe = Probe::sync("test.digest", |_| Ok(()));
    let runner = start(&app, probe.registry(), quick(), "w1");
    wait_status(&app, w.a, first, JobStatus::Succeeded).await;
    runner.shutdown(Duration::from_secs(5)).await;
    assert!(enqueue(&app, w.a, keyed("2026-12-01")).await.is_some());
}

#[tokio::test]
async fn platform_jobs_run_without_a_tenant_and_no_tenant_sees_them() {
    let probe = Probe::sync("test.platform", |_| Ok(()));
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let id = store_jobs::enqueue_platform(&app.store, &NewJob::new("test.platform", json!({})))
        .await
        .unwrap()
        .unwrap();
    let _runner = start(&app, probe.registry(), quick(), "w1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.runs().is_empty() {
        assert!(Instant::now() < deadline, "the platform job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = probe.runs();
    assert_eq!((runs[0].job, runs[0].tenant), (id, None));
    for tenant in [w.a, w.b] {
        let mut tx = app.store.tenant_tx(tenant).await.unwrap();
        assert_eq!(store_jobs::get(&mut tx, id).await.unwrap(), None);
    }
    // Nor does anyone outside a tenant.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_handler_that_panics_is_a_failed_attempt_and_the_runner_lives_on() {
    // Attempt 1 panics while it runs, attempt 2 before its future even exists, attempt 3 works.
    let probe = Probe::new("test.panicky", |_, job| {
        assert_ne!(job.attempt, 2, "a bug in a handler, before its first await");
        Box::pin(async move {
            assert_ne!(job.attempt, 1, "a bug in a handler, while it runs");
            Ok(())
        })
    });
    let steady = Probe::sync("test.steady", |_| Ok(()));
    let registry = probe.registry().with(steady.clone()).unwrap();
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let _runner = start(&app, registry, quick(), "w1");
    let id = enqueue_kind(&app, w.a, "test.panicky").await;
    let job = wait_status(&app, w.a, id, JobStatus::Succeeded).await;
    assert_eq!(job.attempts, 3);
    assert_eq!(
        job.last_error.as_deref(),
        Some("the job's handler crashed (panicked)")
    );
    let other = enqueue_kind(&app, w.a, "test.steady").await;
    wait_status(&app, w.a, other, JobStatus::Succeeded).await;
}

#[tokio::test]
async fn a_job_of_an_unknown_kind_fails_at_once_saying_so() {
    let probe = Probe::sync("test.known", |_| Ok(()));
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let _runner = start(&app, probe.registry(), quick(), "w1");
    let id = enqueue_kind(&app, w.a, "test.unheard_of").await;
    let job = wait_status(&app, w.a, id, JobStatus::Failed).await;
    assert_eq!(job.attempts, 1);
    assert_eq!(
        job.last_error.as_deref(),
        Some("no handler is registered for the job kind test.unheard_of")
    );
}

#[tokio::test]
async fn shutdown_stops_claiming_and_lets_the_running_job_finish() {
    let release = Arc::new(tokio::sync::Notify::new());
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let release_in = release.clone();
    let probe = Probe::new("test.slow", move |_, _| {
        let (release, started_tx) = (release_in.clone(), started_tx.clone());
        Box::pin(async move {
            let _ = started_tx.send(());
            release.notified().await;
            Ok(())
        })
    });
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let first = enqueue_kind(&app, w.a, "test.slow").await;
    let runner = start(&app, probe.registry(), quick(), "w1");
    started.recv().await.unwrap();
    runner.stop_claiming();
    let second = enqueue_kind(&app, w.a, "test.slow").await;
    release.notify_one();
    assert!(
        runner.shutdown(Duration::from_secs(10)).await,
        "the running job finished"
    );
    assert_eq!(row(&app, w.a, first).await.status, "succeeded");
    let left = row(&app, w.a, second).await;
    assert_eq!((left.status.as_str(), left.attempts), ("queued", 0));
    assert_eq!(probe.runs().len(), 1);
}

#[tokio::test]
async fn tenants_see_and_retry_only_their_own_jobs() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let a_job = failed_job(&app, w.a).await;
    let b_job = failed_job(&app, w.b).await;
    let admin_a = app.token_for(w.admin_a, None).await;
    let admin_b = app.token_for(w.admin_b, None).await;

    for (method, path) in [
        (Method::GET, format!("/api/tenants/{}/jobs/{a_job}", w.a)),
        (
            Method::POST,
            format!("/api/tenants/{}/jobs/{a_job}/retry", w.a),
        ),
        // A's id under B's own tenant: not found either.
        (Method::GET, format!("/api/tenants/{}/jobs/{a_job}", w.b)),
        (
            Method::POST,
            format!("/api/tenants/{}/jobs/{a_job}/retry", w.b),
        ),
    ] {
        let res = app
            .request(method.clone(), &path, Some(&admin_b))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    assert_eq!(
        row(&app, w.a, a_job).await.status,
        "failed",
        "A's job untouched"
    );
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/jobs", w.a),
            Some(&admin_b),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let list: Page<JobDto> = app
        .get_json(&format!("/api/tenants/{}/jobs?per_page=100", w.a), &admin_a)
        .await;
    assert!(list.items.iter().any(|j| j.id == a_job));
    assert!(list.items.iter().all(|j| j.id != b_job), "{list:?}");
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/jobs/{b_job}", w.a),
            Some(&admin_a),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Nor can A's transaction touch B's job in the database.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let touched = sqlx::query("UPDATE jobs SET status = 'queued' WHERE id = $1")
        .bind(b_job)
        .execute(tx.connection())
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(touched, 0);
}

/// A retry by hand must not hand out an attempt number again: it is the lease's epoch, and a run
/// whose lease lapsed before the retry (on this very node, perhaps) may still be going.
#[tokio::test]
async fn a_run_from_before_a_retry_cannot_record_its_result_after_it() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let id = enqueue(
        &app,
        w.a,
        NewJob {
            max_attempts: Some(1),
            ..NewJob::new("test.stale", json!({}))
        },
    )
    .await
    .unwrap();
    // Attempt 1, with a lease that has lapsed by the next claim: its worker is stuck.
    let first = store_jobs::claim(&app.store, "node-1", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|c| (c.id, c.attempt)).collect::<Vec<_>>(),
        [(id, 1)]
    );
    // The next claim finds the lapsed lease; that was its last attempt, so it failed.
    assert!(
        store_jobs::claim(&app.store, "node-1", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(row(&app, w.a, id).await.status, "failed");
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert!(matches!(
        store_jobs::requeue(&mut tx, id).await.unwrap(),
        store_jobs::Requeue::Queued(_)
    ));
    tx.commit().await.unwrap();
    // The same node claims it again.
    let again = store_jobs::claim(&app.store, "node-1", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].attempt, 1, "a new attempt number");
    // The stuck run of attempt 1 wakes up: nothing it says counts.
    assert!(
        !store_jobs::extend(&app.store, "node-1", id, 1, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !store_jobs::complete(&app.store, "node-1", id, 1)
            .await
            .unwrap()
    );
    assert_eq!(row(&app, w.a, id).await.status, "running");
    assert!(
        store_jobs::complete(&app.store, "node-1", id, again[0].attempt)
            .await
            .unwrap()
    );
    assert_eq!(row(&app, w.a, id).await.status, "succeeded");
}

#[tokio::test]
async fn an_operator_lists_jobs_but_only_an_admin_retries_a_failed_one() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let id = failed_job(&app, w.a).await;
    let operator = app.token_for(w.operator_a, None).await;
    let admin = app.token_for(w.admin_a, None).await;
    let retry = format!("/api/tenants/{}/jobs/{id}/retry", w.a);

    let list: Page<JobDto> = app
        .get_json(
            &format!("/api/tenants/{}/jobs?status=failed", w.a),
            &operator,
        )
        .await;
    assert_eq!(list.items.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
    let res = app
        .request(Method::POST, &retry, Some(&operator))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(row(&app, w.a, id).await.status, "failed");

    let res = app
        .request(Method::POST, &retry, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let job: JobDto = res.json().await.unwrap();
    // Its attempts are counted on, with as many again ahead of it as it was first given.
    assert_eq!(
        (job.status, job.attempts, job.max_attempts, job.finished_at),
        (JobStatus::Queued, 8, 16, None)
    );
    assert_eq!(app.audit_actions(w.a).await.last().unwrap(), "job.retried");
    // A queued (or running, or succeeded) job cannot be retried.
    let res = app
        .request(Method::POST, &retry, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // Filters are checked.
    for query in ["status=done", "kind=Not%20A%20Kind"] {
        let res = app
            .request(
                Method::GET,
                &format!("/api/tenants/{}/jobs?{query}", w.a),
                Some(&admin),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
    }
    let by_kind: Page<JobDto> = app
        .get_json(
            &format!("/api/tenants/{}/jobs?kind=test.failed", w.a),
            &admin,
        )
        .await;
    assert_eq!(by_kind.items.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}

/// Marks a few keys of `tenant` in the app's Redis key space.
async fn mark_keys(app: &TestApp, tenant: TenantId) {
    for name in ["window:c1", "dedupe:Ev1", "parked:x"] {
        app.redis
            .set_marker(&app.redis.key(&format!("{tenant}:{name}")), 600)
            .await
            .unwrap();
    }
}

async fn key_count(app: &TestApp, tenant: TenantId) -> i64 {
    app.redis
        .eval(
            "return #redis.call('KEYS', ARGV[1])",
            vec![],
            vec![app.redis.key(&format!("{tenant}:*"))],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn deleting_a_tenant_enqueues_its_redis_purge_which_is_retried_while_redis_is_down() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    mark_keys(&app, w.a).await;
    mark_keys(&app, w.b).await;
    let platform = app.token_for(w.platform, None).await;
    let slug: String = app
        .get_json::<Value>(&format!("/api/tenants/{}", w.a), &platform)
        .await["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}?confirm={slug}", w.a),
            Some(&platform),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // The purge was committed with the deletion; no runner runs yet, so nothing is deleted.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let (rows, _) = store_jobs::list(&mut tx, None, Some("tenant.purge_redis"), 10, 0)
        .await
        .unwrap();
    drop(tx);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let id = rows[0].id;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("queued", 0));
    assert_eq!(key_count(&app, w.a).await, 3);

    // A runner whose Redis is down (a closed port) fails and retries.
    let prefix = app.redis.key("");
    let (down, _task) = runtime::redis::Redis::connect(&RedisSettings {
        url: Secret::new("redis://127.0.0.1:1".into()),
        key_prefix: prefix.trim_end_matches(':').to_string(),
    })
    .unwrap();
    let broken = Runner::start(
        JobContext {
            redis: down,
            ..app.job_context()
        },
        Registry::builtin().unwrap(),
        quick(),
        "no-redis",
    );
    let job = wait_until(&app, w.a, id, "retried", |j| j.attempts >= 2).await;
    assert_eq!(
        job.last_error.as_deref(),
        Some("Redis could not be reached to delete the tenant's keys")
    );
    assert_ne!(job.status, "failed");
    assert!(broken.shutdown(Duration::from_secs(10)).await);
    assert_eq!(key_count(&app, w.a).await, 3);

    // With Redis back, the next attempt deletes A's keys and none of B's.
    let _runner = start(&app, Registry::builtin().unwrap(), quick(), "w1");
    let job = wait_status(&app, w.a, id, JobStatus::Succeeded).await;
    assert!(job.attempts >= 3);
    assert_eq!(key_count(&app, w.a).await, 0);
    assert_eq!(
        key_count(&app, w.b).await,
        3,
        "the other tenant's keys stay"
    );
}
