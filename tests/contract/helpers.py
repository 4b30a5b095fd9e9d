"""Small builders shared by the contract tests."""

from __future__ import annotations

from contracts.convex import ConvexStore
from contracts.models import (
    ClaimedJob,
    EnqueueRequest,
    FailRequest,
    LeaseRef,
    MessagePayload,
    ReleaseRequest,
    WorkerRegistration,
)
from contracts.secrets import SecretBox, SecretsKey, new_key
from contracts.sqlite import SqliteStore

# Every binding the contract suite runs against implements every role.
Store = SqliteStore | ConvexStore
# The key every store in the suite seals its secrets with (a fresh one per test session).
TEST_BOX = SecretBox(SecretsKey.parse(new_key()))


def request(
    conversation_id: str = "conv-1",
    text: str = "hello",
    *,
    agent_key: str = "default",
    external_id: str | None = None,
    priority: int = 50,
    scheduled_for: int | None = None,
    max_attempts: int = 5,
    provider: str = "app",
) -> EnqueueRequest:
    return EnqueueRequest(
        conversation_id=conversation_id,
        agent_key=agent_key,
        payload=MessagePayload(
            provider=provider, provider_user_id="user-1", message_text=text, external_message_id=external_id
        ),
        priority=priority,
        scheduled_for=scheduled_for,
        max_attempts=max_attempts,
    )


async def register(store: Store, worker_id: str = "w1") -> None:
    await store.worker_register(WorkerRegistration(worker_id=worker_id, provider="local"))


def lease_of(job: ClaimedJob, worker_id: str = "w1") -> LeaseRef:
    return LeaseRef(worker_id=worker_id, message_id=job.message_id, lease_id=job.lease_id)


def fail_of(job: ClaimedJob, error: str = "boom", *, retryable: bool = True, worker_id: str = "w1") -> FailRequest:
    return FailRequest(lease=lease_of(job, worker_id), error_message=error, retryable=retryable)


def release_of(job: ClaimedJob, reason: str = "gateway unreachable", *, worker_id: str = "w1") -> ReleaseRequest:
    return ReleaseRequest(lease=lease_of(job, worker_id), reason=reason)


async def claim_text(store: Store, worker_id: str = "w1") -> str | None:
    """Claim, complete, and return the text; None when nothing is claimable."""
    job = await store.worker_claim(worker_id)
    if job is None:
        return None
    assert (await store.worker_complete(lease_of(job, worker_id))).ok
    return job.payload.message_text
