"""Typed errors. Every error the client raises derives from :class:`InfoauditError`.

An answer of the service that is not a success becomes a :class:`ProblemError` (or one of its
subclasses, chosen by status code) carrying the RFC 9457 problem document the service sent:
``status``, ``title``, ``detail``, ``type`` and, for validation problems, ``errors`` (each with a
JSON ``pointer`` into a JSON body, or the ``row`` and ``column`` of an NDJSON or CSV body).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Type

if TYPE_CHECKING:  # pragma: no cover
    from .models import Batch, Decision

__all__ = [
    "InfoauditError",
    "TransportError",
    "ProblemError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ValidationError",
    "Unavailable",
    "RateLimited",
    "ServerError",
    "WaitTimeout",
    "GateError",
    "GateFailed",
    "GateInconclusive",
    "GatePending",
]


class InfoauditError(Exception):
    """Base class of every error raised by this package."""


class TransportError(InfoauditError):
    """The service could not be reached (connection refused or reset, DNS, timeout), after retries."""


class ProblemError(InfoauditError):
    """The service answered with an error status; ``problem`` is its problem+json document."""

    status: int
    title: str
    detail: Optional[str]
    type: str
    errors: List[Dict[str, Any]]
    problem: Dict[str, Any]
    retry_after: Optional[float]

    def __init__(
        self,
        status: int,
        problem: Optional[Mapping[str, Any]] = None,
        *,
        method: str = "",
        url: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        doc: Dict[str, Any] = dict(problem or {})
        self.status = int(doc.get("status") or status)
        self.title = str(doc.get("title") or f"HTTP {status}")
        detail = doc.get("detail")
        self.detail = None if detail is None else str(detail)
        self.type = str(doc.get("type") or "about:blank")
        errors = doc.get("errors") or []
        self.errors = [dict(e) for e in errors if isinstance(e, Mapping)]
        self.problem = doc
        self.method = method
        self.url = url
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{self.status} {self.title}"
        if self.detail:
            head += f": {self.detail}"
        if self.method or self.url:
            head += f" ({self.method} {self.url})".replace("( ", "(")
        lines = [head]
        for e in self.errors[:10]:
            place = e.get("pointer")
            if place is None and e.get("row") is not None:
                place = f"row {e['row']}" + (f", column {e['column']}" if e.get("column") else "")
            elif place is None and e.get("column"):
                place = f"column {e['column']}"
            lines.append(f"  {place or '-'}: {e.get('message', '')}")
        if len(self.errors) > 10:
            lines.append(f"  … and {len(self.errors) - 10} more")
        return "\n".join(lines)

    @property
    def pointers(self) -> List[str]:
        """The JSON Pointers of the field errors (those that have one)."""
        return [str(e["pointer"]) for e in self.errors if e.get("pointer")]


class BadRequest(ProblemError):
    """400: malformed request (not JSON, a corrupt compressed body, a bad query parameter)."""


class Unauthorized(ProblemError):
    """401: no API key, or the key is not valid."""


class Forbidden(ProblemError):
    """403: the key lacks the scope, or is limited to other models."""


class NotFound(ProblemError):
    """404: no such model, version, batch, job, policy or decision."""


class Conflict(ProblemError):
    """409: e.g. a request with the same Idempotency-Key is still in flight."""


class PayloadTooLarge(ProblemError):
    """413: the body (or its decoded form) is over the service's upload limit."""


class UnsupportedMediaType(ProblemError):
    """415: a Content-Type or Content-Encoding the service does not accept."""


class ValidationError(ProblemError):
    """422: invalid input; ``errors`` lists every offending value with its pointer (or row and column)."""


class Unavailable(ProblemError):
    """503: overloaded, draining, or its database is unreachable (raised once retries are spent)."""


class RateLimited(Unavailable):
    """429: the key's rate limit was exceeded (raised once retries are spent)."""


class ServerError(ProblemError):
    """Any other 5xx answer."""


_BY_STATUS: Dict[int, Type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    429: RateLimited,
    503: Unavailable,
}


def problem_class(status: int) -> Type[ProblemError]:
    """The exception class for an error status."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else ProblemError


class WaitTimeout(InfoauditError):
    """``Client.wait`` ran out of time; ``batch`` is the last state seen."""

    def __init__(self, message: str, batch: "Batch") -> None:
        super().__init__(message)
        self.batch = batch


class GateError(InfoauditError):
    """Raised by ``Decision.raise_for_verdict()``; ``decision`` is the decision that was judged."""

    def __init__(self, decision: "Decision") -> None:
        self.decision = decision
        super().__init__(decision.explain())


class GateFailed(GateError):
    """The verdict is ``fail``: a critical rule was violated."""


class GateInconclusive(GateError):
    """The verdict is ``inconclusive``: an interval straddles a threshold, too few samples, or an unreliable metric."""


class GatePending(GateError):
    """The verdict is ``pending``: required jobs had not finished by the deadline."""
