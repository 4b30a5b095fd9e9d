"""``factory run``: the whole local fleet end to end, run as a user runs it, plus its edges."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest
from pydantic import SecretStr

from contracts.errors import InvalidInput
from factory.run import choose_model, demo_burst, percentile
from factory.settings import RunSettings
from tests.cli.conftest import Cli, Result

_SUMMARY = re.compile(r"factory run: processed (\d+), dead-lettered (\d+), p50 ([\d.]+) s, p95 ([\d.]+) s")
_CONSOLE = re.compile(r"operator console: (http://127\.0\.0\.1:\d+)/console")
_TOKEN = re.compile(r"demo sign-in token, for this demo store only: (\S+)")
_DONE = re.compile(r'data-stat="done" data-value="(\d+)"')


def _processes_mentioning(marker: str) -> list[str]:
    """Command lines of live processes whose argv or environment mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if marker.encode() in cmdline + (entry / "environ").read_bytes():
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _offline(cli: Cli) -> Cli:
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "FACTORY_RUN_MODEL"):
        cli.env.pop(key, None)
    return cli


@contextmanager
def _console_session(url: str, token: str) -> Iterator[httpx.Client]:
    """Signed in to the demo's console with the token it printed, as a browser does."""
    with httpx.Client(base_url=url, timeout=10) as client:
        form = client.get("/console/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce is not None, form.text[:500]
        signed_in = client.post("/console/login", data={"token": token, "nonce": nonce.group(1), "next": "/console"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console", signed_in.text[:500]
        yield client


def _run_watching_the_console(cli: Cli, *args: str, timeout: float) -> tuple[Result, list[int]]:
    """``factory run`` as a user runs it, with an operator watching its console meanwhile: the
    result, and the overview's "done" figure each time the operator looked."""
    lines: list[str] = []
    printed = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            lines.append(line)
            if _TOKEN.search(line):
                printed.set()
        printed.set()  # the end of output: nothing more to wait for

    stderr = cli.cwd / "run.stderr"
    seen: list[int] = []
    command = [sys.executable, "-m", "factory", *args]
    with (
        stderr.open("w") as err,
        subprocess.Popen(command, cwd=cli.cwd, env=cli.env, stdout=subprocess.PIPE, stderr=err, text=True) as proc,
    ):
        assert proc.stdout is not None
        reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            printed.wait(timeout)
            output = "".join(lines)
            url, token = _CONSOLE.search(output), _TOKEN.search(output)
            if url is not None and token is not None:
                with _console_session(url.group(1), token.group(1)) as console:
                    while proc.poll() is None:
                        try:
                            overview = console.get("/console/fragments/overview")
                        except httpx.TransportError:
                            break  # the demo is over and its front door closed
                        found = _DONE.search(overview.text)
                        if overview.status_code == 200 and found is not None:
                            seen.append(int(found.group(1)))
                        time.sleep(0.5)
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(10)
    return Result(proc.returncode, "".join(lines), stderr.read_text()), seen


@pytest.mark.gateway
@pytest.mark.slow
@pytest.mark.timeout(600)  # two gateways start on a shared 2-core machine
def test_run_processes_a_burst_scales_to_zero_and_leaves_nothing_behind(cli: Cli) -> None:
    result, done_seen = _run_watching_the_console(
        _offline(cli), "run", "--conversations", "3", "--messages", "6", timeout=540
    )
    assert result.code == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "model: offline stub (no OPENAI_API_KEY / ANTHROPIC_API_KEY set)" in result.stdout
    summary = _SUMMARY.search(result.stdout)
    assert summary is not None, result.stdout[-3000:]
    # The burst's six, the demo user's message that came in through the Telegram webhook, and the
    # memory check's question on machine B.
    assert (summary.group(1), summary.group(2)) == ("8", "0")
    assert "telegram reply to chat" in result.stdout, result.stdout[-3000:]
    assert float(summary.group(3)) <= float(summary.group(4))
    assert "Traceback" not in result.stderr
    # The busiest conversation moved to a fresh machine (restored from its snapshot) and the agent
    # there still knew its two earlier turns.
    assert "its snapshot: restored on machine B" in result.stdout, result.stdout[-3000:]
    assert re.search(
        r"memory: demo:\S+ moved from w[\d, w]+ \(machine A\) to w\d+ \(machine B\): the agent still "
        r"knows its 2 earlier turns",
        result.stdout,
    ), result.stdout[-3000:]
    # The console showed the demo live: an operator signed in with the printed token saw
    # messages answered while the run went on.
    assert done_seen and max(done_seen) >= 1, (done_seen, result.stdout[-3000:])
    # Scaled back to zero and cleaned up: no worker, gateway or stub of this run is still running.
    leftovers = _processes_mentioning(str(cli.cwd))
    assert not [p for p in leftovers if "factory worker run" in p], leftovers
    assert leftovers == []
    # Worker logs stay for a post-mortem; the launch records are gone with their workers.
    local = cli.cwd / ".factory" / "run" / "local"
    assert list(local.glob("*.log")) and not list(local.glob("*.json"))


@pytest.mark.gateway
@pytest.mark.slow
def test_kill_9_of_factory_run_takes_its_gateway_and_stub_with_it(cli: Cli) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "factory", "run", "--conversations", "1", "--messages", "1"],
        cwd=cli.cwd,
        env=_offline(cli).env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = _until(lambda: _children_of_the_run(cli) == {"stub", "gateway"}, 300)
        assert started, _processes_mentioning(str(cli.cwd))
    finally:
        run.kill()  # SIGKILL: no cleanup of its own can run
        run.wait(30)
    # The kernel tells both (PR_SET_PDEATHSIG): nothing of the run lives on.
    gone = _until(lambda: not _processes_mentioning(str(cli.cwd)), 120)
    assert gone, _processes_mentioning(str(cli.cwd))


def _children_of_the_run(cli: Cli) -> set[str]:
    found = set()
    for command in _processes_mentioning(str(cli.cwd)):
        if "gateway.stub_llm" in command:
            found.add("stub")
        elif "openclaw" in command:
            found.add("gateway")
    return found


def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_other_providers_are_refused_in_one_line(cli: Cli) -> None:
    result = _offline(cli)("run", "--provider", "fly")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--provider" in lines[0] and "only 'local'" in lines[0]
    assert not (cli.cwd / ".factory").exists()


def test_fewer_messages_than_conversations_is_refused(cli: Cli) -> None:
    result = _offline(cli)("run", "--conversations", "4", "--messages", "2")
    assert result.code == 2 and "--messages" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_model_choice_follows_the_usual_variables_and_never_shows_a_key() -> None:
    none = choose_model(RunSettings(openai_api_key=None, anthropic_api_key=None, model=None))
    assert none.hosted is None and none.label.startswith("offline stub")

    secret = "sk-test-not-a-real-key"
    openai = choose_model(RunSettings(openai_api_key=SecretStr(secret), anthropic_api_key=SecretStr("x"), model=None))
    assert openai.hosted is not None and openai.hosted.provider == "openai"
    assert secret not in openai.label and secret not in repr(openai)

    anthropic = choose_model(
        RunSettings(openai_api_key=None, anthropic_api_key=SecretStr(secret), model="anthropic/claude-sonnet-4-6")
    )
    assert anthropic.hosted is not None and anthropic.hosted.model == "claude-sonnet-4-6"

    with pytest.raises(InvalidInput, match="FACTORY_RUN_MODEL"):
        choose_model(RunSettings(openai_api_key=SecretStr(secret), anthropic_api_key=None, model="anthropic/x"))


def test_blank_keys_count_as_unset() -> None:
    settings = RunSettings.model_validate({"OPENAI_API_KEY": " ", "ANTHROPIC_API_KEY": "", "FACTORY_RUN_MODEL": " "})
    assert settings.openai_api_key is None and settings.anthropic_api_key is None and settings.model is None


def test_the_burst_covers_every_conversation_in_order() -> None:
    burst = demo_burst(6, 20)
    assert len(burst) == 20 and len({m.conversation_id for m in burst}) == 6
    per = [m.text for m in burst if m.conversation_id == burst[0].conversation_id]
    assert len(per) == len(set(per))  # distinct texts within a conversation


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([float(v) for v in range(1, 101)], 0.95) == pytest.approx(95.05)
