"""``LocalProvider``: the async ``Provider`` protocol over ``Launches``, whose blocking work runs in threads."""

from __future__ import annotations

import builtins
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import structlog

from autoscaler.errors import ProviderConfigError, ProviderError
from autoscaler.provider import LaunchSpec, Machine
from autoscaler.providers.local.config import PROVIDER, LocalConfig
from autoscaler.providers.local.launches import Launches
from autoscaler.providers.local.procs import read_boot_id
from autoscaler.providers.local.records import LaunchRecord

T = TypeVar("T")

_log = structlog.get_logger(__name__)

# After SIGKILL a process is gone within milliseconds unless stuck in the kernel (D state).
_KILL_WAIT_S = 5.0
_POLL_FIRST_S = 0.02
_POLL_MAX_S = 0.25


class LocalProvider:
    """``autoscaler.provider.Provider`` for worker processes on this machine (Linux: needs /proc)."""

    def __init__(self, config: LocalConfig | None = None) -> None:
        self._config = config if config is not None else LocalConfig()
        if not Path("/proc/self/stat").exists():
            raise ProviderConfigError("provider", "the local provider needs Linux /proc")
        self._dir = self._config.state_dir.expanduser().absolute()
        self._launches = Launches(self._config, self._dir, read_boot_id())

    @property
    def name(self) -> str:
        return PROVIDER

    @property
    def state_dir(self) -> Path:
        return self._dir

    async def aclose(self) -> None:
        """Reap workers of ours that already exited; running workers are left running."""
        try:
            await self._thread(self._launches.machines)
        except (ProviderError, OSError) as exc:
            _log.warning("local provider close: could not reap exited workers", error=str(exc))

    # -- the Provider protocol ------------------------------------------------------------------

    async def create(self, spec: LaunchSpec, *, parked: bool = False) -> Machine:
        if parked:
            raise ProviderError(PROVIDER, "create", "local workers have no warm pool: set FACTORY_SCALE_POOL_SIZE=0")
        return await self._thread(self._launches.create, spec)

    async def list(self) -> builtins.list[Machine]:
        return await self._thread(self._launches.machines)

    async def find(self, launch_id: str) -> Machine | None:
        return await self._thread(self._launches.find, launch_id)

    async def start(self, machine: Machine) -> None:
        # A process that has exited cannot be started again; a new launch is as quick here.
        raise ProviderError(PROVIDER, "start", "local workers have no warm pool: set FACTORY_SCALE_POOL_SIZE=0")

    async def stop(self, machine: Machine) -> None:
        await self._thread(self._launches.stop, machine)

    async def destroy(self, machine: Machine) -> None:
        record = await self._thread(self._launches.term_for_destroy, machine)
        if record is None:
            return
        remaining = self._config.stop_timeout_s
        if record.stop_requested_at is not None:
            # Asked earlier: the grace runs from that request, not from now.
            elapsed = (datetime.now(UTC) - record.stop_requested_at).total_seconds()
            remaining = max(0.0, remaining - max(0.0, elapsed))
        if not await self._wait_gone(record, remaining):
            _log.warning(
                "local worker ignored SIGTERM; killing it",
                launch_id=record.launch_id,
                machine_id=record.machine_id,
                pid=record.pid,
                stop_timeout_s=self._config.stop_timeout_s,
            )
            await self._thread(self._launches.send, record, signal.SIGKILL, True)
            if not await self._wait_gone(record, _KILL_WAIT_S):
                raise ProviderError(
                    PROVIDER,
                    "destroy",
                    f"pid {record.pid} of machine {record.machine_id} did not exit {_KILL_WAIT_S:g} s after SIGKILL",
                    retryable=True,
                )
        await self._thread(self._launches.remove, record)
        _log.info("local worker destroyed", launch_id=record.launch_id, machine_id=record.machine_id, pid=record.pid)

    # -- beyond the protocol --------------------------------------------------------------------

    async def destroy_all(self) -> int:
        """Destroy every machine in ``state_dir`` at once (SIGTERM all, then SIGKILL stragglers).

        For callers that must leave nothing behind (``factory run`` on exit). Returns how many
        machines were destroyed; raises one ``ProviderError`` after trying all of them if any failed.
        """
        machines = await self.list()
        failures: builtins.list[str] = []

        async def one(machine: Machine) -> None:
            try:
                await self.destroy(machine)
            except ProviderError as exc:
                failures.append(str(exc))

        async with anyio.create_task_group() as tg:
            for machine in machines:
                tg.start_soon(one, machine)
        if failures:
            raise ProviderError(
                PROVIDER,
                "destroy_all",
                f"{len(failures)} of {len(machines)} machine(s) not destroyed; first: {failures[0]}",
                retryable=True,
            )
        return len(machines)

    async def launch_record(self, launch_id: str) -> LaunchRecord | None:
        """The launch record as stored (pid, log path, exit code), after refreshing its exit."""
        return await self._thread(self._launches.record, launch_id)

    # -- internals ------------------------------------------------------------------------------

    async def _wait_gone(self, record: LaunchRecord, timeout_s: float) -> bool:
        """Poll until the record's process has exited (reaping it when it is ours); False on timeout."""
        interval = _POLL_FIRST_S
        with anyio.move_on_after(timeout_s):
            while (await self._thread(self._launches.seen, record)).alive:
                await anyio.sleep(interval)
                interval = min(interval * 2, _POLL_MAX_S)
            return True
        return not (await self._thread(self._launches.seen, record)).alive

    async def _thread(self, func: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(func, *args)
