"""Autoscaler errors.

The tree::

    FactoryError (contracts.errors)
    └── AutoscalerError
        ├── ProviderError         a platform API call failed; carries provider, operation, status
        │                         ``retryable``: a later try may succeed (429, 5xx, timeouts)
        │                         ``ambiguous``: a create may have happened anyway: look it up
        ├── ProviderConfigError   a required setting is missing or invalid (names the setting)
        ├── ReconcileBusy         another reconcile holds the lock
        └── ReconcileLockLost     the lock was taken over while a tick ran (its rest was not applied)
"""

from __future__ import annotations

from contracts.errors import FactoryError


class AutoscalerError(FactoryError):
    pass


class ProviderError(AutoscalerError):
    def __init__(
        self,
        provider: str,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        ambiguous: bool = False,
        retry_after_s: float | None = None,
        request_id: str | None = None,
    ) -> None:
        where = f"{provider} {operation}" + (f" [{status}]" if status is not None else "")
        super().__init__(f"{where}: {message}")
        self.provider = provider
        self.operation = operation
        self.status = status
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.retry_after_s = retry_after_s
        self.request_id = request_id


class ProviderConfigError(AutoscalerError):
    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class ReconcileBusy(AutoscalerError):
    retryable = True


class ReconcileLockLost(AutoscalerError):
    retryable = True
