"""Writing a finished batch's results to an MLflow run (``pip install 'infoaudit[mlflow]'``).

For each result of the batch, in one ``log_batch`` call per 1000 entries:

* metrics ``infoaudit.<estimator>`` (the value), ``infoaudit.<estimator>.ci_low`` and
  ``infoaudit.<estimator>.ci_high`` (where the interval has that end), and
  ``infoaudit.<estimator>.<statistic>`` for each numeric top-level statistic in ``details``
  (e.g. ``infoaudit.shannon_mi.nmi``); all in the batch's unit (bits unless the batch was read with
  ``unit="nats"``), timestamped with the result's ``computed_at``;
* params ``infoaudit.<estimator>.<param>`` (every estimator parameter, defaults filled in) and
  ``infoaudit.<estimator>.estimator_version``;
* tags ``infoaudit.batch_id``, ``infoaudit.model``, ``infoaudit.version``, ``infoaudit.unit``,
  ``infoaudit.digest``, and ``infoaudit.<estimator>.value_special`` for a value that is not finite
  (semantic MI can be −∞; MLflow gets no metric then) and ``infoaudit.<estimator>.state`` for a job
  that failed or was cancelled.

An estimator that ran with several parameter sets in one batch gets ``#2``, ``#3`` … after its
name for the second and later sets.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

from .errors import InfoauditError
from .models import JOB_END_STATES, Batch

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

__all__ = ["log_batch_results", "PREFIX"]

PREFIX = "infoaudit"
#: Per log_batch request (MLflow allows 1000 metrics, 100 params, 100 tags, 1000 entries in all).
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 800, 100, 100


def _millis(ts: Optional[str]) -> int:
    if ts:
        try:
            return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    return int(datetime.now().timestamp() * 1000)


def _param_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def log_batch_results(
    batch: Union[Batch, Mapping[str, Any]],
    run_id: Optional[str] = None,
    client: Optional["MlflowClient"] = None,
    *,
    step: int = 0,
) -> Dict[str, Dict[str, Any]]:
    """Log a finished batch's results to an MLflow run.

    ``batch``: a :class:`~infoaudit.Batch` from ``Client.wait`` or ``Client.batch`` (or its JSON
    document). ``run_id``: the run to write to; default the active run (``mlflow.start_run()``).
    ``client``: the ``mlflow.MlflowClient`` to write with; default one for the current tracking
    URI. Raises :class:`~infoaudit.InfoauditError` when a job has not ended yet (call
    ``Client.wait`` first) and ``ValueError`` when there is no run to write to.

    Returns what was logged: ``{"metrics": {...}, "params": {...}, "tags": {...}}``.
    """
    try:
        import mlflow
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as e:  # pragma: no cover
        raise InfoauditError("the MLflow bridge needs mlflow (pip install 'infoaudit[mlflow]')") from e

    b = batch if isinstance(batch, Batch) else Batch(raw=dict(batch))
    unfinished = [j for j in b.jobs if j.get("state") not in JOB_END_STATES]
    if unfinished:
        raise InfoauditError(
            f"batch {b.id} is not finished: {len(unfinished)} job(s) queued or running "
            f"({sorted({str(j.get('estimator')) for j in unfinished})}); call Client.wait(batch) first"
        )
    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ValueError("no run_id given and no active MLflow run (use mlflow.start_run())")
        run_id = active.info.run_id
    mlc = client if client is not None else MlflowClient()

    metrics: Dict[str, float] = {}
    stamps: Dict[str, int] = {}
    params: Dict[str, str] = {}
    tags: Dict[str, str] = {
        f"{PREFIX}.batch_id": b.id,
        f"{PREFIX}.model": b.model,
        f"{PREFIX}.version": b.version,
        f"{PREFIX}.digest": b.digest,
    }
    if b.unit:
        tags[f"{PREFIX}.unit"] = b.unit

    # Name each job's estimator once, numbering repeated estimators in job order.
    names: Dict[str, str] = {}
    seen: Dict[str, int] = {}
    for j in sorted(b.jobs, key=lambda j: (str(j.get("created_at", "")), str(j.get("id")))):
        est = str(j.get("estimator"))
        seen[est] = seen.get(est, 0) + 1
        names[str(j.get("id"))] = est if seen[est] == 1 else f"{est}#{seen[est]}"
        if j.get("state") in ("failed", "cancelled"):
            tags[f"{PREFIX}.{names[str(j.get('id'))]}.state"] = str(j.get("state"))

    for r in b.results:
        name = names.get(str(r.get("job_id")), str(r.get("estimator")))
        base = f"{PREFIX}.{name}"
        ts = _millis(r.get("computed_at"))
        if _finite(r.get("value")):
            metrics[base] = float(r["value"])
        elif r.get("value_special"):
            tags[f"{base}.value_special"] = str(r["value_special"])
        for end in ("ci_low", "ci_high"):
            if _finite(r.get(end)):
                metrics[f"{base}.{end}"] = float(r[end])
        for k, v in (r.get("details") or {}).items():
            key = f"{base}.{k}"
            if _finite(v) and key not in metrics:
                metrics[key] = float(v)
        for k in list(metrics):
            if k == base or k.startswith(base + "."):
                stamps.setdefault(k, ts)
        params[f"{base}.estimator_version"] = str(r.get("estimator_version", ""))
        for k, v in (r.get("params") or {}).items():
            params[f"{base}.{k}"] = _param_value(v)

    metric_list = [Metric(k, v, stamps.get(k, _millis(None)), step) for k, v in metrics.items()]
    param_list = [Param(k, v) for k, v in params.items()]
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    while metric_list or param_list or tag_list:
        mlc.log_batch(
            run_id,
            metrics=metric_list[:_MAX_METRICS],
            params=param_list[:_MAX_PARAMS],
            tags=tag_list[:_MAX_TAGS],
        )
        metric_list, param_list, tag_list = (
            metric_list[_MAX_METRICS:],
            param_list[_MAX_PARAMS:],
            tag_list[_MAX_TAGS:],
        )
    return {"metrics": metrics, "params": params, "tags": tags}

