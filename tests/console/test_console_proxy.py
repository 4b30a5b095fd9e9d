"""The console behind a sign-in proxy (``FACTORY_CONSOLE_AUTH=header``), over real loopback HTTP
against a ``factory serve`` child: the trusted header signs operators in, FACTORY_CONSOLE_ADMINS may
act and everyone else reads, and the session cookie is Secure when the proxy says it spoke TLS.

No browser here: what is checked is headers and status codes, which is HTTP's business.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.console.harness import Seeded, Served, serve

HEADER = "X-Forwarded-User"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Seeded]]:
    settings = {
        "FACTORY_CONSOLE_AUTH": "header",
        "FACTORY_CONSOLE_TRUSTED_HEADER": HEADER,
        "FACTORY_CONSOLE_ADMINS": "carol",
    }
    with serve(tmp_path_factory.mktemp("proxied"), settings=settings) as started:
        yield started


def as_user(served: Served, user: str | None, *, tls: bool = False) -> httpx.Client:
    headers = {HEADER: user} if user else {}
    if tls:
        headers["X-Forwarded-Proto"] = "https"
    return httpx.Client(base_url=served.url, headers=headers, timeout=20)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def test_without_the_header_the_login_page_says_to_sign_in_at_the_proxy(proxied: tuple[Served, Seeded]) -> None:
    served, seeded = proxied
    with as_user(served, None) as anonymous:
        page = anonymous.get("/console")
        assert page.status_code == 401 and "sign-in proxy" in page.text
        assert 'name="token"' not in page.text
        # Operator tokens do not sign in here: the proxy decides who is looking.
        posted = anonymous.post("/console/login", data={"token": seeded.admin_token, "nonce": "x"})
        assert posted.status_code in (401, 403) and "factory_console=" not in posted.headers.get("set-cookie", "")


def test_the_session_cookie_is_secure_behind_tls(proxied: tuple[Served, Seeded]) -> None:
    served, _ = proxied
    with as_user(served, "carol", tls=True) as carol:
        page = carol.get("/console")
        assert page.status_code == 200
        cookie = page.headers["set-cookie"].lower()
        assert cookie.startswith("factory_console=")
        for flag in ("httponly", "samesite=strict", "secure", "path=/console"):
            assert flag in cookie, cookie
    with as_user(served, "carol") as plain:
        assert "secure" not in plain.get("/console").headers["set-cookie"].lower()


def test_admins_act_and_everyone_else_reads(proxied: tuple[Served, Seeded]) -> None:
    served, _ = proxied
    with as_user(served, "dave") as dave:
        page = dave.get("/console/workers")
        assert page.status_code == 200 and "read-only" in page.text and "Drain…" not in page.text
        refused = dave.post("/console/workers/drain", data={"worker": "w-beta", "csrf": csrf_of(page)})
        assert refused.status_code == 403 and "read-only" in refused.text
    with as_user(served, "carol") as carol:
        page = carol.get("/console/workers")
        assert "Drain…" in page.text
        forged = carol.post("/console/workers/drain", data={"worker": "w-beta", "csrf": "forged"})
        assert forged.status_code == 403
        drained = carol.post("/console/workers/drain", data={"worker": "w-beta", "csrf": csrf_of(page)})
        assert drained.status_code == 200 and "w-beta is draining" in drained.text
        after = carol.get("/console/workers")
        assert re.search(r'data-worker="w-beta" data-status="draining"', after.text)
