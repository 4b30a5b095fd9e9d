"""Where the pinned OpenClaw lives, and that a complete install is reused without running npm."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.install import OPENCLAW_VERSION, default_cache_dir, ensure_openclaw


def test_default_cache_follows_xdg_then_home() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path(f"/x/factory/openclaw-{OPENCLAW_VERSION}")
    assert default_cache_dir({"HOME": "/home/u"}) == Path(f"/home/u/.cache/factory/openclaw-{OPENCLAW_VERSION}")


def test_a_complete_install_is_reused_as_is(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "openclaw"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "openclaw", "version": OPENCLAW_VERSION}))
    (package / "openclaw.mjs").write_text("")
    (tmp_path / ".factory-install-complete").write_text(OPENCLAW_VERSION + "\n")
    # An empty PATH: had npm been needed, it could not have run.
    install = ensure_openclaw({"PATH": ""}, tmp_path)
    assert install.entry == package / "openclaw.mjs"
    assert not (tmp_path / "npm-install.log").exists()
