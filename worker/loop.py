"""The worker loop: check the store and the gateway, register, then claim → run the job → complete,
fail or release.

A busy worker makes one store call per message, plus heartbeats. A claim answers with the job's
hydration bundle and whether the worker must stop (``worker_claim(with_bundle=True)``); a complete
carries the job's history turns and claims the next job in the same call
(``worker_complete(history=…, claim_next=…)``), which the loop then runs at once. Nothing is
claimed next by a worker that is stopping, running ``--once`` or told to drain (a heartbeat answer
says so). A complete the store refused claims nothing: the loop claims as usual. A complete the
store could not take is sent again once it answers, and the store hands back the job its first try
claimed, never a second one.

Structured concurrency throughout: each job runs in its own cancel scope beside its lease keeper and
a shutdown watch; when the job ends, both end with it. Settling a job (complete, fail or release)
runs shielded, so a shutdown cannot cut a settle in half.

Whose fault a failure is decides what happens to the message (``fault``, :mod:`contracts.errors`):

* the message's: fail it (retry with backoff; in the end, the dead letter);
* the infrastructure's (gateway, model or store unwell): release it (back in its place, no attempt
  spent), stop claiming, report not ready, and probe what failed until it answers
  (:mod:`worker.outage`), then carry on. A settle the store could not take is sent once it answers.

What can never work is refused at start, before anything is claimed (:class:`StartupRefused`): a
gateway that refuses our token or is no URL at all, a store that refuses our credentials. What may
clear by itself (nothing listening yet) is waited out, not ready meanwhile.

A worker pinned to a conversation with a memory (``worker.memory``) snapshots its agent's state
each time it runs out of work with turns its newest snapshot lacks (``snapshot_when_idle``), and
when it stops for good (drained, told to stop, SIGTERM, idle exit) if turns are still unsaved; a
second signal interrupts the snapshot like anything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
import structlog

from contracts.errors import FactoryError, Fault, StoreUnavailable
from contracts.models import (
    ClaimedJob,
    ClaimResult,
    ControlState,
    FailRequest,
    HistoryMessage,
    HydrationBundle,
    LeaseRef,
    NextClaim,
    ReleaseRequest,
    SnapshotReason,
    WorkerRegistration,
)
from contracts.retry import Sleep
from contracts.roles import WorkerStore
from worker.config import WorkerConfig
from worker.errors import JobError, ModelUnavailable
from worker.health import Readiness
from worker.job import JobRunner
from worker.lease_keeper import Grant, LeaseState, keep_lease
from worker.memory import AgentMemory, MemoryOutcome
from worker.metrics import WorkerMetrics
from worker.outage import Component, Outage, OutagePolicy, component_of, ride_out

log = structlog.get_logger("worker")
ExitReason = Literal["once", "idle", "signal", "control"]
SETTLE_TIMEOUT_S = 30.0
_SNAPSHOT_REASONS: dict[str, SnapshotReason] = {"control": "drain", "signal": "signal", "idle": "idle"}


class ShutdownCut(JobError):
    """The worker is leaving before the job finished: not the message's fault, so it is given back."""

    retryable = True
    fault: Fault = "infrastructure"


class StartupRefused(FactoryError):
    """The store or the gateway refused us at start in a way waiting cannot fix."""

    def __init__(self, component: Component, cause: FactoryError) -> None:
        super().__init__(f"the {component} cannot be used with these settings: {cause}")
        self.component = component
        self.cause = cause


class GatewayNotReady(FactoryError):
    """The gateway starting beside the worker did not become ready in time; nothing was claimed."""


_GATEWAY_POLL_S = 0.1


@dataclass(frozen=True)
class WorkerExit:
    reason: ExitReason
    processed: int
    detail: str = ""
    snapshot: MemoryOutcome | None = None


@dataclass(frozen=True)
class _Answer:
    """A claim's answer, and when it was asked (monotonic seconds): by a claim of its own, or by the
    complete that claimed this job next."""

    claim: ClaimResult
    asked_at: float


@dataclass(frozen=True)
class _Settle:
    """How one job ends: complete (no error), fail (the message's fault) or release (not its fault).

    A complete carries the job's history turns and, unless the worker is leaving, claims the next job.
    """

    job: ClaimedJob
    lease: LeaseRef
    error: BaseException | None
    history: Sequence[HistoryMessage] = ()
    claim_next: NextClaim | None = None

    @property
    def kind(self) -> Literal["complete", "fail", "release"]:
        if self.error is None:
            return "complete"
        return "release" if _fault(self.error) == "infrastructure" else "fail"


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        store: WorkerStore,
        runner: JobRunner,
        metrics: WorkerMetrics,
        readiness: Readiness,
        memory: AgentMemory | None = None,
        *,
        outage_policy: OutagePolicy | None = None,
        sleep: Sleep = anyio.sleep,
        gateway_ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """``gateway_ready`` probes the gateway; with ``config.gateway_wait_s`` the first claim waits for it."""
        self.gateway_ready = gateway_ready
        self.config = config
        self.store = store
        self.runner = runner
        self.metrics = metrics
        self.readiness = readiness
        self.memory = memory
        self.outage_policy = outage_policy or OutagePolicy()
        self._sleep = sleep
        self._stop = anyio.Event()
        self._on_stop: anyio.CancelScope | None = None
        self._processed = 0
        self._outage: Outage | None = None
        self._pending: _Settle | None = None
        # The next job a complete claimed (or its empty answer), run before claiming again.
        self._ahead: _Answer | None = None
        # A heartbeat or complete answer said to stop: drain once the job in flight is settled.
        self._told: ControlState | None = None
        # Turns processed since the pinned conversation's last ready snapshot, and how many had
        # been processed when a snapshot was last tried while idle (one try per quiet spell).
        self._unsaved = 0
        self._tried_at = 0
        self.last_failure: str | None = None

    def request_stop(self) -> None:
        """Stop claiming; the job in flight gets ``grace_s`` to finish. Safe to call twice."""
        self._stop.set()
        if self._on_stop is not None:
            self._on_stop.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> WorkerExit:
        try:
            if not await self._start():
                return WorkerExit("signal", 0, "stopped before the first claim")
            done = await self._loop()
            self.readiness.mark_draining()
            await self._give_back_ahead()
            return await self._snapshot(done)
        finally:
            self.readiness.mark_draining()

    # ------------------------------------------------------------------ start

    async def _start(self) -> bool:
        """Check the store and register at once (a gateway starting beside us may still be coming
        up), wait for that gateway, then check it can take a turn. False if asked to stop meanwhile."""
        cfg = self.config
        registration = self._registration(cfg.conversation_id)

        async def register() -> None:
            await self.store.worker_register(registration)

        if not (await self._check("store", self.store.now_ms) and await self._check("store", register)):
            return False
        self.readiness.mark_registered()
        log.info("worker registered", worker_id=cfg.worker_id, provider=cfg.provider, pinned=cfg.conversation_id)
        return await self._await_gateway() and await self._check("gateway", self.runner.probe)

    def _registration(self, conversation_id: str | None) -> WorkerRegistration:
        cfg = self.config
        return WorkerRegistration(
            worker_id=cfg.worker_id,
            provider=cfg.provider,
            machine_ref=cfg.machine_ref,
            launch_id=cfg.launch_id,
            capabilities=list(cfg.capabilities),
            conversation_id=conversation_id,
        )

    async def _check(self, component: Component, probe: Callable[[], Awaitable[object]]) -> bool:
        try:
            await probe()
        except FactoryError as exc:
            if not exc.retryable:
                raise StartupRefused(component, exc) from None
            log.warning("not available yet; waiting for it", component=component, error=str(exc))
            self.metrics.outage(component)
            if not await self._unless_stopped(self._riding(Outage(component, str(exc)), probe)):
                return False
        self.readiness.clear(component)
        return True

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

    # ------------------------------------------------------------------ the loop

    async def _snapshot(self, done: WorkerExit) -> WorkerExit:
        """The pinned conversation's agent state, once the worker stops for good (unless a snapshot
        taken while idle holds every turn already)."""
        reason = _SNAPSHOT_REASONS.get(done.reason)
        if reason is None or not self._unsaved:
            return done
        outcome = await self._take_snapshot(reason)
        return done if outcome is None else WorkerExit(done.reason, done.processed, done.detail, outcome)

    async def _snapshot_when_idle(self) -> None:
        """Out of work with turns the conversation's newest snapshot lacks: snapshot them now, once
        per quiet spell. A suspended machine whose resume boots afresh, or one that crashes, then
        restores them; a worker that only snapshots as it stops would lose every turn since."""
        if self.config.snapshot_when_idle and self._unsaved and self._tried_at != self._processed:
            self._tried_at = self._processed
            await self._take_snapshot("idle")

    async def _take_snapshot(self, reason: SnapshotReason) -> MemoryOutcome | None:
        pin, agent = self.config.conversation_id, self.runner.last_agent
        if self.memory is None or pin is None or agent is None:
            return None
        outcome = await self.memory.snapshot(agent[0], agent[1], pin, reason)
        if outcome.status == "ready":
            self._unsaved = 0  # taken while idle or stopping: no turn ran meanwhile
        return outcome

    async def _loop(self) -> WorkerExit:
        cfg = self.config
        idle_since = anyio.current_time()
        while not self.stopping:
            if self._outage is not None:
                if not await self._recover():
                    break
                continue
            finished = self._finished()
            if finished is not None:
                return finished
            try:
                answer = await self._claim()
                if answer.claim.control.should_stop:
                    return self._drained(answer.claim.control)
                job = answer.claim.job
                if job is None:
                    if cfg.once:
                        return WorkerExit("once", self._processed, "nothing to do")
                    if cfg.idle_exit_s is not None and anyio.current_time() - idle_since >= cfg.idle_exit_s:
                        return WorkerExit("idle", self._processed, f"idle for {cfg.idle_exit_s:g} s")
                    await self._snapshot_when_idle()
                    await self._unless_stopped(lambda: self.store.wait_for_work(cfg.poll_s))
                    continue
            except FactoryError as exc:
                if _fault(exc) != "infrastructure":
                    raise
                self._open(Outage("store", str(exc)))
                continue
            self.metrics.claimed()
            await self._stick(job.conversation_id)
            if await self._process(job, answer.claim.bundle, answer.asked_at):
                self._processed += 1
                self._unsaved += 1
                idle_since = anyio.current_time()
        return WorkerExit("signal", self._processed)

    async def _stick(self, conversation_id: str) -> None:
        """A sticky worker pins itself to the conversation of its job: from then on it claims that
        one only, the autoscaler counts it as its worker (resumes it for it, snapshots it on the
        way out), and its memory stays here. Not when the conversation's memory is elsewhere
        already, in a snapshot or with a worker pinned to it (suspended, starting, or silent past
        the hold): this gateway has not got it, and its own snapshot would supersede it with less.
        Best effort: a store that cannot answer now leaves it unpinned until the next job."""
        cfg = self.config
        if not cfg.sticky or cfg.conversation_id is not None:
            return
        try:
            if self.memory is not None:
                boot = await self.memory.store.snapshot_boot(cfg.workspace_id, conversation_id)
                held = boot is not None and any(w != cfg.worker_id for w in boot.pinned_workers)
                if boot is not None and (boot.snapshot is not None or held):
                    where = "with a worker pinned to it" if held else "in a snapshot"
                    log.info(f"not sticking: the conversation's memory is {where}", worker_id=cfg.worker_id)
                    return
            await self.store.worker_register(self._registration(conversation_id))
        except FactoryError as exc:
            log.warning("could not pin to the conversation; trying again at the next job", error=str(exc))
            return
        self.config = cfg.model_copy(update={"conversation_id": conversation_id})
        log.info("pinned to its first conversation", worker_id=cfg.worker_id, conversation_id=conversation_id)

    def _finished(self) -> WorkerExit | None:
        """Why to leave before claiming again: ``--once`` done, or an answer said to stop."""
        if self.config.once and self._processed:
            return WorkerExit("once", self._processed)
        return None if self._told is None else self._drained(self._told)

    def _drained(self, control: ControlState) -> WorkerExit:
        log.info("told to stop; draining", worker_id=self.config.worker_id, reason=control.reason)
        return WorkerExit("control", self._processed, control.reason or "")

    async def _claim(self) -> _Answer:
        """The next job a complete already claimed, else one claim: the job, its bundle, whether to stop."""
        answer, self._ahead = self._ahead, None
        if answer is not None:
            return answer
        asked_at = anyio.current_time()
        claimed = await self.store.worker_claim(self.config.worker_id, self.config.conversation_id, with_bundle=True)
        return _Answer(claimed, asked_at)

    async def _unless_stopped(self, work: Callable[[], Awaitable[object]]) -> bool:
        """Run ``work`` unless asked to stop first; True if it finished. Its errors propagate as they
        are (no task group in between to wrap them)."""
        with anyio.CancelScope() as scope:
            self._on_stop = scope
            try:
                if self.stopping:
                    return False
                await work()
            finally:
                self._on_stop = None
        return not scope.cancelled_caught

    # ------------------------------------------------------------------ outages

    def _open(self, outage: Outage) -> None:
        # One outage at a time, the first one seen: once it clears, the next claim meets any other.
        if self._outage is None:
            self.metrics.outage(outage.component)
            self._outage = outage

    def _riding(self, outage: Outage, probe: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        return lambda: ride_out(outage, probe, policy=self.outage_policy, readiness=self.readiness, sleep=self._sleep)

    async def _recover(self) -> bool:
        """Wait for the open outage to end, then send the settle it held up. False if stopped."""
        outage = self._outage
        assert outage is not None
        if outage.component == "store":

            async def probe() -> None:
                await self.store.worker_control_state(self.config.worker_id)

        else:

            async def probe() -> None:
                await self.runner.probe(outage.agent_id)

        if not await self._unless_stopped(self._riding(outage, probe)):
            return False
        self._outage = None
        pending, self._pending = self._pending, None
        if pending is not None:
            await self._settle(pending)
        return True

    # ------------------------------------------------------------------ one job

    async def _give_back_ahead(self) -> None:
        """A next job claimed while the worker was being stopped is given back unstarted."""
        ahead, self._ahead = self._ahead, None
        job = None if ahead is None else ahead.claim.job
        if job is not None:
            lease = LeaseRef(worker_id=self.config.worker_id, message_id=job.message_id, lease_id=job.lease_id)
            await self._settle(_Settle(job, lease, ShutdownCut("worker stopped before it started the job")))

    async def _process(self, job: ClaimedJob, bundle: HydrationBundle | None, claimed_at: float) -> bool:
        """Run one job and settle it; True if it ended here, False if it was given back."""
        lease = LeaseRef(worker_id=self.config.worker_id, message_id=job.message_id, lease_id=job.lease_id)
        state = LeaseState()
        cut = _Cut()
        error: BaseException | None = None
        turns: list[HistoryMessage] = []
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
                        turns = await self.runner.run(job, bundle)
                    except Exception as exc:  # every failure of the job is settled below
                        error = exc
                    tg.cancel_scope.cancel()
        finally:
            self.metrics.set_busy(False)
            self.metrics.job_seconds.observe(anyio.current_time() - started)
        self._told = self._told or state.stop
        if state.lost:
            self.metrics.lease_lost()
            if not state.unanswered:
                return True  # someone else may own this message now: say nothing more about it
            # The store did not answer: nobody may have taken it over. Give it back (fenced).
            error = StoreUnavailable(self.store.name, f"no heartbeat answered in time ({state.reason})")
        elif cut.happened:
            error = ShutdownCut(f"worker shut down before the job finished (grace {self.config.grace_s:g} s)")
        leaving = self.stopping or self.config.once or self._told is not None
        claim_next = None if error is not None or leaving else NextClaim(conversation_id=self.config.conversation_id)
        settle = _Settle(job, lease, error, turns, claim_next)
        ended = await self._settle(settle)
        given_back = settle.kind == "release" and isinstance(error, FactoryError) and not isinstance(error, ShutdownCut)
        if given_back and isinstance(error, FactoryError) and component_of(error) == "gateway":
            agent = error.agent_id if isinstance(error, ModelUnavailable) else None
            self._open(Outage("gateway", _one_line(error), agent))
        return ended

    async def _watch_shutdown(self, job_scope: anyio.CancelScope, cut: _Cut) -> None:
        await self._stop.wait()
        await anyio.sleep(self.config.grace_s)
        cut.happened = True
        log.warning("grace period over; cancelling the job in flight", grace_s=self.config.grace_s)
        job_scope.cancel()

    async def _settle(self, settle: _Settle) -> bool:
        """Complete, fail or release; if the store cannot take it now, hold it until it answers.
        True unless the message was given back."""
        try:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(SETTLE_TIMEOUT_S) as waited:
                    await self._send(settle)
                if waited.cancelled_caught:
                    raise StoreUnavailable(self.store.name, f"no answer within {SETTLE_TIMEOUT_S:g} s")
        except FactoryError as exc:
            if _fault(exc) != "infrastructure":
                # The store ran the call and refused it: the lease runs out and the message comes back.
                log.error("could not settle the job", message_id=settle.job.message_id, error=str(exc))
                return settle.kind != "release"
            log.warning("store unavailable; the settle waits", message_id=settle.job.message_id, kind=settle.kind)
            self._pending = settle
            self._open(Outage("store", f"could not {settle.kind} message {settle.job.message_id}: {exc}"))
        return settle.kind != "release"

    async def _give_back_lapsed(self, lease: LeaseRef, refused: str | None) -> None:
        """The job ran to its end, but its lease lapsed meanwhile (the store could not be reached to
        renew it): not the message's fault. A fenced release gives the attempt back: the message is
        due again at once if nobody took it over, and if someone did, it keeps running there."""
        if refused not in ("lease_expired", "lease_lost"):
            return
        given = await self.store.worker_release(ReleaseRequest(lease=lease, reason=f"complete refused: {refused}"))
        log.info("lapsed lease given back", message_id=lease.message_id, ok=given.ok, refused=given.refused)

    async def _send(self, settle: _Settle) -> None:
        job, lease, error = settle.job, settle.lease, settle.error
        if error is None:
            sent = anyio.current_time()
            answer = await self.store.worker_complete(lease, history=settle.history, claim_next=settle.claim_next)
            if answer.ok:
                self.metrics.completed()
                log.info("completed", message_id=job.message_id, attempt=job.attempt)
                if answer.next is not None:
                    self._ahead = _Answer(answer.next, sent)
            else:
                # Nothing was claimed next: the loop claims as usual.
                self.metrics.lease_lost()
                log.warning("complete refused", message_id=job.message_id, refused=answer.refused)
                await self._give_back_lapsed(lease, answer.refused)
            if answer.control is not None and answer.control.should_stop:
                self._told = answer.control
            return
        message = _one_line(error)
        if settle.kind == "release":
            assert isinstance(error, FactoryError)  # only our errors carry an infrastructure fault
            released = await self.store.worker_release(ReleaseRequest(lease=lease, reason=message))
            self.metrics.released("shutdown" if isinstance(error, ShutdownCut) else component_of(error))
            log.warning(
                "released: not the message's fault",
                message_id=job.message_id,
                ok=released.ok,
                refused=released.refused,
                error=message,
            )
            return
        retryable = error.retryable if isinstance(error, FactoryError) else True
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


@dataclass
class _Cut:
    happened: bool = False


def _fault(error: BaseException) -> Fault:
    # Anything that is not one of our errors is a bug met while running the message: its fault.
    return error.fault if isinstance(error, FactoryError) else "message"


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
