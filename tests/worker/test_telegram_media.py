"""Telegram attachments reach the agent as files: getFile and the download, over real loopback HTTP."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from contracts.models import AgentProfile, Attachment, ClaimedJob, HydrationBundle, MessagePayload
from tests.fakes.telegram_api import run_telegram_fake
from worker.telegram import TelegramMedia

pytestmark = pytest.mark.anyio
TOKEN = "5150:media-bot-token"


def job_with(*attachments: Attachment) -> tuple[ClaimedJob, HydrationBundle]:
    payload = MessagePayload(
        provider="telegram", provider_user_id="1", message_text="see attached", attachments=list(attachments)
    )
    job = ClaimedJob.model_validate(
        {"message_id": "msg_1", "conversation_id": "c", "agent_key": "default", "lease_id": "l"}
        | {"lease_expires_at": 1, "attempt": 1, "payload": payload}
    )
    bundle = HydrationBundle(
        message_id="msg_1",
        conversation_id="c",
        agent_key="default",
        payload=payload,
        profile=AgentProfile(agent_key="default"),
        history=[],
        telegram_bot_token=SecretStr(TOKEN),
    )
    return job, bundle


async def test_files_are_downloaded_and_named_for_the_agent(tmp_path: Path) -> None:
    async with run_telegram_fake(tokens=[TOKEN]) as telegram:
        doc = telegram.add_file(b"%PDF-1.7 report", "report.pdf")
        job, bundle = job_with(
            Attachment(kind="document", telegram_file_id=doc, file_name="q3 report.pdf", mime_type="application/pdf"),
            Attachment(kind="voice", telegram_file_id="gone"),
        )
        media = TelegramMedia(tmp_path, api_base=telegram.url)
        try:
            text = await media.enrich(job, bundle)
        finally:
            await media.aclose()
    head, block = text.split("\n\n[telegram_media]\n")
    first, second = block.splitlines()
    assert head == "see attached"
    path = anyio.Path(first.split(": ", 1)[1].split(" | ")[0])
    assert await path.read_bytes() == b"%PDF-1.7 report" and path.parent.parent.name == tmp_path.name
    assert first.endswith("| filename=q3 report.pdf | mime=application/pdf") and "_report.pdf" in path.name
    assert second.startswith("- audio (voice): unavailable (getFile: Bad Request: invalid file_id")
    assert TOKEN not in text
