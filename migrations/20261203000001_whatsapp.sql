-- WhatsApp: connections that failed for good, channel health, delivery reports on outbound parts,
-- the 24-hour customer-service window and AI disclosure per conversation, and agents that keep to
-- their business function.

-- A connection the provider refused for good (a revoked token) is 'failed' until reconnected.
ALTER TABLE channel_connections DROP CONSTRAINT channel_connections_status_check;
ALTER TABLE channel_connections
    ADD CONSTRAINT channel_connections_status_check
        CHECK (status IN ('active', 'disabled', 'failed'));

-- How each connection is doing: when the last message came in and what last went wrong. A table
-- of its own, because every change to channel_connections reloads the tenant's configuration.
CREATE TABLE channel_health (
    tenant_id       uuid NOT NULL,
    connection_id   uuid NOT NULL,
    last_inbound_at timestamptz,
    last_error      text CHECK (char_length(last_error) <= 500),
    last_error_at   timestamptz,
    PRIMARY KEY (tenant_id, connection_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES channel_connections (tenant_id, id)
        ON DELETE CASCADE,
    CHECK ((last_error IS NULL) = (last_error_at IS NULL))
);
ALTER TABLE channel_health ENABLE ROW LEVEL SECURITY;
ALTER TABLE channel_health FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON channel_health
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON channel_health TO konstruct_runtime;

-- Outbound parts move on after 'sent' as the provider reports them: delivered, read, or failed
-- (with the provider's error code). 'failed' also marks a part that could never be sent (outside
-- WhatsApp's window with no template).
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages
    ADD CONSTRAINT messages_status_check
        CHECK (status IN ('pending', 'sent', 'delivered', 'read', 'failed')),
    ADD COLUMN failure           text CHECK (char_length(failure) <= 300),
    ADD COLUMN status_updated_at timestamptz;
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('answer', 'notice', 'apology', 'handoff', 'decline'));
-- Status reports name our message by the provider's id.
CREATE INDEX messages_provider_message_idx ON messages (tenant_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- A delivery report that arrived before its part was marked sent (Meta can report `sent` while
-- our own transaction is still committing): kept until the part is marked, for a day at most.
CREATE TABLE early_delivery_reports (
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_message_id text NOT NULL CHECK (length(provider_message_id) BETWEEN 1 AND 200),
    status              text NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed')),
    failure             text CHECK (char_length(failure) <= 300),
    received_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider_message_id)
);
CREATE INDEX early_delivery_reports_age_idx ON early_delivery_reports (tenant_id, received_at);
ALTER TABLE early_delivery_reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE early_delivery_reports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON early_delivery_reports
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON early_delivery_reports TO konstruct_runtime;

ALTER TABLE agents
    ADD COLUMN scope_guard text NOT NULL DEFAULT 'whatsapp'
        CHECK (scope_guard IN ('whatsapp', 'all_channels', 'off')),
    ADD COLUMN in_scope_examples jsonb NOT NULL DEFAULT '[]'
        CHECK (jsonb_typeof(in_scope_examples) = 'array'),
    ADD COLUMN ai_disclosure text NOT NULL DEFAULT '' CHECK (char_length(ai_disclosure) <= 500);

-- Requests declined as outside the agent's business function, per agent and the tenant's day.
CREATE TABLE scope_declines_daily (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id   uuid NOT NULL,
    day        date NOT NULL,
    declined   bigint NOT NULL DEFAULT 0 CHECK (declined >= 0),
    PRIMARY KEY (tenant_id, agent_id, day),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE scope_declines_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE scope_declines_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON scope_declines_daily
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON scope_declines_daily TO konstruct_runtime;
