"""Retries only for idempotent calls, against a real HTTP server on loopback that answers 503."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Tuple

import pytest

from airlock_sdk import AirlockClient, AirlockConnectionError, GatewayUnavailableError, client_options

PROBLEM = b'{"type":"urn:airlock:error:AIRLOCK_GATEWAY_UNAVAILABLE","title":"x","status":503,"detail":"down","code":"AIRLOCK_GATEWAY_UNAVAILABLE"}'


@pytest.fixture()
def unavailable() -> Iterator[Tuple[str, List[str]]]:
    calls: List[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            calls.append(self.command)
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self.send_response(503)
            self.send_header("content-type", "application/problem+json")
            self.send_header("content-length", str(len(PROBLEM)))
            self.end_headers()
            self.wfile.write(PROBLEM)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


def test_get_and_delete_are_retried_post_is_not(unavailable: Tuple[str, List[str]]) -> None:
    url, calls = unavailable
    client = AirlockClient(client_options(url, "t", retries=2, retry_base_delay_s=0.01, retry_max_delay_s=0.02))
    with pytest.raises(GatewayUnavailableError):
        client.request("GET", "/v1/sessions")
    assert calls == ["GET"] * 3
    calls.clear()
    with pytest.raises(GatewayUnavailableError):
        client.request("DELETE", "/v1/sessions/s-x")
    assert calls == ["DELETE"] * 3
    calls.clear()
    with pytest.raises(GatewayUnavailableError) as post:
        client.request("POST", "/v1/sessions", {"role": "analyst"})
    assert calls == ["POST"] and post.value.status == 503
    client.close()


def test_connection_failures_name_the_api() -> None:
    client = AirlockClient(client_options("http://127.0.0.1:9", "t", retries=1, retry_base_delay_s=0.01, retry_max_delay_s=0.01))
    with pytest.raises(AirlockConnectionError, match="cannot reach the Airlock API at http://127.0.0.1:9"):
        client.request("GET", "/v1/sessions")
    client.close()
