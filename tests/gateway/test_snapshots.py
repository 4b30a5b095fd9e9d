"""Snapshot archives: the filter rules (Hypothesis), and real archives of a state directory."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.snapshots import (
    AGENT_DB,
    MANIFEST,
    Entry,
    Limits,
    SnapshotCorrupt,
    SnapshotRefused,
    check_member,
    clean_path,
    is_allowed,
    plan_archive,
    restore_archive,
    write_archive,
)

AGENTS = ("main", "alpha")

# --------------------------------------------------------------------------- the rules, as properties

segment = st.one_of(
    st.sampled_from(["agents", "workspaces", "main", "alpha", "agent", "sessions", "cold", "state", "..", ".", ""]),
    st.sampled_from([AGENT_DB, "openclaw.json", "SOUL.md", "MEMORY.md", "skills", "SKILL.md", "id_ed25519"]),
    st.text(alphabet="abcxyz._-/\\", min_size=1, max_size=8),
)
paths = st.lists(segment, min_size=1, max_size=6).map("/".join) | st.builds(lambda p: "/" + p, st.text(max_size=20))
kinds = st.sampled_from(["file", "dir", "symlink", "other"])
entries = st.builds(Entry, path=paths, kind=kinds, size=st.integers(0, 10_000))


def _inside(path: str) -> bool:
    return not path.startswith("/") and ".." not in path.split("/") and "\\" not in path


@settings(max_examples=400, deadline=None)
@given(st.lists(entries, max_size=40), st.integers(1, 50_000))
def test_an_archive_plan_holds_only_allowed_regular_files_inside_the_state_dir(found: list[Entry], cap: int) -> None:
    try:
        plan = plan_archive(found, AGENTS, Limits(max_bytes=cap))
    except SnapshotRefused:
        allowed = [e for e in found if e.kind == "file" and (c := clean_path(e.path)) and is_allowed(c)]
        assert sum(e.size for e in allowed) > cap  # refused only for size
        return
    for entry in plan.files:
        assert entry.kind == "file"
        assert _inside(entry.path) and is_allowed(entry.path)
        assert entry.path.split("/")[1] in AGENTS
    assert plan.total_bytes == sum(e.size for e in plan.files) <= cap
    # A symlink in an allowed place is reported, never archived or followed.
    assert all(reason.startswith("symlink") for _, reason in plan.skipped)


@settings(max_examples=400, deadline=None)
@given(paths, kinds, st.integers(-1, 10_000))
def test_a_restored_member_is_a_regular_file_or_folder_on_an_allowed_path(name: str, kind: str, size: int) -> None:
    problem = check_member(name, kind, size)  # type: ignore[arg-type]  # kinds draws the Kind literals
    if problem is None:
        path = clean_path(name)
        assert path is not None and _inside(path)
        assert kind in ("file", "dir")
        assert kind == "dir" or path == MANIFEST or (is_allowed(path) and size >= 0)


def test_paths_that_escape_or_are_absolute_are_never_clean() -> None:
    for bad in ["/etc/passwd", "../state/openclaw.sqlite", "workspaces/main/../../x", "a\\b", "", "x\x00y"]:
        assert clean_path(bad) is None
    assert clean_path("./workspaces/main/SOUL.md") == "workspaces/main/SOUL.md"


# --------------------------------------------------------------------------- real archives


def _state(root: Path) -> Path:
    """A state directory shaped like OpenClaw's, with what must and must not travel."""
    state = root / "state"
    db = state / "agents" / "main" / "agent" / AGENT_DB
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE turns (text TEXT)")
    conn.execute("INSERT INTO turns VALUES ('remember the blue door')")
    conn.commit()  # left open: the WAL holds it, as under a running gateway
    workspace = state / "workspaces" / "main"
    (workspace / "memory").mkdir(parents=True)
    (workspace / "SOUL.md").write_text("kind")
    (workspace / "memory" / "2026-11-30.md").write_text("- likes tea")
    (workspace / "escape").symlink_to("/etc/hostname")
    (state / "state").mkdir()
    (state / "state" / "openclaw.sqlite").write_text("device private key")
    (state / "openclaw.json").write_text("{}")
    conn.close()
    return state


def test_an_archive_round_trips_what_is_allowed_and_nothing_else(tmp_path: Path) -> None:
    state = _state(tmp_path)
    archive = tmp_path / "snap.tgz"
    info = write_archive(state, ["main"], archive)
    assert info.files == 3 and ("workspaces/main/escape", "symlink (never followed)") in info.skipped
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert names == {
        MANIFEST,
        f"agents/main/agent/{AGENT_DB}",
        "workspaces/main/SOUL.md",
        "workspaces/main/memory/2026-11-30.md",
    }
    fresh = tmp_path / "fresh"
    restored = restore_archive(archive, fresh, sha256=info.sha256, size_bytes=info.size_bytes)
    assert restored.agents == ("main",)
    conn = sqlite3.connect(fresh / "agents" / "main" / "agent" / AGENT_DB)
    assert conn.execute("SELECT text FROM turns").fetchall() == [("remember the blue door",)]
    conn.close()
    assert (fresh / "workspaces" / "main" / "memory" / "2026-11-30.md").read_text() == "- likes tea"
    assert not (fresh / "state").exists() and not (fresh / "openclaw.json").exists()
    assert not (fresh / "workspaces" / "main" / "escape").exists()


def test_a_state_holding_a_secret_or_over_the_cap_is_refused(tmp_path: Path) -> None:
    state = _state(tmp_path)
    (state / "workspaces" / "main" / "notes.md").write_text("token: gw-token-4f9a8b7c6d")
    with pytest.raises(SnapshotRefused, match="credential"):
        write_archive(state, ["main"], tmp_path / "a.tgz", secrets=["gw-token-4f9a8b7c6d"])
    with pytest.raises(SnapshotRefused, match="limit"):
        write_archive(state, ["main"], tmp_path / "b.tgz", limits=Limits(max_bytes=100))


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([(_member("../outside"), b"x")], "safe relative path"),
        ([(_member("/etc/cron.d/evil"), b"x")], "safe relative path"),
        ([(_member("workspaces/main/link", tarfile.SYMTYPE, "/etc/passwd"), b"")], "symlink"),
        ([(_member("workspaces/main/hard", tarfile.LNKTYPE, "state/openclaw.sqlite"), b"")], "symlink"),
        ([(_member("state/openclaw.sqlite"), b"x")], "not an allowed path"),
        ([(_member(f"agents/main/agent/{AGENT_DB}"), b"not a database at all, just bytes" * 100)], "database"),
    ],
)
def test_a_restore_refuses_a_hostile_or_broken_archive_and_changes_nothing(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], why: str
) -> None:
    data = _tar(members)
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(data)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(SnapshotCorrupt, match=why):
        restore_archive(archive, target, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    assert list(target.iterdir()) == []  # nothing moved in, the staging folder gone


def test_a_restore_checks_the_recorded_checksum_size_and_cap_first(tmp_path: Path) -> None:
    state = _state(tmp_path)
    archive = tmp_path / "snap.tgz"
    info = write_archive(state, ["main"], archive)
    with pytest.raises(SnapshotCorrupt, match="sha256"):
        restore_archive(archive, tmp_path / "t1", sha256="0" * 64, size_bytes=info.size_bytes)
    with pytest.raises(SnapshotCorrupt, match="bytes"):
        restore_archive(archive, tmp_path / "t2", sha256=info.sha256, size_bytes=info.size_bytes + 1)
    with pytest.raises(SnapshotCorrupt, match="limit"):
        restore_archive(archive, tmp_path / "t3", sha256=info.sha256, size_bytes=info.size_bytes, limits=Limits(100))
    truncated = tmp_path / "cut.tgz"
    truncated.write_bytes(archive.read_bytes()[: info.size_bytes // 2])
    digest = hashlib.sha256(truncated.read_bytes()).hexdigest()
    with pytest.raises(SnapshotCorrupt, match="cannot be read"):
        restore_archive(truncated, tmp_path / "t4", sha256=digest, size_bytes=info.size_bytes // 2)
    assert json.loads(_manifest(archive))["agents"] == ["main"]


def _manifest(archive: Path) -> bytes:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(MANIFEST)
        assert member is not None
        return member.read()
