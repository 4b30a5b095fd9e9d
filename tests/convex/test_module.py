"""The Convex module's own suite (vitest + convex-test) and its type check, run from pytest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
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


# ---------------------------------------------------------------- the module as a Convex component

PACKAGE = "factory-convex-module"


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`npm pack` of the module (prepack builds dist/), the tarball a host would install."""
    node = find_node()
    install(os.environ, node)
    out = tmp_path_factory.mktemp("pack")
    done = subprocess.run(
        node.npm("pack", "--json", "--pack-destination", str(out)),
        cwd=MODULE_DIR,
        env=node.env(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"npm pack failed:\n{done.stdout}\n{done.stderr}"
    (tarball,) = out.glob(f"{PACKAGE}-*.tgz")
    return tarball


def test_the_package_holds_what_a_host_needs_and_nothing_else(packed: Path) -> None:
    with tarfile.open(packed) as archive:
        files = {name.removeprefix("package/") for name in archive.getnames()}
    manifest = json.loads((MODULE_DIR / "package.json").read_text())
    assert manifest["name"] == PACKAGE and "private" not in manifest
    assert "convex" in manifest["peerDependencies"] and "convex" not in manifest.get("dependencies", {})
    for entry in manifest["exports"].values():
        for target in [entry] if isinstance(entry, str) else entry.values():
            assert target.removeprefix("./") in files, f"export {target} is not in the package"
    assert {
        "README.md",
        "dist/component/convex.config.js",  # .js: a host's CLI treats it as an installed component
        "dist/component/lib.js",
        "dist/component/schema.js",
        "dist/component/_generated/server.js",
        "dist/client/index.js",
        "dist/client/index.d.ts",
        "dist/convex/factory/queue.js",
    } <= files
    assert not any(".test." in f or "standin" in f or f.startswith(("example/", "convex/")) for f in files)


def test_a_host_app_installs_the_packed_component_and_bundles(packed: Path, tmp_path: Path) -> None:
    """The example app, importing the package by name from node_modules, type-checks against the
    package's declarations and goes through the Convex CLI's component graph and bundling
    (`deploy --dry-run`, offline) as a real host's would."""
    node = find_node()
    host = tmp_path / "host"
    modules = host / "node_modules"
    (modules / PACKAGE).mkdir(parents=True)
    with tarfile.open(packed) as archive:
        for member in archive.getmembers():
            member.name = member.name.removeprefix("package/")
            archive.extract(member, modules / PACKAGE, filter="data")
    for entry in (MODULE_DIR / "node_modules").resolve().iterdir():
        if not (modules / entry.name).exists():
            (modules / entry.name).symlink_to(entry)
    shutil.copytree(MODULE_DIR / "example" / "convex", host / "convex", ignore=shutil.ignore_patterns("*.test.ts"))
    for name in ("convex.config.ts", "agentFactory.ts", "http.ts"):
        path = host / "convex" / name
        text = path.read_text().replace("../../component/convex.config", f"{PACKAGE}/convex.config.js")
        path.write_text(text.replace('"../../client"', f'"{PACKAGE}"'))
    (host / "package.json").write_text(
        json.dumps({"name": "host", "private": True, "dependencies": {"convex": "1.48.0", PACKAGE: "*"}})
    )
    shutil.copy(MODULE_DIR / "convex" / "tsconfig.json", host / "convex" / "tsconfig.json")
    typed = subprocess.run(  # the host's code against the package's published types (dist/*.d.ts)
        [str(node.node), str(modules / "typescript" / "bin" / "tsc"), "--noEmit", "-p", "convex"],
        cwd=host,
        env=node.env(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert typed.returncode == 0, f"the host does not type-check against the package:\n{typed.stdout}\n{typed.stderr}"
    bundle = tmp_path / "bundle"
    env = {"CI": "1", "CONVEX_SELF_HOSTED_URL": "http://127.0.0.1:9", "CONVEX_SELF_HOSTED_ADMIN_KEY": "offline"}
    env["CONVEX_VERBOSE"] = "1"
    flags = ["--dry-run", "--typecheck", "disable", "--codegen", "disable", "--debug-bundle-path", str(bundle)]
    done = subprocess.run(
        [str(node.node), str(modules / "convex" / "bin" / "main.js"), "deploy", *flags],
        cwd=host,
        env=node.env(os.environ, env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"convex deploy --dry-run failed:\n{done.stdout}\n{done.stderr}"
    paths = {m["path"] for m in json.loads((bundle / "fullConfig.json").read_text())["modules"]}
    assert {"agentFactory.js", "http.js"} <= paths
    component = modules / PACKAGE / "dist" / "component"
    assert f"Preparing {component / 'lib.js'}" in done.stdout + done.stderr  # the component's functions bundled
