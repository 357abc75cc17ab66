"""Reference side of `cargo bench --bench discrete` (see benches/README.md).

Usage: python discrete_sklearn.py DATA_DIR

Loads the files written by benches/discrete.rs (raw little-endian binaries described by
DATA_DIR/manifest.json), times scikit-learn / numpy on them (best and median of at least 3 runs,
the same rule as the Rust side), checks the values against the Rust values stored in the
manifest and prints one JSON object on stdout (human-readable notes go to stderr). If numpy or
scikit-learn is missing it prints {"skipped": "..."} and exits 0.
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


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def time_it(f):
    times = []
    spent = 0.0
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
        from sklearn.metrics import (
            adjusted_mutual_info_score,
            mutual_info_score,
            normalized_mutual_info_score,
        )
    except ImportError as e:
        print(json.dumps({"skipped": f"numpy/scikit-learn not importable: {e}"}))
        return 0

    data_dir = sys.argv[1]
    with open(os.path.join(data_dir, "manifest.json")) as fh:
        manifest = json.load(fh)
    cases = manifest["cases"]

    def load_u32(name):
        return np.fromfile(os.path.join(data_dir, name), dtype="<u4").astype(np.int64)

    timings = {}
    values = {}

    # 1. MI + NMI + AMI, N = 10^6, K = 100 (sklearn builds its contingency table in each call).
    c = cases["disc"]
    y, p = load_u32(c["labels"]), load_u32(c["preds"])
    assert y.shape == (c["n"],) and p.shape == (c["n"],)
    log("sklearn: mutual_info_score + normalized_mutual_info_score + adjusted_mutual_info_score N=1e6 K=100 ...")

    def trio():
        return (
            mutual_info_score(y, p),
            normalized_mutual_info_score(y, p),
            adjusted_mutual_info_score(y, p),
        )

    timings["disc_trio"], (mi, nmi, ami) = time_it(trio)
    values["disc_mi"], values["disc_nmi"], values["disc_ami"] = float(mi), float(nmi), float(ami)

    # 2. AMI with 1000 x 1000 classes, N = 50,000.
    c = cases["wide"]
    y, p = load_u32(c["labels"]), load_u32(c["preds"])
    log("sklearn: adjusted_mutual_info_score N=5e4 K=1000 ...")
    timings["wide_ami"], ami = time_it(lambda: adjusted_mutual_info_score(y, p))
    values["wide_ami"] = float(ami)

    # 3. Semantic MI (probabilities mode) as plain numpy:
    #    G = mean_k log(q[k, y_k] / mean_k' q[k', y_k]).
    c = cases["sem"]
    n, k = c["n"], c["k"]
    y = np.fromfile(os.path.join(data_dir, c["labels"]), dtype="<u4").astype(np.intp)
    q = np.fromfile(os.path.join(data_dir, c["probs"]), dtype="<f8").reshape(n, k)
    rows = np.arange(n)
    log("numpy: semantic G N=1e6 K=100 ...")

    def semantic_g():
        t = q.mean(axis=0)
        return np.mean(np.log(q[rows, y] / t[y]))

    timings["sem_numpy"], g = time_it(semantic_g)
    values["sem_g"] = float(g)
    log("numpy: q.sum() ...")
    timings["sum_numpy"], s = time_it(lambda: q.sum())
    values["sum"] = float(s)

    # Agreement with the Rust values.
    tol = manifest.get("tolerance", 1e-9)
    agree = {}
    for key, rust in manifest.get("rust_values", {}).items():
        ref = values.get(key)
        if ref is None or rust is None:
            continue
        diff = abs(ref - rust)
        agree[key] = diff <= tol * max(1.0, abs(rust))
        log(
            f"  {key:9s} rust {rust:.15g}  reference {ref:.15g}  |diff| {diff:.2e}"
            f"  {'ok' if agree[key] else 'MISMATCH'}"
        )
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "sklearn": sklearn.__version__,
                "timings": timings,
                "values": values,
                "agree": agree,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
