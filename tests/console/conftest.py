"""One browser for this package's tests (Debian's chromium under Playwright), one seeded ``factory
serve`` per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.console.harness import Seeded, Served, launch, serve


# Package-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running in this
# thread while it is open, and the async tests that follow in the session need the thread's loop.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        opened = launch(playwright)
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Seeded]]:
    with serve(tmp_path_factory.mktemp("console")) as started:
        yield started


@pytest.fixture
def served(console: tuple[Served, Seeded]) -> Served:
    return console[0]


@pytest.fixture
def seeded(console: tuple[Served, Seeded]) -> Seeded:
    return console[1]


@pytest.fixture
def context(browser: Browser, served: Served) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookies from the one before."""
    opened = browser.new_context(base_url=served.url)
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        opened.close()


def sign_in(context: BrowserContext, token: str) -> Page:
    page = context.new_page()
    page.goto("/console/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/console")
    return page


@pytest.fixture
def admin(context: BrowserContext, seeded: Seeded) -> Page:
    return sign_in(context, seeded.admin_token)


@pytest.fixture
def reader(context: BrowserContext, seeded: Seeded) -> Page:
    return sign_in(context, seeded.reader_token)
