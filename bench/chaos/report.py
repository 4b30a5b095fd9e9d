"""One chaos scenario's figures: what was measured, and which of them break an invariant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table


@dataclass
class Report:
    """Figures in the order they were measured; ``violations`` names each broken invariant."""

    scenario: str
    figures: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def add(self, name: str, value: object, *, bad: bool = False, why: str = "") -> None:
        self.figures[name] = f"{value:,}" if isinstance(value, int) else str(value)
        if bad:
            self.violations.append(f"{name}: {value}" + (f" ({why})" if why else ""))

    @property
    def ok(self) -> bool:
        return not self.violations


def print_reports(reports: Sequence[Report], console: Console | None = None) -> None:
    """One table: a row per figure, a column per scenario; broken invariants in red, listed after."""
    # Wide enough for five scenarios side by side, also when the output goes to a file or a CI log.
    console = console or Console(highlight=False, width=max(160, Console().width))
    table = Table(title="make chaos", title_justify="left")
    table.add_column("figure")
    for report in reports:
        table.add_column(report.scenario, justify="right")
    names = list(dict.fromkeys(name for report in reports for name in report.figures))
    for name in names:
        cells = []
        for report in reports:
            value = escape(report.figures.get(name, "—"))
            broken = any(v.startswith(f"{name}:") for v in report.violations)
            cells.append(f"[red]{value}[/]" if broken else value)
        table.add_row(name, *cells)
    console.print(table)
    for report in reports:
        for violation in report.violations:
            console.print(f"[red]VIOLATION[/] {escape(report.scenario)}: {escape(violation)}")
    if all(report.ok for report in reports):
        console.print("all invariants held")
