"""Secrets at rest: sealed with AES-256-GCM, rotated, migrated from plain text, never shown."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from contracts.secrets import SecretBox, SecretsKey, SecretsKeyMismatch, SecretsKeyMissing, new_key, reseal_all
from contracts.sqlite import SqliteStore

pytestmark = pytest.mark.anyio
TOKEN = "8080:a-bot-token-nobody-may-read"


def box(*keys: str) -> SecretBox:
    return SecretBox(SecretsKey.parse(keys[0]), [SecretsKey.parse(k) for k in keys[1:]])


async def test_the_file_holds_no_plaintext_and_rotation_keeps_every_value(tmp_path: Path) -> None:
    db, old, new = tmp_path / "s.db", new_key(), new_key()
    store = SqliteStore(db, secrets_box=box(old))
    await store.import_secret("telegram.botToken.default", SecretStr(TOKEN))
    await store.import_secret("bridge.key", SecretStr("bridge-secret-value"))
    await store.aclose()
    raw = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("s.db*")))  # noqa: ASYNC240  # reason: a test's own file
    assert TOKEN.encode() not in raw and b"bridge-secret-value" not in raw
    # Rotate: the new key seals, the old one still opens until everything is re-sealed.
    rotating = SqliteStore(db, secrets_box=box(new, old))
    report = await reseal_all(rotating, box(new, old))
    assert (report.resealed, report.already_current) == (2, 0)
    assert {s.key_id for s in await rotating.secret_status()} == {SecretsKey.parse(new).key_id}
    await rotating.aclose()
    after = SqliteStore(db, secrets_box=box(new))
    found = await after.resolve_secret(["telegram.botToken.default"])
    assert found is not None and found[1].get_secret_value() == TOKEN
    await after.aclose()


async def test_a_wrong_or_missing_key_fails_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteStore(db, secrets_box=box(new_key()))
    await store.import_secret("x.y", SecretStr("value-1"))
    await store.aclose()
    wrong = SqliteStore(db, secrets_box=box(new_key()))
    with pytest.raises(SecretsKeyMismatch) as mismatch:
        await wrong.resolve_secret(["x.y"])
    await wrong.aclose()
    keyless = SqliteStore(db)
    with pytest.raises(SecretsKeyMissing) as missing:
        await keyless.import_secret("x.z", SecretStr("v"))
    await keyless.aclose()
    for exc in (mismatch.value, missing.value):
        assert "\n" not in str(exc) and "FACTORY_SECRETS_KEY" in str(exc) and "value-1" not in str(exc)


async def test_plain_text_values_are_sealed_on_first_open_with_a_key(tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    SqliteStore(db)  # a store from before encryption …
    with sqlite3.connect(db) as conn:  # … holding a value the old code stored in plain text
        conn.execute(
            "INSERT INTO secrets (secret_ref, version, value, active, created_at)"
            " VALUES ('old.ref', 1, 'legacy-plain', 1, 0)"
        )
    key = new_key()
    store = SqliteStore(db, secrets_box=box(key))
    status = await store.secret_status()
    found = await store.resolve_secret(["old.ref"])
    await store.aclose()
    assert [s.key_id for s in status] == [SecretsKey.parse(key).key_id]
    assert found is not None and found[1].get_secret_value() == "legacy-plain"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM secrets WHERE value LIKE '%legacy-plain%'").fetchone()[0] == 0
