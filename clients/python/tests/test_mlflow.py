"""The MLflow bridge against a real MLflow tracking store (SQLite in a temporary folder)."""

from __future__ import annotations

import logging

# Imported, not skipped when missing: run_tests.sh installs MLflow, and a test that silently
# skips would let the bridge break unseen.
import mlflow
import pytest

from conftest import classification  # noqa: E402
from infoaudit import Batch, Client, InfoauditError  # noqa: E402
from infoaudit.mlflow import log_batch_results  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory):
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_log_batch_results_to_a_run(client: Client, model: str, tracking_uri: str) -> None:
    y, p = classification(n=1500, seed=40)
    batch = client.submit(model, "v1", labels=y, probabilities=p,
                          estimators=["shannon_mi", "semantic_mi", "rg_curve"])
    batch = client.wait(batch, timeout=120)
    ml = MlflowClient(tracking_uri=tracking_uri)
    run = ml.create_run(ml.create_experiment(f"exp-{model}"))
    logged = log_batch_results(batch, run_id=run.info.run_id, client=ml)

    data = ml.get_run(run.info.run_id).data
    mi = batch.result("shannon_mi")
    assert data.metrics["infoaudit.shannon_mi"] == pytest.approx(mi["value"])
    assert data.metrics["infoaudit.shannon_mi.ci_low"] == pytest.approx(mi["ci_low"])
    assert data.metrics["infoaudit.shannon_mi.ci_high"] == pytest.approx(mi["ci_high"])
    assert data.metrics["infoaudit.shannon_mi.nmi"] == pytest.approx(mi["details"]["nmi"])
    assert data.metrics["infoaudit.semantic_mi"] == pytest.approx(batch.result("semantic_mi")["value"])
    assert "infoaudit.rg_curve" in data.metrics and "infoaudit.rg_curve.ci_low" not in data.metrics  # no interval
    assert data.tags["infoaudit.batch_id"] == batch.id
    assert data.tags["infoaudit.model"] == model and data.tags["infoaudit.unit"] == "bits"
    for k, v in mi["params"].items():
        assert data.params[f"infoaudit.shannon_mi.{k}"] == (v if isinstance(v, str) else logged["params"][f"infoaudit.shannon_mi.{k}"])
    assert data.params["infoaudit.shannon_mi.estimator_version"] == mi["estimator_version"]
    assert set(logged["metrics"]) == set(data.metrics)
    # logging the same batch again is harmless (params unchanged)
    log_batch_results(batch, run_id=run.info.run_id, client=ml)


def test_active_run_and_unfinished_batches(client: Client, model: str, tracking_uri: str) -> None:
    y, p = classification(n=300, seed=41)
    batch = client.wait(client.submit(model, "v1", labels=y, probabilities=p, estimators=["shannon_mi"]), timeout=120)
    with mlflow.start_run() as run:
        log_batch_results(batch)
    got = MlflowClient(tracking_uri=tracking_uri).get_run(run.info.run_id).data
    assert got.metrics["infoaudit.shannon_mi"] == pytest.approx(batch.values["shannon_mi"])
    with pytest.raises(ValueError):
        log_batch_results(batch)  # no active run, no run_id
    queued = Batch(raw=dict(batch.raw, jobs=[dict(batch.jobs[0], state="queued")]))
    with pytest.raises(InfoauditError, match="not finished"):
        log_batch_results(queued, run_id=run.info.run_id)
