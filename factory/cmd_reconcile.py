"""``factory reconcile``: print the plan (like a terraform plan), apply it unless --dry-run."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import structlog
import typer
from rich.table import Table
from rich.text import Text

from autoscaler.errors import AutoscalerError
from autoscaler.plan import target
from autoscaler.reconciler import Reconciler, TickResult, next_tick_in_s
from contracts.errors import FactoryError
from contracts.roles import FleetStore
from factory.cmd_account import print_runtime_tick, reconcile_runtimes_command
from factory.console import JsonOption, StoreOption, err, out, print_json, store_settings
from factory.fleet import check_local_workers_can_start, launch_specs, make_provider, scaling_policy
from factory.logging import configure
from factory.safe_text import one_line, plain
from factory.settings import LogSettings, ScaleSettings, load
from factory.stores import open_full_store

log = structlog.get_logger("factory.reconcile")
MIN_TICK_GAP_S = 2.0  # provider list calls are rate limited (Fly: 1 per second per action)


def _as_json(result: TickResult, provider: str, dry_run: bool) -> dict[str, Any]:
    outcomes = {id(o.action): o for o in result.outcomes}
    actions = []
    for action in result.plan.actions:
        entry = {k: v for k, v in action.model_dump(mode="json").items() if v is not None}
        outcome = outcomes.get(id(action))
        if outcome is not None:
            entry["ok"] = outcome.ok
            entry["detail"] = outcome.detail
        actions.append(entry)
    return {
        "provider": provider,
        "dryRun": dry_run,
        "applied": result.applied,
        "desired": result.plan.desired,
        "current": result.plan.current,
        "launching": result.plan.launching,
        "summary": result.plan.summary,
        "actions": actions,
        "errors": [o.detail for o in result.errors],
    }


def _print_plan(result: TickResult, provider: str, dry_run: bool) -> None:
    plan = result.plan
    out.print(Text.assemble(plain(provider, style="bold"), ": ", plain(plan.summary)))
    if plan.empty:
        out.print("No changes. The fleet matches the demand.")
        return
    outcomes = {id(o.action): o for o in result.outcomes}
    table = Table("action", "target", "reason", *([] if dry_run else ["result"]))
    for action in plan.actions:
        row = [action.action, target(action), action.reason]
        if not dry_run:
            outcome = outcomes.get(id(action))
            row.append("-" if outcome is None else ("ok: " if outcome.ok else "FAILED: ") + outcome.detail)
        table.add_row(*row)
    out.print(table)
    if dry_run:
        out.print(f"Plan: {len(plan.actions)} action(s). Nothing applied (--dry-run).")


async def _until_next_tick(store: FleetStore, interval_s: float) -> None:
    """Wait out the interval, but tick early when work arrives, so a burst is met within seconds
    instead of a whole interval, and when a worker is left with no job, so it is suspended or
    drained when its window ends rather than at the next interval. At most one tick per MIN_TICK_GAP_S."""
    started = anyio.current_time()
    await store.wait_for_fleet_change(interval_s)
    await anyio.sleep(max(0.0, MIN_TICK_GAP_S - (anyio.current_time() - started)))


def reconcile(
    provider: Annotated[
        str | None,
        typer.Option("--provider", help="local, fly or digitalocean. Env: FACTORY_PROVIDER. Default: local."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    watch: Annotated[
        float | None, typer.Option("--watch", min=1, help="Reconcile every SECONDS until interrupted.")
    ] = None,
    runtimes: Annotated[
        bool, typer.Option("--runtimes", help="Keep one runtime machine per active account instead.")
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Size the worker fleet to the queue: launch, drain and clean up machines."""
    configure(load(LogSettings), default_level="warning")
    scale = load(ScaleSettings, provider=provider)
    if runtimes:
        print_runtime_tick(reconcile_runtimes_command(scale.provider, store, dry_run=dry_run), as_json)
    else:
        _reconcile_workers(scale, dry_run, watch, store, as_json)


def _reconcile_workers(
    scale: ScaleSettings, dry_run: bool, watch: float | None, store: str | None, as_json: bool
) -> None:
    policy = scaling_policy(scale)
    store_cfg = store_settings(store)
    # The provider's own settings are checked first: a missing token is the error users meet first.
    machines = make_provider(scale.provider, store_cfg, keep_stopped=policy.pool_size > 0)
    try:
        specs = launch_specs(scale, store_cfg, scale.provider)
    except FactoryError:
        anyio.run(machines.aclose)
        raise

    async def main() -> list[TickResult]:
        opened = open_full_store(store_cfg, role="fleet", create=not dry_run)  # a dry run changes nothing
        results: list[TickResult] = []
        failed_ticks = 0
        try:
            if scale.provider == "local" and not dry_run:
                await check_local_workers_can_start(scale)
            reconciler = Reconciler(opened, machines, policy, specs)
            while True:
                try:
                    result = await reconciler.tick(dry_run=dry_run)
                except FactoryError as exc:
                    if watch is None:
                        raise
                    # Watching is for the long run: one failed tick is reported, the next one retries.
                    err.print(f"error: {one_line(exc)}")
                    await anyio.sleep(watch)
                    continue
                results.append(result)
                if as_json:
                    print_json(_as_json(result, scale.provider, dry_run))
                elif watch is None or not result.plan.empty:
                    _print_plan(result, scale.provider, dry_run)
                if watch is None:
                    return results
                # An idle worker's window ends, or a launch reaches its hedge, before the interval:
                # look again then; after failed actions, soon.
                failed_ticks = failed_ticks + 1 if result.errors else 0
                await _until_next_tick(opened, next_tick_in_s(watch, result.plan.recheck_in_s, failed_ticks))
        finally:
            with anyio.CancelScope(shield=True):
                await machines.aclose()
                await opened.aclose()

    try:
        results = anyio.run(main)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    errors = results[-1].errors
    if errors:
        raise AutoscalerError(f"{len(errors)} action(s) failed; first: {errors[0].detail}")
