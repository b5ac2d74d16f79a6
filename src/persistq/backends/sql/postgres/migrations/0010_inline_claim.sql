-- persistq schema, version 10 (PostgreSQL): the claim is inline again (queries.sql,
-- claim_jobs), so persistq_pick goes. Its pinned plan now comes from the settings of the
-- connections that claim (backends/postgres.py, CLAIM_SETTINGS): one statement per claim
-- and a plan prepared once per connection, where the function planned its query on each call.
DROP FUNCTION persistq_pick(text, double precision, integer);

-- Enqueues count once per statement and queue, not once per row: a batch of 1,000 jobs
-- made 1,000 updates of the same counters row (each a new row version), most of a batch
-- insert's time. The transition table holds only the rows the statement really inserted
-- (an existing key's ON CONFLICT DO NOTHING inserts none); queues in name order, so two
-- batches of the same queues lock their counter rows in the same order.
CREATE FUNCTION persistq_count_enqueued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counters (queue, name, value)
    SELECT queue, 'enqueued', count(*) FROM enqueued_jobs GROUP BY queue ORDER BY queue
    ON CONFLICT (queue, name) DO UPDATE SET value = counters.value + excluded.value;
    RETURN NULL;
END;
$$;

DROP TRIGGER counters_enqueued ON jobs;
CREATE TRIGGER counters_enqueued AFTER INSERT ON jobs
REFERENCING NEW TABLE AS enqueued_jobs
FOR EACH STATEMENT EXECUTE FUNCTION persistq_count_enqueued();
