"""`factory push`, `factory dispatch` and `factory broadcast`, as an operator runs them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import anyio

from contracts.models import EnqueueRequest, MessagePayload
from contracts.sqlite import SqliteStore
from tests.cli.conftest import Cli


def test_a_daily_job_is_dispatched_once_at_its_slot(cli: Cli) -> None:
    assert cli("push", "template", "add", "morning", "--agent", "default", "--text", "Good morning {name}").code == 0
    added = cli(
        "push", "job", "add", "alice", "--template", "morning", "-c", "chat-alice",
        "--daily", "09:00", "--tz", "Europe/Rome", "--var", "name=Alice", "--json",
    )  # fmt: skip
    assert added.code == 0, added.stderr
    next_run = datetime.fromtimestamp(added.json()["nextRunAt"] / 1000, tz=ZoneInfo("Europe/Rome"))
    assert (next_run.hour, next_run.minute) == (9, 0)
    at = (next_run + timedelta(seconds=30)).isoformat()  # a simulated 09:00:30, Rome time
    first = cli("dispatch", "--now", at, "--json")
    assert first.code == 0, first.stderr
    assert (first.json()["scanned"], first.json()["enqueued"]) == (1, 1)
    second = cli("dispatch", "--now", at, "--json")
    assert (second.json()["scanned"], second.json()["enqueued"]) == (0, 0)
    stats = cli("queue", "stats", "--json").json()
    assert stats["queued"] == 1
    (job,) = cli("push", "job", "list", "--json").json()
    assert job["nextRunAt"] == added.json()["nextRunAt"] + 24 * 3_600_000  # DST-free December day
    dispatches = cli("push", "job", "dispatches", "alice", "--json").json()
    assert [d["runKey"] for d in dispatches] == [f"job:alice:{added.json()['nextRunAt']}"]
    listing = cli("push", "job", "list")
    assert "daily at 09:00 Europe/Rome" in listing.stdout


def test_jobs_are_edited_disabled_run_now_and_deleted(cli: Cli) -> None:
    cli("push", "template", "add", "t", "--agent", "default", "--text", "ping")
    assert (
        cli("push", "job", "add", "j", "--template", "t", "-c", "c1", "--weekly", "08:15", "--weekdays", "mon,fri").code
        == 0
    )
    edited = cli("push", "job", "edit", "j", "--monthly", "07:00", "--day", "last", "--tz", "Asia/Tokyo", "--json")
    assert edited.json()["schedule"] == {
        "kind": "monthly",
        "at": "07:00",
        "tz": "Asia/Tokyo",
        "weekdays": [],
        "day": "last",
    }
    assert cli("push", "job", "disable", "j", "--json").json()["enabled"] is False
    manual = cli("push", "run-now", "j", "--json")
    assert manual.code == 0 and manual.json()["runKey"].startswith("manual:j:")
    assert cli("push", "job", "enable", "j", "--json").json()["enabled"] is True
    refused = cli("push", "template", "delete", "t")
    assert refused.code == 2 and "used by job 'j'" in refused.stderr
    assert cli("push", "job", "delete", "j").code == 0
    assert cli("push", "template", "delete", "t").code == 0
    missing = cli("push", "job", "delete", "j")
    assert missing.code == 1 and "push job 'j' not found" in missing.stderr


def test_bad_schedules_get_one_line_naming_the_option(cli: Cli) -> None:
    cli("push", "template", "add", "t", "--agent", "default", "--text", "ping")
    for args, field in [
        (["--daily", "9am"], "at"),
        (["--daily", "09:00", "--tz", "Mars/Base"], "tz"),
        (["--weekly", "09:00"], "weekdays"),
        (["--weekly", "09:00", "--weekdays", "someday"], "--weekdays"),
        (["--daily", "09:00", "--weekly", "10:00"], "--daily/--weekly/--monthly"),
        ([], "--daily/--weekly/--monthly"),
    ]:
        result = cli("push", "job", "add", "j", "--template", "t", "-c", "c", *args)
        assert result.code == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and field in result.stderr
    bad_now = cli("dispatch", "--now", "tomorrow")
    assert bad_now.code == 2 and "--now" in bad_now.stderr


def test_a_broadcast_to_a_thousand_conversations_is_audited_and_idempotent(cli: Cli) -> None:
    async def seed() -> None:
        store = SqliteStore(cli.cwd / ".factory" / "factory.db", synchronous="NORMAL")
        try:
            for i in range(1000):
                payload = MessagePayload(provider="telegram", provider_user_id=str(10_000 + i), message_text="hi")
                await store.enqueue(EnqueueRequest(conversation_id=f"tg:{i}", agent_key="default", payload=payload))
        finally:
            await store.aclose()

    anyio.run(seed)
    sent = cli("broadcast", "--text", "We are moving on Monday", "--id", "move-2026", "--by", "ops", "--json")
    assert sent.code == 0, sent.stderr
    audit = sent.json()
    assert (audit["status"], audit["requestedBy"], len(audit["recipients"])) == ("done", "ops", 1000)
    assert all(r["status"] == "enqueued" and r["messageId"] for r in audit["recipients"])
    assert cli("queue", "stats", "--json").json()["queued"] == 2000
    again = cli("broadcast", "--text", "We are moving on Monday", "--id", "move-2026", "--json")
    assert again.json()["fresh"] is False
    assert cli("queue", "stats", "--json").json()["queued"] == 2000
    shown = cli("broadcasts")
    assert "move-2026" in shown.stdout and "1000/1000" in shown.stdout


def test_a_job_for_a_store_that_does_not_exist_leaves_no_store_behind(cli: Cli) -> None:
    result = cli("push", "job", "add", "j", "--template", "t", "-c", "c1", "--daily", "09:00", "--store", "typo/new.db")
    assert result.code != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no store file here" in result.stderr
    assert not (cli.cwd / "typo").exists()
