-- Refresh-token families (see migrations/sqlite/0005_refresh_families.sql). Tokens issued
-- before this migration each become a family of their own (family_id = token_hash).
ALTER TABLE refresh_tokens ADD COLUMN family_id TEXT;
UPDATE refresh_tokens SET family_id = token_hash;
ALTER TABLE refresh_tokens ALTER COLUMN family_id SET NOT NULL;
ALTER TABLE refresh_tokens ADD COLUMN used_at_ms BIGINT;
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at_ms);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE refresh_revocations (
    family_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    revoked_at_ms BIGINT NOT NULL,
    -- 'reuse' (a used token presented again) or 'logout'.
    reason TEXT NOT NULL
);
CREATE INDEX refresh_revocations_user ON refresh_revocations (user_id, revoked_at_ms);
