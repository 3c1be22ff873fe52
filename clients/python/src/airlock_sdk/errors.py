"""Errors of the Airlock client.

Every error answer of the API (``application/problem+json``, RFC 9457) becomes an
:class:`AirlockApiError` subclass chosen by its stable ``code`` (docs/errors.md); failures to reach
the API are :class:`AirlockConnectionError`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type


class AirlockError(Exception):
    """Base class of every error this package raises."""


class AirlockConnectionError(AirlockError):
    """The API could not be reached (after the retries, for GET and DELETE)."""

    def __init__(self, message: str, call: str) -> None:
        super().__init__(message)
        self.call = call


class AirlockApiError(AirlockError):
    """An error answer: ``status``, stable ``code``, ``type``, ``detail``, ``field`` (400 only)."""

    def __init__(self, problem: Mapping[str, Any], call: str, request_id: Optional[str] = None) -> None:
        self.status: int = int(problem.get("status", 0))
        self.code: str = str(problem.get("code", ""))
        self.type: str = str(problem.get("type", f"urn:airlock:error:{self.code}"))
        self.detail: str = str(problem.get("detail", ""))
        self.field: Optional[str] = problem.get("field")
        self.request_id = request_id
        self.call = call
        super().__init__(f"{call}: {self.status} {self.code}: {self.detail}")


class InvalidRequestError(AirlockApiError):
    """400 AIRLOCK_REQUEST_INVALID: ``field`` names the offending field."""


class UnauthorizedError(AirlockApiError):
    """401 AIRLOCK_UNAUTHORIZED: no token, or one the API does not know."""


class ForbiddenError(AirlockApiError):
    """403 AIRLOCK_FORBIDDEN: the token may not do this (delegation rules)."""


class SessionNotFoundError(AirlockApiError):
    """404 AIRLOCK_SESSION_NOT_FOUND."""


class SessionConflictError(AirlockApiError):
    """409 AIRLOCK_SESSION_CONFLICT: the session is not in a state that allows this."""


class UnknownRoleError(AirlockApiError):
    """422 AIRLOCK_UNKNOWN_ROLE: the policy has no rule for this role."""


class SandboxRejectedError(AirlockApiError):
    """422 AIRLOCK_SANDBOX_REJECTED: the platform refused the sandbox."""


class RuntimeFailedError(AirlockApiError):
    """502 AIRLOCK_RUNTIME_FAILED: the container runtime failed."""


class RuntimeUnavailableError(AirlockApiError):
    """503 AIRLOCK_RUNTIME_UNAVAILABLE: the container engine cannot be reached; retry later."""


class GatewayUnavailableError(AirlockApiError):
    """503 AIRLOCK_GATEWAY_UNAVAILABLE: no gateway or no valid policy."""


class IsolationFailedError(AirlockApiError):
    """503 AIRLOCK_ISOLATION_FAILED: the sandbox isolation self-test failed."""


class ExecTimeoutError(AirlockApiError):
    """504 AIRLOCK_EXEC_TIMEOUT: the command ran past its time limit."""


_BY_CODE: Dict[str, Type[AirlockApiError]] = {
    "AIRLOCK_REQUEST_INVALID": InvalidRequestError,
    "AIRLOCK_UNAUTHORIZED": UnauthorizedError,
    "AIRLOCK_FORBIDDEN": ForbiddenError,
    "AIRLOCK_SESSION_NOT_FOUND": SessionNotFoundError,
    "AIRLOCK_SESSION_CONFLICT": SessionConflictError,
    "AIRLOCK_UNKNOWN_ROLE": UnknownRoleError,
    "AIRLOCK_SANDBOX_REJECTED": SandboxRejectedError,
    "AIRLOCK_RUNTIME_FAILED": RuntimeFailedError,
    "AIRLOCK_RUNTIME_UNAVAILABLE": RuntimeUnavailableError,
    "AIRLOCK_GATEWAY_UNAVAILABLE": GatewayUnavailableError,
    "AIRLOCK_ISOLATION_FAILED": IsolationFailedError,
    "AIRLOCK_EXEC_TIMEOUT": ExecTimeoutError,
}


def error_from_problem(
    problem: Mapping[str, Any], call: str, request_id: Optional[str] = None
) -> AirlockApiError:
    """The error class of the problem's ``code`` (the base class for other codes)."""
    cls = _BY_CODE.get(str(problem.get("code", "")), AirlockApiError)
    return cls(problem, call, request_id)
