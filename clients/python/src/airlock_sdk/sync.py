"""The synchronous client: ``with Sandbox.create(role="analyst") as sb: sb.exec([...])``."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Callable, Dict, Iterator, List, Optional, cast
from urllib.parse import quote

import httpx

from ._common import (
    RETRIABLE_STATUS,
    ClientOptions,
    SseParser,
    backoff_s,
    client_options,
    event_key,
    exec_body,
    headers,
    problem_error,
    session_path,
    stream_item,
)
from .errors import AirlockApiError, AirlockConnectionError, AirlockError, SessionNotFoundError
from .types import DecisionEvent, ExecChunk, ExecResult, SessionInfo


def _epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO-8601 time (``...Z``)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class AirlockClient:
    """Low-level client: bearer token, JSON, typed errors, retries for GET/DELETE only."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._http = httpx.Client(base_url=options.api_url, headers=headers(options), timeout=options.timeout_s)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """Calls the API; returns the parsed JSON (None for 204). Raises AirlockApiError subclasses."""
        res = self._send(method, path, body)
        return res.json() if res.content else None

    def _send(self, method: str, path: str, body: Optional[Dict[str, Any]]) -> httpx.Response:
        call = f"{method} {path}"
        idempotent = method in ("GET", "DELETE")
        attempt = 0
        while True:
            last = not idempotent or attempt >= self.options.retries
            try:
                res = self._http.request(method, path, json=body)
            except httpx.TransportError as err:
                if last:
                    raise AirlockConnectionError(
                        f"{call}: cannot reach the Airlock API at {self.options.api_url}: {err}", call
                    ) from err
            else:
                if res.is_success:
                    return res
                if last or res.status_code not in RETRIABLE_STATUS:
                    raise problem_error(res, call)
            time.sleep(backoff_s(attempt, self.options))
            attempt += 1

    def stream_lines(
        self, path: str, body: Optional[Dict[str, Any]], method: str = "POST", keep_empty: bool = False
    ) -> Iterator[str]:
        """Calls and yields the lines of a streamed answer (NDJSON; SSE with ``keep_empty``). Never
        retried once it started."""
        call = f"{method} {path}"
        try:
            with self._http.stream(method, path, json=body, timeout=httpx.Timeout(self.options.timeout_s, read=None)) as res:
                if not res.is_success:
                    res.read()
                    raise problem_error(res, call)
                for line in res.iter_lines():
                    if keep_empty or line.strip():
                        yield line
        except httpx.TransportError as err:
            raise AirlockConnectionError(f"{call}: {err}", call) from err


class Sandbox:
    """One Airlock session. Create with :meth:`create`; a context manager that kills it on exit."""

    def __init__(self, client: AirlockClient, info: SessionInfo) -> None:
        self.client = client
        self.info = info
        self._killed = False

    @classmethod
    def create(
        cls,
        role: str,
        *,
        ttl_seconds: Optional[int] = None,
        image: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        labels: Optional[Dict[str, str]] = None,
        api_url: Optional[str] = None,
        token: Optional[str] = None,
        retries: int = 3,
    ) -> "Sandbox":
        """Creates a session (never retried). Raises UnknownRoleError (422), ForbiddenError (403),
        InvalidRequestError (400), IsolationFailedError / GatewayUnavailableError (503)."""
        client = AirlockClient(client_options(api_url, token, retries))
        body: Dict[str, Any] = {"role": role}
        for key, value in (("ttlSeconds", ttl_seconds), ("image", image), ("env", env), ("labels", labels)):
            if value is not None:
                body[key] = value
        try:
            info = cast(SessionInfo, client.request("POST", "/v1/sessions", body))
        except BaseException:
            client.close()
            raise
        return cls(client, info)

    @classmethod
    def connect(cls, session_id: str, *, api_url: Optional[str] = None, token: Optional[str] = None) -> "Sandbox":
        """An existing session. Raises SessionNotFoundError (404)."""
        client = AirlockClient(client_options(api_url, token))
        try:
            return cls(client, cast(SessionInfo, client.request("GET", session_path(session_id))))
        except BaseException:
            client.close()
            raise

    @property
    def id(self) -> str:
        return self.info["id"]

    @property
    def role(self) -> str:
        return self.info["role"]

    def refresh(self) -> SessionInfo:
        """Reads the session again. Raises SessionNotFoundError once it is gone."""
        self.info = cast(SessionInfo, self.client.request("GET", session_path(self.id)))
        return self.info

    def exec(self, command: List[str], *, timeout_seconds: Optional[int] = None) -> ExecResult:
        """Runs argv ``command`` (no shell) and waits. Raises ExecTimeoutError (504) past the limit."""
        body = exec_body(command, timeout_seconds, False)
        return cast(ExecResult, self.client.request("POST", f"{session_path(self.id)}/exec", body))

    def exec_stream(self, command: List[str], *, timeout_seconds: Optional[int] = None) -> Iterator[ExecChunk]:
        """Runs ``command`` with live output: ``{"stream", "data"}`` chunks, then ``{"exitCode"}``."""
        path = f"{session_path(self.id)}/exec"
        ended = False
        for line in self.client.stream_lines(path, exec_body(command, timeout_seconds, True)):
            item = stream_item(line, f"POST {path}")
            ended = ended or "exitCode" in item
            yield cast(ExecChunk, item)
        if not ended:
            raise AirlockError(f"POST {path}: the output stream ended without an exit code")

    def decisions(self, *, poll_s: float = 0.5, from_start: bool = True) -> Iterator[DecisionEvent]:
        """The session's gateway decisions as they happen (audit events): those already recorded
        (unless ``from_start=False``), then each new one, from the API's server-sent events
        (``GET /v1/events?sessionId=``; polling the audit every ``poll_s`` against an API without
        it). Ends when the session is gone, after one last read of its trail."""
        since = time.time() if not from_start else float("-inf")
        seen: set = set()
        audit = f"{session_path(self.id)}/audit"

        def fresh(e: DecisionEvent) -> bool:
            key = event_key(dict(e))
            if key in seen or _epoch(e["time"]) < since:
                return False
            seen.add(key)
            return True

        def trail() -> List[DecisionEvent]:
            return list(self.client.request("GET", audit)["events"])

        try:
            sse = SseParser()
            path = f"/v1/events?sessionId={quote(self.id, safe='')}"
            for line in self.client.stream_lines(path, None, method="GET", keep_empty=True):
                frame = sse.feed(line)
                if frame is None:
                    continue
                if frame[0] == "decision":
                    event = cast(DecisionEvent, json.loads(frame[1]))
                    if fresh(event):
                        yield event
                elif frame[0] == "end":
                    break
        except SessionNotFoundError:
            pass  # already gone: its trail below
        except AirlockApiError as err:
            if err.code != "AIRLOCK_ROUTE_NOT_FOUND":
                raise
            yield from self._poll_decisions(poll_s, fresh, trail)
            return
        yield from (e for e in trail() if fresh(e))

    def _poll_decisions(
        self, poll_s: float, fresh: Callable[[DecisionEvent], bool], trail: Callable[[], List[DecisionEvent]]
    ) -> Iterator[DecisionEvent]:
        while True:
            yield from (e for e in trail() if fresh(e))
            try:
                alive = self.refresh()["status"] == "running"
            except SessionNotFoundError:
                alive = False
            if not alive:
                yield from (e for e in trail() if fresh(e))
                return
            time.sleep(poll_s)

    def kill(self) -> None:
        """The kill switch (DELETE, retried): the gateway refuses the session's traffic, then the
        sandbox is removed. A session already gone counts as killed."""
        try:
            self.client.request("DELETE", session_path(self.id))
        except SessionNotFoundError:
            pass
        self._killed = True

    def close(self) -> None:
        """Kills the session (once) and closes the HTTP client."""
        try:
            if not self._killed:
                self.kill()
        finally:
            self.client.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
