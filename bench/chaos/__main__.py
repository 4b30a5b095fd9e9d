"""`python -m bench.chaos [store] [fleet] [outages]`: run the chaos scenarios, print the figures,
exit 1 if any invariant broke. `make chaos` runs them all."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench.chaos.fleet import FleetPlan, run_fleet
from bench.chaos.outages import OutagePlan, run_outages
from bench.chaos.report import Report, print_reports
from bench.chaos.store_storm import StormPlan, run_storm

SCENARIOS: dict[str, Callable[[], list[Report]]] = {
    "store": lambda: [run_storm(StormPlan())],
    "fleet": lambda: [run_fleet(FleetPlan())],
    "outages": lambda: run_outages(OutagePlan()),
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    reports = []
    for name in chosen:
        print(f"chaos: {name}…", flush=True)
        reports.extend(SCENARIOS[name]())
    print_reports(reports)
    return 0 if all(report.ok for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
