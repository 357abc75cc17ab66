-- A release fixes the labels its jobs use: each label gets a number from one sequence when it
-- is stored (under the model's labels lock), and a release records the batch's highest number
-- and its labelled count. Jobs join the labels numbered up to that mark; labels that arrive
-- later are kept (and counted) but do not change the released jobs' inputs.
CREATE SEQUENCE label_seq;
ALTER TABLE sample_ids ADD COLUMN label_seq bigint;
ALTER TABLE batches ADD COLUMN released_label_seq bigint,
                    ADD COLUMN released_labelled bigint;
