-- persistq schema, version 1 (SQLite).
-- Times are REAL seconds since the Unix epoch, UTC: cheap to compare and index, and
-- converted to datetime in one place (backends/rows.py).

CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    created_at  REAL NOT NULL
) WITHOUT ROWID;

-- AUTOINCREMENT: an id is never reused after a purge, because handlers (stamp_file) are
-- idempotent by job id.
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    queue             TEXT NOT NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN
                        ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')),
    priority          INTEGER NOT NULL DEFAULT 0,
    run_at            REAL NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL CHECK (max_attempts >= 1),
    key               TEXT,
    worker            TEXT,
    lease_token       TEXT,
    lease_seconds     REAL,
    lease_expires_at  REAL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    last_error        TEXT,
    result            TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL
);

-- Claim walks this partial index in claim order: cost depends on the claimable rows
-- ahead of it, not on how many finished jobs the table holds.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, id) WHERE status = 'PENDING';
-- The sweeper finds expired leases without scanning.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'PROCESSING';
-- Idempotency: one job per (queue, key) while it exists.
CREATE UNIQUE INDEX jobs_key ON jobs (queue, key) WHERE key IS NOT NULL;
-- Stats (count per queue and state, oldest pending) read this index only.
CREATE INDEX jobs_queue_status ON jobs (queue, status, run_at);
-- Listing by state, newest first; purge by state.
CREATE INDEX jobs_status ON jobs (status, id);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL,
    at      REAL NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('enqueued', 'claimed', 'completed', 'failed',
              'retried', 'lease_expired', 'released', 'cancel_requested', 'cancelled',
              'resubmitted')),
    worker  TEXT,
    detail  TEXT
);
CREATE INDEX events_job ON events (job_id, id);
