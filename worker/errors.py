"""Errors raised while running a job, each saying whether another delivery can help and whose fault
the failure is (``fault``, see :mod:`contracts.errors`).

The tree::

    FactoryError (contracts.errors)
    └── JobError                      a job failed; ``retryable`` decides retry vs dead letter
        ├── DeliveryError             the OpenClaw gateway did not give us a reply
        │   ├── DeliveryTimeout       no reply within the timeout                 (retryable, unknown)
        │   ├── DeliveryUnavailable   connection refused / reset / lost, DNS      (retryable, infrastructure)
        │   ├── DeliveryInterrupted   the gateway lost the turn in a restart      (retryable, infrastructure)
        │   ├── DeliveryServerError   5xx, or a failed run (model or message)     (retryable, unknown)
        │   ├── DeliveryAuthError     401/403, bad gateway token                  (not retryable, infrastructure)
        │   ├── DeliveryConfigError   a gateway URL or protocol that cannot work  (not retryable, infrastructure)
        │   ├── DeliveryRejected      other 4xx: the request itself is wrong      (not retryable, message)
        │   ├── DeliveryProtocolError the gateway answered with something we cannot read (retryable, unknown)
        │   └── ModelUnavailable      an unknown fault a probe turn confirmed: the agent cannot run any turn
        │                                                                         (retryable, infrastructure)
        ├── ChannelError              the reply could not be sent on (Telegram…); ``retryable`` per cause
        └── InvalidJob                the payload cannot be processed as given     (not retryable, message)

``retryable`` also tells a start-up check what waiting can fix: a refused token or an impossible URL
is refused at once, before anything is claimed; an unreachable gateway is waited for. Once running,
every infrastructure fault is waited out (a token can be fixed on the gateway's side).

Messages carry ids, URLs and status codes, never tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from contracts.errors import FactoryError, Fault


class JobError(FactoryError):
    pass


class DeliveryError(JobError):
    retryable = True
    fault: Fault = "unknown"

    def masked(self, redact: Callable[[str], str]) -> Self:
        """This error with ``redact`` applied to its message: gateways may echo a token in a body."""
        clean = redact(str(self))
        return self if clean == str(self) else self.copy(clean)

    def copy(self, message: str | None = None) -> Self:
        """A fresh error of the same kind and fault (raising one instance from two tasks tangles tracebacks)."""
        fresh = type(self)(str(self) if message is None else message)
        fresh.fault = self.fault
        return fresh

    def judged(self, fault: Fault) -> Self:
        """This error with its fault decided (by a probe) instead of ``unknown``."""
        fresh = self.copy()
        fresh.fault = fault
        return fresh


class DeliveryTimeout(DeliveryError):
    retryable = True


class DeliveryUnavailable(DeliveryError):
    retryable = True
    fault: Fault = "infrastructure"


class DeliveryInterrupted(DeliveryError):
    """The gateway restarted under this turn (``SESSION_WORK_START_CHANGED``, "pending input ownership
    ended", …). ``WsDelivery`` recovers from it by reading the session; it escapes only when the
    recovery itself could not finish, and the message is then given back, not failed."""

    retryable = True
    fault: Fault = "infrastructure"


class DeliveryServerError(DeliveryError):
    retryable = True


class DeliveryAuthError(DeliveryError):
    retryable = False
    fault: Fault = "infrastructure"


class DeliveryConfigError(DeliveryError):
    retryable = False
    fault: Fault = "infrastructure"


class DeliveryRejected(DeliveryError):
    retryable = False
    fault: Fault = "message"


class DeliveryProtocolError(DeliveryError):
    retryable = True


class ModelUnavailable(DeliveryError):
    """A turn failed and so did a probe turn of the same agent: the agent (its model, or the gateway
    behind it) cannot run any turn now. ``agent_id`` is the agent to probe until it can."""

    retryable = True
    fault: Fault = "infrastructure"

    def __init__(self, message: str, agent_id: str = "main") -> None:
        super().__init__(message)
        self.agent_id = agent_id

    def copy(self, message: str | None = None) -> Self:
        fresh = super().copy(message)
        fresh.agent_id = self.agent_id
        return fresh


class ChannelError(JobError):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class InvalidJob(JobError):
    retryable = False
