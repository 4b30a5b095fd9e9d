"""The ``factory`` command line (composition root)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("factory: the CLI is being assembled")
