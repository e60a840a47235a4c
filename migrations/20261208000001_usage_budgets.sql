-- Cost control: usage kept per quarter hour (so it adds up by any time zone's days, including
-- the ones 30 or 45 minutes off the hour), with whose key paid and the channel; monthly budgets
-- with atomic reservations; and the alerts they raise, once per threshold per month.

-- One row per (tenant, quarter hour, agent, channel, key owner, provider, model, slot). `bucket`
-- is the UTC start of the quarter hour; every time zone's day starts on one. `channel` is NULL
-- for calls made for no conversation (memory summaries). Rows are kept after their agent is
-- deleted, so the history stays whole.
CREATE TABLE llm_usage (
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bucket               timestamptz NOT NULL
        CHECK (extract(epoch FROM bucket)::bigint % 900 = 0),
    agent_id             uuid,
    channel              text CHECK (channel IN ('slack', 'whatsapp', 'web')),
    key_owner            text NOT NULL DEFAULT 'platform' CHECK (key_owner IN ('platform', 'tenant')),
    provider             text NOT NULL,
    model                text NOT NULL,
    slot                 smallint NOT NULL DEFAULT 0 CHECK (slot BETWEEN 0 AND 15),
    calls                bigint NOT NULL DEFAULT 0,
    input_tokens         bigint NOT NULL DEFAULT 0,
    output_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens  bigint NOT NULL DEFAULT 0,
    cost_micro_usd       bigint NOT NULL DEFAULT 0,
    unpriced_calls       bigint NOT NULL DEFAULT 0,
    CONSTRAINT llm_usage_key UNIQUE NULLS NOT DISTINCT
        (tenant_id, bucket, agent_id, channel, key_owner, provider, model, slot)
);
CREATE INDEX llm_usage_time_idx ON llm_usage (tenant_id, bucket);
-- The platform's cross-tenant view reads by time first.
CREATE INDEX llm_usage_bucket_idx ON llm_usage (bucket);

-- What the daily rows knew, at the start of each day in the tenant's zone, on the platform's
-- keys (the daily rows did not say whose key paid).
INSERT INTO llm_usage (tenant_id, bucket, agent_id, channel, key_owner, provider, model, slot,
                       calls, input_tokens, output_tokens, cached_input_tokens, cost_micro_usd,
                       unpriced_calls)
SELECT u.tenant_id, (u.day::timestamp AT TIME ZONE t.time_zone), u.agent_id, NULL, 'platform',
       u.provider, u.model, u.slot, u.calls, u.input_tokens, u.output_tokens,
       u.cached_input_tokens, u.cost_micro_usd, u.unpriced_calls
  FROM llm_usage_daily u JOIN tenants t ON t.id = u.tenant_id
 WHERE extract(epoch FROM (u.day::timestamp AT TIME ZONE t.time_zone))::bigint % 900 = 0;
DROP TABLE llm_usage_daily;

-- A monthly budget over the tenant's spend (agent_id NULL) or one agent's. The month is the
-- tenant's calendar month; the period's spend is kept by its key ('YYYY-MM') in
-- budget_periods, so a new month starts at zero without any reset.
CREATE TABLE budgets (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id           uuid,
    monthly_micro_usd  bigint NOT NULL CHECK (monthly_micro_usd > 0),
    thresholds         smallint[] NOT NULL DEFAULT '{50,80,100}'
        CHECK (cardinality(thresholds) BETWEEN 1 AND 10 AND 0 < ALL (thresholds) AND 100 >= ALL (thresholds)),
    policy             text NOT NULL DEFAULT 'soft' CHECK (policy IN ('soft', 'downgrade', 'handoff')),
    downgrade_group    text CHECK (char_length(downgrade_group) BETWEEN 1 AND 100),
    count_own_keys     boolean NOT NULL DEFAULT false,
    webhook_url        text CHECK (char_length(webhook_url) BETWEEN 8 AND 2000),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((policy = 'downgrade') = (downgrade_group IS NOT NULL)),
    CONSTRAINT budgets_scope UNIQUE NULLS NOT DISTINCT (tenant_id, agent_id),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);

-- A budget's settled spend in one month. Reservations lock this row while they check and add,
-- so concurrent calls of one tenant admit one at a time.
CREATE TABLE budget_periods (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    budget_id        uuid NOT NULL,
    period           text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    spent_micro_usd  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, budget_id, period),
    FOREIGN KEY (tenant_id, budget_id) REFERENCES budgets (tenant_id, id) ON DELETE CASCADE
);

-- The worst-case cost of one LLM call in flight, held against a budget until the call settles
-- (the row is deleted in the transaction that records the call) or `expires_at` passes (a
-- crashed turn's hold lapses on its own; expired rows are swept when the next call reserves).
CREATE TABLE budget_reservations (
    id          uuid NOT NULL,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    budget_id   uuid NOT NULL,
    period      text NOT NULL,
    amount      bigint NOT NULL CHECK (amount >= 0),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id, budget_id),
    FOREIGN KEY (tenant_id, budget_id, period)
        REFERENCES budget_periods (tenant_id, budget_id, period) ON DELETE CASCADE
);
CREATE INDEX budget_reservations_open_idx ON budget_reservations (tenant_id, budget_id, period, expires_at);

-- A threshold crossed, once per budget, month and threshold (the unique key is the "once").
-- `mailed` and `webhook_status` record what the alert job has done, so a retried job does not
-- mail or post twice.
CREATE TABLE budget_alerts (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    budget_id          uuid NOT NULL,
    period             text NOT NULL,
    threshold          smallint NOT NULL CHECK (threshold BETWEEN 1 AND 100),
    spent_micro_usd    bigint NOT NULL,
    monthly_micro_usd  bigint NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    mailed             integer,
    webhook_status     integer,
    UNIQUE (tenant_id, budget_id, period, threshold),
    FOREIGN KEY (tenant_id, budget_id) REFERENCES budgets (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX budget_alerts_recent_idx ON budget_alerts (tenant_id, created_at DESC);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['llm_usage', 'budgets', 'budget_periods', 'budget_reservations', 'budget_alerts']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
            'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE
    ON llm_usage, budgets, budget_periods, budget_reservations, budget_alerts TO konstruct_runtime;

-- The engine keeps a tenant's budgets in its configuration snapshot: a change reloads it.
CREATE TRIGGER budgets_notify_config AFTER INSERT OR UPDATE OR DELETE ON budgets
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_config();

-- A budget can hand conversations off: its reason is stored with the escalation.
ALTER TABLE escalations DROP CONSTRAINT escalations_reason_check;
ALTER TABLE escalations ADD CONSTRAINT escalations_reason_check
    CHECK (reason IN ('failed_resolutions', 'keywords', 'human_requested', 'agent_requested', 'budget'));

-- The platform's cross-tenant usage view: one narrow function, owned by the schema owner, that
-- returns sums per tenant (never a row of any tenant's conversations), called only by the
-- platform-admin route, which audits each call.
CREATE FUNCTION platform_usage(from_at timestamptz, to_at timestamptz)
RETURNS TABLE (tenant_id uuid, tenant_name text, key_owner text, calls bigint, input_tokens bigint,
               output_tokens bigint, cached_input_tokens bigint, cost_micro_usd bigint,
               unpriced_calls bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.tenant_id, t.name, u.key_owner, sum(u.calls)::bigint, sum(u.input_tokens)::bigint,
           sum(u.output_tokens)::bigint, sum(u.cached_input_tokens)::bigint,
           sum(u.cost_micro_usd)::bigint, sum(u.unpriced_calls)::bigint
      FROM public.llm_usage u JOIN public.tenants t ON t.id = u.tenant_id
     WHERE u.bucket >= from_at AND u.bucket < to_at
     GROUP BY u.tenant_id, t.name, u.key_owner
$$;
GRANT USAGE, CREATE ON SCHEMA public TO konstruct_resolver;
ALTER FUNCTION platform_usage(timestamptz, timestamptz) OWNER TO konstruct_resolver;
REVOKE CREATE ON SCHEMA public FROM konstruct_resolver;
GRANT SELECT (id, name) ON tenants TO konstruct_resolver;
GRANT SELECT (tenant_id, bucket, key_owner, calls, input_tokens, output_tokens, cached_input_tokens,
              cost_micro_usd, unpriced_calls) ON llm_usage TO konstruct_resolver;
REVOKE ALL ON FUNCTION platform_usage(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_usage(timestamptz, timestamptz) TO konstruct_runtime;
