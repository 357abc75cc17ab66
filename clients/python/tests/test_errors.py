"""Typed errors from the real service, and retries through the stub (503/429 with Retry-After,
backoff without it, dropped and refused connections, 409 in flight)."""

from __future__ import annotations

import socket
import time
import uuid
from email.utils import formatdate

import pytest
import requests

from conftest import classification
from infoaudit import (
    Client,
    Conflict,
    Forbidden,
    InfoauditError,
    NotFound,
    ProblemError,
    RateLimited,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationError,
    parse_retry_after,
)
from stub import Canned, Stub, on, problem


def test_validation_error_with_pointers(service_url: str, api_key: str, model: str) -> None:
    with Client(service_url, api_key, upload_format="json") as c:
        with pytest.raises(ValidationError) as err:
            c.submit(model, "v1", labels=[0, 1, 7], probabilities=[[0.5, 0.5], [0.9, 0.3], [0.5, 0.5]])
    e = err.value
    assert isinstance(e, ProblemError) and isinstance(e, InfoauditError)
    assert e.status == 422 and e.title and e.type.endswith("/validation")
    assert set(e.pointers) == {"/labels/2", "/probabilities/1"}
    assert e.problem["errors"] == e.errors
    assert "/probabilities/1" in str(e)


def test_ndjson_errors_name_row_and_column(client: Client, model: str) -> None:
    with pytest.raises(ValidationError) as err:
        client.submit(model, "v1", labels=[0, 1, 7], probabilities=[[0.5, 0.5], [0.9, 0.3], [0.5, 0.5]])
    places = {(e.get("row"), e.get("column")) for e in err.value.errors}
    assert places == {(2, "label"), (1, "probabilities")}
    assert "row 1, column probabilities" in str(err.value)


def test_not_found(client: Client, model: str) -> None:
    with pytest.raises(NotFound) as err:
        client.batch(str(uuid.uuid4()))
    assert err.value.status == 404 and err.value.detail
    with pytest.raises(NotFound):
        client.summary(model, "v1")


def test_unauthorized_and_forbidden(service_url: str, api_key: str, model: str) -> None:
    with Client(service_url, api_key="ia_000000000000_" + "0" * 64) as bad:
        with pytest.raises(Unauthorized) as err:
            bad.submit(model, "v1", labels=[0, 1], predictions=[0, 1])
        assert err.value.status == 401
    with Client(service_url, api_key="") as anonymous:  # "" sends no key at all
        with pytest.raises(Unauthorized):
            anonymous.summary(model, "v1")
    created = requests.post(f"{service_url}/v1/api-keys", json={"name": "reader", "scopes": ["read"]},
                            headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert created.status_code == 201, created.text
    with Client(service_url, api_key=created.json()["key"]) as reader:
        with pytest.raises(Forbidden) as err:
            reader.submit(model, "v1", labels=[0, 1], predictions=[0, 1])
        assert err.value.status == 403


def test_url_and_key_from_environment(monkeypatch: pytest.MonkeyPatch, service_url: str, api_key: str, model: str) -> None:
    monkeypatch.setenv("INFOAUDIT_URL", service_url)
    monkeypatch.setenv("INFOAUDIT_API_KEY", api_key)
    with Client() as c:
        assert c.url == service_url
        batch = c.submit(model, "v1", labels=[0, 1, 1], predictions=[0, 1, 0])
        assert c.batch(batch.id).id == batch.id


def test_retry_after_on_503_resends_the_same_upload(api_key: str, stub: Stub, model: str) -> None:
    stub.add(Canned(on("POST", "/v1/models/"), status=503, headers={"Retry-After": "1"},
                    body=problem(503, "Service unavailable", "queue full")))
    y, p = classification(n=2000, seed=20)
    with Client(stub.url, api_key) as c:
        t0 = time.monotonic()
        batch = c.submit(model, "v1", labels=y, probabilities=p)
        elapsed = time.monotonic() - t0
    first, second = stub.matching("POST", f"/v1/models/{model}/")
    assert first.canned and not second.canned and second.status == 202
    assert second.at - first.at >= 0.95 and elapsed >= 0.95
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == batch.upload.idempotency_key
    assert first.body == second.body  # the same bytes: the service's fingerprint matches
    assert batch.upload.attempts == 2


def test_retry_after_http_date_on_429(api_key: str, stub: Stub, model: str) -> None:
    # The date has one-second resolution: two seconds ahead is at least one second away, whatever
    # the fraction of the current second (one second ahead could be 0.1 s away).
    when = formatdate(time.time() + 2, usegmt=True)
    stub.add(Canned(on("GET", "/v1/estimators"), status=429, headers={"Retry-After": when},
                    body=problem(429, "Too many requests", "slow down")))
    with Client(stub.url, api_key) as c:
        t0 = time.monotonic()
        catalog = c.estimators()
        assert time.monotonic() - t0 >= 0.5
    assert any(e["id"] == "shannon_mi" for e in catalog)
    assert [r.status for r in stub.matching("GET", "/v1/estimators")] == [429, 200]


def test_backoff_without_retry_after_then_success(api_key: str, stub: Stub) -> None:
    stub.add(Canned(on("GET", "/v1/estimators"), status=503, times=2, body=problem(503, "Service unavailable", "db down")))
    with Client(stub.url, api_key, backoff=0.05) as c:
        assert c.estimators()
    assert [r.status for r in stub.matching("GET", "/v1/estimators")] == [503, 503, 200]


def test_retries_are_bounded(api_key: str, stub: Stub) -> None:
    stub.add(Canned(on("GET", "/v1/estimators"), status=503, times=None, headers={"Retry-After": "0"},
                    body=problem(503, "Service unavailable", "the database is unreachable")))
    with Client(stub.url, api_key, retries=2) as c:
        with pytest.raises(Unavailable) as err:
            c.estimators()
    assert err.value.status == 503 and err.value.detail == "the database is unreachable"
    assert err.value.retry_after == 0
    assert len(stub.matching("GET", "/v1/estimators")) == 3


def test_retry_after_beyond_the_limit_is_not_waited(api_key: str, stub: Stub) -> None:
    stub.add(Canned(on("GET", "/v1/estimators"), status=429, times=None, headers={"Retry-After": "3600"},
                    body=problem(429, "Too many requests", "rate limit")))
    with Client(stub.url, api_key, max_retry_wait=5) as c:
        t0 = time.monotonic()
        with pytest.raises(RateLimited) as err:
            c.estimators()
        assert time.monotonic() - t0 < 2
    assert err.value.retry_after == 3600 and isinstance(err.value, Unavailable)
    assert len(stub.matching("GET", "/v1/estimators")) == 1


def test_dropped_connection_is_retried(api_key: str, stub: Stub, model: str) -> None:
    stub.add(Canned(on("POST", "/v1/models/"), drop=True))
    with Client(stub.url, api_key, backoff=0.05) as c:
        batch = c.submit(model, "v1", labels=[0, 1, 1, 0], predictions=[0, 1, 0, 0])
    assert batch.upload.attempts == 2
    assert len(stub.matching("POST", f"/v1/models/{model}/")) == 2


def test_conflict_in_flight_is_retried_for_uploads(api_key: str, stub: Stub, model: str) -> None:
    stub.add(Canned(on("POST", "/v1/models/"), status=409, body=problem(409, "Conflict", "in flight")))
    with Client(stub.url, api_key, backoff=0.05) as c:
        batch = c.submit(model, "v1", labels=[0, 1, 1, 0], predictions=[0, 1, 0, 0])
        assert batch.upload.attempts == 2
        stub.add(Canned(on("POST", "/v1/models/"), status=409, times=None, body=problem(409, "Conflict", "in flight")))
        with pytest.raises(Conflict):
            c.submit(model, "v1", labels=[0, 1, 1, 0], predictions=[0, 1, 0, 0], idempotency_key=False)


def test_client_errors_are_not_retried(api_key: str, stub: Stub, model: str) -> None:
    with Client(stub.url, api_key, backoff=0.05) as c:
        with pytest.raises(ValidationError):
            c.submit(model, "v1", labels=[0, 1, 2], predictions=[0, 1, 1], classes=["a", "b"])
    assert len(stub.matching("POST", f"/v1/models/{model}/")) == 1


def test_refused_connection_ends_in_transport_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.01) as c:
        with pytest.raises(TransportError):
            c.estimators()


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after(formatdate(1000.0, usegmt=True), now=990.0) == pytest.approx(10.0)
    assert parse_retry_after(formatdate(1000.0, usegmt=True), now=2000.0) == 0.0
