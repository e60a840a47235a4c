-- Foundation schema: tenants, users and roles, agents, channel connections, conversations,
-- messages and the append-only audit trail.
--
-- Runs as the owner role (konstruct_owner). The runtime logs in as a member of the NOLOGIN group
-- role konstruct_runtime, which gets only the privileges granted here. Both group roles are
-- created by `konstruct setup-db` (runtime/src/store/bootstrap.rs) before any migration runs.
--
-- Tenant isolation invariant: every table with a tenant_id column has ROW LEVEL SECURITY enabled
-- AND forced (so not even the owner reads across tenants by accident) and a policy whose USING and
-- WITH CHECK compare tenant_id with the transaction-local setting app.tenant_id. A missing or
-- empty setting matches no row (NULLIF turns the '' a finished transaction leaves behind into
-- NULL), so forgetting to set it fails closed. The schema lint test enforces this for every
-- future table.

-- The migration bookkeeping is readable by the runtime so /readyz can tell whether the schema is
-- current.
GRANT SELECT ON _sqlx_migrations TO konstruct_runtime;

-- ---------------------------------------------------------------------------------------------
-- Tenants. The row's own id is its tenant id.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

-- ---------------------------------------------------------------------------------------------
-- Users are global: one person may belong to several tenants. Their tenant roles live in
-- tenant_members, which is tenant-owned.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE users (
    id                 uuid PRIMARY KEY,
    email              text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    display_name       text NOT NULL DEFAULT '',
    password_hash      text,
    is_platform_admin  boolean NOT NULL DEFAULT false,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE tenant_members (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('customer_admin', 'customer_operator')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX tenant_members_user_idx ON tenant_members (user_id);

-- ---------------------------------------------------------------------------------------------
-- AI employees.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE agents (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    job_title          text NOT NULL DEFAULT '',
    persona            text NOT NULL DEFAULT '',
    system_prompt      text NOT NULL DEFAULT '',
    job_description    text NOT NULL DEFAULT '',
    model_preference   text NOT NULL DEFAULT '',
    business_function  text NOT NULL DEFAULT '',
    tools              jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tools) = 'array'),
    escalation_rules   jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(escalation_rules) = 'array'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE INDEX agents_tenant_idx ON agents (tenant_id, created_at);

-- ---------------------------------------------------------------------------------------------
-- Channel connections: a Slack workspace, a WhatsApp number or the portal's web channel.
-- Secrets are stored only as XChaCha20-Poly1305 ciphertext with the key version that sealed them.
-- (kind, external_id) is globally unique: it is how an inbound webhook finds its tenant, through
-- resolve_channel() below.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE channel_connections (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('slack', 'whatsapp', 'web')),
    external_id         text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 200),
    display_name        text NOT NULL DEFAULT '',
    agent_id            uuid,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    settings            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    secret_ciphertext   bytea,
    secret_key_version  integer,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, external_id),
    UNIQUE (tenant_id, id),
    CHECK ((secret_ciphertext IS NULL) = (secret_key_version IS NULL)),
    -- The answering agent must belong to the same tenant.
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE SET NULL (agent_id)
);

-- ---------------------------------------------------------------------------------------------
-- Conversations and their messages.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conversations (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_connection_id  uuid NOT NULL,
    agent_id               uuid,
    external_key           text NOT NULL CHECK (length(external_key) BETWEEN 1 AND 500),
    status                 text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'handed_off', 'closed')),
    created_at             timestamptz NOT NULL DEFAULT now(),
    last_message_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, channel_connection_id, external_key),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_connection_id)
        REFERENCES channel_connections (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE SET NULL (agent_id)
);
CREATE INDEX conversations_recent_idx ON conversations (tenant_id, last_message_at DESC);

CREATE TABLE messages (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id    uuid NOT NULL,
    direction          text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    sender             text NOT NULL DEFAULT '',
    body               text NOT NULL,
    attachments        jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(attachments) = 'array'),
    provider_event_id  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX messages_conversation_idx ON messages (tenant_id, conversation_id, created_at);
-- The same provider event never becomes two messages.
CREATE UNIQUE INDEX messages_provider_event_key
    ON messages (tenant_id, provider_event_id) WHERE provider_event_id IS NOT NULL;

-- Row-level security on every tenant-owned table.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_members', 'agents', 'channel_connections', 'conversations', 'messages']
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

-- ---------------------------------------------------------------------------------------------
-- Audit trail: append-only, with a per-tenant hash chain.
--
-- Each row's hash is sha256(prev_hash || canonical row), where the canonical row is a jsonb array
-- of every meaningful column (jsonb's text form is canonical and unambiguous about NULLs). A
-- trigger assigns seq, prev_hash, hash and created_at, so callers cannot forge them; another
-- trigger rejects UPDATE, DELETE and TRUNCATE. audit_verify_chain() walks a tenant's chain and
-- reports the first row that was edited, removed or moved.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE audit_events (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    seq              bigint NOT NULL,
    actor_kind       text NOT NULL CHECK (actor_kind IN ('system', 'user', 'platform_admin', 'end_user')),
    actor_id         uuid,
    impersonator_id  uuid,
    action           text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    target_kind      text,
    target_id        text,
    details          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    request_id       text,
    created_at       timestamptz NOT NULL,
    prev_hash        bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash             bytea NOT NULL CHECK (length(hash) = 32),
    UNIQUE (tenant_id, seq)
);
CREATE INDEX audit_events_recent_idx ON audit_events (tenant_id, created_at DESC);
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

CREATE FUNCTION audit_row_hash(
    p_prev_hash bytea, p_tenant_id uuid, p_seq bigint, p_actor_kind text, p_actor_id uuid,
    p_impersonator_id uuid, p_action text, p_target_kind text, p_target_id text,
    p_details jsonb, p_request_id text, p_created_at timestamptz)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog
AS $$
    SELECT sha256(p_prev_hash || convert_to(jsonb_build_array(
        p_tenant_id, p_seq, p_actor_kind, p_actor_id, p_impersonator_id, p_action,
        p_target_kind, p_target_id, p_details, p_request_id,
        to_char(p_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    )::text, 'UTF8'))
$$;

CREATE FUNCTION audit_genesis_hash() RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT decode(repeat('00', 32), 'hex') $$;

CREATE FUNCTION audit_chain_append() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    -- One writer per tenant chain at a time; other tenants are not blocked.
    PERFORM pg_advisory_xact_lock(hashtextextended('konstruct.audit:' || NEW.tenant_id::text, 0));
    SELECT a.seq, a.hash INTO last_seq, last_hash
      FROM audit_events a
     WHERE a.tenant_id = NEW.tenant_id
     ORDER BY a.seq DESC
     LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, audit_genesis_hash());
    NEW.created_at := date_trunc('microseconds', clock_timestamp());
    NEW.hash := audit_row_hash(NEW.prev_hash, NEW.tenant_id, NEW.seq, NEW.actor_kind, NEW.actor_id,
        NEW.impersonator_id, NEW.action, NEW.target_kind, NEW.target_id, NEW.details,
        NEW.request_id, NEW.created_at);
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_reject_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_chain_append();
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();

-- Walks one tenant's chain in seq order. Runs as the caller, so row-level security limits it to
-- the tenant of the current transaction.
CREATE FUNCTION audit_verify_chain(p_tenant_id uuid)
RETURNS TABLE (ok boolean, rows_checked bigint, first_bad_seq bigint, problem text, head_hash bytea)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public
AS $$
DECLARE
    r              audit_events%ROWTYPE;
    expected_seq   bigint := 1;
    expected_prev  bytea := audit_genesis_hash();
    checked        bigint := 0;
BEGIN
    FOR r IN SELECT * FROM audit_events a WHERE a.tenant_id = p_tenant_id ORDER BY a.seq LOOP
        IF r.seq <> expected_seq THEN
            RETURN QUERY SELECT false, checked, r.seq,
                format('expected seq %s but found %s: rows were deleted or renumbered', expected_seq, r.seq),
                expected_prev;
            RETURN;
        END IF;
        IF r.prev_hash <> expected_prev THEN
            RETURN QUERY SELECT false, checked, r.seq,
                'prev_hash does not match the previous row: the chain was broken or reordered'::text,
                expected_prev;
            RETURN;
        END IF;
        IF r.hash <> audit_row_hash(r.prev_hash, r.tenant_id, r.seq, r.actor_kind, r.actor_id,
                r.impersonator_id, r.action, r.target_kind, r.target_id, r.details, r.request_id,
                r.created_at) THEN
            RETURN QUERY SELECT false, checked, r.seq,
                'row content does not match its hash: the row was edited'::text, expected_prev;
            RETURN;
        END IF;
        expected_prev := r.hash;
        expected_seq := expected_seq + 1;
        checked := checked + 1;
    END LOOP;
    RETURN QUERY SELECT true, checked, NULL::bigint, NULL::text, expected_prev;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Channel -> tenant resolution, before any tenant is known (an inbound webhook names only a
-- team_id or phone_number_id). This is the one narrow path across tenants: a SECURITY DEFINER
-- function owned by konstruct_resolver (NOLOGIN, BYPASSRLS), which may read only the routing
-- columns below. It answers one exact (kind, external_id) lookup and nothing else.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION resolve_channel(p_kind text, p_external_id text)
RETURNS TABLE (tenant_id uuid, connection_id uuid, tenant_status text, connection_status text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT c.tenant_id, c.id, t.status, c.status
      FROM public.channel_connections c
      JOIN public.tenants t ON t.id = c.tenant_id
     WHERE c.kind = p_kind AND c.external_id = p_external_id
$$;

GRANT USAGE, CREATE ON SCHEMA public TO konstruct_resolver;
ALTER FUNCTION resolve_channel(text, text) OWNER TO konstruct_resolver;
REVOKE CREATE ON SCHEMA public FROM konstruct_resolver;
REVOKE ALL ON FUNCTION resolve_channel(text, text) FROM PUBLIC;
GRANT SELECT (id, tenant_id, kind, external_id, status) ON channel_connections TO konstruct_resolver;
GRANT SELECT (id, status) ON tenants TO konstruct_resolver;

-- ---------------------------------------------------------------------------------------------
-- The runtime's privileges. Nothing more: no TRUNCATE, no DDL, no UPDATE/DELETE on the audit
-- trail, no access to the migrations' owner-only functions.
-- ---------------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA public TO konstruct_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    tenants, users, tenant_members, agents, channel_connections, conversations, messages
    TO konstruct_runtime;
GRANT SELECT, INSERT ON audit_events TO konstruct_runtime;
REVOKE ALL ON FUNCTION audit_verify_chain(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_verify_chain(uuid) TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION resolve_channel(text, text) TO konstruct_runtime;
