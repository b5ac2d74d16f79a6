-- persistq schema, version 11 (PostgreSQL): the CHECKs of jobs become domains, the same rules
-- (issue 13; sqlite migration 0010 is SQLite's turn at the same cost). PostgreSQL keeps a
-- table's CHECK constraints as text, and every statement that writes a row of it (each
-- enqueue, claim and completion) parses all of them back and plans them before it checks
-- one: in S4 (2 producers + 4 consumers) ExecConstraints was 9 % of the server's CPU, and a
-- job's three statements spent about 45 us of server CPU on it (persistq schemas with the
-- CHECKs, with none and with these domains, alternating: 385, 340 and 350 us). A domain's
-- constraint is parsed once per connection (the type cache), and checked only where a
-- statement sets a column of that domain. The CHECKs of events and queues stay: those rows
-- are written off the happy path.
--
-- Without rewriting the table: the columns first become domains without constraints, of
-- the same type underneath (so no row is rewritten, and every index keeps its storage but
-- jobs_claim, whose condition names status: it is built again, from the PENDING rows), and
-- ALTER DOMAIN then adds each constraint, which checks every row: a row the old CHECK would
-- not have held stops the migration, rolled back whole.
ALTER TABLE jobs
    DROP CONSTRAINT jobs_status_check,
    DROP CONSTRAINT jobs_max_attempts_check,
    DROP CONSTRAINT jobs_fence_check,
    DROP CONSTRAINT jobs_timeout_check;
CREATE DOMAIN persistq_status AS text;
CREATE DOMAIN persistq_max_attempts AS integer;
CREATE DOMAIN persistq_fence AS integer;
CREATE DOMAIN persistq_timeout AS double precision;
ALTER TABLE jobs
    ALTER COLUMN status TYPE persistq_status,
    ALTER COLUMN max_attempts TYPE persistq_max_attempts,
    ALTER COLUMN fence TYPE persistq_fence,
    ALTER COLUMN timeout TYPE persistq_timeout;
ALTER DOMAIN persistq_status ADD CONSTRAINT persistq_status_check CHECK (VALUE IN
    ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED'));
ALTER DOMAIN persistq_max_attempts ADD CONSTRAINT persistq_max_attempts_check
    CHECK (VALUE >= 1);
ALTER DOMAIN persistq_fence ADD CONSTRAINT persistq_fence_check CHECK (VALUE >= 0);
ALTER DOMAIN persistq_timeout ADD CONSTRAINT persistq_timeout_check
    CHECK (VALUE IS NULL OR VALUE > 0);
