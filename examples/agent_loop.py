"""An agent loop whose tools run in an Airlock sandbox (Python SDK).

The model is scripted so the example runs anywhere (test/e2e/sdk.test.ts runs it); put your LLM call in
``next_action``: it gets the transcript and answers with a tool call or a final answer. Whatever the
model asks for, the tools' only network exit is the egress gateway: a call the role may not make comes
back as a 403 with ``egress_denied``, handed back to the model as a tool result.

    AIRLOCK_API_URL=http://127.0.0.1:8080 AIRLOCK_API_TOKEN=$(cat .airlock/api-token) \\
      PYTHONPATH=clients/python/src python3 examples/agent_loop.py
"""

import json
from typing import Any, Callable, Dict, List

from airlock_sdk import Sandbox


def curl(sb: Sandbox, args: List[str]) -> Dict[str, Any]:
    out = sb.exec(["curl", "-s", "-w", "\n%{http_code}", *args], timeout_seconds=30)
    body, _, status = out["stdout"].rpartition("\n")
    return {"status": int(status), "body": body}


TOOLS: Dict[str, Callable[[Sandbox, Dict[str, Any]], Dict[str, Any]]] = {
    "http_get": lambda sb, a: curl(sb, [a["url"]]),
    "http_post": lambda sb, a: curl(
        sb, ["-X", "POST", "-H", "content-type: application/json", "-d", json.dumps(a["body"]), a["url"]]
    ),
}


def next_action(transcript: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The scripted model: read a post, then (wrongly) try to answer it publicly."""
    script = [
        {"tool": "http_get", "args": {"url": "http://forum.test:3000/posts/1"}},
        {
            "tool": "http_post",
            "args": {"url": "http://forum.test:3000/comments", "body": {"postId": 1, "body": "Just open it."}},
        },
    ]
    step = sum(1 for m in transcript if m["role"] == "tool")
    return script[step] if step < len(script) else {"final": "done: read the post; posting was refused by policy"}


def main() -> None:
    with Sandbox.create(role="analyst", ttl_seconds=300, labels={"agent": "example"}) as sb:
        transcript: List[Dict[str, Any]] = [{"role": "user", "content": "Analyze forum post 1."}]
        for _ in range(10):
            action = next_action(transcript)
            if "final" in action:
                print("final", action["final"])
                break
            result = TOOLS[action["tool"]](sb, action["args"])
            error = f" {json.loads(result['body'])['error']}" if result["status"] == 403 else ""
            print(f"tool {action['tool']} {action['args']['url']} -> {result['status']}{error}")
            transcript.append({"role": "tool", "name": action["tool"], "content": json.dumps(result)})
        counts = {"allow": 0, "deny": 0}
        for event in sb.decisions(poll_s=0.1):
            counts[event["decision"]] += 1
            if counts["allow"] + counts["deny"] == len(transcript) - 1:
                break
        print(f"decisions: {counts['allow']} allowed, {counts['deny']} denied")


if __name__ == "__main__":
    main()
