"""``factory console token …`` and the console's settings, run in process (tests/cli/inprocess.py)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Result
from tests.cli.inprocess import invoke


class Cli:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env: dict[str, str] = {}

    def __call__(self, *args: str) -> Result:
        return invoke(args, cwd=self.cwd, env=self.env)


def test_operator_tokens_are_shown_once_listed_without_secrets_rotated_and_revoked(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    created = cli("console", "token", "create", "alice", "--json")
    assert created.code == 0, created.stderr
    first = created.json()
    assert first["name"] == "alice" and first["role"] == "admin" and first["token"]
    reader = cli("console", "token", "create", "bob", "--read-only")
    assert reader.code == 0 and "read-only" in reader.stdout

    rotated = cli("console", "token", "rotate", "alice", "--json")
    assert rotated.code == 0, rotated.stderr
    second = rotated.json()
    assert second["token"] != first["token"] and second["tokenId"] != first["tokenId"]

    listed = cli("console", "token", "list", "--json")
    rows = {r["tokenId"]: r for r in listed.json()}
    assert rows[first["tokenId"]]["revokedAt"] is not None and "revokedAt" not in rows[second["tokenId"]]
    assert first["token"] not in listed.stdout and second["token"] not in listed.stdout
    assert all("tokenHash" not in r for r in rows.values())

    assert cli("console", "token", "revoke", second["tokenId"]).code == 0
    again = cli("console", "token", "revoke", second["tokenId"])
    assert again.code == 1 and len(again.stderr.strip().splitlines()) == 1


def test_bad_console_input_is_one_line_naming_what_to_fix(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    nobody = cli("console", "token", "rotate", "nobody")
    assert nobody.code == 2 and "NAME" in nobody.stderr and "token create" in nobody.stderr
    assert len(nobody.stderr.strip().splitlines()) == 1
    cli.env["FACTORY_CONSOLE_AUTH"] = "header"
    serve = cli("serve", "--port", "0")
    assert serve.code == 2 and "FACTORY_CONSOLE_TRUSTED_HEADER" in serve.stderr, serve.stderr
    assert len(serve.stderr.strip().splitlines()) == 1
