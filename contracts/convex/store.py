"""Every store role over a Convex deployment running the factory module (contracts/convex/module).

Every method is one function of the module, called as ``<namespace>:<function>`` over the HTTP
API (a few views page through several calls). Time always comes from the deployment: the module
reads ``Date.now()``; views that depend on time are given the store's clock explicitly, because
Convex caches query results by their reads, not by the clock.

An unmodified agent-factory 3.1.x deployment is spoken to by
:class:`contracts.convex.compat.AgentFactoryCompatStore` instead (the worker role only).

The lease length is the deployment's (``FACTORY_LEASE_TTL_MS`` in its environment:
``npx convex env set FACTORY_LEASE_TTL_MS 60000``), never this process's.

Waiting for work is a subscription over the deployment's ``/api/sync`` WebSocket to the module's
``queueSignal`` query (:mod:`contracts.convex.sync`): the wait ends when a head appears or moves,
or when the head it names falls due, with no call while nothing changes. The reconciler's watch
subscribes to ``fleetSignal`` instead, which also ends the wait when a worker goes idle or exits.
When the WebSocket cannot be used (a proxy that refuses upgrades, say), the wait polls a cheap readiness
query (and, for the watch, ``fleetSignal``) every ``wait_poll_s`` (default 1 s) instead, and tries
the WebSocket again after ``SYNC_RETRY_S``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import anyio
import structlog
from pydantic import SecretStr

from contracts import models
from contracts.convex.client import DEFAULT_RETRY, ConvexClient, as_int, auth_header
from contracts.convex.console import ConsoleFunctions
from contracts.convex.frontdoor import FrontDoorFunctions
from contracts.convex.runtime import AccountFunctions
from contracts.convex.sync import ConvexSync, StoreClock, SyncUnavailable
from contracts.errors import InvalidInput
from contracts.models import to_wire
from contracts.push import Broadcast, BroadcastRequest, PushDispatch, PushDispatchRequest, PushJob, PushTemplate
from contracts.retry import RetryPolicy
from contracts.secrets import SecretBox

DEFAULT_NAMESPACE = "agentFactory"
SYNC_RETRY_S = 30.0  # after the WebSocket failed, poll this long before trying it again
_log = structlog.get_logger("contracts.convex")
Answer = TypeVar("Answer", models.ClaimedJob, models.ClaimResult, models.LeaseResult, models.CompleteResult)


class ConvexStore(FrontDoorFunctions, ConsoleFunctions, AccountFunctions):
    """Every store role on a Convex deployment running the factory module.

    ``url``           the deployment URL (``https://<name>.convex.cloud``; ``.convex.site`` is accepted)
    ``auth_token``    a JWT sent as ``Authorization: Bearer <token>`` (FACTORY_AUTH=identity)
    ``deploy_key``    a deploy/admin key sent as ``Authorization: Convex <key>`` (use the
                      ``agentFactoryAdmin`` namespace, whose functions are internal)
    ``namespace``     the module file the functions live in (default ``agentFactory``)
    ``timeout_s``     the timeout of every HTTP call
    ``retry``         the retry policy for calls that are safe to repeat
    ``wait_poll_s``   how often a wait polls when the sync WebSocket cannot be used
    ``subscribe``     wait on a ``/api/sync`` subscription (False: always poll)
    ``secrets_box``   the key secrets are sealed with here and opened with (the module keeps
                      ciphertext only)
    """

    def __init__(
        self,
        url: str,
        *,
        auth_token: SecretStr | str | None = None,
        deploy_key: SecretStr | str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        wait_poll_s: float = 1.0,
        subscribe: bool = True,
        secrets_box: SecretBox | None = None,
    ) -> None:
        if wait_poll_s <= 0:
            raise InvalidInput("wait_poll_s", "must be positive")
        self.wait_poll_s = wait_poll_s
        self.box = secrets_box
        authorization = auth_header(token=auth_token, deploy_key=deploy_key)
        self._client = ConvexClient(
            url, namespace=namespace, authorization=authorization, timeout_s=timeout_s, retry=retry
        )
        self._sync = (
            ConvexSync(self._client.url, authorization=authorization, timeout_s=timeout_s) if subscribe else None
        )
        self._sync_retry_at = 0.0
        self._clock = StoreClock()
        self._woke_for: object = None
        # The newest ``lastIdleAt`` a fleet wait has seen (0: none idle; None: no fleet wait yet).
        self._idle_seen: int | None = None

    @property
    def name(self) -> str:
        return f"convex:{self._client.url}"

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def namespace(self) -> str:
        return self._client.namespace

    def _clocked(self, answer: Answer) -> Answer:
        """Remember the deployment's clock from an answer that carries it (for waits)."""
        if answer.now is not None:
            self._clock.saw(answer.now)
        return answer

    async def _query(self, function: str, args: Mapping[str, Any] | None = None) -> Any:
        return await self._client.query(function, args or {})

    async def _mutation(self, function: str, args: Mapping[str, Any] | None = None, *, retry: bool) -> Any:
        return await self._client.mutation(function, args or {}, retry=retry)

    async def _pages(self, function: str, args: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Follow a paginated query ({page, isDone, continueCursor}) to its end."""
        cursor: str | None = None
        while True:
            result = await self._query(function, {**args, **({"cursor": cursor} if cursor else {})})
            for item in result["page"]:
                yield item
            if result["isDone"]:
                return
            cursor = result["continueCursor"]

    # ---------------------------------------------------------------- queue

    async def enqueue(self, request: models.EnqueueRequest) -> str:
        # Deduplicated by (conversationId, externalMessageId): only then is a retry after an unknown
        # outcome safe. Without it, only a call Convex refused before committing is retried.
        deduped = request.payload.external_message_id is not None
        return str(await self._mutation("enqueue", to_wire(request), retry=deduped))

    @overload
    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> models.ClaimedJob | None: ...

    @overload
    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: Literal[True]
    ) -> models.ClaimResult: ...

    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: bool = False
    ) -> models.ClaimedJob | models.ClaimResult | None:
        args: dict[str, Any] = {"workerId": worker_id}
        if conversation_id is not None:
            args["conversationId"] = conversation_id
        if with_bundle:
            args["withBundle"] = True
        # Retried only when Convex refused it before committing. After a lost reply the outcome is
        # unknown: a lease nobody holds then expires, with its attempt counted.
        value = await self._mutation("workerClaim", args, retry=False)
        if with_bundle:
            return self._clocked(self._claim_result(value))
        return None if value is None else self._clocked(models.ClaimedJob.model_validate(value))

    async def worker_heartbeat(self, lease: models.LeaseRef) -> models.LeaseResult:
        value = await self._mutation("workerHeartbeat", to_wire(lease), retry=True)
        return self._clocked(models.LeaseResult.model_validate(value))

    async def worker_complete(
        self,
        lease: models.LeaseRef,
        *,
        history: Sequence[models.HistoryMessage] | None = None,
        claim_next: models.NextClaim | None = None,
    ) -> models.CompleteResult:
        args = to_wire(lease)
        if history:
            args["history"] = [to_wire(turn) for turn in history]
        if claim_next is not None:
            args["claimNext"] = to_wire(claim_next)
        # A replay with the same lease reports the first outcome, the job it claimed next included,
        # and appends no turn twice: safe to retry.
        value = await self._mutation("workerComplete", args, retry=True)
        next_claim = value.pop("next", None)
        result = models.CompleteResult.model_validate(value)
        if next_claim is not None:
            result = result.model_copy(update={"next": self._claim_result(next_claim)})
        return self._clocked(result)

    def _claim_result(self, value: dict[str, Any]) -> models.ClaimResult:
        """A claim's answer, its bundle's sealed secrets opened here (the module never sees the key)."""
        bundle = value.pop("bundle", None)
        result = models.ClaimResult.model_validate(value)
        return result if bundle is None else result.model_copy(update={"bundle": self.open_bundle(bundle)})

    async def worker_fail(self, request: models.FailRequest) -> models.FailResult:
        return models.FailResult.model_validate(await self._mutation("workerFail", to_wire(request), retry=True))

    async def worker_release(self, request: models.ReleaseRequest) -> models.LeaseResult:
        # Fenced by the lease, and a replay reports the first outcome: safe to retry.
        return models.LeaseResult.model_validate(await self._mutation("workerRelease", to_wire(request), retry=True))

    async def worker_hydration_bundle(
        self, message_id: str, workspace_id: str = "default"
    ) -> models.HydrationBundle | None:
        value = await self._query("workerHydrationBundle", {"messageId": message_id, "workspaceId": workspace_id})
        return None if value is None else self.open_bundle(value)

    async def worker_append_conversation_messages(self, request: models.AppendRequest) -> models.AppendResult:
        # With a messageId the append is idempotent; without one a retry could append twice.
        value = await self._mutation(
            "workerAppendConversationMessages", to_wire(request), retry=request.message_id is not None
        )
        return models.AppendResult.model_validate(value)

    # ---------------------------------------------------------------- workers

    async def worker_register(self, registration: models.WorkerRegistration) -> models.WorkerRecord:
        return models.WorkerRecord.model_validate(
            await self._mutation("workerRegister", to_wire(registration), retry=True)
        )

    async def worker_control_state(self, worker_id: str) -> models.ControlState:
        value = await self._mutation("workerControlState", {"workerId": worker_id}, retry=True)
        return models.ControlState.model_validate(value)

    async def fleet_set_worker_status(self, request: models.SetWorkerStatusRequest) -> bool:
        return bool(await self._mutation("fleetSetWorkerStatus", to_wire(request), retry=True))

    async def fleet_demand(self) -> models.DemandSnapshot:
        now = await self.now_ms()
        return models.DemandSnapshot.model_validate(await self._query("fleetDemand", {"now": now}))

    async def list_workers(self) -> list[models.WorkerRecord]:
        return [models.WorkerRecord.model_validate(w) async for w in self._pages("listWorkers", {})]

    # ---------------------------------------------------------------- operator views and actions

    async def queue_stats(self) -> models.QueueStats:
        stats: dict[str, Any] = await self._query("queueStats", {"now": await self.now_ms()})
        cursor = stats.pop("totalsCursor", None)
        while cursor:  # message totals over more conversations than one call reads
            more = await self._query("queueTotals", {"cursor": cursor})
            for key in ("queued", "processing", "done", "deadLetters"):
                stats[key] = as_int(stats[key], key) + as_int(more[key], key)
            cursor = more.get("totalsCursor")
        return models.QueueStats.model_validate(stats)

    async def list_dead_letters(self, limit: int = 100) -> list[models.DeadLetter]:
        value = await self._query("listDeadLetters", {"limit": limit})
        return [models.DeadLetter.model_validate(d) for d in value]

    async def redrive(self, message_id: str | None = None) -> models.RedriveResult:
        args = {} if message_id is None else {"messageId": message_id}
        redriven: list[str] = []
        while True:  # redriving everything goes a bounded batch per call
            value = await self._mutation("redrive", args, retry=False)
            redriven.extend(str(m) for m in value["redriven"])
            if not value.get("hasMore"):
                return models.RedriveResult(redriven=redriven)

    async def release_expired(self) -> models.ReleaseResult:
        released = dead = 0
        while True:  # a bounded batch of expired leases per call
            value = await self._mutation("releaseExpired", {}, retry=False)
            released += as_int(value["released"], "released")
            dead += as_int(value["deadLettered"], "deadLettered")
            if not value.get("hasMore"):
                return models.ReleaseResult(released=released, dead_lettered=dead)

    async def get_message(self, message_id: str) -> models.MessageRecord | None:
        value = await self._query("getMessage", {"messageId": message_id})
        return None if value is None else models.MessageRecord.model_validate(value)

    async def get_conversation(self, conversation_id: str, history_limit: int = 50) -> models.Conversation | None:
        value = await self._query("getConversation", {"conversationId": conversation_id, "historyLimit": history_limit})
        return None if value is None else models.Conversation.model_validate(value)

    # ---------------------------------------------------------------- agents and secrets

    async def upsert_agent_profile(self, profile: models.AgentProfile) -> models.AgentProfile:
        value = await self._mutation("upsertAgentProfile", {"profile": to_wire(profile)}, retry=True)
        return models.AgentProfile.model_validate(value)

    async def get_agent_profile(self, agent_key: str) -> models.AgentProfile | None:
        value = await self._query("getAgentProfile", {"agentKey": agent_key})
        return None if value is None else models.AgentProfile.model_validate(value)

    # ---------------------------------------------------------------- snapshots

    async def snapshot_boot(self, workspace_id: str, conversation_id: str) -> models.BootBundle | None:
        value = await self._query("snapshotBoot", {"workspaceId": workspace_id, "conversationId": conversation_id})
        return None if value is None else models.BootBundle.model_validate(value)

    async def snapshot_prepare(self, request: models.SnapshotPrepare) -> models.SnapshotUpload:
        # Not retried: a repeat would leave a second row uploading (it is failed as abandoned later).
        return models.SnapshotUpload.model_validate(
            await self._mutation("snapshotPrepare", to_wire(request), retry=False)
        )

    async def snapshot_upload(self, upload: models.SnapshotUpload, archive: Path) -> str:
        if upload.upload_url is None:
            raise InvalidInput("uploadUrl", "the deployment gave no upload URL for this snapshot")
        return await self._client.upload(upload.upload_url, archive)

    async def snapshot_finalize(self, request: models.SnapshotFinalize) -> bool:
        # A replay of a finalize that landed reports the same outcome.
        return bool(await self._mutation("snapshotFinalize", to_wire(request), retry=True))

    async def snapshot_fail(self, worker_id: str, snapshot_id: str, error: str) -> bool:
        args = {"workerId": worker_id, "snapshotId": snapshot_id, "error": error}
        return bool(await self._mutation("snapshotFail", args, retry=True))

    async def snapshot_latest(
        self, workspace_id: str, agent_key: str, conversation_id: str
    ) -> models.SnapshotRestore | None:
        args = {"workspaceId": workspace_id, "agentKey": agent_key, "conversationId": conversation_id}
        value = await self._query("snapshotLatest", args)
        return None if value is None else models.SnapshotRestore.model_validate(value)

    async def snapshot_download(self, restore: models.SnapshotRestore, dest: Path) -> None:
        if restore.download_url is None:
            raise InvalidInput("downloadUrl", f"snapshot {restore.snapshot_id} has no download URL")
        await self._client.download(restore.download_url, dest)

    async def snapshot_list(self, conversation_id: str | None = None, limit: int = 100) -> list[models.SnapshotRecord]:
        args: dict[str, Any] = {"limit": limit}
        if conversation_id is not None:
            args["conversationId"] = conversation_id
        return [models.SnapshotRecord.model_validate(r) for r in await self._query("snapshotList", args)]

    async def snapshot_prune(self, keep: int, conversation_id: str | None = None) -> models.SnapshotPruneResult:
        args: dict[str, Any] = {"keep": keep}
        if conversation_id is not None:
            args["conversationId"] = conversation_id
        return models.SnapshotPruneResult.model_validate(await self._mutation("snapshotPrune", args, retry=True))

    # ---------------------------------------------------------------- autoscaler bookkeeping

    async def acquire_reconcile_lock(self, holder: str, ttl_ms: int) -> bool:
        # The same holder renews, so a retry after a lost reply still reports the truth.
        return bool(await self._mutation("acquireReconcileLock", {"holder": holder, "ttlMs": ttl_ms}, retry=True))

    async def release_reconcile_lock(self, holder: str) -> None:
        await self._mutation("releaseReconcileLock", {"holder": holder}, retry=True)

    async def ledger_record(self, record: models.LaunchRecord) -> models.LaunchRecord:
        return models.LaunchRecord.model_validate(await self._mutation("ledgerRecord", to_wire(record), retry=True))

    async def ledger_update(
        self, launch_id: str, state: models.LaunchState, machine_id: str | None = None, detail: str | None = None
    ) -> bool:
        args: dict[str, Any] = {"launchId": launch_id, "state": state}
        if machine_id is not None:
            args["machineId"] = machine_id
        if detail is not None:
            args["detail"] = detail
        return bool(await self._mutation("ledgerUpdate", args, retry=True))

    async def ledger_list(self, include_closed: bool = False) -> list[models.LaunchRecord]:
        return [
            models.LaunchRecord.model_validate(r)
            async for r in self._pages("ledgerList", {"includeClosed": include_closed})
        ]

    # ---------------------------------------------------------------- push schedules and broadcasts

    async def push_template_put(self, template: PushTemplate) -> PushTemplate:
        value = await self._mutation("pushTemplatePut", {"template": to_wire(template)}, retry=True)
        return PushTemplate.model_validate(value)

    async def push_template_delete(self, template_id: str) -> bool:
        return bool(await self._mutation("pushTemplateDelete", {"templateId": template_id}, retry=True))

    async def push_templates(self) -> list[PushTemplate]:
        return [PushTemplate.model_validate(t) for t in await self._query("pushTemplates")]

    async def push_job_put(self, job: PushJob) -> PushJob:
        return PushJob.model_validate(await self._mutation("pushJobPut", {"job": to_wire(job)}, retry=True))

    async def push_job_delete(self, job_id: str) -> bool:
        return bool(await self._mutation("pushJobDelete", {"jobId": job_id}, retry=True))

    async def push_jobs(self, *, due_at: int | None = None, limit: int = 500) -> list[PushJob]:
        args: dict[str, Any] = {"limit": limit, **({"dueAt": due_at} if due_at is not None else {})}
        return [PushJob.model_validate(j) for j in await self._query("pushJobs", args)]

    async def push_dispatch(self, request: PushDispatchRequest) -> PushDispatch:
        # Deduplicated by the run key and fenced by expectedNextRunAt: safe to retry.
        return PushDispatch.model_validate(await self._mutation("pushDispatch", to_wire(request), retry=True))

    async def push_dispatches(self, job_id: str, limit: int = 50) -> list[PushDispatch]:
        rows = await self._query("pushDispatches", {"jobId": job_id, "limit": limit})
        return [PushDispatch.model_validate(d) for d in rows]

    async def broadcast(self, request: BroadcastRequest) -> Broadcast:
        while True:  # a bounded batch of recipients per call; the broadcast id makes each call safe to repeat
            value = await self._mutation("broadcast", to_wire(request), retry=True)
            if not value.get("hasMore"):
                return Broadcast.model_validate(value["broadcast"])

    async def broadcasts(self, limit: int = 50) -> list[Broadcast]:
        return [Broadcast.model_validate(b) for b in await self._query("broadcasts", {"limit": limit})]

    # ---------------------------------------------------------------- waiting and time

    async def wait_for_work(self, timeout_s: float, conversation_id: str | None = None) -> bool:
        """Wait until a head appears or moves (True, like the SQLite store's doorbell), the head the
        wait knows of falls due (True), or the timeout passes (False). ``conversation_id``: a
        pinned worker waits on its conversation alone."""
        args = {} if conversation_id is None else {"conversationId": conversation_id}
        return await self._wait(timeout_s, "queueSignal", args)

    async def wait_for_fleet_change(self, timeout_s: float) -> bool:
        """Wait as :meth:`wait_for_work` does, or until a worker is left with no job or exits
        (``fleetSignal``'s ``lastIdleAt`` moves on), subscribed or, when the WebSocket cannot be
        used, polled."""
        return await self._wait(timeout_s, "fleetSignal", {})

    async def _wait(self, timeout_s: float, signal: str, args: Mapping[str, Any]) -> bool:
        watches_idle = signal == "fleetSignal"  # only its values carry lastIdleAt
        if self._sync is not None and anyio.current_time() >= self._sync_retry_at:
            try:
                return await self._wait_subscribed(self._sync, timeout_s, signal, args, watches_idle=watches_idle)
            except SyncUnavailable as exc:
                _log.warning("convex subscription unavailable; polling meanwhile", store=self.name, error=str(exc))
                self._sync_retry_at = anyio.current_time() + SYNC_RETRY_S
        return await self._wait_polling(timeout_s, watches_idle=watches_idle)

    async def _wait_subscribed(
        self, sync: ConvexSync, timeout_s: float, signal: str, args: Mapping[str, Any], *, watches_idle: bool
    ) -> bool:
        deadline = anyio.current_time() + max(0.0, timeout_s)
        if self._clock.now_ms() is None:
            await self.now_ms()
        async with sync.watch(f"{self.namespace}:{signal}", args) as watch:
            try:
                with anyio.fail_after(self._client.timeout_s):
                    seen = await watch.next()
            except TimeoutError as exc:
                raise SyncUnavailable(self.name, "the subscription got no answer") from exc
            went_idle = watches_idle and self._went_idle(seen)
            if went_idle or (seen != self._woke_for and self._due_in_s(seen) == 0):
                return self._woke(seen)  # a worker went idle, or work arrived, between two waits
            while (left := deadline - anyio.current_time()) > 0:
                due_in = self._due_in_s(seen)
                with anyio.move_on_after(left if due_in is None else min(left, due_in)):
                    value = await watch.next()
                    went_idle = watches_idle and self._went_idle(value)
                    if went_idle or (value != seen and self._due_in_s(value) == 0):
                        return self._woke(value)
                    seen = value
                    continue
                if due_in is not None and due_in <= left:
                    return self._woke(seen)  # the head it names fell due
        return False

    def _went_idle(self, signal: Any) -> bool:
        """Whether a ``fleetSignal`` value says a worker went idle later than any seen before. The
        first value only sets the mark; a value that falls (the newest idle worker took a job) is
        no news."""
        raw = signal.get("lastIdleAt") if isinstance(signal, dict) else None
        at = 0 if raw is None else as_int(raw, "lastIdleAt")
        later = self._idle_seen is not None and at > self._idle_seen
        self._idle_seen = at if self._idle_seen is None else max(self._idle_seen, at)
        return later

    def _due_in_s(self, signal: Any) -> float | None:
        """Seconds until the head a ``queueSignal`` value names falls due (0: it is due)."""
        at = signal.get("nextReadyAt") if isinstance(signal, dict) else None
        now = self._clock.now_ms()
        if at is None or now is None:
            return None
        return max(0.0, (as_int(at, "nextReadyAt") - now) / 1000)

    def _woke(self, signal: Any) -> bool:
        self._woke_for = signal
        return True

    async def _wait_polling(self, timeout_s: float, *, watches_idle: bool = False) -> bool:
        """Poll readiness until more conversations are claimable than at the quietest moment seen
        (True), or the timeout passes (False); no later than the next retry, schedule or lease.
        ``watches_idle``: also poll ``fleetSignal`` and wake when a worker went idle (True)."""

        async def ready_now() -> tuple[int, int | None, int]:
            now = await self.now_ms()
            readiness = await self._query("queueReadiness", {"now": now})
            upcoming = readiness.get("nextReadyAt")
            count = as_int(readiness["readyConversations"], "readyConversations")
            return count, None if upcoming is None else as_int(upcoming, "nextReadyAt"), now

        async def went_idle() -> bool:
            return watches_idle and self._went_idle(await self._query("fleetSignal", {}))

        lowest, upcoming, now = await ready_now()
        if await went_idle():
            return True  # a worker went idle between two waits
        if upcoming is not None:
            timeout_s = min(timeout_s, (upcoming - now) / 1000 + 0.001)
        deadline = anyio.current_time() + max(0.0, timeout_s)
        while (remaining := deadline - anyio.current_time()) > 0:
            await anyio.sleep(min(self.wait_poll_s, remaining))
            ready, _, _ = await ready_now()
            if ready > lowest or await went_idle():
                return True
            lowest = min(lowest, ready)
        return False

    async def now_ms(self) -> int:
        now = as_int(await self._mutation("storeNow", {}, retry=True), "now")
        self._clock.saw(now)
        return now

    async def aclose(self) -> None:
        if self._sync is not None:
            await self._sync.aclose()
        await self._client.aclose()
