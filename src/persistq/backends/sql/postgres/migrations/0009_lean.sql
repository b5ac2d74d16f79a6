-- persistq schema, version 9 (PostgreSQL): a lean write path, as SQLite's version 8 (see
-- sqlite/migrations/0008_lean.sql for the event shape and the counters). No event rows and
-- no counter rows on the happy path; the index diet matters more here, where every update
-- that is not HOT writes an entry in every index. Ids: the identity already never reuses
-- one, at no cost per insert.
ALTER TABLE events
    ADD COLUMN fence integer,
    ADD COLUMN attempt integer,
    ADD COLUMN started_at timestamptz,
    ADD COLUMN holder text,
    ADD COLUMN completed_at timestamptz;
UPDATE events SET fence = numbered.fence
FROM (
    SELECT id, CASE WHEN seen = 0 THEN least(0, fence - n) ELSE fence - (n - seen) END AS fence
    FROM (
        SELECT e.id, j.fence,
               count(*) FILTER (WHERE e.kind = 'claimed') OVER (
                   PARTITION BY e.job_id ORDER BY e.id ROWS UNBOUNDED PRECEDING) AS seen,
               count(*) FILTER (WHERE e.kind = 'claimed') OVER (PARTITION BY e.job_id) AS n
        FROM events AS e JOIN jobs AS j ON j.id = e.job_id) AS counted) AS numbered
WHERE events.id = numbered.id;

-- Counters: the tally of what no row shows any more (see SQLite).
UPDATE counters SET value = value - (SELECT count(*) FROM jobs WHERE jobs.queue = counters.queue)
WHERE name = 'enqueued';
UPDATE counters SET value = value - (
    SELECT count(*) FROM jobs
    WHERE jobs.queue = counters.queue AND jobs.status = upper(counters.name))
WHERE name IN ('completed', 'failed', 'unprocessable', 'cancelled');
DROP TRIGGER counters_enqueued ON jobs;
DROP TRIGGER counters_finished ON jobs;
DROP FUNCTION persistq_count_job();

-- The index diet, as SQLite: jobs_claim, jobs_key, jobs_state and jobs_finished.
DROP INDEX jobs_queue_status;
DROP INDEX jobs_status;
DROP INDEX jobs_lease;
CREATE INDEX jobs_state ON jobs (queue, status, id, run_at);
