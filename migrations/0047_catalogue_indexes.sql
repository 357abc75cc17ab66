-- A catalogue at scale (10^3 models x 10^2 versions x 10 batches): a model's batch count and last
-- upload are read from one range of a per-model index (the partial index of 0024 leaves purged
-- batches out, so it cannot count them), and a model's versions are listed in creation order
-- from an index instead of sorting every version of the model.
CREATE INDEX batches_model_created_all ON batches (model_id, created_at);
CREATE INDEX model_versions_model_created ON model_versions (model_id, created_at, id);
-- An incident's messages (the incidents pages count and list them per incident).
CREATE INDEX webhook_deliveries_incident ON webhook_deliveries (incident_id) WHERE incident_id IS NOT NULL;
