-- The reply protocol: a reply is recorded as pending before it is sent and marked sent after, per
-- part; and partition fences, so a node that lost an ingest partition's lease cannot commit work
-- for it.

-- Outbound messages are replies to one inbound event (`reply_to`), possibly in several parts.
-- `status` is 'pending' from the moment the turn's result is recorded until the channel accepted
-- the part, then 'sent' with the provider's id for it. Inbound rows have no status.
ALTER TABLE messages
    ADD COLUMN reply_to            text,
    ADD COLUMN part                smallint NOT NULL DEFAULT 0 CHECK (part BETWEEN 0 AND 99),
    ADD COLUMN kind                text CHECK (kind IN ('answer', 'notice', 'apology', 'handoff')),
    ADD COLUMN status              text CHECK (status IN ('pending', 'sent')),
    ADD COLUMN provider_message_id text,
    ADD COLUMN sent_at             timestamptz,
    ADD COLUMN seq                 bigint GENERATED ALWAYS AS IDENTITY;

-- Replies recorded before this migration were sent.
UPDATE messages
   SET reply_to = substr(provider_event_id, 7), part = 0, status = 'sent', sent_at = created_at,
       kind = 'answer'
 WHERE direction = 'outbound' AND provider_event_id LIKE 'reply:%';

ALTER TABLE messages ADD CONSTRAINT messages_reply_shape CHECK (
    (direction = 'inbound' AND reply_to IS NULL AND status IS NULL)
    OR (direction = 'outbound' AND reply_to IS NOT NULL AND status IS NOT NULL AND kind IS NOT NULL)
);
CREATE UNIQUE INDEX messages_reply_part_key ON messages (tenant_id, reply_to, part)
    WHERE reply_to IS NOT NULL;
-- Rebuilding a conversation's window reads its latest messages in order.
CREATE INDEX messages_conversation_seq_idx ON messages (tenant_id, conversation_id, seq DESC);

-- One row per ingest partition: the epoch of its current lease. A node bumps it when it takes
-- the partition and checks it (FOR SHARE) in every transaction that commits a turn's result, so
-- once another node has taken the partition the old owner's commits fail. Not tenant data: no
-- tenant_id, no row-level security.
CREATE TABLE partition_fences (
    partition   integer PRIMARY KEY CHECK (partition >= 0),
    epoch       bigint NOT NULL CHECK (epoch > 0),
    node        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON partition_fences TO konstruct_runtime;
