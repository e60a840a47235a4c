-- A tenant's time zone and locale: its days, months and business hours are its own, not UTC's.
-- The runtime validates the zone against the IANA database it ships; the check here keeps the
-- shape sane for anything written by hand.
ALTER TABLE tenants
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC'
        CHECK (time_zone ~ '^[A-Za-z][A-Za-z0-9_+/-]{0,63}$'),
    ADD COLUMN locale text NOT NULL DEFAULT 'en'
        CHECK (locale ~ '^[a-z]{2,3}(-[A-Z]{2})?$');
