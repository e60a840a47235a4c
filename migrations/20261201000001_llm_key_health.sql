-- A tenant's own key that the provider refused: when the current refusal began and our own short
-- reason (never the provider's text, which may quote the key). The engine sets them once per
-- refusal episode (only while refused_at is NULL, so the refusal is audited once); saving the key
-- again clears them.
ALTER TABLE tenant_llm_keys
    ADD COLUMN refused_at timestamptz,
    ADD COLUMN refused_reason text CHECK (char_length(refused_reason) <= 200),
    ADD CONSTRAINT tenant_llm_keys_refused_together
        CHECK ((refused_at IS NULL) = (refused_reason IS NULL));
