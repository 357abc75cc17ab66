"""Fixtures: the real service started by run_tests.sh (INFOAUDIT_URL, INFOAUDIT_API_KEY), a client,
a fresh model name per test, and a recording stub in front of the service."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Iterator

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from infoaudit import Client  # noqa: E402
from stub import Stub  # noqa: E402


@pytest.fixture(scope="session")
def service_url() -> str:
    url = os.environ.get("INFOAUDIT_URL")
    if not url:
        pytest.fail("INFOAUDIT_URL is not set: run the tests through clients/python/run_tests.sh")
    return url


@pytest.fixture(scope="session")
def api_key() -> str:
    key = os.environ.get("INFOAUDIT_API_KEY")
    if not key:
        pytest.fail("INFOAUDIT_API_KEY is not set: run the tests through clients/python/run_tests.sh")
    return key


@pytest.fixture
def client(service_url: str, api_key: str) -> Iterator[Client]:
    with Client(service_url, api_key) as c:
        yield c


@pytest.fixture
def model() -> str:
    return f"py-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def stub(service_url: str) -> Iterator[Stub]:
    s = Stub(service_url)
    yield s
    s.close()


def classification(n: int = 600, k: int = 3, seed: int = 0, skill: float = 2.0):
    """Labels and calibrated-ish probabilities of a model that is right most of the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += skill
    p /= p.sum(axis=1, keepdims=True)
    return y, p
