"""The Provider seam: create, list and destroy worker machines on one platform.

Providers only carry out decisions; the pure planner decides. Every machine a provider creates
carries the launch id it was given (Fly metadata, a DigitalOcean tag, a local process record),
so an ambiguous create is resolved by ``find`` instead of a second create.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import anyio
import structlog
from pydantic import BaseModel, ConfigDict

from autoscaler.errors import ProviderError
from contracts.launch import WorkerEnvironment
from contracts.retry import Sleep

_log = structlog.get_logger("autoscaler")

# suspended: frozen with its memory (Fly); a start resumes it with its worker and gateway running.
MachineState = Literal["starting", "running", "stopping", "stopped", "suspended", "failed", "unknown"]


class Machine(BaseModel):
    """A worker machine as the provider reports it, normalised across providers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    machine_id: str
    provider: str
    state: MachineState
    launch_id: str | None = None
    region: str | None = None
    created_at_ms: int | None = None
    # The worker id the machine runs as, when the provider knows it (set in the worker env).
    worker_id: str | None = None
    # The conversation the machine was told (a pinned launch, or a pool machine started for one),
    # when the provider shows it: the planner counts such a machine as that conversation's.
    conversation_id: str | None = None


class LaunchSpec(BaseModel):
    """What one new worker machine needs: its environment, which names it (contracts.launch)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: WorkerEnvironment

    @property
    def launch_id(self) -> str:
        return self.environment.launch_id

    @property
    def worker_id(self) -> str:
        return self.environment.worker_id


class Provider(Protocol):
    @property
    def name(self) -> str: ...

    async def create(self, spec: LaunchSpec, *, parked: bool = False) -> Machine:
        """Create one machine tagged with ``spec.launch_id``; ``parked``: created stopped, for the
        warm pool (a provider that cannot raises a non-retryable ``ProviderError``).

        Raises ``autoscaler.errors.ProviderError``; ``ambiguous=True`` on it means the
        machine may exist anyway (timeout, 5xx, lost response): look it up with ``find``.
        """
        ...

    async def list(self) -> list[Machine]:
        """Every machine this fleet owns on the platform (filtered by our tag or metadata)."""
        ...

    async def find(self, launch_id: str) -> Machine | None: ...

    async def start(self, machine: Machine) -> None:
        """Start a stopped (parked) machine: its worker boots again. A running machine is left as it is."""
        ...

    async def stop(self, machine: Machine) -> None:
        """Ask the machine to shut down gracefully (SIGTERM to the worker). Idempotent."""
        ...

    async def destroy(self, machine: Machine) -> None:
        """Remove the machine for good; a machine already gone is success."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Suspends(Protocol):
    """A provider that can freeze a running machine with its memory (Fly's suspend): ``start``
    then resumes it with its processes as they were, instead of booting them again."""

    async def suspend(self, machine: Machine) -> None:
        """Suspend a running machine; one already suspended is left as it is."""
        ...


@runtime_checkable
class Reconfigures(Protocol):
    """A provider that can give a stopped machine a new environment before it boots (Fly's update):
    a warm pool's machine is then started told its conversation, like a pinned launch, and restores
    that conversation's memory as it boots."""

    async def reconfigure(self, machine: Machine, spec: LaunchSpec) -> None:
        """Replace a stopped machine's environment with ``spec``'s; it stays stopped."""
        ...


async def find_launch(
    provider: Provider, launch_id: str, *, attempts: int, interval_s: float, sleep: Sleep = anyio.sleep
) -> Machine | None:
    """``find`` up to ``attempts`` times, ``interval_s`` apart: platform lists lag behind creates.

    A lookup that fails counts as "not there yet" (and is logged): the caller decides what a
    launch that never shows up means.
    """
    for attempt in range(attempts):
        if attempt:
            await sleep(interval_s)
        try:
            found = await provider.find(launch_id)
        except ProviderError as exc:
            _log.warning("lookup by launch tag failed", launch_id=launch_id, error=str(exc))
            found = None
        if found is not None:
            return found
    return None
