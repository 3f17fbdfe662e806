-- Sessions of the operator console (/console). A session stands for the shop token it was opened
-- with: the token's hash is kept, never the token, so a token removed from api_tokens ends its
-- sessions too. The cookie holds a random secret whose SHA-256 is the id; the CSRF token is checked
-- on every form the session posts.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
