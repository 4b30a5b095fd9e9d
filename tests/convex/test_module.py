"""The Convex module's own suite (vitest + convex-test) and its type check, run from pytest."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from contracts.convex.standin import MODULE_DIR, install, run_vitest
from contracts.node import find_node

pytestmark = pytest.mark.convex


def test_the_module_vitest_suite_passes() -> None:
    done = run_vitest(os.environ)
    assert done.returncode == 0, f"vitest failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"


def test_the_module_type_checks() -> None:
    node = find_node()
    install(os.environ, node)
    done = subprocess.run(
        [str(node.node), str(MODULE_DIR / "node_modules" / "typescript" / "bin" / "tsc"), "--noEmit", "-p", "."],
        cwd=MODULE_DIR,
        env=node.env(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"tsc found errors:\n{done.stdout}\n{done.stderr}"


def test_install_is_cached_outside_the_repository() -> None:
    link = MODULE_DIR / "node_modules"
    if link.is_dir() and not link.is_symlink():
        pytest.skip("an operator installed node_modules in the module folder; it is used as it is")
    modules = install(os.environ)
    again = install(os.environ)
    assert modules == again
    assert not modules.resolve().is_relative_to(MODULE_DIR.parent.parent.parent)
    assert (MODULE_DIR / "node_modules").resolve() == modules.resolve()


def test_the_module_bundles_for_convex_deploy(tmp_path: Path) -> None:
    """`npx convex deploy --dry-run`: the CLI type-checks and bundles the functions (tests excluded)
    exactly as a real deploy would, against a dummy self-hosted URL on a closed loopback port."""
    node = find_node()
    install(os.environ, node)
    cli = MODULE_DIR / "node_modules" / "convex" / "bin" / "main.js"
    bundle = tmp_path / "bundle"
    env = {"CI": "1", "CONVEX_SELF_HOSTED_URL": "http://127.0.0.1:9", "CONVEX_SELF_HOSTED_ADMIN_KEY": "offline"}
    flags = ["--dry-run", "--typecheck", "enable", "--codegen", "disable", "--debug-bundle-path", str(bundle)]
    done = subprocess.run(
        [str(node.node), str(cli), "deploy", *flags],
        cwd=MODULE_DIR,
        env=node.env(os.environ, env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"convex deploy --dry-run failed:\n{done.stdout}\n{done.stderr}"
    modules = {m["path"] for m in json.loads((bundle / "fullConfig.json").read_text())["modules"]}
    assert {"agentFactory.js", "agentFactoryAdmin.js", "factory/queue.js"} <= modules
    assert not any(".test." in path or "setup" in path for path in modules)
