-- persistq schema, version 5 (PostgreSQL): Job.timeout, as SQLite's version 4.
ALTER TABLE jobs ADD COLUMN timeout double precision CHECK (timeout IS NULL OR timeout > 0);
-- Two new event kinds, timed_out and crashed (see sqlite/migrations/0004_timeout.sql).
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('enqueued', 'claimed',
    'completed', 'failed', 'retried', 'lease_expired', 'released', 'cancel_requested',
    'cancelled', 'resubmitted', 'timed_out', 'crashed'));
