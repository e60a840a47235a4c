-- The knowledge base and long-term memory. Postgres keeps the truth: documents, their passages
-- (chunks), what agents remember about end users, and every vector (`embeddings`). A node's
-- embedded vector shard is a cache rebuilt from `embeddings`; a Qdrant server, when configured,
-- is shared by all nodes and fed from the same rows.

-- A document of a tenant's knowledge base and where its indexing stands.
CREATE TABLE knowledge_documents (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    title           text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 300),
    source          text NOT NULL CHECK (source IN ('upload', 'url')),
    url             text CHECK (length(url) <= 2048),
    filename        text CHECK (char_length(filename) <= 255),
    format          text CHECK (format IN ('markdown', 'text', 'html', 'pdf')),
    size_bytes      bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    -- SHA-256 of the original as last indexed (re-indexing embeds only passages whose own
    -- hash is new).
    sha256          bytea CHECK (octet_length(sha256) = 32),
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'extracting', 'embedding', 'ready', 'failed')),
    -- Why it failed, or why the attempt that will be retried failed, in our own short words
    -- (never the document's content).
    error           text CHECK (char_length(error) <= 500),
    progress_done   integer NOT NULL DEFAULT 0 CHECK (progress_done >= 0),
    progress_total  integer NOT NULL DEFAULT 0 CHECK (progress_total >= 0),
    chunks          integer NOT NULL DEFAULT 0 CHECK (chunks >= 0),
    pages           integer CHECK (pages >= 0),
    -- The agents that use it; NULL: every agent of the tenant.
    agent_ids       uuid[] CHECK (cardinality(agent_ids) <= 200),
    -- Embeddings of the last run: how many passages were embedded anew and how many were kept.
    embedded_last   integer NOT NULL DEFAULT 0,
    reused_last     integer NOT NULL DEFAULT 0,
    created_by      uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    ready_at        timestamptz,
    UNIQUE (tenant_id, id),
    CHECK ((source = 'url') = (url IS NOT NULL)),
    CHECK (status <> 'failed' OR error IS NOT NULL)
);
CREATE INDEX knowledge_documents_recent_idx ON knowledge_documents (tenant_id, created_at DESC, id DESC);
CREATE INDEX knowledge_documents_ready_idx ON knowledge_documents (tenant_id) WHERE status = 'ready';

-- A document's passages, in order, each under its headings.
CREATE TABLE knowledge_chunks (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    document_id  uuid NOT NULL,
    ordinal      integer NOT NULL CHECK (ordinal >= 0),
    heading      text NOT NULL DEFAULT '' CHECK (char_length(heading) <= 1000),
    text         text NOT NULL CHECK (char_length(text) BETWEEN 1 AND 20000),
    -- SHA-256 of `text`: a re-import keeps (and does not re-embed) passages whose text is the same.
    hash         bytea NOT NULL CHECK (octet_length(hash) = 32),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, document_id) REFERENCES knowledge_documents (tenant_id, id)
        ON DELETE CASCADE
);
CREATE INDEX knowledge_chunks_document_idx ON knowledge_chunks (tenant_id, document_id, ordinal);

-- What agents remember about an end user, learnt from their conversations.
CREATE TABLE memories (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    end_user_id      uuid NOT NULL,
    conversation_id  uuid,
    text             text NOT NULL CHECK (char_length(text) BETWEEN 1 AND 1000),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, end_user_id) REFERENCES end_users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id)
        ON DELETE SET NULL (conversation_id)
);
CREATE INDEX memories_end_user_idx ON memories (tenant_id, end_user_id, created_at DESC);

-- Every vector, by the model that made it: passages (kind 'chunk', source = document) and
-- memories (kind 'memory', source = end user). Rows are deleted with what they embed.
CREATE TABLE embeddings (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model      text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    id         uuid NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('chunk', 'memory')),
    source     uuid NOT NULL,
    vector     real[] NOT NULL CHECK (cardinality(vector) BETWEEN 1 AND 8192),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, model, id)
);
CREATE INDEX embeddings_source_idx ON embeddings (tenant_id, source);
-- A node rebuilding its shard of one model reads that model's rows across tenants.
CREATE INDEX embeddings_model_idx ON embeddings (model, tenant_id, id);

-- Which model a tenant's vectors are in (no row: the platform's default), and a rebuild with
-- another model while it runs.
CREATE TABLE knowledge_index (
    tenant_id        uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    model            text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    dimension        integer NOT NULL CHECK (dimension BETWEEN 1 AND 8192),
    -- The model spec being built (`openai:…`), and the full model id its vectors are stored as.
    building         text CHECK (length(building) BETWEEN 1 AND 200),
    building_model   text CHECK (length(building_model) BETWEEN 1 AND 200),
    building_dimension integer CHECK (building_dimension BETWEEN 1 AND 8192),
    building_done    integer NOT NULL DEFAULT 0,
    building_total   integer NOT NULL DEFAULT 0,
    building_error   text CHECK (char_length(building_error) <= 500),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (building IS DISTINCT FROM model)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['knowledge_documents', 'knowledge_chunks', 'memories', 'embeddings',
                             'knowledge_index'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                       'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
                       'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO konstruct_runtime', t);
    END LOOP;
END
$$;

-- A node's embedded shard is rebuilt from every tenant's vectors of one model: the one path
-- across tenants, narrow and read-only (ids, sources and vectors; never text).
CREATE FUNCTION public.embeddings_for_rebuild(p_model text, p_after_tenant uuid, p_after_id uuid,
                                              p_limit integer)
RETURNS TABLE (tenant_id uuid, id uuid, kind text, source uuid, vector real[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.tenant_id, e.id, e.kind, e.source, e.vector
      FROM public.embeddings e
     WHERE e.model = p_model AND (e.tenant_id, e.id) > (p_after_tenant, p_after_id)
     ORDER BY e.tenant_id, e.id
     LIMIT least(p_limit, 5000)
$$;
-- The models (and their dimensions) any tenant's vectors are in: what a node's index must hold.
CREATE FUNCTION public.embeddings_models() RETURNS TABLE (model text, dimension integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT e.model, pg_catalog.cardinality(e.vector)::integer
      FROM public.embeddings e
$$;
CREATE FUNCTION public.embeddings_count(p_model text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*) FROM public.embeddings WHERE model = p_model $$;
GRANT USAGE, CREATE ON SCHEMA public TO konstruct_resolver;
ALTER FUNCTION public.embeddings_for_rebuild(text, uuid, uuid, integer) OWNER TO konstruct_resolver;
ALTER FUNCTION public.embeddings_count(text) OWNER TO konstruct_resolver;
ALTER FUNCTION public.embeddings_models() OWNER TO konstruct_resolver;
REVOKE CREATE ON SCHEMA public FROM konstruct_resolver;
GRANT SELECT (tenant_id, model, id, kind, source, vector) ON public.embeddings TO konstruct_resolver;
REVOKE ALL ON FUNCTION public.embeddings_for_rebuild(text, uuid, uuid, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.embeddings_count(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.embeddings_for_rebuild(text, uuid, uuid, integer) TO konstruct_runtime;
GRANT EXECUTE ON FUNCTION public.embeddings_count(text) TO konstruct_runtime;
REVOKE ALL ON FUNCTION public.embeddings_models() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.embeddings_models() TO konstruct_runtime;

-- Agents: answer only from the knowledge base (or offer a person), and remember customers.
ALTER TABLE agents
    ADD COLUMN cite_or_handoff  boolean NOT NULL DEFAULT false,
    ADD COLUMN long_term_memory boolean NOT NULL DEFAULT true;

-- A reply's citations and the memories recalled for it; how far each conversation's messages
-- have been summarised into memories.
ALTER TABLE messages
    ADD COLUMN citations jsonb CHECK (jsonb_typeof(citations) = 'array'),
    ADD COLUMN recalled  uuid[];
ALTER TABLE conversations ADD COLUMN memory_through_seq bigint;
