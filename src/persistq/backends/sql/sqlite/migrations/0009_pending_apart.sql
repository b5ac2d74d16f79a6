-- persistq schema, version 9 (SQLite): PENDING rows leave jobs_state (issue 13).
-- jobs_state held every row, so each status change rewrote two of its entries, and an
-- enqueue or a claim touched it besides jobs_claim: 3.6 WAL frames per enqueue, 4.1 per
-- claim. The PENDING rows are already all in jobs_claim, so jobs_state now holds the other
-- states only, and jobs_claim carries run_at: an enqueue writes the row and one index entry
-- (2.4 frames), a claim moves one entry from jobs_claim to jobs_state (3.3 frames).
-- status trails jobs_claim although it is always 'PENDING' there: SQLite (3.40) reads a
-- column that a query names from the row unless the index holds it, so without it every
-- count or scan of jobs_claim would look up each row.
--
-- What read the PENDING range of jobs_state reads jobs_claim instead: the count per state,
-- the oldest pending job and the next one to become due (run_at in the index: a scan of
-- index entries, no row lookups), listing and searching PENDING jobs (per priority, see
-- queries.sql). A query of jobs_state repeats the index's condition (status <> 'PENDING')
-- so that SQLite knows the partial index serves it.
-- Only indexes change: no row is rewritten.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, id, run_at, status) WHERE status = 'PENDING';
DROP INDEX jobs_state;
CREATE INDEX jobs_state ON jobs (queue, status, id) WHERE status <> 'PENDING';
