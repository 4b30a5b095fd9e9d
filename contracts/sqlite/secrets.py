"""Secrets (ciphertext and key ids, never a plaintext once a key is set) and the app API's tokens."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from pydantic import SecretStr

from contracts.ingress import AppToken, SecretInfo, StoredSecret
from contracts.secrets import Sealed, SecretBox, open_value, require


def import_secret(conn: sqlite3.Connection, secret_ref: str, sealed: Sealed, now: int) -> int:
    """A new active version; earlier versions stay for audit but stop resolving."""
    row = conn.execute("SELECT max(version) FROM secrets WHERE secret_ref = ?", (secret_ref,)).fetchone()
    version = int(row[0] or 0) + 1
    conn.execute("UPDATE secrets SET active = 0 WHERE secret_ref = ?", (secret_ref,))
    conn.execute(
        "INSERT INTO secrets (secret_ref, version, value, active, created_at, key_id) VALUES (?, ?, ?, 1, ?, ?)",
        (secret_ref, version, sealed.value, now, sealed.key_id),
    )
    return version


def resolve(conn: sqlite3.Connection, refs: Sequence[str], box: SecretBox | None) -> dict[str, SecretStr]:
    """The active versions of ``refs`` that exist, opened."""
    if not refs:
        return {}
    marks = ",".join("?" * len(refs))
    rows = conn.execute(
        f"SELECT secret_ref, value, key_id FROM secrets WHERE active = 1 AND secret_ref IN ({marks})", list(refs)
    ).fetchall()
    return {ref: open_value(box, ref, value, key_id) for ref, value, key_id in rows}


def status(conn: sqlite3.Connection) -> list[SecretInfo]:
    rows = conn.execute(
        "SELECT secret_ref, version, created_at, key_id FROM secrets WHERE active = 1 ORDER BY secret_ref"
    ).fetchall()
    return [SecretInfo(secret_ref=r, version=v, updated_at=at, key_id=k) for r, v, at, k in rows]


def stored(conn: sqlite3.Connection) -> list[StoredSecret]:
    rows = conn.execute("SELECT secret_ref, version, value, key_id FROM secrets ORDER BY secret_ref, version")
    return [StoredSecret(secret_ref=r, version=v, value=SecretStr(value), key_id=k) for r, v, value, k in rows]


def reseal(conn: sqlite3.Connection, secret_ref: str, version: int, expect_key_id: str | None, sealed: Sealed) -> bool:
    cursor = conn.execute(
        "UPDATE secrets SET value = ?, key_id = ? WHERE secret_ref = ? AND version = ? AND key_id IS ?",
        (sealed.value, sealed.key_id, secret_ref, version, expect_key_id),
    )
    return cursor.rowcount == 1


def seal_plaintext(conn: sqlite3.Connection, box: SecretBox | None) -> int:
    """Seal values stored before encryption existed; returns how many. Nothing to do without a key."""
    rows = conn.execute("SELECT secret_ref, version, value FROM secrets WHERE key_id IS NULL").fetchall()
    if not rows:
        return 0
    sealer = require(box, "seal the secrets stored in plain text")
    for ref, version, value in rows:
        reseal(conn, ref, version, None, sealer.seal(ref, value))
    return len(rows)


# --------------------------------------------------------------------------- app tokens

_TOKEN_COLUMNS = "token_id, name, token_hash, created_at, revoked_at"


def _token(row: tuple[str, str, str, int, int | None]) -> AppToken:
    token_id, name, token_hash, created_at, revoked_at = row
    return AppToken(token_id=token_id, name=name, token_hash=token_hash, created_at=created_at, revoked_at=revoked_at)


def create_app_token(conn: sqlite3.Connection, token: AppToken) -> AppToken:
    conn.execute(
        f"INSERT INTO app_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, NULL)",
        (token.token_id, token.name, token.token_hash, token.created_at),
    )
    return token


def find_app_token(conn: sqlite3.Connection, token_hash: str) -> AppToken | None:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM app_tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,)
    ).fetchone()
    return None if row is None else _token(row)


def revoke_app_token(conn: sqlite3.Connection, token_id: str, now: int) -> bool:
    cursor = conn.execute(
        "UPDATE app_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", (now, token_id)
    )
    return cursor.rowcount == 1


def list_app_tokens(conn: sqlite3.Connection) -> list[AppToken]:
    return [_token(r) for r in conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM app_tokens ORDER BY created_at, token_id")]
