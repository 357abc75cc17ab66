"""HTTP with retries: 503 and 429 (honouring ``Retry-After``), connection errors, and (for uploads)
409 while an earlier attempt with the same Idempotency-Key is still in flight. Other answers of
400 and above become typed :mod:`errors <infoaudit.errors>`."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

import requests

from .errors import ProblemError, TransportError, problem_class

Body = Union[bytes, Iterable[bytes], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    ``attempts``: tries in all (1 = no retry). Without ``Retry-After`` the wait before try ``i + 1``
    is drawn uniformly from ``[0, min(max_backoff, backoff * 2**(i-1))]`` ("full jitter").
    A ``Retry-After`` is honoured up to ``max_retry_after`` seconds; a longer one ends the retries.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    statuses: Tuple[int, ...] = (429, 503)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _problem(resp: requests.Response) -> Dict[str, Any]:
    ctype = resp.headers.get("content-type", "")
    if "json" in ctype:
        try:
            doc = resp.json()
            if isinstance(doc, dict):
                return doc
        except ValueError:
            pass
    text = resp.text[:1000] if resp.content else ""
    return {"status": resp.status_code, "title": resp.reason or f"HTTP {resp.status_code}", "detail": text or None}


class Transport:
    """A ``requests.Session`` with the base URL, auth, timeouts and the retry policy."""

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str],
        timeout: float,
        retry: RetryPolicy,
        session: Optional[requests.Session] = None,
        user_agent: str = "infoaudit-python",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self.session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self.headers: Dict[str, str] = {"User-Agent": user_agent, "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._sleep = sleep
        self._random = random.Random()

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry.max_backoff, self.retry.backoff * (2 ** (attempt - 1)))
        return self._random.uniform(0, cap)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        body: Optional[Callable[[], Body]] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        idempotent: bool = True,
        retry_conflict: bool = False,
        stream: bool = False,
    ) -> Tuple[requests.Response, int]:
        """Send, retrying as the policy says; returns the successful response and the attempts made.

        ``body`` is a factory so that every attempt sends the body afresh (a generator is consumed
        by a try). ``idempotent=False`` does not retry a read timeout (the request may have been
        processed); refused or reset connections and 503/429 answers are retried always.
        """
        url = self.base_url + path
        hdrs = dict(self.headers)
        if headers:
            hdrs.update(headers)
        to = self.timeout if timeout is None else timeout
        statuses = set(self.retry.statuses) | ({409} if retry_conflict else set())
        attempts = max(1, self.retry.attempts)
        for attempt in range(1, attempts + 1):
            data = body() if body is not None else None
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json_body if body is None else None,
                    data=data,
                    headers=hdrs,
                    timeout=(min(to, 30.0), to),
                    stream=stream,
                )
            except requests.exceptions.ReadTimeout as e:
                if not idempotent or attempt == attempts:
                    raise TransportError(f"{method} {url}: no answer within {to} s ({e})") from e
                self._sleep(self._backoff(attempt))
                continue
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                if attempt == attempts:
                    raise TransportError(f"{method} {url}: {e}") from e
                self._sleep(self._backoff(attempt))
                continue
            if resp.status_code < 400:
                return resp, attempt
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if resp.status_code in statuses and attempt < attempts:
                wait = retry_after if retry_after is not None else self._backoff(attempt)
                if wait <= self.retry.max_retry_after:
                    resp.close()
                    self._sleep(wait)
                    continue
            raise problem_class(resp.status_code)(
                resp.status_code, _problem(resp), method=method, url=url, retry_after=retry_after
            )
        raise AssertionError("unreachable")  # pragma: no cover
