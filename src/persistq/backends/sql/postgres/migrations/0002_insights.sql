-- persistq schema, version 2 (PostgreSQL): what the read models need (as SQLite's 0002).
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE workers (
    id            text PRIMARY KEY,
    queues        text NOT NULL,
    started_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL
);
