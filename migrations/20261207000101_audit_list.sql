-- Reading the audit trail newest first, filtered by action or by actor (`GET …/audit` and its
-- CSV export): each filter walks its own index backwards by seq instead of scanning every newer
-- row of the tenant. The time-range filter uses audit_events_recent_idx; no filter uses the
-- (tenant_id, seq) unique index.
CREATE INDEX audit_events_action_idx ON audit_events (tenant_id, action, seq);
CREATE INDEX audit_events_actor_idx ON audit_events (tenant_id, actor_id, seq)
    WHERE actor_id IS NOT NULL;
