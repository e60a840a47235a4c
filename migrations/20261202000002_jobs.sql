-- Durable jobs: the one queue every background task of the product runs on (runtime::jobs).
--
-- A job is enqueued inside the transaction that makes the change needing it (the transactional
-- outbox), so the two commit together or not at all. Runners on every node claim due jobs through
-- one narrow SECURITY DEFINER function, fair across tenants, and hold each claimed job under a
-- lease (locked_by, locked_until) they renew while it runs. The lease's epoch is the attempt
-- number: completion, failure and renewal name both, so a worker whose lease expired and whose job
-- another worker claimed again can no longer record anything for it.

CREATE TABLE public.jobs (
    id            uuid PRIMARY KEY,
    -- NULL for platform jobs. No foreign key: a job such as "purge a deleted tenant's Redis keys"
    -- must outlive its tenant.
    tenant_id     uuid,
    kind          text NOT NULL CHECK (length(kind) <= 100
                                       AND kind ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    -- Ids and parameters only: never message text or personal data beyond what the job needs.
    payload       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'
                                                     AND octet_length(payload::text) <= 16384),
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- The attempt after which it fails for good. Attempt numbers never repeat: a retry by hand
    -- moves max_attempts on by `budget` rather than resetting attempts, so a run from before the
    -- retry (the attempt number is its lease's epoch) can never pass for one after it.
    max_attempts  integer NOT NULL DEFAULT 8 CHECK (max_attempts >= 1),
    -- How many attempts it was given when enqueued, and is given again by each retry by hand.
    budget        integer NOT NULL DEFAULT 8 CHECK (budget BETWEEN 1 AND 100),
    -- When a queued job is due (its first run, or its next retry).
    run_at        timestamptz NOT NULL DEFAULT now(),
    -- The lease of a running job: which worker holds it, and until when unless renewed.
    locked_by     text CHECK (length(locked_by) BETWEEN 1 AND 200),
    locked_until  timestamptz,
    -- When the latest attempt was claimed; the claim serves the tenant served longest ago first.
    started_at    timestamptz,
    -- Why the latest failed attempt failed, in our own short words (kept after a later success).
    last_error    text CHECK (char_length(last_error) <= 500),
    -- An enqueue with a key that is queued or running for the same tenant and kind is a no-op.
    dedupe_key    text CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CONSTRAINT jobs_lease_while_running
        CHECK ((status = 'running') = (locked_by IS NOT NULL AND locked_until IS NOT NULL)),
    CONSTRAINT jobs_finished_when_final
        CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);

-- Due work, for claiming per tenant (platform jobs as the nil tenant), for the earliest due
-- time, and for leases that lapsed.
CREATE INDEX jobs_queued_tenant_idx
    ON public.jobs ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), run_at, id)
    WHERE status = 'queued';
CREATE INDEX jobs_queued_due_idx ON public.jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_running_lease_idx ON public.jobs (locked_until) WHERE status = 'running';
-- When each tenant was served last, for fair claiming.
CREATE INDEX jobs_tenant_started_idx
    ON public.jobs ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), started_at DESC)
    WHERE started_at IS NOT NULL;
-- A tenant's list, newest first.
CREATE INDEX jobs_tenant_recent_idx ON public.jobs (tenant_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX jobs_dedupe_key ON public.jobs (tenant_id, kind, dedupe_key) NULLS NOT DISTINCT
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');

ALTER TABLE public.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.jobs
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

-- The runtime enqueues a tenant's jobs inside its TenantTx, lists and reads them, and queues a
-- failed one again (status, max_attempts, run_at, finished_at). Everything a runner does goes
-- through the functions below.
GRANT SELECT, INSERT ON public.jobs TO konstruct_runtime;
GRANT UPDATE (status, max_attempts, run_at, finished_at, updated_at) ON public.jobs TO konstruct_runtime;

-- Every node's runner listens on `konstruct_jobs`; a job that becomes due now (enqueued, or
-- queued again by hand) wakes them at commit. The payload is the kind. Retries scheduled for later
-- are found by the runners' own timers.
CREATE FUNCTION public.notify_job_queued() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('konstruct_jobs', NEW.kind);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_on_insert AFTER INSERT ON public.jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND NEW.run_at <= now())
    EXECUTE FUNCTION public.notify_job_queued();
CREATE TRIGGER jobs_notify_on_requeue AFTER UPDATE OF status ON public.jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued' AND NEW.run_at <= now())
    EXECUTE FUNCTION public.notify_job_queued();

-- ---------------------------------------------------------------------------------------------
-- The runners' path across tenants: SECURITY DEFINER functions owned by konstruct_resolver, which
-- may touch only the columns granted at the end.
-- ---------------------------------------------------------------------------------------------

-- Claims up to p_limit due jobs for p_worker, leased for p_lease_secs. First, jobs whose lease
-- lapsed (their worker died or lost touch) go back to the queue, or fail when that was their last
-- attempt; their worker's later calls are then refused. Then the claim is fair across tenants:
-- each tenant with due work offers its oldest p_limit jobs, ranked; every tenant's first comes
-- before any tenant's second, and among equal ranks the tenant served longest ago goes first.
-- The tenants are found by skipping through the queued-jobs index (one probe per tenant), so a
-- tenant's backlog costs nothing. Rows another claimer holds are skipped, not waited for.
CREATE FUNCTION public.jobs_claim(p_worker text, p_limit integer, p_lease_secs double precision)
RETURNS TABLE (id uuid, tenant_id uuid, kind text, payload jsonb, attempts integer,
               max_attempts integer, budget integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    UPDATE public.jobs j
       SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
           finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
           locked_by = NULL, locked_until = NULL, updated_at = now(),
           last_error = CASE WHEN j.attempts >= j.max_attempts
                             THEN 'the worker running the last attempt stopped renewing its lease'
                             ELSE 'the worker running the previous attempt stopped renewing its lease'
                        END
     WHERE j.status = 'running' AND j.locked_until <= now();

    RETURN QUERY
    WITH RECURSIVE due_tenants (k) AS (
        (SELECT coalesce(j.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)
           FROM public.jobs j
          WHERE j.status = 'queued' AND j.run_at <= now()
          ORDER BY 1
          LIMIT 1)
        UNION ALL
        SELECT (SELECT coalesce(j.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)
                  FROM public.jobs j
                 WHERE j.status = 'queued' AND j.run_at <= now()
                   AND coalesce(j.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) > d.k
                 ORDER BY 1
                 LIMIT 1)
          FROM due_tenants d
         WHERE d.k IS NOT NULL
    ), candidates AS (
        SELECT c.id, c.run_at, c.rank, served.last
          FROM due_tenants d
         CROSS JOIN LATERAL (
               SELECT x.id, x.run_at, row_number() OVER (ORDER BY x.run_at, x.id) AS rank
                 FROM (SELECT j.id, j.run_at
                         FROM public.jobs j
                        WHERE coalesce(j.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = d.k
                          AND j.status = 'queued' AND j.run_at <= now()
                        ORDER BY j.run_at, j.id
                        LIMIT greatest(p_limit, 0)) x
               ) c
         CROSS JOIN LATERAL (
               SELECT max(s.started_at) AS last
                 FROM public.jobs s
                WHERE coalesce(s.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = d.k
               ) served
         WHERE d.k IS NOT NULL
    ), picked AS (
        SELECT j.id
          FROM candidates c
          JOIN public.jobs j ON j.id = c.id
         WHERE j.status = 'queued' AND j.run_at <= now()
         ORDER BY c.rank, c.last NULLS FIRST, c.run_at, c.id
         LIMIT greatest(p_limit, 0)
           FOR UPDATE OF j SKIP LOCKED
    )
    UPDATE public.jobs j
       SET status = 'running', attempts = j.attempts + 1, locked_by = p_worker,
           locked_until = now() + make_interval(secs => p_lease_secs), started_at = now(),
           updated_at = now()
      FROM picked
     WHERE j.id = picked.id
    RETURNING j.id, j.tenant_id, j.kind, j.payload, j.attempts, j.max_attempts, j.budget;
END
$$;

-- Renews a lease, only while it is still p_worker's for attempt p_attempt. False when the job
-- was taken over (or finished): the worker must stop.
CREATE FUNCTION public.jobs_extend(p_id uuid, p_worker text, p_attempt integer, p_lease_secs double precision)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH renewed AS (
        UPDATE public.jobs j
           SET locked_until = now() + make_interval(secs => p_lease_secs), updated_at = now()
         WHERE j.id = p_id AND j.status = 'running' AND j.locked_by = p_worker
           AND j.attempts = p_attempt
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM renewed)
$$;

-- Marks a job succeeded, only while its lease is still p_worker's for attempt p_attempt.
CREATE FUNCTION public.jobs_complete(p_id uuid, p_worker text, p_attempt integer)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        UPDATE public.jobs j
           SET status = 'succeeded', locked_by = NULL, locked_until = NULL, finished_at = now(),
               updated_at = now()
         WHERE j.id = p_id AND j.status = 'running' AND j.locked_by = p_worker
           AND j.attempts = p_attempt
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM done)
$$;

-- Records a failed attempt, only while the lease is still p_worker's for attempt p_attempt: the
-- job is queued again in p_retry_after_secs, or failed for good when that is NULL (a permanent
-- error) or no attempts are left. Returns the new status, NULL when the lease was not the
-- worker's any more.
CREATE FUNCTION public.jobs_fail(p_id uuid, p_worker text, p_attempt integer, p_error text,
                          p_retry_after_secs double precision)
RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.jobs j
       SET status = CASE WHEN p_retry_after_secs IS NULL OR j.attempts >= j.max_attempts
                         THEN 'failed' ELSE 'queued' END,
           run_at = CASE WHEN p_retry_after_secs IS NULL OR j.attempts >= j.max_attempts
                         THEN j.run_at
                         ELSE now() + make_interval(secs => greatest(p_retry_after_secs, 0)) END,
           finished_at = CASE WHEN p_retry_after_secs IS NULL OR j.attempts >= j.max_attempts
                              THEN now() END,
           last_error = left(coalesce(p_error, 'failed'), 500),
           locked_by = NULL, locked_until = NULL, updated_at = now()
     WHERE j.id = p_id AND j.status = 'running' AND j.locked_by = p_worker
       AND j.attempts = p_attempt
    RETURNING j.status
$$;

-- When the runners should look again: the earliest due time of a queued job or lease end of a
-- running one. A time, nothing else.
CREATE FUNCTION public.jobs_next_due()
RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(
        (SELECT min(j.run_at) FROM public.jobs j WHERE j.status = 'queued'),
        (SELECT min(j.locked_until) FROM public.jobs j WHERE j.status = 'running'))
$$;

-- Enqueues a platform job (no tenant). Returns its id, or NULL when a job of this kind with the
-- same dedupe key is queued or running.
CREATE FUNCTION public.jobs_enqueue_platform(p_id uuid, p_kind text, p_payload jsonb, p_dedupe_key text,
                                      p_max_attempts integer, p_delay_secs double precision)
RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.jobs (id, kind, payload, dedupe_key, max_attempts, budget, run_at)
    VALUES (p_id, p_kind, coalesce(p_payload, '{}'::jsonb), p_dedupe_key, coalesce(p_max_attempts, 8),
            coalesce(p_max_attempts, 8),
            now() + make_interval(secs => greatest(coalesce(p_delay_secs, 0), 0)))
    ON CONFLICT (tenant_id, kind, dedupe_key)
        WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
        DO NOTHING
    RETURNING id
$$;

GRANT USAGE, CREATE ON SCHEMA public TO konstruct_resolver;
ALTER FUNCTION public.jobs_claim(text, integer, double precision) OWNER TO konstruct_resolver;
ALTER FUNCTION public.jobs_extend(uuid, text, integer, double precision) OWNER TO konstruct_resolver;
ALTER FUNCTION public.jobs_complete(uuid, text, integer) OWNER TO konstruct_resolver;
ALTER FUNCTION public.jobs_fail(uuid, text, integer, text, double precision) OWNER TO konstruct_resolver;
ALTER FUNCTION public.jobs_next_due() OWNER TO konstruct_resolver;
ALTER FUNCTION public.jobs_enqueue_platform(uuid, text, jsonb, text, integer, double precision)
    OWNER TO konstruct_resolver;
REVOKE CREATE ON SCHEMA public FROM konstruct_resolver;

GRANT SELECT (id, tenant_id, kind, payload, status, attempts, max_attempts, budget, run_at,
              locked_by, locked_until, started_at, dedupe_key)
    ON public.jobs TO konstruct_resolver;
GRANT UPDATE (status, attempts, run_at, locked_by, locked_until, started_at, last_error,
              updated_at, finished_at)
    ON public.jobs TO konstruct_resolver;
-- Platform jobs only: tenant_id is not among the columns, so it stays NULL.
GRANT INSERT (id, kind, payload, dedupe_key, max_attempts, budget, run_at) ON public.jobs TO konstruct_resolver;

REVOKE ALL ON FUNCTION public.jobs_claim(text, integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.jobs_extend(uuid, text, integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.jobs_complete(uuid, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.jobs_fail(uuid, text, integer, text, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.jobs_next_due() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.jobs_enqueue_platform(uuid, text, jsonb, text, integer, double precision)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION public.notify_job_queued() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.jobs_claim(text, integer, double precision) TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION public.jobs_extend(uuid, text, integer, double precision) TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION public.jobs_complete(uuid, text, integer) TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION public.jobs_fail(uuid, text, integer, text, double precision) TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION public.jobs_next_due() TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION public.jobs_enqueue_platform(uuid, text, jsonb, text, integer, double precision)
    TO konstruct_runtime;
