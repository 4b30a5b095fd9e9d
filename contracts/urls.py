"""One home for the rule about where a credential may travel.

A token (a store token, a deploy key, a cloud API token, a bot token in a URL path) goes over
``https://`` anywhere, and over plain ``http://`` only to this machine's loopback (local fakes,
the Convex stand-in, a tunnel). Anything else would hand it to whoever is on the network path.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["check_token_url", "is_loopback"]


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_token_url(url: str) -> str:
    """``url`` if a credential may be sent to it; else ValueError saying why and what to use.

    For pydantic validators (a ValueError becomes one line naming the setting)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} must be an https:// URL with a host")
    if scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"{url!r} is plain http to {parts.hostname}: a token would cross the network in clear; use https://"
        )
    return url
