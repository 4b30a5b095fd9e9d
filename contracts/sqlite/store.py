"""The embedded store: the reference implementation of every store role on one SQLite file.

Many processes may share the file (WAL, immediate transactions). Each operation is one short
transaction run inline; while another process holds the write lock the call waits
asynchronously and retries, so a contended lock never stalls the event loop.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar, overload

import anyio
import anyio.to_thread
import structlog
from pydantic import SecretStr, ValidationError

from contracts import models
from contracts.clock import Clock, SystemClock
from contracts.console import ConsoleSession, OperatorToken
from contracts.errors import FactoryError, InvalidInput, StoreUnavailable
from contracts.ingress import (
    AppToken,
    ConversationMessage,
    IdentityBinding,
    IngestResult,
    PairingAttempt,
    PairingCode,
    PairingCodeRequest,
    PairingResult,
    SecretInfo,
    StoredSecret,
    TelegramUpdateRecord,
    TelegramWebhook,
)
from contracts.push import Broadcast, BroadcastRequest, PushDispatch, PushDispatchRequest, PushJob, PushTemplate
from contracts.rules import QueuePolicy, RandomSource, check_lease_ttl_ms, system_random
from contracts.runtime import Account, AccountView, Notification, RuntimeAgent, Task
from contracts.secrets import Sealed, SecretBox, seal_new
from contracts.sqlite import agents, claim, console, fleet, ingress, push, queue, runtime, snapshots
from contracts.sqlite import secrets as sealed_secrets
from contracts.sqlite.blobs import BlobDir, BlobError
from contracts.sqlite.doorbell import Doorbell
from contracts.sqlite.engine import BUSY_SLICE_MS, Busy, Engine, Synchronous, connect

T = TypeVar("T")
log = structlog.get_logger("contracts.sqlite")


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def new_lease_id() -> str:
    # 128 bits from the OS: a lease id is a fencing token and must not be guessable.
    return secrets.token_urlsafe(16)


def new_snapshot_id() -> str:
    return "snap_" + secrets.token_hex(12)


class SqliteStore:
    """Every store role (contracts.roles) on a local SQLite file.

    ``lease_ttl_ms`` sets the store's lease length, recorded in the file for every process that
    shares it; None keeps what the file says (60 s in a new store). A process never hands out a
    lease of its own length.

    ``create=False`` refuses a missing file (:class:`~contracts.errors.StoreUnusable`) instead of
    creating one: for commands that only read.

    ``doorbell=False`` makes the store poll-only: it neither rings nor listens for the
    cross-process doorbell, and ``wait_for_work`` just sleeps out its timeout. For processes
    that cannot reach each other's abstract sockets (separate network namespaces sharing the
    file), and the poll-only baseline of the worker benchmark.

    Snapshot archives live in ``<path>.blobs/`` beside the file (0700 folder, 0600 files, named by
    their sha256).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        lease_ttl_ms: int | None = None,
        policy: QueuePolicy | None = None,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        busy_timeout_s: float = 30.0,
        new_id: Callable[[], str] = new_message_id,
        new_lease: Callable[[], str] = new_lease_id,
        doorbell: bool = True,
        secrets_box: SecretBox | None = None,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.policy = policy or QueuePolicy()
        self.clock = clock or SystemClock()
        self._rng = rng or system_random()
        self._new_id = new_id
        self._new_lease = new_lease
        try:
            conn = connect(
                self.path,
                synchronous=synchronous,
                open_timeout_s=busy_timeout_s,
                create=create,
                busy_slice_ms=self._slice_ms(busy_timeout_s),
            )
        except sqlite3.Error as exc:
            # Another process held the lock for the whole open timeout: a later try can succeed.
            raise StoreUnavailable(str(self.path), f"cannot open the SQLite file: {exc}") from exc
        self._engine = Engine(conn)
        if lease_ttl_ms is not None:
            self._configure_lease_ttl(check_lease_ttl_ms(lease_ttl_ms), busy_timeout_s)
        self._bell = Doorbell(self.path) if doorbell else None
        # Rung when a worker is left with no job; only the reconciler's watch listens.
        self._idle_bell = Doorbell(self.path, "idle") if doorbell else None
        self._busy_timeout_s = busy_timeout_s
        self.blobs = BlobDir(self.path.with_name(self.path.name + ".blobs"))
        self._box = secrets_box
        if secrets_box is not None:
            self._seal_plaintext(busy_timeout_s)

    @property
    def name(self) -> str:
        return f"sqlite:{self.path}"

    @staticmethod
    def _slice_ms(busy_timeout_s: float) -> int:
        """One try's blocking wait for a lock: the engine's slice, never past the whole timeout."""
        return min(BUSY_SLICE_MS, int(busy_timeout_s * 1000))

    def _configure_lease_ttl(self, ttl_ms: int, timeout_s: float) -> None:
        # Opening already waits on other processes the blocking way (see connect); so does this.
        self._engine.conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        try:
            previous = self._engine.write(lambda c: queue.set_lease_ttl_ms(c, ttl_ms))
        finally:
            self._engine.conn.execute(f"PRAGMA busy_timeout = {self._slice_ms(timeout_s)}")
        if previous != ttl_ms:
            log.info("lease TTL changed", store=self.name, lease_ttl_ms=ttl_ms, previous_ms=previous)

    def _seal_plaintext(self, timeout_s: float) -> None:
        """Values stored before encryption existed are sealed the first time a key is at hand."""
        self._engine.conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        try:
            sealed = self._engine.write(lambda c: sealed_secrets.seal_plaintext(c, self._box))
        finally:
            self._engine.conn.execute(f"PRAGMA busy_timeout = {self._slice_ms(timeout_s)}")
        if sealed:
            log.info("sealed plain-text secrets", store=self.name, count=sealed)

    async def _retry_busy(self, attempt: Callable[[], T]) -> T:
        """Run one transaction; while another process holds the lock, wait (async) and retry."""
        delay_s = 0.0002
        deadline: float | None = None
        while True:
            try:
                return attempt()
            except Busy:
                now = anyio.current_time()
                deadline = deadline if deadline is not None else now + self._busy_timeout_s
                if now >= deadline:
                    raise StoreUnavailable(
                        self.name, f"database is locked (waited {self._busy_timeout_s:g} s for another process)"
                    ) from None
                # Past the engine's blocking slice: jittered, doubling, capped, without blocking the loop.
                await anyio.sleep(delay_s * (0.5 + self._rng.random()))
                delay_s = min(delay_s * 2, 0.01)
            except FactoryError:
                raise
            except UnicodeEncodeError:
                # SQLite stores UTF-8: an argument holding bytes that were not UTF-8 cannot be bound.
                raise InvalidInput("input", "is not UTF-8 text; send it in UTF-8") from None
            except OverflowError:
                raise InvalidInput("input", "a number is too large for the store") from None
            except sqlite3.Error as exc:
                # Disk full, I/O error, a corrupt file: the store cannot answer now.
                raise StoreUnavailable(self.name, str(exc)) from exc

    async def _write(self, op: Callable[[sqlite3.Connection, int], T], *, ring: bool = False) -> T:
        result = await self._retry_busy(lambda: self._engine.write(lambda c: op(c, self.clock.now_ms())))
        if ring and self._bell is not None:
            self._bell.ring()
        return result

    async def _read(self, op: Callable[[sqlite3.Connection, int], T]) -> T:
        return await self._retry_busy(lambda: self._engine.read(lambda c: op(c, self.clock.now_ms())))

    # ---------------------------------------------------------------- queue

    async def enqueue(self, request: models.EnqueueRequest) -> str:
        message_id, _ = await self._write(lambda c, now: queue.enqueue(c, request, now, self._new_id), ring=True)
        return message_id

    @overload
    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> models.ClaimedJob | None: ...

    @overload
    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: Literal[True]
    ) -> models.ClaimResult: ...

    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: bool = False
    ) -> models.ClaimedJob | models.ClaimResult | None:
        if with_bundle:
            return await self._write(
                lambda c, now: claim.claim_with_bundle(c, worker_id, conversation_id, now, self._new_lease, self._box)
            )
        return await self._write(lambda c, now: claim.claim(c, worker_id, conversation_id, now, self._new_lease))

    async def worker_heartbeat(self, lease: models.LeaseRef) -> models.LeaseResult:
        return await self._write(lambda c, now: queue.heartbeat(c, lease, now))

    async def worker_complete(
        self,
        lease: models.LeaseRef,
        *,
        history: Sequence[models.HistoryMessage] | None = None,
        claim_next: models.NextClaim | None = None,
    ) -> models.CompleteResult:
        result, freed = await self._write(
            lambda c, now: claim.complete(
                c, lease, now, self._new_lease, history=history, claim_next=claim_next, box=self._box
            )
        )
        if freed and self._bell is not None:
            # The conversation's next message became claimable and this worker did not take it.
            self._bell.ring()
        if result.next is None or result.next.job is None:
            self._ring_idle()
        return result

    async def worker_fail(self, request: models.FailRequest) -> models.FailResult:
        result = await self._write(lambda c, now: queue.fail(c, request, now, self.policy, self._rng), ring=True)
        self._ring_idle()
        return result

    async def worker_release(self, request: models.ReleaseRequest) -> models.LeaseResult:
        # The message is due again at once: wake an idle worker whose gateway may be fine.
        result = await self._write(lambda c, now: queue.release(c, request, now), ring=True)
        self._ring_idle()
        return result

    def _ring_idle(self) -> None:
        """A worker was left with no job: the reconciler's watch may suspend or drain it now."""
        if self._idle_bell is not None:
            self._idle_bell.ring()

    async def worker_hydration_bundle(
        self, message_id: str, workspace_id: str = "default"
    ) -> models.HydrationBundle | None:
        return await self._read(lambda c, _: agents.hydration_bundle(c, message_id, self._box))

    async def worker_append_conversation_messages(self, request: models.AppendRequest) -> models.AppendResult:
        return await self._write(lambda c, now: agents.append_history(c, request, now))

    # ---------------------------------------------------------------- workers

    async def worker_register(self, registration: models.WorkerRegistration) -> models.WorkerRecord:
        return await self._write(lambda c, now: fleet.register(c, registration, now))

    async def worker_control_state(self, worker_id: str) -> models.ControlState:
        return await self._write(lambda c, now: fleet.control_state(c, worker_id, now))

    async def fleet_set_worker_status(self, request: models.SetWorkerStatusRequest) -> bool:
        # Ringing lets an idle worker notice at once that it has been told to drain.
        return await self._write(lambda c, now: fleet.set_status(c, request, now), ring=True)

    async def fleet_demand(self) -> models.DemandSnapshot:
        return await self._read(fleet.demand)

    async def list_workers(self) -> list[models.WorkerRecord]:
        return await self._read(lambda c, _: fleet.list_workers(c))

    # ---------------------------------------------------------------- operator views and actions

    async def queue_stats(self) -> models.QueueStats:
        return await self._read(fleet.stats)

    async def list_dead_letters(self, limit: int = 100) -> list[models.DeadLetter]:
        return await self._read(lambda c, _: fleet.dead_letters(c, limit))

    async def redrive(self, message_id: str | None = None) -> models.RedriveResult:
        ids = await self._write(lambda c, now: queue.redrive(c, message_id, now), ring=True)
        return models.RedriveResult(redriven=ids)

    async def release_expired(self) -> models.ReleaseResult:
        return await self._write(queue.release_expired, ring=True)

    async def get_message(self, message_id: str) -> models.MessageRecord | None:
        return await self._read(lambda c, _: agents.get_message(c, message_id))

    async def get_conversation(self, conversation_id: str, history_limit: int = 50) -> models.Conversation | None:
        return await self._read(lambda c, _: agents.get_conversation(c, conversation_id, history_limit))

    async def search_conversations(self, query: str = "", limit: int = 50) -> list[models.ConversationSummary]:
        return await self._read(lambda c, _: console.search_conversations(c, query.strip(), _bounded(limit)))

    async def conversation_records(self, conversation_id: str, limit: int = 100) -> list[models.MessageRecord]:
        return await self._read(lambda c, _: agents.conversation_records(c, conversation_id, _bounded(limit)))

    async def settled_since(self, since_ms: int, limit: int = 10_000) -> models.SettledWindow:
        return await self._read(lambda c, now: console.settled_since(c, since_ms, max(1, limit), now))

    # ---------------------------------------------------------------- the operator console's sign-in

    async def create_operator_token(self, token: OperatorToken) -> OperatorToken:
        return await self._write(lambda c, _: console.create_operator_token(c, token))

    async def find_operator_token(self, token_hash: str) -> OperatorToken | None:
        return await self._read(lambda c, _: console.find_operator_token(c, token_hash))

    async def list_operator_tokens(self) -> list[OperatorToken]:
        return await self._read(lambda c, _: console.list_operator_tokens(c))

    async def revoke_operator_token(self, token_id: str) -> bool:
        return await self._write(lambda c, now: console.revoke_operator_token(c, token_id, now))

    async def create_console_session(self, session: ConsoleSession) -> ConsoleSession:
        return await self._write(lambda c, now: console.create_session(c, session, now))

    async def find_console_session(self, session_hash: str) -> ConsoleSession | None:
        return await self._read(lambda c, now: console.find_session(c, session_hash, now))

    async def end_console_session(self, session_hash: str) -> bool:
        return await self._write(lambda c, now: console.end_session(c, session_hash, now))

    async def list_pairing_codes(self, limit: int = 100) -> list[PairingCode]:
        return await self._read(lambda c, now: ingress.list_pairing_codes(c, _bounded(limit), now))

    # ---------------------------------------------------------------- agents and secrets

    async def upsert_agent_profile(self, profile: models.AgentProfile) -> models.AgentProfile:
        try:
            # Checked again here, as the Convex module checks what any caller sends it.
            checked = models.AgentProfile.model_validate(profile.model_dump(by_alias=True))
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None
        return await self._write(lambda c, now: agents.upsert_profile(c, checked, now))

    async def get_agent_profile(self, agent_key: str) -> models.AgentProfile | None:
        return await self._read(lambda c, _: agents.get_profile(c, agent_key))

    async def list_agent_profiles(self) -> list[models.AgentProfile]:
        return await self._read(lambda c, _: agents.list_profiles(c))

    async def import_secret(self, secret_ref: str, value: SecretStr) -> int:
        sealed = seal_new(self._box, secret_ref, value)
        return await self._write(lambda c, now: sealed_secrets.import_secret(c, secret_ref, sealed, now))

    async def resolve_secret(self, refs: Sequence[str]) -> tuple[str, SecretStr] | None:
        found = await self._read(lambda c, _: sealed_secrets.resolve(c, refs, self._box))
        return next(((ref, found[ref]) for ref in refs if ref in found), None)

    async def secret_status(self) -> list[SecretInfo]:
        return await self._read(lambda c, _: sealed_secrets.status(c))

    async def sealed_secrets(self) -> list[StoredSecret]:
        return await self._read(lambda c, _: sealed_secrets.stored(c))

    async def reseal_secret(self, secret_ref: str, version: int, expect_key_id: str | None, sealed: Sealed) -> bool:
        return await self._write(lambda c, _: sealed_secrets.reseal(c, secret_ref, version, expect_key_id, sealed))

    # ---------------------------------------------------------------- app tokens

    async def create_app_token(self, token: AppToken) -> AppToken:
        return await self._write(lambda c, _: sealed_secrets.create_app_token(c, token))

    async def find_app_token(self, token_hash: str) -> AppToken | None:
        return await self._read(lambda c, _: sealed_secrets.find_app_token(c, token_hash))

    async def revoke_app_token(self, token_id: str) -> bool:
        return await self._write(lambda c, now: sealed_secrets.revoke_app_token(c, token_id, now))

    async def list_app_tokens(self) -> list[AppToken]:
        return await self._read(lambda c, _: sealed_secrets.list_app_tokens(c))

    # ---------------------------------------------------------------- the front door

    async def ingest_telegram_updates(self, records: Sequence[TelegramUpdateRecord]) -> list[IngestResult]:
        results = await self._write(lambda c, now: ingress.ingest_updates(c, records, now, self._new_id))
        if self._bell is not None and any(r.message_id and not r.duplicate for r in results):
            self._bell.ring()
        return results

    async def set_telegram_webhook(self, webhook: TelegramWebhook) -> TelegramWebhook:
        return await self._write(lambda c, now: ingress.set_webhook(c, webhook, now))

    async def get_telegram_webhook(self, agent_key: str) -> TelegramWebhook | None:
        return await self._read(lambda c, _: ingress.get_webhook(c, agent_key))

    async def find_telegram_webhook(self, secret_hash: str) -> TelegramWebhook | None:
        return await self._read(lambda c, _: ingress.find_webhook(c, secret_hash))

    async def create_pairing_code(self, request: PairingCodeRequest) -> PairingCode:
        return await self._write(lambda c, now: ingress.create_pairing_code(c, request, now))

    async def get_pairing_code(self, code: str) -> PairingCode | None:
        return await self._read(lambda c, now: ingress.get_pairing_code(c, code, now))

    async def consume_pairing_code(self, attempt: PairingAttempt) -> PairingResult:
        return await self._write(lambda c, now: ingress.consume_pairing_code(c, attempt, now, self._new_id))

    async def resolve_binding(self, bot_id: str, telegram_user_id: str) -> IdentityBinding | None:
        return await self._read(lambda c, _: ingress.resolve_binding(c, bot_id, telegram_user_id))

    async def list_bindings(self, agent_key: str | None = None, include_revoked: bool = False) -> list[IdentityBinding]:
        return await self._read(lambda c, _: ingress.list_bindings(c, agent_key, include_revoked))

    async def revoke_binding(self, binding_id: str) -> bool:
        return await self._write(lambda c, now: ingress.revoke_binding(c, binding_id, now))

    async def conversation_messages(self, conversation_id: str, limit: int = 100) -> list[ConversationMessage]:
        return await self._read(lambda c, _: ingress.conversation_messages(c, conversation_id, limit))

    # ---------------------------------------------------------------- snapshots

    async def snapshot_boot(self, workspace_id: str, conversation_id: str) -> models.BootBundle | None:
        return await self._read(lambda c, _: snapshots.boot(c, workspace_id, conversation_id))

    async def snapshot_prepare(self, request: models.SnapshotPrepare) -> models.SnapshotUpload:
        return await self._write(lambda c, now: snapshots.prepare(c, request, now, new_snapshot_id))

    async def snapshot_upload(self, upload: models.SnapshotUpload, archive: Path) -> str:
        try:
            return await anyio.to_thread.run_sync(self.blobs.put, archive)
        except BlobError as exc:
            raise StoreUnavailable(self.name, str(exc)) from exc

    async def snapshot_finalize(self, request: models.SnapshotFinalize) -> bool:
        # Content-addressed: the storage id is the checksum, and the file must be there in full.
        if request.storage_id != request.sha256 or self.blobs.size(request.sha256) != request.size_bytes:
            return False
        return await self._write(lambda c, now: snapshots.finalize(c, request, now), ring=True)

    async def snapshot_fail(self, worker_id: str, snapshot_id: str, error: str) -> bool:
        return await self._write(lambda c, now: snapshots.fail(c, worker_id, snapshot_id, error, now))

    async def snapshot_latest(
        self, workspace_id: str, agent_key: str, conversation_id: str
    ) -> models.SnapshotRestore | None:
        return await self._read(lambda c, _: snapshots.latest(c, workspace_id, agent_key, conversation_id))

    async def snapshot_download(self, restore: models.SnapshotRestore, dest: Path) -> None:
        try:
            await anyio.to_thread.run_sync(self.blobs.copy_to, restore.storage_id or restore.sha256, dest)
        except BlobError as exc:
            raise StoreUnavailable(self.name, str(exc)) from exc

    async def snapshot_list(self, conversation_id: str | None = None, limit: int = 100) -> list[models.SnapshotRecord]:
        return await self._read(lambda c, _: snapshots.list_snapshots(c, conversation_id, limit))

    async def snapshot_prune(self, keep: int, conversation_id: str | None = None) -> models.SnapshotPruneResult:
        if keep < 0:
            raise InvalidInput("keep", "must be 0 or more")
        result, unused = await self._write(lambda c, now: snapshots.prune(c, keep, conversation_id, now))
        for sha in unused:
            await anyio.to_thread.run_sync(self.blobs.delete, sha)
        return result

    # ---------------------------------------------------------------- autoscaler bookkeeping

    async def acquire_reconcile_lock(self, holder: str, ttl_ms: int) -> bool:
        return await self._write(lambda c, now: fleet.acquire_lock(c, fleet.RECONCILE_LOCK, holder, ttl_ms, now))

    async def release_reconcile_lock(self, holder: str) -> None:
        await self._write(lambda c, _: fleet.release_lock(c, fleet.RECONCILE_LOCK, holder))

    async def ledger_record(self, record: models.LaunchRecord) -> models.LaunchRecord:
        return await self._write(lambda c, _: fleet.ledger_record(c, record))

    async def ledger_update(
        self, launch_id: str, state: models.LaunchState, machine_id: str | None = None, detail: str | None = None
    ) -> bool:
        return await self._write(lambda c, now: fleet.ledger_update(c, launch_id, state, machine_id, detail, now))

    async def ledger_list(self, include_closed: bool = False) -> list[models.LaunchRecord]:
        return await self._read(lambda c, _: fleet.ledger_list(c, include_closed))

    async def record_reconcile(self, record: models.ReconcileRecord) -> None:
        await self._write(lambda c, _: console.record_reconcile(c, record))

    async def last_reconcile(self) -> models.ReconcileRecord | None:
        return await self._read(lambda c, _: console.last_reconcile(c))

    # ---------------------------------------------------------------- push schedules and broadcasts

    async def push_template_put(self, template: PushTemplate) -> PushTemplate:
        return await self._write(lambda c, now: push.template_put(c, template, now))

    async def push_template_delete(self, template_id: str) -> bool:
        return await self._write(lambda c, _: push.template_delete(c, template_id))

    async def push_templates(self) -> list[PushTemplate]:
        return await self._read(lambda c, _: push.templates(c))

    async def push_job_put(self, job: PushJob) -> PushJob:
        return await self._write(lambda c, now: push.job_put(c, job, now))

    async def push_job_delete(self, job_id: str) -> bool:
        return await self._write(lambda c, _: push.job_delete(c, job_id))

    async def push_jobs(self, *, due_at: int | None = None, limit: int = 500) -> list[PushJob]:
        return await self._read(lambda c, _: push.jobs(c, due_at, limit))

    async def push_dispatch(self, request: PushDispatchRequest) -> PushDispatch:
        return await self._write(lambda c, now: push.dispatch(c, request, now, self._new_id), ring=True)

    async def push_dispatches(self, job_id: str, limit: int = 50) -> list[PushDispatch]:
        return await self._read(lambda c, _: push.dispatches(c, job_id, limit))

    async def broadcast(self, request: BroadcastRequest) -> Broadcast:
        return await self._write(lambda c, now: push.broadcast(c, request, now, self._new_id), ring=True)

    async def broadcasts(self, limit: int = 50) -> list[Broadcast]:
        return await self._read(lambda c, _: push.broadcasts(c, limit))

    # ---------------------------------------------------------------- Mission Control accounts

    async def account_put(self, account: Account) -> Account:
        return await self._write(lambda c, now: runtime.account_put(c, account, now))

    async def account_token(self, account_id: str, token_hash: str) -> bool:
        return await self._write(lambda c, _: runtime.set_token(c, account_id, token_hash))

    async def accounts(self) -> list[Account]:
        return await self._read(lambda c, _: runtime.accounts(c))

    async def account_view(self, account_id: str, limit: int = 50) -> AccountView | None:
        return await self._read(lambda c, _: runtime.account_view(c, account_id, _bounded(limit)))

    async def runtime_agent_put(self, agent: RuntimeAgent) -> RuntimeAgent:
        return await self._write(lambda c, _: runtime.agent_put(c, agent))

    async def task_put(self, task: Task) -> Task:
        return await self._write(lambda c, now: runtime.task_put(c, task, now))

    async def notification_post(self, notification: Notification) -> Notification:
        return await self._write(lambda c, now: runtime.notification_post(c, notification, now))

    async def open_account(self, account_id: str, token: SecretStr) -> runtime.BoundAccount:
        await self._read(lambda c, _: runtime.check_token(c, account_id, token))
        return runtime.BoundAccount(self, account_id, token)

    # ---------------------------------------------------------------- waiting and time

    async def wait_for_work(self, timeout_s: float, conversation_id: str | None = None) -> bool:
        upcoming = await self._read(lambda c, now: fleet.next_ready_at(c, now, conversation_id))
        if upcoming is not None:
            # A retry or a scheduled message falls due before the timeout: wake for it.
            until_due_s = max(0.0, (upcoming - self.clock.now_ms()) / 1000)
            timeout_s = min(timeout_s, until_due_s + 0.001)
        if self._bell is None:
            await anyio.sleep(timeout_s)
            rung = False
        else:
            rung = await self._bell.wait(timeout_s)
        if not rung:
            # Nobody rang for the whole wait: the queue is quiet, a good time to checkpoint.
            await self._checkpoint()
        return rung

    async def wait_for_fleet_change(self, timeout_s: float) -> bool:
        """Wait as :meth:`wait_for_work` does (a worker's status change rings that bell too: an
        exit, say), or until a worker is left with no job; True when either happened before the
        timeout."""
        idle_bell = self._idle_bell
        if idle_bell is None:
            return await self.wait_for_work(timeout_s)
        heard: list[bool] = []
        async with anyio.create_task_group() as tg:

            async def hear_idle() -> None:
                heard.append(await idle_bell.wait(timeout_s))
                tg.cancel_scope.cancel()

            tg.start_soon(hear_idle)
            heard.append(await self.wait_for_work(timeout_s))
            tg.cancel_scope.cancel()
        return any(heard)

    async def _checkpoint(self) -> None:
        """An idle store moves the WAL into the file (busy stores checkpoint rarely: engine.py).

        Only an optimisation: one that fails is left to the next, and a store that really is
        unavailable is found out by the caller's next call, not by a wait for work."""
        try:
            # A worker thread: copying many pages must not hold up the event loop.
            await anyio.to_thread.run_sync(self._engine.checkpoint)
        except sqlite3.Error as exc:
            log.debug("idle checkpoint skipped", store=self.name, error=str(exc))

    async def now_ms(self) -> int:
        return self.clock.now_ms()

    async def aclose(self) -> None:
        for bell in (self._bell, self._idle_bell):
            if bell is not None:
                bell.close()
        self._engine.close()


def _bounded(limit: int) -> int:
    """List reads answer between 1 and 1,000 rows, whatever was asked."""
    return min(max(limit, 1), 1000)
