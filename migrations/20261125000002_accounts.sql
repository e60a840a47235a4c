-- Accounts: session invalidation, cross-tenant reads for sign-in and the platform admin's tenant
-- list, and tenant deletion that keeps the audit trail.

-- Bumped whenever a user's password, memberships or roles change (or the user is disabled). A
-- session token carries the version it was issued at; a mismatch ends the session (401).
ALTER TABLE users ADD COLUMN auth_version integer NOT NULL DEFAULT 0;

-- The audit trail outlives the tenant: deleting a tenant removes its operational data (members,
-- agents, channels, conversations, messages) by cascade, while its audit rows stay, append-only
-- and verifiable, as the record of what happened (including the deletion itself).
ALTER TABLE audit_events DROP CONSTRAINT audit_events_tenant_id_fkey;

-- Role changes and removals bump the member's auth_version, so their open sessions end. Rows
-- removed by a cascade (a deleted tenant or user) are skipped: the user row may be the one being
-- deleted, and a gone tenant or user grants nothing anyway.
CREATE FUNCTION bump_member_auth_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    UPDATE public.users SET auth_version = auth_version + 1, updated_at = now()
     WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
    RETURN NULL;
END
$$;
CREATE TRIGGER tenant_members_bump_auth_version_on_role
    AFTER UPDATE OF role ON tenant_members
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION bump_member_auth_version();
CREATE TRIGGER tenant_members_bump_auth_version_on_removal
    AFTER DELETE ON tenant_members
    FOR EACH ROW EXECUTE FUNCTION bump_member_auth_version();

-- A user's memberships across tenants: what sign-in and every authenticated request need before
-- any tenant is chosen. Narrow: one user's rows, nothing else.
CREATE FUNCTION user_memberships(p_user_id uuid)
RETURNS TABLE (tenant_id uuid, role text, tenant_slug text, tenant_name text, tenant_status text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT m.tenant_id, m.role, t.slug, t.name, t.status
      FROM public.tenant_members m
      JOIN public.tenants t ON t.id = m.tenant_id
     WHERE m.user_id = p_user_id
     ORDER BY t.name, t.id
$$;

-- The platform admin's tenant list: search by name or slug, paginated, with the total. The runtime
-- calls it only after checking the caller is a platform admin (api::routes).
CREATE FUNCTION platform_list_tenants(p_search text, p_limit integer, p_offset integer)
RETURNS TABLE (id uuid, slug text, name text, status text, created_at timestamptz,
               updated_at timestamptz, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.slug, t.name, t.status, t.created_at, t.updated_at, count(*) OVER ()
      FROM public.tenants t
     WHERE p_search IS NULL OR p_search = ''
        OR t.name ILIKE '%' || p_search || '%' OR t.slug ILIKE '%' || p_search || '%'
     ORDER BY t.created_at DESC, t.id
     LIMIT greatest(p_limit, 0) OFFSET greatest(p_offset, 0)
$$;

GRANT USAGE, CREATE ON SCHEMA public TO konstruct_resolver;
ALTER FUNCTION user_memberships(uuid) OWNER TO konstruct_resolver;
ALTER FUNCTION platform_list_tenants(text, integer, integer) OWNER TO konstruct_resolver;
ALTER FUNCTION bump_member_auth_version() OWNER TO konstruct_resolver;
REVOKE CREATE ON SCHEMA public FROM konstruct_resolver;
GRANT SELECT (tenant_id, user_id, role) ON tenant_members TO konstruct_resolver;
GRANT SELECT (slug, name, created_at, updated_at) ON tenants TO konstruct_resolver;
GRANT SELECT (id, auth_version), UPDATE (auth_version, updated_at) ON users TO konstruct_resolver;

REVOKE ALL ON FUNCTION user_memberships(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION platform_list_tenants(text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION bump_member_auth_version() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION user_memberships(uuid) TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION platform_list_tenants(text, integer, integer) TO konstruct_runtime;
