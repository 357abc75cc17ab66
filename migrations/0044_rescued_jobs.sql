-- Jobs taken back from a dead worker run alone in their worker pool; finding a due one is a
-- look at this small partial index.
CREATE INDEX jobs_rescued_due ON jobs (run_at) WHERE state = 'queued' AND rescues > 0;
