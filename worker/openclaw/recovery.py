"""Where a message's turn stands after the gateway restarted under it: a pure reading of the session.

Observed on openclaw 2026.9.6 (gateway SIGKILLed mid-turn, then started again on the same state):

* If the turn's user message had reached the transcript (``idempotencyKey: "<key>:user"``), the new
  gateway resumes the turn by itself a few seconds after start-up, as a run of its own: a user entry
  ``[System] Your previous turn was interrupted by a gateway restart…`` (key ``<run>:user``), then
  that run's reply. Re-sending the message's key meanwhile is refused with
  ``SESSION_WORK_START_CHANGED``, and the refusal is cached under the key for minutes. The reply to
  adopt is the recovery run's; sending the message again would put it in the transcript twice.
* If it had not (the gateway held it as a pending input, now ``state: interrupted``), a re-send of
  the key is refused ("Pending input ownership ended"), and a fresh key delivers it once.
* A pending input of the message that is *not* interrupted is a run still going (sent under a
  fresh key by a worker that died since): it reaches the transcript shortly; wait for it.

A message's keys are its id and ``<id>~<n>`` (a fresh one after a failed run, see ``WsDelivery``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.openclaw.frames import HistoryEntry, SessionHistory

_USER_SUFFIX = ":user"
_FINAL_STOPS = frozenset({"stop", "end_turn", "length"})
# How the gateway's recovery run opens ("[System] Your previous turn was interrupted by a gateway
# restart while OpenClaw was waiting on tool/model work. …").
_RESTART_NOTICE = "[System]"


@dataclass(frozen=True)
class TurnState:
    """What the session says about one message's turn."""

    # The gateway holds the turn (its user message is in the transcript, or it was accepted and is
    # still running): never send it again, wait for its answer.
    taken: bool
    # The run answering it (one of the message's own runs, or the gateway's recovery run), if any.
    reply_run: str | None
    # That run's final reply, when the transcript already holds it.
    reply_text: str | None
    # A key this message has never been sent with.
    fresh_key: str


def key_number(key: str, message_id: str) -> int | None:
    """0 for the message id itself, n for ``<id>~<n>``; None for a key of something else."""
    if key == message_id:
        return 0
    match = re.fullmatch(re.escape(message_id) + r"~(\d+)", key)
    return int(match.group(1)) if match else None


def fresh_key(message_id: str, used: int) -> str:
    """The key after ``used`` earlier ones (``used`` 0: the id itself)."""
    return message_id if used == 0 else f"{message_id}~{used}"


def turn_state(history: SessionHistory, message_id: str, *, keys_used: int = 0) -> TurnState:
    """Read ``history`` for ``message_id``'s turn. ``keys_used``: keys this process already spent."""
    used = keys_used
    ours = -1  # index of the message's newest user entry
    for i, entry in enumerate(history.messages):
        number = _user_key_number(entry, message_id)
        if number is not None:
            ours, used = i, max(used, number + 1)
    live = False
    for pending in history.pending_inputs.items:
        number = key_number(pending.run_id or "", message_id)
        if number is not None:
            used = max(used, number + 1)
            live = live or pending.state != "interrupted"
    key = fresh_key(message_id, used)
    if ours < 0:
        return TurnState(taken=live, reply_run=None, reply_text=None, fresh_key=key)
    run, text = _answer(history.messages[ours + 1 :], message_id)
    return TurnState(taken=True, reply_run=run, reply_text=text, fresh_key=key)


def _user_key_number(entry: HistoryEntry, message_id: str) -> int | None:
    key = entry.idempotency_key or ""
    if entry.role != "user" or not key.endswith(_USER_SUFFIX):
        return None
    return key_number(key.removesuffix(_USER_SUFFIX), message_id)


def _answer(after: list[HistoryEntry], message_id: str) -> tuple[str | None, str | None]:
    """The run answering a turn, from the entries after its user message, and its final text.

    Its own run writes assistant entries under one of the message's keys. The gateway's recovery run
    first adds its restart notice as a user entry under the run's own key, then answers under that
    run id; it takes over an answer the restart cut short. Any other user entry is a later turn.
    """
    run: str | None = None
    text: str | None = None
    for entry in after:
        if entry.role == "user":
            key = (entry.idempotency_key or "").removesuffix(_USER_SUFFIX)
            if text is not None or not key or not entry.text().startswith(_RESTART_NOTICE):
                break
            run = key
        elif entry.role == "assistant" and entry.run_id:
            if run is None:
                run = entry.run_id
            if entry.run_id == run and (entry.stop_reason or "stop") in _FINAL_STOPS and entry.text():
                text = entry.text()
    return run, text
