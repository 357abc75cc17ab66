#!/usr/bin/env python3
"""Hostile and unlucky clients against a running release binary, on loopback: the figures of the
slow-client, labels-memory, labels-contention and segment-work reproductions.

    python3 benches/hostile.py target/release/infoaudit [--only 7,8,9,10]

Starts `BINARY serve` on its own embedded PostgreSQL (a temporary data folder, removed at the
end) and prints one line per figure. Standard library only; run it with the binary of two
commits to compare them. Everything it starts it stops; every loop is bounded in count and time.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, body=None, ctype="application/json", timeout=60):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", ctype)
    t = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), time.time() - t
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.time() - t
    except Exception as e:  # noqa: BLE001 - a refused or dropped request is a figure too
        return 0, str(e).encode(), time.time() - t


def proc_status(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return -1
    return -1


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def classifier(n, k, seed):
    import random

    rnd = random.Random(seed)
    labels, probs = [], []
    for _ in range(n):
        y = rnd.randrange(k)
        p = [rnd.random() * 0.2 for _ in range(k)]
        p[y] += 1.0
        s = sum(p)
        labels.append(y)
        probs.append([v / s for v in p])
    return labels, probs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--only", default="7,8,9,10")
    a = ap.parse_args()
    only = set(a.only.split(","))
    data = tempfile.mkdtemp(prefix="ia-hostile-", dir="/tmp")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(os.path.join(data, "serve.log"), "w")
    env = dict(os.environ, RUST_LOG="warn")
    env.pop("DATABASE_URL", None)
    svc = subprocess.Popen(
        [a.binary, "serve", "--role", "all", "--addr", f"127.0.0.1:{port}", "--data-dir", data],
        stdout=log, stderr=log, env=env, start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while http("GET", url + "/readyz", timeout=2)[0] != 200:
            if time.time() > deadline or svc.poll() is not None:
                sys.exit("the service did not become ready: " + open(log.name).read()[-2000:])
            time.sleep(0.2)
        pid = svc.pid
        if "7" in only:
            slow_clients(url, port, pid)
        if "8" in only:
            labels_memory(url, pid)
        if "9" in only:
            labels_contention(url, data)
        if "10" in only:
            segment_work(url)
    finally:
        os.killpg(svc.pid, 15)
        try:
            svc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(svc.pid, 9)
        shutil.rmtree(data, ignore_errors=True)


def slow_clients(url, port, pid):
    # Partial headers: how many of 300 connections are still held after 15 s.
    socks = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/models/m/versions/v1/batches HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    time.sleep(15)
    held = 0
    for s in socks:
        s.setblocking(False)
        try:
            held += s.recv(1) != b""
        except BlockingIOError:
            held += 1
        except OSError:
            pass
        s.close()
    print(f"7 partial headers: {held} of 300 connections still held after 15 s")
    # Stalled uploads: 400 with Content-Length 100000 and 25 bytes sent; meanwhile a small upload.
    labels, probs = classifier(200, 3, 1)
    body = {"task": "multiclass", "labels": labels, "probabilities": probs}
    http("POST", url + "/v1/models/m/versions/v1/batches", body)
    threads0 = proc_status(pid, "Threads")
    stalled = []
    for i in range(400):
        s = socket.create_connection(("127.0.0.1", port))
        path = "/v1/models/m/versions/v1/batches" if i % 2 == 0 else "/v1/models/m/labels"
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: 100000\r\n\r\n{{\"ids\": [\"a\", \"b\"".encode())
        stalled.append(s)
    time.sleep(1)
    threads1 = proc_status(pid, "Threads")
    st, _, up = http("POST", url + "/v1/models/m/versions/v1/batches", body, timeout=30)
    sl, _, lt = http("POST", url + "/v1/models/m/labels", {"ids": ["nobody"], "labels": [0]},
                     timeout=30)
    print(f"7 400 stalled bodies: API threads {threads0} -> {threads1}; a small upload {st} in "
          f"{up:.3f} s, a labels request {sl} in {lt:.3f} s")
    start = time.time()
    while True:
        still_open = 0
        for s in stalled:
            s.setblocking(False)
            try:
                s.recv(1, socket.MSG_PEEK)  # an answer or a close: no longer held
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        if still_open == 0 or time.time() - start > 60:
            break
        time.sleep(1)
    for s in stalled:
        s.close()
    print(f"7 stalled bodies still held after {time.time() - start:.0f} s: {still_open} of 400")


def labels_memory(url, pid):
    labels, probs = classifier(1000, 3, 2)
    ids = [f"s{i}" for i in range(1000)]
    http("POST", url + "/v1/models/mem/versions/v1/batches",
         {"task": "multiclass", "ids": ids, "probabilities": probs})
    rss0 = proc_status(pid, "VmHWM")
    # About 128 MB of NDJSON labels for ids no batch carries.
    line = b'{"id": "nobody-%08d", "label": 1}\n'
    body = b"".join(line % i for i in range(3_800_000))
    t = time.time()
    st, ans, took = http("POST", url + "/v1/models/mem/labels", body, "application/x-ndjson",
                         timeout=600)
    rss1 = proc_status(pid, "VmHWM")
    print(f"8 labels body of {len(body) / 1e6:.0f} MB: {st} in {took:.1f} s; API peak RSS "
          f"{rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB")


def labels_contention(url, data):
    labels, probs = classifier(60, 2, 3)
    ids = [f"x{i}" for i in range(60)]
    http("POST", url + "/v1/models/busy/versions/v1/batches",
         {"task": "multiclass", "ids": ids, "probabilities": probs})
    labels2, probs2 = classifier(20, 2, 4)
    http("POST", url + "/v1/models/other/versions/v1/batches",
         {"task": "multiclass", "labels": labels2, "probabilities": probs2})
    sock = os.path.join(data, "postgres")
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    holder = subprocess.Popen(
        runas + [psql, "-h", sock, "-U", "postgres", "-d", "infoaudit", "-c",
                 "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended(id::text, 41)) FROM models "
                 "WHERE name = 'busy'; SELECT pg_sleep(12); COMMIT;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    results = []

    def post(i):
        results.append(http("POST", url + "/v1/models/busy/labels",
                            {"ids": [f"x{i}"], "labels": [labels[i]]}, timeout=60)[0])

    ts = [threading.Thread(target=post, args=(i,)) for i in range(40)]
    for t in ts:
        t.start()
    time.sleep(2)
    st, body, took = http("GET", url + "/v1/models/other", timeout=30)
    kind = ""
    if st != 200:
        try:
            kind = json.loads(body).get("type", "").rsplit("/", 1)[-1]
        except ValueError:
            kind = body[:80].decode(errors="replace")
    for t in ts:
        t.join(90)
    holder.wait(30)
    counts = {s: results.count(s) for s in sorted(set(results))}
    print(f"9 a model's labels lock held 12 s with 40 labels requests waiting: an unrelated read "
          f"{st} {kind} in {took:.2f} s; the labels requests answered {counts}")


def segment_work(url):
    n = 20_000
    labels, probs = classifier(n, 4, 5)
    segments = {f"k{j}": [f"v{(i * (j + 3)) % 10_000}" for i in range(n)] for j in range(8)}
    t = time.time()
    st, ans, took = http("POST", url + "/v1/models/seg/versions/v1/batches",
                         {"task": "multiclass", "labels": labels, "probabilities": probs,
                          "segments": segments, "max_segment_values": 10_000}, timeout=120)
    if st != 202:
        print(f"10 segmented upload: {st} {ans[:200]!r}")
        return
    batch = json.loads(ans)["batch"]["id"]
    deadline = time.time() + 240
    while time.time() < deadline:
        _, b, _ = http("GET", f"{url}/v1/batches/{batch}", timeout=120)
        jobs = json.loads(b)["jobs"]
        if all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs):
            break
        time.sleep(2)
    total = time.time() - t
    _, b, bt = http("GET", f"{url}/v1/batches/{batch}", timeout=120)
    jobs = json.loads(b)["jobs"]
    states = {j["estimator"]: j["state"] for j in jobs}
    _, v, vt = http("GET", f"{url}/v1/models/seg/versions/v1", timeout=120)
    print(f"10 20 000 rows, 8 keys x 10 000 segment values: 202 in {took:.1f} s; jobs {states} "
          f"after {total:.0f} s (waited at most 240); GET batch {len(b) / 1e6:.2f} MB in "
          f"{bt:.2f} s, version summary {len(v) / 1e6:.2f} MB in {vt:.2f} s")


if __name__ == "__main__":
    main()
