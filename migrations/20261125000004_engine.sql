-- What the message engine needs beyond the foundation: per-tenant rate-limit thresholds, a
-- notification whenever a tenant's engine configuration changes, and usage rows that concurrent
-- turns do not fight over.

-- Rate limits per tenant (all the tenant's channels together) and per channel connection. NULL
-- means the platform default from the runtime's settings; a limit is set as a pair or not at all.
ALTER TABLE tenants
    ADD COLUMN rate_per_minute             integer CHECK (rate_per_minute BETWEEN 1 AND 100000),
    ADD COLUMN rate_burst                  integer CHECK (rate_burst BETWEEN 1 AND 10000),
    ADD COLUMN connection_rate_per_minute  integer CHECK (connection_rate_per_minute BETWEEN 1 AND 100000),
    ADD COLUMN connection_rate_burst       integer CHECK (connection_rate_burst BETWEEN 1 AND 10000),
    ADD CONSTRAINT tenants_rate_pair
        CHECK ((rate_per_minute IS NULL) = (rate_burst IS NULL)),
    ADD CONSTRAINT tenants_connection_rate_pair
        CHECK ((connection_rate_per_minute IS NULL) = (connection_rate_burst IS NULL));

-- Every engine node listens on `konstruct_config`; the payload is the tenant id. The notification
-- is sent by the changing transaction itself and delivered only when it commits, so no code path
-- can change an agent, a limit or a key and forget to tell the engine.
CREATE FUNCTION notify_tenant_config() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
    tenant uuid;
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        tenant := coalesce(NEW.id, OLD.id);
    ELSIF TG_OP = 'DELETE' THEN
        tenant := OLD.tenant_id;
    ELSE
        tenant := NEW.tenant_id;
    END IF;
    PERFORM pg_notify('konstruct_config', tenant::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_notify_config AFTER UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_config();
CREATE TRIGGER agents_notify_config AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_config();
CREATE TRIGGER tenant_llm_keys_notify_config AFTER INSERT OR UPDATE OR DELETE ON tenant_llm_keys
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_config();
CREATE TRIGGER channel_connections_notify_config AFTER INSERT OR UPDATE OR DELETE ON channel_connections
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_config();

-- Usage rows: one per (tenant, day, agent, provider, model, slot). A turn adds to the slot of its
-- conversation, so concurrent conversations of one tenant update different rows instead of
-- queueing on one row lock; readers sum the slots.
ALTER TABLE llm_usage_daily ADD COLUMN slot smallint NOT NULL DEFAULT 0 CHECK (slot BETWEEN 0 AND 15);
ALTER TABLE llm_usage_daily DROP CONSTRAINT llm_usage_daily_key;
ALTER TABLE llm_usage_daily ADD CONSTRAINT llm_usage_daily_key
    UNIQUE NULLS NOT DISTINCT (tenant_id, day, agent_id, provider, model, slot);

-- Escalations: when a conversation was handed to a human, by which rule, and to whom.
CREATE TABLE escalations (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL,
    reason           text NOT NULL CHECK (reason IN ('failed_resolutions', 'keywords', 'human_requested')),
    handoff_target   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX escalations_open_idx ON escalations (tenant_id, created_at DESC) WHERE resolved_at IS NULL;
ALTER TABLE escalations ENABLE ROW LEVEL SECURITY;
ALTER TABLE escalations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON escalations
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON escalations TO konstruct_runtime;
