-- persistq schema, version 6 (PostgreSQL): global limits of a queue, as SQLite's version 5.
ALTER TABLE queues ADD COLUMN concurrency_limit integer
    CHECK (concurrency_limit IS NULL OR concurrency_limit >= 0);
ALTER TABLE queues ADD COLUMN rate_limit integer CHECK (rate_limit IS NULL OR rate_limit > 0);
ALTER TABLE queues ADD COLUMN rate_window double precision
    CHECK (rate_window IS NULL OR rate_window > 0);
ALTER TABLE queues ADD COLUMN rate_tokens double precision;
ALTER TABLE queues ADD COLUMN rate_at timestamptz;

-- The pick now enforces the limits, race-free across machines: a queue WITH a limit has its
-- queues row locked (FOR UPDATE) before anything is counted, so claimers of that queue take
-- turns; each statement of a plpgsql function reads a fresh snapshot, so the count after the
-- lock sees every claim committed before it. A queue without limits matches no row, locks
-- nothing, and its claimers keep passing each other with SKIP LOCKED.
CREATE OR REPLACE FUNCTION persistq_pick(q text, t double precision, n integer)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
DECLARE
    lim record;
    allowed integer := n;
    tokens double precision;
    picked bigint[];
    at timestamptz := persistq_now(t);
    limited boolean;
BEGIN
    SELECT concurrency_limit, rate_limit, rate_window, rate_tokens, rate_at INTO lim
    FROM queues
    WHERE name = q AND NOT paused
      AND (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL)
    FOR UPDATE;
    limited := FOUND;
    IF limited THEN
        IF lim.concurrency_limit IS NOT NULL THEN
            allowed := least(allowed, lim.concurrency_limit - (
                SELECT count(*) FROM jobs
                WHERE queue = q AND status = 'PROCESSING' AND lease_expires_at > at)::integer);
        END IF;
        IF lim.rate_limit IS NOT NULL THEN
            -- now() is the statement's start, which may be before the lock was granted:
            -- never count time backwards.
            tokens := least(lim.rate_limit::double precision, lim.rate_tokens
                + greatest(0, extract(epoch FROM at - lim.rate_at))
                  * lim.rate_limit / lim.rate_window);
            allowed := least(allowed, floor(tokens)::integer);
        END IF;
        IF allowed <= 0 THEN
            RETURN;
        END IF;
    END IF;
    picked := ARRAY(
        SELECT id FROM jobs
        WHERE queue = q AND status = 'PENDING' AND run_at <= at
          AND NOT EXISTS (SELECT 1 FROM queues WHERE name = q AND paused)
        ORDER BY priority DESC, id
        LIMIT allowed
        FOR UPDATE SKIP LOCKED);
    IF limited AND cardinality(picked) > 0 THEN
        IF lim.rate_limit IS NOT NULL THEN
            UPDATE queues
            SET rate_tokens = tokens - cardinality(picked), rate_at = greatest(at, lim.rate_at)
            WHERE name = q;
        END IF;
    END IF;
    RETURN QUERY SELECT unnest(picked);
END
$$;
