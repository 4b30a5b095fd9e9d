"""Reading a session after a gateway restart: the transcript shapes are the ones openclaw 2026.9.6
wrote when its gateway was SIGKILLed mid-turn and started again (trimmed to the fields we read)."""

from __future__ import annotations

from typing import Any

from worker.openclaw.frames import SessionHistory
from worker.openclaw.recovery import fresh_key, key_number, turn_state

MESSAGE = "msg_0123abcd"
NOTICE = (
    "[System] Your previous turn was interrupted by a gateway restart while OpenClaw was waiting on tool/model "
    "work. The restart did not cancel the user's task."
)


def user(text: str, key: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "idempotencyKey": key, "__openclaw": {"idempotencyKey": key}}


def assistant(text: str, run: str, stop: str = "stop") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "stopReason": stop,
        "__openclaw": {"runId": run},
    }


def history(*messages: dict[str, Any], pending: list[dict[str, Any]] | None = None) -> SessionHistory:
    return SessionHistory.model_validate(
        {"sessionKey": "agent:main:conv-c", "messages": list(messages), "pendingInputs": {"items": pending or []}}
    )


EARLIER = (user("first turn", "msg_earlier:user"), assistant("STUB-REPLY: first turn", "msg_earlier"))


def test_keys_of_a_message_are_its_id_then_numbered() -> None:
    assert [key_number(k, MESSAGE) for k in (MESSAGE, f"{MESSAGE}~3", "msg_other", f"{MESSAGE}~x")] == [
        0,
        3,
        None,
        None,
    ]
    assert (fresh_key(MESSAGE, 0), fresh_key(MESSAGE, 2)) == (MESSAGE, f"{MESSAGE}~2")


def test_a_turn_the_gateway_is_about_to_resume_is_in_the_transcript_and_unanswered() -> None:
    state = turn_state(history(*EARLIER, user("SLOW:4000 crash", f"{MESSAGE}:user")), MESSAGE)
    assert (state.taken, state.reply_run, state.reply_text) == (True, None, None)
    assert state.fresh_key == f"{MESSAGE}~1"


def test_the_recovery_run_is_adopted_while_it_runs_and_once_it_answered() -> None:
    turn = user("SLOW:4000 crash", f"{MESSAGE}:user")
    notice = user(NOTICE, "2d7b16ac-7d7d-4fa4-bcac-5e0020e83423:user")
    running = turn_state(history(*EARLIER, turn, notice), MESSAGE)
    assert (running.reply_run, running.reply_text) == ("2d7b16ac-7d7d-4fa4-bcac-5e0020e83423", None)
    done = turn_state(
        history(
            *EARLIER, turn, notice, assistant("STUB-REPLY: SLOW:4000 crash", "2d7b16ac-7d7d-4fa4-bcac-5e0020e83423")
        ),
        MESSAGE,
    )
    assert (done.reply_run, done.reply_text) == ("2d7b16ac-7d7d-4fa4-bcac-5e0020e83423", "STUB-REPLY: SLOW:4000 crash")


def test_a_run_cut_short_mid_tool_is_taken_over_by_the_recovery_run() -> None:
    state = turn_state(
        history(
            user("use a tool", f"{MESSAGE}:user"),
            assistant("", MESSAGE, stop="toolUse"),
            user(NOTICE, "9f0e:user"),
            assistant("done after all", "9f0e"),
        ),
        MESSAGE,
    )
    assert (state.reply_run, state.reply_text) == ("9f0e", "done after all")


def test_our_own_finished_run_is_read_back_from_the_transcript() -> None:
    state = turn_state(history(user("hi", f"{MESSAGE}~1:user"), assistant("hello", f"{MESSAGE}~1")), MESSAGE)
    assert (state.reply_run, state.reply_text, state.fresh_key) == (f"{MESSAGE}~1", "hello", f"{MESSAGE}~2")


def test_a_later_turn_is_never_taken_for_the_answer() -> None:
    later = turn_state(
        history(
            user("mine", f"{MESSAGE}:user"), user("someone else's", "msg_next:user"), assistant("theirs", "msg_next")
        ),
        MESSAGE,
    )
    assert (later.taken, later.reply_run, later.reply_text) == (True, None, None)


def test_a_turn_held_as_an_interrupted_pending_input_is_resent_under_a_key_never_used() -> None:
    pending = [{"id": "f02d", "state": "interrupted", "runId": f"{MESSAGE}~1"}]
    state = turn_state(history(*EARLIER, pending=pending), MESSAGE, keys_used=1)
    assert (state.taken, state.reply_run) == (False, None)
    assert state.fresh_key == f"{MESSAGE}~2"
    assert turn_state(history(), MESSAGE).fresh_key == MESSAGE


def test_a_run_still_going_under_another_key_is_waited_for_not_sent_again() -> None:
    # A worker sent it under ~1 and died; the gateway lived on and runs it: not in the transcript yet.
    pending = [
        {"id": "a1", "state": "interrupted", "runId": MESSAGE},
        {"id": "b2", "state": "running", "runId": f"{MESSAGE}~1"},
    ]
    state = turn_state(history(*EARLIER, pending=pending), MESSAGE)
    assert (state.taken, state.reply_run, state.fresh_key) == (True, None, f"{MESSAGE}~2")
