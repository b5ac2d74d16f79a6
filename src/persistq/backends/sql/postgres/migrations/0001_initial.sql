-- persistq schema, version 1 (PostgreSQL). Runs inside persistq's own schema (search_path),
-- in one transaction under an advisory lock (see backends/postgres.py).
-- Differs from SQLite in types only: timestamptz for times (the database's clock decides
-- leases, so workers on machines with skewed clocks agree), boolean flags, identity ids.

-- `now` as the statements see it: the caller's clock when given (tests), else the
-- transaction's time on the server.
CREATE FUNCTION persistq_now(t double precision) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT coalesce(to_timestamp(t), now()) $$;

CREATE TABLE queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);

-- An identity (a sequence) never hands out an id twice, even after a purge: handlers
-- are idempotent by job id.
CREATE TABLE jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue             text NOT NULL,
    payload           text NOT NULL,
    status            text NOT NULL CHECK (status IN
                        ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')),
    priority          integer NOT NULL DEFAULT 0,
    run_at            timestamptz NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    key               text,
    worker            text,
    lease_token       text,
    lease_seconds     double precision,
    lease_expires_at  timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    last_error        text,
    result            text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz
);

-- The same indexes as SQLite, for the same reasons (see sqlite/migrations/0001_initial.sql).
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, id) WHERE status = 'PENDING';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'PROCESSING';
CREATE UNIQUE INDEX jobs_key ON jobs (queue, key) WHERE key IS NOT NULL;
CREATE INDEX jobs_queue_status ON jobs (queue, status, run_at);
CREATE INDEX jobs_status ON jobs (status, id);

CREATE TABLE events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  bigint NOT NULL,
    at      timestamptz NOT NULL,
    kind    text NOT NULL CHECK (kind IN ('enqueued', 'claimed', 'completed', 'failed',
              'retried', 'lease_expired', 'released', 'cancel_requested', 'cancelled',
              'resubmitted')),
    worker  text,
    detail  text
);
CREATE INDEX events_job ON events (job_id, id);
