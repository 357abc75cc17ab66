-- sha256 of a multiclass batch's samples as a comparison sees them: the classes, the label of
-- every sample in order, and the weights. Two batches with the same digest hold the same
-- evaluation samples, so two models' results on them can be compared paired.
ALTER TABLE batches ADD COLUMN labels_digest text;
CREATE INDEX batches_labels_digest ON batches (labels_digest) WHERE labels_digest IS NOT NULL;
