-- +goose Up
-- A profile holds the PII; its id is the account id (the token's sub).
CREATE TABLE profiles (
    id           VARCHAR(36)  PRIMARY KEY,
    email        VARCHAR(254) NOT NULL,
    display_name VARCHAR(100) NOT NULL,
    phone        VARCHAR(32)  NOT NULL DEFAULT '',
    address      VARCHAR(500) NOT NULL DEFAULT '',
    created_at   TIMESTAMP    NOT NULL,
    updated_at   TIMESTAMP    NOT NULL
);

-- +goose Down
DROP TABLE profiles;
