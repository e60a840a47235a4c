-- End users: the people who talk to a tenant's agents (a Slack user, a WhatsApp number, a portal
-- user in the test chat), linked from their conversations and messages. Memory, forgetting and
-- the human inbox refer to them by this id.

CREATE TABLE end_users (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel        text NOT NULL CHECK (channel IN ('slack', 'whatsapp', 'web')),
    -- Unique per tenant within the channel: Slack `team:user`, a WhatsApp number, `user:<id>`.
    external_id    text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 200),
    display_name   text CHECK (char_length(display_name) <= 200),
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, channel, external_id),
    UNIQUE (tenant_id, id)
);
CREATE INDEX end_users_recent_idx ON end_users (tenant_id, last_seen_at DESC);
ALTER TABLE end_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE end_users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON end_users
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON end_users TO konstruct_runtime;

ALTER TABLE conversations
    ADD COLUMN end_user_id uuid,
    ADD FOREIGN KEY (tenant_id, end_user_id) REFERENCES end_users (tenant_id, id)
        ON DELETE SET NULL (end_user_id);
ALTER TABLE messages
    ADD COLUMN end_user_id uuid,
    ADD FOREIGN KEY (tenant_id, end_user_id) REFERENCES end_users (tenant_id, id)
        ON DELETE SET NULL (end_user_id);
CREATE INDEX conversations_end_user_idx ON conversations (tenant_id, end_user_id);
CREATE INDEX messages_end_user_idx ON messages (tenant_id, end_user_id) WHERE end_user_id IS NOT NULL;

-- The people behind the messages recorded so far. The owner is bound by forced row-level
-- security like everyone else, so it lifts the force on these tables for this transaction only.
ALTER TABLE end_users NO FORCE ROW LEVEL SECURITY;
ALTER TABLE conversations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE channel_connections NO FORCE ROW LEVEL SECURITY;

CREATE TEMPORARY TABLE senders ON COMMIT DROP AS
SELECT m.id AS message_id, m.tenant_id, m.conversation_id, c.kind AS channel,
       CASE c.kind
           WHEN 'slack' THEN coalesce(c.settings ->> 'team_id', c.external_id) || ':' || m.sender
           WHEN 'web' THEN 'user:' || m.sender
           ELSE m.sender
       END AS external_id,
       m.created_at
  FROM messages m
  JOIN conversations v ON v.tenant_id = m.tenant_id AND v.id = m.conversation_id
  JOIN channel_connections c ON c.tenant_id = v.tenant_id AND c.id = v.channel_connection_id
 WHERE m.direction = 'inbound' AND m.sender <> '';

INSERT INTO end_users (id, tenant_id, channel, external_id, first_seen_at, last_seen_at)
SELECT gen_random_uuid(), tenant_id, channel, left(external_id, 200), min(created_at), max(created_at)
  FROM senders
 GROUP BY tenant_id, channel, left(external_id, 200);

UPDATE messages m SET end_user_id = u.id
  FROM senders s
  JOIN end_users u ON u.tenant_id = s.tenant_id AND u.channel = s.channel
                  AND u.external_id = left(s.external_id, 200)
 WHERE m.id = s.message_id;

-- A conversation belongs to the first person who wrote in it.
UPDATE conversations v SET end_user_id = first.end_user_id
  FROM (SELECT DISTINCT ON (tenant_id, conversation_id) tenant_id, conversation_id, end_user_id
          FROM messages
         WHERE direction = 'inbound' AND end_user_id IS NOT NULL
         ORDER BY tenant_id, conversation_id, seq) first
 WHERE v.tenant_id = first.tenant_id AND v.id = first.conversation_id;

ALTER TABLE end_users FORCE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
ALTER TABLE channel_connections FORCE ROW LEVEL SECURITY;
