-- Sample ids and labels that arrive after the predictions.
--
-- A batch may carry sample ids (unique within its model). A multiclass or multilabel batch with
-- ids may leave its labels out: they arrive later by id (POST /v1/models/{model}/labels) and are
-- joined when its jobs run. Its label-dependent jobs wait in `pending_jobs` until the labelled
-- fraction reaches `label_coverage_required` (or they are released on request).

ALTER TABLE batches
    ADD COLUMN has_ids boolean NOT NULL DEFAULT false,
    ADD COLUMN labels_later boolean NOT NULL DEFAULT false,
    ADD COLUMN label_coverage_required double precision
        CHECK (label_coverage_required > 0 AND label_coverage_required <= 1),
    -- Samples of a labels-later batch whose label has arrived.
    ADD COLUMN labelled bigint NOT NULL DEFAULT 0,
    -- The job specs waiting for labels (null once released, or when nothing waits).
    ADD COLUMN pending_jobs jsonb,
    ADD COLUMN released_at timestamptz;

-- One row per sample with an id. `label` is the label in canonical text form against the
-- batch's classes: multiclass the class index ("3"), multilabel the sorted indices of the labels
-- present ("0,4"; "" for none); NULL while it has not arrived.
CREATE TABLE sample_ids (
    model_id    uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    sample_id   text NOT NULL,
    batch_id    uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    idx         integer NOT NULL,
    label       text,
    labelled_at timestamptz,
    PRIMARY KEY (model_id, sample_id)
);
CREATE INDEX sample_ids_batch ON sample_ids (batch_id, idx);
-- Room on each page for the label's arrival to be a heap-only update.
ALTER TABLE sample_ids SET (fillfactor = 80);
