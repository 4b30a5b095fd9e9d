"""Telegram updates as the Bot API sends them, and what one means for us: pure, no I/O.

The models are tolerant (Telegram adds fields over time; we read only what we use). An update is
one of: a pairing command (``/start CODE``), an inbound message (text, caption, media; edited
messages too), or something to ignore (a callback, a message without a sender, a bare ``/start``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.ingress import telegram_external_id
from contracts.models import Attachment, AttachmentKind, EnqueueRequest, MessagePayload

PROVIDER = "telegram"
_START = re.compile(r"^/start(?:@\w+)?(?:\s+(\S+))?\s*$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{4,128}$")


class _Tolerant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class TgUser(_Tolerant):
    id: int
    is_bot: bool = False


class TgChat(_Tolerant):
    id: int
    type: str = "private"


class TgPhotoSize(_Tolerant):
    file_id: str
    width: int = 0
    height: int = 0
    file_size: int | None = None


class TgFile(_Tolerant):
    """Voice, audio, video and document share the fields we read."""

    file_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class TgMessage(_Tolerant):
    message_id: int
    sender: TgUser | None = Field(default=None, alias="from")
    chat: TgChat
    text: str | None = None
    caption: str | None = None
    photo: list[TgPhotoSize] | None = None
    voice: TgFile | None = None
    audio: TgFile | None = None
    video: TgFile | None = None
    document: TgFile | None = None


class TgUpdate(_Tolerant):
    update_id: int = Field(ge=0)
    message: TgMessage | None = None
    edited_message: TgMessage | None = None


class MalformedUpdate(ValueError):
    """The body is not JSON, or not a Telegram update; the message names what is wrong."""


def parse_update(body: bytes) -> TgUpdate:
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedUpdate(f"body: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MalformedUpdate("body: a Telegram update is a JSON object")
    try:
        return TgUpdate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise MalformedUpdate(f"{where}: {first['msg']}") from None


# --------------------------------------------------------------------------- what it means


@dataclass(frozen=True)
class Ignore:
    reason: str
    # What to tell the user, if anything (answered through the webhook response).
    reply: str | None = None
    chat_id: int | None = None


@dataclass(frozen=True)
class Pair:
    code: str
    user_id: str
    chat_id: int


@dataclass(frozen=True)
class Inbound:
    user_id: str
    chat_id: int
    text: str
    message_id: int
    edited: bool
    attachments: list[Attachment] = field(default_factory=list)


Meaning = Ignore | Pair | Inbound

START_HELP = "To talk to an agent here, send /start followed by the pairing code you were given."


def interpret(update: TgUpdate) -> Meaning:
    message, edited = (update.message, False) if update.message is not None else (update.edited_message, True)
    if message is None:
        return Ignore("not a message")
    if message.sender is None or message.sender.is_bot:
        return Ignore("no human sender")
    start = _START.match(message.text or "")
    if start is not None and not edited:
        code = start.group(1)
        if code is None or not _CODE.match(code):
            return Ignore("start without a pairing code", START_HELP, message.chat.id)
        return Pair(code, str(message.sender.id), message.chat.id)
    attachments = _attachments(message)
    text = message.text or message.caption or ""
    if not text.strip() and attachments:
        text = f"[telegram media] {' + '.join(a.kind for a in attachments)} message"
    if not text.strip():
        return Ignore("no text or media")
    return Inbound(str(message.sender.id), message.chat.id, text, message.message_id, edited, attachments)


def _attachments(message: TgMessage) -> list[Attachment]:
    found: list[Attachment] = []
    if message.photo:
        # Telegram sends every size; the largest is the photo.
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        found.append(_attachment("photo", largest.file_id, None, "image/jpeg", largest.file_size))
    kinds: list[tuple[AttachmentKind, TgFile | None]] = [
        ("video", message.video),
        ("audio", message.audio),
        ("voice", message.voice),
        ("document", message.document),
    ]
    for kind, item in kinds:
        if item is not None:
            found.append(_attachment(kind, item.file_id, item.file_name, item.mime_type, item.file_size))
    return found


def _attachment(kind: AttachmentKind, file_id: str, name: str | None, mime: str | None, size: int | None) -> Attachment:
    return Attachment(kind=kind, telegram_file_id=file_id, file_name=name, mime_type=mime, size_bytes=size)


def enqueue_request(
    inbound: Inbound, *, bot_id: str, update_id: int, agent_key: str, conversation_id: str
) -> EnqueueRequest:
    """The queue message for an inbound Telegram message; its external id makes a retry a no-op."""
    metadata = {
        "telegramBotId": bot_id,
        "telegramChatId": str(inbound.chat_id),
        "telegramUserId": inbound.user_id,
        "telegramMessageId": str(inbound.message_id),
        "telegramUpdateId": str(update_id),
    }
    if inbound.edited:
        metadata["telegramEdited"] = "true"
    if inbound.attachments:
        metadata["telegramMediaType"] = "+".join(a.kind for a in inbound.attachments)
    return EnqueueRequest(
        conversation_id=conversation_id,
        agent_key=agent_key,
        payload=MessagePayload(
            provider=PROVIDER,
            provider_user_id=inbound.user_id,
            message_text=inbound.text,
            external_message_id=telegram_external_id(update_id),
            metadata=metadata,
            attachments=inbound.attachments or None,
        ),
    )


def send_message(chat_id: int, text: str) -> dict[str, Any]:
    """A Bot API call in the webhook's response: Telegram performs it, no token needed on our side."""
    return {"method": "sendMessage", "chat_id": chat_id, "text": text}


PAIRING_REPLIES = {
    "paired": "Paired. Your messages here now go to agent {agent}.",
    "unknown": "That pairing code is not valid. Ask for a new one.",
    "used": "That pairing code has already been used. Ask for a new one.",
    "expired": "That pairing code has expired. Ask for a new one.",
    "rate_limited": "Too many pairing attempts. Wait a few minutes, then try again.",
}
NOT_PAIRED = "This bot only talks to paired users: send /start followed by your pairing code."
