-- +goose Up
-- Events this service's consumers have applied (shared/consumer.Once), so
-- a redelivered or replayed user.deleted changes nothing.
CREATE TABLE processed_events (
    consumer     VARCHAR(100) NOT NULL,
    event_id     VARCHAR(36)  NOT NULL,
    processed_at TIMESTAMP    NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- +goose Down
DROP TABLE processed_events;
