-- persistq schema, version 4 (SQLite): Job.timeout, seconds an attempt may run before the
-- worker stops it (SPEC: Limits, timeouts and worker pools). NULL: no limit, as for every
-- job enqueued before this version.
ALTER TABLE jobs ADD COLUMN timeout REAL CHECK (timeout IS NULL OR timeout > 0);
-- Two new event kinds: timed_out (the worker stopped an attempt at its timeout) and crashed
-- (the process running the handler died). SQLite cannot alter a CHECK: the table is
-- rebuilt, ids and rows kept.
CREATE TABLE events_new (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL,
    at      REAL NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('enqueued', 'claimed', 'completed', 'failed',
              'retried', 'lease_expired', 'released', 'cancel_requested', 'cancelled',
              'resubmitted', 'timed_out', 'crashed')),
    worker  TEXT,
    detail  TEXT
);
INSERT INTO events_new (id, job_id, at, kind, worker, detail)
SELECT id, job_id, at, kind, worker, detail FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_job ON events (job_id, id);
