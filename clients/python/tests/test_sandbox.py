"""The Python SDK against a real `airlock serve`, Docker sandboxes and json-server as the forum."""

import asyncio
import json
import os
from typing import List

import pytest

from airlock_sdk import (
    AirlockApiError,
    AsyncSandbox,
    DecisionEvent,
    InvalidRequestError,
    Sandbox,
    SessionNotFoundError,
    UnauthorizedError,
    UnknownRoleError,
)


def curl(url: str, *extra: str) -> List[str]:
    return ["curl", "-s", "-w", "\\n%{http_code}", *extra, url]


def test_sync_sandbox_exec_decisions_and_kill(forum: str) -> None:
    with Sandbox.create(role="analyst", ttl_seconds=600, labels={"sdk": "python"}) as sb:
        assert sb.id.startswith("s-") and sb.role == "analyst" and sb.info["status"] == "running"
        read = sb.exec(curl(f"{forum}/posts/1"))
        body, status = read["stdout"].rsplit("\n", 1)
        assert read["exitCode"] == 0 and status == "200"
        assert json.loads(body)["id"] == 1
        post = sb.exec(curl(f"{forum}/comments", "-X", "POST", "-H", "content-type: application/json", "-d", "{}"))
        denied, status = post["stdout"].rsplit("\n", 1)
        assert status == "403" and json.loads(denied)["error"] == "egress_denied"

        chunks = list(sb.exec_stream(["sh", "-c", "echo out; echo err >&2; exit 3"]))
        assert {"stream": "stdout", "data": "out\n"} in chunks
        assert {"stream": "stderr", "data": "err\n"} in chunks
        assert chunks[-1] == {"exitCode": 3}

        seen: List[DecisionEvent] = []
        for event in sb.decisions(poll_s=0.2):
            seen.append(event)
            if len(seen) == 2:
                break
        assert [(e["method"], e["path"], e["decision"]) for e in seen] == [
            ("GET", "/posts/1", "allow"),
            ("POST", "/comments", "deny"),
        ]
        session_id = sb.id
    # Leaving the block killed the session: it is gone (or stopping) and refuses further commands.
    try:
        again = Sandbox.connect(session_id)
        assert again.info["status"] != "running"
        again.client.close()
    except SessionNotFoundError as err:
        assert err.status == 404 and err.code == "AIRLOCK_SESSION_NOT_FOUND"


def test_decisions_end_when_the_session_is_killed(forum: str) -> None:
    sb = Sandbox.create(role="analyst")
    sb.exec(curl(f"{forum}/posts/2"))
    sb.kill()
    events = list(sb.decisions(poll_s=0.2))  # ends by itself: the session is gone
    assert [e["path"] for e in events] == ["/posts/2"]
    sb.close()


def test_async_sandbox(forum: str) -> None:
    async def run() -> None:
        async with await AsyncSandbox.create(role="analyst", ttl_seconds=300) as sb:
            out = await sb.exec(curl(f"{forum}/posts/1"))
            assert out["stdout"].endswith("\n200")
            chunks = [c async for c in sb.exec_stream(["echo", "hi"])]
            assert chunks == [{"stream": "stdout", "data": "hi\n"}, {"exitCode": 0}]
            async for event in sb.decisions(poll_s=0.2):
                assert (event["decision"], event["path"]) == ("allow", "/posts/1")
                break

    asyncio.run(run())


def test_errors_carry_the_api_codes(forum: str) -> None:
    with pytest.raises(UnknownRoleError) as unknown:
        Sandbox.create(role="no-such-role")
    assert unknown.value.status == 422 and unknown.value.code == "AIRLOCK_UNKNOWN_ROLE"
    with pytest.raises(InvalidRequestError) as invalid:
        Sandbox.create(role="analyst", ttl_seconds=0)
    assert invalid.value.field == "ttlSeconds" and invalid.value.status == 400
    with pytest.raises(UnauthorizedError) as unauthorized:
        Sandbox.create(role="analyst", token="not-a-token")
    assert unauthorized.value.code == "AIRLOCK_UNAUTHORIZED"
    with pytest.raises(SessionNotFoundError):
        Sandbox.connect("s-doesnotexist")
    assert issubclass(SessionNotFoundError, AirlockApiError)
    assert os.environ["AIRLOCK_API_TOKEN"]  # the right token was used for everything above
