-- LLM usage per tenant, agent, model and day, and tenants' own provider keys (encrypted).

-- One row per (tenant, day, agent, provider, model); calls add to it. agent_id is NULL for calls
-- not made for an agent (e.g. validating a key) and is kept after the agent is deleted, so the
-- history stays whole. cost_micro_usd sums the calls whose price is known; unpriced_calls counts
-- the others, so an unknown price is never mistaken for a free call.
CREATE TABLE llm_usage_daily (
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day                  date NOT NULL,
    agent_id             uuid,
    provider             text NOT NULL,
    model                text NOT NULL,
    calls                bigint NOT NULL DEFAULT 0,
    input_tokens         bigint NOT NULL DEFAULT 0,
    output_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens  bigint NOT NULL DEFAULT 0,
    cost_micro_usd       bigint NOT NULL DEFAULT 0,
    unpriced_calls       bigint NOT NULL DEFAULT 0,
    CONSTRAINT llm_usage_daily_key UNIQUE NULLS NOT DISTINCT (tenant_id, day, agent_id, provider, model)
);

-- A tenant's own key per provider, sealed with XChaCha20-Poly1305 under a versioned platform key
-- with the tenant id and provider as associated data. Only the last four characters are kept in
-- clear, as a hint for the operator.
CREATE TABLE tenant_llm_keys (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider     text NOT NULL CHECK (provider IN ('openai', 'anthropic')),
    ciphertext   bytea NOT NULL,
    key_version  integer NOT NULL,
    hint         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['llm_usage_daily', 'tenant_llm_keys']
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

GRANT SELECT, INSERT, UPDATE, DELETE ON llm_usage_daily, tenant_llm_keys TO konstruct_runtime;
