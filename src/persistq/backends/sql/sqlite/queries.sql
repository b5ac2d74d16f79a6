-- Named statements of the SQLite backend, one per transition (`-- name: <method>`).
-- Parameters are `:name`. Every time-dependent statement takes `:now` (epoch seconds).
-- Every write runs inside BEGIN IMMEDIATE, so SQLite's single writer makes each
-- guarded UPDATE atomic without SKIP LOCKED (the PostgreSQL file differs there).

-- name: list_tables
-- Tables of a database at schema version 0: any means it belongs to someone else.
SELECT name FROM sqlite_master
WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
ORDER BY name;

-- name: ensure_queue
INSERT INTO queues (name, paused, created_at) VALUES (:queue, 0, :now)
ON CONFLICT (name) DO NOTHING;

-- name: insert_job
-- The id: one more than the highest ever handed out (see last_insert_id).
INSERT INTO jobs (id, queue, payload, status, priority, run_at, attempts, max_attempts, key,
                  timeout, created_at, updated_at)
VALUES (max(coalesce((SELECT max(id) FROM jobs), 0), (SELECT last_id FROM job_ids)) + 1,
        :queue, :payload, 'PENDING', :priority, :now + :delay_seconds, 0, :max_attempts, :key,
        :timeout, :now, :now)
ON CONFLICT (queue, key) WHERE key IS NOT NULL DO NOTHING
RETURNING *;

-- name: insert_job_batch
-- The batch path of enqueue_many when no job has a key: no RETURNING, so executemany can
-- run it; the caller numbers the rows from last_insert_id (it holds the only write lock),
-- or, for one job, passes no id and reads the cursor's lastrowid (one statement less).
-- Numbered parameters, given as a tuple per row (sqlite.py, batch_row): binding a dict of
-- named ones cost a batch 2 us a row. ?1 id, ?2 queue, ?3 payload, ?4 priority, ?5 now,
-- ?6 delay_seconds, ?7 max_attempts, ?8 timeout.
INSERT INTO jobs (id, queue, payload, status, priority, run_at, attempts, max_attempts, key,
                  timeout, created_at, updated_at)
VALUES (coalesce(?1, max(coalesce((SELECT max(id) FROM jobs), 0),
                         (SELECT last_id FROM job_ids)) + 1),
        ?2, ?3, 'PENDING', ?4, ?5 + ?6, 0, ?7, NULL, ?8, ?5, ?5);

-- name: last_insert_id
-- The highest id ever handed out: the newest row's, or a deleted one's (job_ids, kept by
-- the trigger jobs_last_id of migration 0008: no AUTOINCREMENT, and ids are still never
-- reused). max(id) is one b-tree descent.
SELECT max(coalesce((SELECT max(id) FROM jobs), 0), (SELECT last_id FROM job_ids)) AS id;

-- name: insert_event
-- Only events the job row cannot hold are stored (see migration 0008 for the columns).
INSERT INTO events (job_id, at, kind, worker, detail, fence, attempt, started_at, holder,
                    completed_at)
VALUES (:job_id, :now, :kind, :worker, :detail, :fence, :attempt, :started_at, :holder,
        :completed_at);

-- name: lock_job
-- The row as a transition off the happy path finds it, for its event (SQLite: the write
-- lock is held already; PostgreSQL locks the row).
SELECT * FROM jobs WHERE id = :id;

-- name: get_job
SELECT * FROM jobs WHERE id = :id;

-- name: get_job_by_key
SELECT * FROM jobs WHERE queue = :queue AND key = :key;

-- name: last_job_with_key_prefix
-- substr, not LIKE: a prefix holding % or _ needs no escaping.
SELECT * FROM jobs WHERE queue = :queue AND substr(key, 1, length(:prefix)) = :prefix
ORDER BY id DESC LIMIT 1;

-- name: claim_jobs
-- One statement: pick the best claimable rows of one queue and lease them. A fresh random
-- token per row fences every later write of this lease.
UPDATE jobs
SET status = 'PROCESSING',
    worker = :worker,
    lease_token = lower(hex(randomblob(16))),
    lease_seconds = :lease_seconds,
    lease_expires_at = :now + :lease_seconds,
    attempts = attempts + 1,
    fence = fence + 1,  -- every claim, never reset: see Job.fence
    cancel_requested = 0,
    started_at = :now,
    finished_at = NULL,
    updated_at = :now
WHERE id IN (
        -- INDEXED BY: without it the planner may pick jobs_state and sort every
        -- pending row of the queue, making each claim O(backlog).
        SELECT id FROM jobs INDEXED BY jobs_claim
        WHERE queue = :queue AND status = 'PENDING' AND run_at <= :now
        ORDER BY priority DESC, id
        LIMIT coalesce((
            -- Global limits (migration 0005), read in this write transaction: SQLite's
            -- single writer makes the count and the claim one atomic step.
            -- CASE: the PROCESSING rows are counted only for a queue with a limit (a NULL
            -- limit minus the count still ran the count, a pass over every running job).
            SELECT max(0, min(:limit,
                CASE WHEN q.concurrency_limit IS NULL THEN :limit ELSE q.concurrency_limit - (
                    SELECT count(*) FROM jobs AS r INDEXED BY jobs_state
                    WHERE r.queue = :queue AND r.status = 'PROCESSING'
                      AND r.status <> 'PENDING' AND r.lease_expires_at > :now) END,
                coalesce(CAST(min(q.rate_limit, q.rate_tokens
                    + max(0, :now - q.rate_at) * q.rate_limit / q.rate_window) AS INTEGER),
                    :limit)))
            FROM queues AS q WHERE q.name = :queue), :limit))
  AND NOT EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1)
-- Only what the claim did not set, in the order rows.claimed_job reads it: the caller knows
-- the rest. Each column returned costs (callgrind: RETURNING * was 18k instructions more).
RETURNING id, queue, payload, priority, run_at, attempts, max_attempts, key, last_error, result,
    created_at, lease_token, fence, timeout,
    -- Whether spend_rate_tokens has anything to do: most queues have no rate limit.
    (SELECT rate_limit IS NOT NULL FROM queues WHERE name = :queue) AS rate_limited;

-- name: spend_rate_tokens
-- After a claim of :claimed jobs from a rate-limited queue, in the same transaction.
UPDATE queues
SET rate_tokens = min(rate_limit, rate_tokens + max(0, :now - rate_at) * rate_limit / rate_window)
                  - :claimed,
    rate_at = max(:now, rate_at)
WHERE name = :queue AND rate_limit IS NOT NULL;

-- name: has_claimable
-- A queue at its concurrency limit or out of rate tokens has nothing claimable either.
SELECT 1 FROM jobs INDEXED BY jobs_claim
WHERE queue = :queue AND status = 'PENDING' AND run_at <= :now
  AND NOT EXISTS (
      SELECT 1 FROM queues AS q WHERE q.name = :queue AND (q.paused = 1
          OR CASE WHEN q.concurrency_limit IS NULL THEN 0 ELSE q.concurrency_limit <= (
              SELECT count(*) FROM jobs AS r INDEXED BY jobs_state
              WHERE r.queue = :queue AND r.status = 'PROCESSING' AND r.status <> 'PENDING'
                AND r.lease_expires_at > :now) END
          OR q.rate_tokens + max(0, :now - q.rate_at) * q.rate_limit / q.rate_window < 1))
LIMIT 1;

-- name: next_run_at
-- When the next delayed job becomes due (jobs already due but paused do not count): the
-- queue's entries of jobs_claim, which hold run_at (no row is read).
SELECT min(run_at) AS run_at FROM jobs INDEXED BY jobs_claim
WHERE queue = :queue AND status = 'PENDING' AND run_at > :now;

-- name: extend_lease
UPDATE jobs
SET lease_expires_at = :now + lease_seconds, updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND lease_token = :lease_token
  AND lease_expires_at > :now
RETURNING *;

-- name: complete_job
-- A job whose cancel was requested ends CANCELLED, keeping the result it produced.
UPDATE jobs
SET status = CASE WHEN cancel_requested = 1 THEN 'CANCELLED' ELSE 'COMPLETED' END,
    result = :result, lease_token = NULL, lease_expires_at = NULL,
    finished_at = :now, updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND lease_token = :lease_token
  AND lease_expires_at > :now
RETURNING *;

-- name: complete_held
-- complete_job's happy path (SQLiteBackend._complete_step): the lease of this claim (fence)
-- still held and no cancel asked for. While a lease is held nothing but its holder's
-- heartbeats writes the row (lease_expires_at and updated_at, both set here), so the
-- holder's copy of this claim brought up to date is the row: no RETURNING, no row read.
-- A miss (any other case) writes nothing and complete_job runs instead.
UPDATE jobs
SET status = 'COMPLETED', result = :result, lease_token = NULL, lease_expires_at = NULL,
    finished_at = :now, updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND lease_token = :lease_token
  AND lease_expires_at > :now AND fence = :fence AND cancel_requested = 0;

-- name: retry_job
-- The database, not the caller's copy of the job, decides whether an attempt is left.
UPDATE jobs
SET status = CASE
        WHEN cancel_requested = 1 THEN 'CANCELLED'
        WHEN attempts < max_attempts THEN 'PENDING'
        ELSE 'FAILED' END,
    run_at = :now + :delay_seconds, last_error = :error,
    worker = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    finished_at = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN :now END,
    updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND lease_token = :lease_token
  AND lease_expires_at > :now
RETURNING *;

-- name: fail_job
UPDATE jobs
SET status = CASE WHEN cancel_requested = 1 THEN 'CANCELLED' ELSE 'FAILED' END,
    last_error = :error, lease_token = NULL, lease_expires_at = NULL,
    finished_at = :now, updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND lease_token = :lease_token
  AND lease_expires_at > :now
RETURNING *;

-- name: release_job
-- Given back unprocessed (worker shutdown, a task this worker does not know): the attempt is
-- refunded; with a delay, not claimable before it (run_at kept otherwise: the job's age).
UPDATE jobs
SET status = CASE WHEN cancel_requested = 1 THEN 'CANCELLED' ELSE 'PENDING' END,
    attempts = attempts - 1, worker = CASE WHEN cancel_requested = 1 THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    run_at = CASE WHEN :delay_seconds > 0 THEN :now + :delay_seconds ELSE run_at END,
    finished_at = CASE WHEN cancel_requested = 1 THEN :now END, updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND lease_token = :lease_token
  AND lease_expires_at > :now
RETURNING *;

-- name: recover_expired
-- The sweeper's pick, with what each lease_expired event records (the holder is gone from
-- the row once it is PENDING again): the PROCESSING rows of each queue (jobs_state), few.
SELECT id, fence, attempts, started_at, worker FROM jobs INDEXED BY jobs_state
WHERE queue IN (SELECT name FROM queues) AND status = 'PROCESSING' AND status <> 'PENDING'
  AND lease_expires_at <= :now
ORDER BY lease_expires_at
LIMIT :limit;

-- name: expire_leases
-- Expired leases: back to PENDING while attempts remain, else UNPROCESSABLE (the job keeps
-- killing or stalling its consumers). Attempts were counted at claim, so two sweepers
-- racing cannot count one twice: the second finds the row no longer PROCESSING.
UPDATE jobs
SET status = CASE
        WHEN cancel_requested = 1 THEN 'CANCELLED'
        WHEN attempts < max_attempts THEN 'PENDING'
        ELSE 'UNPROCESSABLE' END,
    last_error = 'lease expired',
    worker = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    finished_at = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN :now END,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
  AND status = 'PROCESSING' AND lease_expires_at <= :now
RETURNING id, status, attempts, max_attempts;

-- name: crash_job
-- The holder saw the process running the handler die (process pool): as a lease expiry,
-- but at once. PENDING while attempts remain, else UNPROCESSABLE; guarded like every owner
-- write, so a crash reported after the lease was lost changes nothing.
UPDATE jobs
SET status = CASE
        WHEN cancel_requested = 1 THEN 'CANCELLED'
        WHEN attempts < max_attempts THEN 'PENDING'
        ELSE 'UNPROCESSABLE' END,
    last_error = :error,
    worker = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    finished_at = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN :now END,
    updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND lease_token = :lease_token
  AND lease_expires_at > :now
RETURNING *;

-- name: cancel_job
UPDATE jobs
SET status = 'CANCELLED', lease_token = NULL, lease_expires_at = NULL,
    finished_at = :now, updated_at = :now
WHERE id = :id AND status IN ('PENDING', 'FAILED', 'UNPROCESSABLE')
RETURNING *;

-- name: request_cancel
UPDATE jobs
SET cancel_requested = 1, updated_at = :now
WHERE id = :id AND status = 'PROCESSING' AND cancel_requested = 0
RETURNING *;

-- name: fail_job_by_hand
-- An operator marks a waiting or running job failed (dead letter); a holder of the lease
-- gets LeaseLost from then on.
UPDATE jobs
SET status = 'FAILED', last_error = :error, lease_token = NULL, lease_expires_at = NULL,
    finished_at = :now, updated_at = :now
WHERE id = :id AND status IN ('PENDING', 'PROCESSING')
RETURNING *;

-- name: resubmit_job
UPDATE jobs
SET status = 'PENDING', attempts = 0, run_at = :now, worker = NULL, lease_token = NULL,
    lease_seconds = NULL, lease_expires_at = NULL, cancel_requested = 0, result = NULL,
    started_at = NULL, finished_at = NULL, updated_at = :now
WHERE id = :id AND status IN ('FAILED', 'UNPROCESSABLE', 'CANCELLED', 'COMPLETED')
RETURNING *;

-- name: list_jobs
SELECT * FROM jobs ORDER BY id DESC LIMIT :limit OFFSET :offset;

-- name: list_jobs_by_status
-- One state across queues: one range of jobs_state per queue, the ids merged newest first
-- (no index orders a state by id across queues any more), then the page's rows. PENDING
-- rows are in jobs_claim only, ordered by priority before id: per queue and priority (prio,
-- one seek each) the id of its page's oldest candidate (bound), then those ranges, merged.
-- The arm of the other kind finds nothing (status <> 'PENDING', :status = 'PENDING').
WITH RECURSIVE prio(queue, v) AS (
    SELECT name, (SELECT priority FROM jobs INDEXED BY jobs_claim
                  WHERE queue = q.name AND status = 'PENDING' ORDER BY priority DESC LIMIT 1)
    FROM queues AS q WHERE :status = 'PENDING'
    UNION ALL
    SELECT queue, (SELECT priority FROM jobs INDEXED BY jobs_claim
                   WHERE queue = prio.queue AND status = 'PENDING' AND priority < prio.v
                   ORDER BY priority DESC LIMIT 1)
    FROM prio WHERE prio.v IS NOT NULL),
bound(queue, v, low) AS (
    SELECT queue, v, (SELECT id FROM jobs INDEXED BY jobs_claim
                      WHERE queue = prio.queue AND status = 'PENDING' AND priority = prio.v
                      ORDER BY id DESC LIMIT 1 OFFSET :limit + :offset - 1)
    FROM prio WHERE v IS NOT NULL)
SELECT * FROM jobs WHERE id IN (
    SELECT id FROM (
        SELECT id FROM jobs INDEXED BY jobs_state
        WHERE queue IN (SELECT name FROM queues) AND status = :status AND status <> 'PENDING'
        ORDER BY id DESC LIMIT :limit OFFSET :offset)
    UNION ALL
    SELECT id FROM (
        SELECT j.id FROM bound AS b JOIN jobs AS j INDEXED BY jobs_claim
        ON j.queue = b.queue AND j.status = 'PENDING' AND j.priority = b.v
           AND j.id >= coalesce(b.low, 0)
        ORDER BY j.id DESC LIMIT :limit OFFSET :offset))
ORDER BY id DESC;

-- name: list_jobs_by_queue
-- One queue, every state: each state's range read newest first, no further than the page
-- needs, and the ids merged (page 1 reads a few entries per state, not the queue). PENDING:
-- per priority of jobs_claim, as list_jobs_by_status.
WITH RECURSIVE prio(v) AS (
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' AND priority < prio.v
            ORDER BY priority DESC LIMIT 1)
    FROM prio WHERE prio.v IS NOT NULL),
bound(v, low) AS (
    SELECT v, (SELECT id FROM jobs INDEXED BY jobs_claim
               WHERE queue = :queue AND status = 'PENDING' AND priority = prio.v
               ORDER BY id DESC LIMIT 1 OFFSET :limit + :offset - 1)
    FROM prio WHERE v IS NOT NULL)
SELECT * FROM jobs WHERE id IN (
    SELECT id FROM (
    SELECT id FROM (SELECT j.id FROM bound AS b JOIN jobs AS j INDEXED BY jobs_claim
                    ON j.queue = :queue AND j.status = 'PENDING' AND j.priority = b.v
                       AND j.id >= coalesce(b.low, 0)
                    ORDER BY j.id DESC LIMIT :limit + :offset)
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs INDEXED BY jobs_state
                    WHERE queue = :queue AND status = 'PROCESSING' AND status <> 'PENDING'
                    ORDER BY id DESC LIMIT :limit + :offset)
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs INDEXED BY jobs_state
                    WHERE queue = :queue AND status = 'COMPLETED' AND status <> 'PENDING'
                    ORDER BY id DESC LIMIT :limit + :offset)
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs INDEXED BY jobs_state
                    WHERE queue = :queue AND status = 'FAILED' AND status <> 'PENDING'
                    ORDER BY id DESC LIMIT :limit + :offset)
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs INDEXED BY jobs_state
                    WHERE queue = :queue AND status = 'UNPROCESSABLE' AND status <> 'PENDING'
                    ORDER BY id DESC LIMIT :limit + :offset)
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs INDEXED BY jobs_state
                    WHERE queue = :queue AND status = 'CANCELLED' AND status <> 'PENDING'
                    ORDER BY id DESC LIMIT :limit + :offset))
    ORDER BY id DESC LIMIT :limit OFFSET :offset)
ORDER BY id DESC;

-- name: list_jobs_by_queue_status
-- One range of jobs_state; PENDING: per priority of jobs_claim (list_jobs_by_status).
WITH RECURSIVE prio(v) AS (
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' ORDER BY priority DESC LIMIT 1)
    WHERE :status = 'PENDING'
    UNION ALL
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' AND priority < prio.v
            ORDER BY priority DESC LIMIT 1)
    FROM prio WHERE prio.v IS NOT NULL),
bound(v, low) AS (
    SELECT v, (SELECT id FROM jobs INDEXED BY jobs_claim
               WHERE queue = :queue AND status = 'PENDING' AND priority = prio.v
               ORDER BY id DESC LIMIT 1 OFFSET :limit + :offset - 1)
    FROM prio WHERE v IS NOT NULL)
SELECT * FROM jobs WHERE id IN (
    SELECT id FROM (
        SELECT id FROM jobs INDEXED BY jobs_state
        WHERE queue = :queue AND status = :status AND status <> 'PENDING'
        ORDER BY id DESC LIMIT :limit OFFSET :offset)
    UNION ALL
    SELECT id FROM (
        SELECT j.id FROM bound AS b JOIN jobs AS j INDEXED BY jobs_claim
        ON j.queue = :queue AND j.status = 'PENDING' AND j.priority = b.v
           AND j.id >= coalesce(b.low, 0)
        ORDER BY j.id DESC LIMIT :limit OFFSET :offset))
ORDER BY id DESC;

-- name: list_events
-- The stored events; the backend merges in the derived ones (sqlbase.history).
SELECT * FROM events WHERE job_id = :job_id ORDER BY id;

-- name: count_by_status
-- Two indexes, read alone: jobs_state for every state but PENDING, jobs_claim for PENDING.
SELECT queue, status, count(*) AS n FROM jobs INDEXED BY jobs_state
WHERE status <> 'PENDING' GROUP BY queue, status
UNION ALL
SELECT queue, 'PENDING', count(*) FROM jobs INDEXED BY jobs_claim
WHERE status = 'PENDING' GROUP BY queue;

-- name: oldest_pending
-- Per queue, a covering scan of its entries of jobs_claim (run_at trails the index).
SELECT name AS queue, run_at FROM (
    SELECT q.name,
           (SELECT min(run_at) FROM jobs INDEXED BY jobs_claim
            WHERE queue = q.name AND status = 'PENDING') AS run_at
    FROM queues AS q)
WHERE run_at <= :now;

-- name: list_queues
SELECT * FROM queues ORDER BY name;

-- name: get_queue
SELECT * FROM queues WHERE name = :queue;

-- name: create_queue
INSERT INTO queues (name, paused, created_at) VALUES (:queue, 0, :now)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: set_queue_paused
UPDATE queues SET paused = :paused WHERE name = :queue RETURNING *;

-- name: set_queue_limits
-- The rate bucket starts empty: no burst of a full window's claims when a limit is set.
UPDATE queues
SET concurrency_limit = :concurrency, rate_limit = :rate_limit, rate_window = :rate_window,
    rate_tokens = CASE WHEN :rate_limit IS NULL THEN NULL ELSE 0 END,
    rate_at = CASE WHEN :rate_limit IS NULL THEN NULL ELSE :now END
WHERE name = :queue RETURNING *;

-- name: count_unfinished
SELECT (SELECT count(*) FROM jobs INDEXED BY jobs_claim WHERE queue = :queue AND status = 'PENDING')
     + (SELECT count(*) FROM jobs INDEXED BY jobs_state
        WHERE queue = :queue AND status = 'PROCESSING' AND status <> 'PENDING') AS n;

-- name: tally_queue_jobs
-- What deleting a queue's jobs takes from the rows that counters() counts, kept in the
-- tally (migration 0008): lifetime counters never go down.
INSERT INTO counters (queue, name, value)
SELECT queue, name, n FROM (
    SELECT queue, 'enqueued' AS name, count(*) AS n FROM jobs WHERE queue = :queue GROUP BY queue
    UNION ALL
    SELECT queue, lower(status), count(*) FROM jobs
    WHERE queue = :queue AND status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')
    GROUP BY queue, status)
WHERE true
ON CONFLICT (queue, name) DO UPDATE SET value = value + excluded.value;

-- name: delete_queue_events
DELETE FROM events WHERE job_id IN (SELECT id FROM jobs WHERE queue = :queue);

-- name: delete_queue_jobs
DELETE FROM jobs WHERE queue = :queue;

-- name: delete_queue
DELETE FROM queues WHERE name = :queue;

-- name: select_purgeable
-- The state's range of jobs_state per queue, oldest ids first (jobs finish in about id
-- order, so a batch finds its rows near the start).
SELECT id FROM jobs INDEXED BY jobs_state
WHERE queue IN (SELECT name FROM queues) AND status = :status AND status <> 'PENDING'
  AND finished_at < :before
LIMIT :limit;

-- name: tally_jobs
-- What purging these jobs takes from the rows counters() counts (see tally_queue_jobs).
INSERT INTO counters (queue, name, value)
SELECT queue, name, n FROM (
    SELECT queue, 'enqueued' AS name, count(*) AS n FROM jobs
    WHERE id IN (SELECT value FROM json_each(:ids)) GROUP BY queue
    UNION ALL
    SELECT queue, lower(status), count(*) FROM jobs
    WHERE id IN (SELECT value FROM json_each(:ids))
      AND status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')
    GROUP BY queue, status)
WHERE true
ON CONFLICT (queue, name) DO UPDATE SET value = value + excluded.value;

-- name: tally
-- A final state a job leaves (resubmit, cancel of a FAILED job): still counted.
INSERT INTO counters (queue, name, value) VALUES (:queue, :name, 1)
ON CONFLICT (queue, name) DO UPDATE SET value = value + 1;

-- name: delete_events_of_jobs
DELETE FROM events WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: delete_jobs
DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: count_finished
-- Jobs that finished since :since, per bucket of :bucket_seconds and final state.
SELECT CAST(finished_at / :bucket_seconds AS INTEGER) * :bucket_seconds AS bucket, status, count(*) AS n
FROM jobs INDEXED BY jobs_finished
WHERE finished_at >= :since
GROUP BY bucket, status
ORDER BY bucket;

-- name: finished_since
-- Timing samples of jobs that finished since :since, newest first.
SELECT queue, status, run_at, started_at, finished_at FROM jobs INDEXED BY jobs_finished
WHERE finished_at >= :since AND started_at IS NOT NULL
ORDER BY finished_at DESC LIMIT :limit;

-- name: recent_failures
-- The kinds are persistq.model.FAILURE_KINDS, written out as the partial index
-- events_failures (migration 0010) says them, so that it serves the query: it walks only
-- failure events, newest first.
SELECT e.id, e.job_id, e.at, e.kind, e.worker, e.detail, j.queue
FROM events AS e JOIN jobs AS j ON j.id = e.job_id
WHERE (e.kind = 'failed' OR e.kind = 'retried' OR e.kind = 'lease_expired')
ORDER BY e.id DESC LIMIT :limit;

-- name: worker_seen
INSERT INTO workers (id, queues, started_at, last_seen_at) VALUES (:worker, :queues, :now, :now)
ON CONFLICT (id) DO UPDATE SET queues = excluded.queues, last_seen_at = excluded.last_seen_at;

-- name: worker_gone
DELETE FROM workers WHERE id = :worker;

-- name: list_workers
SELECT w.id, w.queues, w.started_at, w.last_seen_at,
       (SELECT json_group_array(j.id) FROM jobs AS j INDEXED BY jobs_state
        WHERE j.queue IN (SELECT name FROM queues) AND j.status = 'PROCESSING'
          AND j.status <> 'PENDING' AND j.worker = w.id) AS job_ids
FROM workers AS w
WHERE w.last_seen_at >= :since
ORDER BY w.id;

-- name: prune_workers
DELETE FROM workers WHERE last_seen_at < :before;

-- name: counters
-- Lifetime counts per queue: the rows as they are now, per state (one pass over jobs_state
-- and jobs_claim, as stats), plus the tally of what no row shows any more (sqlite migration
-- 0008); one statement, so one snapshot: a purge between two reads would count its jobs twice.
WITH by_state AS MATERIALIZED (
    SELECT queue, status, count(*) AS n FROM jobs INDEXED BY jobs_state
    WHERE status <> 'PENDING' GROUP BY queue, status
    UNION ALL
    SELECT queue, 'PENDING', count(*) FROM jobs INDEXED BY jobs_claim
    WHERE status = 'PENDING' GROUP BY queue)
SELECT queue, name, sum(value) AS value FROM (
    SELECT queue, name, value FROM counters
    UNION ALL
    SELECT queue, 'enqueued', n FROM by_state
    UNION ALL
    SELECT queue, lower(status), n FROM by_state
    WHERE status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED'))
GROUP BY queue, name HAVING sum(value) > 0
ORDER BY queue, name;

-- name: search_ids
-- A page of the Manager's search (newest first) within one (queue, state): the range of
-- jobs_state (queue, status, id) below the cursor, read no further than the page needs.
-- :above <= id < :below holds the cursor, max_id and a time range's id bounds. :pattern is
-- the text as a LIKE pattern (sqlbase.like_pattern); LIKE folds ASCII letters only. LIKE,
-- not instr(lower(...)): it matches in place, ten times faster over a million payloads.
-- PENDING rows are in jobs_claim only, by priority before id: per priority (prio, one seek
-- each) the page's last candidate (bound), then each priority's range up to it, merged
-- (only one of the two arms can find rows).
WITH RECURSIVE prio(v) AS (
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' ORDER BY priority DESC LIMIT 1)
    WHERE :status = 'PENDING'
    UNION ALL
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' AND priority < prio.v
            ORDER BY priority DESC LIMIT 1)
    FROM prio WHERE prio.v IS NOT NULL),
bound(v, edge) AS (
    SELECT v, (SELECT id FROM jobs INDEXED BY jobs_claim
               WHERE queue = :queue AND status = 'PENDING' AND priority = prio.v
                 AND id >= :above AND id < :below
                 AND (:created_from IS NULL OR created_at >= :created_from)
                 AND (:created_to IS NULL OR created_at < :created_to)
                 AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
                 AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
                      OR last_error LIKE :pattern ESCAPE '\')
               ORDER BY id DESC LIMIT 1 OFFSET :limit - 1)
    FROM prio WHERE v IS NOT NULL)
SELECT id FROM (
    SELECT id FROM jobs INDEXED BY jobs_state
    WHERE queue = :queue AND status = :status AND status <> 'PENDING'
      AND id >= :above AND id < :below
      AND (:created_from IS NULL OR created_at >= :created_from)
      AND (:created_to IS NULL OR created_at < :created_to)
      AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
      AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
           OR last_error LIKE :pattern ESCAPE '\')
    ORDER BY id DESC LIMIT :limit)
UNION ALL
SELECT id FROM (
    SELECT j.id AS id FROM bound AS b JOIN jobs AS j INDEXED BY jobs_claim
    ON j.queue = :queue AND j.status = 'PENDING' AND j.priority = b.v
       AND j.id >= max(:above, coalesce(b.edge, :above)) AND j.id < :below
    WHERE true
      AND (:created_from IS NULL OR created_at >= :created_from)
      AND (:created_to IS NULL OR created_at < :created_to)
      AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
      AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
           OR last_error LIKE :pattern ESCAPE '\')
    ORDER BY j.id DESC LIMIT :limit);

-- name: search_ids_oldest
-- search_ids, oldest first.
WITH RECURSIVE prio(v) AS (
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' ORDER BY priority DESC LIMIT 1)
    WHERE :status = 'PENDING'
    UNION ALL
    SELECT (SELECT priority FROM jobs INDEXED BY jobs_claim
            WHERE queue = :queue AND status = 'PENDING' AND priority < prio.v
            ORDER BY priority DESC LIMIT 1)
    FROM prio WHERE prio.v IS NOT NULL),
bound(v, edge) AS (
    SELECT v, (SELECT id FROM jobs INDEXED BY jobs_claim
               WHERE queue = :queue AND status = 'PENDING' AND priority = prio.v
                 AND id >= :above AND id < :below
                 AND (:created_from IS NULL OR created_at >= :created_from)
                 AND (:created_to IS NULL OR created_at < :created_to)
                 AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
                 AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
                      OR last_error LIKE :pattern ESCAPE '\')
               ORDER BY id LIMIT 1 OFFSET :limit - 1)
    FROM prio WHERE v IS NOT NULL)
SELECT id FROM (
    SELECT id FROM jobs INDEXED BY jobs_state
    WHERE queue = :queue AND status = :status AND status <> 'PENDING'
      AND id >= :above AND id < :below
      AND (:created_from IS NULL OR created_at >= :created_from)
      AND (:created_to IS NULL OR created_at < :created_to)
      AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
      AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
           OR last_error LIKE :pattern ESCAPE '\')
    ORDER BY id LIMIT :limit)
UNION ALL
SELECT id FROM (
    SELECT j.id AS id FROM bound AS b JOIN jobs AS j INDEXED BY jobs_claim
    ON j.queue = :queue AND j.status = 'PENDING' AND j.priority = b.v
       AND j.id >= :above AND j.id <= min(:below - 1, coalesce(b.edge, :below))
    WHERE true
      AND (:created_from IS NULL OR created_at >= :created_from)
      AND (:created_to IS NULL OR created_at < :created_to)
      AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
      AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
           OR last_error LIKE :pattern ESCAPE '\')
    ORDER BY j.id LIMIT :limit);

-- name: count_matching
-- What search_ids would find in one (queue, state), counted (PENDING: in jobs_claim).
SELECT (SELECT count(*) FROM jobs INDEXED BY jobs_state
        WHERE queue = :queue AND status = :status AND status <> 'PENDING'
          AND id >= :above AND id < :below
          AND (:created_from IS NULL OR created_at >= :created_from)
          AND (:created_to IS NULL OR created_at < :created_to)
          AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
          AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
               OR last_error LIKE :pattern ESCAPE '\'))
     + (SELECT count(*) FROM jobs INDEXED BY jobs_claim
        WHERE :status = 'PENDING' AND queue = :queue AND status = 'PENDING'
          AND id >= :above AND id < :below
          AND (:created_from IS NULL OR created_at >= :created_from)
          AND (:created_to IS NULL OR created_at < :created_to)
          AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
          AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
               OR last_error LIKE :pattern ESCAPE '\')) AS n;

-- name: count_in_state
-- Jobs of one (queue, state) between the ids, from the index alone (PENDING: jobs_claim),
-- counting no further than :limit.
SELECT (SELECT count(*) FROM (
            SELECT 1 FROM jobs INDEXED BY jobs_state
            WHERE queue = :queue AND status = :status AND status <> 'PENDING'
              AND id >= :above AND id < :below
            LIMIT :limit))
     + (SELECT count(*) FROM (
            SELECT 1 FROM jobs INDEXED BY jobs_claim
            WHERE :status = 'PENDING' AND queue = :queue AND status = 'PENDING'
              AND id >= :above AND id < :below
            LIMIT :limit)) AS n;

-- name: scan_ids
-- search_ids over the table in id order instead of one index range per (queue, state):
-- when the candidates are a large share of the rows, reading the table straight through
-- costs less than looking each of them up from the index (sqlbase._scan_pays).
-- :states is a JSON list; :queue NULL means every queue.
SELECT id FROM jobs NOT INDEXED
WHERE id >= :above AND id < :below AND (:queue IS NULL OR queue = :queue)
  AND status IN (SELECT value FROM json_each(:states))
  AND (:created_from IS NULL OR created_at >= :created_from)
  AND (:created_to IS NULL OR created_at < :created_to)
  AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
  AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
       OR last_error LIKE :pattern ESCAPE '\')
ORDER BY id DESC LIMIT :limit;

-- name: scan_ids_oldest
SELECT id FROM jobs NOT INDEXED
WHERE id >= :above AND id < :below AND (:queue IS NULL OR queue = :queue)
  AND status IN (SELECT value FROM json_each(:states))
  AND (:created_from IS NULL OR created_at >= :created_from)
  AND (:created_to IS NULL OR created_at < :created_to)
  AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
  AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
       OR last_error LIKE :pattern ESCAPE '\')
ORDER BY id LIMIT :limit;

-- name: scan_count
SELECT count(*) AS n FROM jobs NOT INDEXED
WHERE id >= :above AND id < :below AND (:queue IS NULL OR queue = :queue)
  AND status IN (SELECT value FROM json_each(:states))
  AND (:created_from IS NULL OR created_at >= :created_from)
  AND (:created_to IS NULL OR created_at < :created_to)
  AND (:task IS NULL OR json_extract(payload, '$.task') = :task)
  AND (:pattern IS NULL OR payload LIKE :pattern ESCAPE '\'
       OR last_error LIKE :pattern ESCAPE '\');

-- name: id_range
-- Two subqueries: min() and max() in one SELECT would read the whole table.
SELECT (SELECT min(id) FROM jobs) AS low, (SELECT max(id) FROM jobs) AS high;

-- name: first_job_from
-- A probe of the binary search that turns a time range into ids (sqlbase._first_id_at).
SELECT id, created_at FROM jobs WHERE id >= :id ORDER BY id LIMIT 1;

-- name: get_jobs
SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));
