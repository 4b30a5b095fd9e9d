"""Loopback fakes of the platform APIs we call: real HTTP servers with documented behaviour and
fault injection (``FakeFlyApi``, ``FakeDigitalOceanApi``)."""

from tests.fakes._server import Fault, FaultyServer
from tests.fakes.do_api import FakeDigitalOceanApi
from tests.fakes.fly_api import FakeFlyApi

__all__ = ["FakeDigitalOceanApi", "FakeFlyApi", "Fault", "FaultyServer"]
