"""Wire models for push schedules and broadcasts: agents that speak first.

A **template** is a message text with ``{variables}`` and the agent that sends it. A **job** binds a
template to a target conversation on a :class:`Schedule`; each slot is enqueued exactly once, keyed
by its run key ``job:<jobId>:<slotMs>`` (a dispatch record, unique per job and run key, written in
the same transaction as the enqueue). A **broadcast** sends one text to every conversation of the
chosen agents, once per broadcast id, with an audit of every recipient's outcome.

The slot math is in ``schedules/slots.py``; these are the shapes the stores keep and exchange.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from contracts.models import EpochMs, MessageText, NonEmpty, WireModel

SYSTEM_PUSH = "system_push"
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _hhmm(value: str) -> str:
    if not _HHMM.fullmatch(value):
        raise ValueError(f"{value!r} is not a time of day as HH:mm (00:00–23:59), e.g. 09:00")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Rome or America/New_York") from None
    return value


def check_push_id(value: str) -> str:
    """A template, job or broadcast id, or ValueError saying what one looks like."""
    if not _ID.fullmatch(value):
        raise ValueError(f"{value!r} is not an id: 1–128 of A-Z a-z 0-9 _ . : -, starting with a letter or digit")
    return value


HHMM = Annotated[str, AfterValidator(_hhmm)]
Zone = Annotated[str, AfterValidator(_zone)]
PushId = Annotated[str, AfterValidator(check_push_id)]


class Schedule(WireModel):
    """Daily at HH:mm; weekly on some weekdays at HH:mm; or monthly on a day at HH:mm; in a zone."""

    kind: Literal["daily", "weekly", "monthly"]
    at: HHMM
    tz: Zone = "UTC"
    # weekly: ISO weekdays, Monday = 1 … Sunday = 7.
    weekdays: tuple[Annotated[int, Field(ge=1, le=7)], ...] = ()
    # monthly: 1–31 (clamped to the month's last day, as upstream does) or "last".
    day: Annotated[int, Field(ge=1, le=31)] | Literal["last"] | None = None

    @field_validator("weekdays")
    @classmethod
    def _sorted_once(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _fields_match_the_kind(self) -> Self:
        if self.kind == "weekly" and not self.weekdays:
            raise ValueError("weekdays: a weekly schedule needs at least one weekday (1 = Monday … 7 = Sunday)")
        if self.kind != "weekly" and self.weekdays:
            raise ValueError(f"weekdays: only a weekly schedule has weekdays, not a {self.kind} one")
        if self.kind == "monthly" and self.day is None:
            raise ValueError("day: a monthly schedule needs a day of the month (1–31 or last)")
        if self.kind != "monthly" and self.day is not None:
            raise ValueError(f"day: only a monthly schedule has a day of the month, not a {self.kind} one")
        return self


class PushTemplate(WireModel):
    template_id: PushId
    agent_key: NonEmpty
    text: MessageText
    title: str | None = None
    created_at: EpochMs | None = None
    updated_at: EpochMs | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


CatchUp = Literal["latest", "skip"]


class PushJob(WireModel):
    """A template on a schedule, for one conversation, or for a Telegram user through the binding
    pairing made (their bound agent and chat, resolved at each slot; no binding: the slot fails).

    ``catch_up`` says what a dispatcher that was down does with missed slots: ``latest`` runs the
    latest missed slot once (however late); ``skip`` runs a slot only within ``skip_after_s`` of
    it and records the rest as skipped.
    """

    job_id: PushId
    template_id: PushId
    schedule: Schedule
    conversation_id: NonEmpty | None = None
    # Or a Telegram user of a bot (its numeric id, from getMe), reached through their binding.
    telegram_user_id: NonEmpty | None = None
    bot_id: NonEmpty | None = None
    # Who the message is for on its channel (Telegram: the chat); defaults to the conversation id.
    provider_user_id: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    catch_up: CatchUp = "latest"
    skip_after_s: int = Field(3_600, ge=60, le=7 * 86_400)
    enabled: bool = True
    next_run_at: EpochMs | None = None
    last_run_at: EpochMs | None = None
    last_run_key: str | None = None
    created_at: EpochMs | None = None
    updated_at: EpochMs | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.conversation_id is None) == (self.telegram_user_id is None):
            raise ValueError("conversationId: give a conversation, or a Telegram user (telegramUserId with botId)")
        if (self.telegram_user_id is None) != (self.bot_id is None):
            raise ValueError("botId: a Telegram user is reached through one bot; give botId with telegramUserId")
        return self

    @property
    def target(self) -> str:
        return self.conversation_id or f"telegram user {self.telegram_user_id} of bot {self.bot_id}"


DispatchStatus = Literal["enqueued", "skipped", "failed"]


class PushDispatchRequest(WireModel):
    """One slot of one job, decided by the dispatcher; the store carries it out atomically:
    enqueue (unless ``skip_reason``), record the dispatch under ``run_key``, move the job on."""

    job_id: PushId
    run_key: NonEmpty
    slot_at: EpochMs
    mode: Literal["scheduled", "manual"] = "scheduled"
    # scheduled: the job's nextRunAt the dispatcher read (a stale one changes nothing), and the next.
    expected_next_run_at: EpochMs | None = None
    next_run_at: EpochMs | None = None
    skip_reason: str | None = None


class PushDispatch(WireModel):
    job_id: str
    run_key: str
    slot_at: EpochMs
    status: DispatchStatus
    created_at: EpochMs
    message_id: str | None = None
    error: str | None = None
    # False when another dispatcher had recorded this run key first (nothing was done twice).
    fresh: bool = True


class BroadcastRequest(WireModel):
    broadcast_id: PushId
    text: MessageText
    requested_by: NonEmpty
    # Only these agents (None: every enabled agent).
    agents: list[str] | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class BroadcastRecipient(WireModel):
    conversation_id: str
    agent_key: str
    status: DispatchStatus
    message_id: str | None = None
    error: str | None = None


class Broadcast(WireModel):
    broadcast_id: str
    requested_by: str
    requested_at: EpochMs
    text_sha256: str
    agents: list[str] | None = None
    status: Literal["done", "failed"]
    recipients: list[BroadcastRecipient]
    # False when the broadcast id had been sent before: this is its first outcome, nothing re-sent.
    fresh: bool = True


_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_text(text: str, variables: dict[str, str]) -> str:
    """``{name}`` becomes the job's value for ``name``; an unknown name stays as it is written."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)
