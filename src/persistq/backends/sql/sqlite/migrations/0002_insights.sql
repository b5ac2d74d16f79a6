-- persistq schema, version 2 (SQLite): what the read models (Ops UI, /metrics) need.

-- Throughput (finished per minute) and wait/run times of recently finished jobs. Event rows
-- get no new index: they are written on every transition, so each index there is paid often.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Workers announce themselves while they run, so an idle worker is visible too.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    queues        TEXT NOT NULL,
    started_at    REAL NOT NULL,
    last_seen_at  REAL NOT NULL
) WITHOUT ROWID;
