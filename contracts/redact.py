"""One home for keeping secret values out of text built from what a remote sent back."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr


def mask(text: str, secrets: Iterable[str | SecretStr], placeholder: str = "***") -> str:
    """Replace every occurrence of each secret (6+ characters; shorter values would mask ordinary words) in text."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if len(value) >= 6:
            text = text.replace(value, placeholder)
    return text
