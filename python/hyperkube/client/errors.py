"""Typed API errors, built from the ``Status`` object the API server returns.

Every non-2xx answer (and every watch ``ERROR`` event) carries a ``metav1.Status`` with ``code``,
``reason``, ``message`` and ``details``. :func:`error_from_status` maps it onto one exception class
per reason, mirroring client-go's ``k8s.io/apimachinery/pkg/api/errors`` predicates
(``IsNotFound``, ``IsAlreadyExists``, ``IsConflict``, ``IsGone``/``IsResourceExpired`` ...), so
callers write ``except NotFound`` instead of comparing numbers. The reason wins over the code when
both are known (409 ``AlreadyExists`` is not a ``Conflict``), as upstream does.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer from the API server; ``status`` is the server's Status object."""

    code: int = 0
    reason: str = ""

    def __init__(self, message: str, *, code: int | None = None, status: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status: dict[str, Any] = status or {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": message,
        }
        self.reason = self.status.get("reason") or self.reason

    @property
    def details(self) -> dict[str, Any]:
        return self.status.get("details") or {}

    @property
    def retry_after(self) -> float | None:
        d = self.details.get("retryAfterSeconds")
        return float(d) if d else None

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}" if self.reason else f"{self.code}: {self.message}"


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class NotAcceptable(ApiError):
    code, reason = 406, "NotAcceptable"


class Conflict(ApiError):
    """409 Conflict: a stale resourceVersion (optimistic concurrency) or a conflicting operation."""

    code, reason = 409, "Conflict"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Gone(ApiError):
    """410: the requested resourceVersion has been compacted; re-list."""

    code, reason = 410, "Gone"


class Expired(Gone):
    """410 ``Expired``: a too-old resourceVersion or an expired continue token."""

    reason = "Expired"


class RequestEntityTooLarge(ApiError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    """422: the object failed validation; ``causes`` lists the fields."""

    code, reason = 422, "Invalid"

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list(self.details.get("causes") or [])


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"


class InternalError(ApiError):
    code, reason = 500, "InternalError"


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


class ServerTimeout(ApiError):
    code, reason = 504, "Timeout"


_BY_REASON: dict[str, type[ApiError]] = {
    "BadRequest": BadRequest,
    "Unauthorized": Unauthorized,
    "Forbidden": Forbidden,
    "NotFound": NotFound,
    "MethodNotAllowed": MethodNotAllowed,
    "NotAcceptable": NotAcceptable,
    "Conflict": Conflict,
    "AlreadyExists": AlreadyExists,
    "Gone": Gone,
    "Expired": Expired,
    "RequestEntityTooLarge": RequestEntityTooLarge,
    "UnsupportedMediaType": UnsupportedMediaType,
    "Invalid": Invalid,
    "TooManyRequests": TooManyRequests,
    "InternalError": InternalError,
    "ServiceUnavailable": ServiceUnavailable,
    "Timeout": ServerTimeout,
    "ServerTimeout": ServerTimeout,
}
_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    406: NotAcceptable,
    409: Conflict,
    410: Gone,
    413: RequestEntityTooLarge,
    415: UnsupportedMediaType,
    422: Invalid,
    429: TooManyRequests,
    500: InternalError,
    503: ServiceUnavailable,
    504: ServerTimeout,
}


def error_from_status(status: dict[str, Any] | None, code: int | None = None, body: str = "") -> ApiError:
    """The typed error for a Status object (or for a bare HTTP code when the body is not a Status)."""
    if not isinstance(status, dict) or status.get("kind") not in ("Status", None):
        status = None
    if status is not None:
        code = int(status.get("code") or code or 0)
        reason = status.get("reason") or ""
        message = status.get("message") or reason or body or f"HTTP {code}"
        cls = _BY_REASON.get(reason) or _BY_CODE.get(code, ApiError)
        return cls(message, code=code, status=status)
    code = code or 0
    cls = _BY_CODE.get(code, ApiError)
    return cls(body.strip() or f"HTTP {code}", code=code)


__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Expired",
    "Forbidden",
    "Gone",
    "InternalError",
    "Invalid",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "RequestEntityTooLarge",
    "ServerTimeout",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_from_status",
]
