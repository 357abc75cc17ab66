-- Which worker (pool id / slot) ended a job: kept after the lease is cleared, for operators and
-- for the scale-out tests that check every worker process did work.
ALTER TABLE jobs ADD COLUMN ran_by text;
