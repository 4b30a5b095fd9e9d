"""One job's work, in order: hydrate → deliver to the agent → send the reply on → record history.

The history is written after the reply has gone out, and keyed by the message id, so a
redelivered message neither duplicates its turns nor records a reply the user never got.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from contracts.models import AppendRequest, ClaimedJob, HistoryMessage, HydrationBundle
from contracts.roles import WorkerStore
from worker.channels import Channel, channel_for
from worker.delivery import Delivery, DeliveryRequest
from worker.errors import DeliveryUnavailable, InvalidJob, JobError
from worker.health import Readiness
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
    store: WorkerStore
    delivery: Delivery
    channels: Mapping[str, Channel]
    session_key: SessionKeyFn
    metrics: WorkerMetrics
    readiness: Readiness
    workspace_id: str = "default"
    # Downloads Telegram attachments and tells the agent where they are (None: text only).
    media: MediaEnricher | None = None

    async def run(self, job: ClaimedJob) -> str:
        """Do the job; returns the reply. Raises a JobError (or a store error) on failure."""
        bundle = await self.store.worker_hydration_bundle(job.message_id, self.workspace_id)
        if bundle is None:
            raise HydrationUnavailable(f"no hydration bundle for message {job.message_id}")
        agent_id = bundle.profile.openclaw_agent_id
        try:
            key = self.session_key(agent_id, job.conversation_id)
        except ValueError as exc:
            raise InvalidJob(f"agent {bundle.agent_key}: {exc}") from None
        text = job.payload.message_text
        if self.media is not None and job.payload.attachments:
            text = await self.media.enrich(job, bundle)
        request = DeliveryRequest(message_id=job.message_id, session_key=key, agent_id=agent_id, text=text)
        try:
            with self.metrics.delivery_seconds.time():
                reply = await self.delivery.deliver(request)
        except DeliveryUnavailable:
            self.readiness.set_gateway_reachable(False)
            raise
        self.readiness.set_gateway_reachable(True)

        provider = channel_for(job.payload)
        channel = self.channels.get(provider)
        if channel is not None:
            await channel.send(job, bundle, reply.text)
            self.metrics.reply_sent(provider)
        # Other providers (the app, schedules): the conversation history is where the reply lives.
        await self.store.worker_append_conversation_messages(
            AppendRequest(
                conversation_id=job.conversation_id,
                message_id=job.message_id,
                messages=[
                    HistoryMessage(role="user", content=job.payload.message_text),
                    HistoryMessage(role="assistant", content=reply.text),
                ],
            )
        )
        log.info(
            "delivered", message_id=job.message_id, conversation_id=job.conversation_id, reply_chars=len(reply.text)
        )
        return reply.text
