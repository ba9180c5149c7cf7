-- Refresh-token families (rotation with reuse detection). Every token descends from one login,
-- its family; rotating a token marks it used (`used_at_ms`) instead of deleting it, so a token
-- presented again after its rotation is recognised, and its whole family is revoked: a row of
-- `refresh_revocations` makes every token of the family fail, whatever its own state. Logout
-- revokes its token's family too. Rows past `expires_at_ms`, and revocations whose family has
-- no token left, are purged hourly.
--
-- The table is rebuilt to give `family_id` no default: tokens issued before this migration
-- each become a family of their own (family_id = token_hash).
CREATE TABLE refresh_tokens_new (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms INTEGER
);
INSERT INTO refresh_tokens_new (token_hash, user_id, family_id, expires_at_ms)
    SELECT token_hash, user_id, token_hash, expires_at_ms FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
-- The purge's two look-ups: expired tokens, and whether a revoked family has any token left.
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at_ms);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE refresh_revocations (
    family_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    revoked_at_ms INTEGER NOT NULL,
    -- 'reuse' (a used token presented again) or 'logout'.
    reason TEXT NOT NULL
);
CREATE INDEX refresh_revocations_user ON refresh_revocations (user_id, revoked_at_ms);
