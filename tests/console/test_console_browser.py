"""The operator console in a real headless Chromium against a real ``factory serve`` child on a
seeded SQLite store: sign-in, the numbers, redrive, drain, inert text, CSRF, the read-only role.

The redriven dead letter is completed at the store level (what a worker does: claim, append the
turns, complete), and the open conversation page shows it done without a reload.
"""

from __future__ import annotations

import json

from playwright.sync_api import BrowserContext, Page, expect

from contracts.models import WorkerRegistration
from contracts.sqlite import SqliteStore
from tests.console.conftest import sign_in
from tests.console.harness import EVIL, SECRET_VALUE, Seeded, Served, answer

STATS = (
    "queued",
    "readyConversations",
    "inflightConversations",
    "retryingConversations",
    "scheduledConversations",
    "deadLetters",
    "processing",
    "done",
)
PAGES = ("", "/conversations", "/dead-letters", "/workers", "/agents", "/pairing", "/push", "/tokens")


def workers_of(served: Served) -> dict[str, str]:
    return {w.worker_id: w.status for w in served.use(lambda store: store.list_workers())}


def test_unauthenticated_requests_get_the_login_page(context: BrowserContext) -> None:
    page = context.new_page()
    for path in ("/console", "/console/dead-letters", "/console/conversations/telegram:1001"):
        response = page.goto(path)
        assert response is not None and response.status == 401
        expect(page.locator("#token")).to_be_visible()
        assert "Dead letters" not in page.locator("main").inner_text()
    posted = context.request.post("/console/dead-letters/redrive", form={"all": "1"})
    assert posted.status == 401 and "Operator token" in posted.text()


def test_a_wrong_token_is_refused_and_a_good_one_signs_in(context: BrowserContext, seeded: Seeded) -> None:
    page = context.new_page()
    page.goto("/console/workers")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("not valid")
    page.fill("#token", seeded.admin_token)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/workers")  # back where the operator was going
    cookie = next(c for c in context.cookies() if c["name"] == "factory_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain http here


def test_the_overview_numbers_match_queue_stats(admin: Page, served: Served) -> None:
    result = served.cli("queue", "stats", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    admin.reload()
    for key in STATS:
        assert admin.locator(f"[data-stat={key}]").get_attribute("data-value") == str(stats[key]), key
    for status, count in stats["workers"].items():
        assert admin.locator(f"[data-workers={status}]").get_attribute("data-value") == str(count)
    # Seven answered in the seed, each in milliseconds: the latency figures are there.
    assert "–" not in admin.locator("[data-figure=p50]").inner_text()
    assert admin.locator("svg.chart rect.bar").count() >= 1


def test_stored_text_renders_inert(admin: Page, seeded: Seeded) -> None:
    dialogs: list[str] = []
    admin.on("dialog", lambda d: dialogs.append(d.message))
    for path in (f"/console/conversations/{seeded.evil_conversation}", "/console/dead-letters"):
        admin.goto(path)
        body = admin.locator("main").inner_text()
        assert "<script>window.__pwned = 1</script>" in body  # shown as text…
        assert "[red]alarm[/red]" in body
        assert "\\x1b[31mred\\x1b[0m" in body and "\\x07" in body and "\\u202e" in body  # …escapes visible
        assert "\x1b" not in body and "\u202e" not in body
        assert admin.evaluate("window.__pwned") is None  # …and never run
        assert admin.locator("main script").count() == 0
    assert dialogs == []
    assert EVIL not in admin.content()


def test_no_secret_value_is_ever_rendered(admin: Page) -> None:
    for path in PAGES:
        admin.goto(f"/console{path}")
        assert SECRET_VALUE not in admin.content(), path
    admin.goto("/console/agents")
    expect(admin.locator("main")).to_contain_text("bot")  # the secret's name and version are shown


def test_redrive_a_dead_letter_and_watch_it_complete(admin: Page, served: Served, seeded: Seeded) -> None:
    message = seeded.dead_letters[0]
    admin.goto("/console/dead-letters")
    admin.locator(f"tr[data-message='{message}'] a.button").click()
    expect(admin.locator("h1")).to_have_text("Redrive this dead letter?")
    admin.click("button:has-text('Confirm')")
    expect(admin.locator("h1")).to_have_text("Redriven 1 message(s)")
    row = admin.locator(f"tr[data-message='{message}']")
    expect(row).to_contain_text("queued")
    row.locator("a").click()  # to its conversation, which refreshes itself
    status = admin.locator(f"#conversation tr[data-message='{message}']")
    expect(status).to_have_attribute("data-status", "queued")

    async def work(store: SqliteStore) -> str:
        await store.worker_register(WorkerRegistration(worker_id="w-redrive", provider="local"))
        return await answer(store, "w-redrive", "telegram:2001", "Your inbox: three bills, one invitation.")

    assert served.use(work) == message
    expect(status).to_have_attribute("data-status", "done")
    expect(admin.locator("#conversation .history")).to_contain_text("three bills")
    admin.goto("/console/dead-letters")
    expect(admin.locator(f"tr[data-message='{message}']")).to_have_count(0)


def test_drain_a_worker(admin: Page, served: Served) -> None:
    admin.goto("/console/workers")
    row = admin.locator("#workers tr[data-worker='w-alpha']")
    expect(row).to_have_attribute("data-status", "active")
    row.locator("a.button").click()
    expect(admin.locator("h1")).to_have_text("Drain this worker?")
    admin.click("button:has-text('Confirm')")
    expect(admin.locator("h1")).to_have_text("w-alpha is draining")
    admin.goto("/console/workers")
    expect(admin.locator("#workers tr[data-worker='w-alpha']")).to_have_attribute("data-status", "draining")
    assert workers_of(served)["w-alpha"] == "draining"


def test_an_action_without_the_csrf_token_is_refused(admin: Page, served: Served, seeded: Seeded) -> None:
    before = served.use(lambda store: store.queue_stats())
    forms: list[dict[str, str | float | bool]] = [{"all": "1"}, {"all": "1", "csrf": "forged"}]
    for form in forms:
        refused = admin.request.post("/console/dead-letters/redrive", form=form)  # the session's cookie, no token
        assert refused.status == 403 and "security token" in refused.text()
    drain = admin.request.post("/console/workers/drain", form={"worker": "w-beta"})
    assert drain.status == 403
    after = served.use(lambda store: store.queue_stats())
    # (The seed's in-flight lease may expire meanwhile: that moves ready and in flight, not these.)
    assert (after.dead_letters, after.workers) == (before.dead_letters, before.workers) != (0, {})


def test_the_read_only_role_sees_everything_and_changes_nothing(
    context: BrowserContext, served: Served, seeded: Seeded
) -> None:
    reader = sign_in(context, seeded.reader_token)
    expect(reader.locator("header")).to_contain_text("read-only")
    reader.goto("/console/dead-letters")
    expect(reader.locator("tr[data-message]")).not_to_have_count(0)
    assert reader.locator("a.button:has-text('Redrive')").count() == 0
    reader.goto("/console/workers")
    assert reader.locator("#workers a.button:has-text('Drain')").count() == 0
    confirm = reader.goto("/console/workers/drain?worker=w-beta")
    assert confirm is not None and confirm.status == 403
    # Even with the session's own CSRF token (taken from its sign-out form) nothing changes.
    csrf = reader.locator("form[action$='/logout'] input[name=csrf]").get_attribute("value")
    assert csrf
    refused = reader.request.post("/console/workers/drain", form={"worker": "w-beta", "csrf": csrf})
    assert refused.status == 403 and "read-only" in refused.text()
    assert workers_of(served)["w-beta"] == "active"
