"""Python client of Airlock (docs/sdk.md): sandboxes whose only network exit is a policy gateway.

    from airlock_sdk import Sandbox
    with Sandbox.create(role="analyst", ttl_seconds=600) as sb:
        print(sb.exec(["curl", "-s", "http://forum.test:3000/posts/1"])["stdout"])
"""

from ._common import ClientOptions, client_options
from .aio import AsyncAirlockClient, AsyncSandbox
from .errors import (
    AirlockApiError,
    AirlockConnectionError,
    AirlockError,
    ExecTimeoutError,
    ForbiddenError,
    GatewayUnavailableError,
    InvalidRequestError,
    IsolationFailedError,
    RuntimeFailedError,
    RuntimeUnavailableError,
    SandboxRejectedError,
    SessionConflictError,
    SessionNotFoundError,
    UnauthorizedError,
    UnknownRoleError,
    error_from_problem,
)
from .sync import AirlockClient, Sandbox
from .types import DecisionEvent, ExecChunk, ExecResult, SessionInfo

__all__ = [
    "AirlockApiError",
    "AirlockClient",
    "AirlockConnectionError",
    "AirlockError",
    "AsyncAirlockClient",
    "AsyncSandbox",
    "ClientOptions",
    "DecisionEvent",
    "ExecChunk",
    "ExecResult",
    "ExecTimeoutError",
    "ForbiddenError",
    "GatewayUnavailableError",
    "InvalidRequestError",
    "IsolationFailedError",
    "RuntimeFailedError",
    "RuntimeUnavailableError",
    "Sandbox",
    "SandboxRejectedError",
    "SessionConflictError",
    "SessionInfo",
    "SessionNotFoundError",
    "UnauthorizedError",
    "UnknownRoleError",
    "client_options",
    "error_from_problem",
]
