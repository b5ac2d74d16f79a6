-- persistq schema, version 8 (PostgreSQL): lifetime counters per queue, as SQLite's
-- version 6 (see there why triggers). Concurrent finishes of one queue serialize on its
-- counter row only for the rest of their transaction.
CREATE TABLE counters (
    queue  text NOT NULL,
    name   text NOT NULL,
    value  bigint NOT NULL,
    PRIMARY KEY (queue, name)
);

INSERT INTO counters (queue, name, value)
SELECT queue, 'enqueued', count(*) FROM jobs GROUP BY queue;
INSERT INTO counters (queue, name, value)
SELECT queue, lower(status), count(*) FROM jobs
WHERE status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED') GROUP BY queue, status;
INSERT INTO counters (queue, name, value)
SELECT j.queue, e.kind, count(*) FROM events AS e JOIN jobs AS j ON j.id = e.job_id
WHERE e.kind IN ('retried', 'lease_expired') GROUP BY j.queue, e.kind;

CREATE OR REPLACE FUNCTION persistq_count(q text, counter text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO counters (queue, name, value) VALUES (q, counter, 1)
    ON CONFLICT (queue, name) DO UPDATE SET value = counters.value + 1;
$$;

CREATE OR REPLACE FUNCTION persistq_count_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM persistq_count(NEW.queue, 'enqueued');
    ELSIF NEW.status IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED') THEN
        PERFORM persistq_count(NEW.queue, lower(NEW.status::text));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION persistq_count_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM persistq_count(j.queue, NEW.kind::text) FROM jobs AS j WHERE j.id = NEW.job_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER counters_enqueued AFTER INSERT ON jobs
FOR EACH ROW EXECUTE FUNCTION persistq_count_job();
CREATE TRIGGER counters_finished AFTER UPDATE OF status ON jobs
FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
                   AND NEW.status::text IN ('COMPLETED', 'FAILED', 'UNPROCESSABLE', 'CANCELLED'))
EXECUTE FUNCTION persistq_count_job();
CREATE TRIGGER counters_events AFTER INSERT ON events
FOR EACH ROW WHEN (NEW.kind::text IN ('retried', 'lease_expired'))
EXECUTE FUNCTION persistq_count_event();
