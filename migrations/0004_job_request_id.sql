-- The request that enqueued a job, so its logs can be followed into the worker.
ALTER TABLE jobs ADD COLUMN request_id text;
