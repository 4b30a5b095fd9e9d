"""Secrets at rest: AES-256-GCM under a key from the environment, the key's id stored with each value.

Only Python ever holds the key (``FACTORY_SECRETS_KEY``): a store keeps ciphertext and the id of the
key that sealed it, never a plaintext value. The Convex module sees ciphertext only; a worker opens
what its hydration bundle carries with the same key, which its launch environment hands it.

A sealed value is ``v1.<base64url(nonce ‖ ciphertext ‖ tag)>``. The secret's name is the associated
data, so a ciphertext copied onto another name does not open. The key id is the first 16 hex digits of
SHA-256 over the key: it names a key without revealing it.

Rotation: ``FACTORY_SECRETS_KEY`` is the key new values are sealed with; ``FACTORY_SECRETS_PREVIOUS_KEYS``
(comma-separated) are keys still accepted for opening. ``factory secrets rotate-key`` re-seals every value
not under the current key (:func:`reseal_all`); values stored before encryption existed (no key id)
are sealed the same way when a store is first opened with a key.

The tree of errors (all :class:`contracts.errors.FactoryError`)::

    SecretsKeyMissing      no key is configured, but a value must be sealed or opened
    SecretsKeyInvalid      the configured key is not a 32-byte key in base64url
    SecretsKeyMismatch     no configured key opens a value (wrong key, or a key id we do not hold)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from contracts.errors import FactoryError, InvalidInput
from contracts.models import require_id

__all__ = [
    "ALGORITHM",
    "KEY_ENV",
    "PREVIOUS_KEYS_ENV",
    "ResealReport",
    "Sealed",
    "SecretBox",
    "SecretsKey",
    "SecretsKeyInvalid",
    "SecretsKeyMismatch",
    "SecretsKeyMissing",
    "new_key",
    "reseal_all",
]

ALGORITHM = "aes-256-gcm"
KEY_ENV = "FACTORY_SECRETS_KEY"
PREVIOUS_KEYS_ENV = "FACTORY_SECRETS_PREVIOUS_KEYS"
_PREFIX = "v1."
_NONCE_BYTES = 12


class SecretsKeyMissing(FactoryError):
    def __init__(self, action: str) -> None:
        super().__init__(
            f"{KEY_ENV}: is not set, and it is needed to {action}; create one with `factory secrets keygen` "
            f"and set {KEY_ENV} (the same key for `factory serve` and every worker)"
        )


class SecretsKeyInvalid(FactoryError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}; `factory secrets keygen` prints a valid key")


class SecretsKeyMismatch(FactoryError):
    # Another key may be configured later: a retry after fixing the environment helps.
    retryable = True

    def __init__(self, secret_ref: str, key_id: str, held: Sequence[str]) -> None:
        super().__init__(
            f"{KEY_ENV}: secret {secret_ref!r} was sealed with key {key_id}, and the configured key(s) "
            f"{', '.join(held) or 'none'} do not open it; set the key it was sealed with "
            f"(or list it in {PREVIOUS_KEYS_ENV} while rotating)"
        )
        self.secret_ref = secret_ref
        self.key_id = key_id


def new_key() -> str:
    """A fresh key as ``FACTORY_SECRETS_KEY`` expects it: 32 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


@dataclass(frozen=True)
class SecretsKey:
    """One AES-256 key and its public id. ``repr`` never shows the key."""

    key_id: str
    _raw: bytes

    @classmethod
    def parse(cls, text: str | SecretStr, *, name: str = KEY_ENV) -> SecretsKey:
        value = (text.get_secret_value() if isinstance(text, SecretStr) else text).strip()
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise SecretsKeyInvalid(name, "is not base64url") from None
        if len(raw) != 32:
            raise SecretsKeyInvalid(name, f"decodes to {len(raw)} bytes; an AES-256 key is 32 bytes")
        return cls(hashlib.sha256(raw).hexdigest()[:16], raw)

    def __repr__(self) -> str:
        return f"SecretsKey(key_id={self.key_id!r})"


@dataclass(frozen=True)
class Sealed:
    """A value as a store keeps it: ciphertext and the id of the key that sealed it."""

    value: str
    key_id: str


class SecretBox:
    """Seals with the current key; opens with the current key or any previous one."""

    def __init__(self, current: SecretsKey, previous: Iterable[SecretsKey] = ()) -> None:
        self.current = current
        self._keys = {current.key_id: current, **{k.key_id: k for k in previous if k.key_id != current.key_id}}

    @classmethod
    def from_settings(cls, key: SecretStr | None, previous: SecretStr | None = None) -> SecretBox | None:
        """The box the settings describe, or None when no key is set."""
        if key is None or not key.get_secret_value().strip():
            return None
        older = [p for p in (previous.get_secret_value() if previous else "").split(",") if p.strip()]
        return cls(SecretsKey.parse(key), [SecretsKey.parse(p, name=PREVIOUS_KEYS_ENV) for p in older])

    def __repr__(self) -> str:
        return f"SecretBox(current={self.current.key_id!r}, keys={len(self._keys)})"

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def seal(self, secret_ref: str, plaintext: str) -> Sealed:
        nonce = os.urandom(_NONCE_BYTES)
        body = AESGCM(self.current._raw).encrypt(nonce, plaintext.encode(), secret_ref.encode())
        return Sealed(_PREFIX + base64.urlsafe_b64encode(nonce + body).decode(), self.current.key_id)

    def open(self, secret_ref: str, sealed: Sealed) -> SecretStr:
        key = self._keys.get(sealed.key_id)
        if key is None or not sealed.value.startswith(_PREFIX):
            raise SecretsKeyMismatch(secret_ref, sealed.key_id, self.key_ids)
        try:
            blob = base64.urlsafe_b64decode(sealed.value[len(_PREFIX) :])
            plain = AESGCM(key._raw).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], secret_ref.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretsKeyMismatch(secret_ref, sealed.key_id, self.key_ids) from None
        return SecretStr(plain.decode())


def open_value(box: SecretBox | None, secret_ref: str, value: str, key_id: str | None) -> SecretStr:
    """A stored value in the clear: sealed values need the box; a legacy plaintext value (no key id)
    is returned as it is until the store is opened with a key and seals it."""
    if key_id is None:
        return SecretStr(value)
    if box is None:
        raise SecretsKeyMissing(f"open secret {secret_ref!r}")
    return box.open(secret_ref, Sealed(value, key_id))


def seal_new(box: SecretBox | None, secret_ref: str, value: SecretStr) -> Sealed:
    """A secret as the store keeps it, after the checks every binding makes the same way."""
    require_id("secretRef", secret_ref)
    if not value.get_secret_value().strip():
        raise InvalidInput("value", "must not be empty; pass the secret's text")
    return require(box, f"store secret {secret_ref!r}").seal(secret_ref, value.get_secret_value())


def require(box: SecretBox | None, action: str) -> SecretBox:
    if box is None:
        raise SecretsKeyMissing(action)
    return box


# --------------------------------------------------------------------------- rotation


class StoredSecretRow(Protocol):
    @property
    def secret_ref(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def value(self) -> SecretStr: ...
    @property
    def key_id(self) -> str | None: ...


class ResealStore(Protocol):
    async def sealed_secrets(self) -> Sequence[StoredSecretRow]: ...

    async def reseal_secret(self, secret_ref: str, version: int, expect_key_id: str | None, sealed: Sealed) -> bool: ...


@dataclass(frozen=True)
class ResealReport:
    resealed: int
    already_current: int
    key_id: str


async def reseal_all(store: ResealStore, box: SecretBox) -> ResealReport:
    """Seal every stored value under the box's current key (plaintext and older keys alike).

    Each row is swapped only if it still carries the key id it was read with, so two runs at once,
    or a value imported meanwhile, never lose a value; rerunning after a crash finishes the job.
    """
    done = current = 0
    for row in await store.sealed_secrets():
        if row.key_id == box.current.key_id:
            current += 1
            continue
        plain = open_value(box, row.secret_ref, row.value.get_secret_value(), row.key_id)
        sealed = box.seal(row.secret_ref, plain.get_secret_value())
        if await store.reseal_secret(row.secret_ref, row.version, row.key_id, sealed):
            done += 1
    return ResealReport(resealed=done, already_current=current, key_id=box.current.key_id)
