"""Turning the arguments of ``Client.submit`` into an upload body.

Three body formats:

* NDJSON (``application/x-ndjson``), one sample per line in the service's per-row form
  (``label``, ``prediction``, ``probabilities``, ``scores``, ``x``, ``y``, ``target``, ``weight``,
  and ``id`` / ``segments`` where given), options in the query string. Produced chunk by chunk and
  compressed as it goes, so memory stays near one chunk of text.
* Columnar JSON (``application/json``), for what has no per-row form: ``truth_matrix``, unknown
  extra fields, class names the query cannot carry, large metadata, and columns whose lengths
  disagree (the service then names the offending fields).
* Arrow IPC stream (``application/vnd.apache.arrow.stream``), only when the service lists it for
  the upload operation (see ``Client``), pyarrow is importable, and the task is not multilabel.

Numbers are written with Python's shortest round-trip ``repr`` (float32 arrays travel as the
float64 values they hold), so what the service stores is what the caller had.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

try:  # optional extras
    import numpy as np
except ImportError:  # pragma: no cover - exercised only without numpy
    np = None  # type: ignore[assignment]

try:  # pandas ships no type information: `pd` is Any to mypy (see pyproject.toml)
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None

try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None  # type: ignore[assignment]


def pandas() -> Any:
    """The pandas module when it is importable, else ``None``."""
    return pd


ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
NDJSON_MEDIA_TYPE = "application/x-ndjson"
JSON_MEDIA_TYPE = "application/json"

#: Rows per NDJSON chunk (encoded, compressed and sent before the next is built).
CHUNK_ROWS = 16384
#: Metadata larger than this (as JSON text) travels in a JSON body rather than in the query.
MAX_QUERY_METADATA = 4096

#: Per-sample fields: submit() argument → (JSON body field, NDJSON per-row field, kind).
#: kind: "label" (class index or name, or a multilabel row), "number" (a real), "matrix" (a row of reals).
FIELDS: Dict[str, Tuple[str, str, str]] = {
    "labels": ("labels", "label", "label"),
    "predictions": ("predictions", "prediction", "label"),
    "probabilities": ("probabilities", "probabilities", "matrix"),
    "scores": ("scores", "scores", "matrix"),
    "x": ("x", "x", "matrix"),
    "y": ("y", "y", "matrix"),
    "targets": ("targets", "target", "number"),
    "weights": ("weights", "weight", "number"),
}
#: Extra per-sample fields with a known per-row form (the service's extension names).
ROW_EXTRAS: Dict[str, str] = {"ids": "id"}


def _json_default(o: Any) -> Any:
    """numpy scalars and arrays, pandas objects, and anything with ``tolist``/``item``."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def dumps(o: Any) -> str:
    """Compact JSON; NaN and infinities are refused (JSON has no form for them)."""
    return json.dumps(o, separators=(",", ":"), allow_nan=False, default=_json_default)


def _is_numpy(v: Any) -> bool:
    return np is not None and isinstance(v, np.ndarray)


def _is_frame(v: Any) -> bool:
    return pd is not None and isinstance(v, pd.DataFrame)


def _is_series(v: Any) -> bool:
    return pd is not None and isinstance(v, (pd.Series, pd.Index, pd.Categorical))


def _is_2d(v: Any) -> bool:
    if _is_numpy(v):
        if v.ndim == 1 and v.dtype.kind == "O" and v.shape[0]:
            return isinstance(v[0], (list, tuple)) or _is_numpy(v[0])
        return bool(v.ndim == 2)
    if isinstance(v, list) and v:
        return isinstance(v[0], (list, tuple)) or _is_numpy(v[0])
    return False


def _frame_names(df: Any) -> Optional[List[Any]]:
    """A DataFrame's column labels, unless they are the default 0..K-1 positions."""
    cols = list(df.columns)
    if pd is not None and isinstance(df.columns, pd.RangeIndex) and cols == list(range(len(cols))):
        return None
    return cols


def normalize(name: str, value: Any) -> Any:
    """A column as a numpy array (numeric or string data) or a plain list."""
    if value is None:
        return None
    if _is_frame(value):
        if FIELDS.get(name, ("", "", ""))[2] == "matrix":
            dtypes = {str(t) for t in value.dtypes}
            return value.to_numpy(dtype=np.float32 if dtypes == {"float32"} else np.float64)
        if value.shape[1] == 1:
            return normalize(name, value.iloc[:, 0])
        return value.to_numpy()
    if _is_series(value):
        if pd is not None and isinstance(getattr(value, "dtype", None), pd.CategoricalDtype):
            return np.asarray(value.astype(object))
        arr = value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)
        return arr
    if _is_numpy(value):
        return value
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of values, not a string")
    if isinstance(value, Mapping):
        raise TypeError(f"{name} must be a sequence of values, not a mapping")
    out = list(value)
    return out


def length(v: Any) -> int:
    return int(v.shape[0]) if _is_numpy(v) else len(v)


def _slice(v: Any, start: int, stop: int) -> Any:
    return v[start:stop]


def _check_finite(name: str, arr: Any) -> None:
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = "/".join(str(int(i)) for i in bad)
        raise ValueError(
            f"{name}/{where} is {arr[tuple(bad)]!r}: NaN and infinite values cannot be uploaded "
            "(JSON has no form for them); drop or impute those samples"
        )


def _fragments(name: str, v: Any, matrix: bool) -> Tuple[List[str], bool]:
    """The JSON text of each row of a column. Returns (fragments, wrap): with ``wrap`` the
    fragments are rows of numbers without their brackets (the row template adds them)."""
    if _is_numpy(v) and v.dtype.kind in "biuf":
        if v.dtype.kind == "b":
            v = v.astype(np.int8)
        _check_finite(name, v)
        if v.shape[0] == 0:
            return [], v.ndim == 2
        text = json.dumps(v.tolist(), separators=(",", ":"))
        if v.ndim == 1:
            return text[1:-1].split(","), False
        if v.ndim == 2:
            if v.shape[1] == 0:
                return [""] * v.shape[0], True
            return text[2:-2].split("],["), True
    items = v.tolist() if _is_numpy(v) else v
    if matrix and items and all(
        type(r) is list and all(type(x) is float or type(x) is int for x in r) for r in items
    ):
        try:
            text = json.dumps(items, separators=(",", ":"), allow_nan=False)
        except ValueError as e:
            raise ValueError(f"{name}: {e}; NaN and infinite values cannot be uploaded") from None
        if all(r for r in items):
            return text[2:-2].split("],["), True
    memo: Dict[Any, str] = {}
    out: List[str] = []
    append = out.append
    for item in items:
        try:
            hit = memo.get(item)
        except TypeError:  # unhashable (a row)
            hit = None
            try:
                append(dumps(item))
            except ValueError as e:
                raise ValueError(f"{name}: {e}; NaN and infinite values cannot be uploaded") from None
            continue
        if hit is None:
            try:
                hit = memo[item] = dumps(item)
            except ValueError as e:
                raise ValueError(f"{name}: {e}; NaN and infinite values cannot be uploaded") from None
        append(hit)
    return out, False


@dataclass
class Prepared:
    """The arguments of a submit, normalized."""

    task: str
    n: int
    columns: Dict[str, Any]  # submit() argument name → normalized column
    classes: Optional[List[str]] = None
    truth_matrix: Any = None
    estimators: Optional[List[Any]] = None
    metadata: Optional[Dict[str, Any]] = None
    ids: Any = None
    segments: Optional[Dict[str, Any]] = None
    extras: Dict[str, Any] = field(default_factory=dict)
    lengths_agree: bool = True

    # -- format choice -----------------------------------------------------------------------

    def json_reasons(self) -> List[str]:
        """Why this batch needs the columnar JSON body (empty: NDJSON or Arrow can carry it)."""
        why = []
        if self.truth_matrix is not None:
            why.append("truth_matrix has no per-row form")
        if self.extras:
            why.append(f"extra fields {sorted(self.extras)} have no known per-row form")
        if not self.lengths_agree:
            why.append("column lengths disagree (the service names them)")
        if self.classes is not None and any("," in c or c != c.strip() for c in self.classes):
            why.append("a class name has a comma or surrounding blanks")
        if self.metadata is not None and len(dumps(self.metadata)) > MAX_QUERY_METADATA:
            why.append("metadata is too large for the query string")
        if self.n == 0:
            why.append("no samples")
        return why

    def arrow_ok(self) -> bool:
        return self.task != "multilabel" and not self.json_reasons()

    def query(self) -> Dict[str, str]:
        """Options of an NDJSON or Arrow body, as query parameters."""
        q: Dict[str, str] = {"task": self.task}
        if self.classes is not None:
            q["classes"] = ",".join(self.classes)
        if self.estimators is not None:
            q["estimators"] = dumps(self.estimators)
        if self.metadata is not None:
            q["metadata"] = dumps(self.metadata)
        return q

    # -- columnar JSON ---------------------------------------------------------------------------

    def json_document(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"task": self.task}
        if self.classes is not None:
            doc["classes"] = self.classes
        for arg, col in self.columns.items():
            if _is_numpy(col) and col.dtype.kind == "f":
                _check_finite(arg, col)
            doc[FIELDS[arg][0]] = col
        if self.truth_matrix is not None:
            doc["truth_matrix"] = self.truth_matrix
        if self.ids is not None:
            doc["ids"] = self.ids
        if self.segments is not None:
            doc["segments"] = self.segments
        if self.estimators is not None:
            doc["estimators"] = self.estimators
        if self.metadata is not None:
            doc["metadata"] = self.metadata
        doc.update(self.extras)
        return doc

    def json_chunks(self) -> Iterator[bytes]:
        try:
            yield dumps(self.json_document()).encode()
        except ValueError as e:
            raise ValueError(f"{e}; NaN and infinite values cannot be uploaded") from None

    # -- NDJSON ----------------------------------------------------------------------------------

    def ndjson_chunks(self, rows: int = CHUNK_ROWS) -> Iterator[bytes]:
        """The NDJSON text, ``rows`` samples at a time."""
        parts: List[Tuple[str, Any, bool]] = []  # (per-row key, column, matrix?)
        for arg, col in self.columns.items():
            _, row_key, kind = FIELDS[arg]
            parts.append((row_key, col, kind == "matrix"))
        if self.ids is not None:
            parts.append(("id", self.ids, False))
        segs = list((self.segments or {}).items())
        for start in range(0, self.n, rows):
            stop = min(self.n, start + rows)
            frags: List[List[str]] = []
            pieces: List[str] = []
            for key, col, matrix in parts:
                f, wrap = _fragments(key, _slice(col, start, stop), matrix)
                frags.append(f)
                lead = "{" if not pieces else ","
                piece = f"{lead}{json.dumps(key)}:"
                pieces.append(piece.replace("%", "%%") + ("[%s]" if wrap else "%s"))
            for i, (skey, scol) in enumerate(segs):
                f, _ = _fragments(f"segments/{skey}", _slice(scol, start, stop), False)
                frags.append(f)
                lead = ("{" if not pieces else ",") + '"segments":{' if i == 0 else ","
                pieces.append(f"{lead}{json.dumps(str(skey))}:".replace("%", "%%") + "%s")
            if segs:
                pieces.append("}")
            template = "".join(pieces) + "}\n"
            text = "".join([template % t for t in zip(*frags)])
            yield text.encode()

    # -- Arrow -----------------------------------------------------------------------------------

    def arrow_chunks(self, rows: int = 65536) -> Iterator[bytes]:
        """An Arrow IPC stream: ``label``/``prediction`` (int64 or dictionary-encoded strings),
        ``probabilities``/``scores``/``x``/``y`` (fixed-size lists of float32 or float64),
        ``target``, ``weight``, ``id``, ``segment_<key>``."""
        import pyarrow as pa

        arrays: Dict[str, Any] = {}
        for arg, col in self.columns.items():
            _, row_key, kind = FIELDS[arg]
            arrays[row_key] = _arrow_column(pa, arg, col, kind, self.task)
        if self.ids is not None:
            arrays["id"] = pa.array([str(i) for i in _as_list(self.ids)], type=pa.string())
        for key, scol in (self.segments or {}).items():
            arrays[f"segment_{key}"] = pa.array(
                [str(s) for s in _as_list(scol)], type=pa.string()
            ).dictionary_encode()
        table = pa.table(arrays)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=rows):
                writer.write_batch(batch)
        yield sink.getvalue().to_pybytes()


def _as_list(v: Any) -> List[Any]:
    return v.tolist() if _is_numpy(v) else list(v)


def _arrow_column(pa: Any, arg: str, col: Any, kind: str, task: str) -> Any:
    if kind == "matrix":
        arr = np.asarray(col)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        _check_finite(arg, arr)
        n, k = arr.shape
        flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, k)
    if kind == "number" or (arg == "predictions" and task == "regression"):
        return pa.array(np.asarray(col, dtype=np.float64))
    values = _as_list(col)
    if values and all(type(v) is int for v in values):
        return pa.array(values, type=pa.int64())
    return pa.array([str(v) for v in values], type=pa.string()).dictionary_encode()


# -- preparing the arguments -----------------------------------------------------------------


def _names(values: Any) -> List[Any]:
    """Every distinct scalar in a label column (rows of a multilabel column flattened)."""
    seen: Dict[Any, None] = {}
    for v in _as_list(values):
        if isinstance(v, (list, tuple)):
            for x in v:
                seen.setdefault(x, None)
        else:
            seen.setdefault(v, None)
    return list(seen)


def _to_names(values: Any) -> Any:
    """Labels as class names (``str`` of each value), for classes given as non-strings."""
    if _is_numpy(values):
        if values.ndim == 1 and values.dtype.kind in "biuO":
            return np.asarray([str(v) for v in values.tolist()], dtype=object)
        return values
    return [
        [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
        for v in values
    ]


def prepare(
    *,
    labels: Any,
    probabilities: Any,
    predictions: Any,
    scores: Any,
    x: Any,
    y: Any,
    targets: Any,
    weights: Any,
    classes: Optional[Sequence[Any]],
    truth_matrix: Any,
    estimators: Optional[Sequence[Any]],
    metadata: Optional[Mapping[str, Any]],
    task: Optional[str],
    extra: Mapping[str, Any],
) -> Prepared:
    """Normalize the arguments of a submit and infer what was not given."""
    raw = {
        "labels": labels,
        "predictions": predictions,
        "probabilities": probabilities,
        "scores": scores,
        "x": x,
        "y": y,
        "targets": targets,
        "weights": weights,
    }
    # Class names from a DataFrame's columns or a categorical's categories.
    raw_classes: Optional[List[Any]] = list(classes) if classes is not None else None
    if raw_classes is None:
        for src in ("probabilities", "scores"):
            if _is_frame(raw[src]):
                raw_classes = _frame_names(raw[src])
                if raw_classes is not None:
                    break
    if raw_classes is None and pd is not None:
        lab = raw["labels"]
        if isinstance(getattr(lab, "dtype", None), pd.CategoricalDtype):
            raw_classes = list(lab.cat.categories) if hasattr(lab, "cat") else list(lab.categories)

    cols: Dict[str, Any] = {k: normalize(k, v) for k, v in raw.items() if v is not None}

    if task is None:
        if "y" in cols or ("x" in cols and "labels" not in cols):
            task = "pairs"
        elif "targets" in cols:
            task = "regression"
        elif "scores" in cols:
            task = "multilabel"
        elif "labels" in cols and _is_2d(cols["labels"]):
            task = "multilabel"
        else:
            task = "multiclass"

    class_names: Optional[List[str]] = None
    if raw_classes is not None:
        class_names = [str(c) for c in raw_classes]
        if any(not isinstance(c, str) for c in raw_classes) and task in ("multiclass", "multilabel"):
            # Non-string classes (e.g. scikit-learn's integer classes_): labels are their values,
            # not positions; send both as names.
            for k in ("labels", "predictions"):
                if k in cols and not (task == "multilabel" and _is_2d(cols[k]) and _indicator(cols[k])):
                    cols[k] = _to_names(cols[k])
    elif task in ("multiclass", "multilabel"):
        # Labels given by name and no classes: the sorted distinct names, as scikit-learn orders
        # its classes_.
        found: List[Any] = []
        for k in ("labels", "predictions"):
            if k in cols:
                found.extend(_names(cols[k]))
        if found and all(isinstance(v, str) for v in found):
            class_names = sorted(set(found))

    ids = extra.get("ids")
    segments = extra.get("segments")
    extras = {k: v for k, v in extra.items() if k not in ("ids", "segments")}
    if ids is not None:
        ids = normalize("ids", ids)
    if segments is not None:
        if not isinstance(segments, Mapping):
            extras["segments"] = segments
            segments = None
        else:
            segments = {str(k): normalize(f"segments/{k}", v) for k, v in segments.items()}

    lengths = [length(c) for c in cols.values()]
    if ids is not None:
        lengths.append(length(ids))
    for s in (segments or {}).values():
        lengths.append(length(s))
    n = lengths[0] if lengths else 0
    agree = all(m == n for m in lengths)

    meta = dict(metadata) if metadata is not None else None
    est = list(estimators) if estimators is not None else None
    return Prepared(
        task=task,
        n=n,
        columns=cols,
        classes=class_names,
        truth_matrix=truth_matrix,
        estimators=est,
        metadata=meta,
        ids=ids,
        segments=segments,
        extras=dict(extras),
        lengths_agree=agree,
    )


def _indicator(v: Any) -> bool:
    """Whether a multilabel label column is indicator rows (numbers) rather than name lists."""
    if _is_numpy(v):
        return v.dtype.kind in "biuf"
    for row in v[:10]:
        for x in row:
            if isinstance(x, str):
                return False
    return True


# -- content codings ---------------------------------------------------------------------------


Coding = Optional[str]


def choose_coding(compression: Union[str, None]) -> Coding:
    """``"auto"``: zstd when the ``zstandard`` module is importable, else gzip."""
    if compression in (None, "none", "identity", False):
        return None
    if compression == "auto":
        return "zstd" if zstandard is not None else "gzip"
    if compression == "zstd" and zstandard is None:
        raise ValueError("compression='zstd' needs the zstandard module (pip install 'infoaudit[zstd]')")
    if compression not in ("gzip", "zstd"):
        raise ValueError(f"compression must be 'auto', 'zstd', 'gzip' or None, not {compression!r}")
    return compression


def compressed(chunks: Callable[[], Iterator[bytes]], coding: Coding, level: Optional[int] = None) -> Iterator[bytes]:
    """The chunks, compressed with ``coding`` as they come (deterministic: a retry sends the same
    bytes, which the service's Idempotency-Key fingerprint compares)."""
    if coding is None:
        yield from chunks()
        return
    if coding == "zstd":
        c = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()
        for chunk in chunks():
            out = c.compress(chunk)
            if out:
                yield out
        yield c.flush()
        return
    z = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
    for chunk in chunks():
        out = z.compress(chunk)
        if out:
            yield out
    yield z.flush()
