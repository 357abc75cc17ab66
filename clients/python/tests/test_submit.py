"""Uploads: inputs (lists, numpy, pandas), task inference, encodings actually sent, the JSON
fallback, extra fields, idempotency. Every check reads back what the service stored."""

from __future__ import annotations

import gzip
import json
import uuid

import numpy as np
import pandas as pd
import pytest
import zstandard

from conftest import classification
from infoaudit import Client, ValidationError
from stub import Stub


def rows(body: bytes):
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def test_submit_lists_with_class_names(client: Client, model: str) -> None:
    labels = ["cat", "dog", "bird", "cat", "dog", "bird", "cat", "cat"]
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1],
             [0.3, 0.5, 0.2], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25], [0.9, 0.05, 0.05]]
    batch = client.submit(model, "v1", labels=labels, probabilities=probs,
                          classes=["cat", "dog", "bird"], metadata={"kpis": {"conversion": 0.031}},
                          estimators=["shannon_mi", {"id": "semantic_mi"}])
    # pyarrow is installed here and the service lists the Arrow media type: the body is Arrow.
    assert batch.upload is not None and batch.upload.content_type == "application/vnd.apache.arrow.stream"
    assert batch.content_type == "application/vnd.apache.arrow.stream"
    assert batch.task == "multiclass" and batch.n == 8
    assert sorted(j["estimator"] for j in batch.jobs) == ["semantic_mi", "shannon_mi"]
    data = client.batch_data(batch)
    assert data["classes"] == ["cat", "dog", "bird"]
    assert data["labels"] == labels  # names stay names
    assert data["probabilities"] == probs
    assert data["metadata"] == {"kpis": {"conversion": 0.031}}


def test_submit_string_labels_infer_sorted_classes(client: Client, model: str) -> None:
    labels = ["no", "yes", "yes", "no", "yes"]
    preds = ["no", "yes", "no", "no", "yes"]
    batch = client.submit(model, "v1", labels=labels, predictions=preds)
    assert batch.classes == ["no", "yes"]
    data = client.batch_data(batch)
    assert data["labels"] == labels and data["predictions"] == preds


def test_submit_numpy_float32_and_integer_classes(client: Client, model: str) -> None:
    # scikit-learn style: classes_ are the label values 3, 5, 7 (not positions).
    y, p = classification(n=300, k=3, seed=1)
    values = np.array([3, 5, 7])[y]
    batch = client.submit(model, "v1", labels=values, probabilities=p.astype(np.float32),
                          classes=np.array([3, 5, 7]), weights=np.linspace(0.5, 1.5, 300))
    assert batch.classes == ["3", "5", "7"]
    data = client.batch_data(batch)
    assert data["labels"] == [str(v) for v in values.tolist()]
    # float32 values travel exactly (as the float64 numbers they are)
    assert np.array_equal(np.array(data["probabilities"], dtype=np.float64), p.astype(np.float32).astype(np.float64))
    assert np.allclose(data["weights"], np.linspace(0.5, 1.5, 300), rtol=0, atol=0)


def test_submit_pandas_frame_names_the_classes(client: Client, model: str) -> None:
    y, p = classification(n=200, k=3, seed=2)
    names = np.array(["low", "mid", "high"])
    frame = pd.DataFrame(p, columns=names)
    labels = pd.Series(pd.Categorical(names[y], categories=names))
    batch = client.submit(model, "v1", labels=labels, probabilities=frame,
                          weights=pd.Series(np.ones(200)))
    assert batch.classes == ["low", "mid", "high"]
    data = client.batch_data(batch)
    assert data["labels"] == names[y].tolist()
    assert np.array_equal(np.array(data["probabilities"]), p)
    assert data["weights"] == [1.0] * 200


def test_submit_categorical_labels_keep_category_order(client: Client, model: str) -> None:
    cats = ["z", "a", "m"]
    labels = pd.Series(pd.Categorical(["a", "z", "m", "a", "z"], categories=cats))
    batch = client.submit(model, "v1", labels=labels, predictions=labels)
    assert batch.classes == cats


def test_task_inference_pairs_regression_multilabel(client: Client, model: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 2))
    y = x + 0.5 * rng.normal(size=(120, 2))
    pairs = client.submit(model, "pairs", x=x, y=y, estimators=["ksg"])
    assert pairs.task == "pairs"
    t = rng.normal(size=80)
    reg = client.submit(model, "reg", targets=t, predictions=t + 0.1 * rng.normal(size=80), estimators=["ksg"])
    assert reg.task == "regression"
    ml_labels = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    ml = client.submit(model, "ml", labels=ml_labels, scores=[[0.9, 0.2, 0.7], [0.1, 0.8, 0.3], [0.7, 0.6, 0.2], [0.2, 0.1, 0.9]],
                       classes=["a", "b", "c"])
    assert ml.task == "multilabel"
    data = client.batch_data(ml)
    assert data["labels"] == ml_labels
    named = client.submit(model, "ml2", labels=[["a", "c"], ["b"], ["a", "b"], ["c"]],
                          predictions=[["a"], ["b"], ["a", "b"], ["c"]])
    assert named.task == "multilabel" and named.classes == ["a", "b", "c"]
    assert np.allclose(client.batch_data(pairs)["x"], x, rtol=0, atol=0)


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_encodings_actually_sent(service_url: str, api_key: str, stub: Stub, model: str, compression) -> None:
    y, p = classification(n=40000, k=4, seed=4)  # several NDJSON chunks
    with Client(stub.url, api_key, compression=compression, upload_format="ndjson") as c:
        batch = c.submit(model, "v1", labels=y, probabilities=p, estimators=["shannon_mi"])
        assert batch.upload is not None and batch.upload.content_encoding == compression
        [req] = stub.matching("POST", f"/v1/models/{model}/")
        assert req.headers["content-type"] == "application/x-ndjson"
        assert req.headers.get("content-encoding") == compression
        assert req.headers["transfer-encoding"] == "chunked"  # streamed, not built whole
        if compression == "gzip":
            text = gzip.decompress(req.body)
        elif compression == "zstd":
            text = zstandard.ZstdDecompressor().decompressobj().decompress(req.body)
        else:
            text = req.body
        assert len(req.body) == batch.upload.wire_bytes
        if compression:
            assert len(req.body) < len(text) / 2
        lines = rows(text)
        assert len(lines) == 40000 and lines[0] == {"label": int(y[0]), "probabilities": p[0].tolist()}
    with Client(service_url, api_key) as direct:
        data = direct.batch_data(batch)
        assert batch.content_type == "application/x-ndjson"
    assert data["labels"] == y.tolist()
    assert np.array_equal(np.array(data["probabilities"]), p)


def test_truth_matrix_goes_as_json(client: Client, model: str) -> None:
    tm = [[1.0, 0.3], [0.2, 1.0]]
    batch = client.submit(model, "v1", labels=[0, 1, 1, 0], predictions=[0, 1, 0, 0], truth_matrix=tm)
    assert batch.upload is not None and batch.upload.content_type == "application/json"
    assert batch.upload.content_encoding in ("zstd", "gzip")
    assert batch.content_type == "application/json"
    assert client.batch_data(batch)["truth_matrix"] == tm


def test_extra_fields_pass_through(api_key: str, stub: Stub, model: str) -> None:
    """ids/segments keep their per-row form in NDJSON; other fields force columnar JSON. The
    service of today refuses fields it does not know; the test checks what was sent."""
    with Client(stub.url, api_key, compression=None, upload_format="ndjson") as c:
        try:
            c.submit(model, "v1", labels=[0, 1, 1], predictions=[0, 1, 0], ids=["a", "b", "c"],
                     segments={"region": ["eu", "us", "eu"]})
        except ValidationError:
            pass
        req = stub.matching("POST", f"/v1/models/{model}/")[-1]
        assert req.headers["content-type"] == "application/x-ndjson"
        assert rows(req.body)[1] == {"label": 1, "prediction": 1, "id": "b", "segments": {"region": "us"}}
        try:
            c.submit(model, "v1", labels=[0, 1, 1], predictions=[0, 1, 0], sample_source=["x", "y", "z"])
        except ValidationError as e:
            assert "sample_source" in str(e)
        req = stub.matching("POST", f"/v1/models/{model}/")[-1]
        assert req.headers["content-type"] == "application/json"
        assert json.loads(req.body)["sample_source"] == ["x", "y", "z"]


def test_idempotency_key(client: Client, model: str) -> None:
    y, p = classification(n=100, seed=5)
    key = f"test-{uuid.uuid4()}"
    first = client.submit(model, "v1", labels=y, probabilities=p, idempotency_key=key)
    again = client.submit(model, "v1", labels=y, probabilities=p, idempotency_key=key)
    assert again.id == first.id
    assert first.upload is not None and first.upload.idempotency_key == key
    with pytest.raises(ValidationError) as err:
        client.submit(model, "v1", labels=y[::-1].copy(), probabilities=p[::-1].copy(), idempotency_key=key)
    assert err.value.status == 422
    # Without a key given, every call sends a fresh one: two uploads, two batches.
    a = client.submit(model, "v1", labels=y, probabilities=p)
    b = client.submit(model, "v1", labels=y, probabilities=p)
    assert a.id != b.id and a.upload.idempotency_key != b.upload.idempotency_key
    assert a.digest == b.digest == first.digest


def test_no_idempotency_key_when_disabled(api_key: str, stub: Stub, model: str) -> None:
    with Client(stub.url, api_key) as c:
        c.submit(model, "v1", labels=[0, 1, 1, 0], predictions=[0, 1, 0, 0], idempotency_key=False)
    [req] = stub.matching("POST", f"/v1/models/{model}/")
    assert "idempotency-key" not in req.headers


def test_nan_is_refused_before_sending(client: Client, model: str) -> None:
    p = np.full((3, 2), 0.5)
    p[1, 0] = np.nan
    with pytest.raises(ValueError, match="probabilities/1/0"):
        client.submit(model, "v1", labels=[0, 1, 0], probabilities=p)
