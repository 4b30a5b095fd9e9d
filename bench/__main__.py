"""`python -m bench [store|calls|worker|autoscaler|ingress|validation|memory|coldstart ...] [--seed N]`.

Runs the named benchmarks; no names: all of them (``sweep``, ``sweep-digitalocean`` and
``tick-on-idle`` only when named). ``--seed N`` replays the autoscaler's simulator (and its sweeps) with another seed: a
result that holds for one seed only is luck, not a policy.
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
# Run only when named: the sweeps the autoscaler's defaults were chosen from (minutes), and what the
# watch's tick on idle workers changed.
EXTRA: dict[str, Callable[[], object]] = {
    "sweep": autoscaler_bench.sweep,
    "sweep-digitalocean": autoscaler_bench.sweep_digitalocean,
    "tick-on-idle": autoscaler_bench.tick_on_idle,
}
# The sections that take a seed.
SEEDED: dict[str, Callable[[int], object]] = {
    "autoscaler": autoscaler_bench.run,
    "sweep": autoscaler_bench.sweep,
    "sweep-digitalocean": autoscaler_bench.sweep_digitalocean,
    "tick-on-idle": autoscaler_bench.tick_on_idle,
}


def main(argv: list[str]) -> None:
    seed: int | None = None
    if "--seed" in argv:
        at = argv.index("--seed")
        value = argv[at + 1] if at + 1 < len(argv) else ""
        if not value.isdigit():
            raise SystemExit(f"--seed needs a whole number (got {value!r}); e.g. --seed 12")
        seed, argv = int(value), argv[:at] + argv[at + 2 :]
    chosen = argv or list(SECTIONS)
    known = {**SECTIONS, **EXTRA}
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(known)}")
    for name in chosen:
        if seed is not None and name in SEEDED:
            SEEDED[name](seed)
        else:
            known[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
