-- +goose Up
-- Orders. Ids are UUIDv7: unguessable, and they sort by creation time, so
-- the keyset pages of the list route need no second index. version is the
-- optimistic lock: every status change is UPDATE … WHERE version = read.
CREATE TABLE orders (
    id               VARCHAR(36)  PRIMARY KEY,
    user_id          VARCHAR(36)  NOT NULL,
    status           VARCHAR(16)  NOT NULL
        CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
    total_cents      BIGINT       NOT NULL CHECK (total_cents >= 0),
    currency         CHAR(3)      NOT NULL,
    shipping_address TEXT         NOT NULL DEFAULT '',
    version          INTEGER      NOT NULL DEFAULT 1,
    created_at       TIMESTAMP    NOT NULL,
    updated_at       TIMESTAMP    NOT NULL,
    anonymised_at    TIMESTAMP    NULL
);
CREATE INDEX orders_user ON orders (user_id, id);

-- Lines, with the unit price at the time of the order.
CREATE TABLE order_items (
    order_id    VARCHAR(36) NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line        INTEGER     NOT NULL,
    sku         VARCHAR(64) NOT NULL REFERENCES catalog_items (sku),
    quantity    INTEGER     NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    price_cents BIGINT      NOT NULL CHECK (price_cents >= 0),
    PRIMARY KEY (order_id, line)
);

-- Idempotency-Key, scoped to the customer: the same key with the same
-- request (request_hash, SHA-256 of its canonical form) returns the same
-- order; with another request it is refused.
CREATE TABLE idempotency_keys (
    user_id      VARCHAR(36)  NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    request_hash VARCHAR(64)  NOT NULL,
    order_id     VARCHAR(36)  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    created_at   TIMESTAMP    NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);

-- The transactional outbox (shared/outbox): order.created and
-- order.status_changed are written in the transaction that makes the change.
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
DROP TABLE idempotency_keys;
DROP TABLE order_items;
DROP TABLE orders;
