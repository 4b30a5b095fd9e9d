"""The Telegram channel: send an agent's reply with the Bot API ``sendMessage``.

What upstream's worker got wrong and this module does instead (reference/agent-factory.md §5.4.7):

- **chat_id**: ``metadata.telegramChatId`` when present (groups), else ``providerUserId`` (private chats).
- **length**: at most 4096 UTF-16 code units per message after entity parsing; the raw reply is chunked
  by UTF-16 length, then each chunk escaped (the pure rules are in :mod:`worker.telegram.text`).
- **HTML**: ``parse_mode=HTML`` with ``&``, ``<`` and ``>`` escaped: the agent's text is shown as text.

Failures map onto ``ChannelError.retryable``: 429 waits ``retry_after`` and tries the chunk again (within a
wait budget); 5xx, timeouts and connection errors retry with backoff (one tenacity policy), then fail
retryable; 400/403 (chat not found, bot blocked…) and 401/404 (bad bot token) fail for good.

The bot token is part of the URL path, and httpx puts the URL in its log lines and in its exceptions'
requests. So the client only ever sees a placeholder path; ``_TokenTransport`` puts the token in just
before the bytes leave, below httpx's logging and error context. Every message we build is redacted too
(``contracts.redact``, in every form a URL may carry the token).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import httpx
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from contracts.models import ClaimedJob, HydrationBundle
from contracts.redact import mask, url_forms
from contracts.retry import Sleep
from contracts.urls import check_token_url
from worker.channels import channel_for
from worker.errors import ChannelError
from worker.telegram.text import TELEGRAM_MAX_TEXT, escape_html, split_message

DEFAULT_API_BASE = "https://api.telegram.org"
PROVIDER = "telegram"

_log = structlog.get_logger("worker.telegram")

_PLACEHOLDER = "bot-token-redacted"
_TOKEN_EXTENSION = "factory.telegram_bot_token"
_NUMERIC_CHAT = re.compile(r"-?\d+")


# --------------------------------------------------------------------------- wire shapes


class _ResponseParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    retry_after: float | None = None
    migrate_to_chat_id: int | None = None


class TelegramResponse(BaseModel):
    """The envelope of every Bot API answer; tolerant, since Telegram adds fields over time."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: bool
    result: Any = None
    error_code: int | None = None
    description: str | None = None
    parameters: _ResponseParameters | None = None


# --------------------------------------------------------------------------- the channel


class _Transient(Exception):
    """A failure another try can fix: 5xx, timeout, connection error."""


class _RateLimited(Exception):
    def __init__(self, retry_after: float, description: str) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class _ChatMigrated(Exception):
    """A group became a supergroup: Telegram names the new chat id, and the send is to be repeated."""

    def __init__(self, chat_id: int) -> None:
        super().__init__(f"chat migrated to {chat_id}")
        self.chat_id = chat_id


@dataclass
class _WaitBudget:
    """Seconds of waiting (429 ``retry_after`` plus backoff) one reply may spend, across its chunks."""

    limit: float
    spent: float = 0.0


@dataclass(frozen=True)
class _Target:
    """Everything a message to one chat needs, with the token kept in a SecretStr."""

    agent_key: str
    message_id: str
    token: SecretStr
    chat_id: int | str

    def redact(self, text: str) -> str:
        """``text`` with the token masked, as written and as a URL percent-encodes it."""
        return mask(text, url_forms(self.token), "<redacted>")


class TelegramChannel:
    """``worker.channels.Channel`` for provider ``telegram``. Owns its httpx client: ``aclose`` it."""

    provider: ClassVar[str] = PROVIDER

    def __init__(
        self,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        max_wait: float = 90.0,
        chunk_limit: int = TELEGRAM_MAX_TEXT,
        sleep: Sleep = anyio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        remember_replies: int = 1024,
    ) -> None:
        """
        :param api_base: the Bot API root (a loopback fake in tests).
        :param timeout: seconds for each HTTP request.
        :param max_attempts: tries per chunk against 5xx, timeouts and connection errors.
        :param backoff_initial: first backoff in seconds, doubling up to ``backoff_max`` (with jitter).
        :param max_wait: seconds one reply may spend waiting (429 ``retry_after`` plus backoff) before it
            fails retryable and the queue's own backoff takes over. Keep it under what the lease keeper
            can sustain; it is the bound on how long a send can hold a job.
        :param chunk_limit: UTF-16 units per message; Telegram's limit unless a test wants smaller.
        :param sleep: how to wait; tests pass a virtual clock.
        :param transport: the transport under the token injection (a proxy, say); default: direct.
        :param remember_replies: how many (message, reply) send records to keep so a redelivery of the
            same reply resumes after the chunks already delivered (see ``send``).
        """
        # The bot token rides in every request's path: https, or plain http to loopback only.
        try:
            url = httpx.URL(check_token_url(api_base))
        except ValueError as exc:
            raise ValueError(f"api_base: {exc}") from None
        for name, value in (
            ("timeout", timeout),
            ("backoff_initial", backoff_initial),
            ("max_wait", max_wait),
        ):
            if value <= 0:
                raise ValueError(f"{name}: {value} must be positive")
        if max_attempts < 1:
            raise ValueError(f"max_attempts: {max_attempts} must be at least 1")
        if backoff_max < backoff_initial:
            raise ValueError(f"backoff_max: {backoff_max} must be at least backoff_initial ({backoff_initial})")
        if not 2 <= chunk_limit <= TELEGRAM_MAX_TEXT:
            raise ValueError(f"chunk_limit: {chunk_limit} must be within 2–{TELEGRAM_MAX_TEXT} UTF-16 units")
        if remember_replies < 0:
            raise ValueError(f"remember_replies: {remember_replies} must not be negative")
        self._send_url = f"{str(url).rstrip('/')}/{_PLACEHOLDER}/sendMessage"
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = wait_exponential_jitter(multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial)
        self._max_wait = max_wait
        self._chunk_limit = chunk_limit
        self._sleep = sleep
        self._progress = _Progress(remember_replies)
        # trust_env=False: nothing here reads the environment, and an env proxy mount would bypass the
        # token transport (and send the placeholder path to the proxy).
        self._client = httpx.AsyncClient(
            transport=_TokenTransport(transport or httpx.AsyncHTTPTransport()),
            timeout=timeout,
            trust_env=False,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"TelegramChannel(send_url={self._send_url!r})"

    async def __aenter__(self) -> TelegramChannel:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, job: ClaimedJob, bundle: HydrationBundle, reply: str) -> None:
        """Send ``reply`` to the chat ``job`` came from, in order, chunked and escaped.

        Duplicate risk: Telegram's sendMessage has no idempotency key, so a chunk whose answer was lost
        (timeout after Telegram accepted it) is sent again by the retry; that is at most one duplicate
        chunk per lost answer, the price of not losing replies. Earlier chunks are never re-sent
        within a call. Across calls (the job failed on chunk k and the queue redelivers it to this
        worker, as conversation affinity makes likely), the channel remembers how many chunks of
        this exact reply for this message reached the chat and resumes after them; a redelivery that
        lands on another worker, or a reply the agent words differently, starts from the first chunk.
        """
        payload = job.payload
        if channel_for(payload) != PROVIDER:
            raise ChannelError(
                f"message {job.message_id}: provider {payload.provider!r} has no Telegram chat; "
                "route it to its own channel",
                retryable=False,
            )
        if bundle.telegram_bot_token is None or not bundle.telegram_bot_token.get_secret_value():
            raise ChannelError(
                f"agent {job.agent_key} has no telegram bot token: import secret telegram.botToken.{job.agent_key}",
                retryable=False,
            )
        raw_chat = (payload.metadata or {}).get("telegramChatId") or payload.provider_user_id
        target = _Target(job.agent_key, job.message_id, bundle.telegram_bot_token, _chat_id(raw_chat))
        chunks = split_message(reply, self._chunk_limit)
        if not chunks:
            # The agent chose silence (an empty reply); Telegram would reject an empty text anyway.
            _log.info("telegram.reply_empty", message_id=job.message_id, chat_id=target.chat_id)
            return
        key = _reply_key(job.message_id, raw_chat, reply)
        start = self._progress.sent(key)
        if start:
            _log.info(
                "telegram.resuming_reply",
                message_id=job.message_id,
                chat_id=target.chat_id,
                already_sent=start,
                chunks=len(chunks),
            )
        budget = _WaitBudget(self._max_wait)
        for index in range(start, len(chunks)):
            try:
                target = await self._send_chunk(target, escape_html(chunks[index]), budget)
            except ChannelError as exc:
                if len(chunks) == 1:
                    raise
                where = f"chunk {index + 1} of {len(chunks)}; {index} already delivered"
                raise ChannelError(f"{exc} ({where})", retryable=exc.retryable) from None
            self._progress.record(key, index + 1)
        _log.info("telegram.reply_sent", message_id=job.message_id, chat_id=target.chat_id, chunks=len(chunks))

    # ------------------------------------------------------------------ one chunk

    async def _send_chunk(self, target: _Target, text: str, budget: _WaitBudget) -> _Target:
        """Send one escaped chunk, retrying per policy; returns the target (changed if the chat migrated)."""
        for _ in range(2):  # a second round only after a group → supergroup migration
            try:
                await self._with_retries(target, text, budget)
                return target
            except _ChatMigrated as moved:
                _log.warning(
                    "telegram.chat_migrated",
                    message_id=target.message_id,
                    old=target.chat_id,
                    new=moved.chat_id,
                )
                target = _Target(target.agent_key, target.message_id, target.token, moved.chat_id)
        raise ChannelError(f"telegram chat {target.chat_id} keeps migrating; giving up", retryable=True)

    async def _with_retries(self, target: _Target, text: str, budget: _WaitBudget) -> None:
        async def sleep(seconds: float) -> None:
            budget.spent += seconds
            await self._sleep(seconds)

        stop = _Stop(self._max_attempts, budget)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((_Transient, _RateLimited)),
            wait=self._wait,
            stop=stop,
            sleep=sleep,
            before_sleep=lambda state: _log_retry(state, target),
            reraise=True,
        )
        try:
            await retrying(self._post, target, text)
        except _RateLimited as exc:
            raise ChannelError(
                f"telegram rate limit for chat {target.chat_id}: {exc} (retry after {exc.retry_after:g}s "
                f"would pass the {budget.limit:g}s wait budget, {budget.spent:g}s spent)",
                retryable=True,
            ) from None
        except _Transient as exc:
            why = (
                f"{stop.transient} {'try' if stop.transient == 1 else 'tries'}"
                if stop.transient >= self._max_attempts
                else f"the {budget.limit:g}s wait budget spent"
            )
            raise ChannelError(
                f"telegram sendMessage to chat {target.chat_id} failed ({why}): {exc}", retryable=True
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _RateLimited):
            return exc.retry_after
        return float(self._backoff(state))

    async def _post(self, target: _Target, text: str) -> None:
        body = {"chat_id": target.chat_id, "text": text, "parse_mode": "HTML"}
        try:
            response = await self._client.post(self._send_url, json=body, extensions={_TOKEN_EXTENSION: target.token})
        except httpx.TimeoutException as exc:
            raise _Transient(f"no answer within {self._timeout:g}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Transient(target.redact(f"connection failed: {type(exc).__name__}: {exc}")) from None
        _raise_for_answer(response, target)


def _raise_for_answer(response: httpx.Response, target: _Target) -> None:
    """Return on success; otherwise raise what the status means for a retry."""
    status = response.status_code
    try:
        answer: TelegramResponse | None = TelegramResponse.model_validate_json(response.content)
    except ValidationError:
        answer = None  # a proxy's HTML error page, say: the status alone decides
    if 200 <= status < 300 and answer is not None and answer.ok:
        return
    description = target.redact(answer.description if answer is not None and answer.description else f"HTTP {status}")
    parameters = answer.parameters if answer is not None else None
    if status == 429:
        retry_after = parameters.retry_after if parameters is not None else None
        # A 429 without a positive retry_after is off-spec; one second keeps us polite, and keeps the
        # wait budget (not the attempt count) the bound on how often we ask.
        raise _RateLimited(retry_after if retry_after is not None and retry_after > 0 else 1.0, description)
    if status >= 500 or 200 <= status < 300:
        raise _Transient(f"HTTP {status}: {description}")
    if status in (401, 404):
        # Telegram answers 401 to a wrong token and 404 to a malformed one.
        raise ChannelError(
            f"telegram rejected the bot token of agent {target.agent_key} ({status} {description}): "
            f"re-import secret telegram.botToken.{target.agent_key}",
            retryable=False,
        )
    if status == 400 and parameters is not None and parameters.migrate_to_chat_id is not None:
        raise _ChatMigrated(parameters.migrate_to_chat_id)
    # 400 chat not found / can't parse entities, 403 bot blocked or kicked: the same send fails again.
    raise ChannelError(
        f"telegram refused the message to chat {target.chat_id} ({status}): {description}", retryable=False
    )


class _Stop:
    """Stop after ``max_attempts`` transient failures, or when the next wait would pass the budget."""

    def __init__(self, max_attempts: int, budget: _WaitBudget) -> None:
        self._max_attempts = max_attempts
        self._budget = budget
        self.transient = 0

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient):
            self.transient += 1
            if self.transient >= self._max_attempts:
                return True
        return self._budget.spent + state.upcoming_sleep > self._budget.limit


def _log_retry(state: RetryCallState, target: _Target) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    _log.warning(
        "telegram.retrying",
        message_id=target.message_id,
        chat_id=target.chat_id,
        attempt=state.attempt_number,
        wait_seconds=round(state.upcoming_sleep, 3),
        reason=target.redact(str(exc)),
    )


# --------------------------------------------------------------------------- token hygiene


class _TokenTransport(httpx.AsyncBaseTransport):
    """Puts the bot token into the path below httpx's logging, redirects and error context."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        extensions = dict(request.extensions)
        token = extensions.pop(_TOKEN_EXTENSION, None)
        if not isinstance(token, SecretStr):
            return await self._inner.handle_async_request(request)
        path = request.url.raw_path.replace(
            f"/{_PLACEHOLDER}/".encode(), f"/bot{token.get_secret_value()}/".encode(), 1
        )
        real = httpx.Request(
            request.method,
            request.url.copy_with(raw_path=path),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        try:
            return await self._inner.handle_async_request(real)
        except httpx.RequestError as exc:
            # The inner transport's errors may carry the real request; give them the placeholder one.
            exc.request = request
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


# --------------------------------------------------------------------------- helpers


def _chat_id(raw: str) -> int | str:
    # Numeric ids go as numbers (what Telegram documents); "@channelname" stays a string.
    stripped = raw.strip()
    return int(stripped) if _NUMERIC_CHAT.fullmatch(stripped) else stripped


def _reply_key(message_id: str, chat: str, reply: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{chat}\0{reply}".encode()).hexdigest()
    return message_id, digest


class _Progress:
    """A bounded LRU of chunks delivered per (message, chat+reply digest)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._sent: OrderedDict[tuple[str, str], int] = OrderedDict()

    def sent(self, key: tuple[str, str]) -> int:
        count = self._sent.get(key, 0)
        if count:
            self._sent.move_to_end(key)
        return count

    def record(self, key: tuple[str, str], count: int) -> None:
        if self._capacity == 0:
            return
        self._sent[key] = count
        self._sent.move_to_end(key)
        while len(self._sent) > self._capacity:
            self._sent.popitem(last=False)
