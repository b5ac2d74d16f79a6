-- Named statements of the PostgreSQL backend, the same names and parameters as SQLite's
-- (a test checks it). Parameters are %(name)s. `persistq_now(%(now)s)` is the caller's
-- clock when given, else the server's: leases are timed on one clock for every machine.
-- Differs from SQLite where noted: claims and sweeps lock rows with FOR UPDATE SKIP LOCKED
-- (many writers at once, where SQLite has one); the hot writes (enqueue, claim, complete)
-- are one statement each and store no event (sqlbase: derived from the row); lists arrive
-- as arrays (= ANY).

-- name: ensure_queue
INSERT INTO queues (name, paused, created_at) VALUES (%(queue)s, false, persistq_now(%(now)s))
ON CONFLICT (name) DO NOTHING;

-- name: insert_job
INSERT INTO jobs (queue, payload, status, priority, run_at, attempts, max_attempts, key,
                  timeout, created_at, updated_at)
VALUES (%(queue)s, %(payload)s, 'PENDING', %(priority)s,
        persistq_now(%(now)s) + make_interval(secs => %(delay_seconds)s), 0, %(max_attempts)s,
        %(key)s, %(timeout)s, persistq_now(%(now)s), persistq_now(%(now)s))
ON CONFLICT (queue, key) WHERE key IS NOT NULL DO NOTHING
RETURNING *;

-- name: insert_jobs_unnest
-- enqueue and enqueue_many when no job has a key, as one statement, so one round trip: the
-- queues (ensure_queue, in name order), the jobs and the NOTIFY that wakes waiting claims
-- (sent at commit, and only if some process listens: see %(listeners)s and %(listen_slots)s,
-- LISTEN_SLOTS in backends/postgres.py). SQLite runs these one by one instead. Ids
-- follow input order. The jobs come as one JSON array of [queue, payload, priority,
-- delay_seconds, max_attempts, timeout]: encoding a thousand payloads as one JSON text costs the
-- client a twentieth of a text[] parameter's. Only what the server decided comes back
-- (id, run_at, created_at): the caller has the rest.
WITH ensured AS (
    -- NOT EXISTS first: a queue that exists (nearly always) is one index probe, not an
    -- insert that meets its conflict.
    INSERT INTO queues (name, paused, created_at)
    SELECT DISTINCT t.job->>0, false, persistq_now(%(now)s)
    FROM json_array_elements(%(jobs)s::json) AS t(job)
    WHERE NOT EXISTS (SELECT 1 FROM queues AS q WHERE q.name = t.job->>0)
    ORDER BY 1
    ON CONFLICT (name) DO NOTHING
), new AS (
    INSERT INTO jobs (queue, payload, status, priority, run_at, attempts, max_attempts, key,
                      timeout, created_at, updated_at)
    SELECT t.job->>0, t.job->>1, 'PENDING', (t.job->>2)::integer,
           persistq_now(%(now)s) + make_interval(secs => (t.job->>3)::double precision), 0,
           (t.job->>4)::integer, NULL, (t.job->>5)::double precision,
           persistq_now(%(now)s), persistq_now(%(now)s)
    FROM json_array_elements(%(jobs)s::json) WITH ORDINALITY AS t(job, n)
    ORDER BY t.n
    RETURNING id, run_at, created_at
), woken AS (  -- always one row
    SELECT count(*) AS sent FROM (
        SELECT pg_notify(%(channel)s, '')
        WHERE NOT pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)
    ) AS notified
)
SELECT id, run_at, created_at FROM new CROSS JOIN woken ORDER BY id;

-- name: insert_one_job
-- insert_jobs_unnest for a lone enqueue (one job, no key, no call beside it): the same, with
-- plain parameters instead of a JSON array to encode and take apart (per enqueue, server CPU
-- 147-174 -> 126-137 us, client about a twentieth less).
WITH ensured AS (
    INSERT INTO queues (name, paused, created_at)
    SELECT %(queue)s, false, persistq_now(%(now)s)
    WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = %(queue)s)
    ON CONFLICT (name) DO NOTHING
), new AS (
    INSERT INTO jobs (queue, payload, status, priority, run_at, attempts, max_attempts, key,
                      timeout, created_at, updated_at)
    VALUES (%(queue)s, %(payload)s, 'PENDING', %(priority)s,
            persistq_now(%(now)s) + make_interval(secs => %(delay_seconds)s), 0,
            %(max_attempts)s, NULL, %(timeout)s, persistq_now(%(now)s), persistq_now(%(now)s))
    RETURNING id, run_at, created_at
), woken AS (  -- always one row
    SELECT count(*) AS sent FROM (
        SELECT pg_notify(%(channel)s, '')
        WHERE NOT pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)
    ) AS notified
)
SELECT id, run_at, created_at FROM new CROSS JOIN woken;

-- name: insert_event
-- Only events the job row cannot hold are stored (sqlite migration 0008 has the columns).
INSERT INTO events (job_id, at, kind, worker, detail, fence, attempt, started_at, holder,
                    completed_at)
VALUES (%(job_id)s, persistq_now(%(now)s), %(kind)s, %(worker)s, %(detail)s, %(fence)s,
        %(attempt)s, %(started_at)s, %(holder)s, %(completed_at)s);

-- name: lock_job
-- The row as a transition off the happy path finds it, for its event; locked, so that is
-- still the row when the transition's UPDATE runs.
SELECT * FROM jobs WHERE id = %(id)s FOR UPDATE;

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: get_job_by_key
SELECT * FROM jobs WHERE queue = %(queue)s AND key = %(key)s;

-- name: last_job_with_key_prefix
-- left(), not LIKE or a range: no escaping, and no dependence on the column's collation.
SELECT * FROM jobs WHERE queue = %(queue)s AND left(key, length(%(prefix)s)) = %(prefix)s
ORDER BY id DESC LIMIT 1;

-- name: claim_jobs
-- Differs from SQLite: a claim from one queue is one round trip (run on its own,
-- autocommit: the statement is the transaction; its `claimed` events are derived from the
-- rows); SKIP LOCKED lets concurrent claimers pass over rows another transaction
-- is taking instead of waiting. Run only on connections with CLAIM_SETTINGS
-- (backends/postgres.py), where walking jobs_claim in claim order is the one cheap plan,
-- with statistics or without. A queue with limits (or paused) is left alone: the row comes
-- back with `limited` set and no job, and the caller takes claim_jobs_limited's path.
-- Rows come back in no particular order: the caller sorts them (a sort here costs a plan
-- that JIT-compiles, see CLAIM_SETTINGS).
WITH gate AS (
    SELECT EXISTS (
        SELECT 1 FROM queues
        WHERE name = %(queue)s AND NOT paused
          AND (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL)) AS limited
), picked AS (
    SELECT id FROM jobs
    WHERE queue = %(queue)s AND status = 'PENDING' AND run_at <= persistq_now(%(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM queues
          WHERE name = %(queue)s
            AND (paused OR concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL))
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs
    SET status = 'PROCESSING',
        worker = %(worker)s,
        lease_token = replace(gen_random_uuid()::text, '-', ''),
        lease_seconds = %(lease_seconds)s,
        lease_expires_at = persistq_now(%(now)s) + make_interval(secs => %(lease_seconds)s),
        attempts = attempts + 1,
        fence = fence + 1,  -- every claim, never reset: see Job.fence
        cancel_requested = false,
        started_at = persistq_now(%(now)s),
        finished_at = NULL,
        updated_at = persistq_now(%(now)s)
    WHERE id = ANY (ARRAY(SELECT id FROM picked))  -- the primary key, whatever the plan
    RETURNING *
)
SELECT claimed.*, gate.limited FROM gate LEFT JOIN claimed ON true;

-- name: lock_queue_limits
-- PostgreSQL only. First statement of a claim from a queue with limits: its queues row is
-- locked before anything is counted, so claimers of that queue take turns, and the next
-- statement (claim_jobs_limited) reads a snapshot taken after the lock, which sees every
-- claim committed before it. A queue without limits matches no row and locks nothing.
SELECT name FROM queues
WHERE name = %(queue)s AND NOT paused
  AND (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL)
FOR UPDATE;

-- name: claim_jobs_limited
-- PostgreSQL only: claim_jobs within the queue's limits, after lock_queue_limits in the
-- same transaction (also for queues without limits, in a claim from several queues). The
-- rate bucket is refilled to now and spent by the jobs claimed; now() is the statement's
-- start, which may be before the lock was granted: never count time backwards.
WITH lim AS (
    SELECT concurrency_limit, rate_limit, persistq_now(%(now)s) AS at,
           least(rate_limit::double precision, rate_tokens
                 + greatest(0, extract(epoch FROM persistq_now(%(now)s) - rate_at))
                   * rate_limit / rate_window) AS tokens,
           greatest(persistq_now(%(now)s), rate_at) AS rate_at
    FROM queues
    WHERE name = %(queue)s AND NOT paused
      AND (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL)
), allowed AS (
    SELECT greatest(0, least(  -- least() skips NULLs: a limit not set allows any number
        %(limit)s,
        (SELECT concurrency_limit - (
             SELECT count(*) FROM jobs
             WHERE queue = %(queue)s AND status = 'PROCESSING' AND lease_expires_at > lim.at)
         FROM lim),
        (SELECT floor(tokens)::integer FROM lim))) AS n
), picked AS (
    SELECT id FROM jobs
    WHERE queue = %(queue)s AND status = 'PENDING' AND run_at <= persistq_now(%(now)s)
      AND NOT EXISTS (SELECT 1 FROM queues WHERE name = %(queue)s AND paused)
    ORDER BY priority DESC, id
    LIMIT (SELECT n FROM allowed)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs
    SET status = 'PROCESSING',
        worker = %(worker)s,
        lease_token = replace(gen_random_uuid()::text, '-', ''),
        lease_seconds = %(lease_seconds)s,
        lease_expires_at = persistq_now(%(now)s) + make_interval(secs => %(lease_seconds)s),
        attempts = attempts + 1,
        fence = fence + 1,
        cancel_requested = false,
        started_at = persistq_now(%(now)s),
        finished_at = NULL,
        updated_at = persistq_now(%(now)s)
    WHERE id = ANY (ARRAY(SELECT id FROM picked))  -- the primary key, whatever the plan
    RETURNING *
), spent AS (
    UPDATE queues
    SET rate_tokens = lim.tokens - (SELECT count(*) FROM claimed), rate_at = lim.rate_at
    FROM lim
    WHERE queues.name = %(queue)s AND lim.rate_limit IS NOT NULL
      AND EXISTS (SELECT 1 FROM claimed)
)
SELECT * FROM claimed;

-- name: has_claimable
-- A queue at its concurrency limit or out of rate tokens has nothing claimable either.
SELECT 1 AS found FROM jobs
WHERE queue = %(queue)s AND status = 'PENDING' AND run_at <= persistq_now(%(now)s)
  AND NOT EXISTS (
      SELECT 1 FROM queues AS q WHERE q.name = %(queue)s AND (q.paused
          OR q.concurrency_limit <= (
              SELECT count(*) FROM jobs AS r
              WHERE r.queue = %(queue)s AND r.status = 'PROCESSING'
                AND r.lease_expires_at > persistq_now(%(now)s))
          OR q.rate_tokens + greatest(0, extract(epoch FROM persistq_now(%(now)s) - q.rate_at))
             * q.rate_limit / q.rate_window < 1))
LIMIT 1;

-- name: next_run_at
SELECT extract(epoch FROM min(run_at))::double precision AS run_at FROM jobs
WHERE queue = %(queue)s AND status = 'PENDING' AND run_at > persistq_now(%(now)s);

-- name: extend_lease
UPDATE jobs
SET lease_expires_at = persistq_now(%(now)s) + make_interval(secs => lease_seconds),
    updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status = 'PROCESSING' AND lease_token = %(lease_token)s
  AND lease_expires_at > persistq_now(%(now)s)
RETURNING *;

-- name: complete_job
-- Differs from SQLite: writes its event too, in the same statement (one round trip, run on
-- its own). Which event each outcome writes is the caller's choice, passed as %(events)s,
-- {"CANCELLED": "cancelled"} (sqlbase.FINISH_EVENT: the one place it is made; a completion
-- stores none).
WITH done AS (
    UPDATE jobs
    SET status = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE 'COMPLETED' END,
        result = %(result)s, lease_token = NULL, lease_expires_at = NULL,
        finished_at = persistq_now(%(now)s), updated_at = persistq_now(%(now)s)
    WHERE id = %(id)s AND status = 'PROCESSING' AND lease_token = %(lease_token)s
      AND lease_expires_at > persistq_now(%(now)s)
    RETURNING *
), logged AS (
    INSERT INTO events (job_id, at, kind, worker, fence, attempt, started_at, holder)
    SELECT id, persistq_now(%(now)s), %(events)s::json ->> status, worker, fence, attempts,
           started_at, worker
    FROM done WHERE %(events)s::json ->> status IS NOT NULL
)
-- The NOTIFY wakes whoever waits for this job (Queue.wait), on the channel of finished jobs,
-- if some process listens (%(listeners)s, LISTEN_SLOTS: see backends/postgres.py).
SELECT *,
       (SELECT count(*) FROM (
            SELECT pg_notify(%(done_channel)s, id::text)
            WHERE NOT pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)
       ) AS sent) AS notified
FROM done;

-- name: complete_held
-- complete_job's happy path (PostgresBackend._complete_alone), as SQLite's: the lease of this
-- claim (fence) still held and no cancel asked for. While a lease is held nothing but its
-- holder's heartbeats writes the row (lease_expires_at and updated_at, both set here), so the
-- holder's copy brought up to date is the row: only the server's time of the completion comes
-- back, not the row (without its RETURNING * and its parse, a completion's client CPU went
-- from 79-84 to 71-72 us, the server's from 143-160 to 127-153 us). A completion stores no
-- event. A miss writes nothing; complete_job runs instead.
WITH done AS (
    UPDATE jobs
    SET status = 'COMPLETED', result = %(result)s, lease_token = NULL, lease_expires_at = NULL,
        finished_at = persistq_now(%(now)s), updated_at = persistq_now(%(now)s)
    WHERE id = %(id)s AND status = 'PROCESSING' AND lease_token = %(lease_token)s
      AND lease_expires_at > persistq_now(%(now)s) AND fence = %(fence)s AND NOT cancel_requested
    RETURNING id, finished_at
)
SELECT finished_at,
       (SELECT count(*) FROM (
            SELECT pg_notify(%(done_channel)s, id::text)
            WHERE NOT pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)
       ) AS sent) AS notified
FROM done;

-- name: complete_jobs_held
-- complete_held for a group of concurrent calls, in one statement (as complete_jobs):
-- %(jobs)s is one JSON array of [id, lease_token, result, fence], one per call; each job
-- comes back as its call's number (call_n, from 1) and the time it completed. A call whose
-- job does not come back changed nothing: complete_jobs (or complete_job) runs it instead.
WITH given AS (
    SELECT (t.c->>0)::bigint AS id, t.c->>1 AS lease_token, t.c->>2 AS result,
           (t.c->>3)::bigint AS fence, t.n AS call_n
    FROM json_array_elements(%(jobs)s::json) WITH ORDINALITY AS t(c, n)
), done AS (
    UPDATE jobs
    SET status = 'COMPLETED', result = given.result, lease_token = NULL,
        lease_expires_at = NULL, finished_at = persistq_now(%(now)s),
        updated_at = persistq_now(%(now)s)
    FROM given
    WHERE jobs.id = given.id AND jobs.status = 'PROCESSING'
      AND jobs.lease_token = given.lease_token AND jobs.lease_expires_at > persistq_now(%(now)s)
      AND jobs.fence = given.fence AND NOT jobs.cancel_requested
    RETURNING jobs.id, jobs.finished_at, given.call_n
)
SELECT call_n, finished_at,
       (SELECT count(*) FROM (
            SELECT pg_notify(%(done_channel)s, id::text)
            WHERE NOT pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)
       ) AS sent) AS notified
FROM done;

-- name: complete_jobs
-- complete_job for a group of concurrent calls (backends/group.py), in one statement: one
-- round trip and one commit for all. %(jobs)s is one JSON array of [id, lease_token, result],
-- one per call; each job is guarded on its own token and expiry exactly as complete_job
-- guards it, and comes back with the number of its call (call_n, from 1). A call whose job
-- does not come back missed: its caller explains the miss as after complete_job.
WITH given AS (
    SELECT (t.c->>0)::bigint AS id, t.c->>1 AS lease_token, t.c->>2 AS result, t.n AS call_n
    FROM json_array_elements(%(jobs)s::json) WITH ORDINALITY AS t(c, n)
), done AS (
    UPDATE jobs
    SET status = CASE WHEN jobs.cancel_requested THEN 'CANCELLED' ELSE 'COMPLETED' END,
        result = given.result, lease_token = NULL, lease_expires_at = NULL,
        finished_at = persistq_now(%(now)s), updated_at = persistq_now(%(now)s)
    FROM given
    WHERE jobs.id = given.id AND jobs.status = 'PROCESSING'
      AND jobs.lease_token = given.lease_token AND jobs.lease_expires_at > persistq_now(%(now)s)
    RETURNING jobs.*, given.call_n
), logged AS (
    INSERT INTO events (job_id, at, kind, worker, fence, attempt, started_at, holder)
    SELECT id, persistq_now(%(now)s), %(events)s::json ->> status, worker, fence, attempts,
           started_at, worker
    FROM done WHERE %(events)s::json ->> status IS NOT NULL
)
SELECT *,
       (SELECT count(*) FROM (
            SELECT pg_notify(%(done_channel)s, id::text)
            WHERE NOT pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)
       ) AS sent) AS notified
FROM done;

-- name: retry_job
-- The database, not the caller's copy of the job, decides whether an attempt is left.
UPDATE jobs
SET status = CASE
        WHEN cancel_requested THEN 'CANCELLED'
        WHEN attempts < max_attempts THEN 'PENDING'
        ELSE 'FAILED' END,
    run_at = persistq_now(%(now)s) + make_interval(secs => %(delay_seconds)s),
    last_error = %(error)s,
    worker = CASE WHEN cancel_requested OR attempts >= max_attempts THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts
                       THEN persistq_now(%(now)s) END,
    updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status = 'PROCESSING' AND lease_token = %(lease_token)s
  AND lease_expires_at > persistq_now(%(now)s)
RETURNING *;

-- name: fail_job
UPDATE jobs
SET status = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE 'FAILED' END,
    last_error = %(error)s, lease_token = NULL, lease_expires_at = NULL,
    finished_at = persistq_now(%(now)s), updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status = 'PROCESSING' AND lease_token = %(lease_token)s
  AND lease_expires_at > persistq_now(%(now)s)
RETURNING *;

-- name: release_job
UPDATE jobs
SET status = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE 'PENDING' END,
    attempts = attempts - 1, worker = CASE WHEN cancel_requested THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    run_at = CASE WHEN %(delay_seconds)s::double precision > 0
                  THEN persistq_now(%(now)s) + make_interval(secs => %(delay_seconds)s)
                  ELSE run_at END,
    finished_at = CASE WHEN cancel_requested THEN persistq_now(%(now)s) END,
    updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status = 'PROCESSING' AND lease_token = %(lease_token)s
  AND lease_expires_at > persistq_now(%(now)s)
RETURNING *;

-- name: recover_expired
-- The sweeper's pick, with what each lease_expired event records (see SQLite). Differs
-- from SQLite: SKIP LOCKED, so sweepers on several machines split the work and never wait
-- on each other; a row a holder is finishing right now is left to that holder.
SELECT id, fence, attempts, started_at, worker FROM jobs
WHERE queue IN (SELECT name FROM queues) AND status = 'PROCESSING'
  AND lease_expires_at <= persistq_now(%(now)s)
ORDER BY lease_expires_at
LIMIT %(limit)s
FOR UPDATE OF jobs SKIP LOCKED;

-- name: expire_leases
-- The rows recover_expired picked (and locked): back to PENDING while attempts remain.
UPDATE jobs
SET status = CASE
        WHEN cancel_requested THEN 'CANCELLED'
        WHEN attempts < max_attempts THEN 'PENDING'
        ELSE 'UNPROCESSABLE' END,
    last_error = 'lease expired',
    worker = CASE WHEN cancel_requested OR attempts >= max_attempts THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts
                       THEN persistq_now(%(now)s) END,
    updated_at = persistq_now(%(now)s)
WHERE id = ANY(%(ids)s) AND status = 'PROCESSING'
  AND lease_expires_at <= persistq_now(%(now)s)
RETURNING id, status, attempts, max_attempts;

-- name: crash_job
-- The holder saw the process running the handler die: as recover_expired, at once, for one
-- job, guarded by its lease like every owner write (see SQLite).
UPDATE jobs
SET status = CASE
        WHEN cancel_requested THEN 'CANCELLED'
        WHEN attempts < max_attempts THEN 'PENDING'
        ELSE 'UNPROCESSABLE' END,
    last_error = %(error)s,
    worker = CASE WHEN cancel_requested OR attempts >= max_attempts THEN worker END,
    lease_token = NULL, lease_expires_at = NULL,
    finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts
                       THEN persistq_now(%(now)s) END,
    updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status = 'PROCESSING' AND lease_token = %(lease_token)s
  AND lease_expires_at > persistq_now(%(now)s)
RETURNING *;

-- name: cancel_job
UPDATE jobs
SET status = 'CANCELLED', lease_token = NULL, lease_expires_at = NULL,
    finished_at = persistq_now(%(now)s), updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status IN ('PENDING', 'FAILED', 'UNPROCESSABLE')
RETURNING *;

-- name: request_cancel
UPDATE jobs
SET cancel_requested = true, updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status = 'PROCESSING' AND NOT cancel_requested
RETURNING *;

-- name: fail_job_by_hand
UPDATE jobs
SET status = 'FAILED', last_error = %(error)s, lease_token = NULL, lease_expires_at = NULL,
    finished_at = persistq_now(%(now)s), updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status IN ('PENDING', 'PROCESSING')
RETURNING *;

-- name: resubmit_job
UPDATE jobs
SET status = 'PENDING', attempts = 0, run_at = persistq_now(%(now)s), worker = NULL,
    lease_token = NULL, lease_seconds = NULL, lease_expires_at = NULL, cancel_requested = false,
    result = NULL, started_at = NULL, finished_at = NULL, updated_at = persistq_now(%(now)s)
WHERE id = %(id)s AND status IN ('FAILED', 'UNPROCESSABLE', 'CANCELLED', 'COMPLETED')
RETURNING *;

-- name: list_jobs
SELECT * FROM jobs ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_jobs_by_status
-- One state across queues: a range of jobs_state per queue, the ids merged (see SQLite).
SELECT * FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE queue IN (SELECT name FROM queues) AND status = %(status)s
    ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s)
ORDER BY id DESC;

-- name: list_jobs_by_queue
-- One queue, every state: each state's range of jobs_state read newest first, no further than
-- the page needs, and the ids merged (page 1 reads a few entries per state, not the queue).
SELECT * FROM jobs WHERE id IN (
    SELECT id FROM (
    SELECT id FROM (SELECT id FROM jobs WHERE queue = %(queue)s AND status = 'PENDING'
                    ORDER BY id DESC LIMIT %(limit)s + %(offset)s) AS s
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs WHERE queue = %(queue)s AND status = 'PROCESSING'
                    ORDER BY id DESC LIMIT %(limit)s + %(offset)s) AS s
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs WHERE queue = %(queue)s AND status = 'COMPLETED'
                    ORDER BY id DESC LIMIT %(limit)s + %(offset)s) AS s
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs WHERE queue = %(queue)s AND status = 'FAILED'
                    ORDER BY id DESC LIMIT %(limit)s + %(offset)s) AS s
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs WHERE queue = %(queue)s AND status = 'UNPROCESSABLE'
                    ORDER BY id DESC LIMIT %(limit)s + %(offset)s) AS s
    UNION ALL
    SELECT id FROM (SELECT id FROM jobs WHERE queue = %(queue)s AND status = 'CANCELLED'
                    ORDER BY id DESC LIMIT %(limit)s + %(offset)s) AS s) AS merged
    ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s)
ORDER BY id DESC;

-- name: list_jobs_by_queue_status
SELECT * FROM jobs WHERE queue = %(queue)s AND status = %(status)s
ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_events
-- The stored events; the backend merges in the derived ones (rows.history).
SELECT * FROM events WHERE job_id = %(job_id)s ORDER BY id;

-- name: count_by_status
SELECT queue, status, count(*) AS n FROM jobs GROUP BY queue, status;

-- name: oldest_pending
SELECT name AS queue, extract(epoch FROM run_at)::double precision AS run_at FROM (
    SELECT q.name,
           (SELECT min(run_at) FROM jobs WHERE queue = q.name AND status = 'PENDING') AS run_at
    FROM queues AS q) AS oldest
WHERE run_at <= persistq_now(%(now)s);

-- name: list_queues
SELECT * FROM queues ORDER BY name;

-- name: get_queue
SELECT * FROM queues WHERE name = %(queue)s;

-- name: create_queue
INSERT INTO queues (name, paused, created_at) VALUES (%(queue)s, false, persistq_now(%(now)s))
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: set_queue_paused
UPDATE queues SET paused = (%(paused)s <> 0) WHERE name = %(queue)s RETURNING *;

-- name: set_queue_limits
-- The rate bucket starts empty (see SQLite).
UPDATE queues
SET concurrency_limit = %(concurrency)s, rate_limit = %(rate_limit)s,
    rate_window = %(rate_window)s,
    rate_tokens = CASE WHEN %(rate_limit)s::integer IS NULL THEN NULL ELSE 0 END,
    rate_at = CASE WHEN %(rate_limit)s::integer IS NULL THEN NULL ELSE persistq_now(%(now)s) END
WHERE name = %(queue)s RETURNING *;

-- name: count_unfinished
SELECT count(*) AS n FROM jobs WHERE queue = %(queue)s AND status IN ('PENDING', 'PROCESSING');

-- name: tally_queue_jobs
-- What deleting a queue's jobs takes from the rows counters() counts (see SQLite).
INSERT INTO counters (queue, name, value)
SELECT queue, 'enqueued', count(*) FROM jobs WHERE queue = %(queue)s GROUP BY queue
UNION ALL
SELECT queue, lower(status), count(*) FROM jobs
WHERE queue = %(queue)s AND status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')
GROUP BY queue, status
ON CONFLICT (queue, name) DO UPDATE SET value = counters.value + excluded.value;

-- name: delete_queue_events
DELETE FROM events WHERE job_id IN (SELECT id FROM jobs WHERE queue = %(queue)s);

-- name: delete_queue_jobs
DELETE FROM jobs WHERE queue = %(queue)s;

-- name: delete_queue
DELETE FROM queues WHERE name = %(queue)s;

-- name: select_purgeable
-- The state's range of jobs_state per queue (see SQLite).
SELECT id FROM jobs
WHERE queue IN (SELECT name FROM queues) AND status = %(status)s
  AND finished_at < to_timestamp(%(before)s)
LIMIT %(limit)s;

-- name: tally_jobs
-- What purging these jobs takes from the rows counters() counts (see SQLite).
INSERT INTO counters (queue, name, value)
SELECT queue, 'enqueued', count(*) FROM jobs WHERE id = ANY(%(ids)s) GROUP BY queue
UNION ALL
SELECT queue, lower(status), count(*) FROM jobs
WHERE id = ANY(%(ids)s) AND status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')
GROUP BY queue, status
ON CONFLICT (queue, name) DO UPDATE SET value = counters.value + excluded.value;

-- name: tally
-- A final state a job leaves (resubmit, cancel of a FAILED job): still counted.
INSERT INTO counters (queue, name, value) VALUES (%(queue)s, %(name)s, 1)
ON CONFLICT (queue, name) DO UPDATE SET value = counters.value + 1;

-- name: delete_events_of_jobs
DELETE FROM events WHERE job_id = ANY(%(ids)s);

-- name: delete_jobs
DELETE FROM jobs WHERE id = ANY(%(ids)s);

-- name: count_finished
SELECT floor(extract(epoch FROM finished_at) / %(bucket_seconds)s) * %(bucket_seconds)s AS bucket,
       status, count(*) AS n
FROM jobs
WHERE finished_at >= to_timestamp(%(since)s)
GROUP BY 1, 2
ORDER BY 1;

-- name: finished_since
SELECT queue, status,
       extract(epoch FROM run_at)::double precision AS run_at,
       extract(epoch FROM started_at)::double precision AS started_at,
       extract(epoch FROM finished_at)::double precision AS finished_at
FROM jobs
WHERE finished_at >= to_timestamp(%(since)s) AND started_at IS NOT NULL
ORDER BY jobs.finished_at DESC LIMIT %(limit)s;

-- name: recent_failures
-- The kinds are persistq.model.FAILURE_KINDS, written out so the partial index
-- events_failures (migration 0007) serves the query: it walks only failure events, newest first.
SELECT e.id, e.job_id, e.at, e.kind, e.worker, e.detail, j.queue
FROM events AS e JOIN jobs AS j ON j.id = e.job_id
WHERE e.kind IN ('failed', 'retried', 'lease_expired')
ORDER BY e.id DESC LIMIT %(limit)s;

-- name: worker_seen
INSERT INTO workers (id, queues, started_at, last_seen_at)
VALUES (%(worker)s, %(queues)s, persistq_now(%(now)s), persistq_now(%(now)s))
ON CONFLICT (id) DO UPDATE SET queues = excluded.queues, last_seen_at = excluded.last_seen_at;

-- name: worker_gone
DELETE FROM workers WHERE id = %(worker)s;

-- name: list_workers
SELECT w.id, w.queues, w.started_at, w.last_seen_at,
       coalesce((SELECT json_agg(j.id) FROM jobs AS j
                 WHERE j.queue IN (SELECT name FROM queues) AND j.status = 'PROCESSING'
                   AND j.worker = w.id), '[]')::text AS job_ids
FROM workers AS w
WHERE w.last_seen_at >= to_timestamp(%(since)s)
ORDER BY w.id;

-- name: prune_workers
DELETE FROM workers WHERE last_seen_at < to_timestamp(%(before)s);

-- name: counters
-- Lifetime counts per queue: the rows as they are now, per state (one pass over jobs_state,
-- as stats), plus the tally of what no row shows any more (sqlite migration 0008); one
-- statement, so one snapshot: a purge between two reads would count its jobs twice.
WITH by_state AS MATERIALIZED (SELECT queue, status, count(*) AS n FROM jobs GROUP BY queue, status)
SELECT queue, name, sum(value) AS value FROM (
    SELECT queue, name, value FROM counters
    UNION ALL
    SELECT queue, 'enqueued', n FROM by_state
    UNION ALL
    SELECT queue, lower(status), n FROM by_state
    WHERE status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')) AS counted
GROUP BY queue, name HAVING sum(value) > 0
ORDER BY queue, name;

-- name: search_ids
-- As SQLite's: one (queue, state) range of jobs_state below the cursor. ILIKE folds every
-- letter here (SQLite's LIKE, ASCII only).
SELECT id FROM jobs
WHERE queue = %(queue)s AND status = %(status)s AND id >= %(above)s AND id < %(below)s
  AND (%(created_from)s::float8 IS NULL OR created_at >= to_timestamp(%(created_from)s::float8))
  AND (%(created_to)s::float8 IS NULL OR created_at < to_timestamp(%(created_to)s::float8))
  AND (%(task)s::text IS NULL OR (payload::json ->> 'task') = %(task)s::text)
  AND (%(pattern)s::text IS NULL OR payload ILIKE %(pattern)s::text ESCAPE '\'
       OR last_error ILIKE %(pattern)s::text ESCAPE '\')
ORDER BY id DESC LIMIT %(limit)s;

-- name: search_ids_oldest
SELECT id FROM jobs
WHERE queue = %(queue)s AND status = %(status)s AND id >= %(above)s AND id < %(below)s
  AND (%(created_from)s::float8 IS NULL OR created_at >= to_timestamp(%(created_from)s::float8))
  AND (%(created_to)s::float8 IS NULL OR created_at < to_timestamp(%(created_to)s::float8))
  AND (%(task)s::text IS NULL OR (payload::json ->> 'task') = %(task)s::text)
  AND (%(pattern)s::text IS NULL OR payload ILIKE %(pattern)s::text ESCAPE '\'
       OR last_error ILIKE %(pattern)s::text ESCAPE '\')
ORDER BY id LIMIT %(limit)s;

-- name: count_matching
SELECT count(*) AS n FROM jobs
WHERE queue = %(queue)s AND status = %(status)s AND id >= %(above)s AND id < %(below)s
  AND (%(created_from)s::float8 IS NULL OR created_at >= to_timestamp(%(created_from)s::float8))
  AND (%(created_to)s::float8 IS NULL OR created_at < to_timestamp(%(created_to)s::float8))
  AND (%(task)s::text IS NULL OR (payload::json ->> 'task') = %(task)s::text)
  AND (%(pattern)s::text IS NULL OR payload ILIKE %(pattern)s::text ESCAPE '\'
       OR last_error ILIKE %(pattern)s::text ESCAPE '\');

-- name: count_in_state
SELECT count(*) AS n FROM (
    SELECT 1 FROM jobs
    WHERE queue = %(queue)s AND status = %(status)s AND id >= %(above)s AND id < %(below)s
    LIMIT %(limit)s) AS candidates;

-- name: scan_ids
-- As SQLite's, without its NOT INDEXED: the planner chooses how to read the table.
SELECT id FROM jobs
WHERE id >= %(above)s AND id < %(below)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text) AND status = ANY(%(states)s)
  AND (%(created_from)s::float8 IS NULL OR created_at >= to_timestamp(%(created_from)s::float8))
  AND (%(created_to)s::float8 IS NULL OR created_at < to_timestamp(%(created_to)s::float8))
  AND (%(task)s::text IS NULL OR (payload::json ->> 'task') = %(task)s::text)
  AND (%(pattern)s::text IS NULL OR payload ILIKE %(pattern)s::text ESCAPE '\'
       OR last_error ILIKE %(pattern)s::text ESCAPE '\')
ORDER BY id DESC LIMIT %(limit)s;

-- name: scan_ids_oldest
SELECT id FROM jobs
WHERE id >= %(above)s AND id < %(below)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text) AND status = ANY(%(states)s)
  AND (%(created_from)s::float8 IS NULL OR created_at >= to_timestamp(%(created_from)s::float8))
  AND (%(created_to)s::float8 IS NULL OR created_at < to_timestamp(%(created_to)s::float8))
  AND (%(task)s::text IS NULL OR (payload::json ->> 'task') = %(task)s::text)
  AND (%(pattern)s::text IS NULL OR payload ILIKE %(pattern)s::text ESCAPE '\'
       OR last_error ILIKE %(pattern)s::text ESCAPE '\')
ORDER BY id LIMIT %(limit)s;

-- name: scan_count
SELECT count(*) AS n FROM jobs
WHERE id >= %(above)s AND id < %(below)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text) AND status = ANY(%(states)s)
  AND (%(created_from)s::float8 IS NULL OR created_at >= to_timestamp(%(created_from)s::float8))
  AND (%(created_to)s::float8 IS NULL OR created_at < to_timestamp(%(created_to)s::float8))
  AND (%(task)s::text IS NULL OR (payload::json ->> 'task') = %(task)s::text)
  AND (%(pattern)s::text IS NULL OR payload ILIKE %(pattern)s::text ESCAPE '\'
       OR last_error ILIKE %(pattern)s::text ESCAPE '\');

-- name: id_range
SELECT min(id) AS low, max(id) AS high FROM jobs;

-- name: first_job_from
SELECT id, extract(epoch FROM created_at)::double precision AS created_at FROM jobs
WHERE id >= %(id)s ORDER BY id LIMIT 1;

-- name: get_jobs
SELECT * FROM jobs WHERE id = ANY(%(ids)s);
