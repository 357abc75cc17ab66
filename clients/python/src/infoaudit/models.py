"""What the client returns: a :class:`Batch` (an upload and, once finished, its results) and a
:class:`Decision` (a gate's verdict). Both keep the service's JSON document in ``raw``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .errors import GateFailed, GateInconclusive, GatePending

__all__ = ["Batch", "Decision", "UploadInfo", "JOB_END_STATES", "VERDICTS"]

#: Job states after which a job does not change any more.
JOB_END_STATES = frozenset({"succeeded", "failed", "cancelled"})
#: Gate verdicts, from best to worst as the command line's exit codes order them.
VERDICTS = ("pass", "warn", "fail", "inconclusive", "pending")


@dataclass(frozen=True)
class UploadInfo:
    """How a batch travelled: body format, content coding, bytes on the wire, the key sent, attempts."""

    content_type: str
    content_encoding: Optional[str]
    wire_bytes: int
    idempotency_key: Optional[str]
    attempts: int


@dataclass
class Batch:
    """A stored batch. After :meth:`Client.submit` it holds the queued jobs; after
    :meth:`Client.wait` (or :meth:`Client.batch`) also the results."""

    raw: Dict[str, Any]
    upload: Optional[UploadInfo] = None

    @classmethod
    def from_accepted(cls, doc: Mapping[str, Any], upload: Optional[UploadInfo] = None) -> "Batch":
        """From the 202 answer of an upload (``{batch, jobs}``)."""
        raw = dict(doc.get("batch") or {})
        raw["jobs"] = list(doc.get("jobs") or [])
        raw.setdefault("results", [])
        return cls(raw=raw, upload=upload)

    @property
    def id(self) -> str:
        return str(self.raw["id"])

    @property
    def model(self) -> str:
        return str(self.raw.get("model", ""))

    @property
    def version(self) -> str:
        return str(self.raw.get("version", ""))

    @property
    def task(self) -> str:
        return str(self.raw.get("task", ""))

    @property
    def n(self) -> int:
        return int(self.raw.get("n", 0))

    @property
    def classes(self) -> List[str]:
        return list(self.raw.get("classes") or [])

    @property
    def digest(self) -> str:
        return str(self.raw.get("digest", ""))

    @property
    def content_type(self) -> str:
        return str(self.raw.get("content_type", ""))

    @property
    def metadata(self) -> Dict[str, Any]:
        return dict(self.raw.get("metadata") or {})

    @property
    def jobs(self) -> List[Dict[str, Any]]:
        return list(self.raw.get("jobs") or [])

    @property
    def results(self) -> List[Dict[str, Any]]:
        return list(self.raw.get("results") or [])

    @property
    def done(self) -> bool:
        """Whether every job has ended (succeeded, failed or cancelled)."""
        return all(j.get("state") in JOB_END_STATES for j in self.jobs)

    @property
    def failed_jobs(self) -> List[Dict[str, Any]]:
        return [j for j in self.jobs if j.get("state") in ("failed", "cancelled")]

    @property
    def unit(self) -> Optional[str]:
        units = {r.get("unit") for r in self.results}
        return units.pop() if len(units) == 1 else None

    def result(self, estimator: str) -> Optional[Dict[str, Any]]:
        """The result of an estimator (the first, if it ran with several parameter sets)."""
        for r in self.results:
            if r.get("estimator") == estimator:
                return r
        return None

    @property
    def values(self) -> Dict[str, Optional[float]]:
        """``{estimator: value}`` of the results (``None`` where the value is not finite)."""
        return {str(r["estimator"]): r.get("value") for r in self.results}

    def __repr__(self) -> str:
        states: Dict[str, int] = {}
        for j in self.jobs:
            s = str(j.get("state"))
            states[s] = states.get(s, 0) + 1
        return (
            f"Batch(id={self.raw.get('id')!r}, model={self.model!r}, version={self.version!r}, "
            f"task={self.task!r}, n={self.n}, jobs={states}, results={len(self.results)})"
        )


@dataclass
class Decision:
    """A stored gate decision.

    ``raise_for_verdict()`` policy (the same as ``infoaudit gate``'s exit codes): ``pass`` and
    ``warn`` return; ``fail`` raises :class:`GateFailed`; ``inconclusive`` raises
    :class:`GateInconclusive`; ``pending`` raises :class:`GatePending`. Pass ``allow=`` to accept
    more verdicts (e.g. ``allow=("pass", "warn", "inconclusive")`` while a metric's interval is
    still wide)."""

    raw: Dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw.get("id", ""))

    @property
    def verdict(self) -> str:
        return str(self.raw.get("verdict", ""))

    @property
    def rules(self) -> List[Dict[str, Any]]:
        return list(self.raw.get("rules") or [])

    @property
    def model(self) -> str:
        return str(self.raw.get("model", ""))

    @property
    def version(self) -> str:
        return str(self.raw.get("version", ""))

    @property
    def policy(self) -> Optional[Dict[str, Any]]:
        p = self.raw.get("policy")
        return dict(p) if isinstance(p, Mapping) else None

    @property
    def unit(self) -> str:
        return str(self.raw.get("unit", ""))

    @property
    def passed(self) -> bool:
        """``pass`` or ``warn``."""
        return self.verdict in ("pass", "warn")

    def explain(self) -> str:
        """A short text: the verdict and one line per rule."""
        where = f"{self.model}/{self.version}"
        policy = self.policy
        if policy:
            where += f" gate {policy.get('name')!s} v{policy.get('version')!s}"
        lines = [f"{where}: {self.verdict}"]
        for r in self.rules:
            lines.append(f"  [{r.get('verdict')}] {r.get('metric')}: {r.get('message', '')}")
        return "\n".join(lines)

    def raise_for_verdict(self, allow: Iterable[str] = ("pass", "warn")) -> "Decision":
        """Return ``self`` when the verdict is in ``allow``; raise the matching :class:`GateError` otherwise."""
        allowed: Tuple[str, ...] = tuple(allow)
        v = self.verdict
        if v in allowed:
            return self
        if v == "pending":
            raise GatePending(self)
        if v == "inconclusive":
            raise GateInconclusive(self)
        raise GateFailed(self)

    def __repr__(self) -> str:
        return f"Decision(verdict={self.verdict!r}, model={self.model!r}, version={self.version!r}, rules={len(self.rules)})"


