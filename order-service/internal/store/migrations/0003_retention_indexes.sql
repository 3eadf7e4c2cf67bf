-- +goose Up
-- The retention passes delete by age, in batches: consumer.Pruner the
-- processed_events rows older than the events stream keeps an event,
-- Store.PruneIdempotencyKeys the keys older than their 24-hour window.
-- Without these indexes every pass would scan the whole table.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX idempotency_keys_created_at;
DROP INDEX processed_events_processed_at;
