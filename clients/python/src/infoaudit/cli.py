"""``python -m infoaudit gate|submit``: the ``infoaudit`` binary's ``gate`` and ``submit`` for
pipelines that have Python but not the binary.

The options, what is printed on standard output and the exit codes are those of the binary
(``src/cli.rs``)::

    python -m infoaudit gate   --url URL --model M --version V --gate NAME [--wait 120] [--unit bits|nats]
    python -m infoaudit submit --url URL --model M --version V FILE [--wait] [--timeout 600] [--idempotency-key K]

``--url`` defaults to ``$INFOAUDIT_URL`` and ``--api-key`` to ``$INFOAUDIT_API_KEY``.

``gate`` exits 0 on pass/warn, 1 on fail, 2 on inconclusive/pending, 3 on any error.
``submit`` exits 0 when every job has a result (or without ``--wait``), 1 when a job ended
without one (failed or cancelled), 2 when jobs were still unfinished after ``--timeout``
seconds, 3 on any error. Bad arguments exit 2, as the binary's do. Errors go to standard error
prefixed ``error: ``.

Like the binary, each request is made once (no retries) and waits up to 900 s for its answer.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any, List, Optional, Sequence

import requests

from ._client import _seg
from ._http import RetryPolicy, Transport
from .errors import ProblemError, TransportError

__all__ = ["main", "render_decision", "exit_code", "content_type_of"]

#: Seconds one request may take, as the binary's HTTP client (``src/cli.rs``).
REQUEST_TIMEOUT = 900.0
#: Between two reads of the batch with ``submit --wait``.
POLL_SECONDS = 0.5
#: Job states after which a job changes no more.
JOB_END_STATES = ("succeeded", "failed", "cancelled")
ARROW_STREAM = "application/vnd.apache.arrow.stream"

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_UNDECIDED = 2
EXIT_ERROR = 3


# -- JSON access as serde_json's `value["key"].as_…()` ------------------------------------------


def _at(v: Any, key: str) -> Any:
    """``v[key]``, or ``None`` where ``v`` is not an object or has no such key."""
    return v.get(key) if isinstance(v, dict) else None


def _str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _list(v: Any) -> List[Any]:
    return v if isinstance(v, list) else []


def _fmt_num(v: Any) -> str:
    x = _num(v)
    return "—" if x is None else f"{x:.4f}"


def render_decision(d: Any) -> str:
    """A decision as the binary's per-rule table."""
    out = "gate {} for {} {}: {}\n".format(
        _str(_at(_at(d, "policy"), "name"), "(inline)"),
        _str(_at(d, "model")),
        _str(_at(d, "version")),
        _str(_at(d, "verdict"), "?").upper(),
    )
    row = "{:<28} {:<13} {:>10} {:>21} {:>10} {:>10} {:>32}  {}\n"
    out += row.format("metric", "verdict", "value", "interval", "bound", "baseline", "difference", "message")
    for r in _list(_at(d, "rules")):
        low, high = _num(_at(r, "ci_low")), _num(_at(r, "ci_high"))
        interval = f"[{low:.4f}, {high:.4f}]" if low is not None and high is not None else "—"
        delta = _at(r, "delta")
        value, d_low, d_high = _num(_at(delta, "value")), _num(_at(delta, "ci_low")), _num(_at(delta, "ci_high"))
        method = _str(_at(delta, "method"))
        if value is not None and d_low is not None and d_high is not None:
            difference = f"{value:+.4f} [{d_low:+.4f}, {d_high:+.4f}] {method}"
        elif value is not None:
            difference = f"{value:+.4f} {method}"
        else:
            difference = "—"
        out += row.format(
            _str(_at(r, "metric")),
            _str(_at(r, "verdict")),
            _fmt_num(_at(r, "value")),
            interval,
            _fmt_num(_at(r, "threshold")),
            _fmt_num(_at(r, "baseline_value")),
            difference,
            _str(_at(r, "message")),
        )
    out += f"unit: {_str(_at(d, 'unit'))}; decision {_str(_at(d, 'id'))}\n"
    return out


def exit_code(verdict: str) -> int:
    """0 pass/warn, 1 fail, 2 inconclusive/pending, 3 anything else."""
    if verdict in ("pass", "warn"):
        return EXIT_OK
    if verdict == "fail":
        return EXIT_FAIL
    if verdict in ("inconclusive", "pending"):
        return EXIT_UNDECIDED
    return EXIT_ERROR


def content_type_of(path: Path) -> str:
    """The upload's Content-Type from the file's extension (JSON when it says nothing else)."""
    ext = path.suffix[1:].lower()
    if ext in ("ndjson", "jsonl"):
        return "application/x-ndjson"
    if ext == "csv":
        return "text/csv"
    if ext in ("arrows", "arrow"):
        return ARROW_STREAM
    return "application/json"


def _result_line(job: Any, result: Any) -> str:
    value = _num(_at(result, "value"))
    shown = f"{value:.6f}" if value is not None else _str(_at(result, "value_special"), "—")
    return "{:<14} {:>10} {} [{} , {}]".format(
        _str(_at(job, "estimator")),
        shown,
        _str(_at(result, "unit")),
        _fmt_num(_at(result, "ci_low")),
        _fmt_num(_at(result, "ci_high")),
    )


def _job_line(job: Any) -> str:
    return "{:<14} {} {}".format(
        _str(_at(job, "estimator")), _str(_at(job, "state")), _str(_at(_at(job, "error"), "detail"))
    )


# -- HTTP ------------------------------------------------------------------------------------


class _Failure(Exception):
    """Ends a command with ``error: <message>`` on standard error and exit code 3."""


class _Undecided(Exception):
    """Ends ``submit --wait`` with ``error: <message>`` and exit code 2."""


def _emit(text: str) -> None:
    """Standard output in UTF-8 whatever the locale (the table's "—"), as the binary writes it."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(text)
    else:
        sys.stdout.flush()
        out.write(text.encode("utf-8"))
    sys.stdout.flush()


def _transport(url: str, api_key: Optional[str]) -> Transport:
    # One try per request, as the binary: a pipeline's own retry decides what to do next.
    return Transport(url, api_key, REQUEST_TIMEOUT, RetryPolicy(attempts=1), user_agent="infoaudit-python-cli")


def _problem_message(e: ProblemError) -> str:
    """``<status> <reason>: <title> <detail>`` and a line per field error, as the binary writes."""
    try:
        reason = HTTPStatus(e.status).phrase
    except ValueError:
        reason = "<unknown status code>"
    doc = e.problem
    msg = f"{e.status} {reason}: {_str(doc.get('title'))} {_str(doc.get('detail'))}"
    for err in _list(doc.get("errors")):
        msg += f"\n  {_str(_at(err, 'pointer'))}: {_str(_at(err, 'message'))}"
    return msg


def _call(http: Transport, method: str, path: str, unreachable: str, **kw: Any) -> Any:
    """The JSON body of a successful answer; :class:`_Failure` otherwise."""
    try:
        resp, _ = http.request(method, path, **kw)
    except ProblemError as e:
        raise _Failure(_problem_message(e)) from e
    except TransportError as e:
        raise _Failure(f"{unreachable}{e.__cause__ or e}") from e
    except requests.RequestException as e:  # a URL requests cannot use, a broken answer
        raise _Failure(f"{unreachable}{e}") from e
    try:
        return resp.json()
    except ValueError as e:
        raise _Failure(f"unreadable response ({resp.status_code} {resp.reason}): {e}") from e


# -- the commands ----------------------------------------------------------------------------


def gate(a: argparse.Namespace) -> int:
    http = _transport(a.url, a.api_key)
    path = f"/v1/models/{_seg(a.model)}/versions/{_seg(a.version)}/gate"
    body = {"gate": a.gate, "wait_seconds": a.wait if math.isfinite(a.wait) else None}
    try:
        decision = _call(
            http,
            "POST",
            path,
            f"cannot reach {http.base_url}{path}?unit={a.unit}: ",
            params={"unit": a.unit},
            json_body=body,
        )
    finally:
        http.close()
    _emit(render_decision(decision))
    return exit_code(_str(_at(decision, "verdict")))


def submit(a: argparse.Namespace) -> int:
    path_arg = Path(a.file)
    try:
        data = path_arg.read_bytes()
    except OSError as e:
        reason = f"{e.strerror} (os error {e.errno})" if e.strerror else str(e)
        raise _Failure(f"cannot read {a.file}: {reason}") from e
    http = _transport(a.url, a.api_key)
    try:
        return _submit(http, a, data, content_type_of(path_arg))
    finally:
        http.close()


def _submit(http: Transport, a: argparse.Namespace, data: bytes, content_type: str) -> int:
    path = f"/v1/models/{_seg(a.model)}/versions/{_seg(a.version)}/batches"
    headers = {"Content-Type": content_type}
    if a.idempotency_key is not None:
        headers["Idempotency-Key"] = a.idempotency_key
    accepted = _call(
        http,
        "POST",
        path,
        f"cannot reach {http.base_url}{path}: ",
        body=lambda: data,
        headers=headers,
        idempotent=a.idempotency_key is not None,
    )
    batch_id = _str(_at(_at(accepted, "batch"), "id"))
    _emit(batch_id + "\n")
    if not a.wait:
        return EXIT_OK
    deadline = time.monotonic() + a.timeout
    while True:
        detail = _call(http, "GET", f"/v1/batches/{_seg(batch_id)}", "")
        jobs = _list(_at(detail, "jobs"))
        if all(_at(j, "state") in JOB_END_STATES for j in jobs):
            results = _list(_at(detail, "results"))
            failed = False
            for j in jobs:
                for r in results:
                    if _at(r, "job_id") == _at(j, "id"):
                        _emit(_result_line(j, r) + "\n")
                        break
                else:
                    failed = True
                    _emit(_job_line(j) + "\n")
            return EXIT_FAIL if failed else EXIT_OK
        if time.monotonic() > deadline:
            raise _Undecided(f"jobs still unfinished after {a.timeout} s")
        time.sleep(POLL_SECONDS)


# -- the command line ------------------------------------------------------------------------

# What the binary's parsers accept (Rust's f64 and u64 FromStr): no spaces, no underscores.
_F64 = re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)", re.I)
_U64 = re.compile(r"\+?[0-9]+")


def _seconds(text: str) -> float:
    if not _F64.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid float literal: {text!r}")
    return float(text)


def _whole_seconds(text: str) -> int:
    if not _U64.fullmatch(text) or int(text) >= 2**64:
        raise argparse.ArgumentTypeError(f"invalid digit found in string: {text!r}")
    return int(text)


def _env(name: str) -> Optional[str]:
    return os.environ.get(name) or None


def _common(p: argparse.ArgumentParser, url_help: Optional[str]) -> None:
    url = _env("INFOAUDIT_URL")
    p.add_argument(
        "--url",
        default=url,
        required=url is None,
        help=(url_help or "Base URL of the service") + " [env: INFOAUDIT_URL]",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True)


def _api_key(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-key",
        default=_env("INFOAUDIT_API_KEY"),
        help="API key (Bearer), when the service requires one [env: INFOAUDIT_API_KEY]",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m infoaudit``."""
    top = argparse.ArgumentParser(
        prog="python -m infoaudit",
        description="The infoaudit binary's gate and submit commands, in Python.",
        allow_abbrev=False,
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="{gate,submit}")
    g = sub.add_parser(
        "gate",
        allow_abbrev=False,
        help="Evaluate a stored gate policy for a version; exit 0 pass/warn, 1 fail, 2 inconclusive/pending, 3 error.",
        description="Evaluate a stored gate policy for a version; exit 0 pass/warn, 1 fail, "
        "2 inconclusive/pending, 3 error.",
    )
    _common(g, "Base URL of the service, e.g. http://127.0.0.1:8080")
    g.add_argument("--gate", required=True, help="Name of the stored gate policy")
    g.add_argument(
        "--wait", type=_seconds, default=0.0, help="Seconds to wait for the version's unfinished jobs (0–600)"
    )
    g.add_argument("--unit", default="bits", help="Unit of values and thresholds: bits or nats")
    _api_key(g)

    s = sub.add_parser(
        "submit",
        allow_abbrev=False,
        help="Upload a batch file (JSON, NDJSON, CSV or Arrow) and print its id.",
        description="Upload a batch file and print its id; with --wait, a line per job. Exit 0 ok, "
        "1 a job has no result, 2 jobs unfinished at the timeout, 3 error.",
    )
    _common(s, None)
    s.add_argument(
        "file", metavar="FILE", help="The batch: .json (columnar), .ndjson, .csv or .arrows (an Arrow IPC stream)"
    )
    s.add_argument("--wait", action="store_true", help="Wait for every job of the batch to finish and print the results")
    s.add_argument("--timeout", type=_whole_seconds, default=600, help="Seconds to wait with --wait (default 600)")
    s.add_argument("--idempotency-key", help="Idempotency-Key for safe retries (default: none)")
    _api_key(s)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (argparse exits 2 itself on bad arguments)."""
    args = parser().parse_args(argv)
    try:
        if args.command == "gate":
            return gate(args)
        return submit(args)
    except _Undecided as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNDECIDED
    except _Failure as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        raise
    except Exception as e:  # never exit 1 (a failed gate) on an unexpected error
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
