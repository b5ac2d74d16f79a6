-- persistq schema, version 7 (PostgreSQL): the newest failures, as SQLite's 0006 (a partial
-- index of persistq.model.FAILURE_KINDS, the kinds of the query recent_failures).
CREATE INDEX events_failures ON events (id) WHERE kind IN ('failed', 'retried', 'lease_expired');
