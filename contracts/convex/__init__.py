"""The Convex binding: every store role over Convex's HTTP API, and its compatibility mode.

The Convex module it talks to (TypeScript) lives in ``contracts/convex/module``; the tooling that
installs its npm packages, runs its vitest suite and runs a loopback stand-in is
:mod:`contracts.convex.standin`.
"""

from contracts.convex.client import ConvexClient, NotCommitted, normalize_url
from contracts.convex.compat import COMPAT_MODES, AgentFactoryCompatStore, Compat, UnsupportedByCompat
from contracts.convex.store import ConvexStore

__all__ = [
    "COMPAT_MODES",
    "AgentFactoryCompatStore",
    "Compat",
    "ConvexClient",
    "ConvexStore",
    "NotCommitted",
    "UnsupportedByCompat",
    "normalize_url",
]
