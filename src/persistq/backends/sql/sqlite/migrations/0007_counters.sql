-- persistq schema, version 7 (SQLite): lifetime counters per queue, for /metrics.
-- Prometheus counters must be exact and never go down: counting in the API process loses
-- what happened before it started, and counting rows loses what a purge deleted. So the
-- transactions that change jobs bump these rows themselves (triggers: every path that
-- enqueues, finishes or retries a job is covered, with no write of its own), and nothing
-- ever deletes them, not even deleting the queue.
CREATE TABLE counters (
    queue  TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  INTEGER NOT NULL,
    PRIMARY KEY (queue, name)
) WITHOUT ROWID;

-- Start from what the database still shows (purged jobs before this version are lost).
INSERT INTO counters (queue, name, value)
SELECT queue, 'enqueued', count(*) FROM jobs GROUP BY queue;
INSERT INTO counters (queue, name, value)
SELECT queue, lower(status), count(*) FROM jobs
WHERE status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED') GROUP BY queue, status;
INSERT INTO counters (queue, name, value)
SELECT j.queue, e.kind, count(*) FROM events AS e JOIN jobs AS j ON j.id = e.job_id
WHERE e.kind IN ('retried', 'lease_expired') GROUP BY j.queue, e.kind;

CREATE TRIGGER counters_enqueued AFTER INSERT ON jobs
BEGIN
    INSERT INTO counters (queue, name, value) VALUES (NEW.queue, 'enqueued', 1)
    ON CONFLICT (queue, name) DO UPDATE SET value = value + 1;
END;

CREATE TRIGGER counters_finished AFTER UPDATE OF status ON jobs
WHEN NEW.status <> OLD.status
 AND NEW.status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED')
BEGIN
    INSERT INTO counters (queue, name, value) VALUES (NEW.queue, lower(NEW.status), 1)
    ON CONFLICT (queue, name) DO UPDATE SET value = value + 1;
END;

CREATE TRIGGER counters_events AFTER INSERT ON events
WHEN NEW.kind IN ('retried', 'lease_expired')
BEGIN
    INSERT INTO counters (queue, name, value)
    SELECT queue, NEW.kind, 1 FROM jobs WHERE id = NEW.job_id
    ON CONFLICT (queue, name) DO UPDATE SET value = value + 1;
END;
