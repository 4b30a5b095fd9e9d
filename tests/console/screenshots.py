"""``make screenshots``: a PNG of every console page in ``.factory/screenshots/``, taken in Debian's
chromium against a real ``factory serve`` on the same seeded store the browser tests use.

Run as ``python -m tests.console.screenshots [FOLDER]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, ViewportSize, sync_playwright

from tests.console.harness import Seeded, Served, launch, serve

OUT = Path(".factory/screenshots")
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# (file name, path): every page an operator can reach, and the steps of an action.
PAGES = (
    ("02-overview", "/console"),
    ("03-conversations", "/console/conversations"),
    ("04-conversations-search", "/console/conversations?q=telegram:10"),
    ("05-conversation", "/console/conversations/telegram:1001"),
    ("06-conversation-inert-text", "/console/conversations/app:evil-1"),
    ("07-dead-letters", "/console/dead-letters"),
    ("08-redrive-confirm", "/console/dead-letters/redrive"),
    ("09-workers", "/console/workers"),
    ("10-workers-dry-run", "/console/workers/plan"),
    ("11-drain-confirm", "/console/workers/drain?worker=w-alpha"),
    ("12-agents-and-secrets", "/console/agents"),
    ("13-pairing-and-bindings", "/console/pairing"),
    ("14-push-and-broadcasts", "/console/push"),
    ("15-tokens", "/console/tokens"),
)


def shoot(page: Page, name: str, out: Path) -> Path:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def take(served: Served, seeded: Seeded, out: Path) -> list[Path]:
    taken: list[Path] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_context(base_url=served.url, viewport=VIEWPORT).new_page()
        page.goto("/console")
        taken.append(shoot(page, "01-sign-in", out))
        page.fill("#token", seeded.admin_token)
        page.click("button[type=submit]")
        page.wait_for_url("**/console")
        for name, path in PAGES:
            response = page.goto(path)
            if response is None or response.status >= 400:
                raise RuntimeError(f"{path} answered {response.status if response else 'nothing'}")
            page.wait_for_load_state("networkidle")
            taken.append(shoot(page, name, out))
        page.goto("/console/dead-letters/redrive?message=" + seeded.dead_letters[0])
        page.click("button:has-text('Confirm')")
        page.wait_for_load_state("networkidle")
        taken.append(shoot(page, "16-redrive-result", out))
        reader = browser.new_context(base_url=served.url, viewport=VIEWPORT).new_page()
        reader.goto("/console/login")
        reader.fill("#token", seeded.reader_token)
        reader.click("button[type=submit]")
        reader.wait_for_url("**/console")
        reader.goto("/console/workers/drain?worker=w-alpha")
        taken.append(shoot(reader, "17-read-only-refused", out))
        browser.close()
    return taken


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="factory-screens-") as folder, serve(Path(folder)) as (served, seeded):
        taken = take(served, seeded, out)
    for path in taken:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
