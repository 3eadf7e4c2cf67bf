-- +goose Up
-- Erased users: account ids whose profile was erased. A late or replayed
-- account.created for one of them must not bring the PII back.
CREATE TABLE erased_users (
    id        VARCHAR(36) PRIMARY KEY,
    erased_at TIMESTAMP   NOT NULL
);

-- The transactional outbox (shared/outbox): user.deleted is written here in
-- the transaction that deletes the profile.
CREATE TABLE outbox (
    id           VARCHAR(36)  PRIMARY KEY,
    subject      VARCHAR(200) NOT NULL,
    payload      TEXT         NOT NULL,
    created_at   TIMESTAMP    NOT NULL,
    published_at TIMESTAMP    NULL,
    attempts     INTEGER      NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (published_at, created_at);

-- Events this service's consumers have applied (shared/consumer.Once).
CREATE TABLE processed_events (
    consumer     VARCHAR(100) NOT NULL,
    event_id     VARCHAR(36)  NOT NULL,
    processed_at TIMESTAMP    NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- +goose Down
DROP TABLE processed_events;
DROP TABLE outbox;
DROP TABLE erased_users;
