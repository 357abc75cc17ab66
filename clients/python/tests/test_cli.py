"""``python -m infoaudit gate|submit`` against the ``infoaudit`` binary's own commands
(``$INFOAUDIT_BIN``, built by run_tests.sh): the same exit codes, the same standard output and the
same requests, on the real service and, for answers the service cannot be made to give on demand
(a pending verdict, a failed job, a 503), through the recording stub with canned answers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from conftest import classification
from infoaudit import Batch, Client
from stub import Canned, Stub, on, problem

Run = subprocess.CompletedProcess
Pair = Tuple["subprocess.CompletedProcess[str]", "subprocess.CompletedProcess[str]"]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="session")
def binary() -> str:
    path = os.environ.get("INFOAUDIT_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("INFOAUDIT_BIN is not the infoaudit binary: run the tests through clients/python/run_tests.sh")
    return path


def _env(extra: Optional[Dict[str, str]], drop: Sequence[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra or {})
    return env


def run_py(args: Sequence[str], env: Optional[Dict[str, str]] = None, drop: Sequence[str] = ()) -> "Run[str]":
    return subprocess.run([sys.executable, "-m", "infoaudit", *args], capture_output=True, text=True,
                          encoding="utf-8", env=_env(env, drop), timeout=300)


def run_bin(binary: str, args: Sequence[str], env: Optional[Dict[str, str]] = None,
            drop: Sequence[str] = ()) -> "Run[str]":
    return subprocess.run([binary, *args], capture_output=True, text=True, encoding="utf-8",
                          env=_env(env, drop), timeout=300)


def both(binary: str, args: Sequence[str], env: Optional[Dict[str, str]] = None, drop: Sequence[str] = ()) -> Pair:
    """The Python command line and the binary on the same arguments: (python, binary)."""
    return run_py(args, env, drop), run_bin(binary, args, env, drop)


def masked(table: str) -> str:
    """A gate table without its decision id (every evaluation stores a new decision)."""
    return re.sub(rf"; decision {UUID}\n$", "; decision <id>\n", table)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


# -- gate against the real service ---------------------------------------------------------


@pytest.fixture(scope="module")
def gated(service_url: str, api_key: str) -> Iterator[Tuple[str, Batch]]:
    """A model with two finished versions on the same samples (v1 the production alias) and
    stored policies that pass, fail, and cannot decide on v2."""
    model = f"py-cli-{uuid.uuid4().hex[:10]}"
    with Client(service_url, api_key) as c:
        y, p = classification(n=2000, k=3, seed=31)
        _, p2 = classification(n=2000, k=3, seed=31, skill=1.5)
        c.wait(c.submit(model, "v1", labels=y, probabilities=p, estimators=["shannon_mi", "semantic_mi"]), timeout=120)
        cand = c.wait(c.submit(model, "v2", labels=y, probabilities=p2, estimators=["shannon_mi", "semantic_mi"]),
                      timeout=120)
        assert {j["state"] for j in cand.jobs} == {"succeeded"}
        c.set_alias(model, "production", "v1")
        c.put_gate(model, "release", [
            {"metric": "shannon_mi", "op": "gte", "baseline": "production", "max_regression": {"absolute": 0.5}},
            {"metric": "shannon_mi.nmi", "op": "gte", "threshold": 0.01, "severity": "warning"},
        ])
        c.put_gate(model, "impossible", [
            {"metric": "shannon_mi", "op": "gte", "threshold": 50.0},
            {"metric": "semantic_mi", "op": "gte", "threshold": 0.01},
        ])
        mi = cand.result("shannon_mi")
        assert mi is not None
        c.put_gate(model, "unsure", [{"metric": "shannon_mi", "op": "gte",
                                      "threshold": (mi["ci_low"] + mi["ci_high"]) / 2}])
        yield model, cand


def gate_args(url: str, key: str, model: str, gate: str, *extra: str) -> List[str]:
    return ["gate", "--url", url, "--api-key", key, "--model", model, "--version", "v2", "--gate", gate, *extra]


@pytest.mark.parametrize("gate,code,verdict", [("release", 0, "PASS"), ("impossible", 1, "FAIL"),
                                               ("unsure", 2, "INCONCLUSIVE")])
def test_gate_same_exit_code_and_table_as_the_binary(binary: str, service_url: str, api_key: str,
                                                     gated: Tuple[str, Batch], gate: str, code: int,
                                                     verdict: str) -> None:
    model, _ = gated
    py, rs = both(binary, gate_args(service_url, api_key, model, gate, "--wait", "5"))
    assert (py.returncode, rs.returncode) == (code, code), (py.stderr, rs.stderr)
    assert py.stderr == rs.stderr == ""
    lines = py.stdout.splitlines()
    assert lines[0] == f"gate {gate} for {model} v2: {verdict}"
    assert lines[1].split() == ["metric", "verdict", "value", "interval", "bound", "baseline", "difference", "message"]
    assert re.fullmatch(rf"unit: bits; decision {UUID}", lines[-1])
    assert masked(py.stdout) == masked(rs.stdout)
    assert py.stdout != rs.stdout  # two evaluations, two stored decisions


def test_gate_table_shows_the_baseline_difference(binary: str, service_url: str, api_key: str,
                                                 gated: Tuple[str, Batch]) -> None:
    model, _ = gated
    py, rs = both(binary, gate_args(service_url, api_key, model, "release"))
    row = next(line for line in py.stdout.splitlines() if line.startswith("shannon_mi "))
    # the baseline's value, then Δ with its paired interval (same samples in v1 and v2)
    assert re.search(r" \d+\.\d{4} +[+-]\d+\.\d{4} \[[+-]\d+\.\d{4}, [+-]\d+\.\d{4}\] paired  ", row), row
    assert masked(py.stdout) == masked(rs.stdout)


def test_gate_in_nats(binary: str, service_url: str, api_key: str, gated: Tuple[str, Batch]) -> None:
    model, cand = gated
    py, rs = both(binary, gate_args(service_url, api_key, model, "impossible", "--unit", "nats"))
    assert py.returncode == rs.returncode == 1
    assert py.stdout.splitlines()[-1].startswith("unit: nats; ")
    mi = cand.result("shannon_mi")
    assert mi is not None
    row = next(line for line in py.stdout.splitlines() if line.startswith("shannon_mi "))
    assert float(row.split()[2]) == pytest.approx(mi["value"] * 0.6931471805599453, abs=6e-5)  # shown in nats
    assert masked(py.stdout) == masked(rs.stdout)


def test_gate_url_and_key_from_the_environment(binary: str, service_url: str, api_key: str,
                                               gated: Tuple[str, Batch]) -> None:
    model, _ = gated
    args = ["gate", "--model", model, "--version", "v2", "--gate", "release"]
    env = {"INFOAUDIT_URL": service_url + "/", "INFOAUDIT_API_KEY": api_key}
    py, rs = both(binary, args, env)
    assert py.returncode == rs.returncode == 0, (py.stderr, rs.stderr)
    assert masked(py.stdout) == masked(rs.stdout)
    # without a key the service (it has keys) refuses: an error, 3, from both
    py, rs = both(binary, args, {"INFOAUDIT_URL": service_url}, drop=["INFOAUDIT_API_KEY"])
    assert py.returncode == rs.returncode == 3
    assert py.stdout == rs.stdout == ""
    assert py.stderr.startswith("error: 401 ") and rs.stderr.startswith("error: 401 ")


@pytest.mark.parametrize("gate,good_key,status", [("no-such-policy", True, 404), ("release", False, 401)])
def test_gate_problem_answers_exit_3(binary: str, service_url: str, api_key: str, gated: Tuple[str, Batch],
                                     gate: str, good_key: bool, status: int) -> None:
    model, _ = gated
    py, rs = both(binary, gate_args(service_url, api_key if good_key else "ia_wrong", model, gate))
    assert py.returncode == rs.returncode == 3
    assert py.stdout == rs.stdout == ""
    assert py.stderr.startswith(f"error: {status} ") and rs.stderr.startswith(f"error: {status} "), (py.stderr, rs.stderr)


# -- gate: every verdict and odd decisions, through canned answers ---------------------------


def decision(verdict: str, **extra: Any) -> Dict[str, Any]:
    return {
        "id": "01890000-0000-7000-8000-0000000000d1", "model": "m", "version": "v", "verdict": verdict,
        "unit": "bits", "policy": {"name": "release", "version": 3},
        "rules": [
            {"metric": "semantic_mi", "verdict": verdict, "value": 0.03125, "ci_low": -0.0, "ci_high": 12,
             "threshold": 0.5, "baseline_value": None, "message": "ü — a message"},
            {"metric": "shannon_mi.a_very_long_metric_name_indeed", "verdict": "pass", "value": 1e20,
             "delta": {"value": -0.00001, "ci_low": -1.5, "ci_high": 2.25, "method": "paired"}, "message": ""},
            {"metric": "x", "verdict": "warn", "value": "not a number", "delta": {"value": 0.5, "method": "independent"}},
            {"verdict": "pending"},
        ],
        **extra,
    }


@pytest.mark.parametrize("verdict,code", [("pass", 0), ("warn", 0), ("fail", 1), ("inconclusive", 2),
                                          ("pending", 2), ("unheard-of", 3)])
def test_gate_each_verdict_same_table_and_code(binary: str, stub: Stub, verdict: str, code: int) -> None:
    stub.add(Canned(on("POST", "/v1/models/m/versions/v/gate"), status=200, body=decision(verdict), times=2))
    py, rs = both(binary, ["gate", "--url", stub.url, "--api-key", "k", "--model", "m", "--version", "v",
                           "--gate", "release", "--wait", "2.5"])
    assert (py.returncode, rs.returncode) == (code, code), (py.stderr, rs.stderr)
    assert py.stdout == rs.stdout  # the same decision: byte for byte the same table
    assert py.stdout.splitlines()[0] == f"gate release for m v: {verdict.upper()}"
    assert "ü — a message" in py.stdout and "[-0.0000, 12.0000]" in py.stdout
    reqs = stub.matching("POST", "/v1/models/m/versions/v/gate")
    assert len(reqs) == 2
    for r in reqs:  # the same request from both
        assert r.path == "/v1/models/m/versions/v/gate?unit=bits"
        assert json.loads(r.body) == {"gate": "release", "wait_seconds": 2.5}
        assert r.headers["authorization"] == "Bearer k"
        assert r.headers["content-type"] == "application/json"


def test_gate_inline_decision_and_missing_fields(binary: str, stub: Stub) -> None:
    odd = {"verdict": "fail", "policy": None, "rules": "not a list", "unit": 5}
    stub.add(Canned(on("POST", "/v1/"), status=200, body=odd, times=2))
    py, rs = both(binary, ["gate", "--url", stub.url, "--model", "m", "--version", "v", "--gate", "g"],
                  drop=["INFOAUDIT_API_KEY"])
    assert py.returncode == rs.returncode == 1
    assert py.stdout == rs.stdout
    assert py.stdout.splitlines()[0] == "gate (inline) for  : FAIL"
    assert all("authorization" not in r.headers for r in stub.requests)


def test_gate_503_is_an_error_after_one_try(binary: str, stub: Stub) -> None:
    stub.add(Canned(on("POST", "/v1/"), status=503, headers={"Retry-After": "0"},
                    body=problem(503, "Service Unavailable", "draining"), times=None))
    py, rs = both(binary, ["gate", "--url", stub.url, "--model", "m", "--version", "v", "--gate", "g"])
    assert py.returncode == rs.returncode == 3
    assert py.stdout == rs.stdout == ""
    assert py.stderr == rs.stderr == "error: 503 Service Unavailable: Service Unavailable draining\n"
    assert len(stub.requests) == 2  # one each: no retries, as the binary


def test_gate_success_that_is_not_json_is_an_error(binary: str, stub: Stub) -> None:
    stub.add(Canned(on("POST", "/v1/"), status=200, headers={"Content-Type": "text/plain"}, body=b"ok", times=2))
    py, rs = both(binary, ["gate", "--url", stub.url, "--model", "m", "--version", "v", "--gate", "g"])
    assert py.returncode == rs.returncode == 3
    assert py.stderr.startswith("error: unreadable response (200 ") and rs.stderr.startswith("error: unreadable response (200 ")


# -- submit ----------------------------------------------------------------------------------


def ndjson_file(path: Path, n: int = 400, seed: int = 41) -> Path:
    y, p = classification(n=n, k=3, seed=seed)
    path.write_text("".join(json.dumps({"label": int(a), "probabilities": b.tolist()}) + "\n" for a, b in zip(y, p)))
    return path


def submit_args(url: str, key: str, model: str, file: Path, *extra: str) -> List[str]:
    return ["submit", "--url", url, "--api-key", key, "--model", model, "--version", "v1", str(file), *extra]


def test_submit_wait_same_result_lines(binary: str, service_url: str, api_key: str, model: str,
                                       client: Client, tmp_path: Path) -> None:
    f = ndjson_file(tmp_path / "batch.ndjson")
    py, rs = both(binary, submit_args(service_url, api_key, model, f, "--wait", "--timeout", "120"))
    assert py.returncode == rs.returncode == 0, (py.stderr, rs.stderr)
    assert py.stderr == rs.stderr == ""
    py_lines, rs_lines = py.stdout.splitlines(), rs.stdout.splitlines()
    assert re.fullmatch(UUID, py_lines[0]) and re.fullmatch(UUID, rs_lines[0]) and py_lines[0] != rs_lines[0]
    line = re.compile(r"(\S+) +(-?\d+\.\d{6}) bits \[(-?\d+\.\d{4}|—) , (-?\d+\.\d{4}|—)\]")
    assert len(py_lines) >= 3 and all(line.fullmatch(x) for x in py_lines[1:]), py.stdout
    assert all(line.fullmatch(x) for x in rs_lines[1:]), rs.stdout
    # the same samples: the same estimators in the same order with the same point values
    def estimator_values(lines: List[str]) -> List[Tuple[str, str]]:
        return [(m.group(1), m.group(2)) for m in map(line.fullmatch, lines[1:]) if m]
    assert estimator_values(py_lines) == estimator_values(rs_lines)
    assert "shannon_mi" in dict(estimator_values(py_lines))
    # what the Python command stored is the file, read back, with the binary's lines' values
    batch = client.batch(py_lines[0])
    assert batch.content_type == "application/x-ndjson" and batch.n == 400
    shown = {m.group(1): float(m.group(2)) for m in map(line.fullmatch, py_lines[1:]) if m}
    assert shown["shannon_mi"] == pytest.approx(batch.values["shannon_mi"], abs=5e-7)


def test_submit_without_wait_prints_the_id(binary: str, service_url: str, api_key: str, model: str,
                                           client: Client, tmp_path: Path) -> None:
    f = tmp_path / "batch.csv"
    f.write_text("label,prediction\n0,0\n1,1\n1,0\n0,0\n2,2\n")
    py, rs = both(binary, submit_args(service_url, api_key, model, f))
    assert py.returncode == rs.returncode == 0
    assert re.fullmatch(UUID + "\n", py.stdout) and re.fullmatch(UUID + "\n", rs.stdout)
    stored = client.batch(py.stdout.strip())
    assert stored.content_type == "text/csv" and stored.n == 5
    assert client.batch_data(stored)["labels"] == client.batch_data(rs.stdout.strip())["labels"]


@pytest.mark.parametrize("name,ctype", [("b.json", "application/json"), ("b.NDJSON", "application/x-ndjson"),
                                        ("b.jsonl", "application/x-ndjson"), ("b.csv", "text/csv"),
                                        ("b.arrows", "application/vnd.apache.arrow.stream"),
                                        ("b.arrow", "application/vnd.apache.arrow.stream"),
                                        ("batch", "application/json")])
def test_submit_sends_the_same_request(binary: str, stub: Stub, tmp_path: Path, name: str, ctype: str) -> None:
    f = tmp_path / name
    f.write_bytes(b"\x00\x01 some bytes \xff\n" * 50)
    stub.add(Canned(on("POST", "/v1/models/m/versions/v/batches"), status=202,
                    body={"batch": {"id": "the-batch"}, "jobs": []}, times=2))
    args = ["submit", "--url", stub.url + "/", "--api-key", "sekret", "--model", "m", "--version", "v", str(f),
            "--idempotency-key", "run-7"]
    py, rs = both(binary, args)
    assert py.returncode == rs.returncode == 0
    assert py.stdout == rs.stdout == "the-batch\n"
    sent_py, sent_rs = stub.matching("POST", "/v1/")
    for r in (sent_py, sent_rs):
        assert r.path == "/v1/models/m/versions/v/batches"
        assert r.body == f.read_bytes()  # the file as it is, uncompressed
        assert r.headers["content-type"] == ctype
        assert r.headers["idempotency-key"] == "run-7"
        assert r.headers["authorization"] == "Bearer sekret"
        assert "content-encoding" not in r.headers


def test_submit_same_idempotency_key_same_batch(binary: str, service_url: str, api_key: str, model: str,
                                                tmp_path: Path) -> None:
    """The service's Idempotency-Key fingerprint covers the request: the binary's retry of the
    Python command's upload (same key, same file) is answered with the same batch."""
    f = ndjson_file(tmp_path / "b.jsonl", n=50)
    key = f"cli-{uuid.uuid4()}"
    py, rs = both(binary, submit_args(service_url, api_key, model, f, "--idempotency-key", key))
    assert py.returncode == rs.returncode == 0
    assert py.stdout == rs.stdout and re.fullmatch(UUID + "\n", py.stdout)
    other = ndjson_file(tmp_path / "other.jsonl", n=50, seed=42)
    py2 = run_py(submit_args(service_url, api_key, model, other, "--idempotency-key", key))
    assert py2.returncode == 3 and py2.stderr.startswith("error: 422 "), py2.stderr


def running_batch(state: str = "running") -> Dict[str, Any]:
    return {"id": "the-batch", "results": [
        {"job_id": "j1", "estimator": "shannon_mi", "value": 0.123456789, "unit": "bits", "ci_low": 0.1, "ci_high": 0.15},
        {"job_id": "j3", "estimator": "semantic_mi", "value": None, "value_special": "infinite", "unit": "bits"},
    ], "jobs": [
        {"id": "j1", "estimator": "shannon_mi", "state": "succeeded"},
        {"id": "j2", "estimator": "ksg", "state": state, "error": {"detail": "k must be below n"}},
        {"id": "j3", "estimator": "semantic_mi", "state": "succeeded"},
    ]}


def test_submit_failed_job_exits_1(binary: str, stub: Stub, tmp_path: Path) -> None:
    f = ndjson_file(tmp_path / "b.ndjson", n=10)
    stub.add(Canned(on("POST", "/v1/"), status=202, body={"batch": {"id": "the-batch"}}, times=2))
    stub.add(Canned(on("GET", "/v1/batches/the-batch"), status=200, body=running_batch("failed"), times=2))
    py, rs = both(binary, ["submit", "--url", stub.url, "--model", "m", "--version", "v", str(f), "--wait"])
    assert py.returncode == rs.returncode == 1, (py.stderr, rs.stderr)
    assert py.stdout == rs.stdout == (
        "the-batch\n"
        "shannon_mi       0.123457 bits [0.1000 , 0.1500]\n"
        "ksg            failed k must be below n\n"
        "semantic_mi      infinite bits [— , —]\n"
    )


def test_submit_unfinished_at_the_timeout_exits_2(binary: str, stub: Stub, tmp_path: Path) -> None:
    f = ndjson_file(tmp_path / "b.ndjson", n=10)
    stub.add(Canned(on("POST", "/v1/"), status=202, body={"batch": {"id": "the-batch"}}, times=2))
    stub.add(Canned(on("GET", "/v1/batches/the-batch"), status=200, body=running_batch(), times=None))
    py, rs = both(binary, ["submit", "--url", stub.url, "--model", "m", "--version", "v", str(f), "--wait",
                           "--timeout", "1"])
    assert py.returncode == rs.returncode == 2
    assert py.stdout == rs.stdout == "the-batch\n"
    assert py.stderr == rs.stderr == "error: jobs still unfinished after 1 s\n"
    polls = len(stub.matching("GET", "/v1/batches/"))
    assert polls >= 4  # each polled every 0.5 s until the timeout


def test_submit_problem_answer_exits_3(binary: str, service_url: str, api_key: str, model: str,
                                       tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{"labels": [0, 1], "probabilities": [[0.5, 0.5]]}')
    py, rs = both(binary, submit_args(service_url, api_key, model, f))
    assert py.returncode == rs.returncode == 3
    assert py.stdout == rs.stdout == ""
    assert py.stderr.startswith("error: 422 ") and rs.stderr.startswith("error: 422 ")
    assert "\n  /" in py.stderr and "\n  /" in rs.stderr  # the field errors' pointers, a line each


# -- errors before or without an answer ------------------------------------------------------


def test_unreachable_service_exits_3(binary: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    f = ndjson_file(tmp_path / "b.ndjson", n=10)
    for args in (["gate", "--url", url, "--model", "m", "--version", "v", "--gate", "g"],
                 ["submit", "--url", url, "--model", "m", "--version", "v", str(f), "--wait"],
                 ["gate", "--url", "not a url", "--model", "m", "--version", "v", "--gate", "g"]):
        py, rs = both(binary, args)
        assert py.returncode == rs.returncode == 3, (args, py.stderr, rs.stderr)
        assert py.stdout == rs.stdout == ""
        assert py.stderr.startswith("error: cannot reach ") and rs.stderr.startswith("error: cannot reach ")


def test_missing_file_exits_3(binary: str, service_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.ndjson"
    py, rs = both(binary, ["submit", "--url", service_url, "--model", "m", "--version", "v", str(missing)])
    assert py.returncode == rs.returncode == 3
    assert py.stdout == rs.stdout == ""
    assert py.stderr == rs.stderr == f"error: cannot read {missing}: No such file or directory (os error 2)\n"


@pytest.mark.parametrize("args", [
    ["gate", "--url", "http://x", "--model", "m", "--version", "v"],  # no --gate
    ["gate", "--url", "http://x", "--model", "m", "--version", "v", "--gate", "g", "--wait", "soon"],
    ["gate", "--url", "http://x", "--model", "m", "--version", "v", "--gate", "g", "--wait", "1_0"],
    ["submit", "--url", "http://x", "--model", "m", "--version", "v"],  # no FILE
    ["submit", "--url", "http://x", "--model", "m", "--version", "v", "f.json", "--timeout", "-1"],
    ["submit", "--url", "http://x", "--model", "m", "--version", "v", "f.json", "--timeout", "1.5"],
    ["submit", "--url", "http://x", "--model", "m", "--version", "v", "f.json", "--vers", "w"],
    ["frobnicate"],
])
def test_bad_arguments_exit_2(binary: str, args: List[str]) -> None:
    py, rs = both(binary, args)
    assert py.returncode == rs.returncode == 2, (py.stderr, rs.stderr)
    assert py.stdout == rs.stdout == ""
    assert "error: " in py.stderr and "error: " in rs.stderr


def test_url_is_required_without_the_environment(binary: str) -> None:
    args = ["gate", "--model", "m", "--version", "v", "--gate", "g"]
    py, rs = both(binary, args, drop=["INFOAUDIT_URL"])
    assert py.returncode == rs.returncode == 2
    assert "--url" in py.stderr and "--url" in rs.stderr


def test_help() -> None:
    top = run_py(["--help"])
    assert top.returncode == 0 and "gate" in top.stdout and "submit" in top.stdout
    for cmd, flags in (("gate", ["--url", "--model", "--version", "--gate", "--wait", "--unit", "--api-key"]),
                       ("submit", ["FILE", "--wait", "--timeout", "--idempotency-key", "--api-key"])):
        out = run_py([cmd, "--help"])
        assert out.returncode == 0
        assert all(f in out.stdout for f in flags), out.stdout
