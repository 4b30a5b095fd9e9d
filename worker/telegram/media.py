"""Telegram media for the agent: download a message's attachments through ``getFile`` and tell the
agent where they are, as upstream's worker does (reference/agent-factory.md §5.4).

The webhook stores only the file ids (``payload.attachments``); this downloads each one when the
job runs, into ``<dest>/<messageId>/<n>-<name>`` (a folder the gateway's agent can read), and
appends a ``[telegram_media]`` block with one line per file to the text the agent sees. A file that
cannot be fetched (gone, too large, Telegram down) becomes a line saying so: the message itself is
still answered. The bot token is put into the URL below httpx (as in the reply channel).
"""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import httpx
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr

from contracts.models import Attachment, ClaimedJob, HydrationBundle
from contracts.redact import mask, url_forms
from worker.telegram.channel import _PLACEHOLDER, _TOKEN_EXTENSION, TelegramResponse, _TokenTransport

_log = structlog.get_logger("worker.telegram.media")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# The Bot API serves files up to 20 MB through getFile.
MAX_FILE_BYTES = 20 * 1024 * 1024


class _File(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file_path: str | None = None
    file_size: int | None = None


class TelegramMedia:
    def __init__(
        self,
        dest: Path,
        *,
        api_base: str = "https://api.telegram.org",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._dest = dest
        self._base = api_base.rstrip("/")
        self._client = httpx.AsyncClient(
            transport=_TokenTransport(transport or httpx.AsyncHTTPTransport()),
            timeout=60.0,
            trust_env=False,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def enrich(self, job: ClaimedJob, bundle: HydrationBundle) -> str:
        """The text the agent sees: the message, plus where each of its files now is."""
        text = job.payload.message_text
        attachments = [a for a in job.payload.attachments or [] if a.telegram_file_id]
        if not attachments or bundle.telegram_bot_token is None:
            return text
        lines = []
        for n, attachment in enumerate(attachments, start=1):
            lines.append(await self._line(job.message_id, n, attachment, bundle.telegram_bot_token))
        return f"{text}\n\n[telegram_media]\n" + "\n".join(lines)

    async def _line(self, message_id: str, n: int, attachment: Attachment, token: SecretStr) -> str:
        kind = "audio (voice)" if attachment.kind == "voice" else attachment.kind
        try:
            path = await self._download(message_id, n, attachment, token)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            problem = mask(str(exc) or type(exc).__name__, url_forms(token), "<redacted>")
            _log.warning("telegram.media_unavailable", message_id=message_id, kind=attachment.kind, error=problem)
            return f"- {kind}: unavailable ({problem})"
        named = (("filename", attachment.file_name), ("mime", attachment.mime_type))
        details = [f"{key}={value}" for key, value in named if value]
        return " | ".join([f"- {kind}: {path}", *details])

    async def _download(self, message_id: str, n: int, attachment: Attachment, token: SecretStr) -> Path:
        ext = {_TOKEN_EXTENSION: token}
        answer = await self._client.post(
            f"{self._base}/{_PLACEHOLDER}/getFile", json={"file_id": attachment.telegram_file_id}, extensions=ext
        )
        reply = TelegramResponse.model_validate_json(answer.content)
        if not reply.ok:
            raise ValueError(f"getFile: {reply.description or answer.status_code}")
        found = _File.model_validate(reply.result)
        if found.file_path is None:
            raise ValueError("getFile: no file_path (the file is no longer available)")
        if (found.file_size or 0) > MAX_FILE_BYTES:
            raise ValueError(f"getFile: {found.file_size} bytes, over the Bot API's 20 MB")
        body = await self._client.get(f"{self._base}/file/{_PLACEHOLDER}/{found.file_path}", extensions=ext)
        body.raise_for_status()
        name = _UNSAFE.sub("_", attachment.file_name or Path(found.file_path).name or attachment.kind)[:100]
        target = self._dest / _UNSAFE.sub("_", message_id) / f"{n}-{name}"
        await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        await anyio.Path(target).write_bytes(body.content)
        return target.resolve()
