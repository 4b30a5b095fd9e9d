"""A loopback fake of the Telegram Bot API: a real HTTP server on 127.0.0.1.

Methods: ``sendMessage``, ``getMe``, ``setWebhook``, ``deleteWebhook``, ``getWebhookInfo``, ``getFile``
and file downloads (``GET /file/bot<token>/<file_path>``); and the other direction, Telegram calling
us: :meth:`TelegramApiFake.deliver` POSTs an update to the webhook that ``setWebhook`` registered, with
its ``X-Telegram-Bot-Api-Secret-Token``, counts failed deliveries as pending (``getWebhookInfo``), and
performs a Bot API call the webhook answers with (``{"method": "sendMessage", …}``), as Telegram does.

``setWebhook`` follows the documentation: an HTTPS URL (this fake also accepts ``http://127.0.0.1``:
there is no TLS on loopback), a ``secret_token`` of 1–256 characters from ``A-Za-z0-9_-``.

It does what the Bot API documents for ``POST /bot<token>/sendMessage`` with a JSON body:

- an unknown token → 401 ``Unauthorized``; a path that is not ``/bot<token>/<method>`` → 404;
- ``text`` is at most 4096 UTF-16 code units *after* entity parsing, and not empty after trimming;
- ``parse_mode=HTML`` accepts only the supported tags (b, strong, i, em, u, ins, s, strike, del, span,
  tg-spoiler, a, tg-emoji, code, pre, blockquote), properly nested, and only the entities ``&lt;``,
  ``&gt;``, ``&amp;``, ``&quot;`` and numeric ones; any other ``<`` or ``&`` → 400 ``can't parse entities``;
- chats: unknown (when ``known_chats`` is given) → 400 ``chat not found``; ``blocked_chats`` → 403;
  ``migrated_chats`` → 400 with ``parameters.migrate_to_chat_id``.

Faults for the next N calls: ``rate_limit_next`` (429 with ``retry_after``), ``fail_next`` (any
status, 5xx by default), ``slow_next`` (answer late, after accepting the message: what a client
timeout looks like when Telegram did deliver), ``disconnect_next`` (close without an answer).

Every accepted message is kept in ``messages``, in arrival order.

Usage::

    async with run_telegram_fake(tokens=["123:abc"]) as fake:
        channel = TelegramChannel(api_base=fake.url)
"""

from __future__ import annotations

import itertools
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import h11
import httpx
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

MAX_TEXT = 4096
SUPPORTED_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    }
)
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_PATH = re.compile(r"/bot([^/]+)/([A-Za-z]+)")
_FILE_PATH = re.compile(r"/file/bot([^/]+)/(.+)")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Update ids increase across every fake in the process, as one bot's do across a session.
_UPDATE_IDS = itertools.count(1001)


@dataclass(frozen=True)
class SentMessage:
    """One message the fake accepted."""

    message_id: int
    token: str
    chat_id: str
    text: str  # as sent (escaped HTML)
    plain_text: str  # what the user sees, after entity parsing
    parse_mode: str | None


@dataclass(frozen=True)
class _Fault:
    kind: Literal["pass", "status", "slow", "disconnect"]
    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]
    raw: bytes | None = None  # a file download's bytes instead of a JSON body


class _ParseError(Exception):
    pass


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """Telegram's HTML mode, strictly: the visible text, or ``_ParseError`` naming the problem."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        offset = len(text[:i].encode())
        if char == "<":
            tag = _TAG.match(text, i)
            if tag is None:
                raise _ParseError(f'Unsupported start tag "" at byte offset {offset}')
            closing, name = tag.group(1) == "/", tag.group(2).lower()
            if name not in SUPPORTED_TAGS:
                raise _ParseError(f'Unsupported start tag "{name}" at byte offset {offset}')
            if closing:
                if not stack or stack[-1] != name:
                    raise _ParseError(f'Unexpected end tag "{name}" at byte offset {offset}')
                stack.pop()
            else:
                stack.append(name)
            i = tag.end()
        elif char == "&":
            entity = _ENTITY.match(text, i)
            if entity is None:
                raise _ParseError(f"Character entity expected at byte offset {offset}")
            out.append(_decode_entity(entity.group(1), offset))
            i = entity.end()
        else:
            out.append(char)
            i += 1
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def _decode_entity(name: str, offset: int) -> str:
    if name in _NAMED:
        return _NAMED[name]
    code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
    if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise _ParseError(f"Invalid character entity at byte offset {offset}")
    return chr(code)


class TelegramApiFake:
    def __init__(
        self,
        *,
        tokens: Iterable[str],
        known_chats: Iterable[str] | None = None,
        blocked_chats: Iterable[str] = (),
        migrated_chats: Mapping[str, int] | None = None,
    ) -> None:
        self.tokens = set(tokens)
        self.known_chats = None if known_chats is None else {str(chat) for chat in known_chats}
        self.blocked_chats = {str(chat) for chat in blocked_chats}
        self.migrated_chats = {str(old): new for old, new in (migrated_chats or {}).items()}
        self.messages: list[SentMessage] = []
        self.calls = 0  # every request that reached a method, accepted or not
        self.request_paths: list[str] = []  # as received, token included (only the fake sees it)
        self._faults: deque[_Fault] = deque()
        self._port: int | None = None
        # Webhooks by token: what setWebhook registered; pending/last error as getWebhookInfo reports.
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.webhook_calls: list[tuple[str, dict[str, Any]]] = []  # (method, params) of setWebhook & co.
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id → (file_path, content)
        # Telegram's side of the webhook: one pooled client, closed with the fake.
        self.client = httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(max_connections=200))

    # ------------------------------------------------------------------ test controls

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fake is not listening yet")
        return f"http://127.0.0.1:{self._port}"

    # Each fault method queues ``count`` faulty calls, after ``after`` calls that behave normally, behind
    # any faults queued before.

    def rate_limit_next(self, count: int = 1, *, retry_after: int = 3, after: int = 0) -> None:
        description = f"Too Many Requests: retry after {retry_after}"
        self._queue(_Fault("status", 429, description, retry_after=retry_after), count, after)

    def fail_next(
        self, count: int = 1, *, status: int = 500, description: str = "Internal Server Error", after: int = 0
    ) -> None:
        self._queue(_Fault("status", status, description), count, after)

    def slow_next(self, count: int = 1, *, seconds: float, after: int = 0) -> None:
        self._queue(_Fault("slow", seconds=seconds), count, after)

    def disconnect_next(self, count: int = 1, *, after: int = 0) -> None:
        self._queue(_Fault("disconnect"), count, after)

    def _queue(self, fault: _Fault, count: int, after: int) -> None:
        self._faults.extend([_Fault("pass")] * after + [fault] * count)

    def texts(self, chat_id: str | None = None) -> list[str]:
        """The visible text of accepted messages, optionally for one chat."""
        return [m.plain_text for m in self.messages if chat_id is None or m.chat_id == chat_id]

    # ------------------------------------------------------------------ server

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            self._port = int(listener.extra(SocketAttribute.local_port))
            task_status.started()
            await listener.serve(self._connection)

    async def _connection(self, stream: SocketStream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER)
            try:
                while True:
                    request = await _read(conn, stream)
                    if request is None:
                        return
                    head, body = request
                    answer = await self._handle(head, body)
                    if answer is None:
                        return  # a disconnect fault: close without a word
                    await _write(conn, stream, answer)
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.ProtocolError):
                return  # the client gave up (timed out) or spoke nonsense

    async def _handle(self, head: h11.Request, body: bytes) -> _Answer | None:
        path = head.target.decode("latin-1").split("?", 1)[0]
        self.request_paths.append(path)
        download = _FILE_PATH.fullmatch(path)
        if download is not None and head.method == b"GET":
            return self._download(*download.groups())
        match = _PATH.fullmatch(path)
        if match is None or head.method != b"POST":
            return _error(404, "Not Found")
        token, method = match.groups()
        if token not in self.tokens:
            return _error(401, "Unauthorized")
        self.calls += 1
        fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.kind == "disconnect":
            return None
        if fault is not None and fault.kind == "status":
            parameters = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
            return _error(fault.status, fault.description, parameters)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "Bad Request: can't parse JSON")
        handler = self._methods().get(method)
        if handler is None or not isinstance(params, dict):
            return _error(404, "Not Found: method not found") if handler is None else _error(400, "Bad Request")
        answer = handler(token, params)
        if fault is not None and fault.kind == "slow":
            await anyio.sleep(fault.seconds)  # accepted already: a late answer, not a lost message
        return answer

    def _methods(self) -> dict[str, Callable[[str, dict[str, Any]], _Answer]]:
        return {
            "sendMessage": self._send_message,
            "getMe": self._get_me,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getFile": self._get_file,
        }

    def _send_message(self, token: str, params: dict[str, Any]) -> _Answer:
        chat = params.get("chat_id")
        if chat is None or str(chat) == "":
            return _error(400, "Bad Request: chat_id is empty")
        chat_id = str(chat)
        text = params.get("text")
        if not isinstance(text, str):
            return _error(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        if chat_id in self.migrated_chats:
            return _error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated_chats[chat_id]},
            )
        if self.known_chats is not None and chat_id not in self.known_chats:
            return _error(400, "Bad Request: chat not found")
        if chat_id in self.blocked_chats:
            return _error(403, "Forbidden: bot was blocked by the user")
        if parse_mode not in (None, "HTML"):
            return _error(400, f"Bad Request: unsupported parse_mode {parse_mode!r} in this fake")
        try:
            plain = parse_html(text) if parse_mode == "HTML" else text
        except _ParseError as exc:
            return _error(400, f"Bad Request: can't parse entities: {exc}")
        plain = plain.strip()
        if not plain:
            return _error(400, "Bad Request: message text is empty")
        if utf16_units(plain) > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        message = SentMessage(len(self.messages) + 1, token, chat_id, text, plain, parse_mode)
        self.messages.append(message)
        chat_type = "private" if not chat_id.startswith("-") else "supergroup"
        result = {
            "message_id": message.message_id,
            "date": 0,
            "chat": {"id": chat, "type": chat_type},
            "text": plain,
        }
        return _Answer(200, {"ok": True, "result": result})

    # ------------------------------------------------------------------ more methods

    def _get_me(self, token: str, params: dict[str, Any]) -> _Answer:
        bot_id = int(token.split(":", 1)[0])
        me = {"id": bot_id, "is_bot": True, "first_name": "Fake", "username": f"fake{bot_id}_bot"}
        return _Answer(200, {"ok": True, "result": me})

    def _set_webhook(self, token: str, params: dict[str, Any]) -> _Answer:
        self.webhook_calls.append(("setWebhook", params))
        url = str(params.get("url") or "")
        if not url:
            return self._delete_webhook(token, params)
        if not url.startswith(("https://", "http://127.0.0.1")):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):
            return _error(400, "Bad Request: secret token contains unallowed characters")
        previous = self.webhooks.get(token, {})
        pending = 0 if params.get("drop_pending_updates") else previous.get("pending_update_count", 0)
        self.webhooks[token] = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": params.get("allowed_updates"),
            "pending_update_count": pending,
        }
        return _Answer(200, {"ok": True, "result": True, "description": "Webhook was set"})

    def _delete_webhook(self, token: str, params: dict[str, Any]) -> _Answer:
        self.webhooks.pop(token, None)
        return _Answer(200, {"ok": True, "result": True, "description": "Webhook was deleted"})

    def _get_webhook_info(self, token: str, params: dict[str, Any]) -> _Answer:
        hook = self.webhooks.get(token)
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if hook is not None:
            info.update(url=hook["url"], pending_update_count=hook["pending_update_count"])
            for key in ("allowed_updates", "last_error_date", "last_error_message"):
                if hook.get(key) is not None:
                    info[key] = hook[key]
        return _Answer(200, {"ok": True, "result": info})

    def _get_file(self, token: str, params: dict[str, Any]) -> _Answer:
        found = self.files.get(str(params.get("file_id") or ""))
        if found is None:
            return _error(400, "Bad Request: invalid file_id")
        path, content = found
        file_id = str(params["file_id"])
        result = {"file_id": file_id, "file_unique_id": file_id[-8:], "file_size": len(content), "file_path": path}
        return _Answer(200, {"ok": True, "result": result})

    def _download(self, token: str, path: str) -> _Answer:
        if token not in self.tokens:
            return _error(401, "Unauthorized")
        for file_path, content in self.files.values():
            if file_path == path:
                return _Answer(200, {}, raw=content)
        return _error(404, "Not Found")

    # ------------------------------------------------------------------ Telegram calling the webhook

    def add_file(self, content: bytes, name: str) -> str:
        """Make a file downloadable through getFile; returns its file_id."""
        file_id = f"file-{len(self.files) + 1}-{name}"
        self.files[file_id] = (f"documents/{len(self.files) + 1}_{name}", content)
        return file_id

    def message_update(self, *, chat_id: int, user_id: int, text: str | None = None, **message: Any) -> dict[str, Any]:
        """An update carrying a new message, with a fresh update_id, as Telegram builds it."""
        update_id = next(_UPDATE_IDS)
        body: dict[str, Any] = {
            "message_id": update_id,
            "date": 0,
            "from": {"id": user_id, "is_bot": False, "first_name": "User"},
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            **message,
        }
        if text is not None:
            body["text"] = text
        return {"update_id": update_id, "message": body}

    async def deliver(self, token: str, update: dict[str, Any], *, secret: str | None = None) -> httpx.Response:
        """POST one update to the bot's webhook as Telegram does; returns the httpx response.

        ``secret`` overrides the registered secret token (to send a wrong one). A non-2xx answer or
        a connection error counts as a pending update with ``last_error_*``; a 2xx answer naming a
        Bot API method is performed (``sendMessage`` lands in ``messages``)."""
        hook = self.webhooks[token]
        token_header = secret if secret is not None else hook.get("secret_token")
        headers = {"X-Telegram-Bot-Api-Secret-Token": token_header} if token_header else {}
        try:
            response = await self.client.post(hook["url"], json=update, headers=headers)
        except httpx.HTTPError as exc:
            self._pending(hook, f"Connection failed: {type(exc).__name__}")
            raise
        if response.status_code >= 300:
            self._pending(hook, f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}")
            return response
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("method"), str):
            params = {k: v for k, v in answer.items() if k != "method"}
            self._methods()[answer["method"]](token, params)
        return response

    @staticmethod
    def _pending(hook: dict[str, Any], message: str) -> None:
        hook["pending_update_count"] += 1
        hook["last_error_date"] = 0
        hook["last_error_message"] = message


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> _Answer:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters is not None:
        body["parameters"] = parameters
    return _Answer(status, body)


async def _read(conn: h11.Connection, stream: SocketStream) -> tuple[h11.Request, bytes] | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                conn.receive_data(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                conn.receive_data(b"")
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return (head, bytes(body)) if head is not None else None
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _write(conn: h11.Connection, stream: SocketStream, answer: _Answer) -> None:
    payload = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
    kind = "application/octet-stream" if answer.raw is not None else "application/json"
    headers = [("content-type", kind), ("content-length", str(len(payload)))]
    parts = [
        conn.send(h11.Response(status_code=answer.status, headers=headers)),
        conn.send(h11.Data(data=payload)),
        conn.send(h11.EndOfMessage()),
    ]
    await stream.send(b"".join(part for part in parts if part))


@asynccontextmanager
async def run_telegram_fake(
    *,
    tokens: Iterable[str],
    known_chats: Iterable[str] | None = None,
    blocked_chats: Iterable[str] = (),
    migrated_chats: Mapping[str, int] | None = None,
) -> AsyncIterator[TelegramApiFake]:
    """Serve a fake for the duration of the ``async with`` block."""
    fake = TelegramApiFake(
        tokens=tokens, known_chats=known_chats, blocked_chats=blocked_chats, migrated_chats=migrated_chats
    )
    async with anyio.create_task_group() as tg:
        await tg.start(fake.serve)
        try:
            yield fake
        finally:
            await fake.client.aclose()
            tg.cancel_scope.cancel()
