"""The summary a run ends with: a table on the screen, and the same numbers for ``--json-summary``."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from contracts.figures import percentile
from factory.run.model import ModelPlan
from factory.run.screen import Screen, seconds
from factory.run.state import Outcome


def summary_of(outcome: Outcome, plan: ModelPlan) -> dict[str, Any]:
    state = outcome.state
    latencies = state.latencies() if state is not None else []
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    return {
        "model": plan.label,
        "messages": state.total if state is not None else 0,
        "processed": state.count("done") if state is not None else 0,
        "deadLettered": state.count("dead_letter") if state is not None else 0,
        "latencyP50S": None if p50 is None else round(p50, 3),
        "latencyP95S": None if p95 is None else round(p95, 3),
        "workersLaunched": len(state.launched_at) if state is not None else 0,
        "workerSeconds": round(state.worker_seconds(), 1) if state is not None else 0.0,
        "setupS": None if outcome.setup_s is None else round(outcome.setup_s, 1),
        "wallS": round(outcome.wall_s, 1),
        "openclawCached": outcome.openclaw_cached,
        "memory": None if outcome.memory is None else outcome.memory.summary(),
    }


def print_summary(screen: Screen, summary: dict[str, Any]) -> None:
    p50, p95 = summary["latencyP50S"], summary["latencyP95S"]
    table = Table(title="summary", title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold")
    table.add_column()
    for label, value in [
        ("processed", f"{summary['processed']} of {summary['messages']}"),
        ("dead-lettered", str(summary["deadLettered"])),
        ("latency p50 / p95", f"{seconds(p50)} / {seconds(p95)} (enqueue→reply)"),
        ("workers launched", str(summary["workersLaunched"])),
        ("worker-seconds", f"{summary['workerSeconds']:.1f}"),
        ("setup (install + gateway)", seconds(summary["setupS"])),
        ("wall time", seconds(summary["wallS"])),
    ]:
        table.add_row(label, value)
    screen.console.print(table)
    screen.line(
        f"factory run: processed {summary['processed']}, dead-lettered {summary['deadLettered']}, "
        f"p50 {seconds(p50)}, p95 {seconds(p95)}, worker-seconds {summary['workerSeconds']:.1f}, "
        f"wall {summary['wallS']:.1f} s"
    )
