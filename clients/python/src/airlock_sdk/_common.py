"""What the sync and async clients share: options, defaults, retry policy, problem parsing."""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional
from urllib.parse import quote

import httpx

from .errors import AirlockApiError, AirlockError, error_from_problem

#: Statuses after which an idempotent call (GET, DELETE) is retried.
RETRIABLE_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True)
class ClientOptions:
    """How to reach the API. Build with :func:`client_options` (defaults and checks)."""

    api_url: str
    token: str
    retries: int
    retry_base_delay_s: float
    retry_max_delay_s: float
    timeout_s: float


def client_options(
    api_url: Optional[str] = None,
    token: Optional[str] = None,
    retries: int = 3,
    retry_base_delay_s: float = 0.2,
    retry_max_delay_s: float = 2.0,
    timeout_s: float = 3600.0,
) -> ClientOptions:
    """Applies the defaults: ``api_url`` from ``AIRLOCK_API_URL`` (else http://127.0.0.1:8080), ``token``
    from ``AIRLOCK_API_TOKEN`` (else ``.airlock/api-token``). Raises :class:`AirlockError` naming a bad
    option."""
    url = (api_url or os.environ.get("AIRLOCK_API_URL") or "http://127.0.0.1:8080").rstrip("/")
    if not re.match(r"^https?://[^/]+", url):
        raise AirlockError(f"api_url must be an http(s) URL such as http://127.0.0.1:8080, got {url!r}")
    tok = token or os.environ.get("AIRLOCK_API_TOKEN")
    if not tok:
        f = Path(".airlock") / "api-token"
        if f.exists():
            tok = f.read_text().strip()
    if not tok:
        raise AirlockError(
            "no API token: pass token=, set AIRLOCK_API_TOKEN, or run where `airlock serve` keeps .airlock/api-token"
        )
    if not isinstance(retries, int) or retries < 0:
        raise AirlockError(f"retries must be a non-negative integer, got {retries!r}")
    if retry_base_delay_s < 0 or retry_max_delay_s < retry_base_delay_s:
        raise AirlockError("retry_max_delay_s cannot be less than retry_base_delay_s (both >= 0)")
    return ClientOptions(url, tok, retries, retry_base_delay_s, retry_max_delay_s, timeout_s)


def headers(opts: ClientOptions) -> Dict[str, str]:
    return {
        "authorization": f"Bearer {opts.token}",
        "accept": "application/json, application/problem+json, application/x-ndjson",
    }


def session_path(session_id: str) -> str:
    return f"/v1/sessions/{quote(session_id, safe='')}"


def backoff_s(attempt: int, opts: ClientOptions) -> float:
    """Full-jitter exponential backoff, in seconds."""
    return random.uniform(0, min(opts.retry_max_delay_s, opts.retry_base_delay_s * (2**attempt)))


def problem_error(res: httpx.Response, call: str) -> AirlockApiError:
    """The typed error of an error answer (problem+json; anything else keeps the status)."""
    try:
        body: Any = json.loads(res.text)
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            raise ValueError("no code")
    except ValueError:
        body = {"status": res.status_code, "code": f"HTTP_{res.status_code}", "detail": res.text[:500]}
    body.setdefault("status", res.status_code)
    return error_from_problem(body, call, res.headers.get("x-request-id"))


def exec_body(command: list, timeout_seconds: Optional[int], stream: bool) -> Dict[str, Any]:
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise AirlockError("command must be a non-empty list of strings (argv, no shell)")
    body: Dict[str, Any] = {"command": command}
    if timeout_seconds is not None:
        body["timeoutSeconds"] = timeout_seconds
    if stream:
        body["stream"] = True
    return body


class SseParser:
    """Server-sent event frames (WHATWG HTML "Server-sent events"): feed lines, get (event, data)."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list = []

    def feed(self, line: str) -> Optional[tuple]:
        line = line[:-1] if line.endswith("\r") else line
        if line == "":
            frame = (self.event, "\n".join(self.data)) if self.data else None
            self.event, self.data = "message", []
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None


def event_key(event: Dict[str, Any]) -> str:
    """Identity of an audit event, to skip one the stream and the trail both carry."""
    return json.dumps(event, sort_keys=True)


def stream_item(line: str, call: str) -> Dict[str, Any]:
    item = json.loads(line)
    if "error" in item:
        raise error_from_problem({"code": item["error"], "detail": item.get("detail", "")}, call)
    return item
