"""The app API of `factory serve` over real HTTP: bearer auth, idempotency, history, the reply stream."""

from __future__ import annotations

import json
import secrets

import anyio
import httpx
import pytest

from contracts.ingress import AppToken, token_hash
from contracts.models import AppendRequest, HistoryMessage, LeaseRef
from contracts.sqlite import SqliteStore
from tests.ingress.conftest import Served

pytestmark = pytest.mark.anyio


async def new_token(store: SqliteStore, name: str) -> str:
    token = "fat_" + secrets.token_urlsafe(32)
    await store.create_app_token(
        AppToken(token_id="tok_" + name, name=name, token_hash=token_hash(token), created_at=await store.now_ms())
    )
    return token


async def answer_as_a_worker(store: SqliteStore, conversation_id: str, reply: str) -> None:
    """What a worker does with the conversation's next message (claim → append the turns → complete)."""
    job = await store.worker_claim("w-app", conversation_id)
    assert job is not None
    await store.worker_append_conversation_messages(
        AppendRequest(
            conversation_id=job.conversation_id,
            message_id=job.message_id,
            messages=[
                HistoryMessage(role="user", content=job.payload.message_text),
                HistoryMessage(role="assistant", content=reply),
            ],
        )
    )
    lease = LeaseRef(worker_id="w-app", message_id=job.message_id, lease_id=job.lease_id)
    assert (await store.worker_complete(lease)).ok


async def test_every_route_needs_a_valid_token(store: SqliteStore, served: Served) -> None:
    token = await new_token(store, "auth-app")
    async with httpx.AsyncClient(base_url=served.url) as client:
        missing = await client.post("/v1/conversations/c1/messages", json={"text": "hi"})
        wrong = await client.get("/v1/conversations/c1", headers={"Authorization": "Bearer fat_nope"})
        await store.revoke_app_token("tok_auth-app")
        revoked = await client.get("/v1/conversations/c1", headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == wrong.status_code == revoked.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert await store.get_conversation("app:auth-app:c1") is None


async def test_posting_is_idempotent_and_bad_input_names_the_field(store: SqliteStore, served: Served) -> None:
    token = await new_token(store, "shop")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=served.url, headers=auth) as client:
        path = "/v1/conversations/order-7/messages"
        first = await client.post(path, json={"text": "where is it?", "externalMessageId": "m1"})
        again = await client.post(path, json={"text": "where is it?", "externalMessageId": "m1"})
        keyed = await client.post(path, json={"text": "and now?"}, headers={"Idempotency-Key": "k2"})
        keyed_again = await client.post(path, json={"text": "and now?"}, headers={"Idempotency-Key": "k2"})
        bad = await client.post(path, json={"txt": "typo"})
        view = await client.get("/v1/conversations/order-7")
    assert first.status_code == 202 and first.json()["messageId"] == again.json()["messageId"]
    assert keyed.json()["messageId"] == keyed_again.json()["messageId"] != first.json()["messageId"]
    assert bad.status_code == 422 and bad.json()["error"].startswith("text:")
    body = view.json()
    assert body["conversationId"] == "order-7" and [m["status"] for m in body["messages"]] == ["queued", "queued"]


async def test_the_stream_delivers_the_reply_and_the_view_shows_it(store: SqliteStore, served: Served) -> None:
    token = await new_token(store, "chat")
    auth = {"Authorization": f"Bearer {token}"}
    events: list[tuple[str, dict[str, object]]] = []
    async with httpx.AsyncClient(base_url=served.url, headers=auth, timeout=30) as client:
        posted = await client.post("/v1/conversations/u1/messages", json={"text": "ping"})
        message_id = posted.json()["messageId"]
        async with client.stream("GET", "/v1/conversations/u1/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            await answer_as_a_worker(store, "app:chat:u1", "pong")
            with anyio.fail_after(15):
                kind = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((kind, json.loads(line.removeprefix("data: "))))
                        break
        view = (await client.get("/v1/conversations/u1")).json()
    assert events == [("reply", {**events[0][1], "messageId": message_id, "status": "done", "reply": "pong"})]
    assert view["messages"][0]["reply"] == "pong"
    assert [h["content"] for h in view["history"]] == ["ping", "pong"]


async def test_openapi_documents_the_app_api(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        spec = (await client.get("/openapi.json")).json()
        health = await client.get("/healthz")
    assert {"/v1/conversations/{conversation_id}/messages", "/v1/conversations/{conversation_id}"} <= set(spec["paths"])
    assert "/telegram/webhook/{agent_key}" not in spec["paths"]  # Telegram's, not an app's
    assert health.status_code == 200 and health.json()["ok"] is True
