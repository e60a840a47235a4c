-- Channel resolution answers what a webhook delivery needs to route an event in one round trip:
-- the tenant, the connection, its answering agent and its settings (never its secret).

DROP FUNCTION public.resolve_channel(text, text);

CREATE FUNCTION public.resolve_channel(p_kind text, p_external_id text)
RETURNS TABLE (tenant_id uuid, connection_id uuid, agent_id uuid, tenant_status text,
               connection_status text, settings jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.tenant_id, c.id, c.agent_id, t.status, c.status, c.settings
      FROM public.channel_connections c
      JOIN public.tenants t ON t.id = c.tenant_id
     WHERE c.kind = p_kind AND c.external_id = p_external_id
$$;

GRANT USAGE, CREATE ON SCHEMA public TO konstruct_resolver;
ALTER FUNCTION public.resolve_channel(text, text) OWNER TO konstruct_resolver;
REVOKE CREATE ON SCHEMA public FROM konstruct_resolver;
REVOKE ALL ON FUNCTION public.resolve_channel(text, text) FROM PUBLIC;
GRANT SELECT (agent_id, settings) ON public.channel_connections TO konstruct_resolver;
GRANT EXECUTE ON FUNCTION public.resolve_channel(text, text) TO konstruct_runtime;
