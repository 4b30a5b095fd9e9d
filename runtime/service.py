"""One account's runtime: its agents' pinned workers, notification delivery, heartbeats, status.

Phases, all in one task group (structured concurrency; signal handling is the CLI's):

1. start: read the account's agents, make sure each has its queue profile (its OpenClaw agent and
   workspace files), start one worker pinned to each agent's session conversation;
2. run: every ``delivery_interval_s`` enqueue the undelivered notifications (deduped on their id);
   every second, the heartbeats that fell due; every ``health_check_interval_s`` probe the gateway
   and record the runtime status (online, or degraded while the gateway or the store is unwell);
3. stop (:meth:`Runtime.request_stop`): stop enqueueing, let each worker finish its job in flight
   (``grace_s``), then record the status offline.

Nothing here marks a notification delivered: the store does, in the transaction that completes
its message, so a runtime killed at any point neither loses nor repeats one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus
from pydantic import BaseModel, ConfigDict, Field

from contracts.clock import Clock, SystemClock
from contracts.errors import FactoryError
from contracts.models import AgentProfile, Conversation, MessageRecord
from contracts.retry import Sleep
from contracts.roles import AccountRuntimeStore, AgentStore, EnqueueStore, WorkerStore
from contracts.rules import RandomSource, system_random
from contracts.runtime import RUNTIME_PROVIDER, RuntimeAgent, RuntimeDetails, RuntimeStatus
from runtime import heartbeat
from runtime.messages import heartbeat_request, notification_request
from worker.config import WorkerConfig
from worker.delivery import Delivery, SessionProbe
from worker.health import Readiness
from worker.job import JobRunner
from worker.loop import Worker
from worker.memory import AgentMemory
from worker.metrics import WorkerMetrics
from worker.openclaw.sessions import session_key

log = structlog.get_logger("runtime")
OFFLINE_TIMEOUT_S = 10.0
_TICK_S = 1.0


def version() -> str:
    try:
        return metadata.version("factory")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a tree that was never installed
        return "unknown"


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: str = Field(min_length=1)
    delivery_interval_s: float = Field(5.0, gt=0)
    health_check_interval_s: float = Field(60.0, gt=0)
    droplet_id: str | None = None
    droplet_ip: str | None = None
    # How long a worker's job in flight may run on after a stop before it is given back.
    grace_s: float = Field(30.0, ge=0)
    worker_poll_s: float = Field(1.0, gt=0)
    # The gateway starts beside the runtime: workers wait up to this long for it (None: it is up).
    gateway_wait_s: float | None = Field(None, gt=0)
    workspace_id: str = "default"


class QueueStore(WorkerStore, EnqueueStore, AgentStore, Protocol):
    """What the runtime uses of the queue: its workers', enqueue, profiles, and two reads."""

    async def get_message(self, message_id: str) -> MessageRecord | None: ...

    async def get_conversation(self, conversation_id: str, history_limit: int = 50) -> Conversation | None: ...


@dataclass
class DeliveryState:
    running: bool = False
    last_delivery: int | None = None
    delivered: int = 0
    failed: int = 0
    # notification id → its queue message, until the message settles
    pending: dict[str, str] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        account: AccountRuntimeStore,
        store: QueueStore,
        delivery: Delivery,
        gateway_ready: Callable[[], Awaitable[bool]],
        *,
        sessions: SessionProbe | None = None,
        worker_store: Callable[[], WorkerStore] | None = None,
        memory: Callable[[WorkerConfig, WorkerStore], AgentMemory | None] | None = None,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.config = config
        self.account = account
        self.store = store
        self.delivery = delivery
        self.gateway_ready = gateway_ready
        self.sessions = sessions
        # A handle of the store per worker: an embedded store's wait-for-work has one listener.
        self._worker_store = worker_store or (lambda: store)
        # Each pinned worker's memory (from its config and store handle): it snapshots its agent's state
        # when the runtime drains, so the account's agents remember on the next machine.
        self._memory = memory
        self.clock = clock or SystemClock()
        self.rng = rng or system_random()
        self._sleep = sleep
        self.state = DeliveryState()
        self.agents: list[RuntimeAgent] = []
        self.beats: dict[str, heartbeat.Beat] = {}
        self.workers: list[Worker] = []
        self.gateway_ok = False
        self.store_ok = True
        self.status: RuntimeStatus = "offline"
        self._started = time.monotonic()
        self._stop = anyio.Event()

    # ------------------------------------------------------------------ running

    def request_stop(self) -> None:
        """Stop enqueueing and drain the workers; safe to call twice."""
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._start()
        try:
            async with anyio.create_task_group() as workers:
                for worker in self.workers:
                    workers.start_soon(self._run_worker, worker)
                async with anyio.create_task_group() as loops:
                    loops.start_soon(self._every, self.config.delivery_interval_s, self.deliver_once)
                    loops.start_soon(self._every, _TICK_S, self.heartbeats_once)
                    loops.start_soon(self._every, self.config.health_check_interval_s, self.check_once)
                    task_status.started()
                    await self._stop.wait()
                    loops.cancel_scope.cancel()
                self.state.running = False
                log.info("runtime draining", account_id=self.config.account_id, workers=len(self.workers))
                for worker in self.workers:
                    worker.request_stop()
        finally:
            self.state.running = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(OFFLINE_TIMEOUT_S):
                await self._record("offline")

    async def _start(self) -> None:
        self.agents = await self.account.agents()
        now = self.clock.now_ms()
        for agent in self.agents:
            await self.store.upsert_agent_profile(
                AgentProfile(
                    agent_key=agent.agent_key,
                    openclaw_agent_id=agent.openclaw_agent_id,
                    workspace_files=agent.workspace_files,
                )
            )
            self.beats[agent.agent_id] = heartbeat.first_beat(agent.agent_id, agent.heartbeat_interval, now, self.rng)
            self.workers.append(self._worker(agent))
        self.state.running = True
        log.info("runtime started", account_id=self.config.account_id, agents=[a.slug for a in self.agents])

    async def _run_worker(self, worker: Worker) -> None:
        try:
            await worker.run()
        finally:
            if worker.store is not self.store:
                with anyio.CancelScope(shield=True):
                    await worker.store.aclose()

    def _worker(self, agent: RuntimeAgent) -> Worker:
        config = WorkerConfig(
            worker_id=f"rt-{self.config.account_id}-{agent.slug}-{secrets.token_hex(3)}",
            provider=RUNTIME_PROVIDER,
            capabilities=(RUNTIME_PROVIDER,),
            conversation_id=agent.session_key,
            workspace_id=self.config.workspace_id,
            poll_s=self.config.worker_poll_s,
            grace_s=self.config.grace_s,
            gateway_wait_s=self.config.gateway_wait_s,
        )
        metrics = WorkerMetrics()
        store = self._worker_store()
        runner = JobRunner(
            delivery=self.delivery,
            channels={},  # the reply is posted on the task by the store, from the history
            session_key=session_key,
            metrics=metrics,
            sessions=self.sessions,
        )
        memory = self._memory(config, store) if self._memory is not None else None
        return Worker(config, store, runner, metrics, Readiness(), gateway_ready=self.gateway_ready, memory=memory)

    async def _every(self, period_s: float, tick: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await tick()
            except FactoryError as exc:
                # The store or the gateway is unwell: report it, and try again next period.
                self.store_ok = False
                log.warning("runtime tick failed", tick=getattr(tick, "__name__", "?"), error=str(exc))
            await self._sleep(period_s)

    # ------------------------------------------------------------------ notifications

    async def deliver_once(self) -> int:
        """Enqueue every undelivered notification not queued yet, and count those that settled."""
        queued = 0
        for note in await self.account.undelivered():
            if note.notification_id in self.state.pending or note.notification_id in self.state.dead:
                continue
            context = await self.account.for_delivery(note.notification_id)
            if context is None:
                continue
            message_id = await self.store.enqueue(notification_request(context))
            self.state.pending[note.notification_id] = message_id
            queued += 1
        for notification_id, message_id in list(self.state.pending.items()):
            record = await self.store.get_message(message_id)
            if record is not None and record.status in ("queued", "processing"):
                continue
            del self.state.pending[notification_id]
            if record is not None and record.status == "dead_letter":
                # Kept undelivered, its message in the dead letter with the reason: a redrive retries it.
                self.state.failed += 1
                self.state.dead.add(notification_id)
            else:
                self.state.delivered += 1
        self.state.last_delivery = self.clock.now_ms()
        self.store_ok = True
        return queued

    # ------------------------------------------------------------------ heartbeats

    async def heartbeats_once(self) -> list[tuple[str, heartbeat.Action]]:
        """Settle each agent's last heartbeat, and act on those that fell due."""
        done: list[tuple[str, heartbeat.Action]] = []
        now = self.clock.now_ms()
        for agent in self.agents:
            beat = self.beats[agent.agent_id]
            if beat.pending is not None:
                record = await self.store.get_message(beat.pending)
                beat = await self._apply(agent, heartbeat.settle(beat, None if record is None else record.status))
            if now < beat.due_ms:
                self.beats[agent.agent_id] = beat
                continue
            conversation = await self.store.get_conversation(agent.session_key, history_limit=1)
            busy = conversation is not None and conversation.queued + conversation.processing > 0
            step = heartbeat.due(beat, now, busy, self.rng)
            beat = await self._apply(agent, step)
            if step.action == "enqueue":
                message_id = await self.store.enqueue(heartbeat_request(agent, beat.slot_ms, now))
                beat = replace(beat, pending=message_id)
            self.beats[agent.agent_id] = beat
            done.append((agent.agent_id, step.action))
        return done

    async def _apply(self, agent: RuntimeAgent, step: heartbeat.Step) -> heartbeat.Beat:
        if step.report is not None:
            log.warning("agent heartbeat missed", agent=agent.slug, misses=step.beat.misses, status=step.report)
            await self.account.upsert_heartbeat(agent.agent_id, step.report)
        return step.beat

    # ------------------------------------------------------------------ health and status

    async def check_once(self) -> RuntimeStatus:
        self.gateway_ok = await self.gateway_ready()
        status: RuntimeStatus = "online" if self.gateway_ok and self.store_ok else "degraded"
        await self._record(status)
        return status

    async def _record(self, status: RuntimeStatus) -> None:
        details = RuntimeDetails(
            droplet_id=self.config.droplet_id,
            ip_address=self.config.droplet_ip,
            last_health_check=self.clock.now_ms(),
            version=version(),
        )
        try:
            await self.account.update_runtime_status(status, details)
        except FactoryError as exc:
            self.store_ok = False
            log.warning("runtime status not recorded", status=status, error=str(exc))
            return
        self.status = status
        self.store_ok = True

    def health(self) -> dict[str, Any]:
        """``GET /health``, in the seed's shape."""
        healthy = self.gateway_ok and self.state.running and self.store_ok
        return {
            "status": "healthy" if healthy else "degraded",
            "uptime": round(time.monotonic() - self._started, 3),
            "gateway": {"running": self.gateway_ok, "sessions": len(self.agents)},
            "delivery": {
                "running": self.state.running,
                "lastDelivery": self.state.last_delivery,
                "delivered": self.state.delivered,
                "failed": self.state.failed,
            },
            "store": {"ok": self.store_ok},
            "runtimeStatus": self.status,
            "timestamp": self.clock.now_ms(),
        }

    def version_info(self) -> dict[str, Any]:
        """``GET /version``."""
        return {"version": version(), "accountId": self.config.account_id}
