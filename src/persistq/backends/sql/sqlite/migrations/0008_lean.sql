-- persistq schema, version 8 (SQLite): a lean write path (issue 13). A happy-path job
-- (enqueue, claim, complete) now writes its row and three secondary index entries at most:
-- no event rows, no counter rows, no sqlite_sequence row.
--
-- Events. `enqueued`, `claimed` and `completed` are no longer stored: the job row holds
-- their facts (created_at; started_at, worker, attempts; finished_at) and q.events()
-- derives them (id NULL; backends/sqlbase.py, `history`). Every stored event records the
-- job's row as its transition found it:
--   fence         the job's fence: the claim it belongs to (0: before any claim). Fence
--                 grows by one on every claim and is never reset, so it numbers attempts.
--   attempt, started_at, holder
--                 attempts, started_at and worker of that claim (NULL when the job had no
--                 started attempt, e.g. a cancel of a job never claimed): what a derived
--                 `claimed` of a claim that ended off the happy path is made from.
--   completed_at  `resubmitted` of a COMPLETED job only: the completion it erases, so the
--                 `completed` of that attempt is still derived.
-- Events written before this version keep their kinds, enqueued/claimed/completed included;
-- they get the fence of the claim they followed (the newest claim = the row's fence) so a
-- history derives a kind for a claim only where no stored one exists (rows.history).
ALTER TABLE events ADD COLUMN fence INTEGER;
ALTER TABLE events ADD COLUMN attempt INTEGER;
ALTER TABLE events ADD COLUMN started_at REAL;
ALTER TABLE events ADD COLUMN holder TEXT;
ALTER TABLE events ADD COLUMN completed_at REAL;
-- The claims a job's events show, counted up to each event (seen) and in all (n): an
-- event after its job's seen-th claim gets fence F - (n - seen), F the row's fence; one
-- before any stored claim (an `enqueued`) min(0, F - n), ahead of every claim.
UPDATE events SET fence = numbered.fence
FROM (
    SELECT id, CASE WHEN seen = 0 THEN min(0, fence - n) ELSE fence - (n - seen) END AS fence
    FROM (
        SELECT e.id, j.fence,
               sum(e.kind = 'claimed') OVER (PARTITION BY e.job_id ORDER BY e.id
                                             ROWS UNBOUNDED PRECEDING) AS seen,
               sum(e.kind = 'claimed') OVER (PARTITION BY e.job_id) AS n
        FROM events AS e JOIN jobs AS j ON j.id = e.job_id)) AS numbered
WHERE events.id = numbered.id;

-- Counters. The lifetime counters (/metrics) are now what the rows show, per queue and
-- state (the GROUP BY of stats), plus this table's tally of what no row shows any more:
-- rows deleted (purge, delete_queue: enqueued and their final state) and final states left
-- (resubmit; cancel of a FAILED or UNPROCESSABLE job), and retried/lease_expired, counted
-- from their stored events by the trigger counters_events (kept: off the happy path). The
-- triggers on every insert and finish go. Tally = the lifetime value minus the rows now.
UPDATE counters SET value = value - (SELECT count(*) FROM jobs WHERE jobs.queue = counters.queue)
WHERE name = 'enqueued';
UPDATE counters SET value = value - (
    SELECT count(*) FROM jobs WHERE jobs.queue = counters.queue AND jobs.status = upper(counters.name))
WHERE name IN ('completed', 'failed', 'unprocessable', 'cancelled');
DROP TRIGGER counters_enqueued;
DROP TRIGGER counters_finished;

-- Ids without AUTOINCREMENT (it rewrote sqlite_sequence on every insert): an insert takes
-- one more than the larger of the highest id in jobs and job_ids.last_id, the highest id
-- ever deleted (raised by the trigger below: deletes only), so an id is never reused.
CREATE TABLE job_ids (last_id INTEGER NOT NULL);
INSERT INTO job_ids (last_id)
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),
           coalesce((SELECT max(id) FROM jobs), 0));
CREATE TRIGGER jobs_last_id AFTER DELETE ON jobs
WHEN OLD.id > (SELECT last_id FROM job_ids)
BEGIN
    UPDATE job_ids SET last_id = OLD.id;
END;
-- AUTOINCREMENT changes nothing in the table's b-tree, only the upkeep of sqlite_sequence:
-- dropping the word from the stored schema is SQLite's documented way for a change that
-- leaves the file format alone (lang_altertable.html, "other kinds of table schema
-- changes"), and copies no row. RESET makes this connection read the schema again; the
-- DDL below changes the schema cookie, so every other connection does too.
PRAGMA writable_schema = ON;
UPDATE sqlite_master SET sql = replace(sql, 'INTEGER PRIMARY KEY AUTOINCREMENT', 'INTEGER PRIMARY KEY')
WHERE type = 'table' AND name = 'jobs';
PRAGMA writable_schema = RESET;

-- The index diet: jobs_claim, jobs_key, jobs_finished (as they were) and jobs_state, and a
-- happy-path transition touches at most three.
DROP INDEX jobs_queue_status;
DROP INDEX jobs_status;
DROP INDEX jobs_lease;
-- One index for the rest, instead of jobs_queue_status, jobs_status and jobs_lease: stats
-- (count per queue and state), listing one queue's state newest first, the PROCESSING rows
-- of a queue (sweeper, concurrency limit, workers' jobs: few rows), across queues one range
-- per queue; run_at trailing, so a queue's oldest pending job is a covering scan.
CREATE INDEX jobs_state ON jobs (queue, status, id, run_at);
