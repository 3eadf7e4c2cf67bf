-- +goose Up
-- rampart_auth_refresh_families_active counts unrevoked, unexpired
-- families at scrape time. Families are kept after they die (their
-- revocation reason is evidence), so without this partial index the count
-- would scan every family ever issued; with it, only the live ones.
CREATE INDEX token_families_active ON token_families (expires_at) WHERE revoked_at IS NULL;

-- +goose Down
DROP INDEX token_families_active;
