-- Audit hardening: a keyed seal over each tenant's hash chain, and every function pinned to a
-- search_path that nothing can shadow.
--
-- 1. audit_seals. The hash chain in audit_events can be recomputed by anyone who can write the
--    table as its owner (audit_row_hash is plain SQL). The runtime therefore appends, as the last
--    statement of every transaction that appended audit rows, an HMAC-SHA256 of (tenant id, the
--    first and last seq the transaction appended, the last row's hash) under a key the database
--    never sees (KONSTRUCT_AUDIT_KEYS). Each seal covers exactly the rows its transaction wrote,
--    so the seals of a sound trail tile it from seq 1 without a gap; a gap is rows nobody sealed
--    (a forger who rewrote rows and deleted their seals cannot have the next honest seal vouch
--    for them). Seals are append-only like the trail.
--
-- 2. search_path. Every function is re-created with SET search_path = pg_catalog, pg_temp (the
--    temporary schema last, so a temporary object can never shadow anything) and every table
--    and function it names schema-qualified, so no object created in another schema, or in
--    public by someone with CREATE there, is picked up by mistake. Behaviour, owners and grants
--    stay as they were: CREATE OR REPLACE keeps a function's owner and privileges (the owner
--    role is a member of konstruct_resolver, so it may replace that role's functions). The
--    schema lint test fails for any function in public that does not pin its search_path.

-- ---------------------------------------------------------------------------------------------
-- Seals
-- ---------------------------------------------------------------------------------------------
CREATE TABLE public.audit_seals (
    tenant_id    uuid NOT NULL,
    -- The first row of the run this seals (the transaction's first append).
    first_seq    bigint NOT NULL CHECK (first_seq > 0),
    -- The last row of the run (no foreign key: a seal whose row was removed is evidence,
    -- reported by the verification, not something to prevent).
    seq          bigint NOT NULL CHECK (seq >= first_seq),
    -- That row's hash when it was sealed.
    row_hash     bytea NOT NULL CHECK (length(row_hash) = 32),
    key_version  bigint NOT NULL CHECK (key_version >= 0),
    seal         bytea NOT NULL CHECK (length(seal) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);
ALTER TABLE public.audit_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_seals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.audit_seals
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON public.audit_seals TO konstruct_runtime;

-- ---------------------------------------------------------------------------------------------
-- The audit functions, pinned.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.audit_row_hash(
    p_prev_hash bytea, p_tenant_id uuid, p_seq bigint, p_actor_kind text, p_actor_id uuid,
    p_impersonator_id uuid, p_action text, p_target_kind text, p_target_id text,
    p_details jsonb, p_request_id text, p_created_at timestamptz)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.sha256(p_prev_hash || pg_catalog.convert_to(pg_catalog.jsonb_build_array(
        p_tenant_id, p_seq, p_actor_kind, p_actor_id, p_impersonator_id, p_action,
        p_target_kind, p_target_id, p_details, p_request_id,
        pg_catalog.to_char(p_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    )::text, 'UTF8'))
$$;

CREATE OR REPLACE FUNCTION public.audit_genesis_hash() RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex') $$;

CREATE OR REPLACE FUNCTION public.audit_chain_append() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    -- One writer per tenant chain at a time; other tenants are not blocked. The lock is held
    -- until the transaction ends, so the seal the runtime writes just before committing is
    -- written while its row is still the chain's head.
    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('konstruct.audit:' || NEW.tenant_id::text, 0));
    SELECT a.seq, a.hash INTO last_seq, last_hash
      FROM public.audit_events a
     WHERE a.tenant_id = NEW.tenant_id
     ORDER BY a.seq DESC
     LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, public.audit_genesis_hash());
    NEW.created_at := pg_catalog.date_trunc('microseconds', pg_catalog.clock_timestamp());
    NEW.hash := public.audit_row_hash(NEW.prev_hash, NEW.tenant_id, NEW.seq, NEW.actor_kind,
        NEW.actor_id, NEW.impersonator_id, NEW.action, NEW.target_kind, NEW.target_id,
        NEW.details, NEW.request_id, NEW.created_at);
    RETURN NEW;
END
$$;

-- Shared by audit_events and audit_seals: both are append-only for everyone, owner included.
CREATE OR REPLACE FUNCTION public.audit_reject_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON public.audit_seals
    FOR EACH ROW EXECUTE FUNCTION public.audit_reject_change();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON public.audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION public.audit_reject_change();

-- Walks one tenant's chain in seq order. Runs as the caller, so row-level security limits it to
-- the tenant of the current transaction.
CREATE OR REPLACE FUNCTION public.audit_verify_chain(p_tenant_id uuid)
RETURNS TABLE (ok boolean, rows_checked bigint, first_bad_seq bigint, problem text, head_hash bytea)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r              public.audit_events%ROWTYPE;
    expected_seq   bigint := 1;
    expected_prev  bytea := public.audit_genesis_hash();
    checked        bigint := 0;
BEGIN
    FOR r IN SELECT * FROM public.audit_events a WHERE a.tenant_id = p_tenant_id ORDER BY a.seq LOOP
        IF r.seq <> expected_seq THEN
            RETURN QUERY SELECT false, checked, r.seq,
                pg_catalog.format('expected seq %s but found %s: rows were deleted or renumbered',
                    expected_seq, r.seq),
                expected_prev;
            RETURN;
        END IF;
        IF r.prev_hash <> expected_prev THEN
            RETURN QUERY SELECT false, checked, r.seq,
                'prev_hash does not match the previous row: the chain was broken or reordered'::text,
                expected_prev;
            RETURN;
        END IF;
        IF r.hash <> public.audit_row_hash(r.prev_hash, r.tenant_id, r.seq, r.actor_kind,
                r.actor_id, r.impersonator_id, r.action, r.target_kind, r.target_id, r.details,
                r.request_id, r.created_at) THEN
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
-- The narrow cross-tenant paths (SECURITY DEFINER, owned by konstruct_resolver), pinned.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.resolve_channel(p_kind text, p_external_id text)
RETURNS TABLE (tenant_id uuid, connection_id uuid, tenant_status text, connection_status text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.tenant_id, c.id, t.status, c.status
      FROM public.channel_connections c
      JOIN public.tenants t ON t.id = c.tenant_id
     WHERE c.kind = p_kind AND c.external_id = p_external_id
$$;

CREATE OR REPLACE FUNCTION public.user_memberships(p_user_id uuid)
RETURNS TABLE (tenant_id uuid, role text, tenant_slug text, tenant_name text, tenant_status text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.tenant_id, m.role, t.slug, t.name, t.status
      FROM public.tenant_members m
      JOIN public.tenants t ON t.id = m.tenant_id
     WHERE m.user_id = p_user_id
     ORDER BY t.name, t.id
$$;

CREATE OR REPLACE FUNCTION public.platform_list_tenants(p_search text, p_limit integer, p_offset integer)
RETURNS TABLE (id uuid, slug text, name text, status text, created_at timestamptz,
               updated_at timestamptz, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.slug, t.name, t.status, t.created_at, t.updated_at, pg_catalog.count(*) OVER ()
      FROM public.tenants t
     WHERE p_search IS NULL OR p_search = ''
        OR t.name ILIKE '%' || p_search || '%' OR t.slug ILIKE '%' || p_search || '%'
     ORDER BY t.created_at DESC, t.id
     LIMIT greatest(p_limit, 0) OFFSET greatest(p_offset, 0)
$$;

CREATE OR REPLACE FUNCTION public.bump_member_auth_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    UPDATE public.users SET auth_version = auth_version + 1, updated_at = pg_catalog.now()
     WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The engine's configuration notice, pinned.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.notify_tenant_config() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
    PERFORM pg_catalog.pg_notify('konstruct_config', tenant::text);
    RETURN NULL;
END
$$;
