"""The Python SDK's tests run against a real `airlock serve` (started by test/e2e/sdk.test.ts), which
passes AIRLOCK_API_URL, AIRLOCK_API_TOKEN and AIRLOCK_TEST_FORUM (the forum's URL inside a sandbox)."""

import os

import pytest


@pytest.fixture(scope="session")
def forum() -> str:
    url = os.environ.get("AIRLOCK_TEST_FORUM")
    if not url or not os.environ.get("AIRLOCK_API_URL") or not os.environ.get("AIRLOCK_API_TOKEN"):
        pytest.fail("AIRLOCK_API_URL, AIRLOCK_API_TOKEN and AIRLOCK_TEST_FORUM must be set (run through test/e2e/sdk.test.ts)")
    return url
