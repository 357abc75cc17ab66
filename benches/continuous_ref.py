"""Reference side of `cargo bench --bench continuous` (see benches/README.md, section "continuous").

Usage: python continuous_ref.py DATA_DIR

Loads the little-endian f64 files written by benches/continuous.rs and times:
- scikit-learn `mutual_info_regression(x[:, None], y, n_neighbors=3, random_state=0)` on each
  Gaussian pair of the manifest, N = 1e4 and 1e5 (keys sk_small, sk_large, named by the
  manifest; its 1e-10 noise is on, as users run it);
- a chunked numpy brute force of bmi's KSGEnsembleFirstEstimator algorithm (standardise,
  Euclidean within each space, max across, k = 5 and 10, mean of the two, unclipped) on the 5x5
  dense Gaussian, N = 5000 (key bmi_5x5).
Timings: best and median of at least 3 runs (the Rust side's rule). Prints one JSON line on
stdout, or {"skipped": "..."} when numpy / scikit-learn / scipy are missing.
"""

import json
import os
import platform
import sys
import time

MIN_RUNS = 3
MAX_RUNS = 15
if os.environ.get("INFOAUDIT_BENCH_QUICK") == "1":
    # --quick on the Rust side: values are checked, timings are not the point.
    MIN_RUNS = MAX_RUNS = 1
BUDGET_S = 2.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def time_it(f):
    times, spent = [], 0.0
    while True:
        t0 = time.perf_counter()
        last = f()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if len(times) >= MAX_RUNS or (len(times) >= MIN_RUNS and spent >= BUDGET_S):
            break
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return {"best": times[0], "median": median, "runs": n}, last


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import numpy as np
        import sklearn
        from scipy.special import digamma
        from sklearn.feature_selection import mutual_info_regression
    except ImportError as e:
        print(json.dumps({"skipped": f"numpy/scipy/scikit-learn not importable: {e}"}))
        return 0
    d = sys.argv[1]
    man = json.load(open(os.path.join(d, "continuous_manifest.json")))["files"]

    def load(name):
        m = man[name]
        x = np.fromfile(os.path.join(d, f"{name}_x.f64"), "<f8").reshape(m["n"], m["dx"])
        y = np.fromfile(os.path.join(d, f"{name}_y.f64"), "<f8").reshape(m["n"], m["dy"])
        return x, y

    def ksg_bmi(x, y, ks=(5, 10), chunk=500):
        # bmi centres too; Euclidean distances do not change under translation, so dividing only
        # keeps the rounding identical to the Rust side.
        x = x / x.std(0)
        y = y / y.std(0)
        n = len(x)
        kmax = max(ks)
        eps = {k: np.empty(n) for k in ks}
        dxs, dys = [], []
        for s in range(0, n, chunk):
            dx = np.sqrt(((x[s:s + chunk, None, :] - x[None, :, :]) ** 2).sum(-1))
            dy = np.sqrt(((y[s:s + chunk, None, :] - y[None, :, :]) ** 2).sum(-1))
            dz = np.maximum(dx, dy)
            idx = np.arange(s, min(s + chunk, n))
            dz[idx - s, idx] = np.inf
            part = np.sort(np.partition(dz, kmax - 1, axis=1)[:, :kmax], axis=1)
            for k in ks:
                eps[k][s:s + chunk] = part[:, k - 1]
            dxs.append(dx)
            dys.append(dy)
        vals = []
        for k in ks:
            nx = np.concatenate([(dx < eps[k][s:s + chunk, None]).sum(1) for s, dx in zip(range(0, n, chunk), dxs)]) - 1
            ny = np.concatenate([(dy < eps[k][s:s + chunk, None]).sum(1) for s, dy in zip(range(0, n, chunk), dys)]) - 1
            vals.append(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))
        return float(np.mean(vals))

    timings, values = {}, {}
    for name, meta in man.items():
        key = meta.get("sklearn_key")
        if key is None:
            continue
        x, y = load(name)
        log(f"reference: mutual_info_regression {name} ...")
        t, v = time_it(lambda: mutual_info_regression(x, y[:, 0], n_neighbors=3, random_state=0)[0])
        timings[key], values[key] = t, float(v)
    x, y = load("cont_dense5")
    log("reference: numpy brute-force bmi KSG 5x5 ...")
    t, v = time_it(lambda: ksg_bmi(x, y))
    timings["bmi_5x5"], values["bmi_5x5"] = t, v
    print(json.dumps({
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "timings": timings,
        "values": values,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
