"""Errors of the managed gateway runtime (install, start, stop). Delivery errors live in worker.errors."""

from __future__ import annotations

from contracts.errors import FactoryError


class GatewayError(FactoryError):
    """The local OpenClaw gateway could not be installed, configured or started."""


class GatewayInstallError(GatewayError):
    pass


class GatewayStartError(GatewayError):
    pass
