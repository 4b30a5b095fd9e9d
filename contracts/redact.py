"""One home for keeping secret values out of text built from what a remote sent back."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from pydantic import SecretStr

__all__ = ["Redactor", "mask", "url_forms"]


def mask(text: str, secrets: Iterable[str | SecretStr], placeholder: str = "***") -> str:
    """Replace every occurrence of each secret (6+ characters; shorter values would mask ordinary words) in text."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if len(value) >= 6:
            text = text.replace(value, placeholder)
    return text


def url_forms(secret: str | SecretStr) -> list[str]:
    """The secret as written and as a URL percent-encodes it (``:`` → ``%3A``), without repeats."""
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return list(dict.fromkeys((value, quote(value), quote(value, safe=""))))


class Redactor:
    """Secrets held once, masked out of any text: ``redact(text)``."""

    def __init__(self, *secrets: str | SecretStr, placeholder: str = "***") -> None:
        self._secrets = secrets
        self._placeholder = placeholder

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"

    def __call__(self, text: str) -> str:
        return mask(text, self._secrets, self._placeholder)
