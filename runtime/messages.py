"""What the runtime enqueues: a notification or a heartbeat, as a message in the agent's session.

Pure: the texts follow the seed's ``formatNotificationMessage`` and heartbeat prompt; the
requests carry what the store's completion hook needs in ``metadata``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.models import EnqueueRequest, MessagePayload
from contracts.runtime import HEARTBEAT_KEY, NOTIFICATION_KEY, RUNTIME_PROVIDER, DeliveryContext, RuntimeAgent

# Notifications before heartbeats when both are due in one session.
NOTIFICATION_PRIORITY = 60
HEARTBEAT_PRIORITY = 20


def format_notification(context: DeliveryContext) -> str:
    """The seed's ``formatNotificationMessage``."""
    note, task = context.notification, context.task
    lines = [f"## Notification: {note.type}", "", f"**{note.title}**", "", note.body, ""]
    if task is not None:
        lines.append(f"Task: {task.title} ({task.status})")
    lines += ["", "---", f"Notification ID: {note.notification_id}"]
    return "\n".join(lines).strip()


def heartbeat_text(now_ms: int) -> str:
    """The seed's heartbeat prompt, plus OpenClaw's convention for having nothing to report."""
    at = datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    return "\n".join(
        [
            "## Heartbeat Check",
            "",
            "Execute your heartbeat protocol:",
            "1. Check for assigned tasks",
            "2. Check for unread mentions",
            "3. Review activity feed",
            "4. Take one action if appropriate",
            "5. Report status",
            "",
            "If nothing needs attention, reply NO_REPLY.",
            "",
            f"Current time: {at}",
        ]
    )


def notification_request(context: DeliveryContext) -> EnqueueRequest:
    """Deduped on the notification id: a second enqueue (a restart, the next poll) finds the first."""
    agent, note = context.agent, context.notification
    return EnqueueRequest(
        conversation_id=agent.session_key,
        agent_key=agent.agent_key,
        priority=NOTIFICATION_PRIORITY,
        payload=MessagePayload(
            provider=RUNTIME_PROVIDER,
            provider_user_id=agent.agent_id,
            message_text=format_notification(context),
            external_message_id=note.notification_id,
            metadata={NOTIFICATION_KEY: note.notification_id},
        ),
    )


def heartbeat_request(agent: RuntimeAgent, slot_ms: int, now_ms: int) -> EnqueueRequest:
    """One heartbeat slot, deduped on the slot; one attempt: the next slot is the retry."""
    return EnqueueRequest(
        conversation_id=agent.session_key,
        agent_key=agent.agent_key,
        priority=HEARTBEAT_PRIORITY,
        max_attempts=1,
        payload=MessagePayload(
            provider=RUNTIME_PROVIDER,
            provider_user_id=agent.agent_id,
            message_text=heartbeat_text(now_ms),
            external_message_id=f"heartbeat:{agent.agent_id}:{slot_ms}",
            metadata={HEARTBEAT_KEY: agent.agent_id},
        ),
    )
