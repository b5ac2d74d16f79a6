-- persistq schema, version 4 (PostgreSQL): Job.fence, as SQLite's version 3 (see
-- sqlite/migrations/0003_fence.sql for the start value of existing jobs).
ALTER TABLE jobs ADD COLUMN fence integer NOT NULL DEFAULT 0 CHECK (fence >= 0);
UPDATE jobs SET fence = attempts WHERE attempts > 0;
