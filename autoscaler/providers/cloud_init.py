"""Render the droplet's cloud-init user_data from images/digitalocean/cloud-init.yaml.

The template uses ``{{ name }}`` placeholders (the YAML and the systemd unit inside it are full of
``$`` and ``%``, so ``string.Template`` and ``str.format`` would need escaping everywhere). Every
value is either validated to be plain (the image reference, integers) or base64-encoded (the env
file), so the rendered text is always valid YAML and no value can inject a line into it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path

from autoscaler.errors import ProviderConfigError

__all__ = [
    "DEFAULT_TEMPLATE_PATH",
    "USER_DATA_LIMIT",
    "check_template",
    "env_file",
    "load_template",
    "render_cloud_init",
]

# The repository's template. An installed wheel does not carry images/: the composition root then
# passes a path (DigitalOceanConfig.cloud_init_template) to a copy shipped next to the autoscaler.
DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "images" / "digitalocean" / "cloud-init.yaml"
# DigitalOcean refuses user_data over 64 KiB.
USER_DATA_LIMIT = 64 * 1024

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
# A container image reference: registry/name[:tag][@digest]; no whitespace, quotes or YAML syntax.
_IMAGE_REF = re.compile(r"[a-z0-9][a-z0-9._\-/:@]*[a-z0-9]", re.IGNORECASE)
# Docker's --env-file takes KEY=value lines verbatim: no quoting, so no newlines in values.
_FORBIDDEN_IN_VALUE = re.compile(r"[\n\r\x00]")
# Room systemd needs beyond the worker's own grace: docker stop and container teardown.
_UNIT_STOP_MARGIN_S = 30


_KNOWN = frozenset({"worker_image", "env_file_b64", "stop_timeout_s", "unit_stop_timeout_s"})
# Without these the droplet would boot nothing, or a worker that knows nothing.
_REQUIRED = ("worker_image", "env_file_b64")


def load_template(path: Path | None = None) -> str:
    """The template's text, checked: a garbage file is refused here, before any droplet is paid for."""
    target = path or DEFAULT_TEMPLATE_PATH
    try:
        template = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProviderConfigError("cloud_init_template", f"cannot read {target}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ProviderConfigError("cloud_init_template", f"{target} is not UTF-8 text") from None
    return check_template(template, str(target))


def check_template(template: str, where: str = "the template") -> str:
    """A cloud-config document whose placeholders are ours, including the ones a worker needs."""
    if not template.startswith("#cloud-config"):
        raise ProviderConfigError("cloud_init_template", f"{where} does not start with #cloud-config")
    found = {match.group(1) for match in _PLACEHOLDER.finditer(template)}
    unknown = sorted(found - _KNOWN)
    if unknown:
        raise ProviderConfigError("cloud_init_template", f"{where} has unknown placeholder {{{{ {unknown[0]} }}}}")
    missing = [name for name in _REQUIRED if name not in found]
    if missing:
        raise ProviderConfigError("cloud_init_template", f"{where} never uses {{{{ {missing[0]} }}}}")
    return template


def env_file(env: Mapping[str, str]) -> str:
    """The worker's env file: one ``KEY=value`` line each, as ``docker run --env-file`` reads it."""
    for key, value in env.items():
        if _FORBIDDEN_IN_VALUE.search(value):
            # Name the key, never the value: the value may be a secret.
            raise ProviderConfigError(f"env.{key}", "contains a newline or NUL, which an env file cannot carry")
    return "".join(f"{key}={value}\n" for key, value in env.items())


def render_cloud_init(template: str, *, worker_image: str, env: Mapping[str, str], stop_timeout_s: int) -> str:
    """Fill the template. ``env`` may hold secrets: they only appear base64-encoded in the result."""
    if not _IMAGE_REF.fullmatch(worker_image):
        raise ProviderConfigError("worker_image", f"{worker_image!r} is not a container image reference")
    if stop_timeout_s < 1:
        raise ProviderConfigError("stop_timeout_s", "must be at least 1 second")
    values = {
        "worker_image": worker_image,
        "env_file_b64": base64.b64encode(env_file(env).encode("utf-8")).decode("ascii"),
        "stop_timeout_s": str(stop_timeout_s),
        "unit_stop_timeout_s": str(stop_timeout_s + _UNIT_STOP_MARGIN_S),
    }
    missing = sorted({match.group(1) for match in _PLACEHOLDER.finditer(template)} - values.keys())
    if missing:
        raise ProviderConfigError("cloud_init_template", f"has unknown placeholder {{{{ {missing[0]} }}}}")
    rendered = _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
    if len(rendered.encode("utf-8")) > USER_DATA_LIMIT:
        raise ProviderConfigError("env", "the rendered user_data exceeds DigitalOcean's 64 KiB limit")
    return rendered
