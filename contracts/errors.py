"""Typed errors shared by every store binding.

The tree::

    FactoryError                      root; ``retryable`` says whether trying again can help,
                                      ``fault`` whose fault it is (below)
    ├── InvalidInput                  a field is wrong; names the field and the fix
    ├── AgentUnavailable              enqueue to an unknown or disabled agent profile
    ├── ConversationConflict          a conversation already belongs to another agent
    ├── NotFound                      an operator action names something that does not exist
    └── StoreError                    the store could not answer
        ├── StoreUnavailable          connection refused, timeout, 429/5xx (retryable)
        ├── StoreUnusable             no store there, not ours, too new, or cannot be created
        │                             (not retryable: waiting does not fix it)
        └── StoreFunctionError        the store ran the function and it failed (not retryable)

Whose fault a failure is travels on the error too (``fault``): a ``"message"`` fault is the
message's own (bad input, an agent that rejects it) and spends one of its attempts; an
``"infrastructure"`` fault is the machinery's (store, gateway or model unreachable or refusing us)
and never does: the worker gives the message back and waits for the fault to clear. ``"unknown"``
is for failures either could cause (a failed agent run, a timeout); the worker asks a probe.

Messages never carry secrets: callers pass identifiers, never tokens.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

Fault = Literal["message", "infrastructure", "unknown"]


class FactoryError(Exception):
    """Root of our errors. ``retryable`` is part of the contract, not a guess at the call site."""

    retryable: bool = False
    fault: Fault = "message"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(FactoryError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    @classmethod
    def from_validation(cls, exc: ValidationError) -> InvalidInput:
        """Collapse pydantic's report into one line that names the first bad field."""
        first = exc.errors()[0]
        field = ".".join(_wire_name(part) for part in first["loc"]) or "input"
        problem = str(first["msg"]).removeprefix("Value error, ")
        extra = len(exc.errors()) - 1
        if extra:
            problem += f" (and {extra} more problem{'s' if extra > 1 else ''})"
        return cls(field, problem)


def _wire_name(part: object) -> str:
    # Models accept Python names too; errors always speak the wire's camelCase.
    text = str(part)
    return to_camel(text) if text.islower() and "_" in text else text


class AgentUnavailable(FactoryError):
    def __init__(self, agent_key: str, reason: str) -> None:
        super().__init__(
            f"agentKey: agent profile {agent_key!r} is {reason}; create or enable it first, or use an existing agent"
        )
        self.agent_key = agent_key


class ConversationConflict(FactoryError):
    def __init__(self, conversation_id: str, owner: str, requested: str) -> None:
        super().__init__(
            f"conversationId: {conversation_id!r} belongs to agent {owner!r}, not {requested!r}; "
            "use a new conversation id for another agent"
        )
        self.conversation_id = conversation_id


class NotFound(FactoryError):
    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what = what
        self.key = key


class StoreError(FactoryError):
    def __init__(self, store: str, message: str) -> None:
        super().__init__(f"store {store}: {message}")
        self.store = store


class StoreUnavailable(StoreError):
    retryable = True
    fault: Fault = "infrastructure"


class StoreUnusable(StoreError):
    """The store named cannot be used: missing (for a command that only reads), not a factory
    store, written by a newer release, or impossible to create where it is."""


class StoreFunctionError(StoreError):
    def __init__(self, store: str, function: str, message: str) -> None:
        super().__init__(store, f"function {function} failed: {message}")
        self.function = function


def first_factory_error(exc: BaseException) -> FactoryError | None:
    """Our error, if that is what ``exc`` is or (in nested exception groups) holds; else None.

    A task group wraps what ended it in an exception group; the one line a user sees names the
    first of our errors inside, not the group."""
    if isinstance(exc, FactoryError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_factory_error(inner)
            if found is not None:
                return found
    return None
