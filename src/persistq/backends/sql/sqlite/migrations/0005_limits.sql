-- persistq schema, version 5 (SQLite): global limits of a queue (SPEC: Limits, timeouts and
-- worker pools), checked inside the claim. concurrency_limit: most jobs PROCESSING under an
-- unexpired lease. rate_limit per rate_window seconds: a token bucket on this row (tokens
-- rate_tokens as of rate_at, refilled at rate_limit per rate_window, at most rate_limit),
-- spent by the claim in its own transaction. NULL: no limit.
ALTER TABLE queues ADD COLUMN concurrency_limit INTEGER
    CHECK (concurrency_limit IS NULL OR concurrency_limit >= 0);
ALTER TABLE queues ADD COLUMN rate_limit INTEGER CHECK (rate_limit IS NULL OR rate_limit > 0);
ALTER TABLE queues ADD COLUMN rate_window REAL CHECK (rate_window IS NULL OR rate_window > 0);
ALTER TABLE queues ADD COLUMN rate_tokens REAL;
ALTER TABLE queues ADD COLUMN rate_at REAL;
