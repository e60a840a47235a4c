-- Humans in the loop: who owns a conversation (the AI, the queue of people, or one person), its
-- inbox status, the people's replies and private notes, the hand-off packet, hand-back, and who
-- is told about a hand-off.

-- Ownership replaces `status`: a conversation handed off is owned by the queue until a person
-- claims it; the engine sends an AI message only while the AI owns the conversation.
ALTER TABLE conversations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE conversations
    ADD COLUMN owner text NOT NULL DEFAULT 'ai' CHECK (owner IN ('ai', 'queue', 'person')),
    -- The member who owns it (owner = 'person'); NULL for a colleague who answered in the
    -- channel itself (then `owner_name` says who) or once the member left the tenant.
    ADD COLUMN assignee_id uuid,
    ADD COLUMN owner_name text CHECK (char_length(owner_name) <= 200),
    ADD COLUMN inbox_status text NOT NULL DEFAULT 'open'
        CHECK (inbox_status IN ('open', 'pending', 'snoozed', 'resolved')),
    ADD COLUMN snoozed_until timestamptz,
    -- Where replies go, as the engine's `ReplyTarget` (JSON); written by the conversation's
    -- messages. NULL for conversations from before this migration until their next message.
    ADD COLUMN reply_target jsonb CHECK (reply_target IS NULL OR jsonb_typeof(reply_target) = 'object'),
    ADD COLUMN handed_off_at timestamptz,
    ADD COLUMN first_human_reply_at timestamptz,
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN handed_back_at timestamptz,
    -- The reason of the hand-off a person handed back, so the same rule does not fire again at
    -- once, and what the person did, for the AI's prompt.
    ADD COLUMN handback_reason text,
    ADD COLUMN handback_note text CHECK (char_length(handback_note) <= 2000),
    ADD CONSTRAINT conversations_snooze_shape CHECK ((inbox_status = 'snoozed') = (snoozed_until IS NOT NULL)),
    ADD CONSTRAINT conversations_assignee_fk FOREIGN KEY (tenant_id, assignee_id)
        REFERENCES tenant_members (tenant_id, user_id) ON DELETE SET NULL (assignee_id);
UPDATE conversations SET owner = 'queue', handed_off_at = last_message_at WHERE status = 'handed_off';
UPDATE conversations SET inbox_status = 'resolved', resolved_at = last_message_at WHERE status = 'closed';
ALTER TABLE conversations DROP COLUMN status;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
CREATE INDEX conversations_inbox_idx ON conversations (tenant_id, owner, last_message_at DESC);
CREATE INDEX conversations_assignee_idx ON conversations (tenant_id, assignee_id)
    WHERE assignee_id IS NOT NULL;

-- A person's reply is an outbound message of kind 'human' with its author; an AI reply that
-- was recorded but not sent when a person took the conversation is 'withheld', never sent.
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('answer', 'notice', 'apology', 'handoff', 'decline', 'human'));
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('pending', 'sent', 'delivered', 'read', 'failed', 'withheld'));
ALTER TABLE messages
    ADD COLUMN author_id uuid,
    ADD COLUMN author_name text CHECK (char_length(author_name) <= 200);
-- The inbox's search in the text (row-level security keeps it to the tenant).
CREATE INDEX messages_text_search_idx ON messages USING gin (to_tsvector('simple', body));

-- What happened to a conversation besides its messages: hand-offs, claims, assignments, status
-- changes, hand-backs, and private notes (`body`, which never reaches a channel).
CREATE TABLE conversation_events (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('handed_off', 'claimed', 'assigned', 'unassigned',
                         'replied', 'note', 'status', 'handed_back', 'taken_in_channel')),
    actor_id         uuid,
    actor_name       text CHECK (char_length(actor_name) <= 200),
    body             text NOT NULL DEFAULT '' CHECK (char_length(body) <= 10000),
    details          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX conversation_events_idx ON conversation_events (tenant_id, conversation_id, created_at);
ALTER TABLE conversation_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversation_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON conversation_events
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON conversation_events TO konstruct_runtime;

-- The hand-off packet: what a person reads first.
ALTER TABLE escalations
    ADD COLUMN packet jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(packet) = 'object');

-- Who is told about a hand-off: members who opted in get an email; a tenant may name a Slack
-- channel on its Slack connection. Business hours say when a person will answer.
ALTER TABLE tenant_members ADD COLUMN notify_handoffs boolean NOT NULL DEFAULT false;
ALTER TABLE tenants
    ADD COLUMN handoff_slack_channel text CHECK (handoff_slack_channel ~ '^[A-Z0-9]{2,30}$'),
    ADD COLUMN business_hours jsonb CHECK (business_hours IS NULL OR jsonb_typeof(business_hours) = 'object');

-- The inbox is live: every change to a conversation's ownership, status or activity, and every
-- event on it, is announced at commit to every node, which tells the members watching.
CREATE FUNCTION notify_inbox() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME = 'conversations' THEN
        PERFORM pg_catalog.pg_notify('konstruct_inbox', NEW.tenant_id::text || ':' || NEW.id::text);
    ELSE
        PERFORM pg_catalog.pg_notify('konstruct_inbox', NEW.tenant_id::text || ':' || NEW.conversation_id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER conversations_notify_inbox AFTER INSERT OR UPDATE OF owner, assignee_id, inbox_status,
        snoozed_until, last_message_at ON conversations
    FOR EACH ROW EXECUTE FUNCTION notify_inbox();
CREATE TRIGGER conversation_events_notify_inbox AFTER INSERT ON conversation_events
    FOR EACH ROW EXECUTE FUNCTION notify_inbox();
CREATE TRIGGER messages_notify_inbox AFTER INSERT OR UPDATE OF status ON messages
    FOR EACH ROW WHEN (NEW.direction = 'outbound') EXECUTE FUNCTION notify_inbox();

-- A member's access changed (role, removal): their live streams check it again at once. The
-- nil conversation id says "access", not a conversation.
CREATE FUNCTION notify_inbox_access() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('konstruct_inbox',
        OLD.tenant_id::text || ':00000000-0000-0000-0000-000000000000');
    RETURN NULL;
END $$;
CREATE TRIGGER tenant_members_notify_inbox AFTER UPDATE OF role OR DELETE ON tenant_members
    FOR EACH ROW EXECUTE FUNCTION notify_inbox_access();

-- A member who leaves the tenant gives their conversations back to the queue, so none is left
-- with an owner nobody can see (runs as the caller, under the tenant's row-level security).
CREATE FUNCTION requeue_departed_members_conversations() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE public.conversations
       SET owner = 'queue', assignee_id = NULL, owner_name = NULL
     WHERE tenant_id = OLD.tenant_id AND assignee_id = OLD.user_id AND owner = 'person';
    RETURN OLD;
END $$;
CREATE TRIGGER tenant_members_requeue_conversations BEFORE DELETE ON tenant_members
    FOR EACH ROW EXECUTE FUNCTION requeue_departed_members_conversations();
