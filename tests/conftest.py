"""Shared test settings: every async test runs on asyncio through anyio's pytest plugin."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.gateway_fixture", "tests.convex_fixture"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
