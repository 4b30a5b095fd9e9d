"""`factory account …`, `factory notify`, `factory runtime`, `factory reconcile --runtimes`, as operators run them."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from contracts.runtime import AccessRefused
from contracts.sqlite import SqliteStore
from tests.cli.inprocess import ESCAPES, invoke


async def _opens(db: Path, token: str) -> bool:
    store = SqliteStore(db)
    try:
        await store.open_account("demo", SecretStr(token))
    except AccessRefused:
        return False
    finally:
        await store.aclose()
    return True


def test_accounts_agents_tasks_and_notifications_are_kept_shown_inert_and_tokens_rotate(tmp_path: Path) -> None:
    created = invoke(["account", "create", "demo", "--name", "Demo Inc", "--json"], cwd=tmp_path)
    assert created.code == 0, created.stderr
    first = json.loads(created.stdout)["serviceToken"]
    (tmp_path / "soul.md").write_text("You are Jarvis.")
    added = invoke(
        ["account", "agent", "demo", "jarvis", "--heartbeat-minutes", "5", "--file", "SOUL.md=soul.md"], cwd=tmp_path
    )
    assert added.code == 0, added.stderr
    assert invoke(["account", "task", "demo", "t1", "--title", f"Ship {ESCAPES}"], cwd=tmp_path).code == 0
    posted = invoke(["notify", "demo", "jarvis", "--title", f"Look {ESCAPES}", "--task", "t1", "--json"], cwd=tmp_path)
    assert posted.code == 0, posted.stderr
    assert json.loads(posted.stdout)["taskId"] == "t1"
    view = json.loads(invoke(["account", "show", "demo", "--json"], cwd=tmp_path).stdout)
    assert view["account"]["status"] == "offline"
    assert [(a["slug"], a["heartbeatInterval"]) for a in view["agents"]] == [("jarvis", 5)]
    assert view["agents"][0]["workspaceFiles"] == {"SOUL.md": "You are Jarvis."}
    assert view["notifications"][0]["title"] == f"Look {ESCAPES}" and "deliveredAt" not in view["notifications"][0]
    shown = invoke(["account", "show", "demo"], cwd=tmp_path)
    assert shown.code == 0 and "\x1b" not in shown.stdout and "\u202e" not in shown.stdout
    assert "agent:jarvis:demo" in shown.stdout and "runtime offline" in shown.stdout
    listed = invoke(["account", "list"], cwd=tmp_path)
    assert "Demo Inc" in listed.stdout
    db = tmp_path / ".factory" / "factory.db"
    assert anyio.run(_opens, db, first)
    rotated = invoke(["account", "token", "demo", "--json"], cwd=tmp_path)
    assert not anyio.run(_opens, db, first)
    assert anyio.run(_opens, db, json.loads(rotated.stdout)["serviceToken"])
    # The token shows once, when issued; never in a view.
    assert first not in shown.stdout + listed.stdout + json.dumps(view)


@pytest.mark.parametrize(
    ("args", "env", "code", "line"),
    [
        (["account", "agent", "demo", "Bad Slug"], {}, 2, "error: slug: 'Bad Slug' is not a slug"),
        (["notify", "demo", "nobody", "--title", "x"], {}, 1, "error: agent of account demo 'demo-nobody' not found"),
        (["account", "show", "nope"], {}, 1, "error: account 'nope' not found"),
        (["account", "agent", "demo", "j", "--file", "../x.md=/dev/null"], {}, 2, "error: workspaceFiles"),
        (["runtime", "--account", "demo"], {}, 2, "error: SERVICE_TOKEN: is not set"),
        (["runtime"], {"SERVICE_TOKEN": "x"}, 2, "error: ACCOUNT_ID: is not set"),
        (["runtime", "--account", "demo"], {"SERVICE_TOKEN": "fst_wrong"}, 1, "error: account demo: the service token"),
        (["reconcile", "--runtimes", "--provider", "fly"], {}, 2, "error: --provider: account runtimes run on"),
        (
            ["reconcile", "--runtimes", "--provider", "digitalocean"],
            {"DIGITALOCEAN_TOKEN": "t", "DIGITALOCEAN_WORKER_IMAGE": "i"},
            2,
            "error: FACTORY_STORE: a runtime on digitalocean cannot open",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_field(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, line: str
) -> None:
    assert invoke(["account", "create", "demo"], cwd=tmp_path).code == 0
    result = invoke(args, cwd=tmp_path, env=env)
    assert (result.code, result.stderr.count("\n")) == (code, 1), result.stderr
    assert result.stderr.startswith(line), result.stderr
    assert "fst_wrong" not in result.stderr  # a token never shows, even a wrong one


def test_reconcile_runtimes_dry_run_plans_one_runtime_per_active_account(tmp_path: Path) -> None:
    for account in ("demo", "idle"):
        assert invoke(["account", "create", account], cwd=tmp_path).code == 0
    assert invoke(["account", "deprovision", "idle", "--provider", "local"], cwd=tmp_path).code == 0
    planned = invoke(["reconcile", "--runtimes", "--provider", "local", "--dry-run", "--json"], cwd=tmp_path)
    assert planned.code == 0, planned.stderr
    assert json.loads(planned.stdout)["create"] == ["demo"]
    shown = invoke(["account", "list", "--json"], cwd=tmp_path)
    assert {a["accountId"]: a["active"] for a in json.loads(shown.stdout)} == {"demo": True, "idle": False}
