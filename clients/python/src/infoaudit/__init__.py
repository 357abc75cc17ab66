"""Python client of the infoaudit service.

>>> from infoaudit import Client
>>> client = Client("http://127.0.0.1:8080")          # or $INFOAUDIT_URL / $INFOAUDIT_API_KEY
>>> batch = client.submit("fraud", "v7", labels=y_test, probabilities=model.predict_proba(X_test),
...                       classes=model.classes_)
>>> batch = client.wait(batch)
>>> client.gate("fraud", "v7", gate="release").raise_for_verdict()
"""

from ._client import DEFAULT_URL, Client
from ._http import RetryPolicy, parse_retry_after
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GateError,
    GateFailed,
    GateInconclusive,
    GatePending,
    InfoauditError,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    ValidationError,
    WaitTimeout,
)
from .models import Batch, Decision, UploadInfo

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DEFAULT_URL",
    "RetryPolicy",
    "parse_retry_after",
    "Batch",
    "Decision",
    "UploadInfo",
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
