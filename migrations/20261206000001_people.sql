-- People: invitations into a tenant, password resets, and when each account last signed in.
--
-- A link's token is never stored: each is an HMAC, under a key only the runtime holds, of the
-- row's id and its generation; the row keeps the SHA-256 of the token, which is what a presented
-- token is looked up by. Resending bumps the generation, so the previous link stops working.

ALTER TABLE users ADD COLUMN last_sign_in_at timestamptz;

CREATE TABLE invitations (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email         text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1
                                       AND char_length(email) <= 254),
    role          text NOT NULL CHECK (role IN ('customer_admin', 'customer_operator')),
    status        text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'accepted', 'revoked')),
    -- Counts the links made for it: 1 for the first mail, +1 per resend.
    generation    integer NOT NULL DEFAULT 1 CHECK (generation >= 1),
    token_hash    bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    invited_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    -- The job sending the current link's mail, and when the mail server took it.
    mail_job_id   uuid,
    sent_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    accepted_at   timestamptz,
    accepted_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at    timestamptz,
    UNIQUE (tenant_id, id),
    CHECK ((status = 'accepted') = (accepted_at IS NOT NULL)),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE UNIQUE INDEX invitations_token_idx ON invitations (token_hash);
-- One open invitation per address and tenant.
CREATE UNIQUE INDEX invitations_pending_idx ON invitations (tenant_id, email)
    WHERE status = 'pending';
CREATE INDEX invitations_list_idx ON invitations (tenant_id, created_at DESC, id DESC);

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON invitations TO konstruct_runtime;

-- The one way across tenants to an invitation: by the hash of a presented token, the tenant it
-- belongs to (everything else is then read inside that tenant's transaction).
CREATE FUNCTION public.invitation_tenant(p_token_hash bytea)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.tenant_id FROM public.invitations i WHERE i.token_hash = p_token_hash
$$;

GRANT USAGE, CREATE ON SCHEMA public TO konstruct_resolver;
ALTER FUNCTION public.invitation_tenant(bytea) OWNER TO konstruct_resolver;
REVOKE CREATE ON SCHEMA public FROM konstruct_resolver;
REVOKE ALL ON FUNCTION public.invitation_tenant(bytea) FROM PUBLIC;
GRANT SELECT (tenant_id, token_hash) ON public.invitations TO konstruct_resolver;
GRANT EXECUTE ON FUNCTION public.invitation_tenant(bytea) TO konstruct_runtime;

-- A password reset of an account (accounts are global, so this is too). Single use: `used_at`
-- is set when it sets a password, and every other open reset of the account is ended with it.
CREATE TABLE password_resets (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    used_at     timestamptz
);
CREATE UNIQUE INDEX password_resets_token_idx ON password_resets (token_hash);
CREATE INDEX password_resets_user_idx ON password_resets (user_id, created_at DESC);
GRANT SELECT, INSERT, UPDATE, DELETE ON password_resets TO konstruct_runtime;
