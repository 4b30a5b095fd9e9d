"""The stub model: it must find the user's words in what OpenClaw really sends, and log each call."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.stub_llm import (
    StubLLMProcess,
    StubLLMServer,
    answer_for,
    context_seen,
    offered_tools,
    tool_result,
    user_text,
)

# The shape OpenClaw 2026.9.6 sends on a session's first turn (system prompt abridged).
OPENCLAW_FIRST_TURN = [
    {"role": "system", "content": "You are a personal assistant running inside OpenClaw. ..."},
    {
        "role": "user",
        "content": "[Fri 2026-11-20 23:56 UTC] what is the plan?\n\nRuntime: agent=main | session=agent:main:x",
    },
    {
        "role": "user",
        "content": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nSystem: ...\n<<<END_OPENCLAW_INTERNAL_CONTEXT>>>",
    },
]


def test_user_text_skips_internal_context_timestamp_and_runtime() -> None:
    assert user_text(OPENCLAW_FIRST_TURN) == "what is the plan?"


def test_user_text_reads_content_parts_and_the_newest_turn() -> None:
    messages = [
        {"role": "user", "content": "old"},
        {"role": "assistant", "content": "STUB-REPLY: old"},
        {"role": "user", "content": [{"type": "text", "text": "[Sat 2026-11-21 00:01 UTC] new"}]},
    ]
    assert user_text(messages) == "new"


def test_a_turn_resumed_after_a_gateway_restart_answers_the_message_it_quotes() -> None:
    resumed = (
        "[Mon 2026-11-30 19:21 UTC] [Queued user message from a previous active turn; preserved as context only. "
        "Continue with the active prompt below.]\nSLOW:15000 crash me\n\n[System] Your previous turn was "
        "interrupted by a gateway restart while OpenClaw was waiting on tool/model work."
    )
    assert user_text([{"role": "user", "content": resumed}]) == "SLOW:15000 crash me"


def test_answers_are_deterministic_with_optional_delay_and_failure() -> None:
    assert answer_for("hi").text == "STUB-REPLY: hi"
    assert answer_for("hi").delay_s == 0
    assert answer_for("SLOW:1500 hi").delay_s == 1.5
    assert answer_for("FAIL:400 hi").fail_status == 400
    assert answer_for("Read the heartbeat scratch. If nothing needs attention, reply NO_REPLY.").text == "NO_REPLY"


def test_the_context_probe_reports_earlier_turns_and_markers_but_not_the_question() -> None:
    messages = [
        {"role": "system", "content": "Workspace SOUL.md: you are MARK-SOUL. Skills: echo (MARK-SKILL)"},
        {"role": "user", "content": "[Sat 2026-11-21 00:01 UTC] first MARK-EARLIER"},
        {"role": "assistant", "content": "STUB-REPLY: first"},
        {"role": "user", "content": "CONTEXT? MARK-ASKED"},
        {"role": "user", "content": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> MARK-INTERNAL"},
    ]
    seen = context_seen(messages)
    assert (seen.earlier_user_turns, seen.markers) == (1, ("MARK-EARLIER", "MARK-INTERNAL", "MARK-SKILL", "MARK-SOUL"))
    answer = answer_for(user_text(messages), seen)
    assert answer.text == "STUB-CONTEXT: earlier_user_turns=1 markers=MARK-EARLIER,MARK-INTERNAL,MARK-SKILL,MARK-SOUL"


def test_a_tool_marker_calls_an_offered_tool_and_reports_its_result() -> None:
    body = {"tools": [{"type": "function", "function": {"name": "exec"}}, {"type": "function", "function": {}}]}
    assert offered_tools(body) == ["exec"]
    call = answer_for('TOOL:exec {"command": "env"}', tools=offered_tools(body))
    assert call.tool_call is not None
    assert (call.tool_call.name, json.loads(call.tool_call.arguments)) == ("exec", {"command": "env"})
    refused = answer_for("TOOL:secret_tool {}", tools=["exec", "read"])
    assert (refused.tool_call, refused.text) == (None, "STUB-NO-TOOL: secret_tool (offered: exec,read)")
    asked = [{"role": "user", "content": "TOOL:exec {}"}, {"role": "assistant", "content": None}]
    assert tool_result(asked) is None
    answered = [
        *asked,
        {"role": "tool", "content": "HOME=/x"},
        {"role": "user", "content": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT"},
    ]
    assert tool_result(answered) == "HOME=/x"
    assert tool_result([*answered, {"role": "user", "content": "next question"}]) is None


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubLLMServer]:
    server = StubLLMServer(log_path=tmp_path / "calls.jsonl")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_json_completion_and_call_log(stub: StubLLMServer, tmp_path: Path) -> None:
    body = {"model": "stub-model", "messages": OPENCLAW_FIRST_TURN}
    with httpx.Client(trust_env=False) as client:
        response = client.post(f"http://127.0.0.1:{stub.port}/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "STUB-REPLY: what is the plan?"
    [logged] = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert stat.S_IMODE((tmp_path / "calls.jsonl").stat().st_mode) == 0o600  # it holds conversation text
    assert logged["seq"] == 1
    assert logged["user_text"] == "what is the plan?"
    assert [t["role"] for t in logged["turns"]] == ["user", "user"]  # no system prompt in the log


def test_streamed_completion_ends_with_usage_and_done(stub: StubLLMServer) -> None:
    body = {
        "model": "stub-model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "stream me"}],
    }
    with httpx.Client(trust_env=False) as client:
        response = client.post(f"http://127.0.0.1:{stub.port}/v1/chat/completions", json=body)
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "STUB-REPLY: stream me"
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert response.headers["content-type"] == "text/event-stream"


def test_model_failure_marker_returns_that_status(stub: StubLLMServer) -> None:
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "FAIL:503 now"}]}
    with httpx.Client(trust_env=False) as client:
        response = client.post(f"http://127.0.0.1:{stub.port}/v1/chat/completions", json=body)
    assert response.status_code == 503


def test_runs_as_a_module_and_reports_its_port(tmp_path: Path) -> None:
    with (
        StubLLMProcess.start(tmp_path / "calls.jsonl", output=tmp_path / "stub.out") as process,
        httpx.Client(trust_env=False) as client,
    ):
        assert client.get(f"{process.base_url}/models").json()["data"][0]["id"] == "stub-model"
