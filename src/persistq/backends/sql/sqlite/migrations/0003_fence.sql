-- persistq schema, version 3 (SQLite): Job.fence, one more on every claim of the job and never
-- reset (resubmit keeps it), so a handler can tag downstream writes and a stale holder's
-- write is refused there (SPEC: Job.fence).
ALTER TABLE jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0 CHECK (fence >= 0);
-- Existing jobs start at their attempts: no fence was ever handed out before this version, so
-- any start keeps fences growing; attempts (a lower bound of past claims, since resubmit reset
-- it) keeps fence >= attempts and gives a job leased right now a fence of at least 1.
UPDATE jobs SET fence = attempts WHERE attempts > 0;
