"""The body format is chosen from the service's OpenAPI document (read once per client): Arrow IPC
only where the upload operation lists application/vnd.apache.arrow.stream. Stubs stand in for a
service with and without it, and the bodies are checked as they arrive; the real service's answer
to an Arrow body is checked in test_submit.py and at the end of this file."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pytest

from conftest import classification
from infoaudit import Client
from stub import Canned, Stub, on

UPLOAD = "/v1/models/{model}/versions/{version}/batches"


def openapi(types):
    return {"openapi": "3.1.0", "paths": {UPLOAD: {"post": {"operationId": "upload", "requestBody": {
        "content": {t: {"schema": {}} for t in types}}}}}}


def accepted(model: str):
    return {"batch": {"id": "01890000-0000-7000-8000-0000000000aa", "model": model, "version": "v1",
                      "task": "multiclass", "n": 0, "classes": [], "digest": "", "size_bytes": 0,
                      "content_type": "application/vnd.apache.arrow.stream", "metadata": {},
                      "created_at": "2026-01-01T00:00:00Z"}, "jobs": []}


def test_service_without_arrow_gets_ndjson_and_is_asked_once(api_key: str, model: str) -> None:
    stub = Stub(None)
    try:
        stub.add(Canned(on("GET", "/openapi.json"), status=200, times=None,
                        body=openapi(["application/json", "application/x-ndjson", "text/csv"])))
        stub.add(Canned(on("POST", "/v1/models/"), status=202, times=None, body=accepted(model)))
        with Client(stub.url, api_key) as c:
            assert "application/x-ndjson" in c.upload_media_types()
            for _ in range(2):
                batch = c.submit(model, "v1", labels=[0, 1, 1, 0], predictions=[0, 1, 0, 0])
                assert batch.upload.content_type == "application/x-ndjson"
        assert len(stub.matching("GET", "/openapi.json")) == 1
        assert all(r.headers["content-type"] == "application/x-ndjson"
                   for r in stub.matching("POST", f"/v1/models/{model}/"))
    finally:
        stub.close()


def test_arrow_stream_when_the_service_lists_it(api_key: str, model: str) -> None:
    stub = Stub(None)
    try:
        stub.add(Canned(on("GET", "/openapi.json"), status=200, times=None,
                        body=openapi(["application/json", "application/x-ndjson", "application/vnd.apache.arrow.stream"])))
        stub.add(Canned(on("POST", "/v1/models/"), status=202, times=None, body=accepted(model)))
        y, p = classification(n=70000, k=4, seed=30)  # two record batches
        names = np.array(["a", "b", "c", "d"])
        with Client(stub.url, api_key) as c:
            batch = c.submit(model, "v1", labels=y, probabilities=p.astype(np.float32), weights=np.full(70000, 2.0),
                             ids=[f"s{i}" for i in range(70000)], segments={"region": np.where(y % 2, "eu", "us")},
                             estimators=["shannon_mi"], metadata={"run": 7})
            assert batch.upload.content_type == "application/vnd.apache.arrow.stream"
            named = c.submit(model, "v1", labels=names[y[:10]], predictions=names[y[:10]], classes=list(names))
            assert named.upload.content_type == "application/vnd.apache.arrow.stream"
            ml = c.submit(model, "v1", labels=[[0, 1], [1, 0]], scores=[[0.2, 0.9], [0.8, 0.1]])
            assert ml.upload.content_type == "application/x-ndjson"  # multilabel has no Arrow form
        assert len(stub.matching("GET", "/openapi.json")) == 1
        first, second, third = stub.matching("POST", f"/v1/models/{model}/")
        assert first.headers["content-type"] == "application/vnd.apache.arrow.stream"
        assert "content-encoding" not in first.headers
        query = parse_qs(urlsplit(first.path).query)
        assert query["task"] == ["multiclass"] and query["estimators"] == ['["shannon_mi"]']
        assert query["metadata"] == ['{"run":7}']
        reader = pa.ipc.open_stream(first.body)
        table = reader.read_all()
        assert table.num_rows == 70000 and len(table.to_batches()) >= 2
        assert table.schema.field("label").type == pa.int64()
        assert table.schema.field("probabilities").type == pa.list_(pa.float32(), 4)
        assert table.column("label").to_pylist() == y.tolist()
        got = np.asarray(table.column("probabilities").combine_chunks().flatten()).reshape(-1, 4)
        assert np.array_equal(got, p.astype(np.float32))
        assert table.column("weight").to_pylist()[:3] == [2.0, 2.0, 2.0]
        assert table.column("id").to_pylist()[69999] == "s69999"
        region = table.column("segment_region").combine_chunks()
        assert pa.types.is_dictionary(region.type)
        assert region.to_pylist()[:4] == np.where(y[:4] % 2, "eu", "us").tolist()
        labels = pa.ipc.open_stream(second.body).read_all().column("label").combine_chunks()
        assert pa.types.is_dictionary(labels.type) and labels.to_pylist() == names[y[:10]].tolist()
        assert parse_qs(urlsplit(second.path).query)["classes"] == ["a,b,c,d"]
        assert third.headers["content-type"] == "application/x-ndjson"
    finally:
        stub.close()


def test_forced_format_skips_the_check(api_key: str, stub: Stub, model: str) -> None:
    with Client(stub.url, api_key, upload_format="json") as c:
        batch = c.submit(model, "v1", labels=[0, 1, 1, 0], predictions=[0, 1, 0, 0])
        assert batch.upload.content_type == "application/json" and batch.content_type == "application/json"
    assert stub.matching("GET", "/openapi.json") == []
    with pytest.raises(ValueError):
        Client(stub.url, upload_format="parquet")


def test_real_service_stores_the_arrow_body_exactly(client: Client, service_url: str, api_key: str, model: str) -> None:
    """float32 probabilities, integer labels, weights: read back from the service as the float64
    values of the float32 numbers, and the shannon_mi computed on them equals the NDJSON upload's."""
    y, p = classification(n=5000, k=4, seed=31)
    p32 = p.astype(np.float32)
    w = np.linspace(0.5, 2.0, 5000)
    arrow = client.submit(model, "v1", labels=y, probabilities=p32, weights=w, estimators=["shannon_mi"])
    assert arrow.content_type == "application/vnd.apache.arrow.stream"
    data = client.batch_data(arrow)
    assert np.array_equal(np.array(data["probabilities"]), p32.astype(np.float64))
    assert data["labels"] == y.tolist() and np.array_equal(np.array(data["weights"]), w)
    with Client(service_url, api_key, upload_format="ndjson") as nd:
        text = nd.submit(model, "v2", labels=y, probabilities=p32, weights=w, estimators=["shannon_mi"])
    assert text.content_type == "application/x-ndjson"
    assert text.digest == arrow.digest  # the same stored batch
    assert client.wait(arrow).values["shannon_mi"] == client.wait(text).values["shannon_mi"]
