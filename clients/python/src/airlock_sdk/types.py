"""Wire types of the Airlock API (docs/api.md, ``GET /openapi.json``), as TypedDicts."""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Union

if sys.version_info >= (3, 11):
    from typing import Literal, NotRequired, TypedDict
else:  # pragma: no cover
    from typing_extensions import Literal, NotRequired, TypedDict


class SessionInfo(TypedDict):
    """A session: one sandbox whose only network exit is the egress gateway."""

    id: str
    role: str
    status: Literal["running", "stopping", "stopped"]
    image: str
    createdAt: str
    expiresAt: str
    createdBy: str
    labels: Dict[str, str]


class ExecResult(TypedDict):
    """The answer of a (non-streamed) exec."""

    exitCode: int
    stdout: str
    stderr: str


class DecisionEvent(TypedDict):
    """One gateway decision (audit event); more optional fields are documented in docs/api.md."""

    time: str
    sessionId: Optional[str]
    role: Optional[str]
    method: str
    scheme: str
    host: str
    port: int
    path: str
    decision: Literal["allow", "deny"]
    rule: Optional[str]
    reason: str
    status: int
    durationMs: float
    bytesOut: int
    bytesIn: int
    policyVersion: Optional[str]


class OutputChunk(TypedDict):
    """Output of a streamed exec as it arrives."""

    stream: Literal["stdout", "stderr"]
    data: str


class ExitChunk(TypedDict):
    """The last item of a streamed exec."""

    exitCode: int


ExecChunk = Union[OutputChunk, ExitChunk]
Command = List[str]
