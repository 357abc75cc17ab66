"""The :class:`Client`."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Union
from urllib.parse import quote

import requests

from . import _encode
from ._http import RetryPolicy, Transport
from .errors import InfoauditError, WaitTimeout
from .models import Batch, Decision, UploadInfo

__all__ = ["Client", "DEFAULT_URL"]

#: Where the service listens by default (``infoaudit serve``).
DEFAULT_URL = "http://127.0.0.1:8080"
UPLOAD_PATH = "/v1/models/{model}/versions/{version}/batches"

#: The wait_seconds the service accepts on a gate evaluation.
MAX_SERVER_WAIT = 600.0

BatchLike = Union[Batch, str, Mapping[str, Any]]


def _seg(name: str) -> str:
    return quote(str(name), safe="")


def _batch_id(batch: BatchLike) -> str:
    if isinstance(batch, Batch):
        return batch.id
    if isinstance(batch, Mapping):
        inner = batch.get("batch")
        return str(inner["id"] if isinstance(inner, Mapping) else batch["id"])
    return str(batch)


def _time_param(t: Union[str, datetime, None]) -> Optional[str]:
    if t is None:
        return None
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("give timezone-aware datetimes (e.g. datetime.now(timezone.utc))")
        return t.isoformat()
    return str(t)


class Client:
    """A client of one infoaudit service.

    ``url`` defaults to ``$INFOAUDIT_URL``, then ``http://127.0.0.1:8080``; ``api_key`` to
    ``$INFOAUDIT_API_KEY`` (sent as ``Authorization: Bearer``). ``timeout`` is the read timeout of
    one request in seconds. Failed requests are retried (``retries`` more tries) on 503 and 429,
    honouring ``Retry-After``, and on refused or reset connections, with exponential backoff and
    jitter otherwise.

    ``compression``: ``"auto"`` (zstd when the ``zstandard`` module is importable, else gzip),
    ``"zstd"``, ``"gzip"`` or ``None``. ``upload_format``: ``"auto"`` (Arrow IPC when pyarrow is
    importable *and* the service's OpenAPI document lists ``application/vnd.apache.arrow.stream``
    for the upload operation — checked once per client — else NDJSON, else columnar JSON for what
    NDJSON cannot carry), or ``"ndjson"``, ``"json"``, ``"arrow"`` to force one.

    The client holds a connection pool; use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_retry_wait: float = 120.0,
        compression: Optional[str] = "auto",
        upload_format: str = "auto",
        session: Optional[requests.Session] = None,
    ) -> None:
        base = url or os.environ.get("INFOAUDIT_URL") or DEFAULT_URL
        key = api_key if api_key is not None else os.environ.get("INFOAUDIT_API_KEY") or None
        if upload_format not in ("auto", "ndjson", "json", "arrow"):
            raise ValueError("upload_format must be 'auto', 'ndjson', 'json' or 'arrow'")
        self.url = base.rstrip("/")
        self.timeout = float(timeout)
        self.coding = _encode.choose_coding(compression)
        self.upload_format = upload_format
        self._http = Transport(
            self.url,
            key,
            self.timeout,
            RetryPolicy(attempts=retries + 1, backoff=backoff, max_retry_after=max_retry_wait),
            session=session,
        )
        self._upload_types: Optional[FrozenSet[str]] = None

    # -- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def _get(self, path: str, params: Optional[Mapping[str, Any]] = None, **kw: Any) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        resp, _ = self._http.request("GET", path, params=clean, **kw)
        return resp.json()

    def _send(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        resp, _ = self._http.request(method, path, json_body=body, **kw)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def upload_media_types(self, refresh: bool = False) -> FrozenSet[str]:
        """The request media types the service's OpenAPI document lists for the upload operation
        (fetched once per client; an unreachable or odd document counts as none)."""
        if self._upload_types is not None and not refresh:
            return self._upload_types
        types: FrozenSet[str] = frozenset()
        try:
            doc = self._get("/openapi.json")
            op = doc["paths"][UPLOAD_PATH]["post"]
            types = frozenset(op["requestBody"]["content"].keys())
        except (InfoauditError, KeyError, TypeError, ValueError):
            types = frozenset()
        self._upload_types = types
        return types

    def _arrow_usable(self) -> bool:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return False
        return _encode.ARROW_MEDIA_TYPE in self.upload_media_types()

    # -- uploads -----------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        version: str,
        *,
        labels: Any = None,
        probabilities: Any = None,
        predictions: Any = None,
        scores: Any = None,
        x: Any = None,
        y: Any = None,
        targets: Any = None,
        weights: Any = None,
        classes: Optional[Sequence[Any]] = None,
        estimators: Optional[Sequence[Union[str, Mapping[str, Any]]]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        task: Optional[str] = None,
        truth_matrix: Any = None,
        idempotency_key: Union[str, bool, None] = None,
        **extra_columns: Any,
    ) -> Batch:
        """Upload an evaluation batch; returns the stored :class:`Batch` with its queued jobs.

        Columns take lists, numpy arrays, pandas Series or DataFrames (a DataFrame of
        probabilities or scores names the classes by its columns when ``classes`` is not given).
        ``labels`` is required for multiclass and multilabel tasks; pairs need ``x`` and ``y``,
        regression ``targets`` and ``predictions``.

        ``task`` is inferred when not given: ``y`` (or ``x`` without labels) → pairs, ``targets``
        → regression, ``scores`` or 2-D labels → multilabel, else multiclass.

        Classes: given as non-strings (e.g. scikit-learn's integer ``classes_``), they are sent as
        names (``str``) and so are the labels and predictions, which are then read as class
        *values*, not positions. Not given and the labels are strings: the sorted distinct names
        (scikit-learn's order). Otherwise integer labels are positions (the service's default
        classes ``"0".."K-1"``).

        ``idempotency_key``: a string to send, ``None`` for a fresh uuid4 (the same on every retry
        of this call), ``False`` to send none. Extra keyword arguments are sent as extra fields:
        ``ids`` (per row ``id``) and ``segments`` (``{key: [value per sample]}``) travel in every
        format; any other field makes the body columnar JSON.
        """
        prepared = _encode.prepare(
            labels=labels,
            probabilities=probabilities,
            predictions=predictions,
            scores=scores,
            x=x,
            y=y,
            targets=targets,
            weights=weights,
            classes=classes,
            truth_matrix=truth_matrix,
            estimators=estimators,
            metadata=metadata,
            task=task,
            extra=extra_columns,
        )
        fmt = self._choose_format(prepared)
        coding = self.coding
        chunks: Callable[[], Iterator[bytes]]
        if fmt == "arrow":
            content_type, params, chunks = _encode.ARROW_MEDIA_TYPE, prepared.query(), prepared.arrow_chunks
            coding = None  # binary columns; the stream is not worth compressing again
        elif fmt == "ndjson":
            content_type, params, chunks = _encode.NDJSON_MEDIA_TYPE, prepared.query(), prepared.ndjson_chunks
        else:
            content_type, params, chunks = _encode.JSON_MEDIA_TYPE, {}, prepared.json_chunks

        if idempotency_key is False:
            key: Optional[str] = None
        elif idempotency_key is None or idempotency_key is True:
            key = str(uuid.uuid4())
        else:
            key = str(idempotency_key)
        headers = {"Content-Type": content_type}
        if coding:
            headers["Content-Encoding"] = coding
        if key:
            headers["Idempotency-Key"] = key

        sent = [0]

        def body() -> Iterator[bytes]:
            sent[0] = 0
            for piece in _encode.compressed(chunks, coding):
                sent[0] += len(piece)
                yield piece

        path = UPLOAD_PATH.format(model=_seg(model), version=_seg(version))
        resp, attempts = self._http.request(
            "POST",
            path,
            params=params,
            body=body,
            headers=headers,
            idempotent=key is not None,
            retry_conflict=key is not None,
        )
        info = UploadInfo(
            content_type=content_type,
            content_encoding=coding,
            wire_bytes=sent[0],
            idempotency_key=key,
            attempts=attempts,
        )
        return Batch.from_accepted(resp.json(), upload=info)

    def _choose_format(self, p: "_encode.Prepared") -> str:
        if self.upload_format == "json" or p.json_reasons():
            return "json"
        if self.upload_format == "arrow":
            if p.task == "multilabel":
                raise ValueError("multilabel batches have no Arrow form; use NDJSON or JSON")
            return "arrow"
        if self.upload_format == "auto" and p.arrow_ok() and self._arrow_usable():
            return "arrow"
        return "ndjson"

    # -- batches -----------------------------------------------------------------------------

    def batch(self, batch: BatchLike, unit: Optional[str] = None) -> Batch:
        """The batch with its jobs and results (``GET /v1/batches/{id}``)."""
        doc = self._get(f"/v1/batches/{_seg(_batch_id(batch))}", {"unit": unit})
        upload = batch.upload if isinstance(batch, Batch) else None
        return Batch(raw=doc, upload=upload)

    def batch_data(self, batch: BatchLike) -> Dict[str, Any]:
        """The stored samples in the columnar JSON form (``GET /v1/batches/{id}/data``)."""
        return dict(self._get(f"/v1/batches/{_seg(_batch_id(batch))}/data"))

    def wait(
        self,
        batch: BatchLike,
        timeout: float = 600.0,
        *,
        poll: float = 0.2,
        max_poll: float = 2.0,
        unit: Optional[str] = None,
    ) -> Batch:
        """Poll ``GET /v1/batches/{id}`` until every job has ended (succeeded, failed or cancelled);
        returns the batch with its results. Raises :class:`WaitTimeout` (carrying the last state)
        after ``timeout`` seconds. Failed jobs are not an error here: see ``Batch.failed_jobs``."""
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            current = self.batch(batch, unit=unit)
            if current.done:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"batch {current.id}: jobs still unfinished after {timeout} s "
                    f"({[j.get('estimator') for j in current.jobs if j.get('state') not in ('succeeded', 'failed', 'cancelled')]})",
                    current,
                )
            time.sleep(min(delay, left))
            delay = min(max_poll, delay * 1.5)

    # -- gates -------------------------------------------------------------------------------

    def gate(
        self,
        model: str,
        version: str,
        gate: Optional[str] = None,
        rules: Optional[Sequence[Mapping[str, Any]]] = None,
        wait: float = 120.0,
        *,
        unit: Optional[str] = None,
    ) -> Decision:
        """Evaluate a stored policy (``gate=``) or inline ``rules=`` on a version; returns the
        stored :class:`Decision`. ``wait``: seconds the service waits for the version's queued or
        running jobs before deciding (beyond its 600 s maximum the client evaluates again while
        the verdict is ``pending``). See ``Decision.raise_for_verdict`` for the exit policy."""
        if (gate is None) == (rules is None):
            raise ValueError("give exactly one of gate= (a stored policy's name) or rules=")
        body: Dict[str, Any] = {"gate": gate} if gate is not None else {"rules": [dict(r) for r in rules or []]}
        path = f"/v1/models/{_seg(model)}/versions/{_seg(version)}/gate"
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            left = max(0.0, deadline - time.monotonic())
            server_wait = min(left, MAX_SERVER_WAIT)
            body["wait_seconds"] = server_wait
            params = {"unit": unit} if unit else None
            resp, _ = self._http.request(
                "POST", path, params=params, json_body=body, timeout=self.timeout + server_wait
            )
            decision = Decision(raw=resp.json())
            if decision.verdict != "pending" or deadline - time.monotonic() <= 1.0:
                return decision

    def put_gate(self, model: str, name: str, rules: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        """Store (a new version of) a gate policy (admin)."""
        return dict(self._send("PUT", f"/v1/models/{_seg(model)}/gates/{_seg(name)}", {"rules": [dict(r) for r in rules]}))

    def labels(self, model: str, ids: Sequence[Any], labels: Any) -> Dict[str, Any]:
        """Send labels for samples uploaded earlier with ``ids`` (``POST /v1/models/{model}/labels``).

        Labels are class names or indices (multilabel: lists of names or indicator rows), one per
        id; numpy arrays and pandas Series are accepted. Returns what the service did:
        ``stored``, ``unchanged``, ``unknown`` (with ``unknown_ids``) and, per batch, its
        ``coverage`` and whether its waiting jobs were ``released``. A label that differs from
        one already stored raises :class:`Conflict` naming the ids (nothing is stored).
        """
        body = {
            "ids": [str(i) for i in _encode._as_list(_encode.normalize("ids", ids))],
            "labels": _encode._as_list(_encode.normalize("labels", labels)),
        }
        return dict(self._send("POST", f"/v1/models/{_seg(model)}/labels", body))

    def set_alias(self, model: str, alias: str, version: str) -> Dict[str, Any]:
        """Point an alias (e.g. ``production``) at a version (admin)."""
        return dict(self._send("PUT", f"/v1/models/{_seg(model)}/aliases/{_seg(alias)}", {"version": version}))

    # -- reads -------------------------------------------------------------------------------

    def summary(self, model: str, version: str, unit: Optional[str] = None) -> Dict[str, Any]:
        """A version with, per metric, its latest result and pooled value (``GET …/versions/{version}``)."""
        return dict(self._get(f"/v1/models/{_seg(model)}/versions/{_seg(version)}", {"unit": unit}))

    def compare(self, model: str, baseline: str, candidate: str, unit: Optional[str] = None) -> Dict[str, Any]:
        """Per metric: both sides, the delta with its interval, and whether the intervals overlap."""
        return dict(
            self._get(
                f"/v1/models/{_seg(model)}/compare",
                {"baseline": baseline, "candidate": candidate, "unit": unit},
            )
        )

    def history(
        self,
        model: str,
        metric: str,
        *,
        version: Optional[str] = None,
        start: Union[str, datetime, None] = None,
        end: Union[str, datetime, None] = None,
        buckets: Optional[int] = None,
        unit: Optional[str] = None,
        page_size: int = 1000,
        max_points: Optional[int] = None,
        as_frame: Optional[bool] = None,
    ) -> Any:
        """A metric's history, every page followed: raw points ``{t, version, batch_id, value,
        ci_low, ci_high}``, or with ``buckets`` the downsampled ``{t_start, t_end, min, mean, max,
        count}``. A pandas DataFrame (times as UTC datetimes) when pandas is importable (or
        ``as_frame=True``), else a list of dicts."""
        params: Dict[str, Any] = {
            "metric": metric,
            "version": version,
            "from": _time_param(start),
            "to": _time_param(end),
            "buckets": buckets,
            "unit": unit,
            "limit": None if buckets else page_size,
        }
        rows: List[Dict[str, Any]] = []
        cursor: Optional[str] = None
        while True:
            page = self._get(f"/v1/models/{_seg(model)}/history", dict(params, cursor=cursor))
            rows.extend(page.get("buckets") if buckets else page.get("items") or [])
            cursor = page.get("next_cursor")
            if not cursor or (max_points is not None and len(rows) >= max_points):
                break
        if max_points is not None:
            rows = rows[:max_points]
        pd = _encode.pandas()
        use_frame = pd is not None if as_frame is None else as_frame
        if not use_frame:
            return rows
        if pd is None:
            raise InfoauditError("as_frame=True needs pandas (pip install 'infoaudit[pandas]')")
        columns = (
            ["t_start", "t_end", "min", "mean", "max", "count"]
            if buckets
            else ["t", "version", "batch_id", "value", "ci_low", "ci_high"]
        )
        frame = pd.DataFrame(rows)
        for c in columns:
            if c not in frame.columns:
                frame[c] = pd.Series(dtype="object")
        for c in ("t", "t_start", "t_end"):
            if c in frame.columns and c in columns:
                frame[c] = pd.to_datetime(frame[c], utc=True, format="ISO8601")
        for c in ("value", "ci_low", "ci_high", "min", "mean", "max"):
            if c in frame.columns and c in columns:
                frame[c] = pd.to_numeric(frame[c]).astype("float64")
        extra = [c for c in frame.columns if c not in columns]
        return frame[columns + extra]

    def estimators(self) -> List[Dict[str, Any]]:
        """The estimator catalog (ids, tasks, parameters with defaults)."""
        doc = self._get("/v1/estimators")
        return list(doc.get("items", doc) if isinstance(doc, dict) else doc)
