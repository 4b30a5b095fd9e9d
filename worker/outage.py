"""Riding out an infrastructure fault: not ready, back off with jitter, probe until the fault clears.

An infrastructure fault (the store, the gateway or an agent's model unwell; see ``fault`` in
:mod:`contracts.errors`) is never a message's: the worker gives the message back, stops claiming,
says why on ``/readyz``, and probes what failed until it answers again. The wait is bounded only by
``max_outage_s`` (None: a fleet worker waits as long as the outage lasts); past it the worker exits
with :class:`OutageTooLong`, one line saying what was down and why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import structlog
from pydantic import BaseModel, ConfigDict, Field

from contracts.errors import FactoryError, Fault, StoreError
from contracts.retry import RetryPolicy, Sleep, retrying
from worker.health import Readiness

Component = Literal["store", "gateway"]
_log = structlog.get_logger("worker.outage")


class OutagePolicy(BaseModel):
    """How patiently a worker probes what failed: exponential from ``initial_s`` to ``max_s``, plus
    up to ``jitter_s`` (so a fleet does not probe in step), for at most ``max_outage_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_s: float = Field(default=0.25, ge=0)
    # Probes are cheap (a handshake, a store read): a short cap notices the end of an outage fast.
    max_s: float = Field(default=5.0, ge=0)
    jitter_s: float = Field(default=1.0, ge=0)
    max_outage_s: float | None = Field(default=None, gt=0)

    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=None,
            initial_s=self.initial_s,
            max_s=self.max_s,
            jitter_s=self.jitter_s,
            give_up_after_s=self.max_outage_s,
        )


class OutageTooLong(FactoryError):
    retryable = False
    fault: Fault = "infrastructure"

    def __init__(self, component: Component, max_outage_s: float, cause: BaseException) -> None:
        super().__init__(f"the {component} stayed unavailable for {max_outage_s:g} s (--max-outage): {cause}")
        self.component = component


@dataclass(frozen=True)
class Outage:
    """What is down and why; ``agent_id``: the fault may be that agent's model, so probe it too."""

    component: Component
    reason: str
    agent_id: str | None = None


def component_of(error: FactoryError) -> Component:
    """Which part an infrastructure fault belongs to: the store's errors are ``StoreError``s
    (contracts); everything else a job meets on the infrastructure side is the gateway's."""
    return "store" if isinstance(error, StoreError) else "gateway"


async def ride_out(
    outage: Outage,
    probe: Callable[[], Awaitable[object]],
    *,
    policy: OutagePolicy,
    readiness: Readiness,
    sleep: Sleep = anyio.sleep,
) -> None:
    """Probe until ``probe`` succeeds; /readyz says why meanwhile. Any of our errors from the probe
    means "still unwell". Raises :class:`OutageTooLong` after ``policy.max_outage_s``."""
    readiness.fault(outage.component, outage.reason)
    _log.warning("outage: waiting for the fault to clear", component=outage.component, reason=outage.reason)
    try:
        async for attempt in retrying(
            policy.retry(),
            retry=lambda exc: isinstance(exc, FactoryError),
            event="outage: still unavailable",
            context={"component": outage.component},
            sleep=sleep,
        ):
            with attempt:
                try:
                    await probe()
                except FactoryError as exc:
                    readiness.fault(outage.component, str(exc))
                    raise
    except FactoryError as exc:
        assert policy.max_outage_s is not None  # without a limit, only success ends the retries
        raise OutageTooLong(outage.component, policy.max_outage_s, exc) from None
    readiness.clear(outage.component)
    _log.info("outage over", component=outage.component)
