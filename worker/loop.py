"""The worker loop: register, then control check → claim → run the job → complete or fail.

Structured concurrency throughout: each job runs in its own cancel scope beside its lease
keeper and a shutdown watch; when the job ends, both end with it. Settling a job (complete or
fail) runs shielded, so a shutdown cannot cut a settle in half.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import structlog

from contracts.errors import FactoryError
from contracts.models import ClaimedJob, FailRequest, LeaseRef, WorkerRegistration
from contracts.roles import WorkerStore
from worker.config import WorkerConfig
from worker.errors import JobError
from worker.health import Readiness
from worker.job import JobRunner
from worker.lease_keeper import Grant, LeaseState, keep_lease
from worker.metrics import WorkerMetrics

log = structlog.get_logger("worker")
ExitReason = Literal["once", "idle", "signal", "control"]
SETTLE_TIMEOUT_S = 30.0


class ShutdownCut(JobError):
    retryable = True


class GatewayNotReady(FactoryError):
    """The gateway starting beside the worker did not become ready in time; nothing was claimed."""


_GATEWAY_POLL_S = 0.1


@dataclass(frozen=True)
class WorkerExit:
    reason: ExitReason
    processed: int
    detail: str = ""


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        store: WorkerStore,
        runner: JobRunner,
        metrics: WorkerMetrics,
        readiness: Readiness,
        gateway_ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """``gateway_ready`` probes the gateway; with ``config.gateway_wait_s`` the first claim waits for it."""
        self.gateway_ready = gateway_ready
        self.config = config
        self.store = store
        self.runner = runner
        self.metrics = metrics
        self.readiness = readiness
        self._stop = anyio.Event()
        self._processed = 0
        self.last_failure: str | None = None

    def request_stop(self) -> None:
        """Stop claiming; the job in flight gets ``grace_s`` to finish. Safe to call twice."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> WorkerExit:
        cfg = self.config
        await self.store.worker_register(
            WorkerRegistration(
                worker_id=cfg.worker_id,
                provider=cfg.provider,
                machine_ref=cfg.machine_ref,
                launch_id=cfg.launch_id,
                capabilities=list(cfg.capabilities),
            )
        )
        self.readiness.mark_registered()
        log.info("worker registered", worker_id=cfg.worker_id, provider=cfg.provider)
        try:
            if not await self._await_gateway():
                return WorkerExit("signal", 0, "stopped before the gateway was ready")
            return await self._loop()
        finally:
            self.readiness.mark_draining()

    async def _await_gateway(self) -> bool:
        """Before the first claim, wait for a gateway that is starting beside us; False if told to stop.

        Raises ``GatewayNotReady`` when it is not ready in time: nothing has been claimed then.
        """
        wait_s = self.config.gateway_wait_s
        if wait_s is None or self.gateway_ready is None:
            return True
        started = anyio.current_time()
        with anyio.move_on_after(wait_s):
            while not self.stopping:
                if await self.gateway_ready():
                    log.info("gateway ready", waited_s=round(anyio.current_time() - started, 2))
                    return True
                with anyio.move_on_after(_GATEWAY_POLL_S):
                    await self._stop.wait()
            return False
        raise GatewayNotReady(
            f"the gateway was not ready within {wait_s:g} s (FACTORY_GATEWAY_WAIT_S); nothing was claimed"
        )

    async def _loop(self) -> WorkerExit:
        cfg = self.config
        idle_since = anyio.current_time()
        while not self.stopping:
            control = await self.store.worker_control_state(cfg.worker_id)
            if control.should_stop:
                log.info("told to stop; draining", worker_id=cfg.worker_id, reason=control.reason)
                return WorkerExit("control", self._processed, control.reason or "")
            claimed_at = anyio.current_time()
            job = await self.store.worker_claim(cfg.worker_id, cfg.conversation_id)
            if job is None:
                if cfg.once:
                    return WorkerExit("once", self._processed, "nothing to do")
                if cfg.idle_exit_s is not None and anyio.current_time() - idle_since >= cfg.idle_exit_s:
                    return WorkerExit("idle", self._processed, f"idle for {cfg.idle_exit_s:g} s")
                await self._wait_for_work()
                continue
            self.metrics.claimed()
            await self._process(job, claimed_at)
            self._processed += 1
            idle_since = anyio.current_time()
            if cfg.once:
                return WorkerExit("once", self._processed)
        return WorkerExit("signal", self._processed)

    async def _wait_for_work(self) -> None:
        """Sleep until the store rings, the poll interval passes, or we are asked to stop."""
        async with anyio.create_task_group() as tg:

            async def bell() -> None:
                await self.store.wait_for_work(self.config.poll_s)
                tg.cancel_scope.cancel()

            async def stop() -> None:
                await self._stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(bell)
            tg.start_soon(stop)

    # ------------------------------------------------------------------ one job

    async def _process(self, job: ClaimedJob, claimed_at: float) -> None:
        lease = LeaseRef(worker_id=self.config.worker_id, message_id=job.message_id, lease_id=job.lease_id)
        state = LeaseState()
        cut = _Cut()
        error: BaseException | None = None
        self.metrics.set_busy(True)
        started = anyio.current_time()
        try:
            with anyio.CancelScope() as job_scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_shutdown, job_scope, cut)
                    granted = Grant(asked_at=claimed_at, lease_expires_at=job.lease_expires_at, store_now=job.now)
                    tg.start_soon(
                        lambda: keep_lease(self.store, lease, granted=granted, job_scope=job_scope, state=state)
                    )
                    try:
                        await self.runner.run(job)
                    except Exception as exc:  # every failure of the job is settled below
                        error = exc
                    tg.cancel_scope.cancel()
        finally:
            self.metrics.set_busy(False)
            self.metrics.job_seconds.observe(anyio.current_time() - started)
        if state.lost:
            # Someone else may own this message now: say nothing more about it.
            self.metrics.lease_lost()
            return
        if cut.happened:
            error = ShutdownCut(f"worker shut down before the job finished (grace {self.config.grace_s:g} s)")
        with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_TIMEOUT_S):
            await self._settle(job, lease, error)

    async def _watch_shutdown(self, job_scope: anyio.CancelScope, cut: _Cut) -> None:
        await self._stop.wait()
        await anyio.sleep(self.config.grace_s)
        cut.happened = True
        log.warning("grace period over; cancelling the job in flight", grace_s=self.config.grace_s)
        job_scope.cancel()

    async def _settle(self, job: ClaimedJob, lease: LeaseRef, error: BaseException | None) -> None:
        try:
            if error is None:
                answer = await self.store.worker_complete(lease)
                if answer.ok:
                    self.metrics.completed()
                    log.info("completed", message_id=job.message_id, attempt=job.attempt)
                else:
                    self.metrics.lease_lost()
                    log.warning("complete refused", message_id=job.message_id, refused=answer.refused)
                return
            retryable = error.retryable if isinstance(error, FactoryError) else True
            message = _one_line(error)
            result = await self.store.worker_fail(FailRequest(lease=lease, error_message=message, retryable=retryable))
            self.metrics.failed(retryable=retryable)
            if result.dead_lettered:
                self.metrics.dead_lettered()
            self.last_failure = _describe_failure(job, result.dead_lettered, result.next_scheduled_for, message)
            log.warning(
                "failed",
                message_id=job.message_id,
                attempt=job.attempt,
                retryable=retryable,
                dead_lettered=result.dead_lettered,
                error=message,
            )
        except FactoryError as exc:
            # The store did not answer: the lease runs out and the message is delivered again.
            log.error("could not settle the job", message_id=job.message_id, error=str(exc))


@dataclass
class _Cut:
    happened: bool = False


def _describe_failure(job: ClaimedJob, dead: bool, next_at: int | None, message: str) -> str:
    if dead:
        outcome = "dead-lettered"
    elif next_at is not None:
        outcome = f"failed on attempt {job.attempt}, queued for retry"
    else:
        outcome = "failed, but the lease was already lost"
    return f"message {job.message_id} {outcome}: {message}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if not isinstance(error, FactoryError):
        text = f"{type(error).__name__}: {text}"
    return " ".join(text.split())[:2000]
