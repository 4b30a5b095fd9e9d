"""An agent's OpenClaw workspace as its profile describes it, and the baked ``agent-bridge`` skill.

OpenClaw reads the workspace (``SOUL.md``, ``AGENTS.md``, ``IDENTITY.md``, ``USER.md``,
``skills/<name>/SKILL.md``) into every prompt. The worker writes the profile's files there when a
machine boots, before the gateway starts (``skipBootstrap`` keeps OpenClaw's templates out). Files
the agent writes itself (``MEMORY.md``, ``memory/``) are left alone; files this module wrote on an
earlier boot and the profile no longer has are removed (a ``.factory-managed.json`` list).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from contracts.models import BRIDGE_SKILL, check_workspace_path

MANAGED = ".factory-managed.json"


def bridge_skill(command: Sequence[str]) -> str:
    """The SKILL.md of the baked ``agent-bridge`` skill: how the agent calls its app's functions.

    ``command`` is everything before the function key, e.g. ``[python, -m, factory, bridge, call,
    --config, <file>]``."""
    call = shlex.join(command)
    return f"""---
name: {BRIDGE_SKILL}
description: Call a function of this agent's app (read or change the user's data there) through the app's agent bridge.
---
# Agent bridge

Run one command with the exec tool to call a function of the app this agent belongs to:

```sh
{call} FUNCTION_KEY --args '{{"name": "value"}}'
```

- `FUNCTION_KEY` is the app function to run, e.g. `tasks.list` (a `bridge.` prefix is accepted).
- `--args` is one JSON object with the function's arguments; omit it for none.
- It prints one JSON object: `{{"success": true, "status": 200, "functionKey": …, "result": …}}`, or
  `"success": false` with an `"error"`. Failures the app may recover from are retried for you.
- Only call functions the user's request needs; never print or pass on credentials.
"""


def write_workspace(workspace: Path, files: Mapping[str, str]) -> list[str]:
    """Write ``files`` (workspace-relative path → text) into ``workspace``; returns what changed.

    Paths are checked again here (``check_workspace_path``), except the bridge skill this module
    bakes itself. Unchanged files are not rewritten: the gateway watches skill files.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for relative, text in sorted(files.items()):
        if relative != f"skills/{BRIDGE_SKILL}/SKILL.md":
            check_workspace_path(relative)
        target = workspace / relative
        if target.is_symlink():
            target.unlink()
        elif target.is_file() and target.read_text(encoding="utf-8", errors="replace") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp")
        temp.write_text(text, encoding="utf-8")
        temp.replace(target)
        changed.append(relative)
    changed += _forget(workspace, set(files))
    (workspace / MANAGED).write_text(json.dumps(sorted(files), indent=1) + "\n", encoding="utf-8")
    return changed


def _forget(workspace: Path, keep: set[str]) -> list[str]:
    """Remove files written on an earlier boot that the profile no longer has."""
    try:
        earlier = json.loads((workspace / MANAGED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    removed = []
    for relative in earlier if isinstance(earlier, list) else []:
        if not isinstance(relative, str) or relative in keep:
            continue
        target = workspace / relative
        if target.is_file() and not target.is_symlink():
            target.unlink()
            removed.append(relative)
            if target.parent != workspace and not any(target.parent.iterdir()):
                target.parent.rmdir()
    return removed
