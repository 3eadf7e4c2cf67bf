-- +goose Up
-- consumer.Pruner deletes processed_events rows older than the events
-- stream keeps an event (processed_at < cutoff, in batches): without this
-- index every pass would scan the whole table.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- +goose Down
DROP INDEX processed_events_processed_at;
