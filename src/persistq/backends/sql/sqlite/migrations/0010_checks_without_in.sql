-- persistq schema, version 10 (SQLite): the same constraints, written without IN lists
-- (issue 13). SQLite (3.40) evaluates `x IN ('a', 'b', 'c', ...)` of three values or more by
-- building a temporary b-tree of the list each time the statement runs: the CHECK on
-- jobs.status did so on every insert and on every status change (a claim, a completion),
-- 36,000 of a claim's 255,000 instructions (callgrind), ~2 us per row of a batch insert.
-- An OR of equalities says the same and costs a comparison or six.
--
-- A CHECK is not part of the file format: SQLite's documented way to change one without
-- copying rows (lang_altertable.html, "other kinds of table schema changes") edits the
-- stored CREATE statement, as 0008 did. The new constraints accept exactly the rows the old
-- ones did, so no row can be left violating them. The replaced text is the one 0001 and
-- 0004 wrote; `guard` below stops the migration (CHECK constraint failed, rolled back with
-- it) if a database held some other text, instead of going on half done.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
SET sql = replace(sql,
    'CHECK (status IN' || char(10) || '                        (''PENDING'', ''PROCESSING'', ''COMPLETED'', ''FAILED'', ''UNPROCESSABLE'', ''CANCELLED''))',
    'CHECK (status = ''PENDING'' OR status = ''PROCESSING'' OR status = ''COMPLETED'''
    || ' OR status = ''FAILED'' OR status = ''UNPROCESSABLE'' OR status = ''CANCELLED'')')
WHERE type = 'table' AND name = 'jobs';
UPDATE sqlite_master
SET sql = replace(sql,
    'CHECK (kind IN (''enqueued'', ''claimed'', ''completed'', ''failed'',' || char(10)
    || '              ''retried'', ''lease_expired'', ''released'', ''cancel_requested'', ''cancelled'','
    || char(10) || '              ''resubmitted'', ''timed_out'', ''crashed''))',
    'CHECK (kind = ''enqueued'' OR kind = ''claimed'' OR kind = ''completed'''
    || ' OR kind = ''failed'' OR kind = ''retried'' OR kind = ''lease_expired'''
    || ' OR kind = ''released'' OR kind = ''cancel_requested'' OR kind = ''cancelled'''
    || ' OR kind = ''resubmitted'' OR kind = ''timed_out'' OR kind = ''crashed'')')
WHERE type = 'table' AND name = 'events';
PRAGMA writable_schema = RESET;  -- before the guard: a failed migration leaves it off
CREATE TEMP TABLE guard (replaced INTEGER NOT NULL CHECK (replaced));
INSERT INTO guard
SELECT instr(sql, 'status IN') = 0 AND instr(sql, 'kind IN') = 0 FROM sqlite_master
WHERE type = 'table' AND name IN ('jobs', 'events');
DROP TABLE guard;

-- The partial index of failure events tested its condition the same way on every insert of
-- an event. Rebuilt (events are few: off the happy path only); the DDL also changes the
-- schema cookie, so every other connection reads the new constraints.
DROP INDEX events_failures;
CREATE INDEX events_failures ON events (id)
WHERE kind = 'failed' OR kind = 'retried' OR kind = 'lease_expired';
