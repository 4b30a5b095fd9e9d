"""One job's work, in order: deliver to the agent → send the reply on → hand back the history turns.

The job arrives with its hydration bundle (the claim that leased it carried it), which serves
every step. The history turns are returned rather than written: they ride on the complete that
settles the job (one store call), after the reply has gone out, keyed by the message id, so a
redelivered message neither duplicates its turns nor records a reply the user never got.

Before delivering, a runner
with a session probe asks the gateway whether it holds the conversation's session; if not (a fresh
machine without a snapshot, a pooled worker new to the conversation) the message carries the
stored history as a preamble on this first turn (:mod:`gateway.history`). The turn creates the
session, so the history is never seeded twice. An agent with a bridge gets its resolved bridge
settings written for ``factory bridge call`` (:mod:`worker.bridge`).

A delivery that fails in a way either side could cause (a failed agent run, a timeout: fault
``unknown``) is judged here, while the job still holds its lease: one probe turn of the same agent
tells whether the agent can run any turn now. If it cannot, the fault is the infrastructure's
(:class:`ModelUnavailable`) and the message is given back; if it can, the message itself failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import anyio.to_thread
import structlog

from contracts.models import ClaimedJob, HistoryMessage, HydrationBundle
from gateway.history import with_history
from worker.boot import bridge_config_path
from worker.bridge import write_bridge_config
from worker.channels import Channel, channel_for
from worker.delivery import Delivery, DeliveryRequest, SessionProbe
from worker.errors import DeliveryError, InvalidJob, JobError, ModelUnavailable
from worker.metrics import WorkerMetrics

log = structlog.get_logger("worker.job")
SessionKeyFn = Callable[[str, str], str]


class MediaEnricher(Protocol):
    async def enrich(self, job: ClaimedJob, bundle: HydrationBundle) -> str:
        """The text the agent sees for ``job``: its message plus where its files were put."""
        ...


class HydrationUnavailable(JobError):
    """The store gave no bundle: the lease was lost meanwhile, or the agent profile is gone."""

    retryable = True


@dataclass
class JobRunner:
    delivery: Delivery
    channels: Mapping[str, Channel]
    session_key: SessionKeyFn
    metrics: WorkerMetrics
    # Seeds a session the gateway does not have from the stored history (None: never seeds).
    sessions: SessionProbe | None = None
    # Where agents' resolved bridge settings are written (None: bridges are not served here),
    # and the worker's environment for what the store left open (wire field → value).
    bridge_dir: Path | None = None
    bridge_env: Mapping[str, str | None] = field(default_factory=dict)
    # The agent of the last job: (agent key, OpenClaw agent id); a pinned worker snapshots it.
    last_agent: tuple[str, str] | None = None
    # Downloads Telegram attachments and tells the agent where they are (None: text only).
    media: MediaEnricher | None = None

    async def probe(self, agent_id: str | None = None) -> None:
        """Raise unless the gateway takes requests (and, given ``agent_id``, that agent runs a turn)."""
        await self.delivery.probe(agent_id)

    async def run(self, job: ClaimedJob, bundle: HydrationBundle | None) -> list[HistoryMessage]:
        """Do the job with the bundle its claim carried; returns the history turns for its complete.
        Raises a JobError (or a store error) on failure."""
        if bundle is None:
            raise HydrationUnavailable(f"no hydration bundle for message {job.message_id}")
        agent_id = bundle.profile.openclaw_agent_id
        try:
            key = self.session_key(agent_id, job.conversation_id)
        except ValueError as exc:
            raise InvalidJob(f"agent {bundle.agent_key}: {exc}") from None
        self.last_agent = (bundle.agent_key, agent_id)
        await self._serve_bridge(bundle)
        text = await self._text(job, bundle, key)
        request = DeliveryRequest(message_id=job.message_id, session_key=key, agent_id=agent_id, text=text)
        try:
            with self.metrics.delivery_seconds.time():
                reply = await self.delivery.deliver(request)
        except DeliveryError as exc:
            raise await self._judged(exc, agent_id) from None

        provider = channel_for(job.payload)
        channel = self.channels.get(provider)
        if channel is not None:
            await channel.send(job, bundle, reply.text)
            self.metrics.reply_sent(provider)
        log.info(
            "delivered", message_id=job.message_id, conversation_id=job.conversation_id, reply_chars=len(reply.text)
        )
        # Other providers (the app, schedules): the conversation history is where the reply lives.
        return [
            HistoryMessage(role="user", content=job.payload.message_text),
            HistoryMessage(role="assistant", content=reply.text),
        ]

    async def _text(self, job: ClaimedJob, bundle: HydrationBundle, key: str) -> str:
        """The message (with where its attachments were put), and the stored history in front when
        the gateway lacks the session."""
        text = job.payload.message_text
        if self.media is not None and job.payload.attachments:
            text = await self.media.enrich(job, bundle)
        if self.sessions is None or not bundle.history:
            return text
        agent_id = bundle.profile.openclaw_agent_id
        try:
            known = await self.sessions.has_session(agent_id, key)
        except DeliveryError as exc:
            raise await self._judged(exc, agent_id) from None
        if known is not False:
            return text
        self.metrics.seeded_session()
        log.info(
            "seeding a new gateway session from history", conversation_id=job.conversation_id, turns=len(bundle.history)
        )
        return with_history([(m.role, m.content) for m in bundle.history], text)

    async def _serve_bridge(self, bundle: HydrationBundle) -> None:
        if self.bridge_dir is None or bundle.bridge is None:
            return
        path = bridge_config_path(self.bridge_dir, bundle.profile.openclaw_agent_id)
        settings = await anyio.to_thread.run_sync(partial(write_bridge_config, path, bundle.bridge, self.bridge_env))
        if settings.missing:
            log.warning("the agent's bridge is incomplete", agent_key=bundle.agent_key, missing=settings.missing)

    async def _judged(self, error: DeliveryError, agent_id: str) -> DeliveryError:
        """Decide an ``unknown`` fault with one probe turn of the same agent."""
        if error.fault != "unknown":
            return error
        try:
            await self.delivery.probe(agent_id)
        except DeliveryError as probe_error:
            log.warning("a probe turn failed too: not the message's fault", agent_id=agent_id, error=str(probe_error))
            return ModelUnavailable(f"{error}; a probe turn of agent {agent_id} failed too: {probe_error}", agent_id)
        return error.judged("message")
