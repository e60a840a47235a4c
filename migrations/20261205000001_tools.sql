-- Tools: a tenant's own HTTP tools, the calls agents make (kept with their conversation), and
-- the per-agent bounds of a turn's tool loop.

-- A tenant's HTTP tool. Secret header values are sealed together (XChaCha20-Poly1305 under a
-- versioned platform key, the tenant and `tool_headers:{id}` as associated data); `headers`
-- keeps every header's name and, for plain ones, the value; secret ones only a hint.
CREATE TABLE tools (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (name ~ '^[A-Za-z0-9_-]{1,64}$'),
    description         text NOT NULL CHECK (char_length(description) BETWEEN 1 AND 1000),
    parameters          jsonb NOT NULL CHECK (jsonb_typeof(parameters) = 'object'
                                              AND octet_length(parameters::text) <= 16384),
    method              text NOT NULL CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    url                 text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2048),
    headers             jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(headers) = 'array'
                                                           AND jsonb_array_length(headers) <= 20),
    secrets             bytea,
    secrets_key_version integer,
    max_response_bytes  integer NOT NULL CHECK (max_response_bytes BETWEEN 1 AND 262144),
    timeout_ms          integer NOT NULL CHECK (timeout_ms BETWEEN 100 AND 30000),
    needs_confirmation  boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, name),
    CHECK ((secrets IS NULL) = (secrets_key_version IS NULL))
);

-- One tool call of a turn, recorded before its result is used: a redelivered turn replays the
-- recorded steps (never asking the LLM or running the tool again) and runs only what is still
-- `running`, with this row's id as the idempotency key. Arguments and results are the
-- conversation's content, with secrets redacted; the audit trail only says a call happened.
CREATE TABLE tool_calls (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    conversation_id  uuid NOT NULL,
    -- The inbound event whose turn made the call (the reply's `reply_to`).
    event_id         text NOT NULL CHECK (char_length(event_id) BETWEEN 1 AND 512),
    agent_id         uuid,
    -- Who wrote the message whose turn made the call: only they can confirm it.
    end_user_id      uuid,
    step             smallint NOT NULL CHECK (step >= 0),
    position         smallint NOT NULL CHECK (position >= 0),
    -- The model's id for the call, echoed back with its result.
    call_id          text NOT NULL CHECK (char_length(call_id) BETWEEN 1 AND 200),
    -- The assigned tool it resolved to (a built-in id or an HTTP tool's uuid); NULL when the
    -- model named none of the agent's tools.
    tool_id          text CHECK (char_length(tool_id) <= 100),
    name             text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- As stored and shown: credential-like values and the tools' secrets redacted.
    arguments        jsonb NOT NULL,
    -- The real arguments, sealed (XChaCha20-Poly1305, `tool_call:{id}`), when redaction changed
    -- them: a resumed or confirmed call runs with these; dropped once the call finished.
    sealed_arguments bytea,
    -- Text the model wrote beside its calls in this step (kept on the step's first call).
    step_text        text NOT NULL DEFAULT '' CHECK (char_length(step_text) <= 20000),
    outcome          text NOT NULL CHECK (outcome IN ('running', 'ok', 'failed', 'timeout',
                            'invalid_arguments', 'not_assigned', 'refused',
                            'awaiting_confirmation', 'declined')),
    result           text NOT NULL DEFAULT '' CHECK (char_length(result) <= 300000),
    -- The knowledge-base passages a search returned, so a resumed turn cites them too.
    passages         jsonb CHECK (passages IS NULL OR jsonb_typeof(passages) = 'array'),
    duration_ms      integer CHECK (duration_ms >= 0),
    -- A call that waited for the customer's yes: the event whose turn confirmed it and ran it.
    confirmed_event  text CHECK (char_length(confirmed_event) <= 512),
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (tenant_id, event_id, step, position),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id)
        ON DELETE CASCADE
);
CREATE INDEX tool_calls_recent_idx ON tool_calls (tenant_id, created_at DESC, id DESC);
CREATE INDEX tool_calls_tool_idx ON tool_calls (tenant_id, tool_id, created_at DESC);
CREATE INDEX tool_calls_agent_idx ON tool_calls (tenant_id, agent_id, created_at DESC);
CREATE INDEX tool_calls_conversation_idx ON tool_calls (tenant_id, conversation_id, created_at);
CREATE INDEX tool_calls_awaiting_idx ON tool_calls (tenant_id, conversation_id)
    WHERE outcome = 'awaiting_confirmation';
CREATE INDEX tool_calls_confirmed_idx ON tool_calls (tenant_id, confirmed_event)
    WHERE confirmed_event IS NOT NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tools', 'tool_calls'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                       'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
                       'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO konstruct_runtime', t);
    END LOOP;
END
$$;

-- A tool change reaches every node's configuration snapshot, as agent changes do.
CREATE TRIGGER tools_notify_config AFTER INSERT OR UPDATE OR DELETE ON tools
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_config();

-- The bounds of an agent's tool loop; NULL: the platform's defaults (never above its caps).
ALTER TABLE agents
    ADD COLUMN max_tool_steps integer CHECK (max_tool_steps BETWEEN 1 AND 100),
    ADD COLUMN turn_deadline_secs integer CHECK (turn_deadline_secs BETWEEN 1 AND 3600);

-- What the model said when it asked for a person (kept with the conversation).
ALTER TABLE escalations ADD COLUMN note text CHECK (char_length(note) <= 1000);

-- The agent itself can ask for a person (its hand-off tool).
ALTER TABLE escalations DROP CONSTRAINT escalations_reason_check;
ALTER TABLE escalations ADD CONSTRAINT escalations_reason_check
    CHECK (reason IN ('failed_resolutions', 'keywords', 'human_requested', 'agent_requested'));
