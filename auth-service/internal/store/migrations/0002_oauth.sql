-- +goose Up
-- Brute-force defence: consecutive failures and the lockout they earned.
ALTER TABLE accounts ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_until TIMESTAMP NULL;

-- OAuth clients. Secrets are server-generated (256 bits) and stored as
-- SHA-256: a slow hash adds nothing to a random 256-bit secret and would cap
-- token issuance. tls_client_auth clients hold no secret: they are the
-- service identity in their certificate (RFC 8705).
CREATE TABLE clients (
    id                       VARCHAR(64)  PRIMARY KEY,
    name                     VARCHAR(100) NOT NULL,
    type                     VARCHAR(20)  NOT NULL,
    secret_hash              VARCHAR(64)  NULL,
    tls_identity             VARCHAR(200) NULL,
    redirect_uris            TEXT         NOT NULL,
    post_logout_redirect_uris TEXT        NOT NULL,
    grant_types              VARCHAR(300) NOT NULL,
    scopes                   TEXT         NOT NULL,
    audiences                TEXT         NOT NULL,
    id_token_alg             VARCHAR(10)  NOT NULL,
    created_at               TIMESTAMP    NOT NULL
);

-- Browser sessions at the authorization server (the __Host- cookie holds
-- the id; only its SHA-256 is stored).
CREATE TABLE sessions (
    id_hash    VARCHAR(64) PRIMARY KEY,
    account_id VARCHAR(36) NOT NULL REFERENCES accounts (id),
    auth_time  TIMESTAMP   NOT NULL,
    expires_at TIMESTAMP   NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);

-- Authorization requests waiting for the login form, bound to the browser
-- that started them (login_hash is the SHA-256 of a __Host- cookie) and to
-- a CSRF token.
CREATE TABLE auth_requests (
    id_hash    VARCHAR(64)  PRIMARY KEY,
    login_hash VARCHAR(64)  NOT NULL,
    csrf_hash  VARCHAR(64)  NOT NULL,
    params     TEXT         NOT NULL,
    expires_at TIMESTAMP    NOT NULL
);

-- Authorization codes: single use, 60 s, bound to client, redirect URI and
-- PKCE challenge. family_id records the tokens a redemption issued, so a
-- replayed code can revoke them (RFC 6749 §4.1.2).
CREATE TABLE auth_codes (
    code_hash       VARCHAR(64)  PRIMARY KEY,
    client_id       VARCHAR(64)  NOT NULL,
    account_id      VARCHAR(36)  NOT NULL,
    redirect_uri    TEXT         NOT NULL,
    scope           TEXT         NOT NULL,
    nonce           VARCHAR(255) NOT NULL,
    code_challenge  VARCHAR(64)  NOT NULL,
    session_id_hash VARCHAR(64)  NOT NULL,
    auth_time       TIMESTAMP    NOT NULL,
    expires_at      TIMESTAMP    NOT NULL,
    used_at         TIMESTAMP    NULL,
    family_id       VARCHAR(36)  NULL
);

-- A token family: everything issued from one authorization (one code
-- redemption), through every refresh-token rotation.
CREATE TABLE token_families (
    id              VARCHAR(36)  PRIMARY KEY,
    account_id      VARCHAR(36)  NOT NULL,
    client_id       VARCHAR(64)  NOT NULL,
    session_id_hash VARCHAR(64)  NOT NULL,
    scope           TEXT         NOT NULL,
    auth_time       TIMESTAMP    NOT NULL,
    created_at      TIMESTAMP    NOT NULL,
    expires_at      TIMESTAMP    NOT NULL,
    revoked_at      TIMESTAMP    NULL,
    revoke_reason   VARCHAR(20)  NULL
);
CREATE INDEX token_families_account ON token_families (account_id);
CREATE INDEX token_families_session ON token_families (session_id_hash);

-- Refresh tokens: opaque 256-bit values, stored as SHA-256, rotated on use.
CREATE TABLE refresh_tokens (
    token_hash VARCHAR(64) PRIMARY KEY,
    family_id  VARCHAR(36) NOT NULL REFERENCES token_families (id),
    created_at TIMESTAMP   NOT NULL,
    expires_at TIMESTAMP   NOT NULL,
    used_at    TIMESTAMP   NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Access tokens issued within a family, so revoking the family can deny
-- them by jti until they expire.
CREATE TABLE family_access_tokens (
    jti        VARCHAR(36) PRIMARY KEY,
    family_id  VARCHAR(36) NOT NULL,
    expires_at TIMESTAMP   NOT NULL
);
CREATE INDEX family_access_tokens_family ON family_access_tokens (family_id);

CREATE TABLE outbox (
    id           VARCHAR(36)  PRIMARY KEY,
    subject      VARCHAR(200) NOT NULL,
    payload      TEXT         NOT NULL,
    created_at   TIMESTAMP    NOT NULL,
    published_at TIMESTAMP    NULL,
    attempts     INTEGER      NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (published_at, created_at);

-- +goose Down
DROP TABLE outbox;
DROP TABLE family_access_tokens;
DROP TABLE refresh_tokens;
DROP TABLE token_families;
DROP TABLE auth_codes;
DROP TABLE auth_requests;
DROP TABLE sessions;
DROP TABLE clients;
ALTER TABLE accounts DROP COLUMN locked_until;
ALTER TABLE accounts DROP COLUMN failed_logins;
