"""TelegramChannel against a real loopback Bot API fake: chunked, escaped sends, retries, token hygiene."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from contracts.models import AgentProfile, ClaimedJob, HydrationBundle, MessagePayload
from tests.fakes.sleep import RecordingSleep
from tests.fakes.telegram_api import TelegramApiFake, run_telegram_fake
from worker.errors import ChannelError
from worker.telegram import TelegramChannel
from worker.telegram.text import TELEGRAM_MAX_TEXT

TOKEN = "123456:AAH-secret_Token-xyz"
OTHER_TOKEN = "654321:BBB-other_Token-abc"
USER = "4242"
GROUP = "-1001234567890"


def make_job(
    *,
    provider: str = "telegram",
    user: str = USER,
    metadata: dict[str, str] | None = None,
    message_id: str = "msg-1",
    agent: str = "agent-a",
) -> ClaimedJob:
    payload = MessagePayload(provider=provider, provider_user_id=user, message_text="hi", metadata=metadata)
    return ClaimedJob(
        message_id=message_id,
        conversation_id="conv-1",
        agent_key=agent,
        lease_id="lease-1",
        lease_expires_at=1,
        attempt=1,
        payload=payload,
    )


def make_bundle(job: ClaimedJob, token: str | None = TOKEN) -> HydrationBundle:
    return HydrationBundle(
        message_id=job.message_id,
        conversation_id=job.conversation_id,
        agent_key=job.agent_key,
        payload=job.payload,
        profile=AgentProfile(agent_key=job.agent_key),
        history=[],
        telegram_bot_token=SecretStr(token) if token is not None else None,
    )


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def fake() -> AsyncIterator[TelegramApiFake]:
    async with run_telegram_fake(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
async def channel(fake: TelegramApiFake, sleeps: RecordingSleep) -> AsyncIterator[TelegramChannel]:
    async with TelegramChannel(api_base=fake.url, sleep=sleeps, timeout=5) as chan:
        yield chan


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert TOKEN.replace(":", "%3A") not in text
        assert TOKEN.split(":", 1)[1] not in text


def exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def chain_texts(exc: BaseException) -> list[str]:
    """What a traceback could print: every chained exception, and the URL of any httpx request."""
    texts = []
    for link in exception_chain(exc):
        texts += [str(link), repr(link)]
        if isinstance(link, httpx.RequestError):
            texts.append(str(link.request.url))
    return texts


# --------------------------------------------------------------------------- sending over loopback


@pytest.mark.anyio
async def test_long_reply_arrives_in_order_within_the_limit(channel: TelegramChannel, fake: TelegramApiFake) -> None:
    paragraphs = [f"part {n}: " + "lorem ipsum " * 300 for n in range(4)]  # ~3600 chars each
    job = make_job()
    await channel.send(job, make_bundle(job), "\n\n".join(paragraphs))
    assert fake.texts() == [p.strip() for p in paragraphs]
    assert all(m.chat_id == USER and m.parse_mode == "HTML" for m in fake.messages)


@pytest.mark.anyio
async def test_emoji_reply_is_chunked_by_utf16_and_accepted(channel: TelegramChannel, fake: TelegramApiFake) -> None:
    reply = "😀" * 5000  # 10000 UTF-16 units, 5000 code points
    job = make_job()
    await channel.send(job, make_bundle(job), reply)
    assert [len(t) for t in fake.texts()] == [2048, 2048, 904]
    assert "".join(fake.texts()) == reply


@pytest.mark.anyio
async def test_html_is_escaped_and_shown_verbatim(channel: TelegramChannel, fake: TelegramApiFake) -> None:
    reply = "<b>not bold</b> & 1 < 2 > 0, &amp; stays literal, <script>x</script>"
    job = make_job()
    await channel.send(job, make_bundle(job), reply)
    [message] = fake.messages
    assert message.plain_text == reply
    assert "&lt;b&gt;" in message.text


@pytest.mark.anyio
async def test_the_limit_counts_after_entity_parsing(channel: TelegramChannel, fake: TelegramApiFake) -> None:
    job = make_job()
    await channel.send(job, make_bundle(job), "<" * TELEGRAM_MAX_TEXT)
    [message] = fake.messages
    assert len(message.text) == 4 * TELEGRAM_MAX_TEXT  # every "<" became "&lt;"
    assert message.plain_text == "<" * TELEGRAM_MAX_TEXT
    await channel.send(make_job(message_id="msg-2"), make_bundle(job), "&" * (TELEGRAM_MAX_TEXT + 1))
    assert fake.texts()[1:] == ["&" * TELEGRAM_MAX_TEXT, "&"]


@pytest.mark.anyio
async def test_group_messages_go_to_the_chat_not_the_user(sleeps: RecordingSleep) -> None:
    async with (
        run_telegram_fake(tokens=[TOKEN], known_chats=[GROUP]) as fake,
        TelegramChannel(api_base=fake.url, sleep=sleeps) as channel,
    ):
        job = make_job(metadata={"telegramChatId": GROUP, "telegramUserId": USER})
        await channel.send(job, make_bundle(job), "hello group")
        assert [(m.chat_id, m.plain_text) for m in fake.messages] == [(GROUP, "hello group")]


@pytest.mark.anyio
async def test_a_429_waits_retry_after_then_sends(
    channel: TelegramChannel, fake: TelegramApiFake, sleeps: RecordingSleep
) -> None:
    fake.rate_limit_next(retry_after=7)
    job = make_job()
    await channel.send(job, make_bundle(job), "hello")
    assert sleeps.calls == [7]
    assert fake.texts() == ["hello"]


@pytest.mark.anyio
async def test_a_429_mid_reply_retries_only_that_chunk(
    channel: TelegramChannel, fake: TelegramApiFake, sleeps: RecordingSleep
) -> None:
    paragraphs = [f"p{n} " + "x" * 3000 for n in range(3)]
    fake.rate_limit_next(retry_after=3, after=1)
    job = make_job()
    await channel.send(job, make_bundle(job), "\n\n".join(paragraphs))
    assert fake.texts() == paragraphs
    assert fake.calls == 4
    assert sleeps.calls == [3]


@pytest.mark.anyio
async def test_a_retry_after_beyond_the_budget_fails_retryable_without_waiting(
    fake: TelegramApiFake, sleeps: RecordingSleep
) -> None:
    fake.rate_limit_next(retry_after=600)
    async with TelegramChannel(api_base=fake.url, sleep=sleeps, max_wait=60) as channel:
        job = make_job()
        with pytest.raises(ChannelError) as caught:
            await channel.send(job, make_bundle(job), "hello")
    assert caught.value.retryable
    assert "retry after 600s" in str(caught.value)
    assert sleeps.calls == []
    assert fake.messages == []


@pytest.mark.anyio
async def test_server_errors_are_retried_with_backoff(
    channel: TelegramChannel, fake: TelegramApiFake, sleeps: RecordingSleep
) -> None:
    fake.fail_next(2, status=502, description="Bad Gateway")
    job = make_job()
    await channel.send(job, make_bundle(job), "hello")
    assert fake.texts() == ["hello"]
    assert fake.calls == 3
    assert len(sleeps.calls) == 2
    assert all(0 < s <= 8 for s in sleeps.calls)


@pytest.mark.anyio
async def test_server_errors_give_up_after_max_attempts_as_retryable(
    fake: TelegramApiFake, sleeps: RecordingSleep
) -> None:
    fake.fail_next(10, status=500)
    async with TelegramChannel(api_base=fake.url, sleep=sleeps, max_attempts=3) as channel:
        job = make_job()
        with pytest.raises(ChannelError) as caught:
            await channel.send(job, make_bundle(job), "hello")
    assert caught.value.retryable
    assert "(3 tries)" in str(caught.value)
    assert fake.calls == 3
    assert len(sleeps.calls) == 2
    assert_no_token(*chain_texts(caught.value))


@pytest.mark.anyio
async def test_a_dropped_connection_is_retried(
    channel: TelegramChannel, fake: TelegramApiFake, sleeps: RecordingSleep
) -> None:
    fake.disconnect_next()
    job = make_job()
    await channel.send(job, make_bundle(job), "hello")
    assert fake.texts() == ["hello"]
    assert len(sleeps.calls) == 1


@pytest.mark.anyio
async def test_a_timeout_is_retried_and_may_duplicate_that_chunk(fake: TelegramApiFake, sleeps: RecordingSleep) -> None:
    # The fake accepted the first message but answered too late: exactly the ambiguity documented
    # in TelegramChannel.send. The retry delivers it again (one duplicate), instead of losing it.
    fake.slow_next(seconds=2)
    async with TelegramChannel(api_base=fake.url, sleep=sleeps, timeout=0.2) as channel:
        job = make_job()
        await channel.send(job, make_bundle(job), "hello")
    assert fake.texts() == ["hello", "hello"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("known", "blocked", "said"),
    [(["1"], [], "chat not found"), (None, [USER], "blocked")],
    ids=["chat-not-found", "bot-blocked"],
)
async def test_a_chat_that_cannot_take_the_message_is_not_retried(
    sleeps: RecordingSleep, known: list[str] | None, blocked: list[str], said: str
) -> None:
    async with (
        run_telegram_fake(tokens=[TOKEN], known_chats=known, blocked_chats=blocked) as fake,
        TelegramChannel(api_base=fake.url, sleep=sleeps) as channel,
    ):
        job = make_job()
        with pytest.raises(ChannelError) as caught:
            await channel.send(job, make_bundle(job), "hello")
        assert not caught.value.retryable
        assert said in str(caught.value)
        assert fake.calls == 1
        assert sleeps.calls == []


@pytest.mark.anyio
async def test_a_wrong_token_fails_for_good_and_never_shows_the_token(
    fake: TelegramApiFake, sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "999:wrong-Token_value"
    with capture_logs() as logs:
        async with TelegramChannel(api_base=fake.url, sleep=sleeps) as channel:
            job = make_job()
            with pytest.raises(ChannelError) as caught:
                await channel.send(job, make_bundle(job, token=wrong), "hello")
    exc = caught.value
    assert not exc.retryable
    assert "bot token" in str(exc)
    assert "telegram.botToken.agent-a" in str(exc)
    for text in (str(exc), repr(exc), repr(logs), caplog.text, repr(channel)):
        assert wrong not in text
        assert "wrong-Token_value" not in text
    for text in chain_texts(exc):  # nothing chained carries the token either
        assert wrong not in text
    assert fake.request_paths == [f"/bot{wrong}/sendMessage"]  # the real token did go on the wire


@pytest.mark.anyio
async def test_the_token_stays_out_of_logs_and_errors_on_every_path(
    fake: TelegramApiFake, sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.rate_limit_next(retry_after=1)
    fake.fail_next(1, status=503)
    fake.disconnect_next()  # last, so the error chain ends in httpx's own exception and request
    with capture_logs() as logs:
        async with TelegramChannel(api_base=fake.url, sleep=sleeps, max_attempts=2) as channel:
            job = make_job()
            with pytest.raises(ChannelError) as caught:
                await channel.send(job, make_bundle(job), "hello")
    assert caught.value.retryable
    assert any(isinstance(link, httpx.RequestError) for link in exception_chain(caught.value))
    assert "HTTP Request: POST" in caplog.text  # httpx did log the request line — with the placeholder
    assert [entry["event"] for entry in logs].count("telegram.retrying") == 2
    assert_no_token(str(caught.value), repr(logs), caplog.text)
    assert_no_token(*chain_texts(caught.value))


@pytest.mark.anyio
async def test_a_missing_token_names_the_secret_to_import(channel: TelegramChannel, fake: TelegramApiFake) -> None:
    job = make_job(agent="sales-bot")
    with pytest.raises(ChannelError) as caught:
        await channel.send(job, make_bundle(job, token=None), "hello")
    assert not caught.value.retryable
    assert str(caught.value) == ("agent sales-bot has no telegram bot token: import secret telegram.botToken.sales-bot")
    assert fake.calls == 0


@pytest.mark.anyio
async def test_another_provider_is_refused_before_the_token_check(
    channel: TelegramChannel, fake: TelegramApiFake
) -> None:
    job = make_job(provider="system_push")
    with pytest.raises(ChannelError) as caught:
        await channel.send(job, make_bundle(job, token=None), "hello")
    assert not caught.value.retryable
    assert "system_push" in str(caught.value)
    assert fake.calls == 0


@pytest.mark.anyio
async def test_a_redelivered_reply_resumes_after_the_chunks_already_sent(
    fake: TelegramApiFake, sleeps: RecordingSleep
) -> None:
    reply = "\n\n".join(f"chunk {n} " + "x" * 4000 for n in range(3))
    fake.fail_next(1, status=500, after=1)  # chunk 1 lands, chunk 2 fails
    async with TelegramChannel(api_base=fake.url, sleep=sleeps, max_attempts=1) as channel:
        job = make_job()
        with pytest.raises(ChannelError) as caught:
            await channel.send(job, make_bundle(job), reply)
        assert caught.value.retryable
        assert "chunk 2 of 3; 1 already delivered" in str(caught.value)
        await channel.send(job, make_bundle(job), reply)  # the queue's redelivery
        assert [t.split()[:2] for t in fake.texts()] == [["chunk", "0"], ["chunk", "1"], ["chunk", "2"]]
        await channel.send(job, make_bundle(job), reply)  # sent in full already: nothing again
        assert len(fake.messages) == 3
        await channel.send(job, make_bundle(job), reply + "!")  # a different reply starts over
        assert len(fake.messages) == 6


@pytest.mark.anyio
async def test_a_migrated_group_gets_the_reply_at_its_new_id(sleeps: RecordingSleep) -> None:
    async with (
        run_telegram_fake(tokens=[TOKEN], migrated_chats={"-100": -1009}) as fake,
        TelegramChannel(api_base=fake.url, sleep=sleeps) as channel,
    ):
        job = make_job(metadata={"telegramChatId": "-100"})
        await channel.send(job, make_bundle(job), "a" * 4096 + " b")
        assert [(m.chat_id, m.plain_text[:1]) for m in fake.messages] == [("-1009", "a"), ("-1009", "b")]
        assert fake.calls == 3  # one refused with the new id, then one per chunk at the new id


@pytest.mark.anyio
async def test_an_empty_reply_sends_nothing(channel: TelegramChannel, fake: TelegramApiFake) -> None:
    job = make_job()
    await channel.send(job, make_bundle(job), "  \n ")
    assert fake.calls == 0


@pytest.mark.anyio
async def test_two_bots_two_tokens(sleeps: RecordingSleep) -> None:
    async with (
        run_telegram_fake(tokens=[TOKEN, OTHER_TOKEN]) as fake,
        TelegramChannel(api_base=fake.url, sleep=sleeps) as channel,
    ):
        first, second = make_job(agent="a"), make_job(agent="b", message_id="msg-2")
        await channel.send(first, make_bundle(first, TOKEN), "from a")
        await channel.send(second, make_bundle(second, OTHER_TOKEN), "from b")
        assert [(m.token, m.plain_text) for m in fake.messages] == [
            (TOKEN, "from a"),
            (OTHER_TOKEN, "from b"),
        ]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="api_base"):
        TelegramChannel(api_base="ftp://example.org")
    with pytest.raises(ValueError, match="max_attempts"):
        TelegramChannel(max_attempts=0)


# --------------------------------------------------------------------------- the fake keeps us honest


@pytest.mark.anyio
async def test_the_fake_rejects_what_telegram_rejects(fake: TelegramApiFake) -> None:
    async with httpx.AsyncClient(base_url=fake.url, trust_env=False) as client:

        async def send(text: str, token: str = TOKEN) -> tuple[int, str]:
            body = {"chat_id": USER, "text": text, "parse_mode": "HTML"}
            response = await client.post(f"/bot{token}/sendMessage", json=body)
            return response.status_code, response.json()["description"] if response.status_code != 200 else ""

        assert await send("<b>bold</b> &amp; &lt;tag&gt; &#128512; &quot;") == (200, "")
        status, description = await send("1 < 2")
        assert (status, description.startswith("Bad Request: can't parse entities")) == (400, True)
        status, description = await send("<script>x</script>")
        assert (status, 'Unsupported start tag "script"' in description) == (400, True)
        status, description = await send("fish & chips")
        assert (status, description.startswith("Bad Request: can't parse entities")) == (400, True)
        assert (await send("<b>unclosed"))[0] == 400
        assert await send("😀" * 2049) == (400, "Bad Request: message is too long")
        assert await send("&lt;" * 4096) == (200, "")  # the limit counts the parsed text
        assert await send("   ") == (400, "Bad Request: message text is empty")
        assert await send("hi", token="1:nope") == (401, "Unauthorized")
        fake.rate_limit_next(retry_after=5)
        response = await client.post(f"/bot{TOKEN}/sendMessage", json={"chat_id": USER, "text": "x"})
        assert response.status_code == 429
        assert response.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 5",
            "parameters": {"retry_after": 5},
        }
    assert fake.texts() == ['bold & <tag> 😀 "', "<" * 4096]
