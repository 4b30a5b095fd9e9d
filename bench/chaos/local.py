"""What the fleet scenarios share: a real gateway on the stub model, and `factory worker run` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import CompatibleModel
from gateway.install import ensure_openclaw
from gateway.runtime import GatewayRuntime
from gateway.stub_llm import StubLLMProcess


@contextmanager
def local_gateway(root: Path, *, ready_timeout_s: float) -> Iterator[GatewayRuntime]:
    """The stub model and a gateway on it, warmed up; both stopped at the end. A generous readiness
    budget: a loaded 2-core machine needs minutes to start a gateway."""
    install = ensure_openclaw(os.environ)
    with StubLLMProcess.start(root / "stub.jsonl", output=root / "stub.out") as stub:
        model = CompatibleModel(base_url=stub.base_url)
        with GatewayRuntime(install, root / "gateway", model=model, ready_timeout_s=ready_timeout_s) as runtime:
            runtime.warm_up()
            yield runtime


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WorkerProcesses:
    """`factory worker run` processes on one store, each with its own log (and health port)."""

    root: Path
    store: str
    env: dict[str, str]
    health: bool = False
    spawned: int = 0
    running: list[tuple[str, subprocess.Popen[bytes], int | None]] = field(default_factory=list)

    @classmethod
    def for_gateway(cls, root: Path, store: str, runtime: GatewayRuntime, *, health: bool = False) -> WorkerProcesses:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "OPENCLAW_"))}
        env.update(
            OPENCLAW_GATEWAY_URL=runtime.url,
            OPENCLAW_GATEWAY_TOKEN=runtime.token.get_secret_value(),
            FACTORY_POLL_S="0.2",
            FACTORY_LOG_LEVEL="info",
        )
        return cls(root, store, env, health)

    def spawn(self) -> tuple[str, subprocess.Popen[bytes], int | None]:
        self.spawned += 1
        worker_id = f"chaos-worker-{self.spawned}"
        command = [sys.executable, "-m", "factory", "worker", "run", "--store", self.store, "--worker-id", worker_id]
        port = free_port() if self.health else None
        if port is not None:
            command += ["--health-port", str(port)]
        with open(self.root / f"worker-{self.spawned}.log", "ab") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out, stderr=out)
        return worker_id, process, port

    def start(self, count: int) -> None:
        self.running = [self.spawn() for _ in range(count)]

    def exited(self) -> int:
        """How many of the running workers have exited by themselves."""
        return sum(1 for _, process, _ in self.running if process.poll() is not None)

    def stop(self) -> list[int | None]:
        """SIGTERM every worker and collect its exit status (None: it had to be killed)."""
        for _, process, _ in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for _, process, _ in self.running:
            try:
                codes.append(process.wait(60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(None)
        return codes

    def tracebacks(self) -> int:
        return sum(1 for log in self.root.glob("worker-*.log") if "Traceback" in log.read_text(errors="replace"))
