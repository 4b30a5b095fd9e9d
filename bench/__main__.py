"""`python -m bench [store|calls|worker|autoscaler|ingress|validation|memory|coldstart ...]`: run the named benchmarks.

No names: all of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench import (
    autoscaler_bench,
    calls_bench,
    coldstart,
    ingress_bench,
    memory_bench,
    store_bench,
    validation_bench,
    worker_bench,
)

SECTIONS: dict[str, Callable[[], object]] = {
    "store": store_bench.run,
    "calls": calls_bench.run,
    "worker": worker_bench.run,
    "autoscaler": autoscaler_bench.run,
    "ingress": ingress_bench.run,
    "validation": validation_bench.run,
    "memory": memory_bench.run,
    "coldstart": coldstart.run,
}
# Run only when named: the sweep the autoscaler's defaults were chosen from (minutes).
EXTRA: dict[str, Callable[[], object]] = {"sweep": autoscaler_bench.sweep}


def main(argv: list[str]) -> None:
    chosen = argv or list(SECTIONS)
    known = {**SECTIONS, **EXTRA}
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(known)}")
    for name in chosen:
        known[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
