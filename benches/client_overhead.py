"""Python client against raw HTTP for one upload of N samples × K classes (default 10^5 × 10).

    python benches/client_overhead.py URL API_KEY [N] [K]

Times, over 7 runs each (median, min), on the same data and service:
  client      Client.submit(model, version, labels=y, probabilities=p): encoding (Arrow when
              pyarrow is installed) + upload + parsing the 202
  raw arrow   requests.post of Arrow IPC bytes built beforehand (the same body the client sends)
  raw ndjson  requests.post of NDJSON text built beforehand
The client's overhead is client − raw arrow: what the encoding and its checks cost."""

import statistics
import sys
import time
import uuid

import numpy as np
import pyarrow as pa
import requests

from infoaudit import Client

url, key = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
k = int(sys.argv[4]) if len(sys.argv) > 4 else 10
rng = np.random.default_rng(7)
p = rng.dirichlet(np.ones(k), n)
y = rng.integers(0, k, n)
model = f"overhead-{uuid.uuid4().hex[:8]}"
query = {"task": "multiclass", "estimators": "shannon_mi"}
headers = {"authorization": f"Bearer {key}"}

table = pa.table({"label": pa.array(y, type=pa.int64()),
                  "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), k)})
sink = pa.BufferOutputStream()
with pa.ipc.new_stream(sink, table.schema) as w:
    for b in table.to_batches(max_chunksize=65536):
        w.write_batch(b)
arrow_body = sink.getvalue().to_pybytes()
ndjson_body = "".join(
    '{"label":%d,"probabilities":[%s]}\n' % (y[i], ",".join(repr(v) for v in p[i].tolist()))
    for i in range(n)).encode()


def timed(f, runs=7):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return statistics.median(out), min(out)


def raw(body, ctype):
    def go():
        r = requests.post(f"{url}/v1/models/{model}/versions/raw/batches", params=query,
                          headers={**headers, "content-type": ctype}, data=body)
        assert r.status_code == 202, r.text
    return go


with Client(url, key) as c:
    c.submit(model, "warm", labels=y[:100], probabilities=p[:100], estimators=["shannon_mi"])
    results = {
        "client": timed(lambda: c.submit(model, "client", labels=y, probabilities=p,
                                         estimators=["shannon_mi"])),
        "raw arrow": timed(raw(arrow_body, "application/vnd.apache.arrow.stream")),
        "raw ndjson": timed(raw(ndjson_body, "application/x-ndjson")),
    }
    sent = c.submit(model, "client", labels=y[:10], probabilities=p[:10]).upload.content_type
print(f"N = {n}, K = {k}; the client sent {sent}; Arrow body {len(arrow_body) / 1e6:.1f} MB, "
      f"NDJSON {len(ndjson_body) / 1e6:.1f} MB")
for name, (med, best) in results.items():
    print(f"{name:<11} median {med * 1000:7.1f} ms   min {best * 1000:7.1f} ms")
c_med, a_med = results["client"][0], results["raw arrow"][0]
print(f"client overhead over raw Arrow: {(c_med - a_med) * 1000:.1f} ms ({c_med / a_med:.2f}x)")
