"""The local provider with real processes: ``factory worker run`` and tiny Python stand-ins.

Every test runs its launches under a unique launch-id prefix; the ``fleet`` fixture fails the test
if any process carrying that prefix in ``FACTORY_LAUNCH_ID`` is still alive afterwards (and kills
it by pid, so a failing test never leaves workers behind), or if one of ours is left a zombie.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from autoscaler.errors import ProviderConfigError
from autoscaler.provider import LaunchSpec, Machine, Provider
from autoscaler.providers.local import LaunchRecord, LocalConfig, LocalProvider
from autoscaler.providers.local.config import PROCESS_ENV, process_env
from contracts.launch import WorkerEnvironment
from tests.autoscaler.conftest import SECRET_VALUE, assert_no_secrets

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

# Stand-ins for the worker: quick to start, and each says "ready" once its signal handling is set.
SLEEPER = (sys.executable, "-c", "import time\nprint('ready', flush=True)\nwhile True: time.sleep(0.5)")
DEAF = (
    sys.executable,
    "-c",
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
    "while True: time.sleep(0.5)",
)
CRASHER = (sys.executable, "-c", "import sys; sys.exit(3)")


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state); None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def alive(pid: int) -> bool:
    """Running, i.e. neither gone nor a zombie waiting to be reaped."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def carrying(prefix: str) -> list[int]:
    """Live processes whose FACTORY_LAUNCH_ID starts with ``prefix``."""
    found: list[int] = []
    marker = f"FACTORY_LAUNCH_ID={prefix}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if (proc_stat(pid) or ["", "0"])[1] == str(os.getpid()):
        os.waitpid(pid, 0)


def log_text(record: LaunchRecord) -> str:
    return Path(record.log_path).read_text(errors="replace")


def record_files(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("*.json"))


def rewrite_record(state_dir: Path, launch_id: str, **changes: Any) -> None:
    for path in record_files(state_dir):
        data = json.loads(path.read_text())
        if data["launch_id"] == launch_id:
            data.update(changes)
            path.write_text(json.dumps(data))
            return
    raise AssertionError(f"no record for {launch_id}")


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20.0) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            if await check():
                return
            await anyio.sleep(0.05)


# What a worker logs once its store answered and it waits for the spec's gateway (nothing listens
# there); its signal handlers are in place by then.
WAITING_FOR_GATEWAY = "not available yet; waiting for it"


async def wait_for_log(provider: LocalProvider, launch_id: str, text: str) -> None:
    async def logged() -> bool:
        record = await provider.launch_record(launch_id)
        return record is not None and text in log_text(record)

    await eventually(logged)


class Fleet:
    """One test's launches: unique launch ids, real worker specs, providers on one state dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.prefix = f"lt{secrets.token_hex(4)}-"
        self.tmp_path = tmp_path
        self.state_dir = tmp_path / "local"
        self.pids: set[int] = set()
        self._count = 0

    def config(self, **overrides: Any) -> LocalConfig:
        fields: dict[str, Any] = {
            "state_dir": self.state_dir,
            "stop_timeout_s": 10.0,
            "base_env": process_env(os.environ),
        }
        fields.update(overrides)
        return LocalConfig(**fields)

    def provider(self, **overrides: Any) -> LocalProvider:
        return LocalProvider(self.config(**overrides))

    def spec(self) -> LaunchSpec:
        """A spec for a real, idle ``factory worker run``: empty SQLite store, unreachable gateway."""
        self._count += 1
        environment = WorkerEnvironment(
            launch_id=f"{self.prefix}{self._count}",
            worker_id=f"worker-{self._count}",
            store=str(self.tmp_path / "store.db"),
            gateway_url="http://127.0.0.1:9",
            grace_s=5,
            gateway_token=SecretStr(SECRET_VALUE),
        )
        return LaunchSpec(environment=environment)

    async def create(self, provider: LocalProvider, spec: LaunchSpec) -> tuple[Machine, LaunchRecord]:
        machine = await provider.create(spec)
        record = await provider.launch_record(spec.launch_id)
        assert record is not None
        self.pids.add(record.pid)
        return machine, record


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    leftovers = carrying(fleet.prefix)
    for pid in leftovers:
        kill_pid(pid)
    zombies = [pid for pid in fleet.pids if (proc_stat(pid) or ["", ""])[:2] == ["Z", str(os.getpid())]]
    for pid in zombies:
        os.waitpid(pid, 0)
    assert not leftovers, f"processes left behind: {leftovers}"
    assert not zombies, f"children left as zombies: {zombies}"


# -- create, list, find -------------------------------------------------------------------------


async def test_create_starts_a_detached_worker_with_its_identity_and_secrets(fleet: Fleet) -> None:
    provider = fleet.provider()
    spec = fleet.spec()
    with capture_logs() as logs:
        machine, record = await fleet.create(provider, spec)
        listed = await provider.list()
        # Its store answered; no gateway listens at the spec's URL, so it waits for one, not ready.
        await wait_for_log(provider, spec.launch_id, WAITING_FOR_GATEWAY)

        typed: Provider = provider  # the protocol, checked by mypy
        assert typed.name == "local"
        assert machine.provider == "local"
        assert machine.state == "running"
        assert (machine.launch_id, machine.worker_id) == (spec.launch_id, spec.worker_id)
        assert machine.machine_id.startswith("local-")
        assert listed == [machine]
        assert await provider.find(spec.launch_id) == machine
        assert await provider.find(f"{fleet.prefix}nosuch") is None

        env = proc_environ(record.pid)
        assert env["FACTORY_WORKER_ID"] == spec.worker_id
        assert env["FACTORY_LAUNCH_ID"] == spec.launch_id
        assert env["FACTORY_WORKER_PROVIDER"] == "local"
        assert env["FACTORY_MACHINE_ID"] == machine.machine_id
        assert env["OPENCLAW_GATEWAY_TOKEN"] == SECRET_VALUE
        assert env["FACTORY_STORE"] == spec.environment.store
        assert env["PATH"] == os.environ["PATH"]  # a process basic, passed through

        # Its own session and process group: a reconcile that exits does not take it along.
        fields = proc_stat(record.pid)
        assert fields is not None
        assert int(fields[2]) == int(fields[3]) == record.pid
        assert int(fields[3]) != os.getsid(0)

        # The record on disk: the process identity, never the environment.
        (path,) = record_files(fleet.state_dir)
        stored = json.loads(path.read_text())
        assert stored["pid"] == record.pid and stored["machine_id"] == machine.machine_id
        assert stored["pid_start_ticks"] == int(fields[19])
        assert stored["worker_id"] == spec.worker_id and stored["log_path"] == record.log_path
        assert stored["started_at"] and stored["exit_code"] is None
        assert SECRET_VALUE not in path.read_text()

        await provider.destroy(machine)
        await provider.aclose()

    assert not alive(record.pid)
    assert logs, "the provider logs what it does"
    for entry in logs:
        assert SECRET_VALUE not in repr(entry)
    assert SECRET_VALUE not in log_text(record)


async def test_create_is_idempotent_per_launch_id(fleet: Fleet) -> None:
    provider = fleet.provider()
    spec = fleet.spec()
    first, record = await fleet.create(provider, spec)

    again = await provider.create(spec)
    other_instance = await fleet.provider().create(spec)  # e.g. a second reconcile process

    assert again == first == other_instance
    assert carrying(spec.launch_id) == [record.pid]
    assert len(record_files(fleet.state_dir)) == 1
    await provider.destroy(first)


async def test_a_quick_non_zero_exit_is_failed_and_its_launch_is_not_started_again(fleet: Fleet) -> None:
    provider = fleet.provider(command=CRASHER)
    spec = fleet.spec()
    machine, record = await fleet.create(provider, spec)

    async def ended() -> bool:
        found = await provider.find(spec.launch_id)
        return found is not None and found.state != "running"

    await eventually(ended)
    found = await provider.find(spec.launch_id)
    stored = await provider.launch_record(spec.launch_id)

    assert found is not None and found.state == "failed"
    assert stored is not None and stored.exit_code == 3 and stored.exited_at is not None
    assert proc_stat(record.pid) is None  # reaped: no zombie
    again = await provider.create(spec)
    assert (again.machine_id, again.state) == (machine.machine_id, "failed")
    assert [m.state for m in await provider.list()] == ["failed"]  # kept until destroyed
    await provider.destroy(machine)
    assert await provider.list() == []


# -- stop -----------------------------------------------------------------------------------------


async def test_stop_lets_the_worker_drain_and_exit_zero(fleet: Fleet) -> None:
    provider = fleet.provider()
    spec = fleet.spec()
    machine, record = await fleet.create(provider, spec)
    await wait_for_log(provider, spec.launch_id, WAITING_FOR_GATEWAY)  # its SIGTERM handler is set

    await provider.stop(machine)
    await provider.stop(machine)  # idempotent: a second SIGTERM would cut the drain short

    async def stopped() -> bool:
        found = await provider.find(spec.launch_id)
        assert found is not None and found.state in ("stopping", "stopped")
        return found.state == "stopped"

    await eventually(stopped)
    stored = await provider.launch_record(spec.launch_id)
    assert stored is not None
    assert stored.exit_code == 0 and stored.stop_requested_at is not None
    assert "signal received" in log_text(record)
    assert "second signal" not in log_text(record)
    assert [m.state for m in await provider.list()] == ["stopped"]  # the record stays until destroy
    await provider.stop(machine)  # exited: still fine
    await provider.destroy(machine)
    assert record_files(fleet.state_dir) == []


# -- destroy --------------------------------------------------------------------------------------


async def test_destroy_terminates_the_worker_and_removes_its_record(fleet: Fleet) -> None:
    provider = fleet.provider()
    spec = fleet.spec()
    machine, record = await fleet.create(provider, spec)
    await wait_for_log(provider, spec.launch_id, WAITING_FOR_GATEWAY)

    started = time.monotonic()
    await provider.destroy(machine)

    assert time.monotonic() - started < 8  # drained on SIGTERM, well before the timeout
    assert proc_stat(record.pid) is None
    assert await provider.find(spec.launch_id) is None
    assert await provider.list() == []
    assert record_files(fleet.state_dir) == []
    assert log_text(record)  # the log is kept for a post-mortem
    await provider.destroy(machine)  # already gone: success
    await provider.stop(machine)
    await provider.destroy(machine.model_copy(update={"machine_id": "local-nosuch", "launch_id": None}))


async def test_destroy_kills_a_worker_that_ignores_sigterm_after_the_timeout(fleet: Fleet) -> None:
    provider = fleet.provider(command=DEAF, stop_timeout_s=1.0)
    spec = fleet.spec()
    machine, record = await fleet.create(provider, spec)
    await wait_for_log(provider, spec.launch_id, "ready")

    started = time.monotonic()
    with capture_logs() as logs:
        await provider.destroy(machine)
    elapsed = time.monotonic() - started

    assert 1.0 <= elapsed < 4.0
    assert proc_stat(record.pid) is None
    assert record_files(fleet.state_dir) == []
    assert any(entry["event"] == "local worker ignored SIGTERM; killing it" for entry in logs)


async def test_destroy_after_stop_waits_only_for_the_rest_of_the_grace(fleet: Fleet) -> None:
    provider = fleet.provider(command=DEAF, stop_timeout_s=1.5)
    spec = fleet.spec()
    machine, record = await fleet.create(provider, spec)
    await wait_for_log(provider, spec.launch_id, "ready")

    await provider.stop(machine)
    assert [m.state for m in await provider.list()] == ["stopping"]
    await anyio.sleep(1.0)
    started = time.monotonic()
    await provider.destroy(machine)

    assert time.monotonic() - started < 1.4
    assert proc_stat(record.pid) is None


async def test_a_stale_record_whose_pid_was_reused_is_never_signalled(fleet: Fleet) -> None:
    provider = fleet.provider(command=SLEEPER)
    spec = fleet.spec()
    machine, record = await fleet.create(provider, spec)
    kill_pid(record.pid)  # our worker dies unseen; its pid now "belongs" to a bystander
    # A reused pid belongs to a process started later: at least one clock tick (10 ms) later.
    await anyio.sleep(0.05)
    bystander = subprocess.Popen([*SLEEPER], stdout=subprocess.DEVNULL)  # noqa: ASYNC220 - reaped below
    try:
        bystander_stat = proc_stat(bystander.pid)
        assert bystander_stat is not None and int(bystander_stat[19]) != record.pid_start_ticks
        rewrite_record(fleet.state_dir, spec.launch_id, pid=bystander.pid)

        listed = await provider.list()
        await provider.stop(machine)
        await provider.destroy(machine)

        assert [m.state for m in listed] == ["stopped"]
        await anyio.sleep(0.2)
        assert bystander.poll() is None, "a process that is not ours was signalled"
        assert record_files(fleet.state_dir) == []
    finally:
        bystander.kill()
        bystander.wait()


async def test_destroy_all_leaves_nothing_and_aclose_leaves_workers_running(fleet: Fleet) -> None:
    provider = fleet.provider(command=SLEEPER)
    records = [(await fleet.create(provider, fleet.spec()))[1] for _ in range(3)]
    await provider.aclose()

    assert all(alive(record.pid) for record in records)  # workers belong to the fleet
    survivor = fleet.provider(command=SLEEPER)
    assert [m.state for m in await survivor.list()] == ["running"] * 3
    started = time.monotonic()
    assert await survivor.destroy_all() == 3

    assert time.monotonic() - started < 5  # in parallel, each gone on SIGTERM
    assert not any(proc_stat(record.pid) for record in records)
    assert await survivor.list() == []
    assert await survivor.destroy_all() == 0


# -- workers started by another process ---------------------------------------------------------


async def test_a_worker_outlives_the_process_that_created_it(fleet: Fleet) -> None:
    spec = fleet.spec()
    script = (
        "import anyio, sys\n"
        "from autoscaler.provider import LaunchSpec\n"
        "from autoscaler.providers.local import LocalConfig, LocalProvider\n"
        "async def main():\n"
        "    provider = LocalProvider(LocalConfig.model_validate_json(sys.argv[1]))\n"
        "    await provider.create(LaunchSpec.model_validate_json(sys.argv[2]))\n"
        "    await provider.aclose()\n"
        "anyio.run(main)\n"
    )
    config = fleet.config(command=SLEEPER)
    # SecretStr dumps masked: the child gets the spec without the gateway token (it never connects).
    spec_json = LaunchSpec(environment=spec.environment.model_copy(update={"gateway_token": None})).model_dump_json()
    await anyio.run_process([sys.executable, "-c", script, config.model_dump_json(), spec_json])

    provider = LocalProvider(config)
    record = await provider.launch_record(spec.launch_id)
    assert record is not None
    fleet.pids.add(record.pid)
    fields = proc_stat(record.pid)
    assert fields is not None and int(fields[1]) != os.getpid()  # not our child
    (machine,) = await provider.list()
    assert machine.state == "running"
    await wait_for_log(provider, spec.launch_id, "ready")

    await provider.stop(machine)

    async def stopped() -> bool:
        found = await provider.find(spec.launch_id)
        return found is not None and found.state == "stopped"

    await eventually(stopped)
    stored = await provider.launch_record(spec.launch_id)
    # Not our child: its status is known only if we saw it as a zombie of its new parent.
    assert stored is not None and stored.exit_code in (-signal.SIGTERM, "unknown")
    await provider.destroy(machine)
    assert await provider.list() == []


# -- environment, config and errors -------------------------------------------------------------


async def test_a_worker_gets_the_process_basics_and_its_environment_and_nothing_else(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLY_API_TOKEN", "fly-token-for-the-reconciler")
    monkeypatch.setenv("OPENAI_API_KEY", "model-key-for-the-gateway")
    monkeypatch.setenv("FACTORY_TEST_INHERITED", "yes")
    provider = fleet.provider(command=SLEEPER, base_env=process_env(os.environ))
    machine, record = await fleet.create(provider, fleet.spec())
    env = proc_environ(record.pid)
    await provider.destroy_all()

    told = {
        "FACTORY_STORE",
        "OPENCLAW_GATEWAY_URL",
        "FACTORY_GRACE_S",
        "OPENCLAW_GATEWAY_TOKEN",
        "FACTORY_WORKER_ID",
        "FACTORY_LAUNCH_ID",
        "FACTORY_WORKER_PROVIDER",
        "FACTORY_MACHINE_ID",
    }
    assert set(env) == told | (set(PROCESS_ENV) & set(os.environ))
    assert env["FACTORY_MACHINE_ID"] == machine.machine_id
    with pytest.raises(ValidationError, match="FLY_API_TOKEN"):
        fleet.config(base_env={"FLY_API_TOKEN": "x"})


async def test_bad_specs_and_commands_fail_without_leaking_secrets(fleet: Fleet) -> None:
    provider = fleet.provider()
    base = fleet.spec().environment
    nul = LaunchSpec(
        environment=base.model_copy(
            update={"launch_id": f"{fleet.prefix}nul", "grace_s": None, "gateway_url": "http://a\0b"}
        )
    )
    missing = fleet.provider(command=(str(fleet.tmp_path / "no-such-worker"),))

    errors: list[ProviderConfigError] = []
    with capture_logs() as logs:
        for bad_provider, spec in ((provider, nul), (missing, fleet.spec())):
            with pytest.raises(ProviderConfigError) as caught:
                await bad_provider.create(spec)
            errors.append(caught.value)

    for error in errors:
        assert_no_secrets(error, SECRET_VALUE)
    assert [error.setting for error in errors] == ["LaunchSpec.env", "LocalConfig.command"]
    assert await provider.list() == []
    for entry in logs:
        assert SECRET_VALUE not in repr(entry)


def test_config_defaults_and_validation() -> None:
    config = LocalConfig()
    assert config.state_dir == Path(".factory/local")
    assert config.command == (sys.executable, "-m", "factory", "worker", "run")
    with pytest.raises(ValidationError):
        LocalConfig(command=())
    with pytest.raises(ValidationError):
        LocalConfig(base_env={"FACTORY_WORKER_ID": "w"})
    with pytest.raises(ValidationError):
        LocalConfig(stop_timeout_s=0)
