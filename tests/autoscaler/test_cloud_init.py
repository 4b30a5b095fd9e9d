"""The droplet's cloud-init user_data: valid YAML after rendering, secrets only in the env file."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from autoscaler.errors import ProviderConfigError
from autoscaler.providers.cloud_init import DEFAULT_TEMPLATE_PATH, env_file, load_template, render_cloud_init

SECRET = "store-secret-canary-42"
ENV = {"FACTORY_WORKER_ID": "w-1", "FACTORY_STORE_TOKEN": SECRET, "ODD": "quotes ' \" # : { } [ ] & * ! | > %"}


def render(**overrides: Any) -> str:
    fields: dict[str, Any] = {"worker_image": "ghcr.io/acme/factory-worker:1.2.3", "env": ENV, "stop_timeout_s": 120}
    fields.update(overrides)
    return render_cloud_init(load_template(), **fields)


def test_the_rendered_template_is_cloud_config_yaml() -> None:
    rendered = render()

    assert rendered.startswith("#cloud-config\n")
    assert "{{" not in rendered
    cloud = yaml.safe_load(rendered)
    assert set(cloud) == {"write_files", "runcmd"}


def test_the_env_file_is_root_only_and_carries_every_value_verbatim() -> None:
    cloud = yaml.safe_load(render())

    (env,) = [f for f in cloud["write_files"] if f["path"] == "/etc/factory/worker.env"]
    assert env["permissions"] == "0600"
    assert env["owner"] == "root:root"
    assert env["encoding"] == "b64"
    assert base64.b64decode(env["content"]).decode() == env_file(ENV)
    assert f"ODD={ENV['ODD']}\n" in env_file(ENV)


def test_the_unit_runs_the_image_with_a_drain_window_and_powers_off_after() -> None:
    cloud = yaml.safe_load(render())

    (unit,) = [f for f in cloud["write_files"] if f["path"].endswith("factory-worker.service")]
    text = unit["content"]
    assert "--env-file /etc/factory/worker.env" in text
    assert "--stop-timeout 120 ghcr.io/acme/factory-worker:1.2.3" in text
    assert "ExecStop=/usr/bin/docker stop --time 120 factory-worker" in text
    assert "TimeoutStopSec=150" in text
    assert "KillSignal=SIGTERM" in text
    assert "SuccessAction=poweroff" in text


def test_no_command_line_carries_a_secret() -> None:
    rendered = render()
    cloud = yaml.safe_load(rendered)

    assert SECRET not in rendered
    for command in cloud["runcmd"]:
        assert SECRET not in (command if isinstance(command, str) else " ".join(command))
    (unit,) = [f for f in cloud["write_files"] if f["path"].endswith(".service")]
    assert SECRET not in unit["content"]


@pytest.mark.parametrize("image", ["", "has space:1", "img:1\nExecStart=/bin/evil", "img'quote"])
def test_an_image_reference_that_could_break_the_yaml_is_refused(image: str) -> None:
    with pytest.raises(ProviderConfigError, match="worker_image"):
        render(worker_image=image)


def test_a_value_an_env_file_cannot_carry_is_refused_by_key_not_value() -> None:
    with pytest.raises(ProviderConfigError) as caught:
        render(env={"TOKEN": f"line1\n{SECRET}"})

    assert "TOKEN" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_unknown_placeholders_and_oversized_user_data_are_refused() -> None:
    with pytest.raises(ProviderConfigError, match="surprise"):
        render_cloud_init("#cloud-config\n{{ surprise }}\n", worker_image="img:1", env={}, stop_timeout_s=1)
    with pytest.raises(ProviderConfigError, match="64 KiB"):
        render(env={"BIG": "x" * 70_000})


def test_the_default_template_is_the_repository_file() -> None:
    assert DEFAULT_TEMPLATE_PATH.is_file()
    assert DEFAULT_TEMPLATE_PATH.parts[-3:] == ("images", "digitalocean", "cloud-init.yaml")
