"""OS failures as the autoscaler's ``ProviderError``: retryable when the kernel calls them transient."""

from __future__ import annotations

import errno

from autoscaler.errors import ProviderError
from autoscaler.providers.local.config import PROVIDER


def io_error(operation: str, what: str, exc: OSError) -> ProviderError:
    transient = exc.errno in (errno.EAGAIN, errno.ENOMEM, errno.EINTR, errno.ENOSPC)
    return ProviderError(PROVIDER, operation, f"{what}: {exc.strerror or exc}", retryable=transient)
