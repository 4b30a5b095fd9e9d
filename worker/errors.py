"""Errors raised while running a job, each saying whether another delivery can help.

The tree::

    FactoryError (contracts.errors)
    └── JobError                      a job failed; ``retryable`` decides retry vs dead letter
        ├── DeliveryError             the OpenClaw gateway did not give us a reply
        │   ├── DeliveryTimeout       no reply within the timeout                 (retryable)
        │   ├── DeliveryUnavailable   connection refused / reset / DNS            (retryable)
        │   ├── DeliveryServerError   5xx, or a WebSocket error frame marked retryable (retryable)
        │   ├── DeliveryAuthError     401/403, bad gateway token                  (not retryable)
        │   ├── DeliveryRejected      other 4xx: the request itself is wrong      (not retryable)
        │   └── DeliveryProtocolError the gateway answered with something we cannot read (retryable)
        ├── ChannelError              the reply could not be sent on (Telegram…); ``retryable`` per cause
        └── InvalidJob                the payload cannot be processed as given     (not retryable)

Messages carry ids, URLs and status codes, never tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from contracts.errors import FactoryError


class JobError(FactoryError):
    pass


class DeliveryError(JobError):
    retryable = True

    def masked(self, redact: Callable[[str], str]) -> Self:
        """This error with ``redact`` applied to its message: gateways may echo a token in a body."""
        clean = redact(str(self))
        return self if clean == str(self) else type(self)(clean)


class DeliveryTimeout(DeliveryError):
    retryable = True


class DeliveryUnavailable(DeliveryError):
    retryable = True


class DeliveryServerError(DeliveryError):
    retryable = True


class DeliveryAuthError(DeliveryError):
    retryable = False


class DeliveryRejected(DeliveryError):
    retryable = False


class DeliveryProtocolError(DeliveryError):
    retryable = True


class ChannelError(JobError):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class InvalidJob(JobError):
    retryable = False
