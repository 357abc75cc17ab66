-- Registering a batch's sample ids spent about half its time in the two foreign-key checks that
-- PostgreSQL runs for every inserted row (a lookup and a share lock on the model and on the
-- batch, 2 x 10^6 of them for 10^6 ids), although the ids are always inserted in the transaction
-- that inserts their batch, of that batch's model. The checks go; the two places that delete
-- batches (DELETE /v1/batches/{id} and retention) delete the batch's ids themselves, in the
-- same transaction, and no path deletes a model.
ALTER TABLE sample_ids DROP CONSTRAINT IF EXISTS sample_ids_model_id_fkey;
ALTER TABLE sample_ids DROP CONSTRAINT IF EXISTS sample_ids_batch_id_fkey;

-- A label's arrival rewrites its row. At fillfactor 80 a page had room for about a fifth of its
-- rows' new versions, so four labels in five were non-HOT updates with two index insertions
-- each: 10^6 labels in one request took ~10 s, ~3 s when every update is heap-only. Pages are
-- now written half full (rows inserted before this migration keep their pages). The cost: a
-- batch whose ids came with their labels, never updated, takes about twice the heap pages.
ALTER TABLE sample_ids SET (fillfactor = 45);
