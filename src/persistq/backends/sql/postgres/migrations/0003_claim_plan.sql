-- persistq schema, version 3 (PostgreSQL): a claim plan that cannot degrade.
-- Right after a burst of enqueues, before autovacuum has analyzed `jobs`, the planner
-- believes few rows match and picks jobs_queue_status plus a sort of every pending job of
-- the queue: 34x slower claims at 200,000 pending (bench S5). SQLite pins the index with
-- INDEXED BY; PostgreSQL has no hints, but a function's own settings apply while its
-- statement is planned, so with sorts and bitmap scans off the only cheap plan left is
-- walking jobs_claim in claim order.
CREATE FUNCTION persistq_pick(q text, t double precision, n integer) RETURNS SETOF bigint
LANGUAGE sql VOLATILE
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
    SELECT id FROM jobs
    WHERE queue = q AND status = 'PENDING' AND run_at <= persistq_now(t)
      AND NOT EXISTS (SELECT 1 FROM queues WHERE name = q AND paused)
    ORDER BY priority DESC, id
    LIMIT n
    FOR UPDATE SKIP LOCKED
$$;
