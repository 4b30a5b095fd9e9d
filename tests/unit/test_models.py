"""Wire models: camelCase on the wire, optional keys omitted, bad input named by field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from contracts.errors import InvalidInput
from contracts.models import (
    AgentProfile,
    EnqueueRequest,
    HydrationBundle,
    MessagePayload,
    to_wire,
)


def _enqueue(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "conversationId": "telegram:1",
        "agentKey": "default",
        "payload": {"provider": "telegram", "providerUserId": "42", "messageText": "hello"},
    }
    body.update(overrides)
    return body


def _problem(body: dict[str, Any]) -> InvalidInput:
    with pytest.raises(ValidationError) as caught:
        EnqueueRequest.model_validate(body)
    return InvalidInput.from_validation(caught.value)


def test_wire_is_camel_case_and_omits_absent_keys() -> None:
    request = EnqueueRequest.model_validate(_enqueue())
    wire = to_wire(request)
    assert wire == {
        "conversationId": "telegram:1",
        "agentKey": "default",
        "payload": {"provider": "telegram", "providerUserId": "42", "messageText": "hello"},
        "priority": 50,
        "maxAttempts": 5,
    }
    assert EnqueueRequest.model_validate(wire) == request


def test_python_names_work_too() -> None:
    request = EnqueueRequest(
        conversation_id="c",
        agent_key="a",
        payload=MessagePayload(provider="app", provider_user_id="u", message_text="t"),
    )
    assert request.conversation_id == "c"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (_enqueue(conversationId=""), "conversationId", "must not be empty"),
        (_enqueue(conversationId="   "), "conversationId", "must not be empty"),
        (_enqueue(agentKey=""), "agentKey", "must not be empty"),
        (
            _enqueue(payload={"provider": "telegram", "providerUserId": " ", "messageText": "x"}),
            "payload.providerUserId",
            "must not be empty",
        ),
        (_enqueue(priority=101), "priority", "less than or equal to 100"),
        (_enqueue(priority=-1), "priority", "greater than or equal to 0"),
        (_enqueue(maxAttempts=0), "maxAttempts", "greater than or equal to 1"),
        (
            _enqueue(payload={"provider": "app", "providerUserId": "u", "messageText": "x" * (64 * 1024 + 1)}),
            "payload.messageText",
            "64 KiB",
        ),
        (_enqueue(colour="blue"), "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, Any], field: str, words: str) -> None:
    problem = _problem(body)
    assert problem.field == field
    assert words in problem.problem
    assert "\n" not in str(problem)


def test_exactly_64_kib_is_accepted_and_counted_in_bytes() -> None:
    MessagePayload(provider="app", provider_user_id="u", message_text="x" * 64 * 1024)
    with pytest.raises(ValidationError):
        MessagePayload(provider="app", provider_user_id="u", message_text="é" * (32 * 1024 + 1))


def test_models_are_frozen() -> None:
    request = EnqueueRequest.model_validate(_enqueue())
    with pytest.raises(ValidationError):
        request.priority = 3  # type: ignore[misc]


def test_secrets_are_hidden_in_reprs_but_present_on_the_wire() -> None:
    bundle = HydrationBundle(
        message_id="m",
        conversation_id="c",
        agent_key="a",
        payload=MessagePayload(provider="telegram", provider_user_id="u", message_text="t"),
        profile=AgentProfile(agent_key="a"),
        history=[],
        telegram_bot_token=SecretStr("123:secret"),
        secrets={"telegram.botToken.a": SecretStr("123:secret")},
    )
    assert "123:secret" not in repr(bundle) and "123:secret" not in str(bundle)
    wire = to_wire(bundle)
    assert wire["telegramBotToken"] == "123:secret"
    assert wire["secrets"] == {"telegram.botToken.a": "123:secret"}
    assert HydrationBundle.model_validate(wire).telegram_bot_token == SecretStr("123:secret")


# Ids are printable: no control characters (Cc), no lone surrogates (Cs).
_ID_CHARS = st.characters(exclude_categories=["Cc", "Cs"])


@given(
    conversation=st.text(_ID_CHARS, min_size=1, max_size=40).filter(str.strip),
    text=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200).filter(str.strip),
    priority=st.integers(0, 100),
    attempts=st.integers(1, 50),
    external=st.none() | st.text(_ID_CHARS, min_size=1, max_size=20).filter(str.strip),
)
def test_enqueue_round_trips_through_the_wire(
    conversation: str, text: str, priority: int, attempts: int, external: str | None
) -> None:
    request = EnqueueRequest(
        conversation_id=conversation,
        agent_key="default",
        payload=MessagePayload(provider="app", provider_user_id="u", message_text=text, external_message_id=external),
        priority=priority,
        max_attempts=attempts,
    )
    assert EnqueueRequest.model_validate(to_wire(request)) == request
    assert EnqueueRequest.model_validate_json(request.model_dump_json(by_alias=True)) == request
