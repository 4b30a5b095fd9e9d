"""``factory run``, as ``factory.cli`` registers it; the command lives in the ``factory.run`` package."""

from factory.run.command import run

__all__ = ["run"]
