-- +goose Up
-- Accounts are the identities tokens are issued for. The id is the token's
-- sub and the user-service profile id (one user id everywhere).
CREATE TABLE accounts (
    id            VARCHAR(36)  PRIMARY KEY,
    email         VARCHAR(254) NOT NULL UNIQUE,
    display_name  VARCHAR(100) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    roles         VARCHAR(64)  NOT NULL,
    disabled      BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMP    NOT NULL,
    updated_at    TIMESTAMP    NOT NULL
);

-- +goose Down
DROP TABLE accounts;
