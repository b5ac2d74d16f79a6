-- persistq schema, version 6 (SQLite): the newest failures are found however many other
-- events there are. A partial index: only failure events pay for it when written. Its kinds
-- are persistq.model.FAILURE_KINDS, as in the query recent_failures (tests/test_sql.py
-- checks both).
CREATE INDEX events_failures ON events (id) WHERE kind IN ('failed', 'retried', 'lease_expired');
