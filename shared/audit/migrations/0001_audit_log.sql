-- +goose Up
-- The audit trail (shared/audit): one row per security event, append-only
-- and hash-chained. hash = SHA-256(prev_hash || seq || payload) (see
-- docs/audit.md); the indexed columns are copies of fields of payload, kept
-- for filtering, and checked against it by Verify.
CREATE TABLE audit_log (
    seq        BIGINT      PRIMARY KEY,
    event_id   TEXT        NOT NULL,
    event_time TIMESTAMP   NOT NULL,
    type       TEXT        NOT NULL,
    reason     TEXT        NOT NULL,
    service    TEXT        NOT NULL,
    severity   TEXT        NOT NULL,
    subject    TEXT        NOT NULL,
    client_id  TEXT        NOT NULL,
    client_ip  TEXT        NOT NULL,
    trace_id   TEXT        NOT NULL,
    payload    TEXT        NOT NULL,
    prev_hash  VARCHAR(64) NOT NULL,
    hash       VARCHAR(64) NOT NULL
);
-- Redelivery of an event appends nothing: its id is already here.
CREATE UNIQUE INDEX audit_log_event_id ON audit_log (event_id);
CREATE INDEX audit_log_type ON audit_log (type, seq);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
CREATE INDEX audit_log_time ON audit_log (event_time);

-- +goose Down
DROP TABLE audit_log;
