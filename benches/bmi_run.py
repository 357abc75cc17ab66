"""The "Beyond Normal" benchmark (benchmark-mi, its v1 list of 40 tasks) through `infoaudit estimate`.

Each task is sampled with the benchmark's own samplers and seeds, written with the benchmark's
own `save_sample` (a CSV of X0…, Y0… columns) and handed to our estimators through the
benchmark's `ExternalEstimator`, exactly as the benchmark runs an external tool: it runs a
command on the file and reads the one number printed. The benchmark's own estimators run on the
same samples in the same process. Every value is in nats.

Run by benches/bmi.sh; see benches/README.md for the published table.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import bmi.benchmark
import bmi.estimators as be
import bmi.utils
from bmi.estimators.external.external_estimator import ExternalEstimator

SOLVED = math.log(1.5)  # the paper's criterion: within a factor 1.5 of the truth


class Infoaudit(ExternalEstimator):
    """One of our estimators, called as the benchmark calls any external command."""

    def __init__(self, binary: str, estimator: str, params: List[str]) -> None:
        self.binary = binary
        self.estimator = estimator
        self.params = params

    def parameters(self) -> None:  # the benchmark's interface; parameters live in the command
        return None

    def _build_command(self, path, dim_x: int, dim_y: int) -> List[str]:
        # The benchmark's temporary files have no extension: the format is named.
        cmd = [self.binary, "estimate", str(path), "--format", "csv", "--estimator",
               self.estimator, "--unit", "nats", "--output", "value"]
        for p in self.params:
            cmd += ["--param", p]
        return cmd


def reference(name: str) -> Callable[[object, object], float]:
    """The benchmark's own estimators with its defaults (the paper's configuration)."""
    if name in ("bmi-ksg5", "bmi-ksg10"):
        k = 5 if name == "bmi-ksg5" else 10
        est = be.KSGEnsembleFirstEstimator(neighborhoods=(k,))
    elif name == "bmi-cca":
        est = be.CCAMutualInformationEstimator()
    elif name == "bmi-infonce":
        est = be.InfoNCEEstimator(verbose=False)
    elif name == "bmi-mine":
        est = be.MINEEstimator(verbose=False)
    elif name == "bmi-nwj":
        est = be.NWJEstimator(verbose=False)
    elif name == "bmi-dv":
        est = be.DonskerVaradhanEstimator(verbose=False)
    else:
        raise SystemExit(f"unknown reference estimator {name}")
    return est.estimate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..S-1 (the paper: 10)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="start at this seed (to add seeds to an earlier run's runs.csv)")
    ap.add_argument("--table-from", default="",
                    help="comma-separated runs.csv files: write the table from them and run nothing")
    ap.add_argument("--ours", default="ksg,infonce,mine,nwj,smile")
    ap.add_argument("--ours-seeds", type=int, default=None,
                    help="seeds for our neural bounds (default: --seeds)")
    ap.add_argument("--reference", default="bmi-ksg5,bmi-ksg10,bmi-cca")
    ap.add_argument("--reference-seeds", type=int, default=None,
                    help="seeds for the reference's neural bounds (default: --seeds)")
    ap.add_argument("--tasks", default="", help="regex on task ids (default: all 40)")
    ap.add_argument("--param", action="append", default=[], help="ESTIMATOR.KEY=VALUE for ours")
    ap.add_argument("--out", default="target/bmi")
    a = ap.parse_args()

    tasks = [(tid, t) for tid, t in bmi.benchmark.BENCHMARK_TASKS.items()
             if re.search(a.tasks, tid)]
    ours = [e for e in a.ours.split(",") if e]
    refs = [e for e in a.reference.split(",") if e]
    neural = {"infonce", "mine", "nwj", "smile", "bmi-infonce", "bmi-mine", "bmi-nwj", "bmi-dv"}
    seeds_of: Dict[str, int] = {}
    for e in ours:
        seeds_of[e] = a.ours_seeds if (e in neural and a.ours_seeds) else a.seeds
    for e in refs:
        seeds_of[e] = a.reference_seeds if (e in neural and a.reference_seeds) else a.seeds
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.table_from:
        merged: List[Dict[str, object]] = []
        for f in a.table_from.split(","):
            with open(f, newline="") as fh:
                for r in csv.DictReader(fh):
                    merged.append({"task": r["task"], "truth": float(r["truth"]),
                                   "est": r["estimator"], "value": float(r["value"]),
                                   "seconds": float(r["seconds"])})
        present = {r["est"] for r in merged}
        table(merged, [n for n in ours + refs if n in present], out / "table.md", a)
        print(f"table: {out / 'table.md'}")
        return 0
    rows_path = out / f"runs-{a.first_seed}.csv" if a.first_seed else out / "runs.csv"
    runs: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="infoaudit-bmi-") as tmp, \
            open(rows_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["task", "truth", "estimator", "seed", "value", "seconds"])
        for tid, task in tasks:
            for seed in range(a.first_seed, a.seeds):
                x, y = task.sample(a.n, seed=seed)
                path = Path(tmp) / f"{tid}-{seed}.csv"
                bmi.utils.save_sample(path, x, y)
                todo: List[Tuple[str, Callable[[], float]]] = []
                for e in ours:
                    if seed < seeds_of[e]:
                        params = [p.split(".", 1)[1] for p in a.param if p.startswith(e + ".")]
                        est = Infoaudit(a.bin, e, params)
                        todo.append((e, lambda est=est, path=path: est.estimate_with_info_from_path(path).mi_estimate))
                for e in refs:
                    if seed < seeds_of[e]:
                        f = reference(e)
                        todo.append((e, lambda f=f, x=x, y=y: float(f(x, y))))
                for name, fn in todo:
                    t0 = time.perf_counter()
                    try:
                        v = float(fn())
                    except Exception as exc:  # a failed run is recorded, not fatal
                        print(f"{tid} seed {seed} {name}: failed: {exc}", file=sys.stderr)
                        v = float("nan")
                    dt = time.perf_counter() - t0
                    w.writerow([tid, task.mutual_information, name, seed, v, f"{dt:.4f}"])
                    fh.flush()
                    runs.append({"task": tid, "truth": task.mutual_information, "est": name,
                                 "value": v, "seconds": dt})
                path.unlink()
            print(f"{tid}: done", file=sys.stderr, flush=True)
    table(runs, ours + refs, out / "table.md", a)
    print(f"runs: {rows_path}\ntable: {out / 'table.md'}")
    return 0


def table(runs, names, path: Path, a) -> None:
    by: Dict[Tuple[str, str], List[Dict[str, object]]] = {}
    order: List[str] = []
    truth: Dict[str, float] = {}
    for r in runs:
        by.setdefault((r["task"], r["est"]), []).append(r)
        if r["task"] not in truth:
            order.append(r["task"])
            truth[r["task"]] = r["truth"]
    solved = {n: 0 for n in names}
    # Ours against the benchmark's own of the same family, where both ran: closer to the truth
    # (by |log(mean / truth)|, the paper's error measure) by more than 5 % of the truth is
    # "better", farther by as much is "worse".
    pairs = [(o, r) for o, r in (("ksg", "bmi-ksg5"), ("infonce", "bmi-infonce"),
                                 ("mine", "bmi-mine"), ("nwj", "bmi-nwj"))
             if o in names and r in names]
    lines = ["| task | true MI | " + " | ".join(names)
             + "".join(f" | {o} vs {r}" for o, r in pairs) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names)
             + " | ---" * len(pairs) + " |"]
    tally = {p: [0, 0] for p in pairs}

    def mean_of(t: str, n: str) -> float:
        vals = [float(r["value"]) for r in by.get((t, n), []) if math.isfinite(float(r["value"]))]
        return statistics.fmean(vals) if vals else float("nan")

    for t in order:
        cells = []
        for n in names:
            rs = by.get((t, n), [])
            vals = [float(r["value"]) for r in rs if math.isfinite(float(r["value"]))]
            if not vals:
                cells.append("–")
                continue
            m = statistics.fmean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0  # shown only for ≥ 2 seeds
            ok = m > 0 and abs(math.log(m / truth[t])) < SOLVED
            solved[n] += ok
            failed = len(rs) - len(vals)
            spread = f" ± {sd:.3f}" if len(vals) > 1 else ""
            cells.append(f"{m:.3f}{spread}{' ✔' if ok else ''}"
                         + (f" ({failed} failed)" if failed else ""))
        for o, r in pairs:
            mo, mr = mean_of(t, o), mean_of(t, r)
            if not (mo > 0 and mr > 0):
                cells.append("–")
                continue
            eo, er = abs(math.log(mo / truth[t])), abs(math.log(mr / truth[t]))
            if eo + 0.05 < er:
                cells.append("**better**")
                tally[(o, r)][0] += 1
            elif er + 0.05 < eo:
                cells.append("*worse*")
                tally[(o, r)][1] += 1
            else:
                cells.append("=")
        lines.append(f"| {t} | {truth[t]:.3f} | " + " | ".join(cells) + " |")
    lines.append("| **within ×1.5 of the truth** | | "
                 + " | ".join(f"**{solved[n]} / {len(order)}**" for n in names)
                 + "".join(f" | {b} better, {w} worse" for b, w in tally.values()) + " |")
    secs = []
    for n in names:
        s = [float(r["seconds"]) for r in runs if r["est"] == n]
        secs.append(f"{statistics.fmean(s):.2f} s" if s else "–")
    lines.append("| seconds per estimate (mean) | | " + " | ".join(secs) + " |" * (len(pairs) + 1))
    seeds = ", ".join(f"{n} {sum(1 for r in runs if r['est'] == n) // max(1, len(order))}"
                      for n in names)
    head = (f"N = {a.n}; mean ± sd over seeds (per estimator, seeds run: {seeds}); "
            "✔ = mean within a factor 1.5 of the truth; values in nats.\n\n")
    path.write_text(head + "\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
