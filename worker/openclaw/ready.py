"""Is the gateway up? ``GET /readyz`` on its HTTP port, for a worker that starts beside it.

A machine image starts the gateway and the worker together, so the worker's Python start,
its store connection and its registration overlap the gateway's own start; the worker only waits
for ``/readyz`` before its first claim (a claim made earlier would hold a lease it cannot use).
"""

from __future__ import annotations

import httpx


def http_base(gateway_url: str) -> str:
    """The gateway's HTTP base for a ``ws(s)://`` or ``http(s)://`` gateway URL."""
    url = gateway_url.rstrip("/")
    return url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)


class ReadyProbe:
    """One ``GET /readyz`` per call: True on 200; False while it refuses, resets or answers otherwise."""

    def __init__(self, gateway_url: str, *, timeout_s: float = 2.0) -> None:
        self._url = f"{http_base(gateway_url)}/readyz"
        self._timeout_s = timeout_s

    async def __call__(self) -> bool:
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=self._timeout_s) as client:
                return (await client.get(self._url)).status_code == 200
        except httpx.HTTPError:
            return False
