"""The app API: products that are not Telegram queue messages and read replies over HTTP.

Every call carries ``Authorization: Bearer <token>`` (``factory app-token create NAME``); the store
keeps only the token's SHA-256, and the presented token is checked against it in constant time.
An app's conversations live in its own namespace (``app:<name>:<id>`` in the store), so one app can
neither read nor write another's, nor a Telegram chat's.

* ``POST /v1/conversations/{id}/messages`` queues a message (202). ``externalMessageId`` (or the
  ``Idempotency-Key`` header) makes a retry return the first message's id instead of a second message.
* ``GET /v1/conversations/{id}`` is the history and the status of each message (with its reply).
* ``GET /v1/conversations/{id}/events`` streams server-sent events: ``reply`` when a message is done,
  ``dead_letter`` when it will not be retried. ``Last-Event-ID`` (a message id) resumes after it.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the routes' annotations,
# which name dependencies local to build_router.
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import Field

from contracts.ingress import AppToken, ConversationMessage, token_hash, token_matches
from contracts.models import (
    EnqueueRequest,
    HistoryMessage,
    MessagePayload,
    MessageText,
    NonEmpty,
    Priority,
    WireModel,
    to_wire,
)
from ingress.config import IngressConfig

if TYPE_CHECKING:
    from ingress.app import FrontDoorStore

PROVIDER = "app"
_bearer = HTTPBearer(auto_error=False, description="An app token from `factory app-token create NAME`.")


class AppMessage(WireModel):
    """A message from an app's user to an agent."""

    text: MessageText
    agent_key: NonEmpty = "default"
    user_id: str | None = Field(default=None, description="The app's user; default: the conversation id.")
    external_message_id: str | None = Field(default=None, description="The app's id for it: queued once.")
    priority: Priority = 50
    metadata: dict[str, str] | None = None


class Accepted(WireModel):
    message_id: str
    conversation_id: str


class ConversationView(WireModel):
    conversation_id: str
    agent_key: str
    messages: list[ConversationMessage]
    history: list[HistoryMessage]


def stored_conversation_id(app: AppToken, conversation_id: str) -> str:
    return f"app:{app.name}:{conversation_id}"


def build_router(store: "FrontDoorStore", config: IngressConfig) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["app API"])

    async def current_app(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> AppToken:
        # The lookup is by SHA-256 of a 256-bit token: learning anything from its timing means
        # finding preimages. The hash is then compared in constant time all the same.
        presented = credentials.credentials if credentials is not None else ""
        app = await store.find_app_token(token_hash(presented)) if presented else None
        if app is None or not token_matches(presented, app.token_hash):
            raise HTTPException(401, "Authorization: a valid app token is required (Bearer <token>)", _CHALLENGE)
        return app

    App = Annotated[AppToken, Depends(current_app)]

    @router.post("/conversations/{conversation_id}/messages", status_code=202, response_model=Accepted)
    async def post_message(
        conversation_id: str,
        message: AppMessage,
        app: App,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Accepted:
        """Queue a message for an agent in one of this app's conversations."""
        stored = stored_conversation_id(app, conversation_id)
        request = EnqueueRequest(
            conversation_id=stored,
            agent_key=message.agent_key,
            priority=message.priority,
            payload=MessagePayload(
                provider=PROVIDER,
                provider_user_id=message.user_id or conversation_id,
                message_text=message.text,
                external_message_id=message.external_message_id or idempotency_key,
                metadata={**(message.metadata or {}), "appName": app.name},
            ),
        )
        message_id = await store.enqueue(request)
        return Accepted(message_id=message_id, conversation_id=conversation_id)

    @router.get("/conversations/{conversation_id}", response_model=ConversationView)
    async def get_conversation(conversation_id: str, app: App, limit: int = 50) -> ConversationView:
        """The conversation's recent history and the status (and reply) of each message."""
        stored = stored_conversation_id(app, conversation_id)
        conversation = await store.get_conversation(stored, max(1, min(limit, 500)))
        if conversation is None:
            raise HTTPException(404, f"conversation {conversation_id!r} not found for app {app.name!r}")
        messages = await store.conversation_messages(stored, max(1, min(limit, 500)))
        return ConversationView(
            conversation_id=conversation_id,
            agent_key=conversation.agent_key,
            messages=messages,
            history=conversation.history,
        )

    @router.get("/conversations/{conversation_id}/events", response_class=EventSourceResponse)
    async def events(
        conversation_id: str,
        app: App,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: ``reply`` as each message is done, ``dead_letter`` if one gives up."""
        stored = stored_conversation_id(app, conversation_id)
        seen = await _already_seen(store, stored, last_event_id)
        while True:
            for message in await store.conversation_messages(stored, 200):
                if message.message_id in seen or message.status not in ("done", "dead_letter"):
                    continue
                seen.add(message.message_id)
                kind = "reply" if message.status == "done" else "dead_letter"
                yield ServerSentEvent(event=kind, id=message.message_id, data=to_wire(message))
            await anyio.sleep(config.stream_poll_s)

    return router


async def _already_seen(store: "FrontDoorStore", conversation_id: str, last_event_id: str | None) -> set[str]:
    """Messages the stream does not announce: everything finished before it opened, or, when the
    client resumes, everything up to and including its last event."""
    messages = await store.conversation_messages(conversation_id, 200)
    if last_event_id is None:
        return {m.message_id for m in messages if m.status in ("done", "dead_letter")}
    ids = [m.message_id for m in messages]
    upto = ids.index(last_event_id) + 1 if last_event_id in ids else 0
    return set(ids[:upto])


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
