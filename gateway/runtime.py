"""Run a real OpenClaw gateway on loopback: config, start, readiness, warm-up, stop.

Used by the gateway test fixture and by ``factory run``. The blocking methods (``start``,
``stop``, ``warm_up``) suit sync pytest fixtures; ``astart``/``astop``/``awarm_up`` are the async
twins for an anyio program, cancellable while waiting for readiness.

Everything the gateway writes stays in ``state_dir``: config, state, workspaces, the JSON log,
and its console output (``logs/gateway.out``), which contains reply text, so it never goes to our
stdout. Startup takes ~8-17 s on a 2-vCPU machine; the first turn per agent another few seconds
(lazy initialisation), hence ``warm_up``.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import anyio
import anyio.to_thread
import httpx
import structlog
from pydantic import SecretStr

from contracts.redact import mask
from gateway.config import COMPILE_CACHE_IN_PLACE, AgentSpec, ModelChoice, gateway_config, secret_env
from gateway.errors import GatewayStartError
from gateway.install import OpenClawInstall
from gateway.process import ManagedProcess

_log = structlog.get_logger(__name__)

# Gateway exit status for a configuration-class startup failure (EX_CONFIG), per its embedding docs.
_EXIT_CONFIG = 78
_POLL_S = 0.25
WARM_UP_SESSION = "factory-warmup"  # not "conv-…": never one of a conversation's sessions


class GatewayRuntime:
    """One gateway process serving ``agents`` with ``model``, on a loopback port.

    ``token`` defaults to a fresh random one. ``extra_env`` is added to the gateway's environment,
    which otherwise holds only what the gateway needs (nothing inherited from ours: no stray
    provider keys or proxy settings). ``heap_mb`` caps V8's old space; without a cap the gateway's
    memory keeps growing under load (lazy GC), with 512 MB it plateaus near 1.3 GB RSS.
    ``allow_host_exec`` opts into OpenClaw's host exec tools (off: see ``gateway.config``).
    """

    def __init__(
        self,
        install: OpenClawInstall,
        state_dir: Path,
        *,
        model: ModelChoice,
        agents: Sequence[str | AgentSpec] = ("main",),
        token: SecretStr | None = None,
        port: int | None = None,
        ready_timeout_s: float = 180.0,
        stop_grace_s: float = 15.0,
        heap_mb: int = 512,
        heartbeat_every: str = "0m",
        extra_env: Mapping[str, str] | None = None,
        allow_host_exec: bool = False,
    ) -> None:
        self.install = install
        self.state_dir = state_dir.resolve()
        self.model = model
        self.agents = tuple(agent if isinstance(agent, AgentSpec) else AgentSpec(id=agent) for agent in agents)
        self.token = token or SecretStr(secrets.token_urlsafe(32))
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.heap_mb = heap_mb
        self.heartbeat_every = heartbeat_every
        self.extra_env = dict(extra_env or {})
        self.allow_host_exec = allow_host_exec
        self._process: ManagedProcess | None = None

    # -- where things are -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: HttpDelivery's base URL."""
        return f"http://127.0.0.1:{self._bound_port()}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>/``: WsDelivery's URL (the gateway multiplexes WS and HTTP)."""
        return f"ws://127.0.0.1:{self._bound_port()}/"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "openclaw.json"

    @property
    def output_path(self) -> Path:
        return self.state_dir / "logs" / "gateway.out"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.exit_code() is None

    # -- sync lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Write the config, spawn the gateway, and block until ``/readyz`` answers 200."""
        self._spawn()
        try:
            deadline = time.monotonic() + self.ready_timeout_s
            with httpx.Client(trust_env=False, timeout=2.0) as client:
                while not self._probe_ready(client):
                    if time.monotonic() > deadline:
                        raise self._start_error(f"not ready within {self.ready_timeout_s:g} s")
                    time.sleep(_POLL_S)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after ``stop_grace_s``); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            code = process.stop(self.stop_grace_s)
            _log.info("openclaw.gateway.stopped", pid=process.pid, exit_code=code)

    def warm_up(self, agent_ids: Sequence[str] | None = None, timeout_s: float = 120.0) -> dict[str, float]:
        """One turn per agent, so the first real message does not pay for lazy initialisation.

        Returns seconds per agent. Each turn is one model call, in the ``factory-warmup`` session.
        """
        timings: dict[str, float] = {}
        with httpx.Client(trust_env=False, timeout=timeout_s) as client:
            for agent_id in agent_ids or [agent.id for agent in self.agents]:
                started = time.monotonic()
                url, headers, body = self._warm_up_request(agent_id)
                response = client.post(url, headers=headers, json=body)
                self._check_warm_up(agent_id, response)
                timings[agent_id] = time.monotonic() - started
        return timings

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- async lifecycle --------------------------------------------------------------------

    async def astart(self) -> Self:
        self._spawn()
        try:
            with anyio.fail_after(self.ready_timeout_s):
                async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
                    # Polling is the point: readiness is only observable over HTTP.
                    while True:
                        if await self._aprobe_ready(client):
                            break
                        await anyio.sleep(_POLL_S)
        except TimeoutError:
            await self.astop()
            raise self._start_error(f"not ready within {self.ready_timeout_s:g} s") from None
        except BaseException:
            await self.astop()
            raise
        return self

    async def astop(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)

    async def awarm_up(self, agent_ids: Sequence[str] | None = None, timeout_s: float = 120.0) -> dict[str, float]:
        timings: dict[str, float] = {}
        async with httpx.AsyncClient(trust_env=False, timeout=timeout_s) as client:
            for agent_id in agent_ids or [agent.id for agent in self.agents]:
                started = anyio.current_time()
                url, headers, body = self._warm_up_request(agent_id)
                response = await client.post(url, headers=headers, json=body)
                self._check_warm_up(agent_id, response)
                timings[agent_id] = anyio.current_time() - started
        return timings

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()

    # -- operator helpers ---------------------------------------------------------------------

    def write_config(self) -> Path:
        """Write ``openclaw.json`` (and the state layout) for this runtime; picks the port if unset."""
        self.port = self.port or _free_port()
        # 0700: sessions, transcripts and logs below hold conversation text.
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("home", "logs", "workspaces", "tmp"):
            (self.state_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        for agent in self.agents:
            (agent.workspace or self.state_dir / "workspaces" / agent.id).mkdir(parents=True, exist_ok=True)
        config = gateway_config(
            port=self.port,
            state_dir=self.state_dir,
            agents=self.agents,
            model=self.model,
            heartbeat_every=self.heartbeat_every,
            allow_host_exec=self.allow_host_exec,
        )
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        return self.config_path

    def cli(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``openclaw <args>`` against this runtime's state, e.g. ``cli("config", "validate")``.

        The output is returned, not logged: commands such as ``sessions`` print conversation text.
        """
        command = [str(self.install.node.node), str(self.install.entry), *args]
        return subprocess.run(
            command, env=self._env(), cwd=self.state_dir, capture_output=True, text=True, timeout=timeout_s, check=False
        )

    # -- internals ----------------------------------------------------------------------------

    def _spawn(self) -> None:
        if self._process is not None:
            raise RuntimeError("gateway already started")
        self.write_config()
        args = [str(self.install.node.node), str(self.install.entry), "gateway", "run"]
        self._process = ManagedProcess.spawn(
            "openclaw-gateway", args, env=self._env(), cwd=self.state_dir, output=self.output_path
        )
        _log.info("openclaw.gateway.spawned", pid=self._process.pid, port=self.port, state_dir=str(self.state_dir))

    def _env(self) -> dict[str, str]:
        (self.state_dir / "tmp").mkdir(parents=True, exist_ok=True)
        node_bin = str(self.install.node.bin_dir)
        env = {
            # Node 24 first: OpenClaw's helpers spawn `node`, and the system one may be too old.
            "PATH": f"{node_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.state_dir / "home"),
            # Its own temporary folder: OpenClaw keeps staging locks there, and gateways sharing
            # one (other checkouts, test sessions) wait on each other's ("staging is busy").
            "TMPDIR": str(self.state_dir / "tmp"),
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",  # plain text in gateway.out and in start-error tails
            "OPENCLAW_HOME": str(self.state_dir / "home"),
            "OPENCLAW_STATE_DIR": str(self.state_dir),
            "OPENCLAW_CONFIG_PATH": str(self.config_path),
            "OPENCLAW_OFFLINE": "1",  # no helper-binary downloads
            "OPENCLAW_DISABLE_BONJOUR": "1",  # no mDNS advertising on the LAN
            "OPENCLAW_NO_AUTO_UPDATE": "1",  # no update checks or telemetry
            "OPENCLAW_NO_RESPAWN": "1",  # restarts stay in-process: the pid we track stays the gateway
            "OPENCLAW_SKIP_CHANNELS": "1",  # replies go out through our channels, not OpenClaw's
            "NODE_OPTIONS": f"--max-old-space-size={self.heap_mb}",
            "NODE_COMPILE_CACHE": str(self.install.compile_cache),
            COMPILE_CACHE_IN_PLACE: "1",  # the cache as it is, without a re-exec (gateway.config)
        }
        env.update(self.extra_env)
        env.update(secret_env(self.token, self.model))
        return env

    def _bound_port(self) -> int:
        if self.port is None:
            raise RuntimeError("gateway port is chosen at start(); start the gateway first")
        return self.port

    def _probe_ready(self, client: httpx.Client) -> bool:
        self._check_alive()
        try:
            return client.get(f"{self.url}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    async def _aprobe_ready(self, client: httpx.AsyncClient) -> bool:
        self._check_alive()
        try:
            return (await client.get(f"{self.url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    def _check_alive(self) -> None:
        code = self._process.exit_code() if self._process else None
        if code is not None:
            why = "invalid config" if code == _EXIT_CONFIG else f"exit {code}"
            raise self._start_error(f"exited before ready ({why})")

    def _start_error(self, what: str) -> GatewayStartError:
        tail = mask(_tail(self.output_path), [self.token])
        return GatewayStartError(f"openclaw gateway on port {self.port} {what}; last output:\n{tail}")

    def _warm_up_request(self, agent_id: str) -> tuple[str, dict[str, str], dict[str, object]]:
        headers = {
            "Authorization": f"Bearer {self.token.get_secret_value()}",
            "x-openclaw-session-key": f"agent:{agent_id}:{WARM_UP_SESSION}",
        }
        body: dict[str, object] = {
            "model": f"openclaw/{agent_id}",
            "messages": [{"role": "user", "content": "warm-up"}],
        }
        return f"{self.url}/v1/chat/completions", headers, body

    def _check_warm_up(self, agent_id: str, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise GatewayStartError(
                f"warm-up turn for agent {agent_id!r} failed: HTTP {response.status_code} "
                f"{mask(response.text[:300], [self.token])}"
            )


def _free_port() -> int:
    # The port is free now; a race with another process before the gateway binds it is possible
    # but shows up as a clear start error (address in use) rather than a wrong connection.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:])
