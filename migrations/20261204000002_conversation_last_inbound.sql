-- When the customer last wrote in each conversation. WhatsApp's 24-hour customer-service window
-- runs from it, whichever message an outbound one belongs to.
ALTER TABLE conversations ADD COLUMN last_inbound_at timestamptz;

-- Conversations from before this migration: their latest inbound message. The owner is bound by
-- forced row-level security like everyone else, so it lifts the force on these tables for this
-- transaction only.
ALTER TABLE conversations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;

UPDATE conversations v SET last_inbound_at = latest.at
  FROM (SELECT tenant_id, conversation_id, max(created_at) AS at
          FROM messages
         WHERE direction = 'inbound'
         GROUP BY tenant_id, conversation_id) latest
 WHERE v.tenant_id = latest.tenant_id AND v.id = latest.conversation_id;

ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
