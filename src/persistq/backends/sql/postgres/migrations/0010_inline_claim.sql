-- persistq schema, version 10 (PostgreSQL): the claim is inline again (queries.sql,
-- claim_jobs), so persistq_pick goes. Its pinned plan now comes from the settings of the
-- connections that claim (backends/postgres.py, CLAIM_SETTINGS): one statement per claim
-- and a plan prepared once per connection, where the function planned its query on each call.
DROP FUNCTION persistq_pick(text, double precision, integer);
