"""Keep a secret out of error messages built from text the gateway sent back.

Our own messages never include the token; this guards against a gateway (or a proxy in front of
one) that echoes a credential in an error body.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import SecretStr

from worker.errors import DeliveryError

_MASK = "***"
_E = TypeVar("_E", bound=DeliveryError)


class Redactor:
    def __init__(self, *secrets: SecretStr) -> None:
        # Very short values would mask ordinary words; real tokens are long.
        self._values = [value for s in secrets if len(value := s.get_secret_value()) >= 6]

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, _MASK)
        return text

    def error(self, exc: _E) -> _E:
        clean = self(str(exc))
        return exc if clean == str(exc) else type(exc)(clean)
