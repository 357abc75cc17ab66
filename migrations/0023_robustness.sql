-- Default estimators left out of a batch's jobs because their estimated cost was over the
-- per-job budget, with the reason: [{"estimator": "...", "reason": "..."}].
ALTER TABLE batches ADD COLUMN estimators_skipped jsonb NOT NULL DEFAULT '[]';
