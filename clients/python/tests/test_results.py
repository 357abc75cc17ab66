"""Reading results back: wait, gate (stored policy and inline rules, raise_for_verdict), history,
compare, summary."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from conftest import classification
from infoaudit import (
    Batch,
    Client,
    Decision,
    GateFailed,
    GateInconclusive,
    GatePending,
    WaitTimeout,
)
from stub import Canned, Stub, on


def finished(client: Client, model: str, version: str, seed: int, n: int = 3000, skill: float = 2.0) -> Batch:
    y, p = classification(n=n, k=3, seed=seed, skill=skill)
    batch = client.submit(model, version, labels=y, probabilities=p, estimators=["shannon_mi", "semantic_mi"])
    return client.wait(batch, timeout=120)


def test_wait_returns_every_result(client: Client, model: str) -> None:
    batch = finished(client, model, "v1", seed=10)
    assert batch.done
    assert {j["state"] for j in batch.jobs} == {"succeeded"}
    assert sorted(r["estimator"] for r in batch.results) == ["semantic_mi", "shannon_mi"]
    mi = batch.result("shannon_mi")
    assert mi is not None and mi["unit"] == "bits"
    assert mi["ci_low"] <= mi["value"] <= mi["ci_high"]
    assert batch.values["shannon_mi"] == mi["value"]
    # the same batch read in nats
    nats = client.wait(batch.id, unit="nats")
    assert nats.result("shannon_mi")["value"] == pytest.approx(mi["value"] * 0.6931471805599453, rel=1e-9)


def test_wait_times_out_with_the_last_state(api_key: str, stub: Stub) -> None:
    running = {"id": "01890000-0000-7000-8000-000000000001", "model": "m", "version": "v", "task": "multiclass",
               "n": 2, "classes": ["0", "1"], "digest": "", "size_bytes": 0, "content_type": "application/json",
               "metadata": {}, "created_at": "2026-01-01T00:00:00Z", "results": [],
               "jobs": [{"id": "j1", "estimator": "shannon_mi", "state": "running"}]}
    stub.add(Canned(on("GET", "/v1/batches/"), status=200, body=running, times=None))
    with Client(stub.url, api_key) as c:
        with pytest.raises(WaitTimeout) as err:
            c.wait(running["id"], timeout=0.5, poll=0.1)
    assert err.value.batch.jobs[0]["state"] == "running"
    assert len(stub.matching("GET", "/v1/batches/")) >= 2  # it polled


def test_gate_with_stored_policy_and_inline_rules(client: Client, model: str) -> None:
    base = finished(client, model, "v1", seed=11)
    cand = finished(client, model, "v2", seed=12)
    client.set_alias(model, "production", "v1")
    client.put_gate(model, "release", [
        {"metric": "shannon_mi", "op": "gte", "baseline": "production", "max_regression": {"absolute": 0.5}},
        {"metric": "shannon_mi.nmi", "op": "gte", "threshold": 0.05, "severity": "warning"},
    ])
    decision = client.gate(model, "v2", gate="release", wait=30)
    assert isinstance(decision, Decision)
    assert decision.verdict == "pass", decision.explain()
    assert decision.policy == {"name": "release", "version": 1}
    assert [r["metric"] for r in decision.rules] == ["shannon_mi", "shannon_mi.nmi"]
    assert decision.rules[0]["baseline_version"] == "v1"
    assert decision.raise_for_verdict() is decision

    # inline rules: an impossible threshold fails
    failing = client.gate(model, "v2", rules=[{"metric": "shannon_mi", "op": "gte", "threshold": 50.0}], wait=30)
    assert failing.verdict == "fail" and failing.policy is None
    with pytest.raises(GateFailed) as err:
        failing.raise_for_verdict()
    assert err.value.decision.id == failing.id
    assert "shannon_mi" in str(err.value)

    # a threshold inside the interval is inconclusive with use=value
    mi = cand.result("shannon_mi")
    mid = (mi["ci_low"] + mi["ci_high"]) / 2
    unsure = client.gate(model, "v2", rules=[{"metric": "shannon_mi", "op": "gte", "threshold": mid}], wait=30)
    assert unsure.verdict == "inconclusive", unsure.explain()
    with pytest.raises(GateInconclusive):
        unsure.raise_for_verdict()
    assert unsure.raise_for_verdict(allow=("pass", "warn", "inconclusive")) is unsure
    assert base.id != cand.id


def test_gate_needs_exactly_one_of_gate_and_rules(client: Client, model: str) -> None:
    with pytest.raises(ValueError):
        client.gate(model, "v1")
    with pytest.raises(ValueError):
        client.gate(model, "v1", gate="release", rules=[])


def test_pending_verdict_raises() -> None:
    d = Decision(raw={"id": "x", "verdict": "pending", "model": "m", "version": "v", "rules": [
        {"metric": "semantic_mi", "verdict": "pending", "message": "1 job still running"}]})
    with pytest.raises(GatePending) as err:
        d.raise_for_verdict()
    assert "semantic_mi" in str(err.value)
    assert Decision(raw={"verdict": "warn"}).raise_for_verdict().verdict == "warn"


def test_history_frame_and_list(client: Client, model: str) -> None:
    a = finished(client, model, "v1", seed=13, n=500)
    b = finished(client, model, "v2", seed=14, n=500)
    frame = client.history(model, "shannon_mi")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns)[:6] == ["t", "version", "batch_id", "value", "ci_low", "ci_high"]
    assert frame["batch_id"].tolist() == [a.id, b.id]
    assert frame["version"].tolist() == ["v1", "v2"]
    assert str(frame["t"].dt.tz) == "UTC"
    assert frame["value"].tolist() == [a.result("shannon_mi")["value"], b.result("shannon_mi")["value"]]
    # paging is followed: one point per page
    paged = client.history(model, "shannon_mi", page_size=1, as_frame=False)
    assert [p["batch_id"] for p in paged] == [a.id, b.id]
    only_v2 = client.history(model, "shannon_mi.nmi", version="v2", as_frame=False)
    assert [p["batch_id"] for p in only_v2] == [b.id]
    now = datetime.now(timezone.utc)
    buckets = client.history(model, "shannon_mi", buckets=4, start=now - timedelta(hours=1), end=now + timedelta(minutes=1))
    assert list(buckets.columns)[:6] == ["t_start", "t_end", "min", "mean", "max", "count"]
    assert int(buckets["count"].sum()) == 2
    assert client.history(model, "semantic_mi", start=now + timedelta(hours=1)).empty


def test_compare_and_summary(client: Client, model: str) -> None:
    a = finished(client, model, "v1", seed=15, n=1000)
    b = finished(client, model, "v2", seed=15, n=1000, skill=0.3)  # same samples, a worse model
    cmp = client.compare(model, "v1", "v2")
    assert cmp["baseline_version"] == "v1" and cmp["candidate_version"] == "v2"
    by_metric = {m["metric"]: m for m in cmp["metrics"]}
    mi = by_metric["shannon_mi"]
    assert mi["delta"]["method"] == "paired"  # same labels: a paired bootstrap
    assert mi["delta"]["value"] == pytest.approx(b.values["shannon_mi"] - a.values["shannon_mi"])
    assert mi["delta"]["value"] < 0
    summary = client.summary(model, "v2")
    assert summary["unit"] == "bits"
    latest = {m["estimator"]: m["latest"] for m in summary["metrics"]}
    assert latest["shannon_mi"]["batch_id"] == b.id


def test_labels_sent_later_release_the_waiting_estimators(client: Client, model: str) -> None:
    from infoaudit.errors import Conflict

    y, p = classification(n=300, k=3, seed=4)
    ids = np.array([f"r{i}" for i in range(300)])
    batch = client.submit(model, "v1", probabilities=p, ids=ids, estimators=["shannon_mi"])
    assert sorted(j["estimator"] for j in batch.jobs) == ["implied_mi"]
    out = client.labels(model, ids[:150], y[:150])
    assert out["stored"] == 150 and out["batches"][0]["released"] is False
    with pytest.raises(Conflict) as e:
        client.labels(model, ids[:1], (y[:1] + 1) % 3)
    assert "r0" in str(e.value.problem) or "r0" in str(e.value)
    out = client.labels(model, ids[150:], y[150:])
    assert out["batches"][0]["coverage"] == 1.0 and out["batches"][0]["released"] is True
    done = client.wait(batch, timeout=60)
    sh = next(r for r in done.results if r["estimator"] == "shannon_mi")
    assert sh["details"]["label_coverage"] == 1.0
    # The same samples with their labels give the same value.
    twin = client.wait(client.submit(model + "-twin", "v1", labels=y, probabilities=p,
                                     estimators=["shannon_mi"]), timeout=60)
    assert sh["value"] == next(r for r in twin.results if r["estimator"] == "shannon_mi")["value"]
