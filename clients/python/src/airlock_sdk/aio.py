"""The asyncio client: ``async with await AsyncSandbox.create(role="analyst") as sb: await sb.exec([...])``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Dict, List, Optional, cast
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
from .sync import _epoch
from .types import DecisionEvent, ExecChunk, ExecResult, SessionInfo


class AsyncAirlockClient:
    """Low-level asyncio client: bearer token, JSON, typed errors, retries for GET/DELETE only."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._http = httpx.AsyncClient(
            base_url=options.api_url, headers=headers(options), timeout=options.timeout_s
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """Calls the API; returns the parsed JSON (None for 204). Raises AirlockApiError subclasses."""
        call = f"{method} {path}"
        idempotent = method in ("GET", "DELETE")
        attempt = 0
        while True:
            last = not idempotent or attempt >= self.options.retries
            try:
                res = await self._http.request(method, path, json=body)
            except httpx.TransportError as err:
                if last:
                    raise AirlockConnectionError(
                        f"{call}: cannot reach the Airlock API at {self.options.api_url}: {err}", call
                    ) from err
            else:
                if res.is_success:
                    return res.json() if res.content else None
                if last or res.status_code not in RETRIABLE_STATUS:
                    raise problem_error(res, call)
            await asyncio.sleep(backoff_s(attempt, self.options))
            attempt += 1

    async def stream_lines(
        self, path: str, body: Optional[Dict[str, Any]], method: str = "POST", keep_empty: bool = False
    ) -> AsyncIterator[str]:
        """Calls and yields the lines of a streamed answer (NDJSON; SSE with ``keep_empty``)."""
        call = f"{method} {path}"
        try:
            async with self._http.stream(
                method, path, json=body, timeout=httpx.Timeout(self.options.timeout_s, read=None)
            ) as res:
                if not res.is_success:
                    await res.aread()
                    raise problem_error(res, call)
                async for line in res.aiter_lines():
                    if keep_empty or line.strip():
                        yield line
        except httpx.TransportError as err:
            raise AirlockConnectionError(f"{call}: {err}", call) from err


class AsyncSandbox:
    """One Airlock session (asyncio). ``async with`` kills it on exit."""

    def __init__(self, client: AsyncAirlockClient, info: SessionInfo) -> None:
        self.client = client
        self.info = info
        self._killed = False

    @classmethod
    async def create(
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
    ) -> "AsyncSandbox":
        """Creates a session (never retried); raises as :meth:`airlock_sdk.Sandbox.create`."""
        client = AsyncAirlockClient(client_options(api_url, token, retries))
        body: Dict[str, Any] = {"role": role}
        for key, value in (("ttlSeconds", ttl_seconds), ("image", image), ("env", env), ("labels", labels)):
            if value is not None:
                body[key] = value
        try:
            info = cast(SessionInfo, await client.request("POST", "/v1/sessions", body))
        except BaseException:
            await client.aclose()
            raise
        return cls(client, info)

    @property
    def id(self) -> str:
        return self.info["id"]

    @property
    def role(self) -> str:
        return self.info["role"]

    async def refresh(self) -> SessionInfo:
        self.info = cast(SessionInfo, await self.client.request("GET", session_path(self.id)))
        return self.info

    async def exec(self, command: List[str], *, timeout_seconds: Optional[int] = None) -> ExecResult:
        body = exec_body(command, timeout_seconds, False)
        return cast(ExecResult, await self.client.request("POST", f"{session_path(self.id)}/exec", body))

    async def exec_stream(
        self, command: List[str], *, timeout_seconds: Optional[int] = None
    ) -> AsyncIterator[ExecChunk]:
        path = f"{session_path(self.id)}/exec"
        ended = False
        async for line in self.client.stream_lines(path, exec_body(command, timeout_seconds, True)):
            item = stream_item(line, f"POST {path}")
            ended = ended or "exitCode" in item
            yield cast(ExecChunk, item)
        if not ended:
            raise AirlockError(f"POST {path}: the output stream ended without an exit code")

    async def decisions(self, *, poll_s: float = 0.5, from_start: bool = True) -> AsyncIterator[DecisionEvent]:
        """As :meth:`airlock_sdk.Sandbox.decisions`: server-sent events, polling as the fallback."""
        since = time.time() if not from_start else float("-inf")
        seen: set = set()
        audit = f"{session_path(self.id)}/audit"

        def fresh(e: DecisionEvent) -> bool:
            key = event_key(dict(e))
            if key in seen or _epoch(e["time"]) < since:
                return False
            seen.add(key)
            return True

        async def trail() -> List[DecisionEvent]:
            return list((await self.client.request("GET", audit))["events"])

        poll = False
        try:
            sse = SseParser()
            path = f"/v1/events?sessionId={quote(self.id, safe='')}"
            async for line in self.client.stream_lines(path, None, method="GET", keep_empty=True):
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
            pass
        except AirlockApiError as err:
            if err.code != "AIRLOCK_ROUTE_NOT_FOUND":
                raise
            poll = True
        while poll:
            for e in await trail():
                if fresh(e):
                    yield e
            try:
                poll = (await self.refresh())["status"] == "running"
            except SessionNotFoundError:
                poll = False
            if poll:
                await asyncio.sleep(poll_s)
        for e in await trail():
            if fresh(e):
                yield e

    async def kill(self) -> None:
        try:
            await self.client.request("DELETE", session_path(self.id))
        except SessionNotFoundError:
            pass
        self._killed = True

    async def aclose(self) -> None:
        try:
            if not self._killed:
                await self.kill()
        finally:
            await self.client.aclose()

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
